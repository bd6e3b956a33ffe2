"""Integrity on the wire: a body corrupted after the SDK computed its SHA-256 is refused by the
object store, for single puts and for multipart parts.

The corruption happens at `before-sign`, after the flexible checksum is computed and before
SigV4 hashes the payload, so only the `x-amz-checksum-sha256` header can catch it. The default
checksum is switched off through the environment, as a deployment may do, so the test guards the
store's explicit `ChecksumAlgorithm`. MinIO only: moto (5.x) stores the checksum header as sent
without verifying it, so it cannot refuse a corrupted body.
"""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import Unavailable
from gateway.storage import open_blob_store
from gateway.storage.s3 import S3BlobStore
from tests.helpers import make_config, storage_overrides

pytestmark = pytest.mark.peers


def corrupt(request: Any, **_: Any) -> None:
    body = request.body
    data = bytearray(body.read() if hasattr(body, "read") else body)
    if hasattr(body, "seek"):
        body.seek(0)
    data[len(data) // 2] ^= 0x01
    request.data = io.BytesIO(bytes(data)) if hasattr(body, "read") else bytes(data)


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 1024 * 1024):
        yield data[start : start + 1024 * 1024]


@pytest.fixture
async def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[S3BlobStore]:
    monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
    config = make_config(tmp_path, storage_overrides(request, "minio"), {"storage": {"s3": {"part_size": 5 * 1024 * 1024}}})
    async with open_blob_store(config) as opened:
        assert isinstance(opened, S3BlobStore)
        yield opened


@pytest.mark.parametrize(("size", "operation"), [(64 * 1024, "PutObject"), (6 * 1024 * 1024, "UploadPart")])
async def test_corrupted_transfer_is_refused(store: S3BlobStore, size: int, operation: str) -> None:
    key = f"wire/0123456789abcdef0123456{size % 10}.png"
    events = store._client.meta.events
    events.register(f"before-sign.s3.{operation}", corrupt, unique_id="corrupt")
    try:
        with pytest.raises(Unavailable):
            await store.put(key, chunks(os.urandom(size)), content_type="image/png", filename="a.png")
    finally:
        events.unregister(f"before-sign.s3.{operation}", unique_id="corrupt")
    assert [blob.key async for blob in store.list("wire/")] == []
    # Uncorrupted, the same body goes through.
    data = os.urandom(size)
    await store.put(key, chunks(data), content_type="image/png", filename="a.png")
    assert b"".join([chunk async for chunk in store.get(key)]) == data


async def test_the_callers_digest_is_the_checksum_sent(store: S3BlobStore) -> None:
    """With `sha256` given, the store sends that digest rather than hashing again: a body
    corrupted after it arrived is refused, and so is a digest that does not match the bytes."""
    import hashlib

    data = os.urandom(64 * 1024)
    events = store._client.meta.events
    events.register("before-sign.s3.PutObject", corrupt, unique_id="corrupt")
    try:
        with pytest.raises(Unavailable):
            await store.put("wire/0123456789abcdef0123456a.png", chunks(data), content_type="image/png", filename="a.png", sha256=lambda: hashlib.sha256(data).digest())
    finally:
        events.unregister("before-sign.s3.PutObject", unique_id="corrupt")
    with pytest.raises(Unavailable):
        await store.put("wire/0123456789abcdef0123456b.png", chunks(data), content_type="image/png", filename="a.png", sha256=lambda: hashlib.sha256(b"other").digest())
    assert [blob.key async for blob in store.list("wire/")] == []
    await store.put("wire/0123456789abcdef0123456c.png", chunks(data), content_type="image/png", filename="a.png", sha256=lambda: hashlib.sha256(data).digest())
    assert b"".join([chunk async for chunk in store.get("wire/0123456789abcdef0123456c.png")]) == data


async def test_endpoints_are_resolved_once_for_every_key(store: S3BlobStore) -> None:
    """The object key is no input of the endpoint ruleset: puts and links of new keys reuse
    botocore's resolved endpoint, and still reach the object they name."""
    provider = store._client._ruleset_resolver._provider
    assert {"Key", "Prefix", "CopySource"} <= provider._unused
    cached = provider._provider.resolve_endpoint
    await store.put("wire/0123456789abcdef01234560.png", chunks(b"first"), content_type="image/png", filename="a.png")
    misses = cached.cache_info().misses
    for index in range(1, 4):
        await store.put(f"wire/0123456789abcdef0123456{index}.png", chunks(b"next %d" % index), content_type="image/png", filename="a.png")
        await store.presign(f"wire/0123456789abcdef0123456{index}.png", ttl=60, content_type="image/png", filename="a.png")
    assert cached.cache_info().misses == misses
    assert b"".join([chunk async for chunk in store.get("wire/0123456789abcdef01234562.png")]) == b"next 2"


async def test_the_user_agent_is_built_once_and_is_botocores(store: S3BlobStore) -> None:
    creator = store._client._user_agent_creator
    assert getattr(creator.to_string, "cached", False)
    sent: list[str] = []
    store._client.meta.events.register("before-send.s3", lambda request, **_: sent.append(request.headers["User-Agent"]), unique_id="ua")
    try:
        for index in range(2):
            await store.put(f"wire/0123456789abcdef0123457{index}.png", chunks(b"ua"), content_type="image/png", filename="a.png")
    finally:
        store._client.meta.events.unregister("before-send.s3", unique_id="ua")
    uncached = type(creator).to_string(creator)  # the class's own method, as botocore builds it
    agents = [value.decode() if isinstance(value, bytes) else value for value in sent]
    assert len(agents) == 2 and agents[0] == agents[1]
    assert agents[0].split(" m/")[0] == uncached.split(" m/")[0]  # the same but for the request's feature ids
