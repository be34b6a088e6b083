"""Smoke tests of the test backend helper against a real Backstage backend."""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx2
import pytest

from tests.backstage_backend import BackstageBackend, follow_authorization, start_backend

pytestmark = pytest.mark.integration

XHR_HEADERS = {"X-Requested-With": "XMLHttpRequest"}
CONCURRENT_LOGINS = 50
# The popup page passes the auth response to decodeURIComponent as its first
# string literal. The literal contains no quote, because Backstage writes it as %27.
PAYLOAD_PATTERN = re.compile(r"decodeURIComponent\('([^']*)'\)")


@pytest.fixture(scope="module")
def backend() -> Iterator[BackstageBackend]:
    with start_backend() as started:
        yield started


def make_client() -> httpx2.Client:
    return httpx2.Client(timeout=30.0, follow_redirects=False, trust_env=False)


def read_frame_payload(response: httpx2.Response) -> dict:
    """Parse the auth response out of the handler/frame HTML page."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    match = PAYLOAD_PATTERN.search(response.text)
    assert match is not None, response.text
    return json.loads(urllib.parse.unquote(match.group(1)))


def sign_in(client: httpx2.Client, backend: BackstageBackend, login: str | None = None) -> dict:
    """Run /start, the provider and /handler/frame in one cookie jar, and return the payload."""
    start = client.get(f"{backend.auth_url}/oidc/start", params={"env": "development"})
    assert start.status_code == 302, start.text
    callback_url = follow_authorization(start.headers["location"], login)
    return read_frame_payload(client.get(callback_url))


def test_guest_refresh_returns_guest_identity(backend: BackstageBackend) -> None:
    with make_client() as client:
        response = client.get(f"{backend.auth_url}/guest/refresh")

    assert response.status_code == 200, response.text
    identity = response.json()["backstageIdentity"]["identity"]
    assert identity["userEntityRef"] == "user:development/guest"


def test_oidc_walk_login_refresh_logout(backend: BackstageBackend) -> None:
    with make_client() as client:
        start = client.get(f"{backend.auth_url}/oidc/start", params={"env": "development"})
        assert start.status_code == 302, start.text
        authorization_url = start.headers["location"]
        assert authorization_url.startswith(f"{backend.idp_url}/authorize?")

        callback_url = follow_authorization(authorization_url)
        assert callback_url.startswith(f"{backend.auth_url}/oidc/handler/frame?")
        frame = client.get(callback_url)
        payload = read_frame_payload(frame)
        assert "error" not in payload, payload
        response = payload["response"]
        assert response["backstageIdentity"]["identity"]["userEntityRef"] == "user:default/alice"
        assert response["profile"]["email"] == "alice@example.test"
        assert response["profile"]["displayName"] == "Alice"
        assert client.cookies.get("oidc-refresh-token")

        refresh = client.get(
            f"{backend.auth_url}/oidc/refresh",
            params={"env": "development"},
            headers=XHR_HEADERS,
        )
        assert refresh.status_code == 200, refresh.text
        refreshed_identity = refresh.json()["backstageIdentity"]["identity"]
        assert refreshed_identity["userEntityRef"] == "user:default/alice"

        logout = client.post(
            f"{backend.auth_url}/oidc/logout",
            params={"env": "development"},
            headers=XHR_HEADERS,
        )
        assert logout.status_code == 200, logout.text

        after_logout = client.get(
            f"{backend.auth_url}/oidc/refresh",
            params={"env": "development"},
            headers=XHR_HEADERS,
        )
        assert after_logout.status_code == 401, after_logout.text
        assert "Missing session cookie" in after_logout.json()["error"]["message"]


def test_login_hint_selects_user(backend: BackstageBackend) -> None:
    with make_client() as client:
        payload = sign_in(client, backend, login="bob.smith")

    response = payload["response"]
    assert response["backstageIdentity"]["identity"]["userEntityRef"] == "user:default/bob.smith"
    assert response["profile"]["email"] == "bob.smith@example.test"
    assert response["profile"]["displayName"] == "Bob Smith"


def test_login_hint_accepts_full_email(backend: BackstageBackend) -> None:
    with make_client() as client:
        payload = sign_in(client, backend, login="carol@corp.example.test")

    response = payload["response"]
    assert response["backstageIdentity"]["identity"]["userEntityRef"] == "user:default/carol"
    assert response["profile"]["email"] == "carol@corp.example.test"


def test_invalid_login_hint_fails_sign_in(backend: BackstageBackend) -> None:
    with make_client() as client:
        payload = sign_in(client, backend, login="not an email")

    assert "response" not in payload
    assert "invalid_request" in payload["error"]["message"]


def test_production_env_signs_in(backend: BackstageBackend) -> None:
    with make_client() as client:
        start = client.get(f"{backend.auth_url}/oidc/start", params={"env": "production"})
        assert start.status_code == 302, start.text
        assert "client_id=backstage-test-production" in start.headers["location"]
        payload = read_frame_payload(client.get(follow_authorization(start.headers["location"])))

    identity = payload["response"]["backstageIdentity"]["identity"]
    assert identity["userEntityRef"] == "user:default/alice"


def test_concurrent_logins_keep_identity(backend: BackstageBackend) -> None:
    logins = [f"user{index:02d}" for index in range(CONCURRENT_LOGINS)]

    def sign_in_as(login: str) -> str:
        with make_client() as client:
            payload = sign_in(client, backend, login=login)
        assert "response" in payload, payload
        return payload["response"]["backstageIdentity"]["identity"]["userEntityRef"]

    with ThreadPoolExecutor(max_workers=CONCURRENT_LOGINS) as pool:
        entity_refs = list(pool.map(sign_in_as, logins))

    assert entity_refs == [f"user:default/{login}" for login in logins]


def test_callback_url_works_once(backend: BackstageBackend) -> None:
    with make_client() as client:
        start = client.get(f"{backend.auth_url}/oidc/start", params={"env": "development"})
        callback_url = follow_authorization(start.headers["location"])
        first = read_frame_payload(client.get(callback_url))
        second = read_frame_payload(client.get(callback_url))

    assert "response" in first, first
    assert "response" not in second
    assert "Authentication failed" in second["error"]["message"]


def test_idp_accepts_code_once(backend: BackstageBackend) -> None:
    client_auth = ("backstage-test-development", "backstage-test-development-secret")
    redirect_uri = f"{backend.app_origin}/callback"
    with make_client() as client:
        authorize = client.get(
            f"{backend.idp_url}/authorize",
            params={
                "response_type": "code",
                "client_id": client_auth[0],
                "redirect_uri": redirect_uri,
                "scope": "openid email",
                "state": "test-state",
                "login_hint": "dave",
            },
        )
        assert authorize.status_code == 302, authorize.text
        callback = urllib.parse.urlsplit(authorize.headers["location"])
        code = urllib.parse.parse_qs(callback.query)["code"][0]
        token_request = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
        }

        first = client.post(f"{backend.idp_url}/token", data=token_request, auth=client_auth)
        second = client.post(f"{backend.idp_url}/token", data=token_request, auth=client_auth)
        userinfo = client.get(
            f"{backend.idp_url}/userinfo",
            headers={"Authorization": f"Bearer {first.json()['access_token']}"},
        )

    assert first.status_code == 200, first.text
    assert first.json()["scope"] == "openid email"
    assert second.status_code == 400, second.text
    assert second.json()["error"] == "invalid_grant"
    assert userinfo.status_code == 200, userinfo.text
    assert userinfo.json() == {
        "sub": "dave@example.test",
        "email": "dave@example.test",
        "email_verified": True,
        "name": "Dave",
    }


def test_idp_rejects_unknown_access_token(backend: BackstageBackend) -> None:
    with make_client() as client:
        response = client.get(
            f"{backend.idp_url}/userinfo", headers={"Authorization": "Bearer never-issued"}
        )

    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_token"


def test_revoked_refresh_token_is_rejected(backend: BackstageBackend) -> None:
    with make_client() as client:
        sign_in(client, backend)
        refresh_token = client.cookies.get("oidc-refresh-token")
        granted_scope = client.cookies.get("oidc-granted-scope")
        assert refresh_token

        logout = client.post(
            f"{backend.auth_url}/oidc/logout",
            params={"env": "development"},
            headers=XHR_HEADERS,
        )
        assert logout.status_code == 200, logout.text

    # A new jar replays the cookies that logout deleted. The refresh must fail
    # because logout also revoked the token at the provider.
    with make_client() as replay:
        replay.cookies.set("oidc-refresh-token", refresh_token, path="/api/auth/oidc")
        replay.cookies.set("oidc-granted-scope", granted_scope or "", path="/api/auth/oidc")
        response = replay.get(
            f"{backend.auth_url}/oidc/refresh",
            params={"env": "development"},
            headers=XHR_HEADERS,
        )

    assert response.status_code == 401, response.text
    assert "invalid_grant" in response.json()["error"]["message"]


def test_idp_rejects_unknown_refresh_token(backend: BackstageBackend) -> None:
    with make_client() as client:
        response = client.post(
            f"{backend.idp_url}/token",
            data={"grant_type": "refresh_token", "refresh_token": "never-issued"},
            auth=("backstage-test-development", "backstage-test-development-secret"),
        )

    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_grant"


def test_idp_discovery_pins_loopback_issuer(backend: BackstageBackend) -> None:
    with make_client() as client:
        discovery = client.get(f"{backend.idp_url}/.well-known/openid-configuration").json()

    assert discovery["issuer"] == backend.idp_url
    assert discovery["revocation_endpoint"] == f"{backend.idp_url}/revoke"


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:1/authorize",
        "http://[::1]:1/authorize",
        "https://127.0.0.1:1/authorize",
    ],
)
def test_follow_authorization_rejects_other_urls(url: str) -> None:
    with pytest.raises(ValueError, match=re.escape("not on http://127.0.0.1")):
        follow_authorization(url)


def test_rotating_idp_replaces_refresh_token() -> None:
    with start_backend(rotate_refresh_tokens=True) as rotating, make_client() as client:
        sign_in(client, rotating)
        first_token = client.cookies.get("oidc-refresh-token")
        granted_scope = client.cookies.get("oidc-granted-scope")

        refresh = client.get(
            f"{rotating.auth_url}/oidc/refresh",
            params={"env": "development"},
            headers=XHR_HEADERS,
        )
        assert refresh.status_code == 200, refresh.text
        second_token = client.cookies.get("oidc-refresh-token")

        with make_client() as replay:
            replay.cookies.set("oidc-refresh-token", first_token, path="/api/auth/oidc")
            replay.cookies.set("oidc-granted-scope", granted_scope or "", path="/api/auth/oidc")
            replayed = replay.get(
                f"{rotating.auth_url}/oidc/refresh",
                params={"env": "development"},
                headers=XHR_HEADERS,
            )

    assert first_token
    assert second_token
    assert second_token != first_token
    assert replayed.status_code == 401, replayed.text
    assert "invalid_grant" in replayed.json()["error"]["message"]
