"""The benchmark's sections in order, its machine description and its command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, nullcontext
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import anyio

from benchmarks.config import FULL, QUICK, BenchConfig
from benchmarks.latency import measure_latency
from benchmarks.memory import measure_memory
from benchmarks.operations import check_operations
from benchmarks.report import Report, build_rows, format_table
from benchmarks.servers import floor, http_servers, ours, peer
from benchmarks.startup import measure_cold_start, measure_import_times
from benchmarks.throughput import measure_throughput
from tests.backstage_backend import NODE_PROJECT_DIR, start_backend

logger = logging.getLogger("benchmarks")

PYTHON_PACKAGES = ("mcp", "httpx2", "pydantic", "anyio", "starlette", "uvicorn", "fastmcp")
BACKSTAGE_PACKAGE = "@backstage/plugin-auth-backend"


async def run_benchmark(
    auth_url: str, config: BenchConfig, log_dir: Path, backend_pid: int | None = None
) -> Report:
    """Run every section against the Backstage auth API at `auth_url`.

    `backend_pid`, the Backstage backend's process id, adds its CPU time per
    call to the throughput section.
    """
    specs = {"ours": ours(), "floor": floor(auth_url), "peer": peer(auth_url)}
    report = Report(config)
    with ExitStack() as stack:
        with _section("starting the three servers over streamable HTTP"):
            servers = stack.enter_context(http_servers(specs, auth_url, log_dir))
        with _section("latency"):
            report.latency = await measure_latency(auth_url, config, specs, servers, log_dir)
        with _section("throughput"):
            report.throughput = await measure_throughput(auth_url, config, servers, backend_pid)
        with _section("cold start"):
            report.cold_start = await measure_cold_start(auth_url, config, specs, log_dir)
        with _section("import time under -X importtime"):
            report.import_times = await measure_import_times(auth_url, config, specs, log_dir)
        with _section("memory"):
            report.memory = await measure_memory(auth_url, config, specs, log_dir)
        with _section("operations"):
            report.operations = await check_operations(auth_url, specs, servers, log_dir)
    return report


@contextmanager
def _section(name: str) -> Iterator[None]:
    logger.info("%s: started", name)
    started = time.monotonic()
    yield
    logger.info("%s: done in %.1f s", name, time.monotonic() - started)


def describe_machine() -> list[str]:
    """Return lines naming the hardware and the software versions of this run."""
    memory_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_kib = int(line.split()[1])
    cpu_model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    node = "not found"
    if shutil.which("node"):
        node = subprocess.run(
            ["node", "--version"],  # noqa: S607 (found on PATH, as the test backend runs it)
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()

    packages = []
    for name in PYTHON_PACKAGES:
        try:
            packages.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            packages.append(f"{name} not installed")
    backstage_manifest = NODE_PROJECT_DIR / "node_modules" / BACKSTAGE_PACKAGE / "package.json"
    backstage = (
        json.loads(backstage_manifest.read_text())["version"]
        if backstage_manifest.exists()
        else "not installed"
    )
    return [
        f"machine: {os.cpu_count()} cores ({cpu_model}), {memory_kib / 1024**2:.1f} GiB RAM, "
        f"{platform.system()} {platform.release()}",
        f"software: Python {platform.python_version()}, Node {node}, "
        + ", ".join(packages)
        + f", {BACKSTAGE_PACKAGE} {backstage}",
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="benchmarks/run.py",
        description="Benchmark backstage-auth-mcp against the Backstage test backend.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny counts that exercise every row in under a minute; the numbers mean nothing",
    )
    parser.add_argument("--json", type=Path, help="also write the raw results to this JSON file")
    parser.add_argument(
        "--auth-url",
        help="use the Backstage auth API at this URL (with guest and oidc providers, as "
        "tests/backstage_backend.py configures them) instead of starting the test backend",
    )
    parser.add_argument(
        "--backend-pid",
        type=int,
        help="process id of the Backstage backend at --auth-url, to report its CPU time per call",
    )
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the servers' log files after the run"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s")
    logger.setLevel(logging.INFO)
    config = QUICK if args.quick else FULL
    # Other programs on the machine skew every number; the load average shows them.
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    log_dir = Path(tempfile.mkdtemp(prefix="backstage-auth-bench-"))
    started = time.monotonic()

    succeeded = False
    try:
        backend = start_backend() if args.auth_url is None else nullcontext()
        with backend as running:
            auth_url = args.auth_url or running.auth_url
            logger.info("Backstage auth API at %s; server logs in %s", auth_url, log_dir)
            backend_pid = running.backend_pid if args.auth_url is None else args.backend_pid
            report = anyio.run(run_benchmark, auth_url, config, log_dir, backend_pid)
        succeeded = True
    finally:
        if succeeded and not args.keep_logs:
            shutil.rmtree(log_dir, ignore_errors=True)
        else:
            logger.info("server logs kept in %s", log_dir)

    load_after = Path("/proc/loadavg").read_text().split()[:3]
    command = "uv run python benchmarks/run.py" + (" --quick" if args.quick else "")
    print(f"# backstage-auth-mcp benchmark ({'quick' if args.quick else 'full'} run)")
    for line in describe_machine():
        print(line)
    print(
        f"command: {command}; took {time.monotonic() - started:.0f} s; load average "
        f"(1, 5, 15 min) {' '.join(load_before)} before, {' '.join(load_after)} after"
    )
    print()
    print(format_table(build_rows(report)))
    if args.json:
        args.json.write_text(json.dumps(report.as_json(), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
