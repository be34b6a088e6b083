"""Command line: `backstage-auth-mcp [--surface ...] [--transport ...] [--port ...] ...`.

`--surface` chooses MCP, the REST adapter or both; see `backstage-auth-mcp --help`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import anyio
from pydantic import ValidationError

from backstage_auth import __version__
from backstage_auth.http_app import (
    ExposureError,
    HttpSurface,
    check_exposure,
    create_mcp_http_app,
    serve_all,
)
from backstage_auth.rest import API_PREFIX, create_rest_app
from backstage_auth.service import open_auth_service
from backstage_auth.settings import Settings
from backstage_auth.tools import create_server, enabled_tools

logger = logging.getLogger("backstage_auth")

_ENVIRONMENT_HELP = """\
environment variables (also read from ./.env):
  BACKSTAGE_AUTH_URL          auth API base URL (default http://localhost:7007/api/auth)
  BACKSTAGE_API_KEY           sent as 'Authorization: Bearer' to the Backstage host only
  BACKSTAGE_AUTH_ENV          default auth environment (default development)
  BACKSTAGE_AUTH_TIMEOUT      upstream request timeout in seconds (default 10)
  BACKSTAGE_AUTH_CA_BUNDLE    PEM file of CAs for Backstage's TLS certificate
  BACKSTAGE_AUTH_VERIFY_TLS   false switches certificate checks off (default true)
  BACKSTAGE_AUTH_REVEAL_TOKENS  true puts raw tokens in results (default false)
  BACKSTAGE_AUTH_TOKEN_ISSUER expected 'iss' of identity tokens (default BACKSTAGE_AUTH_URL)
  BACKSTAGE_AUTH_SESSION_IDLE_SECONDS  idle expiry of upstream sessions (default 1800)
  BACKSTAGE_AUTH_MAX_SESSIONS upstream sessions kept at most (default 1000)
  BACKSTAGE_AUTH_MAX_RESPONSE_BYTES  largest upstream body read (default 1048576)
  BACKSTAGE_AUTH_LOG_LEVEL    DEBUG, INFO, WARNING or ERROR (default INFO)
  BACKSTAGE_AUTH_HTTP_TOKEN   bearer token HTTP clients must send (default: none)
  BACKSTAGE_AUTH_ALLOWED_HOSTS    extra Host values for HTTP, comma-separated ('name:*')
  BACKSTAGE_AUTH_ALLOWED_ORIGINS  extra browser Origins for HTTP, comma-separated
  BACKSTAGE_AUTH_READ_ONLY    true serves only read-only tools (default false)
  BACKSTAGE_AUTH_TOOLS        comma-separated tool names to serve (default all)
  BACKSTAGE_AUTH_ALLOW_UNAUTHENTICATED_REMOTE  true allows a public --host without a token
  BACKSTAGE_AUTH_TRANSPORT    stdio or streamable-http (default stdio)
  BACKSTAGE_AUTH_HOST         bind address of the HTTP surfaces (default 127.0.0.1)
  BACKSTAGE_AUTH_PORT         port of MCP streamable HTTP (default 9090)
  BACKSTAGE_AUTH_SURFACE      mcp, rest or both (default mcp)
  BACKSTAGE_AUTH_REST_PORT    port of the REST adapter (default 8080)

REST on 127.0.0.1:8080 and MCP streamable HTTP on 127.0.0.1:9090 in one process:
  backstage-auth-mcp --surface both
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="backstage-auth-mcp",
        description="MCP server that signs AI agents in to Backstage through its auth API.",
        epilog=_ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--surface",
        choices=["mcp", "rest", "both"],
        help=(
            "what to serve: the MCP server, the REST adapter, or both in one process with MCP "
            "over streamable HTTP (default mcp)"
        ),
    )
    parser.add_argument(
        "--transport",
        choices=["stdio", "streamable-http"],
        help="MCP transport (default stdio, or streamable-http with --surface both)",
    )
    parser.add_argument(
        "--host", help="address that MCP streamable-http and REST bind (default 127.0.0.1)"
    )
    parser.add_argument("--port", type=int, help="port of MCP streamable-http (default 9090)")
    parser.add_argument("--rest-port", type=int, help="port of the REST adapter (default 8080)")
    parser.add_argument("--auth-url", help="overrides BACKSTAGE_AUTH_URL")
    parser.add_argument("--env", dest="default_env", help="overrides BACKSTAGE_AUTH_ENV")
    parser.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="overrides BACKSTAGE_AUTH_LOG_LEVEL",
    )
    parser.add_argument(
        "--read-only",
        action="store_true",
        default=None,
        help="serve only read-only tools, so logout is not listed (BACKSTAGE_AUTH_READ_ONLY)",
    )
    parser.add_argument(
        "--tools",
        help="comma-separated tool names to serve; all when unset (BACKSTAGE_AUTH_TOOLS)",
    )
    parser.add_argument(
        "--allow-unauthenticated-remote",
        action="store_true",
        default=None,
        help="allow a non-loopback --host without BACKSTAGE_AUTH_HTTP_TOKEN",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def load_settings(args: argparse.Namespace) -> Settings:
    """Read settings from the environment, with command-line values taking precedence."""
    overrides = {
        key: value
        for key in (
            "surface",
            "transport",
            "host",
            "port",
            "rest_port",
            "auth_url",
            "default_env",
            "log_level",
            "read_only",
            "tools",
            "allow_unauthenticated_remote",
        )
        if (value := getattr(args, key)) is not None
    }
    return Settings(**overrides)


def configure_logging(level: str) -> None:
    """Send log records to stderr; stdout carries the MCP protocol on stdio."""
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    # httpx2 and its transport log full request URLs, which carry OAuth codes and states;
    # sse_starlette logs every response chunk at DEBUG, which carries tool results.
    for name in ("httpx2", "httpcore", "httpcore2", "sse_starlette"):
        logging.getLogger(name).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args)
    except ValidationError as exc:
        print(f"backstage-auth-mcp: invalid configuration\n{_format_errors(exc)}", file=sys.stderr)
        return 2

    if settings.serves_rest or settings.serves_mcp_http:
        try:
            check_exposure(settings)
        except ExposureError as exc:
            print(f"backstage-auth-mcp: {exc}", file=sys.stderr)
            return 2

    configure_logging(settings.log_level)
    try:
        if settings.serves_rest or settings.serves_mcp_http:
            anyio.run(serve_http_surfaces, settings)
        else:
            logger.info(
                "Starting backstage-auth-mcp %s on stdio with tools: %s",
                __version__,
                ", ".join(enabled_tools(settings)),
            )
            create_server(settings).run("stdio")
    except KeyboardInterrupt:
        pass
    logger.info("Stopped backstage-auth-mcp")
    return 0


async def serve_http_surfaces(settings: Settings) -> None:
    """Serve REST, MCP over streamable HTTP, or both, over one Backstage client and store."""
    async with open_auth_service(settings) as service:
        surfaces = []
        if settings.serves_rest:
            rest_app = create_rest_app(settings, service=service)
            # The REST app logs each request itself, without the query string, because
            # the query carries OAuth codes and states.
            surfaces.append(HttpSurface("REST", rest_app, settings.rest_port, access_log=False))
            logger.info(
                "Starting the REST adapter at http://%s:%d%s",
                settings.host,
                settings.rest_port,
                API_PREFIX,
            )
        if settings.serves_mcp_http:
            server = create_server(settings, service=service)
            mcp_app = create_mcp_http_app(settings, server)
            surfaces.append(HttpSurface("MCP", mcp_app, settings.port))
            logger.info(
                "Starting backstage-auth-mcp %s on streamable-http with tools: %s",
                __version__,
                ", ".join(enabled_tools(settings)),
            )
        await serve_all(surfaces, host=settings.host)


def _format_errors(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        field = ".".join(str(part) for part in error["loc"]) or "settings"
        lines.append(f"  {field}: {error['msg']}")
    return "\n".join(lines)
