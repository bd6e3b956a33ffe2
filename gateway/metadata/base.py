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

    def with_properties(self, properties: dict[str, Any], now: datetime) -> ImageRecord:
        return replace(self, properties=properties, updated_at=now, version=self.version + 1)


@dataclass(frozen=True)
class CollectionStats:
    name: str
    documents: int
    bytes: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class PendingUpload:
    """An upload whose bytes are still arriving (tus) or are sent straight to the object store
    (direct): recorded before the client is told where to send them, so a replica can continue
    it and the sweep can find it when it expires. `image_id` is set once it became an image."""

    id: str
    kind: str  # "tus" or "direct"
    collection: str
    owner: str | None
    length: int
    # What the client declared: filename, content_type, properties (and tus's raw metadata).
    info: dict[str, Any]
    # `StagedWrite.as_dict()`: the bytes stored so far and the object store's own state.
    staged: dict[str, Any]
    created_at: datetime
    expires_at: datetime
    # A lease: the request that holds it is the only one writing (any replica may hold it).
    lock: str | None = None
    lock_expires: datetime | None = None
    image_id: str | None = None
    version: int = 1


@dataclass(frozen=True)
class IdempotencyEntry:
    """What an upload with an Idempotency-Key answered, or that it is still running. `scope`
    names the caller, the collection and the key; `fingerprint` the request."""

    scope: str
    fingerprint: str
    # The id of what the first request creates (an image, a tus upload), chosen before it
    # stores anything, so a retry can find what was stored when the answer was lost.
    resource_id: str
    state: str  # "in_flight", "done" or "refused"
    lease_expires: datetime
    expires_at: datetime
    # done: the record as first answered; refused: status, code and message of the 4xx.
    answer: dict[str, Any] | None = None
    version: int = 1


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

    # --- uploads in progress and idempotency keys -------------------------------------------

    async def insert_upload(self, upload: PendingUpload) -> None:
        """Record a new pending upload; `Conflict` if its id exists."""

    async def get_upload(self, upload_id: str) -> PendingUpload:
        """One pending upload; `NotFound` (code `upload_not_found`) if absent."""

    async def replace_upload(self, upload: PendingUpload, expected_version: int) -> bool:
        """Store `upload` if the stored one still has `expected_version`; False when it does not
        (another request changed it) or is gone."""

    async def delete_upload(self, upload_id: str) -> None:
        """Forget a pending upload; a missing one is not an error."""

    async def pending_uploads(self, *, expired_before: datetime | None = None, limit: int = 1000) -> list[PendingUpload]:
        """Up to `limit` pending uploads (only those expiring before `expired_before`, when
        given), oldest expiry first."""

    async def claim_idempotency(self, entry: IdempotencyEntry) -> IdempotencyEntry | None:
        """Store `entry` if no live entry has its scope and return None; else return the live
        one. An entry past its `expires_at` is replaced as if absent."""

    async def replace_idempotency(self, entry: IdempotencyEntry, expected_version: int) -> bool:
        """Store `entry` if the stored one still has `expected_version`; False otherwise."""

    async def purge_idempotency(self, before: datetime) -> int:
        """Remove entries that expired before `before`; how many."""
