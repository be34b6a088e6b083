"""Call counts and durations of a benchmark run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BenchConfig:
    """How much work each section of the benchmark does."""

    # Latency: every client runs `latency_batch` calls per round, in turn,
    # for `latency_rounds` rounds, after `warmup_calls` unrecorded calls.
    latency_rounds: int
    latency_batch: int
    warmup_calls: int
    # Cold start: runs per server, alternating between the servers.
    cold_start_runs: int
    # Import time: runs per server under -X importtime; the fastest is kept.
    import_time_runs: int
    # Memory: RSS is read after `rss_first_calls` and, for backstage-auth-mcp,
    # again after `rss_total_calls`.
    rss_first_calls: int
    rss_total_calls: int
    rss_concurrency: int
    # Throughput: measured window per concurrency level, in seconds.
    throughput_seconds: float
    concurrency_levels: tuple[int, ...] = (1, 10, 50)

    @property
    def latency_calls(self) -> int:
        return self.latency_rounds * self.latency_batch


FULL = BenchConfig(
    latency_rounds=20,
    latency_batch=10,
    warmup_calls=20,
    cold_start_runs=10,
    import_time_runs=3,
    rss_first_calls=1_000,
    rss_total_calls=10_000,
    rss_concurrency=8,
    throughput_seconds=4.0,
)

# Tiny counts that exercise every row. The numbers they produce mean nothing.
QUICK = BenchConfig(
    latency_rounds=1,
    latency_batch=3,
    warmup_calls=1,
    cold_start_runs=1,
    import_time_runs=1,
    rss_first_calls=10,
    rss_total_calls=30,
    rss_concurrency=4,
    throughput_seconds=0.3,
)
