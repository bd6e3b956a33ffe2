"""A collection drop past one `DeleteObjects` batch (1000 keys), on S3 stores: every object of
the collection goes, in batches of at most 1000, and a collection whose name extends it stays."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.metadata import open_metadata_store
from gateway.service import ImageService
from gateway.storage import open_blob_store
from tests.helpers import make_config, png, storage_overrides
from tests.faults import object_keys

OBJECTS = 1105


@pytest.mark.parametrize("backend", [pytest.param("moto", marks=pytest.mark.moto), pytest.param("minio", marks=pytest.mark.peers)])
async def test_drop_deletes_in_batches_and_spares_longer_names(request: pytest.FixtureRequest, tmp_path: Path, backend: str) -> None:
    config = make_config(tmp_path, storage_overrides(request, backend))
    async with open_blob_store(config) as blobs, open_metadata_store(config) as meta:
        service = ImageService(blobs, meta, config)
        kept = [await service.upload_bytes(name, png(), "a.png", {}) for name in ("images2", "images-old", "images.bak")]
        await service.upload_bytes("images", png(), "a.png", {})
        image = png()
        limit = asyncio.Semaphore(32)

        async def put(index: int) -> None:
            async def body() -> AsyncIterator[bytes]:
                yield image

            async with limit:
                await blobs.put(f"images/{index:024x}.png", body(), content_type="image/png", filename="a.png")

        await asyncio.gather(*(put(i) for i in range(OBJECTS)))
        batches: list[int] = []
        real = blobs.delete_many

        async def counted(keys: list[str]) -> None:
            batches.append(len(keys))
            await real(keys)

        blobs.delete_many = counted  # type: ignore[method-assign]
        deleted = await service.drop_collection("images")
        assert deleted == {"documents": 1, "objects": OBJECTS + 1}
        assert max(batches) == 1000 and sum(batches) == OBJECTS + 1
        assert await object_keys(blobs) == sorted(record.path for record in kept)
        assert await meta.collections() == ["images-old", "images.bak", "images2"]
