"""Verification of Backstage identity tokens against Backstage's own JWKS.

Backstage signs identity tokens (ES256 by default) with keys it publishes at
`<auth API>/.well-known/jwks.json`. The verifier checks the signature, `iss`,
`aud` ("backstage") and `exp`, and reports why a check failed instead of
raising, so a failed verification never hides the rest of a result.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from backstage_auth.client import BackstageAuthClient
from backstage_auth.errors import BackstageAuthError

logger = logging.getLogger(__name__)

AUDIENCE = "backstage"
_KEYS_TTL_SECONDS = 600.0
_LEEWAY_SECONDS = 30


@dataclass(frozen=True)
class Verification:
    verified: bool
    error: str | None = None


class IdentityTokenVerifier:
    """Verifies Backstage identity tokens, caching the JWK set for ten minutes.

    An unknown key id triggers one refetch, because Backstage rotates keys.
    """

    def __init__(
        self,
        client: BackstageAuthClient,
        *,
        issuer: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._issuer = issuer
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None

    async def verify(self, token: str) -> Verification:
        """Check the token's signature, issuer, audience and expiry."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            return Verification(False, "the token is not a JWT")

        key_id = header.get("kid")
        try:
            key = await self._key(key_id)
        except BackstageAuthError as exc:
            logger.warning("Could not fetch Backstage's JWKS: %s", exc.message)
            return Verification(
                False, f"Backstage's signing keys could not be fetched ({exc.message})"
            )
        if key is None:
            return Verification(False, f"no key with id {key_id!r} in Backstage's JWKS")

        try:
            jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm_name or header.get("alg", "ES256")],
                audience=AUDIENCE,
                issuer=self._issuer,
                leeway=_LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.InvalidTokenError as exc:
            return Verification(False, _describe(exc, self._issuer))
        return Verification(True)

    async def _key(self, key_id: Any) -> jwt.PyJWK | None:
        stale = self._fetched_at is None or self._clock() - self._fetched_at > _KEYS_TTL_SECONDS
        if stale:
            await self._refresh_keys()
        elif key_id not in self._keys:
            logger.info("Key id %r is not in the cached JWKS; fetching it again", key_id)
            await self._refresh_keys()
        return self._keys.get(key_id)

    async def _refresh_keys(self) -> None:
        document = await self._client.jwks()
        keys: dict[str, jwt.PyJWK] = {}
        for entry in document.get("keys", []) if isinstance(document, dict) else []:
            try:
                key = jwt.PyJWK(entry)
            except jwt.PyJWKError:
                logger.warning("Skipped an unusable key in Backstage's JWKS")
                continue
            keys[entry.get("kid")] = key
        self._keys = keys
        self._fetched_at = self._clock()
        logger.debug("Fetched %d signing keys from Backstage's JWKS", len(keys))


def _describe(exc: jwt.InvalidTokenError, issuer: str) -> str:
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "the token has expired"
    if isinstance(exc, jwt.InvalidIssuerError):
        return (
            f"the token's issuer is not {issuer!r} (set BACKSTAGE_AUTH_TOKEN_ISSUER if it differs)"
        )
    if isinstance(exc, jwt.InvalidAudienceError):
        return f"the token's audience is not {AUDIENCE!r}"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "the token's signature does not match Backstage's key"
    return f"the token is invalid ({exc})"
