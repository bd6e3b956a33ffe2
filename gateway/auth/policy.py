"""Who is calling, and what they may do: read or write, in which collections, whose images."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

import aiohttp

from gateway.auth.apikeys import ApiKeys
from gateway.auth.identity import CHALLENGE, IdentityClient
from gateway.auth.oidc import JwtVerifier
from gateway.config import AuthConfig
from gateway.errors import Forbidden, Unauthorized

API_KEY_HEADER = "X-API-Key"
# Identity fields that name the user, in order of preference (the identification service's
# answer is free-form; OIDC uses the configured claim).
_USER_FIELDS = ("id", "_id", "user_id", "sub", "username", "email")


@dataclass(frozen=True)
class Principal:
    user_id: str | None
    scopes: frozenset[str]
    collections: tuple[str, ...] = ("*",)
    # Services (API keys) act on every image; users may be held to their own.
    is_service: bool = False


def _user_id(identity: dict[str, Any]) -> str | None:
    for name in _USER_FIELDS:
        value = identity.get(name)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value):
            return str(value)[:256]
    return None


class Authenticator:
    def __init__(self, config: AuthConfig, session: aiohttp.ClientSession | None):
        self.config = config
        self._api_keys = ApiKeys(config.api_keys)
        self._identity: IdentityClient | None = None
        self._jwt: JwtVerifier | None = None
        if session is not None and config.identification_url:
            self._identity = IdentityClient(
                session, config.identification_url, timeout=config.identification_timeout_seconds,
                cache_seconds=config.identification_cache_seconds, cache_size=config.identification_cache_size,
            )
        if session is not None and config.oidc_jwks_uri:
            assert config.oidc_issuer and config.oidc_audience  # validated with the config
            self._jwt = JwtVerifier(
                session, config.oidc_jwks_uri, issuer=config.oidc_issuer, audience=config.oidc_audience,
                algorithms=config.oidc_algorithms, user_claim=config.oidc_user_claim,
                refresh_seconds=config.oidc_jwks_refresh_seconds, timeout=config.identification_timeout_seconds,
            )

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def is_public(self, collection: str) -> bool:
        return any(fnmatchcase(collection, pattern) for pattern in self.config.public_collections)

    async def identify(self, headers: Any, cookies: Any) -> Principal | None:
        """The caller, or None when no credential was presented; `Unauthorized` for a bad one,
        `Unavailable` when the identity service cannot say."""
        presented_key = headers.get(API_KEY_HEADER)
        if presented_key is not None:
            key = self._api_keys.find(presented_key)
            if key is None:
                raise Unauthorized("the API key is not valid", code="invalid_credentials", headers=CHALLENGE)
            return Principal(f"apikey:{key.name}", frozenset(key.scopes), key.collections, is_service=True)
        authorization = headers.get("Authorization")
        # The original service's cookies, in its order of preference.
        cookie = cookies.get("jwt") or cookies.get("token")
        if not authorization and not cookie:
            return None
        if self._jwt is not None:
            token = _bearer(authorization) if authorization else cookie
            claims = await self._jwt.verify(token)
            return Principal(claims[self.config.oidc_user_claim][:256], frozenset({"read", "write"}))
        if self._identity is not None:
            # A cookie's token goes as the original sent every token, `Authorization: Bearer`,
            # so an identification service that reads only that header works as it did.
            forwarded = {"Authorization": authorization or f"Bearer {cookie}"}
            identity = await self._identity.identify(forwarded)
            return Principal(_user_id(identity), frozenset({"read", "write"}))
        raise Unauthorized("only API keys are accepted here", code="invalid_credentials", headers=CHALLENGE)

    def authorize(self, principal: Principal, *, write: bool, collection: str | None) -> None:
        needed = "write" if write else "read"
        if needed not in principal.scopes:
            raise Forbidden(f"these credentials may not {needed}", code="insufficient_scope")
        if collection is not None and not any(fnmatchcase(collection, p) for p in principal.collections):
            raise Forbidden("these credentials may not use this collection", code="collection_forbidden")

    def owner_scoped(self, principal: Principal) -> bool:
        """Whether this caller only reaches the images they uploaded."""
        return self.config.scope == "user" and not principal.is_service


def _bearer(authorization: str) -> str:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("expected 'Authorization: Bearer <token>'", code="invalid_credentials", headers=CHALLENGE)
    return token.strip()
