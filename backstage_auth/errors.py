"""Errors raised by the Backstage client and the auth flows.

Every error carries a message for a person, a `next_step` for an agent and
the HTTP status the REST adapter responds with. Messages never contain tokens,
cookie values, the API key or upstream stack traces.
"""

from __future__ import annotations


class BackstageAuthError(Exception):
    """Base class of every error the server turns into a failed tool call."""

    http_status: int = 502
    title: str = "Backstage auth error"

    def __init__(self, message: str, next_step: str) -> None:
        super().__init__(message)
        self.message = message
        self.next_step = next_step

    def __str__(self) -> str:
        message = self.message if self.message.endswith((".", "?", "!")) else self.message + "."
        return f"{message} Next step: {self.next_step}"


class InvalidInputError(BackstageAuthError):
    """An argument failed a check; nothing was sent upstream."""

    http_status = 422
    title = "Invalid input"


class SessionNotFoundError(BackstageAuthError):
    """A session handle is unknown, expired or belongs to another client."""

    http_status = 401
    title = "Session not found"


class UpstreamError(BackstageAuthError):
    """Backstage returned an error, as JSON or inside the handler/frame page."""

    title = "Backstage returned an error"

    def __init__(
        self,
        message: str,
        next_step: str,
        *,
        status: int | None,
        error_name: str | None,
        error_message: str | None,
    ) -> None:
        super().__init__(message, next_step)
        self.status = status
        self.error_name = error_name
        self.error_message = error_message
        self.http_status = _rest_status(status)


class UpstreamUnavailableError(BackstageAuthError):
    """The Backstage host refused the connection or could not be resolved."""

    http_status = 502
    title = "Backstage unreachable"


class UpstreamTimeoutError(BackstageAuthError):
    """Backstage did not respond within the configured timeout."""

    http_status = 504
    title = "Backstage timed out"


class UpstreamTLSError(BackstageAuthError):
    """The TLS handshake with Backstage failed."""

    http_status = 502
    title = "TLS handshake with Backstage failed"


class UpstreamProtocolError(BackstageAuthError):
    """Backstage returned a response this server cannot read."""

    http_status = 502
    title = "Unexpected answer from Backstage"


def _rest_status(upstream_status: int | None) -> int:
    """Map an upstream status to the status the REST adapter reports."""
    if upstream_status is None:
        return 401
    if upstream_status in (400, 401, 403, 404, 409):
        return upstream_status
    # Backstage answers 501 for an operation the provider lacks (guest /start and
    # /handler/frame) and 404 for guest /logout; both mean that resource does not exist.
    if upstream_status == 501:
        return 404
    if upstream_status == 503:
        return 503
    return 502
