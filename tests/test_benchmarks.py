"""The benchmark script runs end to end with tiny counts. Its timings are never checked."""

from __future__ import annotations

import pytest

from benchmarks.main import main

pytestmark = pytest.mark.integration

EXPECTED_ROWS = [
    *(
        f"{route}, {path}: p50 / p95 ms"
        for route in ("guest refresh", "oidc refresh")
        for path in (
            "in-process Client",
            "stdio subprocess",
            "streamable HTTP, 2026-07-28",
            "streamable HTTP, 2025-11-25 session",
        )
    ),
    "cold start, spawn to first tools/list over stdio",
    "import time, all modules",
    "import time, package backstage_auth",
    "peak RSS of the stdio server after",
    "RSS growth of the stdio server from",
    "guest refresh throughput, 1 concurrent HTTP clients",
    "guest refresh throughput, 10 concurrent HTTP clients",
    "guest refresh throughput, 50 concurrent HTTP clients",
    "CPU per call at 50 concurrent HTTP clients",
    "operation: start",
    "operation: callback",
    "operation: oidc refresh after sign-in",
    "operation: logout",
    "operation: session isolation",
]


def test_quick_run_prints_every_row(backstage, capsys):
    exit_code = main(
        [
            "--quick",
            "--auth-url",
            backstage.auth_url,
            "--backend-pid",
            str(backstage.backend_pid),
        ]
    )
    output = capsys.readouterr().out

    assert exit_code == 0
    table_rows = [line for line in output.splitlines() if line.startswith("| ")]
    for expected in EXPECTED_ROWS:
        matches = [row for row in table_rows if row.startswith(f"| {expected}")]
        assert len(matches) == 1, f"row {expected!r} missing from:\n{output}"
