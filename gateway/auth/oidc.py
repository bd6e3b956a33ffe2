"""Bearer JWTs verified locally against an OIDC provider's JWKS.

PyJWT's `PyJWKClient` fetches with blocking urllib, so the key set is fetched here with the
app's aiohttp session and parsed with `PyJWKSet`. An unknown `kid` (the provider rotated its
keys) refetches the set, at most once per `refresh_seconds` and one fetch at a time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp
import jwt

from gateway.auth.identity import CHALLENGE
from gateway.errors import Unauthorized, Unavailable

log = logging.getLogger(__name__)

_MAX_JWKS_BYTES = 256 * 1024
_LEEWAY_SECONDS = 30


def _refused(message: str) -> Unauthorized:
    return Unauthorized(message, code="invalid_token", headers={"WWW-Authenticate": CHALLENGE["WWW-Authenticate"] + ', error="invalid_token"'})


class JwtVerifier:
    def __init__(
        self, session: aiohttp.ClientSession, jwks_uri: str, *, issuer: str, audience: str, algorithms: tuple[str, ...],
        user_claim: str, refresh_seconds: float, timeout: float,
    ):
        self._session = session
        self._jwks_uri = jwks_uri
        self._issuer = issuer
        self._audience = audience
        self._algorithms = list(algorithms)
        self._user_claim = user_claim
        self._refresh_seconds = refresh_seconds
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()

    async def _fetch(self) -> None:
        try:
            async with self._session.get(self._jwks_uri, timeout=self._timeout, allow_redirects=False) as response:
                if response.status != 200:
                    raise Unavailable("the token issuer's keys cannot be fetched now", code="identity_unavailable")
                keyset = jwt.PyJWKSet.from_json((await response.content.read(_MAX_JWKS_BYTES)).decode())
        except (aiohttp.ClientError, asyncio.TimeoutError, jwt.PyJWTError, UnicodeDecodeError, ValueError) as exc:
            log.warning("JWKS fetch failed (%s)", exc.__class__.__name__)
            raise Unavailable("the token issuer's keys cannot be fetched now", code="identity_unavailable") from None
        # Symmetric keys never verify anything here: a public key set holds public keys.
        self._keys = {k.key_id: k for k in keyset.keys if k.key_id and k.key_type != "oct"}
        self._fetched_at = time.monotonic()

    async def _key(self, kid: str) -> jwt.PyJWK:
        if kid in self._keys:
            return self._keys[kid]
        async with self._lock:
            stale = self._fetched_at is None or time.monotonic() - self._fetched_at >= self._refresh_seconds
            if kid not in self._keys and stale:
                await self._fetch()
        if kid not in self._keys:
            raise _refused("the token is signed with an unknown key")
        return self._keys[kid]

    async def verify(self, token: str) -> dict[str, Any]:
        """The token's claims; `Unauthorized` for any token that is not valid now."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _refused("the token is malformed") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in self._algorithms:
            raise _refused("the token's algorithm is not accepted")
        if not isinstance(kid, str):
            raise _refused("the token names no key")
        key = await self._key(kid)
        try:
            claims = jwt.decode(
                token, key.key, algorithms=self._algorithms, audience=self._audience, issuer=self._issuer,
                leeway=_LEEWAY_SECONDS, options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise _refused("the token has expired") from None
        except jwt.PyJWTError:
            raise _refused("the token is not valid") from None
        if not isinstance(claims.get(self._user_claim), str):
            raise _refused(f"the token has no {self._user_claim!r} claim")
        return claims
