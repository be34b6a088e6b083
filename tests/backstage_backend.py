"""Start a real Backstage auth backend and a mock OpenID Connect provider on 127.0.0.1.

The Node project in ``tests/backstage`` runs Backstage's auth plugin with the
guest and oidc providers (``backend.js``) and a mock identity provider
(``idp.mjs``). This module installs that project with ``npm ci``, starts both
processes on free ports and waits until sign-in really works. It uses only the
standard library and httpx2, so pytest fixtures and benchmark scripts can share it.

    with start_backend() as backend:
        httpx2.get(f"{backend.auth_url}/guest/refresh")

Sessions and signing keys live in the backend's memory, so tokens and cookies
die with the process: start one backend per test session.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import deque
from pathlib import Path
from typing import IO, Self

import httpx2

NODE_PROJECT_DIR = Path(__file__).resolve().parent / "backstage"
LOOPBACK_HOST = "127.0.0.1"
DEFAULT_LOGIN = "alice@example.test"
# Versions that better-sqlite3 12.11.1 and oauth2-mock-server 8.2.3 accept.
SUPPORTED_NODE_VERSIONS = "20.19+, 22.12+ or 24"

STARTUP_TIMEOUT_SECONDS = 120.0
STOP_GRACE_SECONDS = 10.0
LOG_TAIL_LINES = 40
POLL_INTERVAL_SECONDS = 0.2
# The backend logs this line when a plugin or service fails to start. The
# process then stays alive with readiness 503, so waiting would only time out.
STARTUP_FAILED_MARKER = "Backend startup failed"

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


class BackendStartupError(RuntimeError):
    """The test backend or the mock identity provider failed to start."""


class NodeSetupError(RuntimeError):
    """Node.js or npm is missing or too old, or ``npm ci`` failed."""


def ensure_installed(node_dir: Path | None = None) -> None:
    """Run ``npm ci`` in the Node project unless its install is up to date.

    The install counts as up to date when ``node_modules/.package-lock.json``,
    which npm writes at the end of an install, is not older than ``package-lock.json``.
    A file lock serialises concurrent callers, such as parallel test workers.
    ``npm ci`` took 75-90 s on a 2-core Debian 12 machine, mostly to build
    better-sqlite3 from source.
    """
    project_dir = (node_dir or NODE_PROJECT_DIR).resolve()
    _check_node()

    lock_path = Path(tempfile.gettempdir()) / (
        "backstage-test-backend-" + hashlib.sha256(bytes(project_dir)).hexdigest()[:16] + ".lock"
    )
    with lock_path.open("w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        if _install_is_current(project_dir):
            return
        _run_npm_ci(project_dir)


def _check_node() -> None:
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        raise NodeSetupError(
            f"{' and '.join(missing)} not found on PATH: the Backstage test backend needs "
            f"Node.js {SUPPORTED_NODE_VERSIONS} with npm, plus make, g++ and python3 "
            "to build better-sqlite3"
        )

    version_output = subprocess.run(
        ["node", "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    major, minor = (int(part) for part in version_output.lstrip("v").split(".")[:2])
    supported = (major == 20 and minor >= 19) or (major == 22 and minor >= 12) or major == 24
    if not supported:
        raise NodeSetupError(
            f"Node.js {version_output} is not supported by the Backstage test backend: "
            f"install Node.js {SUPPORTED_NODE_VERSIONS}"
        )


def _install_is_current(project_dir: Path) -> bool:
    installed_marker = project_dir / "node_modules" / ".package-lock.json"
    lockfile = project_dir / "package-lock.json"
    if not installed_marker.exists():
        return False
    return installed_marker.stat().st_mtime >= lockfile.stat().st_mtime


def _run_npm_ci(project_dir: Path) -> None:
    print(
        f"backstage test backend: running npm ci in {project_dir} "
        "(about 90 s on 2 cores, mostly building better-sqlite3)",
        file=sys.stderr,
        flush=True,
    )
    started = time.monotonic()
    with tempfile.NamedTemporaryFile(
        "w+", prefix="npm-ci-", suffix=".log", delete=False
    ) as log_file:
        result = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=project_dir,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            check=False,
        )
    log_path = Path(log_file.name)
    if result.returncode != 0:
        raise NodeSetupError(
            f"npm ci failed with exit code {result.returncode} in {project_dir}. "
            "better-sqlite3 builds from source and needs make, g++, python3 and the Node "
            f"headers in /usr/include/node. Full output: {log_path}. Last lines:\n"
            + _read_tail(log_path)
        )
    log_path.unlink()
    elapsed = time.monotonic() - started
    print(
        f"backstage test backend: npm ci finished in {elapsed:.0f} s", file=sys.stderr, flush=True
    )


def _pick_free_ports(count: int) -> list[int]:
    # All sockets stay bound until every port is chosen, so the ports differ.
    # Another process can still take a port between close() and the server's
    # bind; startup then fails with EADDRINUSE in the log.
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((LOOPBACK_HOST, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _read_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with path.open(encoding="utf-8", errors="replace") as log_file:
            tail = deque(log_file, maxlen=lines)
    except FileNotFoundError:
        return f"(no log file at {path})"
    return _ANSI_ESCAPE.sub("", "".join(tail))


class BackstageBackend:
    """A Backstage auth backend and its mock OpenID Connect provider, both on 127.0.0.1.

    ``start()`` installs the Node project if needed, starts both processes and
    returns when guest and oidc sign-in work. ``stop()`` ends them. The object
    is also a context manager that starts on entry, unless already started, and
    stops on exit.

    Process output goes to ``backend_log_path`` and ``idp_log_path``. Without
    ``log_dir`` they live in a temporary directory that ``stop()`` removes,
    unless startup failed; with ``log_dir`` the files are kept.
    """

    def __init__(
        self,
        *,
        node_dir: Path | None = None,
        log_dir: Path | None = None,
        startup_timeout: float = STARTUP_TIMEOUT_SECONDS,
        rotate_refresh_tokens: bool = False,
    ) -> None:
        self.node_dir = (node_dir or NODE_PROJECT_DIR).resolve()
        self.startup_timeout = startup_timeout
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self._requested_log_dir = log_dir
        self.log_dir: Path | None = None
        self._owns_log_dir = False
        self._keep_log_dir = False

        self.backend_port = 0
        self.idp_port = 0
        self.app_port = 0
        self._backend_process: subprocess.Popen[bytes] | None = None
        self._idp_process: subprocess.Popen[bytes] | None = None
        self._log_files: list[IO[bytes]] = []
        self.startup_seconds: float | None = None

    @property
    def base_url(self) -> str:
        """Backend base URL, ``http://127.0.0.1:<port>``."""
        return f"http://{LOOPBACK_HOST}:{self.backend_port}"

    @property
    def auth_url(self) -> str:
        """Base URL of the auth plugin, ``<base_url>/api/auth``."""
        return f"{self.base_url}/api/auth"

    @property
    def idp_url(self) -> str:
        """Issuer URL of the mock OpenID Connect provider."""
        return f"http://{LOOPBACK_HOST}:{self.idp_port}"

    @property
    def app_origin(self) -> str:
        """Configured ``app.baseUrl``: the allowed origin. Nothing listens there."""
        return f"http://{LOOPBACK_HOST}:{self.app_port}"

    @property
    def backend_log_path(self) -> Path:
        """Combined stdout and stderr of the Backstage backend."""
        return self._require_log_dir() / "backend.log"

    @property
    def idp_log_path(self) -> Path:
        """Combined stdout and stderr of the mock identity provider."""
        return self._require_log_dir() / "idp.log"

    @property
    def running(self) -> bool:
        """Whether both processes are alive."""
        return all(
            process is not None and process.poll() is None
            for process in (self._backend_process, self._idp_process)
        )

    @property
    def backend_pid(self) -> int | None:
        """Process id of the Backstage backend, or None before start and after stop."""
        return self._backend_process.pid if self._backend_process is not None else None

    def _require_log_dir(self) -> Path:
        if self.log_dir is None:
            raise RuntimeError("the backend has not been started, so it has no log files yet")
        return self.log_dir

    def start(self) -> Self:
        """Install if needed, start the provider and the backend, and wait until both work.

        Raises BackendStartupError with the last log lines when a process exits,
        the backend logs a startup failure, a provider route does not work, or
        ``startup_timeout`` seconds pass. Raises NodeSetupError when Node.js or
        npm is missing or the install failed.
        """
        if self._backend_process is not None or self._idp_process is not None:
            raise RuntimeError("the backend is already started; call stop() first")

        ensure_installed(self.node_dir)
        self._prepare_log_dir()
        started = time.monotonic()
        deadline = started + self.startup_timeout
        self.backend_port, self.idp_port, self.app_port = _pick_free_ports(3)
        atexit.register(self.stop)

        try:
            self._start_idp()
            self._wait_for_idp(deadline)
            self._start_backend()
            self._wait_for_backend(deadline)
        except BaseException:
            self._keep_log_dir = True
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def stop(self) -> None:
        """Terminate the processes this object started, killing any that outlive the grace period.

        Sends SIGTERM, waits ``STOP_GRACE_SECONDS`` and then sends SIGKILL.
        Safe to call more than once.
        """
        atexit.unregister(self.stop)
        # The backend goes first so that it does not log errors about the provider.
        for process in (self._backend_process, self._idp_process):
            if process is not None:
                stop_process(process)
        self._backend_process = None
        self._idp_process = None

        for log_file in self._log_files:
            log_file.close()
        self._log_files.clear()

        if self.log_dir is not None and self._owns_log_dir and not self._keep_log_dir:
            shutil.rmtree(self.log_dir, ignore_errors=True)
            self.log_dir = None

    def __enter__(self) -> Self:
        # start_backend() returns a started backend that callers use in a with block.
        if self._backend_process is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """Return the last lines of both logs, without terminal colour codes."""
        return (
            f"--- last lines of {self.backend_log_path} ---\n"
            + _read_tail(self.backend_log_path, lines)
            + f"\n--- last lines of {self.idp_log_path} ---\n"
            + _read_tail(self.idp_log_path, lines)
        )

    def _prepare_log_dir(self) -> None:
        self._keep_log_dir = False
        if self._requested_log_dir is not None:
            self.log_dir = self._requested_log_dir
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self._owns_log_dir = False
        else:
            self.log_dir = Path(tempfile.mkdtemp(prefix="backstage-test-backend-"))
            self._owns_log_dir = True

    def _spawn(
        self, command: list[str], env: dict[str, str], log_path: Path
    ) -> subprocess.Popen[bytes]:
        # Output goes to a file, because an unread pipe fills up and then
        # blocks the process that writes to it.
        log_file = log_path.open("ab")
        self._log_files.append(log_file)
        return subprocess.Popen(
            command,
            cwd=self.node_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )

    def _start_idp(self) -> None:
        command = [
            "node",
            "idp.mjs",
            "--port",
            str(self.idp_port),
            "--key-file",
            str(self._require_log_dir() / "idp-signing-key.json"),
        ]
        if self.rotate_refresh_tokens:
            command.append("--rotate-refresh-tokens")
        self._idp_process = self._spawn(command, dict(os.environ), self.idp_log_path)

    def _wait_for_idp(self, deadline: float) -> None:
        # The oidc provider fetches the discovery document once at startup and
        # never retries, so the provider must serve it before the backend starts.
        discovery_url = f"{self.idp_url}/.well-known/openid-configuration"
        with _loopback_client() as client:
            while True:
                self._raise_if_exited(self._idp_process, "mock identity provider")
                try:
                    response = client.get(discovery_url)
                except httpx2.TransportError:
                    response = None
                if response is not None and response.status_code == 200:
                    issuer = response.json().get("issuer")
                    if issuer != self.idp_url:
                        raise BackendStartupError(
                            f"mock identity provider advertises issuer {issuer!r}, "
                            f"expected {self.idp_url!r}\n{self.log_tail()}"
                        )
                    return
                self._raise_if_timed_out(deadline, f"discovery document at {discovery_url}")
                time.sleep(POLL_INTERVAL_SECONDS)

    def _start_backend(self) -> None:
        env = dict(os.environ)
        env.update(
            NODE_ENV="development",
            BS_PORT=str(self.backend_port),
            APP_PORT=str(self.app_port),
            IDP_PORT=str(self.idp_port),
        )
        self._backend_process = self._spawn(
            ["node", "backend.js", "--config", "app-config.yaml"], env, self.backend_log_path
        )

    def _wait_for_backend(self, deadline: float) -> None:
        # Readiness alone is not enough: a provider that fails to initialise in
        # development is skipped with a warning (its routes return 404) while
        # readiness returns 200.
        readiness_url = f"{self.base_url}/.backstage/health/v1/readiness"
        with _loopback_client() as client:
            while True:
                self._raise_if_exited(self._backend_process, "backend")
                self._raise_if_startup_failed()
                try:
                    readiness = client.get(readiness_url)
                except httpx2.TransportError:
                    readiness = None
                if readiness is not None and readiness.status_code == 200:
                    self._check_providers(client)
                    return
                self._raise_if_timed_out(deadline, f"readiness 200 from {readiness_url}")
                time.sleep(POLL_INTERVAL_SECONDS)

    def _check_providers(self, client: httpx2.Client) -> None:
        # Once readiness is 200 every provider has been set up, so a wrong status
        # here stays wrong for the life of the process.
        checks = [
            ("GET", f"{self.auth_url}/oidc/start?env=development", 302),
            ("GET", f"{self.auth_url}/guest/refresh", 200),
        ]
        for method, url, expected_status in checks:
            response = client.request(method, url)
            if response.status_code != expected_status:
                raise BackendStartupError(
                    f"{method} {url} returned {response.status_code}, expected "
                    f"{expected_status}: {response.text[:500]}\n{self.log_tail()}"
                )

    def _raise_if_exited(self, process: subprocess.Popen[bytes] | None, name: str) -> None:
        if process is not None and process.poll() is not None:
            raise BackendStartupError(
                f"{name} exited with code {process.returncode} during startup\n{self.log_tail()}"
            )

    def _raise_if_startup_failed(self) -> None:
        log_text = self.backend_log_path.read_text(encoding="utf-8", errors="replace")
        if STARTUP_FAILED_MARKER in _ANSI_ESCAPE.sub("", log_text):
            raise BackendStartupError(
                f"backend logged {STARTUP_FAILED_MARKER!r}\n{self.log_tail()}"
            )

    def _raise_if_timed_out(self, deadline: float, waiting_for: str) -> None:
        if time.monotonic() > deadline:
            raise BackendStartupError(
                f"timed out after {self.startup_timeout:.0f} s waiting for {waiting_for}\n"
                + self.log_tail()
            )


def start_backend(
    *,
    node_dir: Path | None = None,
    log_dir: Path | None = None,
    startup_timeout: float = STARTUP_TIMEOUT_SECONDS,
    rotate_refresh_tokens: bool = False,
) -> BackstageBackend:
    """Start a test backend and return it once sign-in works.

    Use the result as a context manager, or call ``stop()`` on it. With
    ``rotate_refresh_tokens`` the provider issues a new refresh token on every
    refresh and rejects the old one; by default it returns the same token.
    """
    backend = BackstageBackend(
        node_dir=node_dir,
        log_dir=log_dir,
        startup_timeout=startup_timeout,
        rotate_refresh_tokens=rotate_refresh_tokens,
    )
    return backend.start()


def follow_authorization(
    authorization_url: str, login: str | None = None, *, timeout: float = 10.0
) -> str:
    """Play the user's browser at the mock provider and return the callback URL.

    Sends GET to ``authorization_url`` without following redirects and returns
    the ``Location`` of the redirect, normally Backstage's
    ``/api/auth/oidc/handler/frame?code=...&state=...``. The mock provider
    approves at once. ``login`` selects the user: an email address, or a local
    part that gets the domain example.test. It replaces any ``login_hint``
    parameter in the URL. Without it the user is alice@example.test.

    Raises ValueError unless the URL is plain http on 127.0.0.1, so this helper
    never sends a request anywhere else, and RuntimeError when the provider does
    not redirect.
    """
    parts = urllib.parse.urlsplit(authorization_url)
    if parts.scheme != "http" or parts.hostname != LOOPBACK_HOST:
        raise ValueError(
            f"authorization URL {authorization_url!r} is not on http://{LOOPBACK_HOST}; "
            "follow_authorization only talks to the mock identity provider on loopback"
        )

    if login is not None:
        kept = [
            field
            for field in parts.query.split("&")
            if field and field.split("=", 1)[0] != "login_hint"
        ]
        kept.append(urllib.parse.urlencode({"login_hint": login}))
        authorization_url = urllib.parse.urlunsplit(parts._replace(query="&".join(kept)))

    with _loopback_client(timeout=timeout) as client:
        response = client.get(authorization_url)
    location = response.headers.get("location")
    if not response.is_redirect or location is None:
        raise RuntimeError(
            f"mock identity provider returned {response.status_code} for {authorization_url}, "
            f"expected a redirect to the callback: {response.text[:500]}"
        )
    return urllib.parse.urljoin(authorization_url, location)


def _loopback_client(timeout: float = 5.0) -> httpx2.Client:
    # trust_env=False keeps proxy variables such as HTTP_PROXY from routing
    # loopback requests through a proxy.
    return httpx2.Client(timeout=timeout, follow_redirects=False, trust_env=False)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Terminate `process`, and kill it if it outlives the grace period."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


__all__ = [
    "DEFAULT_LOGIN",
    "NODE_PROJECT_DIR",
    "BackendStartupError",
    "BackstageBackend",
    "NodeSetupError",
    "ensure_installed",
    "follow_authorization",
    "start_backend",
    "stop_process",
]


def main() -> None:
    """Run the test backend until Ctrl-C, for trying the server by hand."""
    with start_backend() as backend:
        print(f"BACKSTAGE_AUTH_URL={backend.auth_url}", flush=True)
        print(
            "Providers: guest and oidc (env 'development'). The mock identity provider "
            f"approves every sign-in at {backend.idp_url}. Press Ctrl-C to stop.",
            file=sys.stderr,
            flush=True,
        )
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
