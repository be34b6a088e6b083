"""Typed async client for Backstage's auth routes, with a caller-supplied cookie jar.

One `BackstageAuthClient` serves every session: the connection pool is
shared, the cookies are not. Each call takes the session's `httpx2.Cookies`,
sends them with the request and stores what Backstage sets in return. The
underlying `httpx2.AsyncClient` keeps no cookies of its own, so nothing leaks
between sessions.

Errors are raised as `backstage_auth.errors.BackstageAuthError` subclasses.
"""

from __future__ import annotations

import http.cookiejar
import json
import logging
import ssl
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import anyio
import httpx2
from pydantic import ValidationError

from backstage_auth.advice import upstream_error
from backstage_auth.errors import (
    BackstageAuthError,
    UpstreamProtocolError,
    UpstreamTimeoutError,
    UpstreamTLSError,
    UpstreamUnavailableError,
)
from backstage_auth.frame import FrameParseError, parse_frame_page
from backstage_auth.models import WireAuthResponse, WireError, WireErrorBody
from backstage_auth.settings import Settings

logger = logging.getLogger(__name__)

_XHR_HEADER = {"X-Requested-With": "XMLHttpRequest"}
_CHECK_URL = "Check that BACKSTAGE_AUTH_URL points at the Backstage backend's /api/auth."
# Keep every connection the pool opens until httpx2's 5 s idle expiry. httpx2's
# default keeps only 20 of up to 100, so more than 20 concurrent tool calls made
# it close and reopen upstream connections after every burst.
_POOL_LIMITS = httpx2.Limits(max_connections=100, max_keepalive_connections=100)


class _NoCookies(http.cookiejar.CookieJar):
    """Cookie jar that stores nothing, for the shared connection pool."""

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None

    def set_cookie(self, cookie: http.cookiejar.Cookie) -> None:
        return None


class BearerForOrigin(httpx2.Auth):
    """Adds `Authorization: Bearer <key>` only to requests for one origin.

    The origin is the scheme, host and port of BACKSTAGE_AUTH_URL. A request
    to any other origin goes out without the key, so the key cannot reach a
    host that a redirect or a misbuilt URL points at.
    """

    def __init__(self, api_key: str, base_url: str) -> None:
        self._api_key = api_key
        self._origin = _origin_of(httpx2.URL(base_url))

    async def async_auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        if _origin_of(request.url) == self._origin:
            request.headers["Authorization"] = f"Bearer {self._api_key}"
        yield request


def _origin_of(url: httpx2.URL) -> tuple[str, str, int | None]:
    default_port = {"http": 80, "https": 443}.get(url.scheme)
    return (url.scheme, url.host, url.port or default_port)


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: httpx2.Headers
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


@dataclass(frozen=True)
class FrameRedirect:
    """handler/frame returned the redirect flow's 302 instead of the popup page."""

    location: str


class BackstageAuthClient:
    """Client for `{BACKSTAGE_AUTH_URL}/{provider}/{start,handler/frame,refresh,logout}`."""

    def __init__(self, settings: Settings, transport: httpx2.AsyncBaseTransport | None = None):
        self._base_url = settings.auth_url
        parts = urlsplit(settings.auth_url)
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._base_path = parts.path.rstrip("/")
        self._timeout = settings.timeout_seconds
        self._max_body = settings.max_response_bytes
        auth = (
            BearerForOrigin(settings.api_key.get_secret_value(), settings.auth_url)
            if settings.api_key is not None
            else None
        )
        self._http = httpx2.AsyncClient(
            auth=auth,
            cookies=_NoCookies(),
            timeout=httpx2.Timeout(settings.timeout_seconds),
            verify=_tls_verification(settings),
            follow_redirects=False,
            transport=transport,
            limits=_POOL_LIMITS,
            headers={"Accept": "application/json, text/html;q=0.9"},
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def start(
        self, cookies: httpx2.Cookies, *, provider: str, env: str, flow: str | None
    ) -> str:
        """Begin an OAuth sign-in and return the identity provider's authorization URL.

        Stores the nonce and session cookies Backstage sets in `cookies`.
        """
        params = {"env": env} | ({"flow": flow} if flow else {})
        answer = await self._call(cookies, "GET", provider, "start", "start", params=params)
        location = answer.headers.get("location")
        if answer.status not in (301, 302, 303, 307) or not location:
            raise UpstreamProtocolError(
                f"Backstage returned HTTP {answer.status} and no redirect for /start.",
                _CHECK_URL,
            )
        return location

    async def handler_frame(
        self, cookies: httpx2.Cookies, *, provider: str, params: dict[str, str]
    ) -> WireAuthResponse | FrameRedirect:
        """Complete a sign-in with the identity provider's callback parameters.

        Returns the payload of the popup page, or `FrameRedirect` for the
        redirect flow. Raises `UpstreamError` when the page carries an error.
        """
        answer = await self._call(
            cookies, "GET", provider, "handler/frame", "callback", params=params
        )
        if answer.status in (301, 302, 303, 307):
            return FrameRedirect(answer.headers.get("location", ""))
        if answer.status != 200 or answer.content_type != "text/html":
            raise UpstreamProtocolError(
                f"Backstage returned HTTP {answer.status} for the callback "
                f"({answer.content_type or 'no content type'}) instead of the result page.",
                _CHECK_URL,
            )

        try:
            payload = parse_frame_page(answer.body.decode("utf-8", errors="replace"))
        except FrameParseError as exc:
            raise UpstreamProtocolError(
                f"Backstage's callback page could not be read: {exc}.", _CHECK_URL
            ) from None

        if "error" in payload:
            error = _wire_error(payload["error"])
            raise upstream_error(
                provider=provider,
                operation="callback",
                status=None,
                name=error.name,
                message=error.message,
            )
        return _parse_auth_response(payload["response"], "callback page")

    async def refresh(
        self, cookies: httpx2.Cookies, *, provider: str, env: str
    ) -> WireAuthResponse:
        """Exchange the session's refresh cookie for a fresh auth response."""
        answer = await self._call(
            cookies, "GET", provider, "refresh", "refresh", params={"env": env}, headers=_XHR_HEADER
        )
        self._require_success(answer, "refresh")
        return _parse_auth_response(_json_body(answer, "refresh"), "refresh answer")

    async def logout(self, cookies: httpx2.Cookies, *, provider: str, env: str) -> str | None:
        """Sign out of the provider and return the provider's logout URL, if Backstage sends one."""
        answer = await self._call(
            cookies, "POST", provider, "logout", "logout", params={"env": env}, headers=_XHR_HEADER
        )
        self._require_success(answer, "logout")
        if not answer.body.strip():
            return None
        body = _json_body(answer, "logout")
        logout_url = body.get("logoutUrl") if isinstance(body, dict) else None
        return logout_url if isinstance(logout_url, str) else None

    async def jwks(self) -> Any:
        """Fetch the public keys that sign Backstage identity tokens, as a JWK set."""
        answer = await self._call(
            httpx2.Cookies(), "GET", ".well-known", "jwks.json", "jwks", params={}
        )
        self._require_success(answer, "jwks")
        return _json_body(answer, "jwks")

    async def _call(
        self,
        cookies: httpx2.Cookies,
        method: str,
        provider: str,
        route: str,
        operation: str,
        *,
        params: dict[str, str],
        headers: dict[str, str] | None = None,
    ) -> _Answer:
        """Send one request and return its bounded body, raising for Backstage errors.

        The whole exchange, body included, must finish within the configured
        timeout.
        """
        path = f"{self._base_path}/{quote(provider, safe='')}/{route}"
        url = self._origin + path
        request = self._http.build_request(method, url, params=params, headers=headers)
        # httpx2 wraps the request in a urllib Request to match cookies even when
        # the jar is empty, at 40-50 us per call. A guest refresh has no cookies.
        if cookies.jar:
            cookies.set_cookie_header(request)

        started = time.perf_counter()
        try:
            with anyio.fail_after(self._timeout):
                answer = await self._send(request, cookies)
        except TimeoutError:
            self._log_failure(method, path, started, "timed out")
            raise UpstreamTimeoutError(
                f"Backstage did not respond to {method} {path} within {self._timeout:g} s.",
                "Retry later, or raise BACKSTAGE_AUTH_TIMEOUT if Backstage is slow.",
            ) from None
        except BackstageAuthError as exc:
            self._log_failure(method, path, started, type(exc).__name__)
            raise
        except httpx2.HTTPError as exc:
            self._log_failure(method, path, started, type(exc).__name__)
            raise _transport_error(exc, method, path, self._base_url) from None

        latency_ms = (time.perf_counter() - started) * 1000
        logger.info("%s %s -> %d in %.1f ms", method, path, answer.status, latency_ms)

        if answer.status >= 400:
            raise self._error_from(answer, provider, operation)
        return answer

    async def _send(self, request: httpx2.Request, cookies: httpx2.Cookies) -> _Answer:
        response = await self._http.send(request, stream=True, follow_redirects=False)
        try:
            body = await self._read_bounded(response)
        finally:
            await response.aclose()

        # Cookies are stored only from responses that were read to the end.
        cookies.extract_cookies(response)
        return _Answer(response.status_code, response.headers, body)

    async def _read_bounded(self, response: httpx2.Response) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self._max_body:
                raise UpstreamProtocolError(
                    f"Backstage's response is larger than {self._max_body} bytes, so reading "
                    "stopped.",
                    _CHECK_URL
                    + " Raise BACKSTAGE_AUTH_MAX_RESPONSE_BYTES if the response is genuine.",
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _error_from(self, answer: _Answer, provider: str, operation: str) -> BackstageAuthError:
        try:
            body = WireErrorBody.model_validate_json(answer.body)
        except ValidationError:
            return UpstreamProtocolError(
                f"Backstage returned HTTP {answer.status} without its JSON error body "
                f"({answer.content_type or 'no content type'}).",
                _CHECK_URL + " A proxy in front of Backstage may have answered instead.",
            )
        return upstream_error(
            provider=provider,
            operation=operation,
            status=answer.status,
            name=body.error.name,
            message=body.error.message,
        )

    def _require_success(self, answer: _Answer, operation: str) -> None:
        if answer.status != 200:
            raise UpstreamProtocolError(
                f"Backstage returned HTTP {answer.status} for {operation}, and a redirect is "
                "never followed.",
                _CHECK_URL + " It must not point at a login proxy.",
            )

    def _log_failure(self, method: str, path: str, started: float, reason: str) -> None:
        latency_ms = (time.perf_counter() - started) * 1000
        logger.warning("%s %s failed after %.1f ms: %s", method, path, latency_ms, reason)


def _tls_verification(settings: Settings) -> ssl.SSLContext | bool:
    if not settings.verify_tls:
        logger.warning(
            "TLS certificate verification is OFF (BACKSTAGE_AUTH_VERIFY_TLS=false); "
            "use this only against a test backend"
        )
        return False
    if settings.ca_bundle is not None:
        return ssl.create_default_context(cafile=str(settings.ca_bundle))
    if urlsplit(settings.auth_url).scheme == "http":
        # A plain-http URL never needs TLS, because requests go only to its origin
        # and redirects are never followed. This context loads no CA bundle, which
        # took 20-40 ms of start-up on a 2-core machine. It trusts no server, so an
        # https request would fail verification.
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    return True


def _transport_error(
    exc: httpx2.HTTPError, method: str, path: str, base_url: str
) -> BackstageAuthError:
    target = f"{method} {path}"
    if isinstance(exc, httpx2.TimeoutException):
        return UpstreamTimeoutError(
            f"Backstage did not respond to {target} in time.",
            "Retry later, or raise BACKSTAGE_AUTH_TIMEOUT if Backstage is slow.",
        )
    if _is_tls_failure(exc):
        scheme = urlsplit(base_url).scheme
        hint = (
            " If Backstage serves plain HTTP (the default of a local dev backend), set "
            "BACKSTAGE_AUTH_URL to an http:// URL."
            if scheme == "https"
            else ""
        )
        return UpstreamTLSError(
            f"The TLS handshake with Backstage failed for {target}: {_ssl_reason(exc)}.",
            "Set BACKSTAGE_AUTH_CA_BUNDLE to the CA that signed Backstage's certificate." + hint,
        )
    if isinstance(exc, httpx2.ConnectError):
        return UpstreamUnavailableError(
            f"Could not connect to Backstage at {base_url} ({_root_cause(exc)}).",
            "Check that Backstage is running and that BACKSTAGE_AUTH_URL has the right host "
            "and port.",
        )
    if isinstance(exc, httpx2.RemoteProtocolError | httpx2.ReadError):
        return UpstreamProtocolError(
            f"Backstage closed the connection before its answer to {target} was complete.",
            "Retry; if it keeps failing, check the Backstage backend's log and any proxy in "
            "front of it.",
        )
    return UpstreamProtocolError(
        f"The exchange with Backstage failed for {target} ({type(exc).__name__}).",
        _CHECK_URL,
    )


def _is_tls_failure(exc: BaseException) -> bool:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _ssl_reason(exc: BaseException) -> str:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"certificate verification failed ({cause.verify_message})"
        if isinstance(cause, ssl.SSLError):
            return cause.reason or type(cause).__name__
        cause = cause.__cause__ or cause.__context__
    return "unknown TLS error"


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return str(exc) or type(exc).__name__


def _json_body(answer: _Answer, operation: str) -> Any:
    try:
        return json.loads(answer.body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UpstreamProtocolError(
            f"Backstage returned a body that is not JSON for {operation} "
            f"({answer.content_type or 'no content type'}).",
            _CHECK_URL,
        ) from None


def _parse_auth_response(data: Any, source: str) -> WireAuthResponse:
    try:
        return WireAuthResponse.model_validate(data)
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in err["loc"]) or "(root)" for err in exc.errors())
        raise UpstreamProtocolError(
            f"Backstage's {source} has an unexpected shape (fields: {fields}).",
            _CHECK_URL,
        ) from None


def _wire_error(data: Any) -> WireError:
    try:
        return WireError.model_validate(data)
    except ValidationError:
        return WireError(name="Error", message="unreadable error")
