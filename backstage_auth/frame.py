"""Decoding of the two browser-oriented formats Backstage uses: the handler/frame
page and the OAuth `state` parameter.

The handler/frame page is `<html><body><script>…</script></body></html>` whose
script contains `decodeURIComponent('<payload>')` twice: first the JSON payload
(`{"type": "authorization_response", "response" | "error": …}`), then the
target origin. The payload is `encodeURIComponent(JSON)`, not base64.

The `state` is lowercase hex of the UTF-8 bytes of a form-urlencoded string
with the fields nonce, env, origin, redirectUrl, flow and scope.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl, unquote

_PAYLOAD_LITERAL = re.compile(r"decodeURIComponent\('([^']*)'\)")


class FrameParseError(ValueError):
    """The handler/frame page does not contain a readable payload."""


class StateDecodeError(ValueError):
    """The `state` value is not hex-encoded form data."""


def parse_frame_page(html: str) -> dict[str, Any]:
    """Return the JSON payload of a handler/frame page.

    Raises `FrameParseError` when the page has no payload literal or the
    literal is not a JSON object with a `response` or `error` key.
    """
    match = _PAYLOAD_LITERAL.search(html)
    if match is None:
        raise FrameParseError("the page has no decodeURIComponent('…') payload")

    # unquote, not unquote_plus: encodeURIComponent writes '+' as '%2B' and a
    # literal '+' in the payload is a plus sign, never a space.
    try:
        text = unquote(match.group(1), encoding="utf-8", errors="strict")
        payload = json.loads(text)
    except UnicodeDecodeError:
        raise FrameParseError("the payload is not percent-encoded UTF-8") from None
    except json.JSONDecodeError as exc:
        raise FrameParseError(f"the payload is not JSON ({exc.msg})") from None

    if not isinstance(payload, dict) or not ("response" in payload or "error" in payload):
        raise FrameParseError("the payload has neither a 'response' nor an 'error' key")
    return payload


def decode_state(state: str) -> dict[str, str]:
    """Decode a Backstage OAuth `state` into its form fields.

    Backstage stops at the first non-hex character; this decoder rejects such
    input instead, because an agent that passes it has copied the wrong value.
    Raises `StateDecodeError`.
    """
    if len(state) % 2:
        raise StateDecodeError("state has an odd number of hex digits")
    try:
        raw = bytes.fromhex(state).decode("utf-8")
    except ValueError:
        raise StateDecodeError("state is not hex-encoded UTF-8") from None
    return dict(parse_qsl(raw, keep_blank_values=True))
