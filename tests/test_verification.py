"""IdentityTokenVerifier with locally made keys, for the failures a real backend does not issue."""

import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from backstage_auth.errors import UpstreamUnavailableError
from backstage_auth.verification import IdentityTokenVerifier

pytestmark = pytest.mark.anyio

ISSUER = "http://127.0.0.1:7007/api/auth"


def make_key(kid: str):
    private = ec.generate_private_key(ec.SECP256R1())
    public_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
    return private, public_jwk | {"kid": kid, "alg": "ES256", "use": "sig"}


def make_token(private, kid: str, **claims) -> str:
    now = int(time.time())
    payload = {
        "iss": ISSUER,
        "sub": "user:default/a",
        "aud": "backstage",
        "iat": now,
        "exp": now + 600,
    }
    return jwt.encode(payload | claims, private, algorithm="ES256", headers={"kid": kid})


class FakeClient:
    def __init__(self, *jwks_documents) -> None:
        self.documents = list(jwks_documents)
        self.fetches = 0

    async def jwks(self):
        self.fetches += 1
        document = self.documents[min(self.fetches, len(self.documents)) - 1]
        if isinstance(document, Exception):
            raise document
        return document


async def test_valid_token_verifies():
    private, public = make_key("k1")
    verifier = IdentityTokenVerifier(FakeClient({"keys": [public]}), issuer=ISSUER)

    result = await verifier.verify(make_token(private, "k1"))

    assert result.verified is True
    assert result.error is None


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp": int(time.time()) - 120}, "has expired"),
        ({"iss": "http://127.0.0.1:9/api/auth"}, "issuer is not"),
        ({"aud": "other"}, "audience is not 'backstage'"),
    ],
)
async def test_claim_failures_are_explained(claims, reason):
    private, public = make_key("k1")
    verifier = IdentityTokenVerifier(FakeClient({"keys": [public]}), issuer=ISSUER)

    result = await verifier.verify(make_token(private, "k1", **claims))

    assert result.verified is False
    assert reason in result.error


async def test_foreign_signature_rejected():
    _, public = make_key("k1")
    other_private, _ = make_key("k1")
    verifier = IdentityTokenVerifier(FakeClient({"keys": [public]}), issuer=ISSUER)

    result = await verifier.verify(make_token(other_private, "k1"))

    assert result.verified is False
    assert "signature does not match" in result.error


async def test_unknown_key_refetches_once():
    private, public = make_key("new")
    old_private, old_public = make_key("old")
    client = FakeClient({"keys": [old_public]}, {"keys": [old_public, public]})
    verifier = IdentityTokenVerifier(client, issuer=ISSUER)

    old = await verifier.verify(make_token(old_private, "old"))
    new = await verifier.verify(make_token(private, "new"))

    assert old.verified is True
    assert new.verified is True
    assert client.fetches == 2


async def test_missing_key_and_unreachable_jwks():
    private, _ = make_key("k1")
    missing = IdentityTokenVerifier(FakeClient({"keys": []}), issuer=ISSUER)
    unreachable = IdentityTokenVerifier(
        FakeClient(UpstreamUnavailableError("Could not connect", "retry")), issuer=ISSUER
    )

    no_key = await missing.verify(make_token(private, "k1"))
    no_jwks = await unreachable.verify(make_token(private, "k1"))

    assert no_key.verified is False
    assert "no key with id 'k1'" in no_key.error
    assert no_jwks.verified is False
    assert "could not be fetched" in no_jwks.error


async def test_not_a_jwt():
    verifier = IdentityTokenVerifier(FakeClient({"keys": []}), issuer=ISSUER)

    result = await verifier.verify("not-a-token")

    assert result.error == "the token is not a JWT"
