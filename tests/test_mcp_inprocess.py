"""The MCP server through the SDK's in-process Client, against the real Backstage backend.

Both protocol eras run: "auto" negotiates the sessionless 2026-07-28 protocol,
"legacy" the 2025-11-25 initialize handshake.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from mcp import Client

from backstage_auth.names import ToolName
from backstage_auth.settings import Settings
from backstage_auth.tools import create_server
from tests.flows import browser_callback_url, call_error, call_ok, sign_in_oidc

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

MODES = ["auto", "legacy"]

EXPECTED_HINTS = {
    ToolName.START: (True, False, True),
    ToolName.CALLBACK: (True, False, True),
    ToolName.REFRESH: (True, False, True),
    ToolName.LOGOUT: (False, False, False),
}


@pytest.mark.parametrize("mode", MODES)
async def test_tools_list_names_hints_schemas(settings, mode):
    async with Client(create_server(settings), mode=mode) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}

    assert set(tools) == {str(name) for name in ToolName}
    for name, (read_only, destructive, idempotent) in EXPECTED_HINTS.items():
        annotations = tools[name].annotations
        assert annotations.read_only_hint is read_only, name
        assert annotations.destructive_hint is destructive, name
        assert annotations.idempotent_hint is idempotent, name
        assert annotations.open_world_hint is True, name
        assert tools[name].title, name
        assert tools[name].output_schema is not None, name
        assert tools[name].input_schema["required"] == ["provider"], name
        provider = tools[name].input_schema["properties"]["provider"]
        assert provider["pattern"] == "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$", name
        for field, schema in tools[name].input_schema["properties"].items():
            assert schema.get("description"), f"{name}.{field} has no description"

    assert set(tools[ToolName.START].input_schema["properties"]) >= {"provider", "flow", "env"}
    assert set(tools[ToolName.CALLBACK].input_schema["properties"]) >= {
        "code",
        "state",
        "callback_url",
    }
    assert "optional" in tools[ToolName.REFRESH].input_schema["properties"]


@pytest.mark.parametrize("mode", MODES)
async def test_oidc_full_flow(settings, mode):
    async with Client(create_server(settings), mode=mode) as client:
        started = await call_ok(client, ToolName.START, {"provider": "oidc"})
        callback_url = await browser_callback_url(started["authorization_url"], "bob")
        query = parse_qs(urlsplit(callback_url).query)
        signed_in = await call_ok(
            client,
            ToolName.CALLBACK,
            {"provider": "oidc", "code": query["code"][0], "state": query["state"][0]},
        )
        refreshed = await call_ok(client, ToolName.REFRESH, {"provider": "oidc"})
        logged_out = await call_ok(client, ToolName.LOGOUT, {"provider": "oidc"})
        after_logout = await call_error(client, ToolName.REFRESH, {"provider": "oidc"})
        optional = await call_ok(client, ToolName.REFRESH, {"provider": "oidc", "optional": True})

    assert started["env"] == "development"
    assert started["state_fields"]["env"] == "development"
    assert "openid" in started["state_fields"]["scope"]
    assert "nonce" not in started["state_fields"]
    assert ToolName.CALLBACK in started["next_step"]

    identity = signed_in["backstage_identity"]
    assert signed_in["signed_in"] is True
    assert identity["user_entity_ref"] == "user:default/bob"
    assert identity["ownership_entity_refs"] == ["user:default/bob"]
    assert identity["token_claims"]["sub"] == "user:default/bob"
    assert identity["token_claims"]["verified"] is True
    assert identity["token_claims"]["verification_error"] is None
    assert identity["token_claims"]["aud"] == "backstage"
    assert identity["token"] is None
    assert signed_in["provider_info"]["access_token"] is None
    assert signed_in["profile"]["email"] == "bob@example.test"
    assert signed_in["tokens_included"] is False

    assert refreshed["backstage_identity"]["user_entity_ref"] == "user:default/bob"
    assert "openid" in refreshed["provider_info"]["scope"]
    assert logged_out["logged_out"] is True
    assert "Missing session cookie" in after_logout
    assert ToolName.START in after_logout
    assert optional["signed_in"] is False
    assert optional["backstage_identity"] is None


@pytest.mark.parametrize("mode", MODES)
async def test_callback_with_pasted_url(settings, mode):
    async with Client(create_server(settings), mode=mode) as client:
        result = await sign_in_oidc(client, login="carol@example.test")

    assert result["backstage_identity"]["user_entity_ref"] == "user:default/carol"


async def test_second_start_replaces_first(settings):
    async with Client(create_server(settings)) as client:
        first = await call_ok(client, ToolName.START, {"provider": "oidc"})
        await call_ok(client, ToolName.START, {"provider": "oidc"})
        stale_url = await browser_callback_url(first["authorization_url"])
        error = await call_error(
            client, ToolName.CALLBACK, {"provider": "oidc", "callback_url": stale_url}
        )

    assert "Invalid nonce" in error
    assert "older authorization_url" in error


async def test_replayed_callback_explains_used_code(settings):
    async with Client(create_server(settings)) as client:
        started = await call_ok(client, ToolName.START, {"provider": "oidc"})
        callback_url = await browser_callback_url(started["authorization_url"])
        arguments = {"provider": "oidc", "callback_url": callback_url}
        await call_ok(client, ToolName.CALLBACK, arguments)
        replay = await call_error(client, ToolName.CALLBACK, arguments)

    assert "already completed or its code was already used" in replay


async def test_provider_case_mismatch_named(settings):
    async with Client(create_server(settings)) as client:
        error = await call_error(client, ToolName.START, {"provider": "OIDC"})
        started = await call_ok(client, ToolName.START, {"provider": "oidc"})
        callback_url = await browser_callback_url(started["authorization_url"])
        mismatch = await call_error(
            client, ToolName.CALLBACK, {"provider": "OIDC", "callback_url": callback_url}
        )

    assert "Backstage knows provider 'OIDC' as 'oidc'" in error
    assert "provider 'OIDC' does not match 'oidc' in callback_url's path" in mismatch


async def test_pasted_url_whitespace_trimmed(settings):
    async with Client(create_server(settings)) as client:
        started = await call_ok(client, ToolName.START, {"provider": "oidc"})
        callback_url = await browser_callback_url(started["authorization_url"], "mia")
        escaped = await call_error(
            client,
            ToolName.CALLBACK,
            {"provider": "oidc", "callback_url": callback_url.replace("&", "&amp;")},
        )
        result = await call_ok(
            client, ToolName.CALLBACK, {"provider": "oidc", "callback_url": f"  {callback_url}\n"}
        )

    assert "HTML-escaped" in escaped
    assert result["backstage_identity"]["user_entity_ref"] == "user:default/mia"


async def test_logout_when_not_signed_in(settings):
    async with Client(create_server(settings)) as client:
        result = await call_ok(client, ToolName.LOGOUT, {"provider": "oidc"})

    assert result["logged_out"] is False
    assert "was not signed in" in result["next_step"]


async def test_reveal_tokens_setting(backstage):
    settings = Settings(auth_url=backstage.auth_url, reveal_tokens=True, _env_file=None)
    async with Client(create_server(settings)) as client:
        result = await sign_in_oidc(client)

    assert result["tokens_included"] is True
    assert result["backstage_identity"]["token"].count(".") == 2
    assert result["provider_info"]["access_token"]


async def test_failed_verification_keeps_result(backstage):
    settings = Settings(
        auth_url=backstage.auth_url, token_issuer="http://127.0.0.1:1/api/auth", _env_file=None
    )
    async with Client(create_server(settings)) as client:
        result = await call_ok(client, ToolName.REFRESH, {"provider": "guest"})

    claims = result["backstage_identity"]["token_claims"]
    assert claims["verified"] is False
    assert "issuer is not 'http://127.0.0.1:1/api/auth'" in claims["verification_error"]
    assert claims["sub"] == "user:development/guest"
    assert result["signed_in"] is True


@pytest.mark.parametrize("mode", MODES)
async def test_guest_refresh(settings, mode):
    async with Client(create_server(settings), mode=mode) as client:
        result = await call_ok(client, ToolName.REFRESH, {"provider": "guest"})

    assert result["signed_in"] is True
    assert result["backstage_identity"]["user_entity_ref"] == "user:development/guest"
    assert result["provider_info"] is None
    assert result["backstage_identity"]["token_claims"]["verified"] is True
    assert "no logout" in result["next_step"]


@pytest.mark.parametrize(
    ("tool", "arguments", "expected"),
    [
        (ToolName.START, {"provider": "guest"}, f"Call {ToolName.REFRESH} with provider 'guest'"),
        (
            ToolName.CALLBACK,
            {"provider": "guest", "code": "c", "state": "00"},
            f"Call {ToolName.REFRESH} with provider 'guest'",
        ),
        (ToolName.LOGOUT, {"provider": "guest"}, "guest provider has no logout"),
    ],
)
async def test_guest_routes_explain_what_to_do(settings, tool, arguments, expected):
    async with Client(create_server(settings)) as client:
        error = await call_error(client, tool, arguments)

    assert expected in error


async def test_unknown_provider(settings):
    async with Client(create_server(settings)) as client:
        error = await call_error(client, ToolName.START, {"provider": "nope"})

    assert "HTTP 404" in error
    assert "Unknown auth provider 'nope'" in error
    assert "no provider with the id 'nope'" in error


async def test_unknown_env(settings):
    async with Client(create_server(settings)) as client:
        error = await call_error(client, ToolName.START, {"provider": "oidc", "env": "staging"})

    assert "HTTP 404" in error
    assert "'staging' environment" in error
    assert "Pass an env that is configured" in error


async def test_garbage_state(settings):
    async with Client(create_server(settings)) as client:
        error = await call_error(
            client, ToolName.CALLBACK, {"provider": "oidc", "code": "abc", "state": "abcdef"}
        )

    assert "HTTP 403" in error
    assert "OAuth state is invalid" in error


async def test_callback_in_fresh_session_lacks_nonce(settings):
    async with Client(create_server(settings)) as first:
        started = await call_ok(first, ToolName.START, {"provider": "oidc"})
    callback_url = await browser_callback_url(started["authorization_url"])

    async with Client(create_server(settings)) as second:
        error = await call_error(
            second, ToolName.CALLBACK, {"provider": "oidc", "callback_url": callback_url}
        )

    assert "missing cookie nonce" in error
    assert "session_handle" in error


async def test_conflicting_code_and_url_rejected(settings):
    url = "http://127.0.0.1:1/api/auth/oidc/handler/frame?code=a&state=00"
    async with Client(create_server(settings)) as client:
        error = await call_error(
            client, ToolName.CALLBACK, {"provider": "oidc", "code": "b", "callback_url": url}
        )

    assert "code differs from the 'code' in callback_url" in error
