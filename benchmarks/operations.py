"""Which of the four Backstage operations each server completes, as an agent would call them.

The oidc sign-in runs over stdio against a fresh process of each server:
start, the user's browser at the mock identity provider, callback, refresh
and logout. A second check runs over streamable HTTP with two 2025-11-25
sessions: the first signs in, then the second calls oidc refresh.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from mcp import Client, ClientSession
from mcp.client.streamable_http import streamable_http_client

from backstage_auth.names import ToolName
from benchmarks.calls import (
    CallFailedError,
    browser_callback_url,
    call_tool,
    peer_callback,
    peer_start,
    result_text,
    sign_in_ours,
    sign_in_peer,
)
from benchmarks.servers import XHR_ARGUMENT, HttpServer, ServerSpec, ToolCall, stdio_server

logger = logging.getLogger(__name__)

START = "start (GET /{provider}/start)"
CALLBACK = "callback (GET /{provider}/handler/frame)"
REFRESH = "oidc refresh after sign-in (GET /{provider}/refresh)"
LOGOUT = "logout (POST /{provider}/logout)"
ISOLATION = "session isolation: a 2nd HTTP session must not get the 1st session's sign-in"
OPERATIONS = (START, CALLBACK, REFRESH, LOGOUT, ISOLATION)


@dataclass(frozen=True)
class Outcome:
    completed: bool
    detail: str


async def check_operations(
    auth_url: str,
    specs: dict[str, ServerSpec],
    http_servers: dict[str, HttpServer],
    log_dir: Path,
) -> dict[tuple[str, str], Outcome]:
    """Return the outcome of each operation for "ours" and "peer", keyed (server, operation)."""
    logger.info("operations: sign-in, refresh, logout and session isolation")
    outcomes: dict[tuple[str, str], Outcome] = {}
    async with stdio_server(specs["ours"], auth_url, log_dir) as server:
        for operation, outcome in (await _ours_sign_in(server.client)).items():
            outcomes[("ours", operation)] = outcome
    async with stdio_server(specs["peer"], auth_url, log_dir) as server:
        for operation, outcome in (await _peer_sign_in(server.client)).items():
            outcomes[("peer", operation)] = outcome
    outcomes[("ours", ISOLATION)] = await _ours_isolation(http_servers["ours"].url)
    outcomes[("peer", ISOLATION)] = await _peer_isolation(http_servers["peer"].url)
    return outcomes


async def _ours_sign_in(client: Client) -> dict[str, Outcome]:
    started = await call_tool(client, ToolCall(ToolName.START, {"provider": "oidc"}))
    callback_url = await browser_callback_url(started["authorization_url"], "bench-ops")
    signed_in = await call_tool(
        client, ToolCall(ToolName.CALLBACK, {"provider": "oidc", "callback_url": callback_url})
    )
    refreshed = await call_tool(client, ToolCall(ToolName.REFRESH, {"provider": "oidc"}))
    await call_tool(client, ToolCall(ToolName.LOGOUT, {"provider": "oidc"}))
    after = await call_tool(
        client, ToolCall(ToolName.REFRESH, {"provider": "oidc", "optional": True})
    )
    return {
        START: Outcome(True, "returns authorization_url"),
        CALLBACK: Outcome(
            True, f"returns identity {signed_in['backstage_identity']['user_entity_ref']}"
        ),
        REFRESH: Outcome(
            True, f"returns identity {refreshed['backstage_identity']['user_entity_ref']}"
        ),
        LOGOUT: Outcome(True, f"signed out; refresh then gives signed_in={after['signed_in']}"),
    }


async def _peer_sign_in(client: Client) -> dict[str, Outcome]:
    authorization_url, start_detail = await peer_start(client)
    outcomes = {
        START: Outcome(
            False,
            start_detail
            + (
                "; the authorization URL appears only inside the error text"
                if authorization_url
                else ""
            ),
        )
    }
    if authorization_url is None:
        return outcomes

    callback_url = await browser_callback_url(authorization_url, "bench-ops")
    outcomes[CALLBACK] = Outcome(
        False,
        await peer_callback(client, callback_url)
        + "; Backstage's HTML result page never reaches the agent as data",
    )
    outcomes[REFRESH] = await _peer_tool_outcome(
        client,
        ToolCall(
            "refreshAuthenticationToken",
            {"provider": "oidc", "env": "development", **XHR_ARGUMENT},
        ),
        "returns Backstage's JSON, raw tokens included, from the process-wide cookie jar",
    )
    outcomes[LOGOUT] = await _peer_tool_outcome(
        client,
        ToolCall("logoutProvider", {"provider": "oidc", "env": "development", **XHR_ARGUMENT}),
        "signed out",
    )
    return outcomes


async def _peer_tool_outcome(client: Client, call: ToolCall, success: str) -> Outcome:
    try:
        result = await client.call_tool(call.name, call.arguments)
    except RuntimeError as exc:
        return Outcome(False, f"client raised: {exc}")
    if result.is_error:
        return Outcome(False, "isError: " + result_text(result)[:160])
    return Outcome(True, success)


@asynccontextmanager
async def _handshake_session(url: str):
    """Open a 2025-11-25 client with its own Mcp-Session-Id, as the MCP Inspector connects."""
    async with streamable_http_client(url) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


async def _ours_isolation(url: str) -> Outcome:
    async with _handshake_session(url) as first, _handshake_session(url) as second:
        await sign_in_ours(first, "bench-first")
        result = await second.call_tool(ToolName.REFRESH, {"provider": "oidc", "optional": True})
        await first.call_tool(ToolName.LOGOUT, {"provider": "oidc"})
    if result.is_error:
        raise CallFailedError(f"optional refresh failed: {result_text(result)[:300]}")
    signed_in = result.structured_content["signed_in"]
    if signed_in:
        return Outcome(False, "the 2nd session got the 1st session's sign-in")
    return Outcome(True, "the 2nd session has its own cookies and gets signed_in=false")


async def _peer_isolation(url: str) -> Outcome:
    async with _handshake_session(url) as first, _handshake_session(url) as second:
        await sign_in_peer(first, "bench-first")
        result = await second.call_tool(
            "refreshAuthenticationToken",
            {"provider": "oidc", "env": "development", **XHR_ARGUMENT},
        )
    if result.is_error:
        return Outcome(True, "the 2nd session is not signed in")
    who = (result.structured_content or {}).get("profile", {}).get("email", "another user")
    return Outcome(False, f"one cookie jar per process: the 2nd session got {who}'s sign-in")
