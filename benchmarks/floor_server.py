"""Minimal one-tool MCP server on the same SDK: the floor for start-up time and memory.

Its one tool forwards GET `{auth_url}/guest/refresh` with a shared
`httpx2.AsyncClient` and returns Backstage's JSON unchanged, so it pays for
the SDK, the transport and one upstream request, and for nothing else.

    python benchmarks/floor_server.py AUTH_URL [--transport stdio|streamable-http] [--port N]
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
from mcp.server.mcpserver import Context, MCPServer


def create_floor_server(auth_url: str) -> MCPServer:
    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[httpx2.AsyncClient]:
        async with httpx2.AsyncClient(base_url=auth_url, timeout=10.0) as http:
            yield http

    server = MCPServer("floor", lifespan=lifespan, log_level="WARNING")

    @server.tool(name="guest-refresh")
    async def guest_refresh(ctx: Context) -> dict[str, Any]:
        """Call GET /guest/refresh and return Backstage's JSON response."""
        http: httpx2.AsyncClient = ctx.request_context.lifespan_context
        response = await http.get(
            "/guest/refresh",
            params={"env": "development"},
            headers={"X-Requested-With": "XMLHttpRequest"},
        )
        response.raise_for_status()
        return response.json()

    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("auth_url", help="Backstage auth API base, including /api/auth")
    parser.add_argument("--transport", choices=["stdio", "streamable-http"], default="stdio")
    parser.add_argument("--port", type=int, default=9091, help="port for streamable-http")
    args = parser.parse_args()

    server = create_floor_server(args.auth_url)
    if args.transport == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
