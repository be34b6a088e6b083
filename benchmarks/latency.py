"""Per-call latency of guest and oidc refresh through every client path, side by side.

All clients are opened first and signed in to oidc. Then each client in turn
runs a batch of calls, round after round, so that drift in the machine's
speed reaches every path alike.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from mcp import Client

from backstage_auth.settings import Settings
from backstage_auth.tools import create_server
from benchmarks.calls import (
    call_tool,
    direct_client,
    direct_refresh,
    sign_in_direct,
    sign_in_ours,
    sign_in_peer,
)
from benchmarks.config import BenchConfig
from benchmarks.floor_server import create_floor_server
from benchmarks.servers import CALL_TIMEOUT_SECONDS, HttpServer, ServerSpec, stdio_server
from benchmarks.stats import Latency

logger = logging.getLogger(__name__)

GUEST = "guest refresh"
OIDC = "oidc refresh"
ROUTES = (GUEST, OIDC)

DIRECT = "direct httpx2"
IN_PROCESS = "in-process Client"
STDIO = "stdio subprocess"
HTTP_2026 = "streamable HTTP, 2026-07-28"
HTTP_2025 = "streamable HTTP, 2025-11-25 session"
PATHS = (DIRECT, IN_PROCESS, STDIO, HTTP_2026, HTTP_2025)

# (server key, client path, route) -> latency
LatencyResults = dict[tuple[str, str, str], Latency]


@dataclass
class Probe:
    server: str
    path: str
    route: str
    call: Callable[[], Awaitable[object]]
    samples_ms: list[float] = field(default_factory=list)


async def measure_latency(
    auth_url: str,
    config: BenchConfig,
    specs: dict[str, ServerSpec],
    http_servers: dict[str, HttpServer],
    log_dir: Path,
) -> LatencyResults:
    async with AsyncExitStack() as stack:
        probes = await _direct_probes(stack, auth_url)
        for key in ("ours", "floor", "peer"):
            clients = await _open_clients(stack, key, specs[key], auth_url, http_servers, log_dir)
            for path, client in clients.items():
                probes += await _server_probes(key, specs[key], path, client)

        logger.info("latency: %d clients ready", len(probes))
        for probe in probes:
            for _ in range(config.warmup_calls):
                await probe.call()
        for _ in range(config.latency_rounds):
            for probe in probes:
                for _ in range(config.latency_batch):
                    started = time.perf_counter()
                    await probe.call()
                    probe.samples_ms.append((time.perf_counter() - started) * 1000)

    return {(p.server, p.path, p.route): Latency.of(p.samples_ms) for p in probes}


async def _direct_probes(stack: AsyncExitStack, auth_url: str) -> list[Probe]:
    http = await stack.enter_async_context(direct_client())
    await sign_in_direct(http, auth_url, "bench-direct")
    return [
        Probe("direct", DIRECT, GUEST, partial(direct_refresh, http, auth_url, "guest")),
        Probe("direct", DIRECT, OIDC, partial(direct_refresh, http, auth_url, "oidc")),
    ]


async def _open_clients(
    stack: AsyncExitStack,
    key: str,
    spec: ServerSpec,
    auth_url: str,
    http_servers: dict[str, HttpServer],
    log_dir: Path,
) -> dict[str, Client]:
    """Open one client of `spec` per client path; the fastmcp peer has no in-process path."""
    clients: dict[str, Client] = {}
    in_process = {
        "ours": lambda: create_server(Settings(auth_url=auth_url, _env_file=None)),
        "floor": lambda: create_floor_server(auth_url),
    }
    if key in in_process:
        clients[IN_PROCESS] = await stack.enter_async_context(
            Client(in_process[key](), read_timeout_seconds=CALL_TIMEOUT_SECONDS)
        )
    stdio = await stack.enter_async_context(stdio_server(spec, auth_url, log_dir))
    clients[STDIO] = stdio.client
    url = http_servers[key].url
    clients[HTTP_2026] = await stack.enter_async_context(
        Client(url, read_timeout_seconds=CALL_TIMEOUT_SECONDS)
    )
    clients[HTTP_2025] = await stack.enter_async_context(
        Client(url, mode="legacy", read_timeout_seconds=CALL_TIMEOUT_SECONDS)
    )
    return clients


async def _server_probes(key: str, spec: ServerSpec, path: str, client: Client) -> list[Probe]:
    probes = [Probe(key, path, GUEST, partial(call_tool, client, spec.guest_refresh))]
    if spec.oidc_refresh is None:
        return probes

    login = f"bench-{key}-{PATHS.index(path)}"
    if key == "peer":
        await sign_in_peer(client, login)
        extra = None
    else:
        handle = await sign_in_ours(client, login)
        # Only a client without a transport session needs the handle on every call.
        extra = {"session_handle": handle} if path == HTTP_2026 else None
    probes.append(Probe(key, path, OIDC, partial(call_tool, client, spec.oidc_refresh, extra)))
    return probes
