"""Writes by filter when a store fails part way, on embedded and on MinIO+FerretDB: each image is
whole or gone, and the retried call finishes the work."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from tests.faults import assert_invariants
from tests.service.test_faults import assert_error, faulty, upload


async def test_delete_by_filter_fails_part_way_then_a_retry_finishes(client: TestClient) -> None:
    docs = [await (await upload(client, "bulk", label="x")).json() for _ in range(4)]
    service, blobs, meta = await faulty(client)
    meta.fail_before["delete"] = 1
    await assert_error(await client.delete("/collections/bulk/images?property.label=x"), 503)
    paths, keys = await assert_invariants(service)
    assert len(paths) == 1 and len(keys) == 1  # three deleted whole, one untouched
    retry = await client.delete("/collections/bulk/images?property.label=x")
    assert await retry.json() == {"matched": 1, "deleted": 1, "more": False}
    paths, keys = await assert_invariants(service)
    assert paths == keys == []
    assert {d["id"] for d in docs}.isdisjoint(await (await client.get("/collections/bulk/images")).json())


async def test_delete_by_filter_whose_object_delete_fails_leaves_an_orphan_only(client: TestClient) -> None:
    doc = await (await upload(client, "bulk", label="x")).json()
    service, blobs, meta = await faulty(client)
    blobs.fail_before["delete"] = 1
    assert await (await client.delete("/collections/bulk/images?property.label=x")).json() == {"matched": 1, "deleted": 1, "more": False}
    paths, keys = await assert_invariants(service)
    assert paths == [] and keys == [doc["path"]]


async def test_patch_by_filter_fails_part_way_then_a_retry_finishes(client: TestClient) -> None:
    for _ in range(4):
        await upload(client, "bulk", label="x")
    service, blobs, meta = await faulty(client)
    meta.fail_before["replace_properties"] = 1
    await assert_error(await client.patch("/collections/bulk/images?property.label=x", json={"done": True}), 503)
    listed = await (await client.get("/collections/bulk/images")).json()
    assert sorted(d["properties"].get("done", False) for d in listed) == [False, True, True, True]
    retry = await (await client.patch("/collections/bulk/images?property.label=x", json={"done": True})).json()
    assert (retry["matched"], retry["updated"], retry["unchanged"]) == (4, 1, 3)
    assert all(d["properties"]["done"] for d in await (await client.get("/collections/bulk/images")).json())
