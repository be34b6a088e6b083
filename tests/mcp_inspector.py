"""Install the MCP Inspector pinned in ``tests/inspector`` and drive its CLI and web UI.

``tests/inspector/package.json`` pins ``@modelcontextprotocol/inspector``
exactly and ``package-lock.json`` pins its dependencies, so ``npm ci``
installs the same tree on every machine. The tests run the Inspector the way
its documentation shows, ``npx --no-install inspector --cli <server> --method
...``, with the working directory set to ``tests/inspector`` so that npx finds
this install and never downloads another version.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2

INSPECTOR_DIR = Path(__file__).resolve().parent / "inspector"

# Exit codes of `inspector --cli`, from EXIT_CODES in the CLI bundle of
# @modelcontextprotocol/inspector 2.12.0 (clients/cli/build/index.js).
EXIT_OK = 0
EXIT_AUTH_REQUIRED = 3
EXIT_TOOL_ERROR = 5

NPM_CI_TIMEOUT_SECONDS = 600.0
LOG_TAIL_LINES = 40


class InspectorSetupError(RuntimeError):
    """Node.js or npm is missing, or ``npm ci`` failed in ``tests/inspector``."""


def ensure_installed() -> None:
    """Run ``npm ci`` in ``tests/inspector`` unless its install is up to date.

    Works like ``tests.backstage_backend.ensure_installed``: the install counts
    as up to date when ``node_modules/.package-lock.json``, which npm writes at
    the end of an install, is not older than ``package-lock.json``, and a file
    lock serialises concurrent callers. ``npm ci`` took 12 s with an empty npm
    cache on a 2-core Debian machine and installs 112 MB. The Inspector declares
    Node.js >=22.19, so npm prints EBADENGINE warnings on Node.js 20, but the
    install, the CLI mode and the web UI worked on Node.js 20.20.
    """
    missing = [tool for tool in ("node", "npm", "npx") if shutil.which(tool) is None]
    if missing:
        raise InspectorSetupError(
            f"{' and '.join(missing)} not found on PATH. Install Node.js 20.19 or newer "
            "with npm to run the MCP Inspector tests."
        )

    lock_path = Path(tempfile.gettempdir()) / (
        "mcp-inspector-" + hashlib.sha256(bytes(INSPECTOR_DIR)).hexdigest()[:16] + ".lock"
    )
    with lock_path.open("w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        if _install_is_current():
            return
        _run_npm_ci()


def _install_is_current() -> bool:
    installed_marker = INSPECTOR_DIR / "node_modules" / ".package-lock.json"
    lockfile = INSPECTOR_DIR / "package-lock.json"
    if not installed_marker.exists():
        return False
    return installed_marker.stat().st_mtime >= lockfile.stat().st_mtime


def _run_npm_ci() -> None:
    print(
        f"MCP Inspector: running npm ci in {INSPECTOR_DIR} (about 12 s with an empty npm cache)",
        file=sys.stderr,
        flush=True,
    )
    started = time.monotonic()
    with tempfile.NamedTemporaryFile(
        "w+", prefix="npm-ci-inspector-", suffix=".log", delete=False
    ) as log_file:
        try:
            result = subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund"],
                cwd=INSPECTOR_DIR,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                check=False,
                timeout=NPM_CI_TIMEOUT_SECONDS,
            )
        except subprocess.TimeoutExpired as exc:
            raise InspectorSetupError(
                f"npm ci timed out after {NPM_CI_TIMEOUT_SECONDS:.0f} s in {INSPECTOR_DIR}. "
                f"Full output: {log_file.name}"
            ) from exc
    log_path = Path(log_file.name)
    if result.returncode != 0:
        raise InspectorSetupError(
            f"npm ci failed with exit code {result.returncode} in {INSPECTOR_DIR}. "
            f"Full output: {log_path}. Last lines:\n{_read_tail(log_path)}"
        )
    log_path.unlink()
    elapsed = time.monotonic() - started
    print(f"MCP Inspector: npm ci finished in {elapsed:.0f} s", file=sys.stderr, flush=True)


def _read_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    with path.open(encoding="utf-8", errors="replace") as log_file:
        return "".join(deque(log_file, maxlen=lines))


def inspector_env(state_dir: Path, **variables: str) -> dict[str, str]:
    """Environment for an Inspector process, with its state files under ``state_dir``.

    Without these variables the Inspector creates ``~/.mcp-inspector``.
    ``npm_config_offline`` makes npx fail instead of downloading the Inspector
    when it does not find the install in ``tests/inspector``.
    """
    env = {name: value for name, value in os.environ.items() if not name.startswith("BACKSTAGE_")}
    env.update(
        MCP_STORAGE_DIR=str(state_dir / "storage"),
        MCP_CLIENT_CONFIG_PATH=str(state_dir / "client.json"),
        MCP_INSPECTOR_OAUTH_STATE_PATH=str(state_dir / "oauth.json"),
        MCP_INSPECTOR_SECRET_STORE="memory",
        npm_config_offline="true",
    )
    return env | variables


@dataclass
class InspectorRun:
    """The outcome of one ``inspector --cli`` run with ``--format json``."""

    command: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def result(self) -> dict[str, Any]:
        """The MCP result, which the CLI prints to stdout as ``{"result": ...}``."""
        return json.loads(self.stdout)["result"]

    @property
    def error(self) -> dict[str, Any] | None:
        """The CLI's error envelope, the stderr line ``{"error": {...}}``, if it printed one.

        The stdio server's log lines share stderr with it.
        """
        for line in reversed(self.stderr.splitlines()):
            if line.startswith('{"error":'):
                return json.loads(line)["error"]
        return None

    def describe(self) -> str:
        """Return the command and both outputs, for assertion messages."""
        return (
            f"command: {' '.join(self.command)}\nexit code: {self.returncode}\n"
            f"--- stdout ---\n{self.stdout[-4000:]}\n--- stderr ---\n{self.stderr[-4000:]}"
        )


def run_inspector_cli(
    arguments: list[str], *, state_dir: Path, timeout: float = 60.0
) -> InspectorRun:
    """Run ``npx --no-install inspector --cli <arguments...> --format json``.

    ``arguments`` are what a user types after ``--cli``: options such as
    ``-e KEY=VALUE``, then a stdio server command or an MCP URL, then
    ``--method`` and its options. The catalog path is set here and not in
    ``inspector_env``, because the web UI mode rejects it together with an
    ad-hoc server command.
    """
    command = ["npx", "--no-install", "inspector", "--cli", *arguments, "--format", "json"]
    env = inspector_env(state_dir, MCP_CATALOG_PATH=str(state_dir / "catalog.json"))
    completed = subprocess.run(
        command,
        cwd=INSPECTOR_DIR,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return InspectorRun(command, completed.returncode, completed.stdout, completed.stderr)


class InspectorWebUI:
    """Requests to the Inspector web UI's backend, as its page sends them.

    The routes and the x-mcp-remote-auth header are those of
    @modelcontextprotocol/inspector 2.12.0 (clients/web/build/index.js).
    """

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.headers = {"x-mcp-remote-auth": f"Bearer {token}"}
        # trust_env=False keeps proxy variables from routing loopback requests.
        self.client = httpx2.Client(timeout=30.0, trust_env=False)

    def close(self) -> None:
        self.client.close()

    def get(self, path: str) -> httpx2.Response:
        return self.client.get(f"{self.base_url}{path}", headers=self.headers)

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.client.post(f"{self.base_url}{path}", headers=self.headers, json=body)
        if response.status_code != 200:
            raise AssertionError(f"POST {path} returned {response.status_code}: {response.text}")
        return response.json()

    def send(self, session_id: str, message: dict[str, Any]) -> None:
        """Send one JSON-RPC message. For a request, the call returns once the response arrived."""
        reply = self.post("/api/mcp/send", {"sessionId": session_id, "message": message})
        if reply != {"ok": True}:
            raise AssertionError(f"sending {message.get('method')} failed: {reply}")

    def read_response(self, session_id: str, request_id: int, timeout: float) -> dict[str, Any]:
        """Read the session's event stream until the JSON-RPC response to ``request_id``.

        The backend queues events until a reader connects, so this may run after the send.
        """
        deadline = time.monotonic() + timeout
        with self.client.stream(
            "GET",
            f"{self.base_url}/api/mcp/events",
            params={"sessionId": session_id},
            headers=self.headers,
        ) as response:
            for line in response.iter_lines():
                if not line.startswith("data: "):
                    continue
                event = json.loads(line.removeprefix("data: "))
                if event["type"] == "transport_error":
                    raise AssertionError(f"the Inspector lost the MCP server: {event['data']}")
                if event["type"] == "message" and event["data"].get("id") == request_id:
                    return event["data"]
                if time.monotonic() > deadline:
                    break
        raise AssertionError(f"no response to request {request_id} within {timeout} s")


def wait_for_port(
    port: int, process: subprocess.Popen[bytes], log_path: Path, timeout: float
) -> None:
    """Wait until something listens on 127.0.0.1:``port``, failing early when ``process`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"process exited with code {process.returncode}:\n{log_path.read_text()}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(
        f"nothing listened on port {port} within {timeout} s:\n{log_path.read_text()}"
    )


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """Stop the process group that ``process`` leads, which needs ``start_new_session=True``.

    Sends SIGTERM to the group, waits 10 s and then sends SIGKILL.
    """
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
