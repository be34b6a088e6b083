"""Decoding of the handler/frame page and of Backstage's OAuth state."""

import json
from urllib.parse import quote, urlencode

import pytest

from backstage_auth.frame import FrameParseError, StateDecodeError, decode_state, parse_frame_page


def frame_page(payload: object, origin: str = "http://127.0.0.1:3000") -> str:
    """Build a page the way Backstage does: encodeURIComponent(JSON), with ' as %27."""
    literal = quote(json.dumps(payload), safe="-_.!~*()").replace("'", "%27")
    return (
        "<html><body><script>"
        f"var authResponse = decodeURIComponent('{literal}');"
        f"var origin = decodeURIComponent('{quote(origin, safe='')}');"
        "</script></body></html>"
    )


def test_parse_success_payload():
    payload = {
        "type": "authorization_response",
        "response": {"profile": {"displayName": "A+B O'Hara"}, "providerInfo": {"scope": "a b"}},
    }

    assert parse_frame_page(frame_page(payload)) == payload


def test_parse_keeps_plus_signs():
    payload = {"type": "authorization_response", "response": {"profile": {"email": "a+b@x.test"}}}
    page = frame_page(payload).replace("%2B", "+")

    parsed = parse_frame_page(page)

    assert parsed["response"]["profile"]["email"] == "a+b@x.test"


def test_parse_error_payload():
    payload = {
        "type": "authorization_response",
        "error": {"name": "NotAllowedError", "message": "Invalid nonce"},
    }

    assert parse_frame_page(frame_page(payload))["error"]["message"] == "Invalid nonce"


def test_parse_takes_first_literal():
    page = frame_page({"type": "authorization_response", "response": {}}, origin="x")

    assert parse_frame_page(page) == {"type": "authorization_response", "response": {}}


@pytest.mark.parametrize(
    ("page", "reason"),
    [
        ("<html><body>Hello</body></html>", "no decodeURIComponent"),
        ("decodeURIComponent('%7Bnot json')", "not JSON"),
        ("decodeURIComponent('%5B1%2C2%5D')", "neither"),
        ("decodeURIComponent('%7B%22type%22%3A1%7D')", "neither"),
        ("decodeURIComponent('%FF%FE')", "UTF-8"),
    ],
)
def test_parse_rejects_unreadable_page(page, reason):
    with pytest.raises(FrameParseError, match=reason):
        parse_frame_page(page)


def test_decode_state_fields():
    form = urlencode(
        {"nonce": "aGf4CMEiyIROkFUTZUIaMw==", "env": "development", "flow": "popup", "scope": "a b"}
    )

    fields = decode_state(form.encode().hex())

    assert fields == {
        "nonce": "aGf4CMEiyIROkFUTZUIaMw==",
        "env": "development",
        "flow": "popup",
        "scope": "a b",
    }


def test_decode_state_accepts_uppercase_hex():
    assert decode_state(b"env=prod".hex().upper()) == {"env": "prod"}


@pytest.mark.parametrize("state", ["zz", "abc", "ff" * 4])
def test_decode_state_rejects_garbage(state):
    with pytest.raises(StateDecodeError):
        decode_state(state)
