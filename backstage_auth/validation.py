"""Checks on tool and REST inputs, run before any request goes upstream.

Each check raises `ValueError` with a message that names the rule and the
fix, so pydantic reports it against the field that failed.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qs, urlsplit

from pydantic import AfterValidator, Field

PROVIDER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
ENV_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
MAX_CODE_LENGTH = 4096
MAX_STATE_LENGTH = 4096
MAX_CALLBACK_URL_LENGTH = 8192
MAX_HANDLE_LENGTH = 128
PRINTABLE_ASCII_PATTERN = "^[!-~]+$"
STATE_PATTERN = "^[0-9A-Fa-f]+$"
# urlsplit() reads the scheme case-insensitively, so the pattern does too.
CALLBACK_URL_PATTERN = "^[Hh][Tt][Tt][Pp][Ss]?://[!-~]+$"
SESSION_HANDLE_PATTERN = "^[A-Za-z0-9_-]+$"

_PROVIDER_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def _is_printable_ascii(value: str) -> bool:
    return all(0x21 <= ord(char) <= 0x7E for char in value)


def check_provider(value: str) -> str:
    """Accept a provider id that is safe as one URL path segment."""
    if "://" in value:
        raise ValueError(
            "provider must be a provider id such as 'github', 'oidc' or 'guest', not a URL; "
            "pass only the id"
        )
    if not value or len(value) > 64:
        raise ValueError(
            f"provider must be 1 to 64 characters long, got {len(value)}; "
            "pass a provider id such as 'github', 'oidc' or 'guest'"
        )
    if not set(value) <= _PROVIDER_CHARS or value[0] in "-_":
        raise ValueError(
            "provider may contain only ASCII letters, digits, '-' and '_' and must start with "
            "a letter or digit; pass a provider id such as 'github', 'oidc' or 'guest'"
        )
    return value


def check_env(value: str) -> str:
    """Accept a Backstage auth environment name such as 'development'."""
    if not value or len(value) > 64 or not _is_printable_ascii(value):
        raise ValueError(
            "env must be 1 to 64 printable ASCII characters, such as 'development' or "
            "'production'; leave it out to use the server's default environment"
        )
    if not set(value) <= _PROVIDER_CHARS | {"."} or value[0] in "-_.":
        raise ValueError(
            "env may contain only ASCII letters, digits, '.', '-' and '_', such as "
            "'development'; leave it out to use the server's default environment"
        )
    return value


def check_code(value: str) -> str:
    """Accept an OAuth authorization code as the identity provider returned it."""
    if value.startswith(("http://", "https://")):
        raise ValueError(
            "code must be the authorization code alone, not a URL; pass the full URL your "
            "browser ended on as callback_url instead"
        )
    if not value or len(value) > MAX_CODE_LENGTH or not _is_printable_ascii(value):
        raise ValueError(
            f"code must be 1 to {MAX_CODE_LENGTH} printable ASCII characters without spaces; "
            "copy the 'code' query parameter of the callback URL, or pass that URL as callback_url"
        )
    return value


def check_state(value: str) -> str:
    """Accept the hex-encoded `state` that Backstage put in the authorization URL."""
    if value.startswith(("http://", "https://")):
        raise ValueError(
            "state must be the 'state' query parameter alone, not a URL; pass the full URL "
            "your browser ended on as callback_url instead"
        )
    if not value or len(value) > MAX_STATE_LENGTH or not set(value) <= _HEX_DIGITS:
        raise ValueError(
            f"state must be 1 to {MAX_STATE_LENGTH} hexadecimal characters, as Backstage "
            "writes it; copy the 'state' query parameter of the callback URL unchanged"
        )
    return value


def check_callback_url(value: str) -> str:
    """Accept the URL a browser ended on after the identity provider redirected it.

    Returns the URL without surrounding whitespace, which pasting often adds.
    """
    value = value.strip()
    if len(value) > MAX_CALLBACK_URL_LENGTH:
        raise ValueError(
            f"callback_url must be at most {MAX_CALLBACK_URL_LENGTH} characters, got "
            f"{len(value)}; copy only the address bar of the browser tab the sign-in ended on"
        )
    if not _is_printable_ascii(value):
        raise ValueError(
            "callback_url contains a space, line break or non-ASCII character inside it; "
            "copy the address bar of the browser tab the sign-in ended on as one line"
        )
    if "&amp;" in value:
        raise ValueError(
            "callback_url contains '&amp;', an HTML-escaped '&'; replace each '&amp;' with '&' "
            "or copy the URL from the browser's address bar instead of from a web page"
        )
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            "callback_url must be a full http(s) URL such as "
            "'http://<backstage host>/api/auth/<provider>/handler/frame?code=...&state=...'; "
            "copy the whole address bar of the browser tab that the sign-in ended on"
        )
    query = parse_qs(parts.query)
    if "state" not in query or not ("code" in query or "error" in query):
        raise ValueError(
            "callback_url has no 'state' together with 'code' or 'error' in its query; "
            "copy the address of the tab the identity provider redirected to, not the "
            "authorization URL"
        )
    return value


def check_session_handle(value: str) -> str:
    """Accept a session handle in the shape the server issues."""
    if not value or len(value) > MAX_HANDLE_LENGTH or not set(value) <= _PROVIDER_CHARS:
        raise ValueError(
            "session_handle must be the exact 'session_handle' value an earlier start or "
            "callback result returned"
        )
    return value


ProviderId = Annotated[
    str,
    AfterValidator(check_provider),
    Field(
        description=(
            "Backstage auth provider id, as configured under auth.providers in Backstage's "
            "app-config: for example 'github', 'google', 'okta', 'oidc' or 'guest'."
        ),
        examples=["oidc", "github", "guest"],
        json_schema_extra={"pattern": PROVIDER_PATTERN, "maxLength": 64},
    ),
]
EnvName = Annotated[
    str,
    AfterValidator(check_env),
    Field(json_schema_extra={"pattern": ENV_PATTERN, "maxLength": 64}),
]
OptionalEnv = Annotated[
    EnvName | None,
    Field(
        description=(
            "Backstage auth environment, the key under auth.providers.<provider> in Backstage's "
            "app-config, such as 'development' or 'production'. Leave it out to use the "
            "server's default."
        )
    ),
]

# The JSON Schema keywords below describe the part of each check that a pattern
# can express, so a value the schema rejects is always rejected by the check too.
# The checks also enforce rules the schema leaves out: a code must not be a URL,
# and a callback URL needs a host and 'state' with 'code' or 'error' in its query.
Code = Annotated[
    str,
    AfterValidator(check_code),
    Field(json_schema_extra={"pattern": PRINTABLE_ASCII_PATTERN, "maxLength": MAX_CODE_LENGTH}),
]
State = Annotated[
    str,
    AfterValidator(check_state),
    Field(json_schema_extra={"pattern": STATE_PATTERN, "maxLength": MAX_STATE_LENGTH}),
]
CallbackUrl = Annotated[
    str,
    AfterValidator(check_callback_url),
    Field(
        json_schema_extra={"pattern": CALLBACK_URL_PATTERN, "maxLength": MAX_CALLBACK_URL_LENGTH}
    ),
]
SessionHandle = Annotated[
    str,
    AfterValidator(check_session_handle),
    Field(json_schema_extra={"pattern": SESSION_HANDLE_PATTERN, "maxLength": MAX_HANDLE_LENGTH}),
]


def split_callback_url(url: str) -> dict[str, str]:
    """Return the first `code`, `state`, `error` and `error_description` of a callback URL."""
    query = parse_qs(urlsplit(url).query)
    keys = ("code", "state", "error", "error_description")
    return {key: query[key][0] for key in keys if key in query}
