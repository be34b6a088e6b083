"""Input checks that run before anything is sent to Backstage."""

import pytest

from backstage_auth.validation import (
    check_callback_url,
    check_code,
    check_env,
    check_provider,
    check_session_handle,
    check_state,
    split_callback_url,
)


@pytest.mark.parametrize("provider", ["github", "oidc", "guest", "my-okta_2", "A1"])
def test_provider_accepts_ids(provider):
    assert check_provider(provider) == provider


@pytest.mark.parametrize(
    ("provider", "rule"),
    [
        ("../catalog", "only ASCII letters"),
        ("a/b", "only ASCII letters"),
        ("%2e%2e", "only ASCII letters"),
        ("..%2f", "only ASCII letters"),
        ("github?x=1", "only ASCII letters"),
        ("github#frag", "only ASCII letters"),
        ("git\\hub", "only ASCII letters"),
        ("git\x00hub", "only ASCII letters"),
        ("gith\u0131b", "only ASCII letters"),
        (" github", "only ASCII letters"),
        ("-github", "must start with"),
        ("", "1 to 64 characters"),
        ("g" * 65, "1 to 64 characters"),
        ("g" * 10_000, "1 to 64 characters"),
        ("https://backstage/api/auth/github", "not a URL"),
    ],
)
def test_provider_rejects_unsafe_ids(provider, rule):
    with pytest.raises(ValueError, match=rule):
        check_provider(provider)


@pytest.mark.parametrize("env", ["", "dev elopment", "a/b", ".hidden", "e" * 65, "d\u00e9v"])
def test_env_rejects_invalid_names(env):
    with pytest.raises(ValueError, match="env"):
        check_env(env)


def test_code_rejects_url_with_fix():
    with pytest.raises(ValueError, match="callback_url instead"):
        check_code("http://127.0.0.1:7007/api/auth/oidc/handler/frame?code=x&state=00")


@pytest.mark.parametrize("code", ["", "a b", "x\n", "c" * 4097])
def test_code_rejects_invalid_values(code):
    with pytest.raises(ValueError, match="code must be"):
        check_code(code)


@pytest.mark.parametrize("state", ["", "zz", "6e6f6e63 65", "s" * 10])
def test_state_rejects_non_hex(state):
    with pytest.raises(ValueError, match="hexadecimal"):
        check_state(state)


def test_callback_url_needs_code_and_state():
    with pytest.raises(ValueError, match="no 'state' together with 'code'"):
        check_callback_url("http://127.0.0.1:7007/api/auth/oidc/start?env=development")


def test_callback_url_rejects_non_http():
    with pytest.raises(ValueError, match="full http"):
        check_callback_url("handler/frame?code=a&state=00")


def test_split_callback_url_takes_first_values():
    url = "http://127.0.0.1:7007/api/auth/oidc/handler/frame?code=c1&state=ab&code=c2&x=1"

    assert split_callback_url(url) == {"code": "c1", "state": "ab"}


def test_session_handle_rejects_foreign_shape():
    with pytest.raises(ValueError, match="session_handle"):
        check_session_handle("not a handle!")
