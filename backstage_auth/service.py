"""The four auth flows, shared by the MCP tools and the REST adapter.

`AuthService` finds the caller's upstream session, calls Backstage through
`BackstageAuthClient` and turns the responses into result models, leaving raw
tokens out unless the settings reveal them.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from http.cookiejar import Cookie
from urllib.parse import parse_qs, urlsplit

import httpx2

from backstage_auth.advice import upstream_error
from backstage_auth.client import BackstageAuthClient, FrameRedirect
from backstage_auth.errors import InvalidInputError, SessionNotFoundError, UpstreamError
from backstage_auth.frame import StateDecodeError, decode_state
from backstage_auth.models import (
    BackstageIdentity,
    LogoutResult,
    Profile,
    ProviderInfo,
    ProviderStatus,
    SessionOverview,
    SessionResult,
    StartResult,
    StateSummary,
    TokenClaims,
    WireAuthResponse,
)
from backstage_auth.names import ToolName
from backstage_auth.sessions import SessionStore, UpstreamSession
from backstage_auth.settings import Settings
from backstage_auth.tokens import read_unverified_claims
from backstage_auth.validation import check_code, check_state, split_callback_url
from backstage_auth.verification import IdentityTokenVerifier

logger = logging.getLogger(__name__)

# Lifetime of the nonce cookie Backstage sets on /start.
_NONCE_LIFETIME_SECONDS = 600


class AuthService:
    """Runs start, callback, refresh and logout for one caller's session."""

    def __init__(self, settings: Settings, client: BackstageAuthClient, store: SessionStore):
        self.settings = settings
        self.client = client
        self.store = store
        self.verifier = IdentityTokenVerifier(
            client, issuer=settings.token_issuer or settings.auth_url
        )
        self._base_path = urlsplit(settings.auth_url).path.rstrip("/")

    def session_for(
        self, *, owner: str | None, handle: str | None, create: bool
    ) -> UpstreamSession | None:
        """Find the caller's session by handle, else by owner; create one when asked.

        A caller with an owner always gets a session. A caller with neither
        owner nor handle gets a new bearer session when `create` is true and
        None otherwise. Raises `SessionNotFoundError` for an unusable handle.
        """
        if handle is not None:
            return self.store.for_handle(handle, owner)
        if owner is not None:
            return self.store.for_owner(owner) or self.store.create(owner)
        return self.store.create(None) if create else None

    async def start(
        self, session: UpstreamSession, *, provider: str, env: str | None, flow: str | None
    ) -> StartResult:
        """Begin a sign-in; a second start in the same session replaces the first."""
        env = env or self.settings.default_env
        url = await self.client.start(session.cookies, provider=provider, env=env, flow=flow)
        redirect_uri = parse_qs(urlsplit(url).query).get("redirect_uri", [""])[0]
        configured = _provider_in_callback_path(redirect_uri) or provider
        if configured != provider and configured.lower() == provider.lower():
            # Backstage routes ids case-insensitively but scopes cookies to the configured id,
            # so a sign-in started as 'OIDC' can never complete.
            raise InvalidInputError(
                f"Backstage knows provider '{provider}' as '{configured}'.",
                f"Call {ToolName.START} again with provider '{configured}'; the id must match "
                "exactly for the sign-in cookies to apply.",
            )
        session.pending_sign_ins.add(provider)
        return StartResult(
            provider=provider,
            env=env,
            authorization_url=url,
            state_fields=_state_summary(url),
            expires_in_seconds=_NONCE_LIFETIME_SECONDS,
            session_handle=session.handle,
            next_step=(
                "Ask the user to open authorization_url in a browser and sign in. The browser "
                "then lands on a Backstage '/handler/frame?code=...&state=...' URL. Ask the user "
                f"to copy that whole URL from the address bar and call {ToolName.CALLBACK} with "
                f"provider '{provider}' and callback_url set to it, within "
                f"{_NONCE_LIFETIME_SECONDS // 60} minutes."
            ),
        )

    async def callback(
        self,
        session: UpstreamSession,
        *,
        provider: str,
        code: str | None,
        state: str | None,
        callback_url: str | None,
    ) -> SessionResult:
        """Finish a sign-in with the identity provider's code and state.

        Raises `InvalidInputError` before any request when the arguments do
        not make up a callback, and `UpstreamError` when Backstage rejects it.
        """
        params = _callback_params(code=code, state=state, callback_url=callback_url)
        in_path = _provider_in_callback_path(callback_url or "")
        if in_path is not None and in_path != provider:
            raise InvalidInputError(
                f"provider '{provider}' does not match '{in_path}' in callback_url's path.",
                f"Pass provider '{in_path}', the id the sign-in was started with.",
            )
        answer = await self.client.handler_frame(session.cookies, provider=provider, params=params)

        if isinstance(answer, FrameRedirect):
            answer = await self._finish_redirect_flow(session, provider, params["state"], answer)
        result = await self._session_result(provider, answer, session)
        session.pending_sign_ins.discard(provider)
        _remember(session, result, refreshed=False)
        return result

    async def refresh(
        self,
        session: UpstreamSession | None,
        *,
        provider: str,
        env: str | None,
        optional: bool,
    ) -> SessionResult:
        """Renew the session's sign-in; with `optional`, no sign-in gives an empty result."""
        env = env or self.settings.default_env
        cookies = session.cookies if session is not None else httpx2.Cookies()
        try:
            answer = await self.client.refresh(cookies, provider=provider, env=env)
        except UpstreamError as exc:
            if session is not None and exc.status == 401:
                session.signed_in.pop(provider, None)
            if not (optional and exc.status == 401):
                raise
            logger.info(
                "Refresh of '%s' found no sign-in; optional=true gives an empty result", provider
            )
            return SessionResult(
                provider=provider,
                signed_in=False,
                tokens_included=False,
                session_handle=session.handle if session is not None else None,
                next_step=(
                    f"This session has no valid sign-in to '{provider}' (Backstage: "
                    f"{exc.error_message}). To sign in, call {ToolName.START}."
                ),
            )
        result = await self._session_result(provider, answer, session)
        if session is not None:
            _remember(session, result, refreshed=True)
        return result

    async def logout(
        self, session: UpstreamSession | None, *, provider: str, env: str | None
    ) -> LogoutResult:
        """Sign out of the provider and drop its cookies from the session."""
        env = env or self.settings.default_env
        if session is None and provider != "guest":
            raise SessionNotFoundError(
                "This client has no transport session and passed no session_handle, so there "
                f"is no sign-in to '{provider}' to end.",
                "Pass the session_handle from the start or callback result of the sign-in.",
            )
        cookies = session.cookies if session is not None else httpx2.Cookies()
        was_signed_in = self._has_provider_cookies(cookies, provider)
        logout_url = await self.client.logout(cookies, provider=provider, env=env)
        self._drop_provider_cookies(cookies, provider)
        if session is not None:
            session.signed_in.pop(provider, None)

        if not was_signed_in:
            next_step = (
                f"This session was not signed in to '{provider}', so nothing changed. To sign "
                f"in, call {ToolName.START}."
            )
        elif logout_url:
            next_step = (
                f"Signed out of '{provider}' in Backstage. Ask the user to open logout_url to "
                "end the identity provider's own session too."
            )
        else:
            next_step = (
                f"Signed out of '{provider}' in Backstage. The identity provider's own session "
                "may still be active, so the next sign-in can skip its login page; the user "
                f"can sign out there separately. To sign in again, call {ToolName.START}."
            )
        return LogoutResult(
            provider=provider,
            logged_out=was_signed_in,
            logout_url=logout_url,
            next_step=next_step,
        )

    def overview(
        self, session: UpstreamSession | None, *, has_transport_session: bool
    ) -> SessionOverview:
        """Describe the session's sign-ins without any secret."""
        if session is None and has_transport_session:
            return SessionOverview(
                bound_to_transport_session=True,
                signed_in=[],
                pending_sign_ins=[],
                idle_expiry_seconds=self.settings.session_idle_seconds,
                next_step=f"Nothing is signed in yet. Call {ToolName.START}.",
            )
        if session is None:
            return SessionOverview(
                bound_to_transport_session=False,
                signed_in=[],
                pending_sign_ins=[],
                idle_expiry_seconds=self.settings.session_idle_seconds,
                next_step=(
                    "This client has no transport session. Read backstage://session?session_handle="
                    f"<handle> with the session_handle that {ToolName.START} returned."
                ),
            )
        signed_in = sorted(session.signed_in.values(), key=lambda status: status.provider)
        if signed_in:
            next_step = (
                f"Call {ToolName.REFRESH} before expires_at to renew a sign-in, or "
                f"{ToolName.LOGOUT} to end one."
            )
        else:
            next_step = (
                f"Nothing is signed in. Call {ToolName.START}, or {ToolName.REFRESH} for 'guest'."
            )
        return SessionOverview(
            bound_to_transport_session=session.owner is not None,
            signed_in=signed_in,
            pending_sign_ins=sorted(session.pending_sign_ins),
            idle_expiry_seconds=self.settings.session_idle_seconds,
            next_step=next_step,
        )

    async def _finish_redirect_flow(
        self, session: UpstreamSession, provider: str, state: str, redirect: FrameRedirect
    ) -> WireAuthResponse:
        """Read the outcome of a redirect-flow callback, which carries no payload."""
        error = parse_qs(urlsplit(redirect.location).query).get("error")
        if error:
            raise upstream_error(
                provider=provider, operation="callback", status=None, name="Error", message=error[0]
            )
        env = _state_summary_of(state).env or self.settings.default_env
        return await self.client.refresh(session.cookies, provider=provider, env=env)

    async def _session_result(
        self, provider: str, answer: WireAuthResponse, session: UpstreamSession | None
    ) -> SessionResult:
        reveal = self.settings.reveal_tokens
        now = datetime.now(UTC)
        provider_info = None
        if answer.provider_info is not None:
            info = answer.provider_info
            provider_info = ProviderInfo(
                scope=info.scope,
                expires_in_seconds=info.expires_in_seconds,
                expires_at=_expiry(now, info.expires_in_seconds),
                access_token=info.access_token if reveal else None,
                id_token=info.id_token if reveal else None,
            )

        identity = None
        backstage = answer.backstage_identity
        if backstage is not None and backstage.identity is not None:
            claims = await self._claims(backstage.token)
            identity = BackstageIdentity(
                type=backstage.identity.type,
                user_entity_ref=backstage.identity.user_entity_ref,
                ownership_entity_refs=list(backstage.identity.ownership_entity_refs),
                expires_in_seconds=backstage.expires_in_seconds,
                # The token's own exp is exact; expiresInSeconds is rounded by Backstage.
                expires_at=(claims.exp if claims and claims.exp else None)
                or _expiry(now, backstage.expires_in_seconds),
                token_claims=claims,
                token=backstage.token if reveal else None,
            )

        tokens_included = reveal and bool(
            (identity and identity.token)
            or (provider_info and (provider_info.access_token or provider_info.id_token))
        )
        profile = answer.profile
        return SessionResult(
            provider=provider,
            signed_in=True,
            profile=Profile(
                email=profile.email, display_name=profile.display_name, picture=profile.picture
            ),
            provider_info=provider_info,
            backstage_identity=identity,
            tokens_included=tokens_included,
            session_handle=session.handle if session is not None else None,
            next_step=_signed_in_next_step(provider, identity),
        )

    async def _claims(self, token: str | None) -> TokenClaims | None:
        """Decode the token's claims and record whether they verify against Backstage's JWKS."""
        if not token:
            return None
        claims = read_unverified_claims(token)
        if claims is None:
            return None
        verification = await self.verifier.verify(token)
        return claims.model_copy(
            update={"verified": verification.verified, "verification_error": verification.error}
        )

    def _provider_cookies(self, cookies: httpx2.Cookies, provider: str) -> list[Cookie]:
        """List the provider's cookies, which live under `<auth path>/<provider>`."""
        provider_path = f"{self._base_path}/{provider}"
        return [
            cookie
            for cookie in cookies.jar
            if cookie.path == provider_path or cookie.path.startswith(provider_path + "/")
        ]

    def _has_provider_cookies(self, cookies: httpx2.Cookies, provider: str) -> bool:
        return any(
            cookie.name.startswith(f"{provider}-refresh-token")
            for cookie in self._provider_cookies(cookies, provider)
        )

    def _drop_provider_cookies(self, cookies: httpx2.Cookies, provider: str) -> None:
        for cookie in self._provider_cookies(cookies, provider):
            cookies.jar.clear(cookie.domain, cookie.path, cookie.name)


def _remember(session: UpstreamSession, result: SessionResult, *, refreshed: bool) -> None:
    """Record a successful sign-in or refresh in the session's overview."""
    now = datetime.now(UTC)
    identity = result.backstage_identity
    previous = session.signed_in.get(result.provider)
    session.signed_in[result.provider] = ProviderStatus(
        provider=result.provider,
        user_entity_ref=identity.user_entity_ref if identity else None,
        scope=result.provider_info.scope if result.provider_info else None,
        expires_at=identity.expires_at if identity else None,
        signed_in_at=previous.signed_in_at if previous and refreshed else now,
        refreshed_at=now if refreshed else None,
    )


def _callback_params(
    *, code: str | None, state: str | None, callback_url: str | None
) -> dict[str, str]:
    """Merge explicit code and state with those of a pasted callback URL.

    Raises `InvalidInputError` when a value conflicts or is missing.
    """
    params = split_callback_url(callback_url) if callback_url else {}
    for name, value in (("code", code), ("state", state)):
        if value is None:
            continue
        if name in params and params[name] != value:
            raise InvalidInputError(
                f"{name} differs from the '{name}' in callback_url.",
                "Pass either callback_url alone or code and state alone.",
            )
        params[name] = value

    if "state" not in params or not ("code" in params or "error" in params):
        raise InvalidInputError(
            "The callback needs the URL the browser ended on, or its code and state.",
            "Pass callback_url: the full URL the browser ended on after signing in, containing "
            "'code=' and 'state='. Alternatively pass code and state separately.",
        )

    try:
        check_state(params["state"])
        if "code" in params:
            check_code(params["code"])
    except ValueError as exc:
        raise InvalidInputError(f"callback_url is invalid: {exc}.", "Copy the URL again.") from None
    return params


def _provider_in_callback_path(url: str) -> str | None:
    """Return the provider id in a `.../<provider>/handler/frame` URL, or None."""
    parts = urlsplit(url).path.rstrip("/").split("/")
    if len(parts) >= 3 and parts[-2:] == ["handler", "frame"]:
        return parts[-3]
    return None


def _state_summary(authorization_url: str) -> StateSummary:
    state = parse_qs(urlsplit(authorization_url).query).get("state")
    return _state_summary_of(state[0]) if state else StateSummary()


def _state_summary_of(state: str) -> StateSummary:
    try:
        fields = decode_state(state)
    except StateDecodeError:
        logger.warning("The authorization URL's state does not decode; state fields left out")
        return StateSummary()
    return StateSummary(
        env=fields.get("env"),
        flow=fields.get("flow"),
        scope=fields.get("scope"),
        origin=fields.get("origin"),
    )


def _expiry(now: datetime, seconds: float | None) -> datetime | None:
    return now + timedelta(seconds=seconds) if seconds is not None else None


def _signed_in_next_step(provider: str, identity: BackstageIdentity | None) -> str:
    who = f" as {identity.user_entity_ref}" if identity else ""
    if provider == "guest":
        return (
            f"Signed in with the guest provider{who}. For a new guest identity, call "
            f"{ToolName.REFRESH} with provider 'guest' again; the guest provider has no logout."
        )
    renew = (
        f"Call {ToolName.REFRESH} with provider '{provider}' to renew it before "
        f"backstage_identity.expires_at, and {ToolName.LOGOUT} to sign out."
    )
    if identity is None:
        return (
            f"Signed in to '{provider}', but Backstage returned no identity because the provider "
            f"has no sign-in resolver configured. {renew}"
        )
    return f"Signed in to '{provider}'{who}. {renew}"


@asynccontextmanager
async def open_auth_service(
    settings: Settings, transport: httpx2.AsyncBaseTransport | None = None
) -> AsyncIterator[AuthService]:
    """Open a Backstage client and an empty session store; close the client on exit.

    `transport` replaces the network in unit tests.
    """
    client = BackstageAuthClient(settings, transport=transport)
    store = SessionStore(
        max_sessions=settings.max_sessions, idle_seconds=settings.session_idle_seconds
    )
    logger.info("Serving Backstage auth API at %s", settings.auth_url)
    try:
        yield AuthService(settings, client, store)
    finally:
        await client.aclose()
        logger.info("Closed the Backstage connection pool")
