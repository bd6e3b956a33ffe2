"""A browser's credential on the event feeds, carried as a WebSocket subprotocol: accepted like the
header, held to the same scope, never echoed, and refused clearly when malformed."""

from __future__ import annotations

import base64
import logging
from typing import Any

import aiohttp
import pytest

from tests.api.test_collections import form
from tests.auth.helpers import OTHER_KEY, READER_KEY, WRITER_KEY, auth_tree
from tests.helpers import png

FEED = "image-gateway.v1"


def b64url(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def key_protocols(key: str) -> tuple[str, ...]:
    return (FEED, "image-gateway.apikey." + b64url(key))



async def test_an_api_key_in_a_subprotocol_opens_the_feed_and_is_never_echoed(auth_client: Any, caplog: Any) -> None:
    client = await auth_client(auth_tree())
    caplog.set_level(logging.DEBUG)
    ws = await client.ws_connect("/collections/wsauth/events", protocols=key_protocols(READER_KEY))
    assert ws.protocol == FEED
    assert (await ws.receive_json(timeout=10))["event"] == "subscribed"
    response = await client.post("/collections/wsauth/images", data=form(png()), headers={"X-API-Key": WRITER_KEY})
    assert response.status == 200, await response.text()
    assert (await ws.receive_json(timeout=10))["id"] == (await response.json())["id"]
    await ws.close()
    encoded = b64url(READER_KEY)
    assert READER_KEY not in caplog.text and encoded not in caplog.text


async def test_a_bearer_token_in_a_subprotocol_is_held_to_the_users_scope(auth_client: Any, identity: Any) -> None:
    client = await auth_client(auth_tree(identification_url=identity.url, scope="user"))
    alice = await client.ws_connect("/collections/shared/events", protocols=(FEED, "image-gateway.bearer." + b64url("alice-token")))
    assert (await alice.receive_json(timeout=10))["event"] == "subscribed"

    async def post(token: str) -> str:
        response = await client.post("/collections/shared/images", data=form(png()), headers={"Authorization": f"Bearer {token}"})
        assert response.status == 200, await response.text()
        return (await response.json())["id"]

    await post("bob-token")
    mine = await post("alice-token")
    # Bob's upload came first, and was held back: the first event Alice sees is her own.
    assert (await alice.receive_json(timeout=10))["id"] == mine
    await alice.close()


async def test_a_header_credential_wins_over_a_subprotocol(auth_client: Any) -> None:
    client = await auth_client(auth_tree())
    # The subprotocol names a key limited to other-*; the header's key reaches every collection.
    ws = await client.ws_connect("/collections/wsauth/events", protocols=key_protocols(OTHER_KEY), headers={"X-API-Key": READER_KEY})
    assert (await ws.receive_json(timeout=10))["event"] == "subscribed"
    await ws.close()


@pytest.mark.parametrize(
    "protocols, status",
    [
        ((FEED, "image-gateway.apikey." + b64url("not-a-key")), 401),
        ((FEED, "image-gateway.apikey.***"), 401),
        ((FEED, "image-gateway.apikey."), 401),
        ((FEED, "image-gateway.apikey." + "A" * 7_000), 401),
        ((FEED, "image-gateway.apikey." + b64url(READER_KEY), "image-gateway.bearer." + b64url("alice-token")), 401),
        # Without the feed's protocol the handshake could not be answered without echoing the key.
        (("image-gateway.apikey." + b64url(READER_KEY),), 400),
        # A key limited to other-* is still limited when it arrives this way.
        (key_protocols(OTHER_KEY), 403),
        # The feed's protocol alone is no credential.
        ((FEED,), 401),
    ],
)
async def test_bad_subprotocol_credentials_are_refused_clearly(auth_client: Any, protocols: tuple[str, ...], status: int) -> None:
    client = await auth_client(auth_tree())
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await client.ws_connect("/collections/wsauth/events", protocols=protocols)
    assert caught.value.status == status
    # The same refusal as a plain request gets: a JSON error body.
    plain = await client.get("/collections/wsauth/events", headers={"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": base64.b64encode(b"0123456789abcdef").decode(), "Sec-WebSocket-Protocol": ", ".join(protocols)})
    assert plain.status == status
    assert set((await plain.json())["error"]) == {"code", "message"}


async def test_a_subprotocol_is_no_credential_on_plain_requests(auth_client: Any) -> None:
    client = await auth_client(auth_tree())
    response = await client.get("/collections", headers={"Sec-WebSocket-Protocol": ", ".join(key_protocols(READER_KEY))})
    assert response.status == 401
