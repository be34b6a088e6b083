"""The MCP server: four tools over `AuthService`, one per Backstage auth route.

Each client's upstream session is found from its transport: the whole process
on stdio and in-process clients, the `Mcp-Session-Id` on streamable HTTP, or a
`session_handle` argument for clients of the sessionless protocol.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

import httpx2
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.types import ToolAnnotations
from pydantic import BeforeValidator, Field

from backstage_auth import __version__
from backstage_auth.elicitation import finish_with_elicitation
from backstage_auth.errors import BackstageAuthError
from backstage_auth.models import LogoutResult, SessionResult, StartResult
from backstage_auth.names import ToolName
from backstage_auth.service import AuthService, open_auth_service
from backstage_auth.sessions import LOCAL_OWNER, UpstreamSession
from backstage_auth.settings import Settings
from backstage_auth.validation import (
    CallbackUrl,
    Code,
    OptionalEnv,
    ProviderId,
    SessionHandle,
    State,
    check_session_handle,
)

logger = logging.getLogger(__name__)

SESSION_RESOURCE = "backstage://session{?session_handle}"

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
The resource backstage://session shows who is signed in where, without secrets.
"""

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
        async with open_auth_service(settings, transport) as own_service:
            yield AppState(own_service)

    # Argument errors reach agents verbatim; pydantic's documentation link is noise there.
    os.environ.setdefault("PYDANTIC_ERRORS_INCLUDE_URL", "0")
    server = MCPServer(
        "backstage-auth",
        title="Backstage auth",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
    )
    for name in enabled_tools(settings):
        spec = TOOLS[name]
        server.add_tool(
            spec.function,
            name=name,
            title=spec.title,
            description=inspect.cleandoc(spec.function.__doc__ or ""),
            annotations=spec.annotations,
        )
    server.resource(
        SESSION_RESOURCE,
        name="backstage-session",
        title="Backstage sign-in session",
        description=(
            "The caller's upstream session: providers signed in, identity and expiry. "
            "Contains no tokens or cookies. Clients without a transport session add "
            "?session_handle=<handle>."
        ),
        mime_type="application/json",
    )(read_session)
    return server


async def read_session(ctx: Context, session_handle: str | None = None) -> str:
    """Return the caller's session overview as JSON."""
    service = _service(ctx)
    owner = _owner(ctx)
    try:
        if session_handle is not None:
            session = service.store.for_handle(check_session_handle(session_handle), owner)
        else:
            session = service.store.for_owner(owner) if owner is not None else None
    except (ValueError, BackstageAuthError) as exc:
        logger.info("Rejected a session resource read: %s", exc)
        raise ResourceError(str(exc)) from None
    overview = service.overview(session, has_transport_session=owner is not None)
    return overview.model_dump_json(indent=2)


def enabled_tools(settings: Settings) -> list[ToolName]:
    """List the tools to serve: the allowlist (or all), minus write tools in read-only mode."""
    names = settings.tools if settings.tools is not None else list(ToolName)
    if settings.read_only:
        names = [name for name in names if TOOLS[name].annotations.read_only_hint]
    return names


def _lower_case(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


async def start_authentication_flow(
    ctx: Context,
    provider: ProviderId,
    flow: Annotated[
        Literal["popup", "redirect"] | None,
        BeforeValidator(_lower_case),
        Field(
            description=(
                "Sign-in flow. Leave it out or pass 'popup', the only flow an agent can finish: "
                "the browser then ends on a URL that carries the code and state. 'redirect' "
                "exists for Backstage's own web app and fails here without its redirectUrl."
            )
        ),
    ] = None,
    env: OptionalEnv = None,
    session_handle: Handle = None,
) -> StartResult:
    """Start signing in to Backstage with an OAuth provider (GET /{provider}/start).

    Returns authorization_url for the user to open in a browser. After the
    user signs in, call backstage-handle-authentication-callback-popup with
    the URL the browser ended on. The guest provider has no browser sign-in:
    use backstage-refresh-authentication-token for it.
    """
    caller = Caller.of(ctx, provider, session_handle)
    session = caller.session(create=True)

    async def start_then_elicit() -> StartResult:
        started = await caller.service.start(session, provider=provider, env=env, flow=flow)
        return await finish_with_elicitation(ctx, caller.service, session, started)

    return await caller.run(ToolName.START, start_then_elicit())


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
    caller = Caller.of(ctx, provider, session_handle)
    session = caller.session(create=True)
    return await caller.run(
        ToolName.CALLBACK,
        caller.service.callback(
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
    env: OptionalEnv = None,
    session_handle: Handle = None,
) -> SessionResult:
    """Get a fresh Backstage identity for a signed-in provider (GET /{provider}/refresh).

    For OAuth providers the session must have completed start and callback.
    For provider 'guest' this is the whole sign-in: no other call is needed.
    """
    caller = Caller.of(ctx, provider, session_handle)
    session = caller.session(create=False)
    return await caller.run(
        ToolName.REFRESH,
        caller.service.refresh(session, provider=provider, env=env, optional=optional),
    )


async def logout_provider(
    ctx: Context,
    provider: ProviderId,
    env: OptionalEnv = None,
    session_handle: Handle = None,
) -> LogoutResult:
    """Sign out of a provider and forget its cookies (POST /{provider}/logout).

    Afterwards refresh fails until the user signs in again with start and
    callback. The guest provider has no logout.
    """
    caller = Caller.of(ctx, provider, session_handle)
    session = caller.session(create=False)
    return await caller.run(
        ToolName.LOGOUT, caller.service.logout(session, provider=provider, env=env)
    )


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


@dataclass(frozen=True)
class Caller:
    """One tool call's view of its client: the service, transport session and handle."""

    service: AuthService
    owner: str | None
    handle: str | None
    provider: str

    @classmethod
    def of(cls, ctx: Context, provider: str, handle: str | None) -> Caller:
        return cls(_service(ctx), _owner(ctx), handle, provider)

    @property
    def sessionless(self) -> bool:
        return self.owner is None

    def session(self, *, create: bool) -> UpstreamSession | None:
        """Find or create the caller's session; raise `ToolError` for an unusable handle."""
        try:
            return self.service.session_for(owner=self.owner, handle=self.handle, create=create)
        except BackstageAuthError as exc:
            logger.info("Rejected a session handle: %s", exc.message)
            if self.provider == "guest":
                exc.next_step = "The guest provider needs no session_handle; leave it out."
            raise ToolError(str(exc)) from None

    async def run(self, tool: ToolName, call: Awaitable[ResultT]) -> ResultT:
        """Await a service call; turn its errors into tool errors an agent can act on.

        A sessionless client learns from every next step that it must carry
        the session_handle, because nothing else links its calls.
        """
        try:
            result = await call
        except BackstageAuthError as exc:
            logger.info("%s failed: %s", tool, exc.message)
            exc.next_step += self._empty_session_note()
            raise ToolError(str(exc)) from None

        if not self.sessionless or self.provider == "guest":
            return result
        handle = getattr(result, "session_handle", None)
        if handle:
            hint = f" Pass session_handle '{handle}' to every later call for this sign-in."
        else:
            hint = self._empty_session_note()
        next_step = getattr(result, "next_step", "")
        return result.model_copy(update={"next_step": next_step + hint})  # type: ignore[attr-defined]

    def _empty_session_note(self) -> str:
        if not self.sessionless or self.handle is not None or self.provider == "guest":
            return ""
        return (
            " Note: this client has no transport session and passed no session_handle, so "
            "the call ran in an empty session."
        )


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
