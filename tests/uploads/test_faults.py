"""Failure points of resumable uploads, on embedded and on MinIO+FerretDB: the database failing
between parts, the completion failing after the record was written, the sweep racing a
completion, and what `reconcile` makes of pending uploads."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import timedelta
from typing import Any

from aiohttp.test_utils import TestClient

from gateway.errors import Unavailable
from gateway.metadata.base import utcnow
from gateway.service.reconcile import reconcile
from gateway.uploads import leases
from gateway.uploads.sweep import sweep
from tests.api.test_tus import TUS, create, large_image, offset_of, patch
from tests.faults import assert_invariants, install, object_keys, service_of

MiB = 1024 * 1024


def upload_id(location: str) -> str:
    return location.rsplit("/", 1)[1]


async def resume(client: TestClient, location: str, image: bytes, chunk: int = 4 * MiB) -> dict[str, Any]:
    """What a tus client does after a failure: ask for the offset, send the rest."""
    offset = await offset_of(client, location)
    while True:
        response = await patch(client, location, offset, image[offset : offset + chunk])
        if response.status == 200:
            return await response.json()
        assert response.status == 204, await response.text()
        offset = int(response.headers["Upload-Offset"])


async def test_the_database_failing_between_parts_loses_nothing_acknowledged(client: TestClient) -> None:
    image = large_image()
    location = await create(client, len(image))
    meta = service_of(client).meta
    calls = 0
    original = meta.replace_upload

    async def failing_on_the_second_save(upload: Any, expected: int) -> bool:
        # The lease is the first save; the next records the first bytes stored (on S3 the
        # first part, with more of the body still to come).
        nonlocal calls
        calls += 1
        if calls == 2:
            raise Unavailable("injected", code="injected")
        return await original(upload, expected)

    meta.replace_upload = failing_on_the_second_save  # type: ignore[method-assign]
    response = await patch(client, location, 0, image[: 10 * MiB])
    assert response.status == 503
    meta.replace_upload = original  # type: ignore[method-assign]
    assert await offset_of(client, location) <= 10 * MiB
    doc = await resume(client, location, image)
    assert doc["sha256"] == hashlib.sha256(image).hexdigest()
    paths, keys = await assert_invariants(service_of(client))
    assert paths == keys == [doc["path"]]


async def test_a_body_broken_off_keeps_what_arrived(client: TestClient) -> None:
    image = large_image()
    location = await create(client, len(image))
    service = service_of(client)
    from gateway.uploads.tus import ResumableUploads

    async def breaking() -> Any:
        yield image[: 6 * MiB]
        raise ConnectionResetError("the client went away")

    uploads = ResumableUploads(service)
    try:
        await uploads.append("resumable", upload_id(location), 0, breaking(), owner=None)
    except ConnectionResetError:
        pass
    assert await offset_of(client, location) == 6 * MiB
    doc = await resume(client, location, image)
    assert doc["sha256"] == hashlib.sha256(image).hexdigest()


async def test_completion_failing_after_the_record_write_is_finished_by_the_retry(client: TestClient) -> None:
    image = large_image()
    location = await create(client, len(image))
    assert (await patch(client, location, 0, image[: 9 * MiB])).status == 204
    service = service_of(client)
    blobs, meta = install(service)
    meta.fail_after["insert"] = 1
    response = await patch(client, location, 9 * MiB, image[9 * MiB :])
    assert response.status == 503
    assert await assert_invariants(service) == ([], await object_keys(blobs))  # no record without its object
    # The client's retry of the last PATCH (at the full offset, empty) completes it.
    assert await offset_of(client, location) == len(image)
    retry = await patch(client, location, len(image), b"")
    assert retry.status == 200, await retry.text()
    doc = await retry.json()
    assert doc["sha256"] == hashlib.sha256(image).hexdigest()
    paths, keys = await assert_invariants(service)
    assert paths == keys == [doc["path"]]


async def test_the_sweep_never_takes_an_upload_a_request_holds(client: TestClient) -> None:
    image = large_image()
    location = await create(client, len(image))
    assert (await patch(client, location, 0, image[: 9 * MiB])).status == 204
    service = service_of(client)
    held, _token = await leases.acquire(service.meta, upload_id(location))
    locked = await patch(client, location, 9 * MiB, image[9 * MiB :])
    assert locked.status == 409 and (await locked.json())["error"]["code"] == "upload_locked"
    expired = await leases.save(service.meta, held, expires_at=utcnow() - timedelta(seconds=1))
    assert (await sweep(service)).uploads == 0  # a request (a completion, say) holds the lease
    await leases.release(service.meta, expired)
    assert (await sweep(service)).uploads == 1
    assert (await client.head(location, headers=TUS)).status == 404
    assert await object_keys(service.blobs) == []
    await reconcile(service, grace=timedelta(0), fix=True)
    assert (await reconcile(service, grace=timedelta(0))).remaining == 0


async def test_reconcile_leaves_pending_uploads_alone_and_fix_sweeps_the_expired(client: TestClient) -> None:
    image = large_image()
    location = await create(client, len(image))
    assert (await patch(client, location, 0, image[: 9 * MiB])).status == 204
    service = service_of(client)
    summary = await reconcile(service, grace=timedelta(0))
    assert (summary.pending_uploads, summary.orphan_objects, summary.partial_writes, summary.remaining) == (1, 0, 0, 0)
    fixed = await reconcile(service, grace=timedelta(0), fix=True)
    assert fixed.swept_uploads == 0 and await offset_of(client, location) >= 8 * MiB  # not expired: kept
    upload = await service.meta.get_upload(upload_id(location))
    await service.meta.replace_upload(replace(upload, expires_at=utcnow() - timedelta(seconds=1), version=upload.version + 1), upload.version)
    fixed = await reconcile(service, grace=timedelta(0), fix=True)
    assert (fixed.swept_uploads, fixed.pending_uploads) == (1, 0)
    assert await object_keys(service.blobs) == []
    # Pieces whose upload record is gone (a sweep that stopped half way) are orphans.
    other = await create(client, len(image))
    assert (await patch(client, other, 0, image[: 9 * MiB])).status == 204
    await service.meta.delete_upload(upload_id(other))
    report = await reconcile(service, grace=timedelta(0), fix=True)
    assert report.orphan_pieces >= 1 and report.remaining == 0
