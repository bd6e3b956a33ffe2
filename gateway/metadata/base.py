"""The metadata contract: image records and collections, whatever database holds them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Protocol, runtime_checkable

from gateway.metadata.query import Condition, ListQuery


def utcnow() -> datetime:
    """Now, at the millisecond precision MongoDB keeps, so every backend stores the same value."""
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@dataclass(frozen=True)
class ImageRecord:
    collection: str
    id: str
    image: str
    time: datetime
    updated_at: datetime
    content_type: str
    format: str
    width: int
    height: int
    size: int
    sha256: str
    path: str
    properties: dict[str, Any] = field(default_factory=dict)
    owner: str | None = None
    # Incremented by every properties update; read-modify-write updates (PATCH) are conditional
    # on it, so concurrent patches never lose each other's keys.
    version: int = 1
    # The EXIF orientation (1-8) the file carries, None without one; width and height are the
    # stored pixel size whatever it says.
    orientation: int | None = None

    def with_properties(self, properties: dict[str, Any], now: datetime) -> ImageRecord:
        return replace(self, properties=properties, updated_at=now, version=self.version + 1)


@dataclass(frozen=True)
class CollectionStats:
    name: str
    documents: int
    bytes: int
    created_at: datetime
    updated_at: datetime


@runtime_checkable
class MetadataStore(Protocol):
    """Image records, keyed by (collection, id), and the registry of collections.

    Implementations translate their driver's errors: a missing record is `NotFound`, a duplicate
    key `Conflict`, any other failure `Unavailable`. Conditions come from `validation`, so field
    names are safe; filter semantics follow MongoDB's (an array property matches when any element
    does; `$ne`/`$nin` also match records without the property; `$eq: null` matches a missing one).
    """

    name: str

    async def insert(self, record: ImageRecord) -> None:
        """Add a record; `Conflict` if (collection, id) exists."""

    async def get(self, collection: str, image_id: str) -> ImageRecord:
        """One record; `NotFound` if absent."""

    async def find(self, collection: str, query: ListQuery) -> list[ImageRecord]:
        """Up to `query.limit` records matching, ordered by (time, id) as `query.descending`
        says, after `query.after` (a keyset cursor) or `query.skip` records."""

    async def count(self, collection: str, conditions: tuple[Condition, ...]) -> int:
        """How many records match."""

    async def replace_properties(self, record: ImageRecord, expected_version: int) -> ImageRecord | None:
        """Store `record`'s properties, updated_at and version if the stored version is still
        `expected_version`; None when it is not (a concurrent update won); `NotFound` if gone."""

    async def delete(self, collection: str, image_id: str) -> ImageRecord:
        """Remove a record and return it; `NotFound` if absent."""

    async def delete_records(self, collection: str) -> int:
        """Remove every record of a collection; how many there were."""

    def records(self, collection: str | None = None) -> AsyncIterator[ImageRecord]:
        """Every record (of one collection, or all), ordered by path, streamed."""

    async def ensure_collection(self, name: str) -> str:
        """Register a collection if new and return its generation, a token that changes when a
        collection is dropped and created again; `Conflict` while it is being dropped."""

    async def collection_generation(self, name: str) -> str | None:
        """The live generation of an active collection, else None."""

    async def begin_drop(self, name: str) -> bool:
        """Mark a collection as being dropped (uploads into it are refused from now on);
        False if no such collection is registered."""

    async def finish_drop(self, name: str) -> None:
        """Forget a dropped collection."""

    async def collections(self, *, include_dropping: bool = False) -> list[str]:
        """Names of registered collections, sorted."""

    async def collection_stats(self, name: str) -> CollectionStats:
        """Counts for one active collection; `NotFound` if none."""

    async def ping(self) -> None:
        """Raise `Unavailable` unless the database answers."""
