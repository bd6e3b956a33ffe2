"""Idempotency-Key on the upload routes, on embedded and on MinIO+FerretDB: a retry answers what
the first request answered and stores nothing more, also when the first request's answer was
lost to a database failure after the insert."""

from __future__ import annotations

import base64
from typing import Any

from aiohttp.test_utils import TestClient

from gateway.keys import SERVICE
from gateway.metadata.base import IdempotencyEntry, utcnow
from gateway.uploads.idempotency import LEASE
from tests.api.test_collections import form
from tests.faults import assert_invariants, install
from tests.helpers import png


async def post(client: TestClient, key: str | None, image: bytes, collection: str = "retries", **fields: str) -> Any:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return await client.post(f"/collections/{collection}/images", data=form(image, **fields), headers=headers)


async def count(client: TestClient, collection: str = "retries") -> int:
    return len(await (await client.get(f"/collections/{collection}/images")).json())


async def test_a_repeat_answers_the_same_image_and_stores_nothing_more(client: TestClient) -> None:
    image = png(seed=1)
    first = await post(client, "order-17 photo", image, note="a")
    assert first.status == 200
    again = await post(client, "order-17 photo", image, note="a")
    assert again.status == 200
    assert (await again.json()) == (await first.json())
    assert await count(client) == 1
    other = await post(client, "order-18", image, note="a")
    assert other.status == 200 and (await other.json())["id"] != (await first.json())["id"]
    assert await count(client) == 2


async def test_the_same_key_for_a_different_request_is_422(client: TestClient) -> None:
    assert (await post(client, "k1", png(seed=1))).status == 200
    different_image = await post(client, "k1", png(seed=2))
    assert different_image.status == 422 and (await different_image.json())["error"]["code"] == "idempotency_key_reused"
    different_properties = await post(client, "k1", png(seed=1), extra="x")
    assert different_properties.status == 422
    assert await count(client) == 1


async def test_a_refusal_is_answered_again(client: TestClient) -> None:
    refused = await post(client, "bad-1", b"GIF89a but not really an image at all")
    assert refused.status in (400, 415)
    body = await refused.json()
    again = await post(client, "bad-1", b"GIF89a but not really an image at all")
    assert (again.status, await again.json()) == (refused.status, body)


async def test_keys_belong_to_their_collection(client: TestClient) -> None:
    image = png(seed=3)
    a = await (await post(client, "same", image, collection="one")).json()
    b = await (await post(client, "same", image, collection="two")).json()
    assert a["id"] != b["id"] and (a["collection"], b["collection"]) == ("one", "two")


async def test_v1_uploads_take_the_key_too(client: TestClient) -> None:
    body = {"data": base64.b64encode(png(seed=4)).decode(), "filename": "x.png", "properties": {"n": 1}}
    first = await client.post("/v1/images", json=body, headers={"Idempotency-Key": "v1-key"})
    again = await client.post("/v1/images", json=body, headers={"Idempotency-Key": "v1-key"})
    assert first.status == again.status == 201
    assert (await first.json())["id"] == (await again.json())["id"]
    page = await (await client.get("/v1/images")).json()
    assert len(page["data"]) == 1


async def test_malformed_keys_are_refused(client: TestClient) -> None:
    for key in ("", " ", "x" * 256, "tab\there", "é"):
        response = await client.post("/collections/retries/images", data=form(png()), headers={"Idempotency-Key": key.encode("utf-8").decode("latin-1")})
        assert response.status == 400, key
        assert (await response.json())["error"]["code"] == "invalid_idempotency_key"
    assert await count(client) == 0


async def test_the_database_dying_after_the_insert_the_retry_returns_the_stored_image(client: TestClient) -> None:
    service = client.app[SERVICE]
    blobs, meta = install(service)
    # The insert commits, then the database is gone: the answer, the undo and the outcome all fail.
    meta.fail_after["insert"] = 1
    meta.fail_before["delete"] = 1
    meta.fail_before["replace_idempotency"] = 1
    image = png(seed=5)
    lost = await post(client, "lost-answer", image)
    assert lost.status == 503
    retry = await post(client, "lost-answer", image)
    assert retry.status == 200, await retry.text()
    doc = await retry.json()
    paths, keys = await assert_invariants(service)
    assert paths == [doc["path"]] and keys == [doc["path"]]  # stored once


async def test_a_first_request_still_running_elsewhere_gets_409_in_progress(client: TestClient) -> None:
    service = client.app[SERVICE]
    # Claim the key as another replica would, mid-upload.
    from gateway.uploads.idempotency import Idempotency

    async def nothing(_: str) -> None:
        return None

    running = await Idempotency(service.meta, 3600).claim("busy", caller=None, collection="retries", kind="image", recover=nothing)
    assert running.fresh and isinstance(running.entry, IdempotencyEntry)
    assert running.entry.lease_expires > utcnow() + LEASE / 2
    response = await post(client, "busy", png(seed=6))
    assert response.status == 409 and (await response.json())["error"]["code"] == "in_progress"
    assert await count(client) == 0
