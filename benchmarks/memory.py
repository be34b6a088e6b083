"""Resident memory of each stdio server after many calls, read from /proc.

Servers with an oidc tool sign in first. Then every tenth call is an oidc
refresh, which stores cookies in the session, and the other calls are guest
refreshes. The floor server has only guest refresh.

Every server makes `rss_first_calls` calls for the peak RSS. Only
backstage-auth-mcp goes on to `rss_total_calls` for the growth, because that
part takes a minute per server.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import anyio
from mcp import Client

from benchmarks.calls import call_tool, sign_in_ours, sign_in_peer
from benchmarks.config import BenchConfig
from benchmarks.procfs import peak_rss_kib, rss_kib
from benchmarks.servers import ServerSpec, ToolCall, stdio_server

logger = logging.getLogger(__name__)

OIDC_EVERY = 10
GROWTH_MEASURED_FOR = "ours"


@dataclass(frozen=True)
class Memory:
    """RSS readings of one stdio server, in KiB."""

    first_calls: int
    peak_after_first_kib: int
    rss_after_first_kib: int
    # None for a server that stopped after the first calls.
    total_calls: int | None = None
    rss_after_total_kib: int | None = None
    peak_after_total_kib: int | None = None

    @property
    def growth_kib(self) -> int | None:
        if self.rss_after_total_kib is None:
            return None
        return self.rss_after_total_kib - self.rss_after_first_kib


async def measure_memory(
    auth_url: str, config: BenchConfig, specs: dict[str, ServerSpec], log_dir: Path
) -> dict[str, Memory]:
    results = {}
    for key, spec in specs.items():
        total = config.rss_total_calls if key == GROWTH_MEASURED_FOR else config.rss_first_calls
        logger.info("memory: %s, %d calls", spec.label, total)
        async with stdio_server(spec, auth_url, log_dir) as server:
            calls = [spec.guest_refresh] * (OIDC_EVERY - 1)
            if spec.oidc_refresh is not None:
                if key == "peer":
                    await sign_in_peer(server.client, "bench-memory")
                else:
                    await sign_in_ours(server.client, "bench-memory")
                calls.append(spec.oidc_refresh)

            await _run_calls(server.client, calls, config.rss_first_calls, config.rss_concurrency)
            memory = Memory(
                first_calls=config.rss_first_calls,
                peak_after_first_kib=peak_rss_kib(server.pid),
                rss_after_first_kib=rss_kib(server.pid),
            )
            if total > config.rss_first_calls:
                await _run_calls(
                    server.client, calls, total - config.rss_first_calls, config.rss_concurrency
                )
                memory = replace(
                    memory,
                    total_calls=total,
                    rss_after_total_kib=rss_kib(server.pid),
                    peak_after_total_kib=peak_rss_kib(server.pid),
                )
            results[key] = memory
    return results


async def _run_calls(client: Client, cycle: list[ToolCall], count: int, concurrency: int) -> None:
    """Make `count` calls, `concurrency` at a time, taking tools from `cycle` in turn."""
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < count:
            index = next_index
            next_index += 1
            await call_tool(client, cycle[index % len(cycle)])

    async with anyio.create_task_group() as group:
        for _ in range(concurrency):
            group.start_soon(worker)
