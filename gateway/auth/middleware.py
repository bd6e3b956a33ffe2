"""Authentication's step of the request pipeline (`gateway.middlewares.pipeline`): every route
needs credentials when authentication is on, except the ones whose handler's operation is marked
public; reads and writes are checked separately."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Any

import aiohttp
from aiohttp import web

from gateway import metrics
from gateway.auth.identity import CHALLENGE
from gateway.auth.policy import Authenticator
from gateway.auth.websocket import credential_headers
from gateway.config import Config
from gateway.errors import Forbidden, Unauthorized
from gateway.keys import AUTH, CONFIG, METRICS, PRINCIPAL, SCOPE, USER_ID
from gateway.middlewares import Admission
from gateway.service import Scope

_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


async def auth_context(app: web.Application) -> AsyncIterator[None]:
    """The authenticator, with one HTTP session for the identity service or the JWKS."""
    config = app[CONFIG].auth
    if not (config.enabled and (config.identification_url or config.oidc_jwks_uri)):
        app[AUTH] = Authenticator(config, None)
        yield
        return
    # trust_env off: credentials go to the configured URL only, never through an ambient proxy.
    traced = [metrics.client_trace(app[METRICS], "identity")]
    async with aiohttp.ClientSession(trust_env=False, connector=aiohttp.TCPConnector(limit=100), trace_configs=traced) as session:
        app[AUTH] = Authenticator(config, session)
        yield


def admission(config: Config) -> Admission | None:
    """The pipeline's check before each handler; None (nothing to check) with authentication off."""
    return Gate(config.default_collection).check if config.auth.enabled else None


def _is_public(handler: Any) -> bool:
    # The mark `@operation(..., public=True)` leaves on the handler (gateway.api.openapi): the
    # document and the enforcement read the same flag.
    return getattr(getattr(handler, "__openapi__", None), "public", False) is True


class Gate:
    """Admits a request to its route's handler, or refuses it (401/403)."""

    def __init__(self, default_collection: str):
        self._default_collection = default_collection
        # Whether each routed handler is public, read from its mark once (the routes are fixed).
        self._public: dict[Any, bool] = {}

    def check(self, request: web.Request, upgrade: bool) -> Awaitable[None] | None:
        """None when the request needs no credentials; else the check of the ones it carries.
        `upgrade`: whether it asks to become a WebSocket, whose credentials may come as a
        subprotocol."""
        match_info = request.match_info
        if match_info.route.resource is None:
            # No route matched: the router's 404/405 reveals nothing to protect.
            return None
        handler = match_info.handler
        public = self._public.get(handler)
        if public is None:
            public = self._public[handler] = _is_public(handler)
        return None if public else self._admit(request, upgrade)

    def _collection(self, request: web.Request) -> str | None:
        if "collection" in request.match_info:
            return request.match_info["collection"]
        # Seed 000's routes work on the default collection.
        path = request.match_info.route.resource.canonical  # type: ignore[union-attr]  # matched (see check)
        return self._default_collection if path.startswith("/v1/") else None

    async def _admit(self, request: web.Request, upgrade: bool) -> None:
        auth = request.app[AUTH]
        write = request.method in _WRITES
        collection = self._collection(request)
        public_read = not write and collection is not None and auth.is_public(collection)
        principal = await auth.identify(credential_headers(request.headers, upgrade=upgrade), request.cookies)
        if principal is None:
            if public_read:
                return
            raise Unauthorized("credentials are required", code="unauthenticated", headers=CHALLENGE)
        auth.authorize(principal, write=write, collection=collection)
        request[PRINCIPAL] = principal
        if principal.user_id is not None:
            request[USER_ID] = principal.user_id
        if auth.owner_scoped(principal) and not public_read:
            if principal.user_id is None:
                raise Forbidden("the identity names no user, and each user reaches only their own images", code="no_user_id")
            # The service refuses other users' images, and whole-collection operations, to this scope.
            request[SCOPE] = Scope(principal.user_id)
