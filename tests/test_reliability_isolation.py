"""50 concurrent clients sign in over streamable HTTP; each ends with its own identity."""

from __future__ import annotations

from contextlib import asynccontextmanager

import anyio
import pytest
from mcp import Client, ClientSession
from mcp.client.streamable_http import streamable_http_client

from backstage_auth.names import ToolName
from tests.flows import call_ok, sign_in_oidc
from tests.reliability_report import REPORT

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

CLIENTS = 50


@asynccontextmanager
async def handshake_client(url: str):
    async with streamable_http_client(url) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


@asynccontextmanager
async def sessionless_client(url: str):
    async with Client(url) as client:
        yield client


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("era", "opener", "use_handle"),
    [("2025-11-25", handshake_client, False), ("2026-07-28", sessionless_client, True)],
    ids=["handshake", "sessionless"],
)
async def test_concurrent_sign_ins_stay_isolated(mcp_http, era, opener, use_handle):
    identities: dict[str, str] = {}
    handles: dict[str, str] = {}
    limiter = anyio.CapacityLimiter(CLIENTS)

    async def run(index: int) -> None:
        login = f"user{index:02d}"
        async with limiter, opener(mcp_http.url) as client:
            signed_in = await sign_in_oidc(client, login=login, use_handle=use_handle)
            arguments = {"provider": "oidc"}
            if use_handle:
                arguments["session_handle"] = signed_in["session_handle"]
            await anyio.sleep(0.1)
            refreshed = await call_ok(client, ToolName.REFRESH, arguments)
            identities[login] = refreshed["backstage_identity"]["user_entity_ref"]
            handles[login] = refreshed["session_handle"]

    async with anyio.create_task_group() as group:
        for index in range(CLIENTS):
            group.start_soon(run, index)

    distinct = len(set(identities.values()))
    REPORT.isolation.append(
        (f"{CLIENTS} over HTTP, protocol {era}", CLIENTS, len(identities), distinct)
    )
    assert len(identities) == CLIENTS
    for login, identity in identities.items():
        assert identity == f"user:default/{login}"
    assert len(set(handles.values())) == CLIENTS
