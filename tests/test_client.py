"""BackstageAuthClient against in-process fakes, for faults a real backend cannot produce on demand.

The end-to-end behaviour against a real Backstage is in test_integration_*.py.
"""

import json
import socket
import ssl
from urllib.parse import quote

import anyio
import httpx2
import pytest

from backstage_auth.client import BackstageAuthClient, BearerForOrigin, _tls_verification
from backstage_auth.errors import (
    UpstreamError,
    UpstreamProtocolError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from backstage_auth.settings import Settings

pytestmark = pytest.mark.anyio

AUTH_URL = "http://127.0.0.1:7007/api/auth"
GUEST_ANSWER = {
    "profile": {},
    "backstageIdentity": {
        "token": "a.b.c",
        "identity": {
            "type": "user",
            "userEntityRef": "user:development/guest",
            "ownershipEntityRefs": [],
        },
        "expiresInSeconds": 3600,
    },
}


def make_client(handler, **settings) -> BackstageAuthClient:
    options = {"auth_url": AUTH_URL} | settings
    return BackstageAuthClient(Settings(**options), transport=httpx2.MockTransport(handler))


def json_answer(status: int, body: object, **headers: str) -> httpx2.Response:
    return httpx2.Response(status, json=body, headers=headers)


async def test_refresh_sends_xhr_header_and_env():
    seen: list[httpx2.Request] = []

    def handler(request):
        seen.append(request)
        return json_answer(200, GUEST_ANSWER)

    client = make_client(handler)
    answer = await client.refresh(httpx2.Cookies(), provider="guest", env="development")

    assert answer.backstage_identity.identity.user_entity_ref == "user:development/guest"
    assert seen[0].url.path == "/api/auth/guest/refresh"
    assert seen[0].url.params["env"] == "development"
    assert seen[0].headers["X-Requested-With"] == "XMLHttpRequest"


async def test_json_error_becomes_upstream_error_without_stack():
    body = {
        "error": {
            "name": "NotFoundError",
            "message": "Unknown auth provider 'nope'",
            "stack": "at secret.js:1",
        },
        "request": {"method": "GET", "url": "/nope/refresh"},
        "response": {"statusCode": 404},
    }
    client = make_client(lambda request: json_answer(404, body))

    with pytest.raises(UpstreamError) as caught:
        await client.refresh(httpx2.Cookies(), provider="nope", env="development")

    assert caught.value.status == 404
    assert caught.value.error_name == "NotFoundError"
    assert "no provider with the id 'nope'" in caught.value.next_step
    assert "secret.js" not in str(caught.value)


@pytest.mark.parametrize(
    ("status", "content", "content_type", "reason"),
    [
        (500, b"<html>Internal Server Error</html>", "text/html", "without its JSON error body"),
        (502, b"<html>Bad Gateway</html>", "text/html", "without its JSON error body"),
        (200, b'{"profile": "not an object"}', "application/json", "unexpected shape"),
        (200, b'{"profile": {}, "backstageIdentity": {"tok', "application/json", "not JSON"),
        (200, b"<html>login</html>", "text/html", "not JSON"),
    ],
)
async def test_unreadable_answers_raise_protocol_error(status, content, content_type, reason):
    client = make_client(
        lambda request: httpx2.Response(
            status, content=content, headers={"content-type": content_type}
        )
    )

    with pytest.raises(UpstreamProtocolError, match=reason):
        await client.refresh(httpx2.Cookies(), provider="guest", env="development")


async def test_oversized_body_is_cut_off():
    big = b"x" * (3 * 1024 * 1024)
    client = make_client(
        lambda request: httpx2.Response(200, content=big), max_response_bytes=65536
    )

    with pytest.raises(UpstreamProtocolError, match="larger than 65536 bytes"):
        await client.refresh(httpx2.Cookies(), provider="guest", env="development")


async def test_slow_answer_times_out_within_timeout():
    async def handler(request):
        await anyio.sleep(5)
        return json_answer(200, GUEST_ANSWER)

    client = make_client(handler, timeout_seconds=0.2)
    started = anyio.current_time()

    with pytest.raises(UpstreamTimeoutError, match=r"within 0\.2 s"):
        await client.refresh(httpx2.Cookies(), provider="guest", env="development")

    assert anyio.current_time() - started < 2


async def test_connection_refused_names_the_url():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = BackstageAuthClient(Settings(auth_url=f"http://127.0.0.1:{port}/api/auth"))

    with pytest.raises(UpstreamUnavailableError, match=f"127.0.0.1:{port}"):
        await client.refresh(httpx2.Cookies(), provider="guest", env="development")
    await client.aclose()


async def test_redirect_from_refresh_is_not_followed():
    seen: list[str] = []

    def handler(request):
        seen.append(str(request.url))
        return httpx2.Response(302, headers={"location": "http://127.0.0.2:7007/login"})

    client = make_client(handler)

    with pytest.raises(UpstreamProtocolError, match="never followed"):
        await client.refresh(httpx2.Cookies(), provider="oidc", env="development")
    assert len(seen) == 1


async def test_frame_error_payload_raises_with_next_step():
    payload = {
        "type": "authorization_response",
        "error": {"name": "NotAllowedError", "message": "Auth response is missing cookie nonce"},
    }
    literal = httpx2.QueryParams({"p": json.dumps(payload)}).get("p")
    script = f"var a = decodeURIComponent('{quote(literal, safe='')}');"
    page = f"<html><body><script>{script}</script></body></html>"
    client = make_client(
        lambda request: httpx2.Response(200, text=page, headers={"content-type": "text/html"})
    )

    with pytest.raises(UpstreamError) as caught:
        await client.handler_frame(
            httpx2.Cookies(), provider="oidc", params={"code": "c", "state": "00"}
        )

    assert caught.value.status is None
    assert caught.value.error_name == "NotAllowedError"
    assert "session_handle" in caught.value.next_step


async def test_cookies_stay_in_the_callers_jar():
    sent_cookies: list[str | None] = []

    def handler(request):
        sent_cookies.append(request.headers.get("cookie"))
        return httpx2.Response(
            302,
            headers=[
                ("location", "http://127.0.0.1:9999/authorize"),
                ("set-cookie", "oidc-nonce=n1; Path=/api/auth/oidc/handler; HttpOnly"),
                ("set-cookie", "connect.sid=s1; Path=/; HttpOnly"),
            ],
        )

    client = make_client(handler)
    first, second = httpx2.Cookies(), httpx2.Cookies()

    await client.start(first, provider="oidc", env="development", flow=None)
    await client.start(second, provider="oidc", env="development", flow=None)

    assert first.get("connect.sid") == "s1"
    assert first.get("oidc-nonce") == "n1"
    assert sent_cookies == [None, None]


async def test_bearer_goes_only_to_configured_origin():
    auth = BearerForOrigin("key-marker", AUTH_URL)
    same = httpx2.Request("GET", "http://127.0.0.1:7007/api/auth/guest/refresh")
    other_host = httpx2.Request("GET", "http://127.0.0.2:7007/api/auth/guest/refresh")
    other_port = httpx2.Request("GET", "http://127.0.0.1:7008/api/auth/guest/refresh")

    for request in (same, other_host, other_port):
        async for _ in auth.async_auth_flow(request):
            pass

    assert same.headers["Authorization"] == "Bearer key-marker"
    assert "Authorization" not in other_host.headers
    assert "Authorization" not in other_port.headers


async def test_api_key_is_sent_to_backstage():
    seen: list[httpx2.Request] = []

    def handler(request):
        seen.append(request)
        return json_answer(200, GUEST_ANSWER)

    client = make_client(handler, api_key="key-marker")
    await client.refresh(httpx2.Cookies(), provider="guest", env="development")

    assert seen[0].headers["Authorization"] == "Bearer key-marker"


def test_http_url_skips_ca_bundle():
    context = _tls_verification(Settings(auth_url=AUTH_URL))

    assert isinstance(context, ssl.SSLContext)
    assert context.get_ca_certs() == []
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True


def test_https_url_uses_default_cas():
    assert _tls_verification(Settings(auth_url="https://127.0.0.1:7443/api/auth")) is True


def test_verify_tls_false_disables_checks():
    assert _tls_verification(Settings(auth_url=AUTH_URL, verify_tls=False)) is False
