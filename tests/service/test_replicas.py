"""Two replicas (two apps on the same stores, as two gateway processes behind a balancer are) and
the per-process caches of each: a presigned link reused for part of its lifetime, a collection's
generation reused by uploads. Whatever either caches, after a delete or a drop acknowledged by
one, the other serves neither the document nor a redirect for it, and an upload through a replica
whose cached generation is stale (the other dropped the collection) still lands, whole."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.caches import ExpiringCache, SharedReads
from gateway.config import Config
from gateway.keys import SERVICE
from tests.faults import assert_invariants, install
from tests.helpers import png


@pytest.fixture
async def replicas(aiohttp_client: Any, app_config: Config) -> tuple[TestClient, TestClient]:
    return await aiohttp_client(create_app(app_config)), await aiohttp_client(create_app(app_config))


def form(seed: int = 0) -> aiohttp.FormData:
    data = aiohttp.FormData()
    data.add_field("image", png(seed=seed), filename="a.png", content_type="image/png")
    return data


async def uploaded(client: TestClient, collection: str, seed: int = 0) -> dict[str, Any]:
    response = await client.post(f"/collections/{collection}/images", data=form(seed))
    assert response.status == 200, await response.text()
    return await response.json()


async def redirect(client: TestClient, collection: str, image_id: str) -> aiohttp.ClientResponse:
    return await client.get(f"/collections/{collection}/images/{image_id}/image", allow_redirects=False)


async def test_a_link_is_reused_but_never_outlives_the_image_on_any_replica(replicas: tuple[TestClient, TestClient]) -> None:
    a, b = replicas
    doc = await uploaded(a, "links")
    first, again = await redirect(a, "links", doc["id"]), await redirect(a, "links", doc["id"])
    assert first.status == again.status == 302
    # The same URL for a while: one signature, and the browser may reuse its cached bytes.
    assert first.headers["Location"] == again.headers["Location"]
    assert (await redirect(b, "links", doc["id"])).status == 302  # b's cache holds it too
    assert (await b.delete(f"/collections/links/images/{doc['id']}")).status == 200
    for replica in (a, b):
        assert (await redirect(replica, "links", doc["id"])).status == 404
        assert (await replica.get(f"/collections/links/images/{doc['id']}")).status == 404


async def test_a_drop_on_one_replica_hides_everything_on_the_other(replicas: tuple[TestClient, TestClient]) -> None:
    a, b = replicas
    doc = await uploaded(a, "dropped")
    assert (await redirect(a, "dropped", doc["id"])).status == 302
    assert (await b.delete("/collections/dropped")).status == 200
    assert (await redirect(a, "dropped", doc["id"])).status == 404
    assert (await (await a.get("/collections/dropped/images")).json()) == []


async def test_upload_through_a_replica_with_a_stale_generation_lands(replicas: tuple[TestClient, TestClient]) -> None:
    """a caches the collection's generation; b drops the collection; a's next upload finds its
    cached generation gone after the insert, registers the collection anew and keeps the image."""
    a, b = replicas
    await uploaded(a, "stale")
    assert a.server.app[SERVICE].generations.get("stale") is not None
    assert (await b.delete("/collections/stale")).status == 200
    doc = await uploaded(a, "stale", seed=1)
    listed = await (await b.get("/collections/stale/images")).json()
    assert [d["id"] for d in listed] == [doc["id"]]
    assert (await b.get(f"/collections/stale/images/{doc['id']}/image")).status == 200
    paths, keys = await assert_invariants(b.server.app[SERVICE])
    assert paths == keys == [doc["path"]]


async def test_stale_generation_and_a_drop_that_removed_the_object_refuses_the_upload(replicas: tuple[TestClient, TestClient]) -> None:
    """The drop ran during the upload: it listed (and removed) our object before our insert.
    The upload must be refused and leave nothing, though the collection is active again."""
    a, b = replicas
    await uploaded(a, "raced")
    service = a.server.app[SERVICE]
    blobs, meta = install(service)
    real_insert = meta.inner.insert

    async def dropped_before_insert(record: Any) -> None:
        # b's drop, and a new registration by b's next upload, between our put and our insert.
        assert (await b.delete("/collections/raced")).status == 200
        await uploaded(b, "raced", seed=2)
        await real_insert(record)

    meta.inner.insert = dropped_before_insert
    try:
        response = await a.post("/collections/raced/images", data=form(1))
    finally:
        del meta.inner.insert
    assert response.status == 409, await response.text()
    assert (await response.json())["error"]["code"] == "collection_dropping"
    paths, keys = await assert_invariants(service)
    assert len(paths) == 1 and paths == keys  # only b's image


def test_expiring_cache_forgets_after_its_lifetime_and_evicts_the_oldest() -> None:
    now = [0.0]
    cache: ExpiringCache[str] = ExpiringCache(10, 2, clock=lambda: now[0])
    cache.put("a", "1")
    cache.put("b", "2")
    now[0] = 9.9
    assert cache.get("a") == "1"
    cache.put("c", "3")  # over the limit: the oldest stored ("a") goes
    assert cache.get("a") is None and cache.get("b") == "2" and len(cache) == 2
    now[0] = 10.0
    assert cache.get("b") is None and cache.get("c") == "3"
    cache.discard("c")
    assert cache.get("c") is None
    off: ExpiringCache[str] = ExpiringCache(0, 2)
    off.put("a", "1")
    assert off.get("a") is None


async def test_shared_reads_begin_after_every_caller_they_serve() -> None:
    started: list[int] = []
    release: list[asyncio.Event] = []

    async def read(key: str) -> int:
        started.append(len(started))
        release.append(asyncio.Event())
        await release[-1].wait()
        return len(started)

    reads: SharedReads[str, int] = SharedReads(read)
    first = asyncio.create_task(reads.get("c"))
    await asyncio.sleep(0)
    # These arrive while the first read is in flight: it began before them, so it cannot answer
    # them; they share the next one, which begins once the first has ended.
    later = [asyncio.create_task(reads.get("c")) for _ in range(3)]
    await asyncio.sleep(0)
    assert started == [0]
    release[0].set()
    assert await first == 1
    await asyncio.sleep(0)
    assert started == [0, 1]
    later[0].cancel()  # one caller leaving does not cancel the read the others wait for
    release[1].set()
    assert await asyncio.gather(*later[1:]) == [2, 2]


async def test_shared_reads_hand_an_error_to_every_caller_of_that_read() -> None:
    async def read(key: str) -> int:
        await asyncio.sleep(0)
        raise RuntimeError("database away")

    reads: SharedReads[str, int] = SharedReads(read)
    results = await asyncio.gather(reads.get("c"), reads.get("c"), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)


async def test_concurrent_reads_of_one_image_share_a_read_that_never_predates_a_delete(replicas: tuple[TestClient, TestClient]) -> None:
    """Requests for one image arriving together share one database read; a request that arrives
    after a delete was acknowledged (on the other replica) while a read was in flight is not
    answered from that read, which began before the delete."""
    a, b = replicas
    doc = await uploaded(a, "shared")
    service = a.server.app[SERVICE]
    _, meta = install(service)
    real_get = meta.inner.get
    gate = asyncio.Event()

    async def slow_get(collection: str, image_id: str) -> Any:
        found = await real_get(collection, image_id)
        await gate.wait()  # the read is done, its answer not yet handed out
        return found

    meta.inner.get = slow_get
    try:
        path = f"/collections/shared/images/{doc['id']}"
        early = [asyncio.create_task(a.get(path)) for _ in range(2)]
        while meta.calls.count("get") < 1:
            await asyncio.sleep(0.01)
        # These arrive while the first read is in flight: they share the next one.
        together = [asyncio.create_task(a.get(path)) for _ in range(8)]
        await asyncio.sleep(0.05)
        assert (await b.delete(path)).status == 200
        late = asyncio.create_task(redirect(a, "shared", doc["id"]))
        await asyncio.sleep(0.05)
        gate.set()
        statuses = [r.status for r in await asyncio.gather(*early, *together)]
        assert statuses.count(200) >= 1  # the first read began before the delete
        assert (await late).status == 404  # arrived after it: never the older read's answer
        assert meta.calls.count("get") <= 4  # 11 requests, at most one read in flight at a time
    finally:
        del meta.inner.get


async def test_pages_counts_and_documents_one_replica_keeps_follow_every_write_on_the_other(replicas: tuple[TestClient, TestClient]) -> None:
    """On FerretDB each replica keeps record reads (metadata.mongo_reads); on SQLite nothing is
    kept. Either way a listing, a total and a document are never older than an acknowledged write."""
    a, b = replicas

    async def listed() -> tuple[list[str], str]:
        response = await a.get("/collections/pages/images?limit=10")
        assert response.status == 200
        return [doc["id"] for doc in await response.json()], response.headers.get("X-Total-Count", "")

    first = await uploaded(b, "pages", seed=1)
    for _ in range(2):  # the second is answered from what the first read
        assert await listed() == ([first["id"]], "1")
    second = await uploaded(b, "pages", seed=2)
    assert await listed() == ([second["id"], first["id"]], "2")
    patched = await b.patch(f"/collections/pages/images/{first['id']}", json={"label": "cat"})
    assert patched.status == 200
    document = await (await a.get(f"/collections/pages/images/{first['id']}")).json()
    assert document["properties"] == {"label": "cat"}
    filtered = await a.get('/collections/pages/images?filter={"label": "cat"}')
    assert [doc["id"] for doc in await filtered.json()] == [first["id"]]
    assert (await b.delete(f"/collections/pages/images/{second['id']}")).status == 200
    assert await listed() == ([first["id"]], "1")
    assert (await a.get(f"/collections/pages/images/{second['id']}")).status == 404
    assert (await b.delete("/collections/pages")).status == 200
    assert (await (await a.get("/collections/pages/images?limit=10")).json()) == []
