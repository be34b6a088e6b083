"""The REST adapter: the four auth operations as HTTP resources under /v1.

Each resource parses its parameters with the checks in `validation.py`, calls
`AuthService` like the MCP tools do and returns the same result model as JSON.
Errors are RFC 9457 problems (see `problems.py`). A client's upstream session
is a bearer session of the shared `SessionStore`: its handle travels in the
`backstage_auth_session` cookie (HttpOnly, Path=/v1, SameSite=Lax, Secure over
https), or in the `X-Session-Handle` header for clients that keep no cookies.
The header wins when a request carries both.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import httpx2
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from backstage_auth.errors import BackstageAuthError, SessionNotFoundError
from backstage_auth.http_app import guard, healthz
from backstage_auth.http_security import InboundGuard
from backstage_auth.models import LogoutResult, SessionResult, StartResult
from backstage_auth.names import ToolName
from backstage_auth.openapi import OperationDoc, SessionCarriers, build_openapi
from backstage_auth.problems import NO_STORE_HEADERS, InvalidParameter, problem, problem_response
from backstage_auth.service import AuthService, open_auth_service
from backstage_auth.sessions import UpstreamSession
from backstage_auth.settings import Settings
from backstage_auth.validation import (
    CallbackUrl,
    Code,
    OptionalEnv,
    ProviderId,
    State,
    check_session_handle,
)

logger = logging.getLogger(__name__)

API_PREFIX = "/v1"
SESSION_COOKIE = "backstage_auth_session"
SESSION_HEADER = "X-Session-Handle"


def _parse_query_bool(value: object) -> object:
    """Accept only the JSON spellings 'true' and 'false', as the OpenAPI document states."""
    if isinstance(value, str):
        if value not in ("true", "false"):
            raise ValueError(f"must be 'true' or 'false', got {value!r}")
        return value == "true"
    return value


class _Parameters(BaseModel):
    model_config = ConfigDict(frozen=True)

    provider: ProviderId


class StartParameters(_Parameters):
    """Parameters of GET /v1/{provider}/start."""

    flow: Annotated[
        Literal["popup", "redirect"] | None,
        Field(
            description=(
                "Sign-in flow. Leave it out or pass 'popup': the URL the browser ends on then "
                "carries the code and state to pass to the handler/frame resource. 'redirect' "
                "needs a browser app."
            )
        ),
    ] = None
    env: OptionalEnv = None


class CallbackParameters(_Parameters):
    """Parameters of GET /v1/{provider}/handler/frame."""

    code: Annotated[
        Code | None, Field(description="The 'code' query parameter of the callback URL.")
    ] = None
    state: Annotated[
        State | None,
        Field(description="The 'state' query parameter of the callback URL, unchanged."),
    ] = None
    callback_url: Annotated[
        CallbackUrl | None,
        Field(
            description=(
                "The full URL the browser ended on after sign-in, as copied from the address "
                "bar (.../handler/frame?code=...&state=...), percent-encoded as one query "
                "parameter. It replaces code and state."
            )
        ),
    ] = None


class RefreshParameters(_Parameters):
    """Parameters of GET /v1/{provider}/refresh."""

    optional: Annotated[
        bool,
        BeforeValidator(_parse_query_bool),
        Field(
            description=(
                "If true, return a result with signed_in=false instead of a 401 problem when "
                "this session is not signed in to the provider."
            )
        ),
    ] = False
    env: OptionalEnv = None


class LogoutParameters(_Parameters):
    """Parameters of POST /v1/{provider}/logout."""

    env: OptionalEnv = None


@dataclass(frozen=True)
class RestOperation:
    """One REST resource: its route, documentation and the service call behind it."""

    doc: OperationDoc
    tool: ToolName
    creates_session: bool
    call: Callable[[AuthService, UpstreamSession | None, Any], Awaitable[BaseModel]]


async def _start(
    service: AuthService, session: UpstreamSession | None, parameters: StartParameters
) -> StartResult:
    assert session is not None  # start always creates a session
    return await service.start(
        session, provider=parameters.provider, env=parameters.env, flow=parameters.flow
    )


async def _callback(
    service: AuthService, session: UpstreamSession | None, parameters: CallbackParameters
) -> SessionResult:
    assert session is not None  # the callback always creates a session
    return await service.callback(
        session,
        provider=parameters.provider,
        code=parameters.code,
        state=parameters.state,
        callback_url=parameters.callback_url,
    )


async def _refresh(
    service: AuthService, session: UpstreamSession | None, parameters: RefreshParameters
) -> SessionResult:
    return await service.refresh(
        session, provider=parameters.provider, env=parameters.env, optional=parameters.optional
    )


async def _logout(
    service: AuthService, session: UpstreamSession | None, parameters: LogoutParameters
) -> LogoutResult:
    return await service.logout(session, provider=parameters.provider, env=parameters.env)


_SESSION_NOTE = (
    f" The session travels in the {SESSION_COOKIE} cookie, or in the {SESSION_HEADER} header "
    "for clients that keep no cookies."
)

OPERATIONS: tuple[RestOperation, ...] = (
    RestOperation(
        doc=OperationDoc(
            operation_id="startproviderauth",
            method="GET",
            path=API_PREFIX + "/{provider}/start",
            summary="Start a Backstage sign-in",
            description=(
                "Starts signing in with an OAuth provider (Backstage GET /{provider}/start) and "
                "returns authorization_url for the user to open in a browser. After the user "
                "signs in, pass the URL the browser ended on to GET "
                "/v1/{provider}/handler/frame within 10 minutes, in the same session. A second "
                "start in a session replaces the first. Creates a session when the request "
                "carries none and sets the session cookie." + _SESSION_NOTE
            ),
            parameters=StartParameters,
            result=StartResult,
            sets_cookie=True,
        ),
        tool=ToolName.START,
        creates_session=True,
        call=_start,
    ),
    RestOperation(
        doc=OperationDoc(
            operation_id="handleproviderframe",
            method="GET",
            path=API_PREFIX + "/{provider}/handler/frame",
            summary="Finish a Backstage sign-in",
            description=(
                "Finishes the sign-in that GET /v1/{provider}/start began (Backstage GET "
                "/{provider}/handler/frame) and returns the user's profile and Backstage "
                "identity. Pass callback_url, or code and state. Raw tokens are withheld unless "
                "the server reveals them." + _SESSION_NOTE
            ),
            parameters=CallbackParameters,
            result=SessionResult,
            sets_cookie=True,
        ),
        tool=ToolName.CALLBACK,
        creates_session=True,
        call=_callback,
    ),
    RestOperation(
        doc=OperationDoc(
            operation_id="refreshprovidertoken",
            method="GET",
            path=API_PREFIX + "/{provider}/refresh",
            summary="Refresh a Backstage sign-in",
            description=(
                "Returns a fresh Backstage identity for a signed-in provider (Backstage GET "
                "/{provider}/refresh). For the guest provider this is the whole sign-in and "
                "needs no session." + _SESSION_NOTE
            ),
            parameters=RefreshParameters,
            result=SessionResult,
            sets_cookie=False,
        ),
        tool=ToolName.REFRESH,
        creates_session=False,
        call=_refresh,
    ),
    RestOperation(
        doc=OperationDoc(
            operation_id="logoutprovider",
            method="POST",
            path=API_PREFIX + "/{provider}/logout",
            summary="Sign out of a Backstage provider",
            description=(
                "Signs out of the provider and forgets its cookies (Backstage POST "
                "/{provider}/logout). Afterwards refresh fails until the user signs in again. "
                "The guest provider has no logout. The request body is ignored." + _SESSION_NOTE
            ),
            parameters=LogoutParameters,
            result=LogoutResult,
            sets_cookie=False,
        ),
        tool=ToolName.LOGOUT,
        creates_session=False,
        call=_logout,
    ),
)


def rest_next_step(text: str, provider: str) -> str:
    """Rewrite the tool names in a next step as the REST resources that do the same."""
    for operation in OPERATIONS:
        resource = f"{operation.doc.method} {operation.doc.path.replace('{provider}', provider)}"
        # The provider is already in the resource's path, so "with provider 'x'" is dropped.
        text = text.replace(f"{operation.tool} with provider '{provider}'", resource)
        text = text.replace(operation.tool, resource)
    return text


class _InvalidParameters(Exception):
    def __init__(self, invalid: list[InvalidParameter]) -> None:
        super().__init__(invalid)
        self.invalid = invalid


def _parse_parameters(operation: RestOperation, request: Request) -> _Parameters:
    """Validate the path and query parameters, raising `_InvalidParameters` with every failure."""
    model = operation.doc.parameters
    values: dict[str, str] = {"provider": request.path_params["provider"]}
    invalid: list[InvalidParameter] = []
    for name in model.model_fields:
        if name == "provider":
            continue
        occurrences = request.query_params.getlist(name)
        if len(occurrences) > 1:
            reason = f"{name} was given {len(occurrences)} times, but it may appear once at most"
            invalid.append(InvalidParameter(name=name, location="query", reason=reason))
        elif occurrences:
            values[name] = occurrences[0]

    try:
        parameters = model.model_validate(values)
    except ValidationError as exc:
        invalid.extend(_invalid_parameters(exc))
        raise _InvalidParameters(invalid) from None
    if invalid:
        raise _InvalidParameters(invalid)
    return parameters


def _invalid_parameters(exc: ValidationError) -> list[InvalidParameter]:
    invalid = []
    for error in exc.errors(include_url=False, include_input=False):
        name = str(error["loc"][0]) if error["loc"] else "request"
        location = "path" if name == "provider" else "query"
        if error["type"] == "value_error":
            # The checks in validation.py start their messages with the parameter name.
            reason = str(error["ctx"]["error"])
            if not reason.startswith(name):
                reason = f"{name} {reason}"
        else:
            reason = f"{name} is invalid: {error['msg']}"
        invalid.append(InvalidParameter(name=name, location=location, reason=reason))
    return invalid


def _header_handle(request: Request) -> str | None:
    """Return the X-Session-Handle header, checked like the tools' session_handle argument."""
    occurrences = request.headers.getlist(SESSION_HEADER)
    if not occurrences:
        return None
    if len(occurrences) > 1:
        reason = f"{SESSION_HEADER} was given {len(occurrences)} times, but it may appear once"
        raise _InvalidParameters(
            [InvalidParameter(name=SESSION_HEADER, location="header", reason=reason)]
        )
    try:
        return check_session_handle(occurrences[0])
    except ValueError as exc:
        reason = f"{SESSION_HEADER} is invalid: {exc}"
        raise _InvalidParameters(
            [InvalidParameter(name=SESSION_HEADER, location="header", reason=reason)]
        ) from None


@dataclass
class _SessionChoice:
    session: UpstreamSession | None
    created: bool


class _UnknownSessionCookie(Exception):
    """The session cookie names no live session, so the response clears it."""

    def __init__(self, error: SessionNotFoundError) -> None:
        super().__init__(error)
        self.error = error


def _find_session(
    service: AuthService, request: Request, operation: RestOperation
) -> _SessionChoice:
    """Find the caller's session: by header, else by cookie, else a new one when allowed.

    An unknown header handle raises `SessionNotFoundError`, as the tools do.
    An unknown cookie handle raises `_UnknownSessionCookie`, except on start,
    which begins a new sign-in anyway and so replaces the stale cookie with a
    new session.
    """
    handle = _header_handle(request)
    if handle is not None:
        return _SessionChoice(service.session_for(owner=None, handle=handle, create=False), False)

    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie is not None:
        try:
            return _SessionChoice(
                service.session_for(owner=None, handle=cookie, create=False), False
            )
        except SessionNotFoundError as exc:
            if operation.tool != ToolName.START:
                raise _UnknownSessionCookie(exc) from None
            logger.info("Replacing an unknown or expired session cookie with a new session")

    session = service.session_for(owner=None, handle=None, create=operation.creates_session)
    return _SessionChoice(session, session is not None)


def _set_session_cookie(response: Response, request: Request, handle: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        handle,
        path=API_PREFIX,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="lax",
    )


def _endpoint(operation: RestOperation) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        service: AuthService = request.app.state.service
        provider = request.path_params["provider"]
        name = f"{operation.doc.method} {operation.doc.path}"
        try:
            parameters = _parse_parameters(operation, request)
            choice = _find_session(service, request, operation)
            result = await operation.call(service, choice.session, parameters)
        except _InvalidParameters as exc:
            logger.info("%s rejected invalid parameters: %s", name, _names(exc.invalid))
            return _invalid_parameters_response(exc.invalid)
        except _UnknownSessionCookie as exc:
            logger.info("%s rejected the session cookie: %s", name, exc.error.message)
            response = _error_response(exc.error, provider)
            response.delete_cookie(
                SESSION_COOKIE,
                path=API_PREFIX,
                secure=request.url.scheme == "https",
                httponly=True,
                samesite="lax",
            )
            return response
        except BackstageAuthError as exc:
            logger.info("%s failed: %s", name, exc.message)
            return _error_response(exc, provider)

        next_step = rest_next_step(result.next_step, provider)  # type: ignore[attr-defined]
        body = result.model_copy(update={"next_step": next_step}).model_dump(mode="json")
        response = JSONResponse(body, headers=NO_STORE_HEADERS)
        if choice.created and choice.session is not None:
            _set_session_cookie(response, request, choice.session.handle)
        return response

    return endpoint


def _error_response(exc: BackstageAuthError, provider: str) -> JSONResponse:
    # NOTE: a 401 for a missing or expired session has no WWW-Authenticate header,
    # although RFC 9110 requires one, because the session cookie is no HTTP auth scheme.
    return problem_response(
        problem(
            exc.http_status,
            rest_next_step(exc.message, provider),
            rest_next_step(exc.next_step, provider),
        )
    )


def _names(invalid: list[InvalidParameter]) -> str:
    return ", ".join(f"{item.location} {item.name}" for item in invalid)


def _invalid_parameters_response(invalid: list[InvalidParameter]) -> JSONResponse:
    reasons = " ".join(f"{item.reason.rstrip('.')}." for item in invalid)
    return problem_response(
        problem(
            422,
            f"The request has invalid parameters, so nothing was sent to Backstage: {reasons}",
            "Correct the parameters listed in invalid_params and send the request again.",
            invalid_params=invalid,
        )
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    """Render routing errors (unknown path, wrong method) as problems."""
    assert isinstance(exc, HTTPException)
    routes = ", ".join(f"{op.doc.method} {op.doc.path}" for op in OPERATIONS)
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "the documented method")
        message = f"{request.method} is not allowed on {request.url.path}."
        next_step = f"Send {allowed} instead; /openapi.json lists each resource's method."
    elif exc.status_code == 404:
        message = f"No resource matches {request.url.path}."
        next_step = f"Use one of {routes}; /openapi.json describes them."
    else:
        message = exc.detail
        next_step = "Check the request against /openapi.json."
    return problem_response(problem(exc.status_code, message, next_step), headers=exc.headers)


async def _internal_error(_: Request, exc: Exception) -> Response:
    # Starlette re-raises the exception after this response, so uvicorn logs the traceback.
    logger.error("The REST adapter failed unexpectedly: %s", type(exc).__name__)
    return problem_response(
        problem(
            500,
            "The REST adapter failed unexpectedly.",
            "Retry the request; if it fails again, report it with the server's log.",
        )
    )


class RequestLog:
    """ASGI middleware that logs each request's method, path, status and latency.

    The query string is left out because it carries OAuth codes and states.
    """

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        status = 500
        started = time.perf_counter()

        async def send_and_record(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, send_and_record)
        finally:
            # raw_path stays percent-encoded, so a decoded line break cannot split the log line.
            path = scope.get("raw_path", scope["path"].encode()).decode("ascii", "replace")
            latency_ms = (time.perf_counter() - started) * 1000
            logger.info("REST %s %s -> %d in %.1f ms", scope["method"], path, status, latency_ms)


def create_rest_app(
    settings: Settings,
    *,
    service: AuthService | None = None,
    transport: httpx2.AsyncBaseTransport | None = None,
) -> InboundGuard:
    """Build the guarded REST app.

    With `service`, the app shares that service with another surface and its
    owner closes it; otherwise the app opens its own for its lifespan.
    `transport` replaces the network in unit tests.
    """
    document = build_openapi(
        [operation.doc for operation in OPERATIONS],
        settings,
        SessionCarriers(cookie=SESSION_COOKIE, header=SESSION_HEADER),
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if service is not None:
            app.state.service = service
            yield
            return
        async with open_auth_service(settings, transport) as own_service:
            app.state.service = own_service
            yield

    async def openapi(_: Request) -> JSONResponse:
        return JSONResponse(document)

    routes = [
        Route(op.doc.path, _endpoint(op), methods=[op.doc.method], name=op.doc.operation_id)
        for op in OPERATIONS
    ]
    routes += [
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _internal_error},
    )
    return guard(RequestLog(app), settings)
