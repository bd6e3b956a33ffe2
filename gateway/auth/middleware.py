"""The auth middleware: every route needs credentials when authentication is on, except the
ones the OpenAPI document marks public; reads and writes are checked separately."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from gateway import metrics
from gateway.api import openapi
from gateway.auth.identity import CHALLENGE
from gateway.auth.policy import Authenticator, Principal
from gateway.errors import Forbidden, NotFound, Unauthorized
from gateway.keys import AUTH, CONFIG, METADATA, METRICS, OWNER_SCOPE, USER_ID
from gateway.middlewares import Handler
from gateway.names import COLLECTION_RE, IMAGE_ID_RE

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


@functools.cache
def _public_routes() -> frozenset[tuple[str, str]]:
    return frozenset(openapi.public_routes())


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
    method = "get" if request.method == "HEAD" else request.method.lower()
    if (method, resource.canonical) in _public_routes():
        return await handler(request)
    write = request.method in _WRITES
    collection = _collection(request, resource.canonical)
    public_read = not write and collection is not None and auth.is_public(collection)
    principal = await auth.identify(request.headers, request.cookies)
    if principal is None:
        if public_read:
            return await handler(request)
        raise Unauthorized("credentials are required", code="unauthenticated", headers=CHALLENGE)
    auth.authorize(principal, write=write, collection=collection)
    if principal.user_id is not None:
        request[USER_ID] = principal.user_id
    if auth.owner_scoped(principal) and not public_read:
        await _hold_to_own_images(request, principal, collection)
    return await handler(request)


async def _hold_to_own_images(request: web.Request, principal: Principal, collection: str | None) -> None:
    if principal.user_id is None:
        raise Forbidden("the identity names no user, and each user reaches only their own images", code="no_user_id")
    request[OWNER_SCOPE] = principal.user_id
    ident = request.match_info.get("image_id")
    if ident is None:
        # Deletes by filter on the listing are held to the caller's own images; only dropping
        # the collection itself is refused.
        if request.method == "DELETE" and collection is not None and request.match_info.route.resource.canonical == "/collections/{collection}":
            raise Forbidden("deleting a whole collection needs a service key", code="not_owner")
        return
    if collection is None or IMAGE_ID_RE.fullmatch(ident) is None or COLLECTION_RE.fullmatch(collection) is None:
        return  # the handler answers the malformed name
    try:
        record = await request.app[METADATA].get(collection, ident.lower())
    except NotFound:
        return
    if record.owner != principal.user_id:
        raise Forbidden("this image belongs to another user", code="not_owner")
