"""The auth middleware: every route needs credentials when authentication is on, except the
ones whose handler's operation is marked public; reads and writes are checked separately."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from gateway import metrics
from gateway.auth.identity import CHALLENGE
from gateway.auth.policy import Authenticator
from gateway.auth.websocket import credential_headers
from gateway.errors import Forbidden, Unauthorized
from gateway.keys import AUTH, CONFIG, METRICS, PRINCIPAL, SCOPE, USER_ID
from gateway.middlewares import Handler
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


def _is_public(request: web.Request) -> bool:
    # The mark `@operation(..., public=True)` leaves on the handler (gateway.api.openapi): the
    # document and the enforcement read the same flag.
    return getattr(getattr(request.match_info.handler, "__openapi__", None), "public", False) is True


def _collection(request: web.Request, path: str) -> str | None:
    if "collection" in request.match_info:
        return request.match_info["collection"]
    # Seed 000's routes work on the default collection.
    return request.app[CONFIG].default_collection if path.startswith("/v1/") else None


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    auth = request.app[AUTH]
    resource = request.match_info.route.resource
    if not auth.enabled or resource is None:
        # Off, or no route matched: the router's 404/405 reveals nothing to protect.
        return await handler(request)
    if _is_public(request):
        return await handler(request)
    write = request.method in _WRITES
    collection = _collection(request, resource.canonical)
    public_read = not write and collection is not None and auth.is_public(collection)
    upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
    principal = await auth.identify(credential_headers(request.headers, upgrade=upgrade), request.cookies)
    if principal is None:
        if public_read:
            return await handler(request)
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
    return await handler(request)
