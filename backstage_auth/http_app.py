"""The MCP server over streamable HTTP, as one ASGI app behind `InboundGuard`.

Routes: `/mcp` (the MCP endpoint) and `/healthz` (liveness, no checks, no
details). The SDK's own Host checks are switched off because `InboundGuard`
applies the same allowlist to every HTTP surface of this server. `serve_all`
runs one or more such apps (MCP and REST) with uvicorn in one process.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass

import anyio
import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.types import ASGIApp

from backstage_auth.http_security import LOOPBACK_HOSTS, LOOPBACK_ORIGINS, InboundGuard, is_loopback
from backstage_auth.settings import Settings

logger = logging.getLogger(__name__)

MCP_PATH = "/mcp"


class ExposureError(Exception):
    """The HTTP bind settings would expose the server without protection."""


def check_exposure(settings: Settings) -> None:
    """Refuse a non-loopback bind without a bearer token, unless explicitly allowed.

    Raises `ExposureError` with the ways to proceed.
    """
    if is_loopback(settings.host) or settings.http_token is not None:
        return
    if settings.allow_unauthenticated_remote:
        logger.warning(
            "Serving on %s without a bearer token: anyone who can reach this address can sign "
            "in through this server",
            settings.host,
        )
        return
    raise ExposureError(
        f"refusing to listen on {settings.host!r} without a bearer token, because any host that "
        "can reach it could use this server. Set BACKSTAGE_AUTH_HTTP_TOKEN to a long random "
        "string (clients then send 'Authorization: Bearer <token>'), bind 127.0.0.1, or pass "
        "--allow-unauthenticated-remote if a proxy in front already authenticates callers."
    )


def guard(app: ASGIApp, settings: Settings) -> InboundGuard:
    """Wrap an HTTP app in the Host, Origin and bearer checks the settings configure."""
    hosts = [*LOOPBACK_HOSTS, *settings.allowed_hosts]
    if not is_loopback(settings.host) and settings.host not in ("0.0.0.0", "::"):  # noqa: S104
        hosts.append(f"{settings.host}:*")
    token = settings.http_token.get_secret_value() if settings.http_token is not None else None
    return InboundGuard(
        app,
        allowed_hosts=hosts,
        allowed_origins=[*LOOPBACK_ORIGINS, *settings.allowed_origins],
        bearer_token=token,
    )


async def healthz(_: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def create_mcp_http_app(settings: Settings, server: MCPServer) -> InboundGuard:
    """Build the guarded ASGI app that serves `server` at /mcp."""
    mcp_app = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        session_idle_timeout=settings.session_idle_seconds,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with server.session_manager.run():
            yield

    app = Starlette(
        routes=[Route("/healthz", healthz, methods=["GET"]), Mount("/", app=mcp_app)],
        lifespan=lifespan,
    )
    return guard(app, settings)


@dataclass(frozen=True)
class HttpSurface:
    """One ASGI app to serve on its own port."""

    name: str
    app: ASGIApp
    port: int
    # uvicorn's access log prints each request line with its query string.
    access_log: bool = True


class _SharedSignalServer(uvicorn.Server):
    """uvicorn server that leaves SIGINT and SIGTERM to `serve_all`.

    uvicorn installs its own handlers per server and restores the previous ones
    when it stops, so two servers in one process would stop one at a time.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_all(surfaces: Sequence[HttpSurface], *, host: str) -> None:
    """Run each surface with uvicorn until SIGINT or SIGTERM stops them all.

    uvicorn logs through the root logger. A second SIGINT stops without
    waiting for open connections.
    """
    servers = []
    for surface in surfaces:
        config = uvicorn.Config(
            surface.app,
            host=host,
            port=surface.port,
            log_config=None,
            lifespan="on",
            access_log=surface.access_log,
        )
        servers.append(_SharedSignalServer(config))
        logger.info("%s listening on http://%s:%d", surface.name, host, surface.port)

    async with anyio.create_task_group() as group:
        group.start_soon(_stop_on_signal, servers)
        async with anyio.create_task_group() as serving:
            for server in servers:
                serving.start_soon(server.serve)
        group.cancel_scope.cancel()


async def _stop_on_signal(servers: Sequence[uvicorn.Server]) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            if any(server.should_exit for server in servers) and signum == signal.SIGINT:
                logger.warning("Received a second %s; stopping without waiting", name)
                for server in servers:
                    server.force_exit = True
                continue
            logger.info("Received %s; stopping the HTTP servers", name)
            for server in servers:
                server.should_exit = True


async def serve(app: ASGIApp, *, host: str, port: int, name: str) -> None:
    """Run one app with uvicorn until SIGINT or SIGTERM."""
    await serve_all([HttpSurface(name, app, port)], host=host)
