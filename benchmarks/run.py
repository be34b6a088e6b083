"""Benchmark backstage-auth-mcp against the real Backstage test backend on loopback.

    uv run python benchmarks/run.py [--quick] [--json PATH] [--auth-url URL] [--keep-logs]

Starts the Backstage test backend (tests/backstage_backend.py) unless
--auth-url names a running one, then measures, side by side in one run:
per-call latency against direct httpx2, cold start, import time and memory
against a floor MCPServer, HTTP throughput, and the same calls through a
fastmcp OpenAPI proxy. Prints one Markdown table to stdout and progress to
stderr. docs/benchmarks.md explains every row.
"""

import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: make the `benchmarks` and `tests` packages importable.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.main import main

if __name__ == "__main__":
    sys.exit(main())
