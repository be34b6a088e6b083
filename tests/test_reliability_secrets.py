"""No secret in any tool result or log line, over stdio and streamable HTTP.

The upstream is a stand-in Backstage whose API key, tokens, cookies and stack
trace are marker strings; every tool runs on success and failure paths with
DEBUG logging, and the collected results and logs are searched for markers.
"""

from __future__ import annotations

import sys
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from backstage_auth.names import ToolName
from tests.conftest import REPO_ROOT, launch_http_server, server_env, stop_process
from tests.flows import text_of
from tests.marker_backstage import COOKIE_MARKERS, MARKERS, TOKEN_MARKERS, MarkerBackstage
from tests.reliability_report import REPORT

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def marker_backstage():
    with MarkerBackstage() as server:
        yield server


def server_variables(auth_url: str, reveal: bool) -> dict[str, str]:
    return {
        "BACKSTAGE_AUTH_URL": auth_url,
        "BACKSTAGE_API_KEY": MARKERS["api_key"],
        "BACKSTAGE_AUTH_LOG_LEVEL": "DEBUG",
        "BACKSTAGE_AUTH_REVEAL_TOKENS": "true" if reveal else "false",
    }


async def exercise_every_tool(session: ClientSession) -> list[str]:
    """Run each tool on success and failure paths; return every result as text."""
    outputs: list[str] = []

    async def call(tool: ToolName, arguments: dict) -> dict:
        result = await session.call_tool(tool, arguments)
        outputs.append(text_of(result))
        outputs.append(repr(result.structured_content))
        return result.structured_content or {}

    started = await call(ToolName.START, {"provider": "oidc"})
    state = parse_qs(urlsplit(started["authorization_url"]).query)["state"][0]
    await call(ToolName.CALLBACK, {"provider": "oidc", "code": "ok", "state": state})
    await call(ToolName.REFRESH, {"provider": "oidc"})
    await call(ToolName.LOGOUT, {"provider": "oidc"})
    await call(ToolName.REFRESH, {"provider": "oidc"})
    await call(ToolName.REFRESH, {"provider": "oidc", "optional": True})
    await call(ToolName.CALLBACK, {"provider": "oidc", "code": "deny", "state": state})
    await call(ToolName.START, {"provider": "broken"})
    await call(ToolName.REFRESH, {"provider": "broken"})
    await call(ToolName.LOGOUT, {"provider": "broken"})
    await call(ToolName.REFRESH, {"provider": "../x"})
    return outputs


@asynccontextmanager
async def stdio_session(auth_url: str, reveal: bool, log_path: Path):
    parameters = StdioServerParameters(
        command=sys.executable,
        args=[str(REPO_ROOT / "server.py")],
        cwd=str(REPO_ROOT),
        env=server_env(**server_variables(auth_url, reveal)),
    )
    with log_path.open("w") as errlog:
        async with (
            stdio_client(parameters, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session


@asynccontextmanager
async def http_session(auth_url: str, reveal: bool, tmp_path: Path):
    server = launch_http_server(tmp_path, **server_variables(auth_url, reveal))
    try:
        async with (
            streamable_http_client(server.url) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session, server
    finally:
        stop_process(server.process)


def found(markers: list[str], text: str) -> list[str]:
    return [marker for marker in markers if marker in text]


@pytest.mark.parametrize("transport", ["stdio", "streamable-http"])
@pytest.mark.parametrize("reveal", [False, True], ids=["redacted", "reveal"])
async def test_no_secret_in_results_or_logs(marker_backstage, tmp_path, transport, reveal):
    cookies_before = len(marker_backstage.received_cookies)
    if transport == "stdio":
        log_path = tmp_path / "stdio.log"
        async with stdio_session(marker_backstage.auth_url, reveal, log_path) as session:
            outputs = await exercise_every_tool(session)
        logs = log_path.read_text()
    else:
        async with http_session(marker_backstage.auth_url, reveal, tmp_path) as (session, server):
            outputs = await exercise_every_tool(session)
        logs = server.log()

    results = "\n".join(outputs)
    never = [MARKERS["api_key"], MARKERS["stack"], *(MARKERS[name] for name in COOKIE_MARKERS)]
    tokens = [MARKERS[name] for name in TOKEN_MARKERS]
    leaked = found(never, results + logs) + found(tokens, logs)
    if not reveal:
        leaked += found(tokens, results)
    REPORT.secrets.append(
        (
            f"{transport}, {'reveal on' if reveal else 'redacted'}",
            len(outputs) // 2,
            len(logs.splitlines()),
            len(leaked),
        )
    )

    assert "DEBUG" in logs
    assert leaked == []
    if reveal:
        assert found(tokens, results) == tokens
    sent = "".join(marker_backstage.received_cookies[cookies_before:])
    assert MARKERS["refresh_cookie"] in sent
    assert MARKERS["nonce_cookie"] in sent
