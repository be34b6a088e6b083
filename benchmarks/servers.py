"""The three MCP servers under test, and how to start them over stdio and HTTP.

* `ours`: backstage-auth-mcp, started as `python -m backstage_auth`.
* `floor`: `floor_server.py`, a one-tool `MCPServer` on the same SDK.
* `peer`: `peer_fastmcp.py`, fastmcp's generic OpenAPI-to-MCP proxy.

Every server is a subprocess of this one on 127.0.0.1 and is stopped by its
process id. Server logs go to files in the run's log directory.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from backstage_auth.names import ToolName
from benchmarks.procfs import child_pids
from tests.backstage_backend import stop_process

BENCH_DIR = Path(__file__).resolve().parent
LOOPBACK = "127.0.0.1"
HTTP_STARTUP_TIMEOUT_SECONDS = 60.0
# Generous, so that a stalled call fails the run instead of hanging it.
CALL_TIMEOUT_SECONDS = 30.0

# Backstage rejects refresh and logout without this header. The peer's
# OpenAPI document makes it a tool argument, as a generic proxy must.
XHR_ARGUMENT = {"X-Requested-With": "XMLHttpRequest"}


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ServerSpec:
    """One server under test: its commands and the tool calls for each benchmarked route."""

    key: str
    label: str
    stdio_args: tuple[str, ...]
    http_args: tuple[str, ...]  # followed by the port number
    guest_refresh: ToolCall
    oidc_refresh: ToolCall | None  # None: the server has no tool for it
    # Extra environment variables, such as PYTHONPATH for another copy of the code.
    env: dict[str, str] = field(default_factory=dict)

    def stdio_command(self, *, python_flags: tuple[str, ...] = ()) -> list[str]:
        return [sys.executable, *python_flags, *self.stdio_args]

    def http_command(self, port: int) -> list[str]:
        return [sys.executable, *self.http_args, str(port)]


def ours() -> ServerSpec:
    return ServerSpec(
        key="ours",
        label="backstage-auth-mcp",
        stdio_args=("-m", "backstage_auth"),
        http_args=(
            "-m",
            "backstage_auth",
            "--transport",
            "streamable-http",
            "--host",
            LOOPBACK,
            "--port",
        ),
        guest_refresh=ToolCall(ToolName.REFRESH, {"provider": "guest"}),
        oidc_refresh=ToolCall(ToolName.REFRESH, {"provider": "oidc"}),
    )


def floor(auth_url: str) -> ServerSpec:
    script = str(BENCH_DIR / "floor_server.py")
    return ServerSpec(
        key="floor",
        label="floor MCPServer",
        stdio_args=(script, auth_url),
        http_args=(script, auth_url, "--transport", "streamable-http", "--port"),
        guest_refresh=ToolCall("guest-refresh"),
        oidc_refresh=None,
    )


def peer(auth_url: str) -> ServerSpec:
    script = str(BENCH_DIR / "peer_fastmcp.py")
    return ServerSpec(
        key="peer",
        label="fastmcp OpenAPI proxy",
        stdio_args=(script, auth_url),
        http_args=(script, auth_url, "--transport", "http", "--port"),
        guest_refresh=ToolCall(
            "refreshAuthenticationToken",
            {"provider": "guest", "env": "development", **XHR_ARGUMENT},
        ),
        oidc_refresh=ToolCall(
            "refreshAuthenticationToken",
            {"provider": "oidc", "env": "development", **XHR_ARGUMENT},
        ),
    )


def server_env(auth_url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of a server process: this one without BACKSTAGE_*, plus the backend URL."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("BACKSTAGE_")}
    env["BACKSTAGE_AUTH_URL"] = auth_url
    return env | (extra or {})


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


_log_numbers = itertools.count(1)


def new_log_path(log_dir: Path, stem: str) -> Path:
    return log_dir / f"{next(_log_numbers):03d}-{stem}.log"


@dataclass
class HttpServer:
    spec: ServerSpec
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def port(self) -> int:
        port = httpx2.URL(self.url).port
        assert port is not None
        return port


@contextmanager
def http_servers(
    specs: dict[str, ServerSpec], auth_url: str, log_dir: Path
) -> Iterator[dict[str, HttpServer]]:
    """Run every spec over streamable HTTP on a free loopback port until the block ends.

    The servers start together and the block begins once all of them listen.
    """
    servers: dict[str, HttpServer] = {}
    try:
        for key, spec in specs.items():
            port = free_port()
            log_path = new_log_path(log_dir, f"{spec.key}-http")
            with log_path.open("wb") as log:
                process = subprocess.Popen(  # noqa: S603 (sys.executable and fixed arguments)
                    spec.http_command(port),
                    cwd=log_dir,
                    env=server_env(auth_url, spec.env),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            servers[key] = HttpServer(spec, f"http://{LOOPBACK}:{port}/mcp", process, log_path)
        for server in servers.values():
            _wait_for_port(server.process, server.port, server.log_path)
        yield servers
    finally:
        for server in servers.values():
            stop_process(server.process)


def _wait_for_port(process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
    deadline = time.monotonic() + HTTP_STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"{process.args} exited with code {process.returncode}; log: {log_path}"
            )
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(
        f"{process.args} did not listen on port {port} within "
        f"{HTTP_STARTUP_TIMEOUT_SECONDS:.0f} s; log: {log_path}"
    )


@dataclass
class StdioServer:
    client: Client
    pid: int


@asynccontextmanager
async def stdio_server(
    spec: ServerSpec,
    auth_url: str,
    log_dir: Path,
    *,
    python_flags: tuple[str, ...] = (),
    log_path: Path | None = None,
) -> AsyncIterator[StdioServer]:
    """Start `spec` as a stdio subprocess and connect the SDK's `Client` to it.

    `python_flags` go before the script, such as `-X importtime`. The server's
    stderr goes to `log_path`, or to a new file in `log_dir`.
    """
    command = spec.stdio_command(python_flags=python_flags)
    parameters = StdioServerParameters(
        command=command[0], args=command[1:], cwd=str(log_dir), env=server_env(auth_url, spec.env)
    )
    log_path = log_path or new_log_path(log_dir, f"{spec.key}-stdio")
    before = child_pids()
    with log_path.open("w") as errlog:
        transport = stdio_client(parameters, errlog=errlog)
        async with Client(transport, read_timeout_seconds=CALL_TIMEOUT_SECONDS) as client:
            started = child_pids() - before
            if len(started) != 1:
                raise RuntimeError(f"expected one new child process for {command}, found {started}")
            yield StdioServer(client, started.pop())
