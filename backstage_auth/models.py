"""Pydantic models: what Backstage sends (`Wire*`) and what the tools return.

Tool results use snake_case fields. Raw tokens appear only when the server
runs with token reveal switched on; otherwise the `*_token` fields are absent.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class _WireModel(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


class WireProfile(_WireModel):
    email: str | None = None
    display_name: str | None = Field(None, alias="displayName")
    picture: str | None = None


class WireProviderInfo(_WireModel):
    id_token: str | None = Field(None, alias="idToken")
    access_token: str | None = Field(None, alias="accessToken")
    scope: str | None = None
    expires_in_seconds: float | None = Field(None, alias="expiresInSeconds")


class WireIdentity(_WireModel):
    type: str = "user"
    user_entity_ref: str = Field(alias="userEntityRef")
    ownership_entity_refs: list[str] = Field(default_factory=list, alias="ownershipEntityRefs")


class WireBackstageIdentity(_WireModel):
    token: str | None = None
    identity: WireIdentity | None = None
    expires_in_seconds: float | None = Field(None, alias="expiresInSeconds")


class WireAuthResponse(_WireModel):
    """Backstage's `ClientAuthResponse`, sent by /refresh and inside the handler/frame page."""

    profile: WireProfile = Field(default_factory=WireProfile)
    provider_info: WireProviderInfo | None = Field(None, alias="providerInfo")
    backstage_identity: WireBackstageIdentity | None = Field(None, alias="backstageIdentity")


class WireError(_WireModel):
    name: str = "Error"
    message: str = ""


class WireErrorBody(_WireModel):
    """Backstage's JSON error body: `{error: {name, message}, response: {statusCode}}`."""

    error: WireError


# Tool results.


class StateSummary(BaseModel):
    """The fields of Backstage's OAuth `state` that matter to a caller; the nonce is left out."""

    env: str | None = Field(None, description="Backstage auth environment the flow runs in.")
    flow: str | None = Field(None, description="'popup' or 'redirect'.")
    scope: str | None = Field(None, description="Scopes requested from the identity provider.")
    origin: str | None = Field(None, description="App origin the result page posts to.")


class StartResult(BaseModel):
    """Result of starting a sign-in: the URL the user must open, and what to do after."""

    provider: str
    env: str
    authorization_url: str = Field(
        description="URL of the identity provider's sign-in page; the user opens it in a browser."
    )
    state_fields: StateSummary = Field(
        description=(
            "Decoded fields of the sign-in's OAuth state, for information. The callback takes "
            "the 'state' string from the callback URL, not this object."
        )
    )
    expires_in_seconds: int = Field(
        600, description="Time within which the callback must arrive, in seconds."
    )
    session_handle: str = Field(
        description=(
            "Opaque handle of this upstream session. Pass it to the other tools when the client "
            "has no transport session (stateless HTTP)."
        )
    )
    completed_sign_in: SessionResult | None = Field(
        None,
        description=(
            "The finished sign-in, present when the user pasted the callback URL through the "
            "client's elicitation prompt."
        ),
    )
    next_step: str


class Profile(BaseModel):
    email: str | None = None
    display_name: str | None = None
    picture: str | None = None


class ProviderInfo(BaseModel):
    """Scope and expiry that the identity provider granted."""

    scope: str | None = None
    expires_in_seconds: float | None = None
    expires_at: datetime | None = Field(None, description="Expiry of the provider's access token.")
    access_token: str | None = Field(None, description="Present only when token reveal is on.")
    id_token: str | None = Field(None, description="Present only when token reveal is on.")


class TokenClaims(BaseModel):
    """Claims of the Backstage identity token."""

    verified: bool = Field(
        False,
        description=(
            "Whether the signature, issuer, audience and expiry were checked against Backstage's "
            "JWKS and passed. The claims are shown either way."
        ),
    )
    verification_error: str | None = Field(None, description="Why verification failed.")
    iss: str | None = None
    sub: str | None = None
    aud: str | list[str] | None = None
    iat: datetime | None = None
    exp: datetime | None = None
    ent: list[str] | None = None


class BackstageIdentity(BaseModel):
    """The user's identity as Backstage issued it."""

    type: str
    user_entity_ref: str = Field(description="Catalog entity of the user, e.g. user:default/jdoe.")
    ownership_entity_refs: list[str]
    expires_in_seconds: float | None = None
    expires_at: datetime | None = Field(None, description="Expiry of the Backstage token.")
    token_claims: TokenClaims | None = None
    token: str | None = Field(
        None,
        description=(
            "Backstage identity token, for 'Authorization: Bearer' to other Backstage plugins. "
            "Present only when token reveal is on."
        ),
    )


class SessionResult(BaseModel):
    """Result of a callback or a refresh: the signed-in session, or an empty one."""

    provider: str
    signed_in: bool = Field(description="False only for refresh with optional=true and no session.")
    profile: Profile | None = None
    provider_info: ProviderInfo | None = None
    backstage_identity: BackstageIdentity | None = Field(
        None, description="Absent when the provider has no sign-in resolver configured."
    )
    tokens_included: bool = Field(description="Whether raw tokens are in this result.")
    session_handle: str | None = None
    next_step: str


class LogoutResult(BaseModel):
    provider: str
    logged_out: bool = Field(
        description="True when a sign-in to the provider ended; false when there was none."
    )
    logout_url: str | None = Field(
        None, description="URL the user should open to end the identity provider's session."
    )
    next_step: str


class ProviderStatus(BaseModel):
    """One provider's sign-in within an upstream session, as this server last saw it."""

    provider: str
    user_entity_ref: str | None = None
    scope: str | None = None
    expires_at: datetime | None = Field(None, description="Expiry of the Backstage token.")
    signed_in_at: datetime
    refreshed_at: datetime | None = None


class SessionOverview(BaseModel):
    """The caller's upstream session: who is signed in where. Contains no secrets."""

    bound_to_transport_session: bool = Field(
        description="True when the session follows the client's transport session."
    )
    signed_in: list[ProviderStatus]
    pending_sign_ins: list[str] = Field(
        description="Providers whose start ran but whose callback has not arrived yet."
    )
    idle_expiry_seconds: float = Field(description="Idle time after which the session ends.")
    next_step: str


StartResult.model_rebuild()
