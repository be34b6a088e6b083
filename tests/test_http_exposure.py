"""HTTP exposure: Host and Origin allowlists, the bearer token, /healthz and the bind check."""

from __future__ import annotations

import subprocess
import sys

import httpx2
import pytest
from mcp import Client, ClientSession
from mcp.client.streamable_http import streamable_http_client

from backstage_auth.http_app import ExposureError, check_exposure
from backstage_auth.http_security import check_bearer, matches
from backstage_auth.names import ToolName
from backstage_auth.settings import Settings
from tests.conftest import REPO_ROOT, free_port, launch_http_server, server_env, stop_process

UNUSED_UPSTREAM = f"http://127.0.0.1:{free_port()}/api/auth"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "0"},
    },
}
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


@pytest.fixture
def plain_server(tmp_path):
    server = launch_http_server(tmp_path, BACKSTAGE_AUTH_URL=UNUSED_UPSTREAM)
    yield server
    stop_process(server.process)


@pytest.fixture
def token_server(tmp_path):
    server = launch_http_server(
        tmp_path,
        BACKSTAGE_AUTH_URL=UNUSED_UPSTREAM,
        BACKSTAGE_AUTH_HTTP_TOKEN="inbound-token-marker",
        BACKSTAGE_AUTH_ALLOWED_HOSTS="mcp.proxy.test:*",
        BACKSTAGE_AUTH_ALLOWED_ORIGINS="https://app.proxy.test",
    )
    yield server
    stop_process(server.process)


def post(url: str, **headers: str) -> httpx2.Response:
    return httpx2.post(url, json=INITIALIZE, headers=MCP_HEADERS | headers, timeout=10)


def test_loopback_host_accepted(plain_server):
    assert post(plain_server.url).status_code == 200


def test_foreign_host_rejected(plain_server):
    response = post(plain_server.url, host="attacker.test")

    assert response.status_code == 421
    assert response.headers["content-type"] == "application/problem+json"
    assert "BACKSTAGE_AUTH_ALLOWED_HOSTS" in response.json()["detail"]
    assert "Rejected a request with Host 'attacker.test'" in plain_server.log()


def test_foreign_origin_rejected(plain_server):
    response = post(plain_server.url, origin="https://attacker.test")

    assert response.status_code == 403
    assert "BACKSTAGE_AUTH_ALLOWED_ORIGINS" in response.json()["detail"]


def test_loopback_origin_accepted(plain_server):
    port = plain_server.url.split(":")[2].split("/")[0]

    assert post(plain_server.url, origin=f"http://127.0.0.1:{port}").status_code == 200


def test_healthz_reveals_nothing(plain_server):
    response = httpx2.get(plain_server.url.replace("/mcp", "/healthz"), headers={"host": "x.test"})

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_token_required(token_server):
    missing = post(token_server.url)
    wrong = post(token_server.url, authorization="Bearer wrong")

    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert wrong.status_code == 401
    assert "inbound-token-marker" not in missing.text + wrong.text + token_server.log()


def test_token_and_configured_proxy_host_accepted(token_server):
    response = post(
        token_server.url,
        authorization="Bearer inbound-token-marker",
        host="mcp.proxy.test:443",
        origin="https://app.proxy.test",
    )

    assert response.status_code == 200


def test_healthz_needs_no_token(token_server):
    response = httpx2.get(token_server.url.replace("/mcp", "/healthz"))

    assert response.status_code == 200


@pytest.mark.anyio
async def test_mcp_client_with_token(token_server):
    headers = {"Authorization": "Bearer inbound-token-marker"}
    async with (
        httpx2.AsyncClient(headers=headers) as http,
        streamable_http_client(token_server.url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        tools = await session.list_tools()

    assert {tool.name for tool in tools.tools} == {str(name) for name in ToolName}


@pytest.mark.anyio
async def test_read_only_hides_logout(tmp_path):
    server = launch_http_server(tmp_path, "--read-only", BACKSTAGE_AUTH_URL=UNUSED_UPSTREAM)
    try:
        async with Client(server.url) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            result = await client.call_tool(ToolName.LOGOUT, {"provider": "oidc"})
    finally:
        stop_process(server.process)

    assert ToolName.LOGOUT not in names
    assert len(names) == 3
    assert result.is_error
    assert "Unknown tool" in result.content[0].text


@pytest.mark.anyio
async def test_tools_allowlist(tmp_path):
    server = launch_http_server(
        tmp_path,
        "--tools",
        f"{ToolName.REFRESH},{ToolName.LOGOUT}",
        "--read-only",
        BACKSTAGE_AUTH_URL=UNUSED_UPSTREAM,
    )
    try:
        async with Client(server.url) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
    finally:
        stop_process(server.process)

    assert names == {ToolName.REFRESH}


def run_cli(*args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backstage_auth", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO_ROOT,
        env=server_env(BACKSTAGE_AUTH_URL=UNUSED_UPSTREAM, **variables),
    )


def test_unknown_tool_name_fails_at_start():
    completed = run_cli("--tools", "backstage-nope")

    assert completed.returncode == 2
    assert "unknown tool name(s) 'backstage-nope'" in completed.stderr
    assert ToolName.REFRESH in completed.stderr


def test_public_bind_without_token_refused():
    completed = run_cli("--transport", "streamable-http", "--host", "0.0.0.0")

    assert completed.returncode == 2
    assert "refusing to listen on '0.0.0.0' without a bearer token" in completed.stderr
    assert "BACKSTAGE_AUTH_HTTP_TOKEN" in completed.stderr
    assert completed.stdout == ""


@pytest.mark.parametrize(
    ("host", "token", "override", "refused"),
    [
        ("127.0.0.1", None, False, False),
        ("localhost", None, False, False),
        ("::1", None, False, False),
        ("0.0.0.0", None, False, True),
        ("::", None, False, True),
        ("0.0.0.0", "t" * 32, False, False),
        ("0.0.0.0", None, True, False),
    ],
)
def test_exposure_check(host, token, override, refused):
    settings = Settings(
        _env_file=None, host=host, http_token=token, allow_unauthenticated_remote=override
    )

    if refused:
        with pytest.raises(ExposureError):
            check_exposure(settings)
    else:
        check_exposure(settings)


@pytest.mark.parametrize(
    ("value", "patterns", "expected"),
    [
        ("127.0.0.1:9090", ["127.0.0.1:*"], True),
        ("127.0.0.1", ["127.0.0.1:*"], False),
        ("127.0.0.1.attacker.test:80", ["127.0.0.1:*"], False),
        ("127.0.0.1:80x", ["127.0.0.1:*"], False),
        ("mcp.test", ["mcp.test"], True),
    ],
)
def test_host_pattern_matching(value, patterns, expected):
    assert matches(value, patterns) is expected


def test_bearer_comparison():
    assert check_bearer("Bearer abc", "abc")
    assert check_bearer("bearer abc", "abc")
    assert not check_bearer("Bearer abd", "abc")
    assert not check_bearer("Basic abc", "abc")
    assert not check_bearer(None, "abc")
    assert check_bearer(None, None)
