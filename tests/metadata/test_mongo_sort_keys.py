"""MongoDB keeps each property's sort position beside the properties (metadata/mongo.py); records
written before that get them at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.metadata import open_metadata_store
from gateway.metadata.query import ListQuery, SortKey
from tests.helpers import make_config, mongo_overrides
from tests.metadata.test_contract import ids, insert_all, make_record

pytestmark = pytest.mark.peers


async def test_records_without_sort_keys_get_them_at_start_up(ferretdb: object, tmp_path: Path) -> None:
    config = make_config(tmp_path, mongo_overrides(ferretdb.url))  # type: ignore[attr-defined]
    low, high, text = make_record(properties={"k": 1}), make_record(properties={"k": 2}), make_record(properties={"k": "a"})
    async with open_metadata_store(config) as store:
        await insert_all(store, [low, high, text])
        # As an earlier release wrote them.
        await store._images.update_many({}, {"$unset": {"sort_keys": ""}})  # type: ignore[attr-defined]
    async with open_metadata_store(config) as store:
        assert await store._images.count_documents({"sort_keys": {"$exists": False}}) == 0  # type: ignore[attr-defined]
        found = await store.find("photos", ListQuery(limit=10, sort=(SortKey("k", True),)))
    assert ids(found) == [text.id, high.id, low.id]
