"""Compare another copy of backstage_auth with this one, side by side, on what the fixes changed.

    git archive 5b95586 backstage_auth | tar -x -C /tmp/before
    uv run python benchmarks/compare.py /tmp/before [--runs 15]

The directory must contain a `backstage_auth` package; it is put first on
PYTHONPATH of the "before" processes. Against the Backstage test backend,
this measures for both copies, taking turns in alternating order:

* spawn to the first tools/list over stdio (median of --runs), in wall time
  and in the server's CPU time, which other programs on the machine skew less;
* time to construct `BackstageAuthClient`, in a fresh process each run;
* upstream connections the HTTP server opened while 50 concurrent
  streamable-HTTP clients ran for 4 s (its sockets, listed every 10 ms);
* CPU time of `BackstageAuthClient.refresh` per call against a mock transport,
  which leaves out the network and the backend.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: make the `benchmarks` and `tests` packages importable.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import logging
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import replace

import anyio
import httpx2

from benchmarks.procfs import cpu_seconds, upstream_sockets
from benchmarks.servers import (
    HttpServer,
    ServerSpec,
    http_servers,
    ours,
    server_env,
    stdio_server,
)
from benchmarks.throughput import mcp_caller, run_clients
from tests.backstage_backend import start_backend

logger = logging.getLogger("benchmarks.compare")

RECONNECT_CLIENTS = 50
RECONNECT_SECONDS = 4.0
CLIENT_CPU_CALLS = 3000

# Runs in a fresh interpreter, so that each copy of backstage_auth is imported alone.
_CLIENT_TIMING_SCRIPT = """
import json, sys, time
import anyio, httpx2
from backstage_auth.client import BackstageAuthClient
from backstage_auth.settings import Settings

auth_url, calls = sys.argv[1], int(sys.argv[2])
settings = Settings(auth_url=auth_url, _env_file=None)

answer = httpx2.get(auth_url + "/guest/refresh", params={"env": "development"},
                    headers={"X-Requested-With": "XMLHttpRequest"}, trust_env=False)
headers = [(k, v) for k, v in answer.headers.items()
           if k.lower() not in ("content-length", "transfer-encoding", "content-encoding")]

def handler(request):
    return httpx2.Response(200, headers=headers, content=answer.content)

async def refresh_cpu_us():
    client = BackstageAuthClient(settings, transport=httpx2.MockTransport(handler))
    for _ in range(200):
        await client.refresh(httpx2.Cookies(), provider="guest", env="development")
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        for _ in range(calls):
            await client.refresh(httpx2.Cookies(), provider="guest", env="development")
        best = min(best, (time.process_time() - started) / calls * 1e6)
    return best

httpx2.AsyncClient(trust_env=False)  # pays httpcore2's lazy imports before the timing
started = time.perf_counter()
BackstageAuthClient(settings)
client_ms = (time.perf_counter() - started) * 1000
print(json.dumps({"client_ms": client_ms, "refresh_cpu_us": anyio.run(refresh_cpu_us)}))
"""


def before_spec(before_dir: Path) -> ServerSpec:
    return replace(
        ours(), key="before", label="before", env={"PYTHONPATH": str(before_dir.resolve())}
    )


def _in_turn(specs: dict[str, ServerSpec], run: int) -> list[tuple[str, ServerSpec]]:
    """Return the copies in alternating order, so neither always runs right after the other."""
    items = list(specs.items())
    return items if run % 2 == 0 else items[::-1]


async def cold_start_ms(spec: ServerSpec, auth_url: str, log_dir: Path) -> tuple[float, float]:
    """Return the wall time and the server's CPU time from spawn to the first tools/list."""
    started = time.perf_counter()
    async with stdio_server(spec, auth_url, log_dir) as server:
        await server.client.list_tools()
        wall_ms = (time.perf_counter() - started) * 1000
        return wall_ms, cpu_seconds(server.pid) * 1000


def client_timings(spec: ServerSpec, auth_url: str, log_dir: Path) -> dict[str, float]:
    """Run the client timing script in a fresh interpreter with `spec`'s environment."""
    # The working directory comes first on sys.path, so it must not be the repository.
    output = subprocess.run(  # noqa: S603 (sys.executable and a fixed script)
        [sys.executable, "-c", _CLIENT_TIMING_SCRIPT, auth_url, str(CLIENT_CPU_CALLS)],
        env=server_env(auth_url, spec.env),
        cwd=log_dir,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(output)


async def upstream_connections(
    specs: dict[str, ServerSpec], auth_url: str, log_dir: Path
) -> dict[str, tuple[int, float]]:
    """Return, per copy, the upstream connections the HTTP server opened, and calls per second."""
    backend_port = httpx2.URL(auth_url).port
    assert backend_port is not None
    results = {}
    for key, spec in specs.items():
        with http_servers({key: spec}, auth_url, log_dir) as servers:
            results[key] = await _count_connections(servers[key], backend_port)
    return results


async def _count_connections(server: HttpServer, backend_port: int) -> tuple[int, float]:
    """Run the clients while listing the server's sockets towards the backend every 10 ms.

    A connection that opens and closes between two listings is missed.
    """
    seen: set[int] = set()
    done = anyio.Event()

    async def list_sockets() -> None:
        while not done.is_set():
            seen.update(upstream_sockets(server.pid, backend_port))
            await anyio.sleep(0.01)

    async with anyio.create_task_group() as group:
        group.start_soon(list_sockets)
        run = await run_clients(mcp_caller(server), RECONNECT_CLIENTS, RECONNECT_SECONDS, {})
        done.set()
    return len(seen), run.completed / RECONNECT_SECONDS


async def compare(before_dir: Path, auth_url: str, runs: int, log_dir: Path) -> list[str]:
    specs = {"before": before_spec(before_dir), "after": ours()}
    cold: dict[str, list[float]] = {key: [] for key in specs}
    cold_cpu: dict[str, list[float]] = {key: [] for key in specs}
    construct: dict[str, list[float]] = {key: [] for key in specs}
    refresh_cpu: dict[str, list[float]] = {key: [] for key in specs}
    for run in range(runs):
        logger.info("cold start: run %d of %d", run + 1, runs)
        for key, spec in _in_turn(specs, run):
            wall_ms, cpu_ms = await cold_start_ms(spec, auth_url, log_dir)
            cold[key].append(wall_ms)
            cold_cpu[key].append(cpu_ms)
    for run in range(runs):
        logger.info("client timings: run %d of %d", run + 1, runs)
        for key, spec in _in_turn(specs, run):
            timings = client_timings(spec, auth_url, log_dir)
            construct[key].append(timings["client_ms"])
            refresh_cpu[key].append(timings["refresh_cpu_us"])
    connections = await upstream_connections(specs, auth_url, log_dir)

    def row(label: str, values: dict[str, float], unit: str) -> str:
        before, after = values["before"], values["after"]
        change = f"{(after - before) / before:+.0%}" if before else "—"
        return f"| {label} | {before:.1f} {unit} | {after:.1f} {unit} | {change} |"

    median = statistics.median
    return [
        "| measurement | before | after | change |",
        "|---|---|---|---|",
        row(
            f"spawn to first tools/list over stdio, median of {runs}",
            {key: median(values) for key, values in cold.items()},
            "ms",
        ),
        row(
            f"server CPU time from spawn to first tools/list, median of {runs}",
            {key: median(values) for key, values in cold_cpu.items()},
            "ms",
        ),
        row(
            f"BackstageAuthClient() construction, median of {runs}",
            {key: median(values) for key, values in construct.items()},
            "ms",
        ),
        row(
            f"BackstageAuthClient.refresh CPU per call, mock transport, best of {runs} processes",
            {key: min(values) for key, values in refresh_cpu.items()},
            "us",
        ),
        row(
            f"upstream connections opened by the HTTP server for {RECONNECT_CLIENTS} "
            f"concurrent clients over {RECONNECT_SECONDS:g} s",
            {key: float(connections[key][0]) for key in specs},
            "",
        ),
        row(
            "guest refresh calls/s in that window",
            {key: connections[key][1] for key in specs},
            "",
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "before_dir", type=Path, help="directory containing the other backstage_auth"
    )
    parser.add_argument("--runs", type=int, default=15, help="alternating runs per copy")
    parser.add_argument("--auth-url", help="use a running Backstage test backend at this URL")
    args = parser.parse_args()
    if not (args.before_dir / "backstage_auth" / "__init__.py").exists():
        parser.error(f"{args.before_dir} contains no backstage_auth package")

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s")
    logger.setLevel(logging.INFO)
    log_dir = Path(tempfile.mkdtemp(prefix="backstage-auth-compare-"))
    try:
        if args.auth_url:
            lines = anyio.run(compare, args.before_dir, args.auth_url, args.runs, log_dir)
        else:
            with start_backend() as backend:
                lines = anyio.run(compare, args.before_dir, backend.auth_url, args.runs, log_dir)
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"load average (1, 5, 15 min) after the run: {load}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
