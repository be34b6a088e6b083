"""Inbound protection for the HTTP surfaces: Host and Origin allowlists and a bearer token.

`InboundGuard` is ASGI middleware that runs three named checks, in order:

1. `check_host`: the `Host` header must match the allowlist, so a DNS-rebinding
   page cannot reach a server bound to loopback (421 otherwise).
2. `check_origin`: a browser's `Origin` header, when present, must match the
   allowlist (403 otherwise). Non-browser clients send none and pass.
3. `check_bearer`: with a token configured, `Authorization: Bearer <token>`
   must match, compared in constant time (401 otherwise).

Paths in `open_paths` (the health check) skip all three; they reveal nothing.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from collections.abc import Iterable, Sequence
from http import HTTPStatus

from starlette.types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger(__name__)

LOOPBACK_HOSTS = ("127.0.0.1:*", "localhost:*", "[::1]:*")
LOOPBACK_ORIGINS = ("http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*")


def is_loopback(host: str) -> bool:
    """Return whether a bind address accepts connections only from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def matches(value: str, patterns: Iterable[str]) -> bool:
    """Match `value` exactly, or a pattern `prefix:*` against any port of that prefix."""
    for pattern in patterns:
        if pattern == value:
            return True
        if pattern.endswith(":*"):
            prefix = pattern[:-2]
            if value.startswith(prefix + ":") and value[len(prefix) + 1 :].isdigit():
                return True
    return False


def check_host(host: str | None, allowed_hosts: Sequence[str]) -> bool:
    return host is not None and matches(host, allowed_hosts)


def check_origin(origin: str | None, allowed_origins: Sequence[str]) -> bool:
    return origin is None or matches(origin, allowed_origins)


def check_bearer(authorization: str | None, token: str | None) -> bool:
    if token is None:
        return True
    if authorization is None or not authorization.lower().startswith("bearer "):
        return False
    return hmac.compare_digest(authorization[7:].strip().encode(), token.encode())


class InboundGuard:
    """ASGI middleware that applies `check_host`, `check_origin` and `check_bearer`."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed_hosts: Sequence[str],
        allowed_origins: Sequence[str],
        bearer_token: str | None,
        open_paths: Sequence[str] = ("/healthz",),
    ) -> None:
        self._app = app
        self._allowed_hosts = tuple(allowed_hosts)
        self._allowed_origins = tuple(allowed_origins)
        self._token = bearer_token
        self._open_paths = frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self._open_paths:
            await self._app(scope, receive, send)
            return

        headers = {
            key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]
        }
        host = headers.get("host")
        if not check_host(host, self._allowed_hosts):
            logger.warning("Rejected a request with Host %r: not in the allowed hosts", host)
            await _reject(
                send,
                421,
                f"Host {host!r} is not allowed.",
                "Add it to BACKSTAGE_AUTH_ALLOWED_HOSTS (comma-separated; 'name:*' allows any "
                "port), or connect through 127.0.0.1 or localhost.",
            )
            return

        origin = headers.get("origin")
        if not check_origin(origin, self._allowed_origins):
            logger.warning("Rejected a request with Origin %r: not in the allowed origins", origin)
            await _reject(
                send,
                403,
                f"Origin {origin!r} is not allowed.",
                "Add it to BACKSTAGE_AUTH_ALLOWED_ORIGINS (comma-separated).",
            )
            return

        if not check_bearer(headers.get("authorization"), self._token):
            logger.warning("Rejected a request without a valid bearer token")
            await _reject(
                send,
                401,
                "Missing or invalid bearer token.",
                "Send 'Authorization: Bearer <token>' with the token in the server's "
                "BACKSTAGE_AUTH_HTTP_TOKEN.",
                extra_headers=[(b"www-authenticate", b'Bearer realm="backstage-auth-mcp"')],
            )
            return

        await self._app(scope, receive, send)


async def _reject(
    send: Send,
    status: int,
    message: str,
    next_step: str,
    extra_headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    # An RFC 9457 problem of type about:blank, shaped like the REST adapter's own errors.
    problem = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": f"{message} Next step: {next_step}",
        "next_step": next_step,
    }
    body = json.dumps(problem).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                *extra_headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
