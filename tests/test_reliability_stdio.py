"""On stdio, every byte the server writes to stdout is a JSON-RPC message.

A raw subprocess, not the SDK client, reads stdout here, so a stray print or
a library warning on stdout fails the test instead of being skipped by a parser.
"""

from __future__ import annotations

import contextlib
import json
import select
import subprocess
import sys
import time

import pytest

from backstage_auth.names import ToolName
from tests.conftest import REPO_ROOT, server_env
from tests.fault_server import FaultServer
from tests.reliability_report import REPORT

EXPECTED_IDS = {1, 2, 3, 4, 5, 6, 7, 8, 9}


def rpc(message_id: int | None, method: str, params: dict | None = None) -> str:
    message: dict = {"jsonrpc": "2.0", "method": method}
    if message_id is not None:
        message["id"] = message_id
    if params is not None:
        message["params"] = params
    return json.dumps(message)


def call(message_id: int, tool: ToolName, arguments: dict) -> str:
    return rpc(message_id, "tools/call", {"name": tool, "arguments": arguments})


@pytest.mark.parametrize("entry", ["server.py", "backstage_auth"])
def test_stdout_carries_only_json_rpc(entry, tmp_path):
    with FaultServer() as faults:
        requests = [
            rpc(
                1,
                "initialize",
                {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "raw", "version": "0"},
                },
            ),
            rpc(None, "notifications/initialized"),
            rpc(2, "tools/list"),
            call(3, ToolName.REFRESH, {"provider": "ok"}),
            call(4, ToolName.REFRESH, {"provider": "html500"}),
            call(5, ToolName.REFRESH, {"provider": "truncated"}),
            call(6, ToolName.REFRESH, {"provider": "stall"}),
            call(7, ToolName.CALLBACK, {"provider": "../x", "code": "x"}),
            call(8, ToolName.REFRESH, {"provider": "nope"}),
            rpc(9, "no/such/method"),
        ]
        command = [sys.executable, "-W", "always", "-X", "dev"]
        command += [str(REPO_ROOT / "server.py")] if entry == "server.py" else ["-m", entry]
        stderr_path = tmp_path / "stderr.log"
        with stderr_path.open("w") as stderr:
            process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                cwd=tmp_path,
                env=server_env(
                    BACKSTAGE_AUTH_URL=faults.auth_url,
                    BACKSTAGE_AUTH_LOG_LEVEL="DEBUG",
                    BACKSTAGE_AUTH_TIMEOUT="1",
                    BACKSTAGE_AUTH_VERIFY_TLS="false",
                    PYTHONUNBUFFERED="0",
                ),
            )
            lines = exchange(process, requests, expected_ids=EXPECTED_IDS)
    bad = []
    answered = set()
    for line in lines:
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            bad.append(line)
            continue
        if message.get("jsonrpc") != "2.0":
            bad.append(line)
        answered.add(message.get("id"))
    REPORT.stdout.append((f"python {entry}, DEBUG, faults, warnings", len(lines), len(bad)))

    assert bad == []
    assert answered >= EXPECTED_IDS
    log = stderr_path.read_text()
    assert "DEBUG" in log
    assert "TLS certificate verification is OFF" in log


def exchange(
    process: subprocess.Popen[str], requests: list[str], expected_ids: set[int]
) -> list[str]:
    """Send the requests, read stdout until every expected id is answered, then close stdin.

    Closing stdin while replies are in flight drops them, so the test waits first.
    Returns every stdout line, including those written after stdin closed.
    """
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write("\n".join(requests) + "\n")
    process.stdin.flush()

    lines: list[str] = []
    seen: set[int] = set()
    deadline = time.monotonic() + 60
    while not expected_ids <= seen and time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 1.0)
        if not ready:
            continue
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        with contextlib.suppress(json.JSONDecodeError, AttributeError):
            seen.add(json.loads(line).get("id"))

    process.stdin.close()
    lines.extend(process.stdout.read().splitlines())
    process.wait(timeout=30)
    return lines
