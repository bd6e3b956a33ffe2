"""Writes by filter (the later API's `PATCH /images?filter=...` and `DELETE /images?filter=...`),
as a series of the single writes the service already orders: each image is patched, or deleted
record first and object second, and each emits its own event.

A call touches at most `limit` images, taken in id order, and says whether more match. Both are
safe to retry: a merge patch applied twice gives the same properties, and a delete skips images
already gone. A patch continues with the `cursor` it answered (patched images may still match the
filter); deletes need none, since deleted images no longer match.

Both act within the caller's `Scope`: an owner's call matches, counts and writes only that owner's
images (the listing is scoped, and each single write checks the scope again).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from gateway.errors import NotFound
from gateway.metadata.base import ImageRecord
from gateway.metadata.query import ID_FIELD, Condition, ListQuery, SortCursor, SortKey
from gateway.properties import merge_patch, validate_properties
from gateway.service.core import EVERYONE, ImageService, Scope

MAX_BULK = 1000
# Single writes in flight at once: enough to hide a store's latency, few enough not to crowd it.
_CONCURRENCY = 16
_BY_ID = (SortKey(ID_FIELD),)


@dataclass(frozen=True)
class BulkResult:
    matched: int
    changed: int
    unchanged: int
    more: bool
    last_id: str | None


async def _matching(
    service: ImageService, collection: str, conditions: tuple[Condition, ...], scope: Scope, limit: int, after_id: str | None
) -> tuple[int, list[ImageRecord], bool]:
    """How many images match in all, and the first `limit` of them after `after_id` by id."""
    after = SortCursor((after_id,), after_id) if after_id is not None else None
    query = ListQuery(conditions, limit=limit, sort=_BY_ID, after_key=after)
    page = await service.find(collection, query, with_total=True, scope=scope)
    assert page.total is not None
    return page.total, page.records, page.has_more


async def _each(records: list[ImageRecord], write: Any) -> list[Any]:
    gate = asyncio.Semaphore(_CONCURRENCY)

    async def one(record: ImageRecord) -> Any:
        async with gate:
            try:
                return await write(record)
            except NotFound:
                return None  # gone meanwhile (a concurrent or an earlier, retried delete)

    # Every write started is let finish before the call answers, so a failure (answered once
    # all are done) leaves no write still running behind a client's retry.
    outcomes = await asyncio.gather(*(one(r) for r in records), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return outcomes


async def patch_matching(
    service: ImageService,
    collection: str,
    conditions: tuple[Condition, ...],
    patch: dict[str, Any],
    *,
    limit: int,
    after_id: str | None = None,
    scope: Scope = EVERYONE,
) -> BulkResult:
    """Merge `patch` (RFC 7386) into the first `limit` matching images after `after_id`."""
    validate_properties(patch, max_bytes=service.config.limits.max_properties_bytes)
    matched, records, more = await _matching(service, collection, conditions, scope, limit, after_id)

    async def write(record: ImageRecord) -> bool:
        if merge_patch(record.properties, patch) == record.properties:
            return False  # already so (a retried call): no write, no event
        await service.patch_properties(collection, record.id, patch, scope=scope)
        return True

    outcomes = await _each(records, write)
    changed = sum(1 for o in outcomes if o is True)
    return BulkResult(matched, changed, len(records) - changed, more, records[-1].id if records else None)


async def delete_matching(
    service: ImageService, collection: str, conditions: tuple[Condition, ...], *, limit: int, scope: Scope = EVERYONE
) -> BulkResult:
    """Delete the first `limit` matching images, each as a single delete is done."""
    matched, records, more = await _matching(service, collection, conditions, scope, limit, None)
    outcomes = await _each(records, lambda record: service.delete(collection, record.id, scope=scope))
    deleted = sum(1 for o in outcomes if o is not None)
    return BulkResult(matched, deleted, len(records) - deleted, more, None)
