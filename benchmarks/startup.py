"""Cold start over stdio, and where the import time goes (`python -X importtime`)."""

from __future__ import annotations

import logging
import re
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from benchmarks.config import BenchConfig
from benchmarks.servers import ServerSpec, new_log_path, stdio_server

logger = logging.getLogger(__name__)

# "import time:       412 |       1730 |     mcp.server.lowlevel" (microseconds)
_IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| *(\S+)\s*$")


@dataclass(frozen=True)
class ColdStart:
    """Time from process spawn to the first tools/list result over stdio, in milliseconds."""

    median_ms: float
    samples_ms: tuple[float, ...]


@dataclass(frozen=True)
class ImportTimes:
    """Import time from `-X importtime`, in milliseconds, summed per top-level package."""

    total_ms: float
    by_package_ms: dict[str, float]


async def measure_cold_start(
    auth_url: str, config: BenchConfig, specs: dict[str, ServerSpec], log_dir: Path
) -> dict[str, ColdStart]:
    """Start each server `cold_start_runs` times, taking turns, and time it to tools/list."""
    samples: dict[str, list[float]] = {key: [] for key in specs}
    for run in range(config.cold_start_runs):
        logger.info("cold start: run %d of %d", run + 1, config.cold_start_runs)
        for key, spec in specs.items():
            started = time.perf_counter()
            async with stdio_server(spec, auth_url, log_dir) as server:
                await server.client.list_tools()
                samples[key].append((time.perf_counter() - started) * 1000)
    return {
        key: ColdStart(statistics.median(values), tuple(values)) for key, values in samples.items()
    }


async def measure_import_times(
    auth_url: str, config: BenchConfig, specs: dict[str, ServerSpec], log_dir: Path
) -> dict[str, ImportTimes]:
    """Run each server under `-X importtime` up to its first tools/list; keep its fastest run.

    One run varied by up to a third on a shared machine, so the fastest of a
    few is the steadiest breakdown.
    """
    runs: dict[str, list[ImportTimes]] = {key: [] for key in specs}
    for _ in range(config.import_time_runs):
        for key, spec in specs.items():
            log_path = new_log_path(log_dir, f"{key}-importtime")
            async with stdio_server(
                spec, auth_url, log_dir, python_flags=("-X", "importtime"), log_path=log_path
            ) as server:
                await server.client.list_tools()
            runs[key].append(parse_import_times(log_path.read_text(errors="replace")))
    return {key: min(times, key=lambda t: t.total_ms) for key, times in runs.items()}


def parse_import_times(stderr_text: str) -> ImportTimes:
    """Sum the self time of every imported module per top-level package.

    Self times add up to the whole import time without counting a module
    twice, which cumulative times would.
    """
    by_package: Counter[str] = Counter()
    for line in stderr_text.splitlines():
        match = _IMPORT_LINE.match(line)
        if match is None:
            continue
        self_us, _cumulative_us, module = match.groups()
        by_package[module.split(".")[0]] += int(self_us) / 1000
    if not by_package:
        raise ValueError("no '-X importtime' lines found in the server's stderr")
    return ImportTimes(total_ms=sum(by_package.values()), by_package_ms=dict(by_package))
