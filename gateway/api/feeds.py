"""WebSocket feeds of image events: one per collection, one for all collections.

Each message is JSON: first `{"event": "subscribed", "collection", "mode"}` once events written
from then on will arrive, then `{"event": "upload"|"update"|"delete", "seq", "collection", "id",
"document"}` with the document as the REST API shows it. Messages from the client are ignored.
Authentication is the one reads have: the auth middleware runs before this handler, and leaves
the caller's principal and scope on the request. A browser, which cannot set headers on a
WebSocket, carries its credential in a subprotocol (gateway.auth.websocket). What a listing would hide stays hidden here too:
other users' images under `auth.scope: user`, and on the all-collections feed, collections the
caller's credentials do not reach.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import WSCloseCode, web

from gateway.api.common import document, scope
from gateway.api.openapi import operation
from gateway.errors import Forbidden
from gateway.service.events import EventHub
from gateway.keys import AUTH, EVENTS, PRINCIPAL
from gateway.metadata.base import Event
from gateway.api.params import no_query
from gateway.auth.websocket import PROTOCOL
from gateway.names import collection_name


def _message(request: web.Request, event: Event) -> dict[str, object]:
    record = event.record
    return {"event": event.kind, "seq": event.seq, "collection": record.collection, "id": record.id, "document": document(request, record)}


def _visibility(request: web.Request, collection: str | None) -> Callable[[Event], bool]:
    caller = scope(request)
    auth = request.app[AUTH]
    # The middleware checked one named collection; the all-collections feed is checked per event.
    principal = request.get(PRINCIPAL) if collection is None else None

    def visible(event: Event) -> bool:
        try:
            caller.check(event.record)
            if principal is not None:
                auth.authorize(principal, write=False, collection=event.record.collection)
        except Forbidden:
            return False
        return True

    return visible


async def _pump(request: web.Request, hub: EventHub, ws: web.WebSocketResponse, collection: str | None) -> None:
    visible = _visibility(request, collection)
    subscription = hub.subscribe(collection)
    try:
        await hub.started()
        await ws.send_json({"event": "subscribed", "collection": collection, "mode": hub.mode})
        async for event in subscription:
            if visible(event):
                await ws.send_json(_message(request, event))
        await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"too far behind; reconnect")
    finally:
        hub.unsubscribe(subscription)


_FEED = {"101": {"description": (
    "WebSocket: JSON messages `subscribed`, then `upload`, `update`, `delete` with `seq`, `collection`, `id`, `document`."
    f" A browser, which cannot set headers on a WebSocket, offers the subprotocols `{PROTOCOL}` and"
    " `image-gateway.bearer.<base64url token>` or `image-gateway.apikey.<base64url key>`;"
    f" the answer names `{PROTOCOL}` only."
)}}


@operation("Live events of every collection (WebSocket)", tag="operations", ok=_FEED)
async def all_events(request: web.Request) -> web.WebSocketResponse:
    no_query(request.query)
    return await _feed(request, None)


@operation("Live events of one collection (WebSocket)", tag="operations", ok=_FEED)
async def collection_events(request: web.Request) -> web.WebSocketResponse:
    no_query(request.query)
    return await _feed(request, collection_name(request.match_info["collection"]))


async def _feed(request: web.Request, collection: str | None) -> web.WebSocketResponse:
    hub = request.app[EVENTS]
    # The feed's protocol, answered when offered: a browser that carries its credential in a
    # subprotocol (gateway.auth.websocket) must get one of its offers back.
    ws = web.WebSocketResponse(heartbeat=30, protocols=(PROTOCOL,))
    await ws.prepare(request)
    hub.sockets.add(ws)
    pump = asyncio.create_task(_pump(request, hub, ws, collection))
    try:
        async for _ in ws:
            pass
    finally:
        pump.cancel()
        await asyncio.gather(pump, return_exceptions=True)
    return ws


async def close_sockets(app: web.Application) -> None:
    """On shutdown: long-lived sockets would otherwise hold graceful shutdown to its timeout."""
    sockets = list(app[EVENTS].sockets)
    await asyncio.gather(*(ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown") for ws in sockets))
