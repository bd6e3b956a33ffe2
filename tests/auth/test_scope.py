"""The owner scope as the service applies it (`auth.scope: user`), without HTTP, on embedded and
on MinIO+FerretDB: another user's image is refused (403 `not_owner`) and left as it was, a
missing one is still 404, whole-collection operations are refused to one user."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.config import Config
from gateway.datasets.export import DirExport
from gateway.datasets.service import Datasets
from gateway.errors import Forbidden, NotFound
from gateway.metadata import open_metadata_store
from gateway.metadata.query import ListQuery
from gateway.service import EVERYONE, ImageService, Scope
from gateway.storage import open_blob_store
from tests.helpers import png

ALICE, BOB = Scope("alice"), Scope("bob")
MISSING = "0123456789abcdef01234567"


@pytest.fixture
async def service(app_config: Config) -> AsyncIterator[ImageService]:
    async with open_blob_store(app_config) as blobs, open_metadata_store(app_config) as meta:
        yield ImageService(blobs, meta, app_config)


async def test_reads_and_writes_of_another_users_image_are_forbidden_and_change_nothing(service: ImageService) -> None:
    mine = await service.upload_bytes("scoped", png(seed=1), "a.png", {"k": 1}, owner="alice")
    calls = {
        "get": lambda: service.get("scoped", mine.id, scope=BOB),
        "replace": lambda: service.replace_properties("scoped", mine.id, {"k": 2}, scope=BOB),
        "patch": lambda: service.patch_properties("scoped", mine.id, {"k": 3}, scope=BOB),
        "download": lambda: service.download_url("scoped", mine.id, scope=BOB),
        "delete": lambda: service.delete("scoped", mine.id, scope=BOB),
    }
    for name, call in calls.items():
        with pytest.raises(Forbidden) as refused:
            await call()
        assert refused.value.code == "not_owner", name
    assert (await service.get("scoped", mine.id, scope=ALICE)).properties == {"k": 1}
    assert await service.download_url("scoped", mine.id, scope=ALICE)
    assert (await service.patch_properties("scoped", mine.id, {"k": 4}, scope=ALICE)).properties == {"k": 4}
    await service.delete("scoped", mine.id, scope=ALICE)
    with pytest.raises(NotFound):
        await service.get("scoped", mine.id, scope=EVERYONE)


async def test_a_missing_image_is_not_found_whatever_the_scope(service: ImageService) -> None:
    await service.upload_bytes("scoped", png(), "a.png", {}, owner="alice")
    for call in (service.get, service.delete, service.download_url):
        with pytest.raises(NotFound):
            await call("scoped", MISSING, scope=BOB)


async def test_listings_hold_each_user_to_their_own_images(service: ImageService) -> None:
    alice = await service.upload_bytes("scoped", png(seed=1), "a.png", {}, owner="alice")
    await service.upload_bytes("scoped", png(seed=2), "b.png", {"owner": "alice"}, owner="bob")
    page = await service.find("scoped", ListQuery(), with_total=True, scope=ALICE)
    assert ([r.id for r in page.records], page.total) == ([alice.id], 1)
    assert len((await service.find("scoped", ListQuery(), with_total=False)).records) == 2


async def test_whole_collection_operations_need_everyone(service: ImageService, tmp_path: Path) -> None:
    await service.upload_bytes("scoped", png(), "a.png", {}, owner="alice")
    datasets = Datasets(service)
    with pytest.raises(Forbidden) as refused:
        await service.drop_collection("scoped", scope=ALICE)
    assert refused.value.code == "not_owner"
    with pytest.raises(Forbidden):
        await datasets.check_export("scoped", scope=ALICE)
    assert await service.collections() == ["scoped"]
    await datasets.check_export("scoped")
    assert (await datasets.export("scoped", DirExport(tmp_path / "out")))["images"] == 1
    assert (await service.drop_collection("scoped"))["documents"] == 1
