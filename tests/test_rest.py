"""The REST adapter as a user runs it (`backstage-auth-mcp --surface rest|both`).

Every test drives a server subprocess on a loopback port, backed by the real
Backstage test backend, with `httpx2` clients that keep cookies like a browser.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2
import pytest
from mcp import Client

from backstage_auth.names import ToolName
from backstage_auth.rest import rest_next_step
from tests.backstage_backend import follow_authorization
from tests.conftest import stop_process
from tests.flows import call_error, call_ok, sign_in_oidc
from tests.rest_server import SESSION_COOKIE, RestServer, launch_rest_server

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def rest(backstage, tmp_path_factory) -> Iterator[RestServer]:
    """One REST adapter for the module's tests, pointed at the test backend."""
    server = launch_rest_server(
        tmp_path_factory.mktemp("rest"), BACKSTAGE_AUTH_URL=backstage.auth_url
    )
    yield server
    stop_process(server.process)


def rest_client(server: RestServer) -> httpx2.Client:
    """A client that keeps cookies, as a browser does; trust_env=False skips proxies."""
    return httpx2.Client(base_url=server.rest_url, trust_env=False, timeout=15)


def sign_in(client: httpx2.Client, login: str) -> dict[str, Any]:
    """Run start, the browser step and the callback; return the callback result."""
    started = client.get("/v1/oidc/start")
    assert started.status_code == 200, started.text
    callback_url = follow_authorization(started.json()["authorization_url"], login)
    signed_in = client.get("/v1/oidc/handler/frame", params={"callback_url": callback_url})
    assert signed_in.status_code == 200, signed_in.text
    return signed_in.json()


def assert_problem(response: httpx2.Response, status: int) -> dict[str, Any]:
    """Check an RFC 9457 error response and return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["type"] == "about:blank"
    assert body["status"] == status
    assert body["title"]
    assert "Next step: " in body["detail"]
    assert "Traceback" not in response.text
    assert '"stack"' not in response.text
    return body


def set_cookie_attributes(response: httpx2.Response) -> list[str]:
    header = response.headers["set-cookie"]
    return [part.strip().lower() for part in header.split(";")]


def test_oidc_flow_with_cookie_keeping_client(rest):
    with rest_client(rest) as client:
        started = client.get("/v1/oidc/start")
        cookie = client.cookies.get(SESSION_COOKIE)
        callback_url = follow_authorization(started.json()["authorization_url"], "bob")
        signed_in = client.get("/v1/oidc/handler/frame", params={"callback_url": callback_url})
        refreshed = client.get("/v1/oidc/refresh")
        logged_out = client.post("/v1/oidc/logout")
        after_logout = client.get("/v1/oidc/refresh")
        optional = client.get("/v1/oidc/refresh", params={"optional": "true"})

    assert started.status_code == 200
    assert started.headers["content-type"] == "application/json"
    assert started.headers["cache-control"] == "no-store"
    start = started.json()
    assert start["provider"] == "oidc"
    assert start["state_fields"]["env"] == "development"
    assert "nonce" not in start["state_fields"]
    assert start["session_handle"] == cookie
    assert "GET /v1/oidc/handler/frame" in start["next_step"]
    assert ToolName.CALLBACK not in start["next_step"]

    assert signed_in.status_code == 200
    assert "set-cookie" not in signed_in.headers
    result = signed_in.json()
    assert result["signed_in"] is True
    assert result["session_handle"] == cookie
    assert result["profile"]["email"] == "bob@example.test"
    assert result["backstage_identity"]["user_entity_ref"] == "user:default/bob"
    assert result["backstage_identity"]["token_claims"]["verified"] is True

    assert refreshed.status_code == 200
    assert refreshed.json()["backstage_identity"]["user_entity_ref"] == "user:default/bob"
    assert logged_out.status_code == 200
    assert logged_out.json()["logged_out"] is True
    assert "GET /v1/oidc/start" in logged_out.json()["next_step"]

    problem = assert_problem(after_logout, 401)
    assert "Missing session cookie" in problem["detail"]
    assert "GET /v1/oidc/start" in problem["next_step"]
    assert optional.status_code == 200
    assert optional.json()["signed_in"] is False


def test_session_cookie_attributes(rest):
    with rest_client(rest) as client:
        started = client.get("/v1/oidc/start")

    attributes = set_cookie_attributes(started)
    assert attributes[0].startswith(f"{SESSION_COOKIE}=")
    assert "httponly" in attributes
    assert "path=/v1" in attributes
    assert "samesite=lax" in attributes
    assert "secure" not in attributes
    assert not any(part.startswith(("max-age", "expires", "domain")) for part in attributes)


def test_session_cookie_secure_behind_https_proxy(rest):
    # uvicorn takes the scheme from X-Forwarded-Proto when the peer is 127.0.0.1,
    # as behind a TLS-terminating proxy on the same host.
    with rest_client(rest) as client:
        started = client.get("/v1/oidc/start", headers={"X-Forwarded-Proto": "https"})

    assert "secure" in set_cookie_attributes(started)


def test_results_withhold_raw_tokens(rest):
    with rest_client(rest) as client:
        result = sign_in(client, "carol")

    assert result["tokens_included"] is False
    assert result["backstage_identity"]["token"] is None
    assert result["provider_info"]["access_token"] is None
    assert result["provider_info"]["id_token"] is None


def test_callback_with_code_and_state(rest):
    with rest_client(rest) as client:
        started = client.get("/v1/oidc/start").json()
        callback_url = follow_authorization(started["authorization_url"], "dave")
        query = parse_qs(urlsplit(callback_url).query)
        signed_in = client.get(
            "/v1/oidc/handler/frame",
            params={"code": query["code"][0], "state": query["state"][0]},
        )

    assert signed_in.status_code == 200, signed_in.text
    assert signed_in.json()["backstage_identity"]["user_entity_ref"] == "user:default/dave"


def test_guest_refresh_needs_no_session(rest):
    with rest_client(rest) as client:
        response = client.get("/v1/guest/refresh")

    assert response.status_code == 200, response.text
    assert "set-cookie" not in response.headers
    result = response.json()
    assert result["signed_in"] is True
    assert result["backstage_identity"]["user_entity_ref"] == "user:development/guest"
    assert result["provider_info"] is None
    assert result["session_handle"] is None
    assert "GET /v1/guest/refresh" in result["next_step"]


def test_two_clients_are_isolated(rest):
    with rest_client(rest) as first, rest_client(rest) as second:
        sign_in(first, "grace")
        sign_in(second, "heidi")
        first_refresh = first.get("/v1/oidc/refresh").json()
        second_refresh = second.get("/v1/oidc/refresh").json()
        second.post("/v1/oidc/logout")
        first_after = first.get("/v1/oidc/refresh")
        second_after = second.get("/v1/oidc/refresh")

    assert first_refresh["backstage_identity"]["user_entity_ref"] == "user:default/grace"
    assert second_refresh["backstage_identity"]["user_entity_ref"] == "user:default/heidi"
    assert first_refresh["session_handle"] != second_refresh["session_handle"]
    assert first_after.status_code == 200
    assert first_after.json()["backstage_identity"]["user_entity_ref"] == "user:default/grace"
    assert_problem(second_after, 401)


def test_client_without_cookies_uses_session_header(rest):
    # A new client per request keeps no cookie from the one before.
    with rest_client(rest) as client:
        started = client.get("/v1/oidc/start").json()
    handle = started["session_handle"]
    callback_url = follow_authorization(started["authorization_url"], "ivan")

    with rest_client(rest) as client:
        without_handle = client.get("/v1/oidc/handler/frame", params={"callback_url": callback_url})
    with rest_client(rest) as client:
        signed_in = client.get(
            "/v1/oidc/handler/frame",
            params={"callback_url": callback_url},
            headers={"X-Session-Handle": handle},
        )
    with rest_client(rest) as client:
        refreshed = client.get("/v1/oidc/refresh", headers={"X-Session-Handle": handle})

    problem = assert_problem(without_handle, 401)
    assert "missing cookie nonce" in problem["detail"]
    assert signed_in.status_code == 200, signed_in.text
    assert signed_in.json()["session_handle"] == handle
    assert "set-cookie" not in signed_in.headers
    assert refreshed.json()["backstage_identity"]["user_entity_ref"] == "user:default/ivan"


def test_unknown_session_header_rejected(rest):
    with rest_client(rest) as client:
        response = client.get("/v1/oidc/refresh", headers={"X-Session-Handle": "A" * 43})

    problem = assert_problem(response, 401)
    assert "session_handle is unknown or has expired" in problem["detail"]
    assert "GET /v1/oidc/start" in problem["next_step"]


def test_unknown_header_keeps_valid_cookie(rest):
    with rest_client(rest) as client:
        client.get("/v1/oidc/start")
        cookie = client.cookies.get(SESSION_COOKIE)
        response = client.get("/v1/oidc/refresh", headers={"X-Session-Handle": "D" * 43})
        kept = client.cookies.get(SESSION_COOKIE)

    assert_problem(response, 401)
    assert "set-cookie" not in response.headers
    assert kept == cookie


def test_stale_cookie_cleared_then_replaced(rest):
    with rest_client(rest) as client:
        client.cookies.set(SESSION_COOKIE, "B" * 43, domain="127.0.0.1", path="/v1")
        refreshed = client.get("/v1/oidc/refresh")
        cleared = client.cookies.get(SESSION_COOKIE)

    with rest_client(rest) as client:
        client.cookies.set(SESSION_COOKIE, "C" * 43, domain="127.0.0.1", path="/v1")
        started = client.get("/v1/oidc/start")
        replaced = client.cookies.get(SESSION_COOKIE)

    assert_problem(refreshed, 401)
    assert "max-age=0" in set_cookie_attributes(refreshed)
    assert cleared is None
    assert started.status_code == 200
    assert replaced == started.json()["session_handle"]
    assert replaced != "C" * 43


@pytest.mark.parametrize(
    ("path", "params", "headers", "invalid"),
    [
        ("/v1/-oidc/start", {}, {}, [("provider", "path")]),
        ("/v1/oidc/start", {"env": "dev elopment"}, {}, [("env", "query")]),
        ("/v1/oidc/start", {"flow": "sideways"}, {}, [("flow", "query")]),
        ("/v1/oidc/refresh", {"optional": "yes"}, {}, [("optional", "query")]),
        ("/v1/oidc/refresh", [("env", "a"), ("env", "b")], {}, [("env", "query")]),
        ("/v1/oidc/handler/frame", {"code": "https://x.test/?code=1"}, {}, [("code", "query")]),
        ("/v1/oidc/handler/frame", {"state": "xyz", "code": "c"}, {}, [("state", "query")]),
        (
            "/v1/oidc/handler/frame",
            {"callback_url": "ftp://h/?state=1"},
            {},
            [("callback_url", "query")],
        ),
        (
            "/v1/oidc/refresh",
            {},
            {"X-Session-Handle": "not a handle"},
            [("X-Session-Handle", "header")],
        ),
        (
            "/v1/oidc/start",
            {"env": "-x", "flow": "x"},
            {},
            [("flow", "query"), ("env", "query")],
        ),
    ],
)
def test_invalid_parameters_give_422(rest, path, params, headers, invalid):
    with rest_client(rest) as client:
        response = client.get(path, params=params, headers=headers)

    problem = assert_problem(response, 422)
    named = [(item["name"], item["location"]) for item in problem["invalid_params"]]
    assert sorted(named) == sorted(invalid)
    for item in problem["invalid_params"]:
        assert item["reason"].startswith(item["name"]), item
        assert item["reason"] in problem["detail"]
    assert "nothing was sent to Backstage" in problem["detail"]
    assert "set-cookie" not in response.headers


def test_invalid_callback_combination_gives_422(rest):
    url = "http://127.0.0.1:1/api/auth/oidc/handler/frame?code=a&state=00"
    with rest_client(rest) as client:
        missing = client.get("/v1/oidc/handler/frame")
        conflicting = client.get(
            "/v1/oidc/handler/frame", params={"code": "b", "callback_url": url}
        )

    missing_problem = assert_problem(missing, 422)
    conflicting_problem = assert_problem(conflicting, 422)
    assert "needs the URL the browser ended on" in missing_problem["detail"]
    assert "code differs from the 'code' in callback_url" in conflicting_problem["detail"]


@pytest.mark.parametrize(
    ("method", "path", "params", "status", "expected"),
    [
        ("GET", "/v1/nope/start", {}, 404, "no provider with the id 'nope'"),
        ("GET", "/v1/oidc/start", {"env": "staging"}, 404, "Pass an env that is configured"),
        ("GET", "/v1/guest/start", {}, 404, "Call GET /v1/guest/refresh"),
        ("POST", "/v1/guest/logout", {}, 404, "guest provider has no logout"),
        ("GET", "/v1/oidc/start", {"flow": "redirect"}, 400, "No redirectUrl provided"),
        ("GET", "/v1/oidc/handler/frame", {"code": "abc", "state": "abcdef"}, 403, "OAuth state"),
        ("GET", "/v1/oidc/refresh", {}, 401, "Missing session cookie"),
    ],
)
def test_upstream_errors_map_to_status(rest, method, path, params, status, expected):
    with rest_client(rest) as client:
        response = client.request(method, path, params=params)

    problem = assert_problem(response, status)
    assert expected in problem["detail"]
    for name in ToolName:
        assert name not in problem["detail"]


def test_routing_errors_are_problems(rest):
    with rest_client(rest) as client:
        unknown = client.get("/v2/oidc/start")
        wrong_method = client.post("/v1/oidc/refresh")

    assert "/openapi.json" in assert_problem(unknown, 404)["next_step"]
    assert "GET" in assert_problem(wrong_method, 405)["next_step"]
    assert "GET" in wrong_method.headers["allow"]


def test_request_log_leaves_out_query(rest):
    with rest_client(rest) as client:
        started = client.get("/v1/oidc/start").json()
        callback_url = follow_authorization(started["authorization_url"], "judy")
        client.get("/v1/oidc/handler/frame", params={"callback_url": callback_url})
    code = parse_qs(urlsplit(callback_url).query)["code"][0]

    deadline = time.monotonic() + 5
    while "GET /v1/oidc/handler/frame -> 200" not in rest.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    log = rest.log()
    assert "REST GET /v1/oidc/handler/frame -> 200" in log
    assert code not in log
    assert started["session_handle"] not in log


def test_openapi_and_health_served(rest):
    with rest_client(rest) as client:
        document = client.get("/openapi.json")
        health = client.get("/healthz")

    assert document.status_code == 200
    assert document.json()["openapi"] == "3.1.0"
    assert health.json() == {"status": "ok"}


def closed_port() -> int:
    """A loopback port that nothing listens on: bound, then released."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_backstage_gives_502(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/api/auth"
    server = launch_rest_server(tmp_path, BACKSTAGE_AUTH_URL=url)
    try:
        with rest_client(server) as client:
            unreachable = client.get("/v1/guest/refresh")
            invalid = client.get("/v1/guest/refresh", params={"env": "-x"})
    finally:
        stop_process(server.process)

    problem = assert_problem(unreachable, 502)
    assert "Could not connect to Backstage" in problem["detail"]
    assert "BACKSTAGE_AUTH_URL" in problem["next_step"]
    # A failed check returns 422 before any request, so the dead upstream does not matter.
    assert_problem(invalid, 422)


def test_slow_backstage_gives_504(tmp_path):
    # The listener accepts connections (the kernel completes the handshake from
    # its backlog) but never responds, so every request times out.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/api/auth"
        server = launch_rest_server(tmp_path, BACKSTAGE_AUTH_URL=url, BACKSTAGE_AUTH_TIMEOUT="1")
        try:
            with rest_client(server) as client:
                response = client.get("/v1/guest/refresh")
        finally:
            stop_process(server.process)

    problem = assert_problem(response, 504)
    assert "within 1 s" in problem["detail"]
    assert "BACKSTAGE_AUTH_TIMEOUT" in problem["next_step"]


def test_idle_session_expires(backstage, tmp_path):
    server = launch_rest_server(
        tmp_path,
        BACKSTAGE_AUTH_URL=backstage.auth_url,
        BACKSTAGE_AUTH_SESSION_IDLE_SECONDS="1",
    )
    try:
        with rest_client(server) as client:
            started = client.get("/v1/oidc/start").json()
            callback_url = follow_authorization(started["authorization_url"])
            time.sleep(1.5)
            expired = client.get("/v1/oidc/handler/frame", params={"callback_url": callback_url})
    finally:
        stop_process(server.process)

    problem = assert_problem(expired, 401)
    assert "unknown or has expired" in problem["detail"]


def test_session_count_is_bounded(backstage, tmp_path):
    server = launch_rest_server(
        tmp_path, BACKSTAGE_AUTH_URL=backstage.auth_url, BACKSTAGE_AUTH_MAX_SESSIONS="1"
    )
    try:
        with rest_client(server) as first, rest_client(server) as second:
            sign_in(first, "kim")
            sign_in(second, "lee")
            evicted = first.get("/v1/oidc/refresh")
            kept = second.get("/v1/oidc/refresh")
    finally:
        stop_process(server.process)

    assert_problem(evicted, 401)
    assert kept.json()["backstage_identity"]["user_entity_ref"] == "user:default/lee"
    assert "Evicted upstream session" in server.log()


def test_host_and_bearer_checks(backstage, tmp_path):
    server = launch_rest_server(
        tmp_path, BACKSTAGE_AUTH_URL=backstage.auth_url, BACKSTAGE_AUTH_HTTP_TOKEN="s3cret-token"
    )
    try:
        with rest_client(server) as client:
            no_token = client.get("/v1/guest/refresh")
            wrong_host = client.get(
                "/v1/guest/refresh",
                headers={"Host": "rebind.test", "Authorization": "Bearer s3cret-token"},
            )
            with_token = client.get(
                "/v1/guest/refresh", headers={"Authorization": "Bearer s3cret-token"}
            )
            document = client.get("/openapi.json", headers={"Authorization": "Bearer s3cret-token"})
            health = client.get("/healthz")
    finally:
        stop_process(server.process)

    assert no_token.status_code == 401
    assert no_token.headers["content-type"] == PROBLEM
    assert no_token.headers["www-authenticate"].startswith("Bearer")
    assert no_token.json()["title"] == "Unauthorized"
    assert wrong_host.status_code == 421
    assert wrong_host.json()["title"] == "Misdirected Request"
    assert with_token.status_code == 200
    assert document.json()["security"] == [{"bearerToken": []}]
    assert health.status_code == 200


def test_sigterm_stops_both_surfaces_cleanly(backstage, tmp_path):
    server = launch_rest_server(tmp_path, surface="both", BACKSTAGE_AUTH_URL=backstage.auth_url)
    server.process.terminate()
    exit_code = server.process.wait(timeout=15)

    assert exit_code == 0
    assert "Received SIGTERM" in server.log()
    assert "Stopped backstage-auth-mcp" in server.log()


# The same calls through both surfaces of one `--surface both` process.


def comparable(value: Any) -> Any:
    """Drop the fields that differ between two calls: handles, times and URLs with nonces."""
    volatile = {"session_handle", "expires_at", "expires_in_seconds", "iat", "exp"}
    volatile |= {"authorization_url", "next_step"}
    if isinstance(value, dict):
        return {key: comparable(item) for key, item in value.items() if key not in volatile}
    if isinstance(value, list):
        return [comparable(item) for item in value]
    return value


def without_session_hint(next_step: str) -> str:
    """Remove the MCP-only advice that sessionless clients get about session_handle."""
    next_step = re.sub(
        r" Pass session_handle '[^']+' to every later call for this sign-in\.", "", next_step
    )
    return next_step.replace(
        " Note: this client has no transport session and passed no session_handle, so "
        "the call ran in an empty session.",
        "",
    )


@pytest.fixture
def both(backstage, tmp_path) -> Iterator[RestServer]:
    server = launch_rest_server(tmp_path, surface="both", BACKSTAGE_AUTH_URL=backstage.auth_url)
    yield server
    stop_process(server.process)


@pytest.mark.anyio
async def test_rest_and_mcp_results_equal(both):
    async with Client(both.mcp_url) as mcp:
        mcp_guest = await call_ok(mcp, ToolName.REFRESH, {"provider": "guest"})
        mcp_start = await call_ok(mcp, ToolName.START, {"provider": "oidc"})
        mcp_signed_in = await sign_in_oidc(mcp, login="mallory", use_handle=True)
        mcp_unknown = await call_error(mcp, ToolName.START, {"provider": "nope"})
        mcp_invalid = await call_error(
            mcp, ToolName.CALLBACK, {"provider": "oidc", "code": "abc", "state": "abcdef"}
        )

    def rest_calls() -> dict[str, httpx2.Response]:
        with rest_client(both) as client:
            responses = {
                "guest": client.get("/v1/guest/refresh"),
                "start": client.get("/v1/oidc/start"),
                "unknown": client.get("/v1/nope/start"),
                "invalid": client.get(
                    "/v1/oidc/handler/frame", params={"code": "abc", "state": "abcdef"}
                ),
            }
            started = client.get("/v1/oidc/start").json()
            callback_url = follow_authorization(started["authorization_url"], "mallory")
            responses["signed_in"] = client.get(
                "/v1/oidc/handler/frame", params={"callback_url": callback_url}
            )
            return responses

    rest = await anyio.to_thread.run_sync(rest_calls)

    pairs = [
        ("guest", mcp_guest, rest["guest"].json()),
        ("oidc", mcp_start, rest["start"].json()),
        ("oidc", mcp_signed_in, rest["signed_in"].json()),
    ]
    for provider, mcp_result, rest_result in pairs:
        assert comparable(rest_result) == comparable(mcp_result)
        assert set(rest_result) == set(mcp_result)
        expected = rest_next_step(without_session_hint(mcp_result["next_step"]), provider)
        assert rest_result["next_step"] == expected
    assert mcp_start["state_fields"] == rest["start"].json()["state_fields"]

    for key, tool, mcp_text, provider in (
        ("unknown", ToolName.START, mcp_unknown, "nope"),
        ("invalid", ToolName.CALLBACK, mcp_invalid, "oidc"),
    ):
        # The MCP SDK puts this prefix before the text of a ToolError.
        mcp_text = mcp_text.removeprefix(f"Error executing tool {tool}: ")
        message, next_step = without_session_hint(mcp_text).split(" Next step: ")
        problem = rest[key].json()
        assert problem["next_step"] == rest_next_step(next_step, provider)
        assert problem["detail"].startswith(rest_next_step(message, provider).rstrip("."))
    assert rest["unknown"].status_code == 404
    assert rest["invalid"].status_code == 403


@pytest.mark.anyio
async def test_surfaces_share_one_session_store(both):
    # A REST session is a bearer session, so its handle works as an MCP session_handle.
    def start_on_rest() -> tuple[httpx2.Client, dict[str, Any]]:
        client = rest_client(both)
        return client, client.get("/v1/oidc/start").json()

    client, started = await anyio.to_thread.run_sync(start_on_rest)
    try:
        callback_url = await anyio.to_thread.run_sync(
            follow_authorization, started["authorization_url"], "niaj"
        )
        async with Client(both.mcp_url) as mcp:
            signed_in = await call_ok(
                mcp,
                ToolName.CALLBACK,
                {
                    "provider": "oidc",
                    "callback_url": callback_url,
                    "session_handle": started["session_handle"],
                },
            )
        refreshed = await anyio.to_thread.run_sync(client.get, "/v1/oidc/refresh")
    finally:
        client.close()

    assert signed_in["backstage_identity"]["user_entity_ref"] == "user:default/niaj"
    assert refreshed.json()["backstage_identity"]["user_entity_ref"] == "user:default/niaj"
