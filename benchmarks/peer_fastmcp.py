"""Generic OpenAPI-to-MCP proxy for the same four Backstage routes, built with fastmcp.

This is what a user gets from `FastMCP.from_openapi` with fastmcp's defaults:
one tool per operation in `backstage_auth_openapi.json`, and fastmcp's default
`httpx2.AsyncClient` for the server URL (30 s timeout, one cookie jar for the
whole process, redirects not followed).

    python benchmarks/peer_fastmcp.py AUTH_URL [--transport stdio|http] [--port N]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

OPENAPI_PATH = Path(__file__).resolve().parent / "backstage_auth_openapi.json"


def load_openapi(auth_url: str) -> dict[str, Any]:
    """Read the OpenAPI document and point its server at `auth_url`."""
    spec = json.loads(OPENAPI_PATH.read_text())
    spec["servers"] = [{"url": auth_url}]
    return spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("auth_url", help="Backstage auth API base, including /api/auth")
    parser.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    parser.add_argument("--port", type=int, default=9092, help="port for http")
    args = parser.parse_args()

    # Imported here so that `--help` works without the bench dependencies.
    from fastmcp import FastMCP

    server = FastMCP.from_openapi(load_openapi(args.auth_url), name="backstage-auth-openapi")
    if args.transport == "stdio":
        server.run(transport="stdio", show_banner=False)
    else:
        server.run(transport="http", host="127.0.0.1", port=args.port, show_banner=False)


if __name__ == "__main__":
    main()
