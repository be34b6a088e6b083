"""Translation of Backstage's error responses into a message and a next step.

Backstage reports errors as `{error: {name, message}}`, either as a JSON body
with an HTTP status or inside the handler/frame page with status 200. The
messages matched here are those of `@backstage/plugin-auth-backend` 0.31 and
`@backstage/plugin-auth-node` 0.7.
"""

from __future__ import annotations

from backstage_auth.errors import UpstreamError
from backstage_auth.names import ToolName

_MAX_UPSTREAM_MESSAGE = 500

_SIGN_IN_AGAIN = (
    f"Call {ToolName.START} again in this session, have the user open the new "
    f"authorization_url, then pass the URL the browser ends on to {ToolName.CALLBACK}."
)


def upstream_error(
    *,
    provider: str,
    operation: str,
    status: int | None,
    name: str,
    message: str,
) -> UpstreamError:
    """Build the error for Backstage's error response to `operation` on `provider`."""
    message = message[:_MAX_UPSTREAM_MESSAGE]
    where = f"HTTP {status}" if status is not None else "in the sign-in result page"
    text = f"Backstage returned {where} with {name}: {message}"
    if provider == "guest" and status == 501:
        text = f"The guest provider has no browser sign-in ({text})."
    elif provider == "guest" and operation == "logout" and status == 404:
        text = f"The guest provider has no logout ({text})."
    return UpstreamError(
        text,
        _next_step(provider, operation, status, message),
        status=status,
        error_name=name,
        error_message=message,
    )


def _next_step(provider: str, operation: str, status: int | None, message: str) -> str:
    """Choose the next step from Backstage's message; the checks run most specific first."""
    if provider == "guest" and status == 501:
        return (
            f"The guest provider has no browser sign-in. Call {ToolName.REFRESH} with "
            "provider 'guest' to get a guest identity directly."
        )
    if provider == "guest" and operation == "logout" and status == 404:
        return (
            "Nothing to do: the guest provider keeps no session, so there is nothing to sign "
            "out of. A guest identity simply expires at its expires_at."
        )
    if "Unknown auth provider" in message or "No auth provider registered" in message:
        return (
            f"Backstage has no provider with the id '{provider}'. Use an id configured under "
            "auth.providers in Backstage's app-config; ask the Backstage admin which ones exist "
            "(common ids: github, google, okta, oidc, guest)."
        )
    if "misconfigured" in message:
        return f"Fix the configuration of provider '{provider}' in Backstage's app-config."
    if "environment of this provider" in message or "Must specify 'env'" in message:
        return (
            "Pass an env that is configured for this provider under "
            f"auth.providers.{provider}.<env> (usually 'development' or 'production'), or set "
            "BACKSTAGE_AUTH_ENV on the server."
        )
    if "Missing session cookie" in message:
        return (
            f"This session has no sign-in to '{provider}'. If the user signed in earlier from a "
            "client without a transport session, pass the session_handle from that start or "
            f"callback result. Otherwise sign in: {_SIGN_IN_AGAIN} Pass optional=true to get an "
            "empty result instead of this error."
        )
    if "missing cookie nonce" in message:
        return (
            f"The session this callback ran in has no pending sign-in to '{provider}'. Pass the "
            f"session_handle that {ToolName.START} returned, and the provider id exactly as "
            f"start used it. If neither helps: {_SIGN_IN_AGAIN}"
        )
    if "expected authorization request details" in message:
        return (
            "This sign-in was already completed or its code was already used (codes work "
            f"once), or the callback ran in another session than start. Call {ToolName.REFRESH} "
            f"to check whether the user is signed in. If not: {_SIGN_IN_AGAIN}"
        )
    if "Invalid nonce" in message:
        return (
            "The user opened an older authorization_url. Ask them to open the one from the "
            f"latest {ToolName.START} result and paste back where it ends; or start again."
        )
    if "OAuth state is invalid" in message:
        return (
            "The state is not one Backstage issued. Pass the callback URL exactly as the "
            f"browser shows it. If that fails too: {_SIGN_IN_AGAIN}"
        )
    if "is not allowed" in message:
        return (
            "Backstage rejected the origin. Add it to app.baseUrl or "
            "auth.experimentalExtraAllowedOrigins in Backstage's app-config."
        )
    if "No redirectUrl provided" in message:
        return "Use flow 'popup' (the default); the redirect flow needs a browser app."
    if "Authentication rejected" in message:
        return f"The user or the identity provider declined the sign-in. {_SIGN_IN_AGAIN}"
    if "unable to resolve user identity" in message:
        return (
            "Backstage could not match the signed-in user to a catalog User entity. Ask the "
            "Backstage admin to check the provider's signIn.resolvers and the catalog."
        )
    if message.startswith("Refresh failed"):
        return f"The stored sign-in is no longer valid. {_SIGN_IN_AGAIN}"
    if message.startswith("Authentication failed"):
        return f"The code was not accepted; codes work once and expire quickly. {_SIGN_IN_AGAIN}"
    if status is not None and status >= 500:
        return "Backstage failed while handling the request; check the Backstage backend's log."
    return f"Check the provider '{provider}' and its configuration in Backstage's app-config."
