"""Reading of JWT claims, without verification, for display to a caller."""

from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import Any

from pydantic import ValidationError

from backstage_auth.models import TokenClaims

logger = logging.getLogger(__name__)

# Claims shown to callers. `uip` (user identity proof) is left out: it is a
# credential Backstage uses between services.
_SHOWN_CLAIMS = ("iss", "sub", "aud", "iat", "exp", "ent")


def read_unverified_claims(token: str) -> TokenClaims | None:
    """Return the display claims of a compact JWT, or None when it does not decode.

    The signature is not checked, and the result records that (`verified=False`).
    """
    parts = token.split(".")
    if len(parts) != 3:
        logger.warning("Backstage identity token is not a compact JWT; claims left out")
        return None

    try:
        payload: Any = json.loads(_b64url_decode(parts[1]))
    except (binascii.Error, ValueError):
        logger.warning("Backstage identity token payload does not decode; claims left out")
        return None
    if not isinstance(payload, dict):
        return None

    try:
        return TokenClaims.model_validate({k: payload[k] for k in _SHOWN_CLAIMS if k in payload})
    except ValidationError:
        logger.warning("Backstage identity token claims have unexpected types; claims left out")
        return None


def _b64url_decode(segment: str) -> bytes:
    padding = "=" * (-len(segment) % 4)
    return base64.urlsafe_b64decode(segment + padding)
