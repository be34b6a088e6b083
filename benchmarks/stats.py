"""Percentiles and timing helpers."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass


def percentile(samples: list[float], fraction: float) -> float:
    """Return the nearest-rank percentile of `samples`, `fraction` between 0 and 1."""
    if not samples:
        raise ValueError("percentile of no samples")
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Latency:
    """Per-call latency in milliseconds."""

    p50: float
    p95: float
    count: int

    @classmethod
    def of(cls, samples_ms: list[float]) -> Latency:
        return cls(
            p50=statistics.median(samples_ms),
            p95=percentile(samples_ms, 0.95),
            count=len(samples_ms),
        )
