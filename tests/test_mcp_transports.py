"""The server as a user runs it: a stdio subprocess and a streamable HTTP server.

Both talk to the real Backstage backend. Over HTTP, clients of the 2025-11-25
handshake get one upstream session per MCP session; clients of the
sessionless 2026-07-28 protocol carry the session_handle instead.
"""

from __future__ import annotations

import json
import sys
from contextlib import asynccontextmanager

import anyio
import pytest
from mcp import Client, ClientSession, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from backstage_auth.names import ToolName
from tests.conftest import REPO_ROOT, server_env
from tests.flows import browser_callback_url, call_error, call_ok, sign_in_oidc

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


@asynccontextmanager
async def handshake_session(url: str):
    """A 2025-11-25 client: initialize handshake and an Mcp-Session-Id."""
    async with streamable_http_client(url) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


def stdio_parameters(auth_url: str, *args: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=[str(REPO_ROOT / "server.py"), *args],
        cwd=str(REPO_ROOT),
        env=server_env(BACKSTAGE_AUTH_URL=auth_url),
    )


async def test_stdio_full_flow(backstage):
    async with Client(stdio_parameters(backstage.auth_url)) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        guest = await call_ok(client, ToolName.REFRESH, {"provider": "guest"})
        signed_in = await sign_in_oidc(client, login="dave")
        refreshed = await call_ok(client, ToolName.REFRESH, {"provider": "oidc"})
        await call_ok(client, ToolName.LOGOUT, {"provider": "oidc"})
        after_logout = await call_error(client, ToolName.REFRESH, {"provider": "oidc"})

    assert tools == {str(name) for name in ToolName}
    assert guest["backstage_identity"]["user_entity_ref"] == "user:development/guest"
    assert signed_in["backstage_identity"]["user_entity_ref"] == "user:default/dave"
    assert refreshed["backstage_identity"]["user_entity_ref"] == "user:default/dave"
    assert "Missing session cookie" in after_logout


async def test_http_handshake_client_full_flow(mcp_http):
    async with handshake_session(mcp_http.url) as session:
        signed_in = await sign_in_oidc(session, login="erin")
        refreshed = await call_ok(session, ToolName.REFRESH, {"provider": "oidc"})
        await call_ok(session, ToolName.LOGOUT, {"provider": "oidc"})
        after_logout = await call_error(session, ToolName.REFRESH, {"provider": "oidc"})

    assert signed_in["backstage_identity"]["user_entity_ref"] == "user:default/erin"
    assert refreshed["backstage_identity"]["user_entity_ref"] == "user:default/erin"
    assert "Missing session cookie" in after_logout


async def test_http_sessionless_client_uses_handle(mcp_http):
    async with Client(mcp_http.url) as client:
        started = await call_ok(client, ToolName.START, {"provider": "oidc"})
        handle = started["session_handle"]
        callback_url = await browser_callback_url(started["authorization_url"], "frank")
        without_handle = await call_error(
            client, ToolName.CALLBACK, {"provider": "oidc", "callback_url": callback_url}
        )
        signed_in = await call_ok(
            client,
            ToolName.CALLBACK,
            {"provider": "oidc", "callback_url": callback_url, "session_handle": handle},
        )
        refreshed = await call_ok(
            client, ToolName.REFRESH, {"provider": "oidc", "session_handle": handle}
        )
        refresh_without_handle = await call_error(client, ToolName.REFRESH, {"provider": "oidc"})
        logout_without_handle = await call_error(client, ToolName.LOGOUT, {"provider": "oidc"})
        guest_bad_handle = await call_error(
            client, ToolName.REFRESH, {"provider": "guest", "session_handle": "C" * 43}
        )
        await call_ok(client, ToolName.LOGOUT, {"provider": "oidc", "session_handle": handle})
        after_logout = await call_ok(
            client,
            ToolName.REFRESH,
            {"provider": "oidc", "session_handle": handle, "optional": True},
        )

    assert "missing cookie nonce" in without_handle
    assert "passed no session_handle" in without_handle
    assert f"Pass session_handle '{handle}'" in started["next_step"]
    assert signed_in["session_handle"] == handle
    assert refreshed["backstage_identity"]["user_entity_ref"] == "user:default/frank"
    assert "passed no session_handle" in refresh_without_handle
    assert "no sign-in to 'oidc' to end" in logout_without_handle
    assert "guest provider needs no session_handle" in guest_bad_handle
    assert after_logout["signed_in"] is False


async def test_http_unknown_handle_rejected(mcp_http):
    async with Client(mcp_http.url) as client:
        error = await call_error(
            client, ToolName.REFRESH, {"provider": "oidc", "session_handle": "A" * 43}
        )

    assert "session_handle is unknown or has expired" in error


async def test_http_concurrent_clients_are_isolated(mcp_http):
    results: dict[str, dict] = {}

    async def run(login: str) -> None:
        async with handshake_session(mcp_http.url) as session:
            await sign_in_oidc(session, login=login)
            await anyio.sleep(0.2)
            refreshed = await call_ok(session, ToolName.REFRESH, {"provider": "oidc"})
            results[login] = refreshed

    async with anyio.create_task_group() as group:
        group.start_soon(run, "grace")
        group.start_soon(run, "heidi")

    assert results["grace"]["backstage_identity"]["user_entity_ref"] == "user:default/grace"
    assert results["heidi"]["backstage_identity"]["user_entity_ref"] == "user:default/heidi"
    assert results["grace"]["session_handle"] != results["heidi"]["session_handle"]


async def test_http_handle_of_other_session_rejected(mcp_http):
    async with handshake_session(mcp_http.url) as first:
        signed_in = await sign_in_oidc(first, login="ivan")
        async with handshake_session(mcp_http.url) as second:
            error = await call_error(
                second,
                ToolName.REFRESH,
                {"provider": "oidc", "session_handle": signed_in["session_handle"]},
            )
            own = await call_ok(second, ToolName.REFRESH, {"provider": "oidc", "optional": True})

    assert "session_handle is unknown or has expired" in error
    assert own["signed_in"] is False


def test_claude_desktop_example_starts_server(backstage):
    config = json.loads((REPO_ROOT / "claude_desktop_config.example.json").read_text())
    entry = config["mcpServers"]["backstage"]
    assert entry["env"]["BACKSTAGE_AUTH_URL"]
    assert "/path/to/backstage-auth-mcp" in entry["args"]
    args = [
        str(REPO_ROOT) if arg == "/path/to/backstage-auth-mcp" else arg for arg in entry["args"]
    ]

    async def list_tools() -> set[str]:
        parameters = StdioServerParameters(
            command=entry["command"],
            args=args,
            cwd=str(REPO_ROOT),
            env=server_env(**(entry["env"] | {"BACKSTAGE_AUTH_URL": backstage.auth_url})),
        )
        async with Client(parameters) as client:
            return {tool.name for tool in (await client.list_tools()).tools}

    assert anyio.run(list_tools) == {str(name) for name in ToolName}
