"""Property discovery (the later API's `/fields`): which property keys a collection uses, and the
distinct values of one, with counts.

Both read the newest `SCAN_LIMIT` matching images the caller's scope reaches, through the
service's listing in keyset pages on the (collection, time, id) index, so every backend answers alike and a call costs O(images
scanned), never more than `SCAN_LIMIT`, however large the collection; the answer says how many
images were scanned and whether that was all of them. No index serves arbitrary property keys,
so a bounded scan is the honest cost model.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from gateway.metadata.query import Condition, Cursor, ListQuery, sort_position
from gateway.service.core import EVERYONE, ImageService, Scope

SCAN_LIMIT = 10_000
MAX_VALUES = 1000
_PAGE = 1000


class _Scan:
    def __init__(self) -> None:
        self.scanned = 0
        self.complete = True

    def summary(self) -> dict[str, Any]:
        return {"scanned": self.scanned, "complete": self.complete}


async def _properties(
    service: ImageService, collection: str, conditions: tuple[Condition, ...], scope: Scope, scan: _Scan
) -> AsyncIterator[dict[str, Any]]:
    """The properties of the newest SCAN_LIMIT matching images, newest first."""
    after = None
    while scan.scanned < SCAN_LIMIT:
        want = min(_PAGE, SCAN_LIMIT - scan.scanned)
        page = await service.find(collection, ListQuery(conditions, limit=want, after=after), with_total=False, scope=scope)
        for record in page.records:
            scan.scanned += 1
            yield record.properties
        if not page.has_more:
            return
        after = Cursor(page.records[-1].time, page.records[-1].id)
    scan.complete = False


def _dotted_keys(document: dict[str, Any], prefix: str, into: dict[str, int]) -> None:
    for key, value in document.items():
        name = prefix + key
        into[name] = into.get(name, 0) + 1
        if isinstance(value, dict):
            _dotted_keys(value, name + ".", into)


async def property_keys(service: ImageService, collection: str, conditions: tuple[Condition, ...], *, scope: Scope = EVERYONE) -> dict[str, Any]:
    """Every property key in use, nested ones dotted (`box.x`), with how many images have it;
    keys sorted."""
    scan = _Scan()
    counts: dict[str, int] = {}
    async for properties in _properties(service, collection, conditions, scope, scan):
        _dotted_keys(properties, "", counts)
    return {"fields": [{"key": key, "count": counts[key]} for key in sorted(counts)], **scan.summary()}


def _at(document: Any, path: tuple[str, ...]) -> tuple[bool, Any]:
    for key in path:
        if not isinstance(document, dict) or key not in document:
            return False, None
        document = document[key]
    return True, document


def _identity(value: Any) -> str:
    # One identity per JSON value: 1 and 1.0 are the same number (as MongoDB compares them),
    # true is not 1, and objects compare by content.
    if isinstance(value, bool):
        return "b" + str(value)
    if isinstance(value, (int, float)):
        return "n" + repr(float(value)) if float(value) == value and abs(value) < 2**53 else "n" + repr(value)
    return "j" + json.dumps(value, sort_keys=True)


async def distinct_values(
    service: ImageService, collection: str, path: tuple[str, ...], conditions: tuple[Condition, ...], limit: int, *, scope: Scope = EVERYONE
) -> dict[str, Any]:
    """The distinct values of the property at `path`, each with how many images hold it (an
    array holds each of its elements), most frequent first, then in sort order; null and missing
    are not values. At most `limit`, with `more` saying whether others exist."""
    scan = _Scan()
    counts: dict[str, list[Any]] = {}
    async for properties in _properties(service, collection, conditions, scope, scan):
        present, value = _at(properties, path)
        if not present or value is None:
            continue
        held = {_identity(v): v for v in (value if isinstance(value, list) else [value]) if v is not None}
        for identity, element in held.items():
            entry = counts.setdefault(identity, [element, 0])
            entry[1] += 1

    def rank(entry: list[Any]) -> tuple[Any, ...]:
        bracket, inner = sort_position(True, entry[0])
        return (-entry[1], bracket or 0, 0 if inner is None else inner, _identity(entry[0]))

    ordered = sorted(counts.values(), key=rank)
    return {
        "key": ".".join(path),
        "values": [{"value": value, "count": count} for value, count in ordered[:limit]],
        "more": len(ordered) > limit,
        **scan.summary(),
    }
