"""The metadata contract: image records, collections and the event log, whatever database
holds them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timezone
from typing import Any, Protocol, Self, runtime_checkable

from gateway.config import Config
from gateway.metadata.query import Condition, ListQuery


# Times are UTC at the millisecond precision MongoDB keeps, so every backend stores the same
# value; in JSON (the API, the event log, exports) they are ISO 8601 with a `Z`.


def to_millis(value: datetime) -> datetime:
    """`value` in UTC, cut to milliseconds as BSON dates are."""
    value = value.astimezone(timezone.utc)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def utcnow() -> datetime:
    """Now, at the precision every backend stores."""
    return to_millis(datetime.now(timezone.utc))


def iso_time(value: datetime) -> str:
    """`2024-05-01T12:30:15.123Z`."""
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso_time(raw: str) -> datetime:
    """An ISO 8601 time as an aware UTC datetime; one without an offset is taken as UTC.
    `ValueError` if `raw` is not ISO 8601, `OverflowError` if it lies beyond year 9999 in UTC."""
    parsed = datetime.fromisoformat(raw.replace("Z", "+00:00") if raw.endswith("Z") else raw)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


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

    def to_json(self) -> dict[str, Any]:
        """Every field, in declaration order, as JSON values (times by `iso_time`): what the
        event log keeps, and what exports and the API documents are made from."""
        data = {name: getattr(self, name) for name in RECORD_FIELDS}
        data["time"] = iso_time(self.time)
        data["updated_at"] = iso_time(self.updated_at)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImageRecord:
        """The record `to_json` made."""
        values = dict(data)
        values["time"] = parse_iso_time(values["time"])
        values["updated_at"] = parse_iso_time(values["updated_at"])
        return cls(**values)


RECORD_FIELDS = tuple(f.name for f in fields(ImageRecord))


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
    key `Conflict`, any other failure `Unavailable`. Conditions come from `api.params`, so field
    names are safe; filter semantics follow MongoDB's (an array property matches when any element
    does; `$ne`/`$nin` also match records without the property; `$eq: null` matches a missing one).
    """

    name: str

    @classmethod
    def open(cls, config: Config) -> AbstractAsyncContextManager[Self]:
        """The store `config` names, for as long as the context lasts: connected, schema or
        indexes ensured on entry (`Unavailable` if the database cannot be reached), every
        connection closed on exit."""

    @classmethod
    def open_with_event_log(cls, config: Config) -> AbstractAsyncContextManager[tuple[Self, EventLog]]:
        """`open`, together with the event log kept in the same database; where the two can
        share a client, they do, and it is closed once both are done."""

    async def insert(self, record: ImageRecord) -> None:
        """Add a record; `Conflict` if (collection, id) exists."""

    async def insert_many(self, records: list[ImageRecord]) -> None:
        """Add records in bulk (imports, benchmarks); `Conflict` if any (collection, id) exists,
        after adding every record whose id was free."""

    async def get(self, collection: str, image_id: str) -> ImageRecord:
        """One record; `NotFound` if absent."""

    async def find(self, collection: str, query: ListQuery) -> list[ImageRecord]:
        """Up to `query.limit` records matching `query.conditions` (and owned by `query.owner`
        unless None), ordered by (time, id) as `query.descending` says, after `query.after` (a
        keyset cursor) or `query.skip` records."""

    async def count(self, collection: str, conditions: tuple[Condition, ...], *, owner: str | None = None) -> int:
        """How many records match (and are owned by `owner` unless None)."""

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


@dataclass(frozen=True)
class Event:
    """One entry of the event log: what the service did to a record (`kind` is "upload",
    "update" or "delete") and the record as it was then, numbered by `seq`."""

    seq: int
    kind: str
    record: ImageRecord


class EventFeed(Protocol):
    """Events as the database pushes them (a change stream), until `aclose`."""

    def __aiter__(self) -> EventFeed: ...

    async def __anext__(self) -> Event: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class EventLog(Protocol):
    """The append-only log of image events in the metadata database, shared by every process
    and replica that uses it. Each event gets a number from one sequence that only grows; the
    numbers are unique, but where the database draws them before the insert (MongoDB), two
    writers may commit 6 before 5, so a reader that polls must allow for a short-lived hole.
    Events older than `events.retention_seconds` are trimmed now and then.

    Implementations translate their driver's errors into `Unavailable`.
    """

    async def append(self, kind: str, record: ImageRecord) -> int:
        """Add an event; its sequence number."""

    async def append_many(self, entries: list[tuple[str, ImageRecord]]) -> None:
        """Add events in one go, numbered in the order given (except any whose number another
        writer took meanwhile, which are appended one by one after the rest)."""

    async def latest(self) -> int:
        """The highest sequence number handed out so far (0 when none)."""

    async def read_after(self, seq: int, limit: int) -> list[Event]:
        """Up to `limit` events numbered above `seq`, in order of number."""

    async def listen_until(self, until: float) -> None:
        """Say that someone follows the log until `until` (seconds since the epoch): the lease
        only grows, so one replica never shortens another's."""

    async def listening_until(self) -> float:
        """Until when someone follows the log (0 when nobody ever did): writers skip their
        events while nobody does."""

    async def follow(self) -> EventFeed | None:
        """A push feed of the events appended from now on, or None when the database offers
        none (then readers poll `read_after`). Once a feed is returned, no later append is
        missing from it."""
