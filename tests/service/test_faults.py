"""Each failure point of upload, update, delete and collection drop, on embedded and on
MinIO+FerretDB. Each test fails if the write order or the compensation it guards is removed."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

from gateway.service import ImageService
from tests.faults import assert_error, assert_invariants, faulty, object_keys, send_half_an_upload, service_of, upload
from tests.helpers import noisy_jpeg, png


# --- upload ---------------------------------------------------------------------------------


async def test_object_put_fails_nothing_stored(client: TestClient) -> None:
    service, blobs, meta = await faulty(client)
    blobs.fail_before["put"] = 1
    await assert_error(await upload(client), 503)
    paths, keys = await assert_invariants(service)
    assert paths == [] and keys == []
    assert "insert" not in meta.calls  # the record is never written before the object


async def test_collection_registration_fails_object_removed(client: TestClient) -> None:
    service, blobs, meta = await faulty(client)
    meta.fail_before["ensure_collection"] = 1
    await assert_error(await upload(client), 503)
    assert await assert_invariants(service) == ([], [])


async def test_record_insert_fails_object_removed(client: TestClient) -> None:
    service, blobs, meta = await faulty(client)
    meta.fail_before["insert"] = 1
    await assert_error(await upload(client), 503)
    assert await assert_invariants(service) == ([], [])
    assert "delete" in blobs.calls


async def test_record_written_but_unacknowledged_is_removed_with_its_object(client: TestClient) -> None:
    service, blobs, meta = await faulty(client)
    meta.fail_after["insert"] = 1
    await assert_error(await upload(client), 503)
    assert await assert_invariants(service) == ([], [])
    assert meta.journal.index("meta.delete") < meta.journal.index("blobs.delete")  # record first, then object


async def test_record_state_unknown_keeps_object(client: TestClient) -> None:
    """Insert answered an error after writing, and removing the record fails too: the object
    must stay, so the record that may exist is never left without its bytes."""
    service, blobs, meta = await faulty(client)
    meta.fail_after["insert"] = 1
    meta.fail_before["delete"] = 1
    await assert_error(await upload(client), 503)
    paths, keys = await assert_invariants(service)
    assert len(paths) == 1 and keys == paths


async def test_object_cleanup_fails_leaves_only_an_orphan(client: TestClient) -> None:
    service, blobs, meta = await faulty(client)
    meta.fail_before["insert"] = 1
    blobs.fail_before["delete"] = 1
    await assert_error(await upload(client), 503)
    paths, keys = await assert_invariants(service)
    assert paths == [] and len(keys) == 1  # an orphan object, for reconcile


async def test_drop_during_upload_is_refused_and_undone(client: TestClient) -> None:
    service, blobs, meta = await faulty(client)
    assert (await upload(client, "racing")).status == 200
    real_generation = meta.inner.collection_generation

    async def dropped_meanwhile(name: str) -> str | None:
        # A drop ran between our insert and our check: the live generation differs.
        await meta.inner.begin_drop(name)
        await meta.inner.finish_drop(name)
        await meta.inner.ensure_collection(name)
        return await real_generation(name)

    meta.inner.collection_generation = dropped_meanwhile
    try:
        await assert_error(await upload(client, "racing"), 409)
    finally:
        del meta.inner.collection_generation
    paths, keys = await assert_invariants(service)
    assert len(paths) == 1 and keys == paths  # only the first upload


async def test_upload_into_dropping_collection_is_409(client: TestClient) -> None:
    service, blobs, meta = await faulty(client)
    assert (await upload(client, "dropping")).status == 200
    await meta.inner.begin_drop("dropping")
    response = await upload(client, "dropping")
    await assert_error(response, 409)
    assert (await response.json())["error"]["code"] == "collection_dropping"
    paths, keys = await assert_invariants(service)
    assert keys == paths and len(paths) == 1


async def test_invalid_properties_after_image_leave_nothing(client: TestClient) -> None:
    """Form fields after the file are read once the object is stored; a bad one must undo it."""
    service = service_of(client)
    data = aiohttp.FormData()
    data.add_field("image", png(), filename="a.png", content_type="image/png")
    data.add_field("$where", "1")
    response = await client.post("/collections/late/images", data=data)
    await assert_error(response, 400)
    assert await assert_invariants(service) == ([], [])


async def test_client_gone_mid_body_leaves_nothing(client: TestClient) -> None:
    service = service_of(client)
    _, writer = await send_half_an_upload(client.server.host, client.server.port, "/collections/gone/images", noisy_jpeg((300, 300)))
    writer.close()
    await writer.wait_closed()
    # The server notices the closed connection on its next read; poll until it has answered.
    metrics = ""
    for _ in range(200):
        metrics = await (await client.get("/metrics")).text()
        if 'route="/collections/{collection}/images",status="499"' in metrics:
            break
        await asyncio.sleep(0.01)
    assert await assert_invariants(service) == ([], [])
    # The abandoned request is the client's doing: counted as 499, never as a server error.
    assert 'route="/collections/{collection}/images",status="499"' in metrics
    assert 'status="500"' not in metrics


# --- update and delete ------------------------------------------------------------------------


async def test_properties_update_fails_nothing_changes(client: TestClient) -> None:
    doc = await (await upload(client, a="1")).json()
    service, blobs, meta = await faulty(client)
    meta.fail_before["replace_properties"] = 1
    url = f"/collections/faults/images/{doc['id']}"
    await assert_error(await client.patch(url, json={"a": "2"}), 503)
    assert (await (await client.get(url)).json())["properties"] == {"a": "1"}


async def test_record_delete_fails_image_stays_whole(client: TestClient) -> None:
    doc = await (await upload(client)).json()
    service, blobs, meta = await faulty(client)
    meta.fail_before["delete"] = 1
    await assert_error(await client.delete(f"/collections/faults/images/{doc['id']}"), 503)
    paths, keys = await assert_invariants(service)
    assert paths == keys == [doc["path"]]
    assert "delete" not in blobs.calls  # the object goes only after its record


async def test_object_delete_fails_image_is_gone_object_orphaned(client: TestClient) -> None:
    doc = await (await upload(client)).json()
    service, blobs, meta = await faulty(client)
    blobs.fail_before["delete"] = 1
    response = await client.delete(f"/collections/faults/images/{doc['id']}")
    assert response.status == 200
    assert (await client.get(f"/collections/faults/images/{doc['id']}")).status == 404
    paths, keys = await assert_invariants(service)
    assert paths == [] and keys == [doc["path"]]


# --- collection drop --------------------------------------------------------------------------


async def _fill(client: TestClient, collection: str, count: int) -> list[dict[str, Any]]:
    return [await (await upload(client, collection)).json() for _ in range(count)]


async def test_drop_fails_at_records_then_resumes(client: TestClient) -> None:
    await _fill(client, "big", 3)
    await _fill(client, "bigger", 1)
    service, blobs, meta = await faulty(client)
    meta.fail_before["delete_records"] = 1
    await assert_error(await client.delete("/collections/big"), 503)
    await assert_invariants(service)
    # Marked as dropping: hidden, and uploads are refused until the drop completes.
    assert await (await client.get("/collections")).json() == ["bigger"]
    await assert_error(await upload(client, "big"), 409)
    response = await client.delete("/collections/big")
    assert response.status == 200
    assert (await response.json())["deleted"] == {"documents": 3, "objects": 3}
    paths, keys = await assert_invariants(service)
    assert len(paths) == 1 and all(k.startswith("bigger/") for k in keys)


async def test_drop_fails_at_objects_then_resumes(client: TestClient) -> None:
    await _fill(client, "half", 3)
    service, blobs, meta = await faulty(client)
    blobs.fail_before["delete_many"] = 1
    await assert_error(await client.delete("/collections/half"), 503)
    paths, keys = await assert_invariants(service)
    assert paths == [] and len(keys) == 3  # records went first; objects are orphans until resumed
    assert (await client.get("/collections/half")).status == 404
    response = await client.delete("/collections/half")
    assert response.status == 200
    assert await assert_invariants(service) == ([], [])
    assert json.dumps(await (await client.get("/collections")).json()) == "[]"


# --- timeouts: the write happened, the caller was told it failed -----------------------------


async def _reconciled(service: ImageService) -> tuple[list[str], list[str]]:
    from datetime import timedelta

    from gateway.service.reconcile import reconcile

    summary = await reconcile(service, fix=True, grace=timedelta(0))
    assert summary.remaining == 0
    return await assert_invariants(service)


async def test_object_put_times_out_after_storing_leaves_nothing(client: TestClient) -> None:
    """Guards: the upload knows its key before the put, so an object the store kept although the
    put timed out is still removed."""
    service, blobs, meta = await faulty(client)
    blobs.fail_after["put"] = 1
    await assert_error(await upload(client), 503)
    assert await assert_invariants(service) == ([], [])
    assert "insert" not in meta.calls


async def test_generation_check_fails_after_insert_removes_record_then_object(client: TestClient) -> None:
    """Guards: a failure after the insert (here the check against a concurrent drop) undoes the
    record before the object, so no moment has a record without its bytes."""
    service, blobs, meta = await faulty(client)
    meta.fail_before["collection_generation"] = 1
    await assert_error(await upload(client), 503)
    assert await assert_invariants(service) == ([], [])
    assert meta.journal.index("meta.delete") < meta.journal.index("blobs.delete")


async def test_registration_times_out_after_registering(client: TestClient) -> None:
    service, blobs, meta = await faulty(client)
    meta.fail_after["ensure_collection"] = 1
    await assert_error(await upload(client), 503)
    assert await assert_invariants(service) == ([], [])
    assert (await upload(client)).status == 200  # the registered collection takes the retry


async def test_properties_update_times_out_after_writing(client: TestClient) -> None:
    """Guards: an update touches only the record, never the object."""
    doc = await (await upload(client, a="1")).json()
    service, blobs, meta = await faulty(client)
    meta.fail_after["replace_properties"] = 1
    url = f"/collections/faults/images/{doc['id']}"
    await assert_error(await client.patch(url, json={"a": "2"}), 503)
    assert (await (await client.get(url)).json())["properties"] in ({"a": "1"}, {"a": "2"})
    assert blobs.calls == []
    assert await assert_invariants(service) == ([doc["path"]], [doc["path"]])


async def test_record_delete_times_out_after_deleting_leaves_an_orphan_reconcile_removes(client: TestClient) -> None:
    """Guards: the object goes only after the record's delete is confirmed; when it is not, the
    object stays (an orphan, never a record without bytes) and reconcile removes it."""
    doc = await (await upload(client)).json()
    service, blobs, meta = await faulty(client)
    meta.fail_after["delete"] = 1
    await assert_error(await client.delete(f"/collections/faults/images/{doc['id']}"), 503)
    assert await assert_invariants(service) == ([], [doc["path"]])
    assert await _reconciled(service) == ([], [])


async def test_object_delete_times_out_after_deleting(client: TestClient) -> None:
    doc = await (await upload(client)).json()
    service, blobs, meta = await faulty(client)
    blobs.fail_after["delete"] = 1
    assert (await client.delete(f"/collections/faults/images/{doc['id']}")).status == 200
    assert await assert_invariants(service) == ([], [])


async def test_drop_fails_at_listing_then_reconcile_resumes(client: TestClient) -> None:
    """Guards: the dropping mark is set first and kept until the end, so reconcile finds and
    finishes a drop that stopped at any later step."""
    await _fill(client, "listed", 2)
    service, blobs, meta = await faulty(client)
    blobs.fail_before["list"] = 1
    await assert_error(await client.delete("/collections/listed"), 503)
    await assert_error(await upload(client, "listed"), 409)
    assert await _reconciled(service) == ([], [])
    assert await meta.inner.collections(include_dropping=True) == []


async def test_drop_batch_delete_times_out_then_resumes(client: TestClient) -> None:
    await _fill(client, "timed", 2)
    service, blobs, meta = await faulty(client)
    blobs.fail_after["delete_many"] = 1
    await assert_error(await client.delete("/collections/timed"), 503)
    assert (await client.delete("/collections/timed")).status == 200
    assert await assert_invariants(service) == ([], [])


async def test_drop_fails_at_finish_then_reconcile_resumes(client: TestClient) -> None:
    await _fill(client, "finish", 2)
    service, blobs, meta = await faulty(client)
    meta.fail_before["finish_drop"] = 1
    await assert_error(await client.delete("/collections/finish"), 503)
    assert await meta.inner.collections(include_dropping=True) == ["finish"]
    assert await meta.inner.collections() == []
    assert await _reconciled(service) == ([], [])
    assert await meta.inner.collections(include_dropping=True) == []


async def test_racing_uploads_of_one_id_never_corrupt_the_winner(client: TestClient) -> None:
    """Only imports choose ids. Two imports of the same id with different bytes race: one wins;
    the loser must neither overwrite the winner's object nor remove it."""
    import hashlib

    service = service_of(client)
    ident = "65f000000000000000000001"
    images = [png(seed=1), png(seed=2)]

    async def import_one(image: bytes) -> str:
        async with service.upload("race", image_id=ident) as upload:
            async def chunks():  # type: ignore[no-untyped-def]
                yield image

            await upload.put_image(chunks(), "a.png")
            await upload.commit({})
        return "ok"

    results = await asyncio.gather(*(import_one(image) for image in images), return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["Conflict", "str"]
    record = await service.meta.get("race", ident)
    stored = b"".join([chunk async for chunk in service.blobs.get(record.path)])
    assert hashlib.sha256(stored).hexdigest() == record.sha256
    assert await object_keys(service.blobs, "race/") == [record.path]
