"""Tool calls and oidc sign-ins through each server, and directly against Backstage."""

from __future__ import annotations

import re
from typing import Any, Protocol

import anyio
import httpx2

from backstage_auth.names import ToolName
from benchmarks.servers import CALL_TIMEOUT_SECONDS, XHR_ARGUMENT, ToolCall
from tests.backstage_backend import follow_authorization

# fastmcp reports a non-2xx response as "HTTP error 302: Found - Location: <url>".
_LOCATION_IN_ERROR = re.compile(r"Location: (\S+)")


class CallFailedError(RuntimeError):
    """A tool call or a direct request did not succeed."""


class ToolCaller(Protocol):
    """The SDK's `Client` or a `ClientSession`."""

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> Any: ...


def result_text(result: Any) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)


async def call_tool(
    client: ToolCaller, call: ToolCall, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Call a tool and return its structured content; raise `CallFailedError` on isError."""
    result = await client.call_tool(call.name, call.arguments | (extra or {}))
    if result.is_error:
        raise CallFailedError(f"{call.name} failed: {result_text(result)[:300]}")
    return result.structured_content or {}


async def browser_callback_url(authorization_url: str, login: str) -> str:
    """Play the user's browser at the mock identity provider on loopback."""
    return await anyio.to_thread.run_sync(follow_authorization, authorization_url, login)


def direct_client() -> httpx2.AsyncClient:
    """Create the baseline client: a plain keep-alive `httpx2.AsyncClient`, as a script uses one."""
    # trust_env=False keeps proxy variables from routing loopback requests elsewhere.
    return httpx2.AsyncClient(timeout=CALL_TIMEOUT_SECONDS, trust_env=False)


async def direct_refresh(http: httpx2.AsyncClient, auth_url: str, provider: str) -> None:
    response = await http.get(
        f"{auth_url}/{provider}/refresh", params={"env": "development"}, headers=XHR_ARGUMENT
    )
    if response.status_code != 200:
        raise CallFailedError(
            f"GET /{provider}/refresh returned {response.status_code}: {response.text[:300]}"
        )


async def sign_in_direct(http: httpx2.AsyncClient, auth_url: str, login: str) -> None:
    """Sign `http`'s cookie jar in to oidc the way a browser does."""
    start = await http.get(f"{auth_url}/oidc/start", params={"env": "development"})
    location = start.headers.get("location")
    if start.status_code != 302 or not location:
        raise CallFailedError(f"GET /oidc/start returned {start.status_code}, expected 302")
    callback = await http.get(await browser_callback_url(location, login))
    if callback.status_code != 200:
        raise CallFailedError(f"GET /oidc/handler/frame returned {callback.status_code}")


async def sign_in_ours(client: ToolCaller, login: str) -> str:
    """Sign in to oidc through backstage-auth-mcp's tools and return the session handle."""
    started = await call_tool(client, ToolCall(ToolName.START, {"provider": "oidc"}))
    handle = started["session_handle"]
    callback_url = await browser_callback_url(started["authorization_url"], login)
    await call_tool(
        client,
        ToolCall(
            ToolName.CALLBACK,
            {"provider": "oidc", "callback_url": callback_url, "session_handle": handle},
        ),
    )
    return handle


async def peer_start(client: ToolCaller) -> tuple[str | None, str]:
    """Call the peer's start tool; return the authorization URL, if any, and the outcome.

    fastmcp treats Backstage's 302 as a failure, so the URL is found only in
    the error text, and only by a caller that parses it out.
    """
    result = await client.call_tool(
        "startAuthentication", {"provider": "oidc", "env": "development"}
    )
    text = result_text(result)
    if not result.is_error:
        return None, f"returned without an error: {text[:120]}"
    match = _LOCATION_IN_ERROR.search(text)
    outcome = "isError: " + text.split(" - Location:")[0]
    return (match.group(1) if match else None), outcome


async def peer_callback(client: ToolCaller, callback_url: str) -> str:
    """Call the peer's callback tool with the code and state of `callback_url`.

    Returns a description of the outcome. Backstage responds with an HTML
    page, which fastmcp returns as text while the tool declares an output
    schema, so the SDK client raises.
    """
    query = httpx2.URL(callback_url).params
    arguments = {"provider": "oidc", "code": query["code"], "state": query["state"]}
    try:
        result = await client.call_tool("handleAuthenticationCallback", arguments)
    except RuntimeError as exc:
        return f"client raised: {exc}"
    if result.is_error:
        return f"isError: {result_text(result)[:160]}"
    return "returned " + ("structured content" if result.structured_content else "text only")


async def sign_in_peer(client: ToolCaller, login: str) -> None:
    """Sign the peer's process-wide cookie jar in to oidc, working around its failures."""
    authorization_url, outcome = await peer_start(client)
    if authorization_url is None:
        raise CallFailedError(f"the peer's start gave no authorization URL: {outcome}")
    # The callback's upstream request sets the refresh cookie even though the
    # client rejects the tool result, so its outcome is not checked here.
    await peer_callback(client, await browser_callback_url(authorization_url, login))
