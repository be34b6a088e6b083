"""Elicitation during start, and the session resource, against the real Backstage backend."""

from __future__ import annotations

import json
import re

import anyio
import pytest
from mcp import Client
from mcp.types import ElicitResult

from backstage_auth.names import ToolName
from backstage_auth.tools import create_server
from tests.backstage_backend import follow_authorization
from tests.flows import call_ok, sign_in_oidc

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

URL_IN_MESSAGE = re.compile(r"open (\S+) in your browser")


def pasting_user(login: str, prompts: list[str]):
    """An elicitation callback that signs in at the mock provider and pastes the result URL."""

    async def respond(context, params):
        prompts.append(params.message)
        authorization_url = URL_IN_MESSAGE.search(params.message).group(1)
        callback_url = await anyio.to_thread.run_sync(
            follow_authorization, authorization_url, login
        )
        return ElicitResult(action="accept", content={"callback_url": callback_url})

    return respond


async def declining_user(context, params):
    return ElicitResult(action="decline")


async def test_start_finishes_sign_in_by_elicitation(settings):
    prompts: list[str] = []
    callback = pasting_user("judy", prompts)
    async with Client(
        create_server(settings), mode="legacy", elicitation_callback=callback
    ) as client:
        started = await call_ok(client, ToolName.START, {"provider": "oidc"})
        refreshed = await call_ok(client, ToolName.REFRESH, {"provider": "oidc"})

    assert len(prompts) == 1
    assert started["authorization_url"] in prompts[0]
    completed = started["completed_sign_in"]
    assert completed["backstage_identity"]["user_entity_ref"] == "user:default/judy"
    assert "sign-in is complete" in started["next_step"]
    assert refreshed["backstage_identity"]["user_entity_ref"] == "user:default/judy"


async def test_declined_elicitation_returns_url(settings):
    server = create_server(settings)
    async with Client(server, mode="legacy", elicitation_callback=declining_user) as client:
        started = await call_ok(client, ToolName.START, {"provider": "oidc"})

    assert started["completed_sign_in"] is None
    assert started["next_step"].startswith("The user did not paste the callback URL.")
    assert ToolName.CALLBACK in started["next_step"]


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_client_without_elicitation_gets_url(settings, mode):
    async with Client(create_server(settings), mode=mode) as client:
        started = await call_ok(client, ToolName.START, {"provider": "oidc"})

    assert started["completed_sign_in"] is None
    assert started["authorization_url"].startswith("http://127.0.0.1:")
    assert ToolName.CALLBACK in started["next_step"]


async def test_session_resource_tracks_sign_ins(settings):
    async with Client(create_server(settings), mode="legacy") as client:
        empty = json.loads((await client.read_resource("backstage://session")).contents[0].text)
        await call_ok(client, ToolName.START, {"provider": "oidc"})
        pending = json.loads((await client.read_resource("backstage://session")).contents[0].text)
        await sign_in_oidc(client, login="kim")
        await call_ok(client, ToolName.REFRESH, {"provider": "guest"})
        signed_in = json.loads((await client.read_resource("backstage://session")).contents[0].text)
        await call_ok(client, ToolName.LOGOUT, {"provider": "oidc"})
        after_logout = json.loads(
            (await client.read_resource("backstage://session")).contents[0].text
        )

    assert empty["signed_in"] == []
    assert empty["bound_to_transport_session"] is True
    assert pending["pending_sign_ins"] == ["oidc"]
    providers = {status["provider"]: status for status in signed_in["signed_in"]}
    assert providers["oidc"]["user_entity_ref"] == "user:default/kim"
    assert providers["guest"]["user_entity_ref"] == "user:development/guest"
    assert providers["oidc"]["expires_at"]
    assert signed_in["pending_sign_ins"] == []
    assert [status["provider"] for status in after_logout["signed_in"]] == ["guest"]
    assert set(providers["oidc"]) == {
        "provider",
        "user_entity_ref",
        "scope",
        "expires_at",
        "signed_in_at",
        "refreshed_at",
    }


async def test_session_resource_by_handle_over_http(mcp_http):
    async with Client(mcp_http.url) as client:
        signed_in = await sign_in_oidc(client, login="liam", use_handle=True)
        handle = signed_in["session_handle"]
        by_handle = await client.read_resource(f"backstage://session?session_handle={handle}")
        without = await client.read_resource("backstage://session")

    overview = json.loads(by_handle.contents[0].text)
    assert overview["signed_in"][0]["user_entity_ref"] == "user:default/liam"
    assert overview["bound_to_transport_session"] is False
    assert "session_handle" in json.loads(without.contents[0].text)["next_step"]
