"""Fixtures shared by the test suite: the real Backstage backend and server launchers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from backstage_auth.settings import Settings
from tests.backstage_backend import BackstageBackend, start_backend, stop_process

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch, tmp_path):
    """Keep the developer's BACKSTAGE_* variables and ./.env out of every test."""
    for name in list(os.environ):
        if name.startswith("BACKSTAGE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def backstage() -> Iterator[BackstageBackend]:
    """A real Backstage auth backend with guest and oidc providers, for the whole session."""
    with start_backend() as backend:
        yield backend


@pytest.fixture
def settings(backstage: BackstageBackend) -> Settings:
    return Settings(auth_url=backstage.auth_url, _env_file=None)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_env(**variables: str) -> dict[str, str]:
    """Environment for a server subprocess: this one minus BACKSTAGE_*, plus `variables`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKSTAGE_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env | variables


@dataclass
class HttpServer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def launch_http_server(
    tmp_path: Path, *args: str, timeout: float = 30.0, **variables: str
) -> HttpServer:
    """Start `backstage-auth-mcp --transport streamable-http` on a free loopback port."""
    port = free_port()
    log_path = tmp_path / f"mcp-http-{port}.log"
    command = [
        sys.executable,
        "-m",
        "backstage_auth",
        "--transport",
        "streamable-http",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *args,
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=tmp_path, env=server_env(**variables), stdout=log, stderr=subprocess.STDOUT
        )

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"MCP HTTP server exited early:\n{log_path.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return HttpServer(f"http://127.0.0.1:{port}/mcp", process, log_path)
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(
        f"MCP HTTP server did not listen within {timeout} s:\n{log_path.read_text()}"
    )


@pytest.fixture
def mcp_http(backstage: BackstageBackend, tmp_path: Path) -> Iterator[HttpServer]:
    """The server over streamable HTTP, pointed at the test backend."""
    server = launch_http_server(tmp_path, BACKSTAGE_AUTH_URL=backstage.auth_url)
    yield server
    stop_process(server.process)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Publish docs/reliability.md when every test passed and every figure was collected."""
    from tests.reliability_report import REPORT, write_report

    if exitstatus == 0 and REPORT.complete():
        write_report()
