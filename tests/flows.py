"""Tool-call sequences shared by the integration tests, for any MCP client object."""

from __future__ import annotations

from typing import Any, Protocol

import anyio

from backstage_auth.names import ToolName
from tests.backstage_backend import follow_authorization


class ToolCaller(Protocol):
    async def call_tool(self, name: str, arguments: dict[str, Any]) -> Any: ...


def text_of(result: Any) -> str:
    return "\n".join(getattr(block, "text", "") for block in result.content)


async def call_ok(client: ToolCaller, tool: ToolName, arguments: dict[str, Any]) -> dict[str, Any]:
    """Call a tool and return its structured content, failing the test on isError."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, f"{tool} failed: {text_of(result)}"
    return result.structured_content


async def call_error(client: ToolCaller, tool: ToolName, arguments: dict[str, Any]) -> str:
    """Call a tool that must fail and return its error text."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error, f"{tool} unexpectedly succeeded: {result.structured_content}"
    return text_of(result)


async def browser_callback_url(authorization_url: str, login: str | None = None) -> str:
    """Play the user's browser at the mock identity provider."""
    return await anyio.to_thread.run_sync(follow_authorization, authorization_url, login)


async def sign_in_oidc(
    client: ToolCaller, *, login: str | None = None, use_handle: bool = False
) -> dict[str, Any]:
    """Run start, the browser step and callback with the pasted URL; return the callback result."""
    started = await call_ok(client, ToolName.START, {"provider": "oidc"})
    callback_url = await browser_callback_url(started["authorization_url"], login)

    arguments: dict[str, Any] = {"provider": "oidc", "callback_url": callback_url}
    if use_handle:
        arguments["session_handle"] = started["session_handle"]
    return await call_ok(client, ToolName.CALLBACK, arguments)
