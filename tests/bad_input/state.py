"""What a rejected request must leave untouched: the collections, every record's id, properties
and update time, and every object key under the store."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient

from gateway.keys import SERVICE
from tests.faults import object_keys

SEEDED_COLLECTION = "seeded"
SEEDED_PROPERTIES = {"label": "cat", "score": 3, "nested": {"deep": ["x", 1, None]}}


async def stored_state(client: TestClient) -> dict[str, Any]:
    service = client.server.app[SERVICE]
    meta = getattr(service.meta, "inner", service.meta)
    records = sorted(
        [(r.collection, r.id, r.image, r.properties, r.updated_at.isoformat(), r.version, r.owner) async for r in meta.records()],
        key=lambda row: (row[0], row[1]),
    )
    return {
        "collections": sorted(await meta.collections(include_dropping=True)),
        "records": records,
        "objects": sorted(await object_keys(service.blobs)),
    }


async def unchanged(client: TestClient, before: dict[str, Any], request: Callable[[], Awaitable[Any]]) -> Any:
    """Run `request` and check nothing stored changed; returns its result."""
    result = await request()
    assert await stored_state(client) == before, "a rejected request changed what is stored"
    return result
