"""The server in real MCP clients, launched the way their users launch it.

Covers the MCP Inspector's CLI mode (stdio and streamable HTTP) and web UI
(through `mcp dev`), the SDK's `mcp run`, Claude Desktop's command from the
example config, and the tool-name length that clients with prefixed names need.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import secrets
import subprocess
import sys
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from backstage_auth.names import ToolName
from tests.conftest import REPO_ROOT, free_port, launch_http_server, server_env, stop_process
from tests.flows import call_ok
from tests.mcp_inspector import (
    EXIT_AUTH_REQUIRED,
    EXIT_OK,
    EXIT_TOOL_ERROR,
    INSPECTOR_DIR,
    InspectorWebUI,
    ensure_installed,
    inspector_env,
    run_inspector_cli,
    stop_process_group,
    wait_for_port,
)

EXAMPLE_CONFIG = REPO_ROOT / "claude_desktop_config.example.json"
EXAMPLE_REPO_PATH = "/path/to/backstage-auth-mcp"
GUEST_ENTITY_REF = "user:development/guest"

EXPECTED_ANNOTATIONS = {
    ToolName.START: (True, False, True),
    ToolName.CALLBACK: (True, False, True),
    ToolName.REFRESH: (True, False, True),
    ToolName.LOGOUT: (False, False, False),
}


def expected_annotations(tool: ToolName) -> dict[str, bool]:
    read_only, destructive, idempotent = EXPECTED_ANNOTATIONS[tool]
    return {
        "readOnlyHint": read_only,
        "destructiveHint": destructive,
        "idempotentHint": idempotent,
        "openWorldHint": True,
    }


@pytest.fixture(scope="session")
def inspector_installed() -> None:
    """The MCP Inspector from tests/inspector, installed with npm ci when needed."""
    ensure_installed()


def stdio_server_command() -> list[str]:
    return [sys.executable, str(REPO_ROOT / "server.py")]


def guest_refresh_arguments() -> list[str]:
    return [
        "--method",
        "tools/call",
        "--tool-name",
        ToolName.REFRESH,
        "--tool-arg",
        "provider=guest",
    ]


# MCP Inspector CLI over stdio


@pytest.mark.integration
@pytest.mark.timeout(60, func_only=True)
def test_inspector_stdio_lists_tools(inspector_installed, tmp_path):
    run = run_inspector_cli([*stdio_server_command(), "--method", "tools/list"], state_dir=tmp_path)

    assert run.returncode == EXIT_OK, run.describe()
    tools = {tool["name"]: tool for tool in run.result["tools"]}
    assert sorted(tools) == sorted(ToolName)
    for name in ToolName:
        assert tools[name]["annotations"] == expected_annotations(name), name
        assert "outputSchema" in tools[name], name


@pytest.mark.integration
@pytest.mark.timeout(60, func_only=True)
def test_inspector_stdio_guest_refresh(backstage, inspector_installed, tmp_path):
    run = run_inspector_cli(
        [
            "-e",
            f"BACKSTAGE_AUTH_URL={backstage.auth_url}",
            *stdio_server_command(),
            *guest_refresh_arguments(),
        ],
        state_dir=tmp_path,
    )

    assert run.returncode == EXIT_OK, run.describe()
    assert run.result["isError"] is False
    content = run.result["structuredContent"]
    assert content["signed_in"] is True
    assert content["backstage_identity"]["user_entity_ref"] == GUEST_ENTITY_REF


@pytest.mark.integration
@pytest.mark.timeout(60, func_only=True)
def test_inspector_stdio_unknown_provider_exits_5(backstage, inspector_installed, tmp_path):
    run = run_inspector_cli(
        [
            "-e",
            f"BACKSTAGE_AUTH_URL={backstage.auth_url}",
            *stdio_server_command(),
            "--method",
            "tools/call",
            "--tool-name",
            ToolName.REFRESH,
            "--tool-arg",
            "provider=nope",
        ],
        state_dir=tmp_path,
    )

    assert run.returncode == EXIT_TOOL_ERROR, run.describe()
    assert run.result["isError"] is True
    assert "Unknown auth provider 'nope'" in run.result["content"][0]["text"]
    assert run.error is not None, run.describe()
    assert run.error["code"] == "tool_is_error"


@pytest.mark.integration
@pytest.mark.timeout(60, func_only=True)
def test_inspector_strict_schema_lint_passes(inspector_installed, tmp_path):
    # --strict reports tool schemas that some model APIs reject, and exits 6
    # when any finding has error severity.
    run = run_inspector_cli(
        [*stdio_server_command(), "--method", "tools/list", "--strict"], state_dir=tmp_path
    )

    assert run.returncode == EXIT_OK, run.describe()


# MCP Inspector CLI over streamable HTTP


@pytest.mark.integration
@pytest.mark.timeout(90, func_only=True)
@pytest.mark.parametrize("era", ["legacy", "modern"])
def test_inspector_http_lists_tools_and_refreshes(backstage, inspector_installed, tmp_path, era):
    # The legacy era negotiates 2025-11-25 with an Mcp-Session-Id. The modern
    # era is the sessionless 2026-07-28 protocol.
    server = launch_http_server(tmp_path, BACKSTAGE_AUTH_URL=backstage.auth_url)
    try:
        target = [server.url, "--transport", "http", "--protocol-era", era]
        listed = run_inspector_cli([*target, "--method", "tools/list"], state_dir=tmp_path)
        refreshed = run_inspector_cli([*target, *guest_refresh_arguments()], state_dir=tmp_path)
    finally:
        stop_process(server.process)

    assert listed.returncode == EXIT_OK, listed.describe()
    tools = {tool["name"]: tool for tool in listed.result["tools"]}
    assert sorted(tools) == sorted(ToolName)
    for name in ToolName:
        assert tools[name]["annotations"] == expected_annotations(name), name
    assert refreshed.returncode == EXIT_OK, refreshed.describe()
    content = refreshed.result["structuredContent"]
    assert content["signed_in"] is True
    assert content["backstage_identity"]["user_entity_ref"] == GUEST_ENTITY_REF


@pytest.mark.integration
@pytest.mark.timeout(90, func_only=True)
def test_inspector_http_bearer_token(backstage, inspector_installed, tmp_path):
    token = secrets.token_urlsafe(32)
    server = launch_http_server(
        tmp_path, BACKSTAGE_AUTH_URL=backstage.auth_url, BACKSTAGE_AUTH_HTTP_TOKEN=token
    )
    try:
        # --stored-auth-only keeps the Inspector from starting an interactive
        # OAuth sign-in when the server returns 401.
        without_header = run_inspector_cli(
            [server.url, "--stored-auth-only", "--method", "tools/list"], state_dir=tmp_path
        )
        with_header = run_inspector_cli(
            [server.url, "--header", f"Authorization: Bearer {token}", *guest_refresh_arguments()],
            state_dir=tmp_path,
        )
    finally:
        stop_process(server.process)

    assert without_header.returncode == EXIT_AUTH_REQUIRED, without_header.describe()
    assert without_header.error is not None, without_header.describe()
    assert "401" in without_header.error["message"]
    assert with_header.returncode == EXIT_OK, with_header.describe()
    content = with_header.result["structuredContent"]
    assert content["backstage_identity"]["user_entity_ref"] == GUEST_ENTITY_REF


# The SDK's `mcp` CLI


@pytest.mark.integration
@pytest.mark.anyio
@pytest.mark.timeout(90, func_only=True)
async def test_mcp_run_serves_stdio(backstage):
    parameters = StdioServerParameters(
        command="uv",
        args=["run", "mcp", "run", "server.py"],
        cwd=str(REPO_ROOT),
        env=server_env(BACKSTAGE_AUTH_URL=backstage.auth_url),
    )
    async with Client(parameters) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        guest = await call_ok(client, ToolName.REFRESH, {"provider": "guest"})

    assert tools == set(ToolName)
    assert guest["signed_in"] is True
    assert guest["backstage_identity"]["user_entity_ref"] == GUEST_ENTITY_REF


@pytest.mark.integration
@pytest.mark.timeout(180, func_only=True)
def test_mcp_dev_serves_inspector_ui(backstage, inspector_installed, tmp_path):
    # mcp dev runs `npx @modelcontextprotocol/inspector uv run --with mcp==<version>
    # mcp run <file>`. The working directory tests/inspector lets npx find the
    # pinned Inspector, and uv finds this project in a parent directory.
    ui_port, sandbox_port, app_origin_port = free_port(), free_port(), free_port()
    token = secrets.token_hex(32)
    env = server_env(BACKSTAGE_AUTH_URL=backstage.auth_url) | inspector_env(
        tmp_path,
        CLIENT_PORT=str(ui_port),
        MCP_SANDBOX_PORT=str(sandbox_port),
        MCP_APP_ORIGIN_PORT=str(app_origin_port),
        MCP_INSPECTOR_API_TOKEN=token,
        MCP_AUTO_OPEN_ENABLED="false",
    )
    server_file = str(REPO_ROOT / "server.py")
    log_path = tmp_path / "mcp-dev.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["uv", "run", "mcp", "dev", server_file],
            cwd=INSPECTOR_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    web = InspectorWebUI(f"http://127.0.0.1:{ui_port}", token)
    try:
        wait_for_port(ui_port, process, log_path, timeout=90)
        page = web.client.get(f"{web.base_url}/")
        config = web.get("/api/config").json()

        # The page starts the server with HOME, LOGNAME, PATH, SHELL, TERM and
        # USER from mcp dev's environment plus the variables the user enters
        # under Environment Variables, so BACKSTAGE_AUTH_URL has to go there.
        environment = config["defaultEnvironment"] | {"BACKSTAGE_AUTH_URL": backstage.auth_url}
        connected = web.post(
            "/api/mcp/connect",
            {
                "config": {
                    "type": config["defaultTransport"],
                    "command": config["defaultCommand"],
                    "args": config["defaultArgs"],
                    "env": environment,
                    "cwd": config["defaultCwd"],
                }
            },
        )
        session_id = connected["sessionId"]
        web.send(
            session_id,
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "test_clients", "version": "1"},
                },
            },
        )
        web.send(session_id, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        web.send(
            session_id,
            {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": {"name": ToolName.REFRESH, "arguments": {"provider": "guest"}},
            },
        )
        response = web.read_response(session_id, 2, timeout=30)
        web.post("/api/mcp/disconnect", {"sessionId": session_id})
    finally:
        web.close()
        stop_process_group(process)

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    mcp_version = importlib.metadata.version("mcp")
    assert config["defaultCommand"] == "uv"
    assert config["defaultArgs"] == [
        "run",
        "--with",
        f"mcp=={mcp_version}",
        "mcp",
        "run",
        server_file,
    ]
    assert "BACKSTAGE_AUTH_URL" not in config["defaultEnvironment"]
    result = response["result"]
    assert result["isError"] is False, result
    assert result["structuredContent"]["backstage_identity"]["user_entity_ref"] == GUEST_ENTITY_REF


# Claude Desktop and Claude Code


def example_server_entry() -> tuple[str, dict[str, Any]]:
    servers = json.loads(EXAMPLE_CONFIG.read_text())["mcpServers"]
    assert len(servers) == 1, servers
    return next(iter(servers.items()))


def test_prefixed_tool_names_fit_64_chars():
    # Claude Code names a server's tools mcp__<server key>__<tool>. Some model
    # APIs behind MCP clients, such as Amazon Bedrock's Converse API, accept
    # tool names of at most 64 characters from [a-zA-Z0-9_-].
    key, _ = example_server_entry()
    prefixed = [f"mcp__{key}__{name}" for name in ToolName]

    assert key == "backstage"
    for name in prefixed:
        assert len(name) <= 64, f"{name} has {len(name)} characters"
        assert re.fullmatch(r"[A-Za-z0-9_-]+", name), name


@pytest.mark.integration
@pytest.mark.anyio
@pytest.mark.timeout(90, func_only=True)
async def test_claude_desktop_command_from_other_cwd(backstage, tmp_path):
    # The command runs as written from a directory outside the repository, with
    # only the entry's env over the SDK stdio client's default variables (HOME,
    # LOGNAME, PATH, SHELL, TERM and USER), not the test runner's environment.
    _, entry = example_server_entry()
    args = [str(REPO_ROOT) if arg == EXAMPLE_REPO_PATH else arg for arg in entry["args"]]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    parameters = StdioServerParameters(
        command=entry["command"],
        args=args,
        cwd=str(elsewhere),
        env=entry["env"] | {"BACKSTAGE_AUTH_URL": backstage.auth_url},
    )
    async with Client(parameters) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        guest = await call_ok(client, ToolName.REFRESH, {"provider": "guest"})

    assert args == ["--directory", str(REPO_ROOT), "run", "backstage-auth-mcp"]
    assert tools == set(ToolName)
    assert guest["backstage_identity"]["user_entity_ref"] == GUEST_ENTITY_REF
