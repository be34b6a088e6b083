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
    text = f"Backstage answered {where} with {name}: {message}"
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
            "The guest provider has no logout and keeps no session, so there is nothing to "
            "sign out of; stop using the guest token instead."
        )
    if "Unknown auth provider" in message or "No auth provider registered" in message:
        return (
            f"Check the provider id '{provider}': it must be configured under auth.providers "
            "in Backstage's app-config (for example 'github', 'oidc' or 'guest')."
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
            f"This session is not signed in to '{provider}'. Sign in first: {_SIGN_IN_AGAIN} "
            "On a client without a transport session, pass the session_handle from start. "
            "Pass optional=true to get an empty result instead of this error."
        )
    if "missing cookie nonce" in message or "expected authorization request details" in message:
        return (
            "The callback did not run in the session that started the sign-in. Pass the "
            f"session_handle returned by {ToolName.START}. Otherwise: {_SIGN_IN_AGAIN}"
        )
    if "Invalid nonce" in message or "OAuth state is invalid" in message:
        return (
            "The state does not belong to the latest sign-in started in this session. Use the "
            f"URL from the most recent {ToolName.START} call. {_SIGN_IN_AGAIN}"
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
