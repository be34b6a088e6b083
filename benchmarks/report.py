"""The benchmark's one table: every measurement with its baseline, ratio, target and peer."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from benchmarks.config import BenchConfig
from benchmarks.latency import (
    HTTP_2025,
    HTTP_2026,
    IN_PROCESS,
    ROUTES,
    STDIO,
    LatencyResults,
)
from benchmarks.memory import Memory
from benchmarks.operations import OPERATIONS, Outcome
from benchmarks.startup import ColdStart, ImportTimes
from benchmarks.stats import Latency
from benchmarks.throughput import Throughput

# Ratio limits, as the benchmark's targets set them.
LATENCY_TARGETS = {STDIO: 1.2, HTTP_2026: 1.3, HTTP_2025: 1.3}
COLD_START_TARGET = 1.1
RSS_TARGET = 1.1
# "Flat" memory: RSS after the last call at most this fraction above RSS after the first batch.
RSS_GROWTH_LIMIT = 0.05
THROUGHPUT_TARGET = 0.8
THROUGHPUT_TARGET_CONCURRENCY = 50
IMPORT_PACKAGES_SHOWN = 6
NONE = "—"

COLUMNS = (
    "measurement",
    "backstage-auth-mcp",
    "baseline",
    "ratio",
    "target",
    "floor MCPServer",
    "fastmcp proxy",
    "ahead of proxy",
)


@dataclass
class Report:
    """Everything one run measured."""

    config: BenchConfig
    latency: LatencyResults = field(default_factory=dict)
    cold_start: dict[str, ColdStart] = field(default_factory=dict)
    import_times: dict[str, ImportTimes] = field(default_factory=dict)
    memory: dict[str, Memory] = field(default_factory=dict)
    throughput: dict[tuple[str, int], Throughput] = field(default_factory=dict)
    operations: dict[tuple[str, str], Outcome] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """Return the raw results with string keys, for `--json`."""

        def keyed(mapping: dict[Any, Any]) -> dict[str, Any]:
            return {
                " | ".join(map(str, key)) if isinstance(key, tuple) else key: asdict(value)
                for key, value in mapping.items()
            }

        return {
            "config": asdict(self.config),
            "latency_ms": keyed(self.latency),
            "cold_start_ms": keyed(self.cold_start),
            "import_times_ms": keyed(self.import_times),
            "memory_kib": keyed(self.memory),
            "throughput": keyed(self.throughput),
            "operations": keyed(self.operations),
        }


@dataclass(frozen=True)
class Row:
    measurement: str
    ours: str
    baseline: str = NONE
    ratio: str = NONE
    target: str = NONE
    floor: str = NONE
    peer: str = NONE
    ahead: str = NONE

    def cells(self) -> tuple[str, ...]:
        return (
            self.measurement,
            self.ours,
            self.baseline,
            self.ratio,
            self.target,
            self.floor,
            self.peer,
            self.ahead,
        )


def build_rows(report: Report) -> list[Row]:
    return [
        *_latency_rows(report),
        *_startup_rows(report),
        *_memory_rows(report),
        *_throughput_rows(report),
        *_operation_rows(report),
    ]


def format_table(rows: list[Row]) -> str:
    """Format rows as a Markdown table."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += [
        "| " + " | ".join(cell.replace("|", "\\|") for cell in row.cells()) + " |" for row in rows
    ]
    return "\n".join(lines)


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


def _latency_pair(latency: Latency) -> str:
    return f"{latency.p50:.2f} / {latency.p95:.2f}"


def _latency_ratio(latency: Latency, base: Latency) -> str:
    return f"{latency.p50 / base.p50:.2f} / {latency.p95 / base.p95:.2f}"


def _latency_rows(report: Report) -> list[Row]:
    rows = []
    for route in ROUTES:
        direct = report.latency[("direct", "direct httpx2", route)]
        for path in (IN_PROCESS, STDIO, HTTP_2026, HTTP_2025):
            ours = report.latency[("ours", path, route)]
            limit = LATENCY_TARGETS.get(path)
            target = NONE
            if limit is not None:
                target = f"p50 ≤ {limit}x: {_verdict(ours.p50 <= limit * direct.p50)}"
            other = {}
            for key in ("floor", "peer"):
                latency = report.latency.get((key, path, route))
                other[key] = (
                    f"{_latency_pair(latency)} ({_latency_ratio(latency, direct)}x)"
                    if latency
                    else NONE
                )
            peer = report.latency.get(("peer", path, route))
            rows.append(
                Row(
                    measurement=f"{route}, {path}: p50 / p95 ms (vs direct httpx2)",
                    ours=_latency_pair(ours),
                    baseline=_latency_pair(direct),
                    ratio=_latency_ratio(ours, direct),
                    target=target,
                    floor=other["floor"],
                    peer=other["peer"],
                    ahead=_yes_no(ours.p50 < peer.p50) if peer else NONE,
                )
            )
    return rows


def _startup_rows(report: Report) -> list[Row]:
    cold = report.cold_start
    ours, floor, peer = cold["ours"].median_ms, cold["floor"].median_ms, cold["peer"].median_ms
    runs = len(cold["ours"].samples_ms)
    rows = [
        Row(
            measurement=f"cold start, spawn to first tools/list over stdio: ms, median of {runs}",
            ours=f"{ours:.0f}",
            baseline=f"{floor:.0f} (floor)",
            ratio=f"{ours / floor:.2f}",
            target=f"≤ {COLD_START_TARGET}x: {_verdict(ours <= COLD_START_TARGET * floor)}",
            peer=f"{peer:.0f} ({peer / floor:.2f}x)",
            ahead=_yes_no(ours < peer),
        )
    ]

    times = report.import_times
    rows.append(
        Row(
            measurement=(
                "import time, all modules (-X importtime): ms, fastest of "
                f"{report.config.import_time_runs}"
            ),
            ours=f"{times['ours'].total_ms:.0f}",
            baseline=f"{times['floor'].total_ms:.0f} (floor)",
            ratio=f"{times['ours'].total_ms / times['floor'].total_ms:.2f}",
            peer=f"{times['peer'].total_ms:.0f}",
            ahead=_yes_no(times["ours"].total_ms < times["peer"].total_ms),
        )
    )
    by_package = times["ours"].by_package_ms
    shown = sorted(by_package, key=by_package.get, reverse=True)[:IMPORT_PACKAGES_SHOWN]
    if "backstage_auth" not in shown:
        shown.append("backstage_auth")
    for package in shown:
        rows.append(
            Row(
                measurement=f"import time, package {package}: ms",
                ours=f"{by_package.get(package, 0.0):.0f}",
                baseline=f"{times['floor'].by_package_ms.get(package, 0.0):.0f} (floor)",
                peer=f"{times['peer'].by_package_ms.get(package, 0.0):.0f}",
            )
        )
    return rows


def _mib(kib: float) -> str:
    return f"{kib / 1024:.1f}"


def _memory_rows(report: Report) -> list[Row]:
    memory = report.memory
    ours, floor, peer = memory["ours"], memory["floor"], memory["peer"]
    ratio = ours.peak_after_first_kib / floor.peak_after_first_kib
    rows = [
        Row(
            measurement=f"peak RSS of the stdio server after {ours.first_calls} calls: MiB",
            ours=_mib(ours.peak_after_first_kib),
            baseline=f"{_mib(floor.peak_after_first_kib)} (floor)",
            ratio=f"{ratio:.2f}",
            target=f"≤ {RSS_TARGET}x: {_verdict(ratio <= RSS_TARGET)}",
            peer=(
                f"{_mib(peer.peak_after_first_kib)} "
                f"({peer.peak_after_first_kib / floor.peak_after_first_kib:.2f}x)"
            ),
            ahead=_yes_no(ours.peak_after_first_kib < peer.peak_after_first_kib),
        )
    ]

    def growth(memory: Memory) -> str:
        if memory.growth_kib is None:
            return "not measured"
        share = memory.growth_kib / memory.rss_after_first_kib
        return f"{_mib(memory.growth_kib)} ({share:+.1%})"

    assert ours.growth_kib is not None
    flat = ours.growth_kib <= RSS_GROWTH_LIMIT * ours.rss_after_first_kib
    rows.append(
        Row(
            measurement=(
                f"RSS growth of the stdio server from {ours.first_calls} to "
                f"{ours.total_calls} calls: MiB"
            ),
            ours=growth(ours),
            target=f"flat, ≤ {RSS_GROWTH_LIMIT:.0%}: {_verdict(flat)}",
            floor=growth(floor),
            peer=growth(peer),
        )
    )
    return rows


def _throughput_rows(report: Report) -> list[Row]:
    rows = []
    levels = sorted({concurrency for _, concurrency in report.throughput})
    for concurrency in levels:
        direct = report.throughput[("direct", concurrency)]
        ours = report.throughput[("ours", concurrency)]
        ratio = ours.calls_per_second / direct.calls_per_second

        def cell(result: Throughput, direct: Throughput = direct) -> str:
            return (
                f"{result.calls_per_second:.0f} "
                f"({result.calls_per_second / direct.calls_per_second:.2f}x, "
                f"{result.errors} errors)"
            )

        target = NONE
        if concurrency == THROUGHPUT_TARGET_CONCURRENCY:
            met = ratio >= THROUGHPUT_TARGET and ours.errors == 0 and direct.errors == 0
            target = f"≥ {THROUGHPUT_TARGET}x, 0 errors: {_verdict(met)}"
        peer = report.throughput[("peer", concurrency)]
        rows.append(
            Row(
                measurement=(
                    f"guest refresh throughput, {concurrency} concurrent HTTP clients: calls/s"
                ),
                ours=f"{ours.calls_per_second:.0f} ({ours.errors} errors)",
                baseline=f"{direct.calls_per_second:.0f} ({direct.errors} errors, direct)",
                ratio=f"{ratio:.2f}",
                target=target,
                floor=cell(report.throughput[("floor", concurrency)]),
                peer=cell(peer),
                ahead=_yes_no(ours.calls_per_second > peer.calls_per_second),
            )
        )

    if levels:
        top = levels[-1]

        def cpu(result: Throughput) -> str:
            return " / ".join(
                f"{result.cpu_ms_per_call[role]:.2f}" if role in result.cpu_ms_per_call else NONE
                for role in ("server", "backend", "load generator")
            )

        ours = report.throughput[("ours", top)]
        peer = report.throughput[("peer", top)]
        rows.append(
            Row(
                measurement=(
                    f"CPU per call at {top} concurrent HTTP clients: ms, "
                    "MCP server / Backstage backend / load generator"
                ),
                ours=cpu(ours),
                baseline=cpu(report.throughput[("direct", top)]) + " (direct)",
                floor=cpu(report.throughput[("floor", top)]),
                peer=cpu(peer),
                ahead=_yes_no(ours.cpu_ms_per_call["server"] < peer.cpu_ms_per_call["server"]),
            )
        )
    return rows


def _operation_rows(report: Report) -> list[Row]:
    rows = []
    for operation in OPERATIONS:
        ours = report.operations[("ours", operation)]
        peer = report.operations.get(("peer", operation))

        def describe(outcome: Outcome | None) -> str:
            if outcome is None:
                return "not reached: an earlier step failed"
            return ("ok: " if outcome.completed else "fails: ") + outcome.detail

        peer_completed = peer is not None and peer.completed
        ahead = "tie" if ours.completed and peer_completed else _yes_no(ours.completed)
        rows.append(
            Row(
                measurement=f"operation: {operation}",
                ours=describe(ours),
                peer=describe(peer),
                ahead=ahead,
            )
        )
    return rows
