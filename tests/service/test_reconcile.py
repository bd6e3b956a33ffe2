"""`reconcile` over every backend pair: orphans both ways, the grace period, `--fix`, `--verify`,
interrupted drops, and the command line."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from gateway import cli
from gateway.config import Config
from gateway.metadata import open_metadata_store
from gateway.service.reconcile import OrderError, reconcile
from gateway.service import ImageService
from gateway.storage import open_blob_store
from gateway.storage.filesystem import FilesystemBlobStore
from gateway.storage.s3 import S3BlobStore
from tests.faults import assert_invariants, object_keys
from tests.helpers import png

NOW = timedelta(0)


@pytest.fixture
async def service(app_config: Config) -> AsyncIterator[ImageService]:
    async with open_blob_store(app_config) as blobs, open_metadata_store(app_config) as meta:
        yield ImageService(blobs, meta, app_config)


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_clean_store_has_no_problems(service: ImageService) -> None:
    for seed in range(3):
        await service.upload_bytes("clean", png(seed=seed), "a.png", {})
    await service.upload_bytes("clean2", png(), "a.png", {})
    summary = await reconcile(service, grace=NOW, verify=True)
    assert (summary.objects, summary.records, summary.matched, summary.verified, summary.remaining) == (4, 4, 4, 4, 0)


async def test_both_sides_sort_alike_around_the_slash(service: ImageService) -> None:
    """"a-b/" < "a./" < "a/" < "a0/" < "a_b/" as bytes: the object listing and the records must
    agree on it, or the merge would see orphans that are not."""
    for name in ("ord_x", "ord0", "ord", "ord.x", "ord-x"):
        await service.upload_bytes(name, png(), "a.png", {})
        await service.upload_bytes(name, png(seed=1), "b.png", {})
    summary = await reconcile(service, grace=NOW)
    assert (summary.matched, summary.orphan_objects, summary.missing_objects) == (10, 0, 0)


async def test_orphans_both_ways_found_then_fixed(service: ImageService) -> None:
    kept = await service.upload_bytes("mixed", png(seed=1), "a.png", {})
    broken = await service.upload_bytes("mixed", png(seed=2), "b.png", {})
    await service.blobs.delete(broken.path)  # a record without its object
    orphan = "mixed/0123456789abcdef01234567.png"
    await service.blobs.put(orphan, chunks(png()), content_type="image/png", filename="o.png")

    report = await reconcile(service, grace=NOW)
    assert (report.orphan_objects, report.missing_objects, report.remaining, report.fixed) == (1, 1, 2, 0)
    assert {(s["problem"], s["key"]) for s in report.samples} == {("orphan_object", orphan), ("missing_object", broken.path)}
    assert await object_keys(service.blobs) == sorted([kept.path, orphan])  # reporting changes nothing

    fixed = await reconcile(service, grace=NOW, fix=True)
    assert (fixed.fixed, fixed.remaining) == (2, 0)
    assert await assert_invariants(service) == ([kept.path], [kept.path])
    assert (await reconcile(service, grace=NOW)).remaining == 0


async def test_young_objects_are_left_alone(service: ImageService) -> None:
    """An object younger than the grace period may belong to an upload still in flight."""
    await service.blobs.put("young/0123456789abcdef01234567.png", chunks(png()), content_type="image/png", filename="o.png")
    summary = await reconcile(service, fix=True, grace=timedelta(minutes=15))
    assert (summary.young_objects, summary.orphan_objects, summary.remaining) == (1, 0, 0)
    assert len(await object_keys(service.blobs)) == 1


async def test_verify_finds_corrupt_object(service: ImageService) -> None:
    record = await service.upload_bytes("verify", png(seed=3), "a.png", {})
    # Bit rot, simulated: other bytes under the same key (puts never overwrite, hence the delete).
    await service.blobs.delete(record.path)
    await service.blobs.put(record.path, chunks(png(seed=4)), content_type="image/png", filename="a.png")
    assert (await reconcile(service, grace=NOW)).remaining == 0  # keys alone match
    summary = await reconcile(service, grace=NOW, verify=True, fix=True)
    assert (summary.corrupt_objects, summary.remaining) == (1, 1)  # nothing to repair it from


async def test_unfinished_drop_is_resumed(service: ImageService) -> None:
    await service.upload_bytes("dropme", png(), "a.png", {})
    kept = await service.upload_bytes("dropme2", png(), "a.png", {})
    await service.meta.begin_drop("dropme")  # a drop that crashed right after marking
    report = await reconcile(service, grace=NOW)
    assert (report.unfinished_drops, report.remaining) == (1, 1)
    fixed = await reconcile(service, grace=NOW, fix=True)
    assert fixed.remaining == 0
    assert await service.meta.collections(include_dropping=True) == ["dropme2"]
    assert await assert_invariants(service) == ([kept.path], [kept.path])


async def test_one_collection_only(service: ImageService) -> None:
    await service.blobs.put("one/0123456789abcdef01234567.png", chunks(png()), content_type="image/png", filename="o.png")
    await service.blobs.put("one2/0123456789abcdef01234567.png", chunks(png()), content_type="image/png", filename="o.png")
    summary = await reconcile(service, "one", grace=NOW, fix=True)
    assert summary.fixed == 1
    assert await object_keys(service.blobs) == ["one2/0123456789abcdef01234567.png"]


async def test_out_of_order_listing_is_refused(service: ImageService) -> None:
    """A merge over an unsorted side would report false orphans and `--fix` would delete them."""
    a = await service.upload_bytes("order", png(seed=1), "a.png", {})
    b = await service.upload_bytes("order", png(seed=2), "b.png", {})
    real = service.meta.records

    async def shuffled(collection: str | None = None) -> AsyncIterator[object]:
        records = [r async for r in real(collection)]
        for record in reversed(records):
            yield record

    service.meta.records = shuffled  # type: ignore[method-assign]
    with pytest.raises(OrderError):
        await reconcile(service, grace=NOW, fix=True)
    service.meta.records = real  # type: ignore[method-assign]
    assert await assert_invariants(service) == (sorted([a.path, b.path]), sorted([a.path, b.path]))


async def test_command_line_json_and_exit_status(service: ImageService, app_config: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    await service.upload_bytes("cli", png(), "a.png", {})
    await service.blobs.put("cli/0123456789abcdef01234567.png", chunks(png()), content_type="image/png", filename="o.png")
    monkeypatch.setattr(cli, "load_config", lambda path: app_config)
    assert await asyncio.to_thread(cli.main, ["reconcile", "--grace", "0", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert (report["orphan_objects"], report["remaining"]) == (1, 1)
    assert await asyncio.to_thread(cli.main, ["reconcile", "--grace", "0", "--fix"]) == 0
    assert "fixed 1, remaining 0" in capsys.readouterr().out
    assert await asyncio.to_thread(cli.main, ["reconcile", "--grace", "0", "--json"]) == 0


async def test_partial_writes_a_crash_left_are_swept(service: ImageService) -> None:
    """A put killed mid-body leaves bytes no listing shows: a temporary file on disk, an
    incomplete multipart upload on S3."""
    inner = getattr(service.blobs, "wrapped", service.blobs)
    if isinstance(inner, S3BlobStore):
        client = inner._client
        upload = await client.create_multipart_upload(Bucket=inner.bucket, Key="partial/0123456789abcdef01234567.png")
        await client.upload_part(Bucket=inner.bucket, Key="partial/0123456789abcdef01234567.png", UploadId=upload["UploadId"], PartNumber=1, Body=b"x" * 1000)

        async def left() -> int:
            return len((await client.list_multipart_uploads(Bucket=inner.bucket)).get("Uploads", []))
    else:
        assert isinstance(inner, FilesystemBlobStore)
        leftover = inner.root / ".tmp" / "upload-crashed"
        leftover.write_bytes(b"x" * 1000)
        os.utime(leftover, (0, 0))

        async def left() -> int:
            return len(list((inner.root / ".tmp").iterdir()))

    report = await reconcile(service, grace=NOW)
    assert (report.partial_writes, report.remaining) == (1, 1)
    assert await left() == 1
    fixed = await reconcile(service, grace=NOW, fix=True)
    assert (fixed.partial_writes, fixed.fixed, fixed.remaining) == (1, 1, 0)
    assert await left() == 0
    assert (await reconcile(service, grace=NOW)).remaining == 0
