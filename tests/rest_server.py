"""Launch the REST adapter (alone or next to MCP) as `backstage-auth-mcp` on loopback ports."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import free_port, server_env

SESSION_COOKIE = "backstage_auth_session"


@dataclass
class RestServer:
    """A running `backstage-auth-mcp --surface rest|both` process."""

    rest_url: str
    mcp_url: str | None
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def launch_rest_server(
    tmp_path: Path, *args: str, surface: str = "rest", timeout: float = 30.0, **variables: str
) -> RestServer:
    """Start the server with `--surface surface` and wait until every port it serves accepts.

    `args` go to the command line and `variables` into its environment.
    """
    rest_port = free_port()
    mcp_port = free_port() if surface == "both" else None
    while mcp_port == rest_port:
        mcp_port = free_port()

    command = [
        sys.executable,
        "-m",
        "backstage_auth",
        "--surface",
        surface,
        "--host",
        "127.0.0.1",
        "--rest-port",
        str(rest_port),
    ]
    if mcp_port is not None:
        command += ["--port", str(mcp_port)]
    command += list(args)

    log_path = tmp_path / f"rest-{rest_port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=tmp_path, env=server_env(**variables), stdout=log, stderr=subprocess.STDOUT
        )

    ports = [rest_port] + ([mcp_port] if mcp_port is not None else [])
    deadline = time.monotonic() + timeout
    while ports:
        if process.poll() is not None:
            raise RuntimeError(f"REST server exited early:\n{log_path.read_text()}")
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise RuntimeError(
                f"REST server did not listen within {timeout} s:\n{log_path.read_text()}"
            )
        try:
            with socket.create_connection(("127.0.0.1", ports[0]), timeout=0.2):
                ports.pop(0)
        except OSError:
            time.sleep(0.1)

    return RestServer(
        rest_url=f"http://127.0.0.1:{rest_port}",
        mcp_url=f"http://127.0.0.1:{mcp_port}/mcp" if mcp_port is not None else None,
        process=process,
        log_path=log_path,
    )
