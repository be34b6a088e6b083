"""The MCP server: four tools over `AuthService`, one per Backstage auth route.

Each client's upstream session is found from its transport: the whole process
on stdio and in-process clients, the `Mcp-Session-Id` on streamable HTTP, or a
`session_handle` argument for clients of the sessionless protocol.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

import httpx2
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from backstage_auth import __version__
from backstage_auth.client import BackstageAuthClient
from backstage_auth.errors import BackstageAuthError
from backstage_auth.models import LogoutResult, SessionResult, StartResult
from backstage_auth.names import ToolName
from backstage_auth.service import AuthService
from backstage_auth.sessions import LOCAL_OWNER, SessionStore, UpstreamSession
from backstage_auth.settings import Settings
from backstage_auth.validation import CallbackUrl, Code, EnvName, ProviderId, SessionHandle, State

logger = logging.getLogger(__name__)

ResultT = TypeVar("ResultT")

INSTRUCTIONS = f"""\
Signs an agent in to Backstage through Backstage's auth API.
OAuth providers (github, google, okta, oidc, ...):
1. {ToolName.START} returns authorization_url; the user opens it and signs in.
2. The user copies the URL the browser ended on (.../handler/frame?code=...&state=...).
3. {ToolName.CALLBACK} with callback_url set to that URL returns the Backstage identity.
4. {ToolName.REFRESH} renews it; {ToolName.LOGOUT} signs out.
The guest provider needs only {ToolName.REFRESH} with provider 'guest'.
Clients without a transport session pass the session_handle from start to every later call.
"""

Env = Annotated[
    EnvName | None,
    Field(
        description=(
            "Backstage auth environment, the key under auth.providers.<provider> in Backstage's "
            "app-config, such as 'development' or 'production'. Leave it out to use the "
            "server's default."
        )
    ),
]
Handle = Annotated[
    SessionHandle | None,
    Field(
        description=(
            "session_handle from an earlier start or callback result. Needed only by clients "
            "without a transport session (stateless HTTP); leave it out otherwise."
        )
    ),
]


@dataclass(frozen=True)
class AppState:
    service: AuthService


def create_server(
    settings: Settings,
    transport: httpx2.AsyncBaseTransport | None = None,
    *,
    service: AuthService | None = None,
) -> MCPServer:
    """Build the MCP server; `transport` replaces the network in unit tests.

    With `service`, the tools share that service (client and session store)
    with another surface, and its owner closes it.
    """

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[AppState]:
        if service is not None:
            yield AppState(service)
            return
        client = BackstageAuthClient(settings, transport=transport)
        store = SessionStore(
            max_sessions=settings.max_sessions, idle_seconds=settings.session_idle_seconds
        )
        logger.info("Serving Backstage auth API at %s", settings.auth_url)
        try:
            yield AppState(AuthService(settings, client, store))
        finally:
            await client.aclose()
            logger.info("Closed the Backstage connection pool")

    server = MCPServer(
        "backstage-auth",
        title="Backstage auth",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
    )
    for name in enabled_tools(settings):
        spec = TOOLS[name]
        server.add_tool(spec.function, name=name, title=spec.title, annotations=spec.annotations)
    return server


def enabled_tools(settings: Settings) -> list[ToolName]:
    """List the tools to serve: the allowlist (or all), minus write tools in read-only mode."""
    names = settings.tools if settings.tools is not None else list(ToolName)
    if settings.read_only:
        names = [name for name in names if TOOLS[name].annotations.read_only_hint]
    return names


async def start_authentication_flow(
    ctx: Context,
    provider: ProviderId,
    flow: Annotated[
        Literal["popup", "redirect"] | None,
        Field(
            description=(
                "Sign-in flow. Leave it out or pass 'popup': the result URL then carries "
                "the code and state to paste back. 'redirect' needs a browser app."
            )
        ),
    ] = None,
    env: Env = None,
    session_handle: Handle = None,
) -> StartResult:
    """Start signing in to Backstage with an OAuth provider (GET /{provider}/start).

    Returns authorization_url for the user to open in a browser. After the
    user signs in, call backstage-handle-authentication-callback-popup with
    the URL the browser ended on. The guest provider has no browser sign-in:
    use backstage-refresh-authentication-token for it.
    """
    service = _service(ctx)
    session = _session(ctx, service, session_handle, create=True)
    return await _run(
        ToolName.START,
        service.start(session, provider=provider, env=env, flow=flow),
    )


async def handle_authentication_callback_popup(
    ctx: Context,
    provider: ProviderId,
    code: Annotated[
        Code | None,
        Field(description="The 'code' query parameter of the callback URL."),
    ] = None,
    state: Annotated[
        State | None,
        Field(description="The 'state' query parameter of the callback URL, unchanged."),
    ] = None,
    callback_url: Annotated[
        CallbackUrl | None,
        Field(
            description=(
                "The full URL the browser ended on after sign-in, as copied from the "
                "address bar (.../handler/frame?code=...&state=...). Easier than code and "
                "state, which it replaces."
            )
        ),
    ] = None,
    session_handle: Handle = None,
) -> SessionResult:
    """Finish a sign-in that backstage-start-authentication-flow started.

    Calls GET /{provider}/handler/frame and reads the result page.
    Pass callback_url, or code and state. Must run in the same session as
    the start call. Returns the user's profile and Backstage identity;
    raw tokens are withheld unless the server reveals them.
    """
    service = _service(ctx)
    session = _session(ctx, service, session_handle, create=True)
    return await _run(
        ToolName.CALLBACK,
        service.callback(
            session, provider=provider, code=code, state=state, callback_url=callback_url
        ),
    )


async def refresh_authentication_token(
    ctx: Context,
    provider: ProviderId,
    optional: Annotated[
        bool,
        Field(
            description=(
                "If true, return an empty result with signed_in=false instead of an error "
                "when this session is not signed in to the provider."
            )
        ),
    ] = False,
    env: Env = None,
    session_handle: Handle = None,
) -> SessionResult:
    """Get a fresh Backstage identity for a signed-in provider (GET /{provider}/refresh).

    For OAuth providers the session must have completed start and callback.
    For provider 'guest' this is the whole sign-in: no other call is needed.
    """
    service = _service(ctx)
    session = _session(ctx, service, session_handle, create=False)
    return await _run(
        ToolName.REFRESH,
        service.refresh(session, provider=provider, env=env, optional=optional),
    )


async def logout_provider(
    ctx: Context,
    provider: ProviderId,
    env: Env = None,
    session_handle: Handle = None,
) -> LogoutResult:
    """Sign out of a provider and forget its cookies (POST /{provider}/logout).

    Afterwards refresh fails until the user signs in again with start and
    callback. The guest provider has no logout.
    """
    service = _service(ctx)
    session = _session(ctx, service, session_handle, create=False)
    return await _run(ToolName.LOGOUT, service.logout(session, provider=provider, env=env))


def _service(ctx: Context) -> AuthService:
    state: AppState = ctx.request_context.lifespan_context
    return state.service


def _owner(ctx: Context) -> str | None:
    """Return the key of the caller's transport session, or None for a sessionless caller."""
    headers = ctx.headers
    if headers is None:
        return LOCAL_OWNER
    session_id = headers.get("mcp-session-id")
    return f"mcp-session:{session_id}" if session_id else None


def _session(
    ctx: Context, service: AuthService, handle: str | None, *, create: bool
) -> UpstreamSession | None:
    try:
        return service.session_for(owner=_owner(ctx), handle=handle, create=create)
    except BackstageAuthError as exc:
        logger.info("Rejected a session handle: %s", exc.message)
        raise ToolError(str(exc)) from None


async def _run(tool: ToolName, call: Awaitable[ResultT]) -> ResultT:
    """Await a service call and turn its errors into tool errors an agent can act on."""
    try:
        return await call
    except BackstageAuthError as exc:
        logger.info("%s failed: %s", tool, exc.message)
        raise ToolError(str(exc)) from None


@dataclass(frozen=True)
class ToolSpec:
    function: Callable[..., Awaitable[Any]]
    title: str
    annotations: ToolAnnotations


# Hints as the capability spec fixes them; openWorldHint because every call reaches Backstage.
_READ_ONLY = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=True
)
_WRITE = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True
)

TOOLS: dict[ToolName, ToolSpec] = {
    ToolName.START: ToolSpec(start_authentication_flow, "Start a Backstage sign-in", _READ_ONLY),
    ToolName.CALLBACK: ToolSpec(
        handle_authentication_callback_popup, "Finish a Backstage sign-in", _READ_ONLY
    ),
    ToolName.REFRESH: ToolSpec(
        refresh_authentication_token, "Refresh a Backstage sign-in", _READ_ONLY
    ),
    ToolName.LOGOUT: ToolSpec(logout_provider, "Sign out of a Backstage provider", _WRITE),
}
