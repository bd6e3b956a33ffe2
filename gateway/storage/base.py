"""The object store contract, and the key layout every backend shares."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, Self, runtime_checkable
from urllib.parse import quote

from gateway.config import Config


# The most keys one `delete_many` takes: S3's DeleteObjects limit, which every backend keeps.
DELETE_MANY_LIMIT = 1000


def object_key(collection: str, image_id: str, extension: str) -> str:
    """`<collection>/<id>.<ext>`: one key prefix per collection."""
    return f"{collection}/{image_id}.{extension}"


# Under the collection's prefix, so a collection's drop removes its renditions too; image ids are
# hex, so no original's key ever starts with "_".
RENDITIONS_DIR = "_renditions"


def rendition_prefix(collection: str, image_id: str) -> str:
    """`<collection>/_renditions/<id>/`: every rendition of one image."""
    return f"{collection}/{RENDITIONS_DIR}/{image_id}/"


def rendition_key(collection: str, image_id: str, spec: str, extension: str) -> str:
    return f"{rendition_prefix(collection, image_id)}{spec}.{extension}"


def rendition_owner(key: str) -> tuple[str, str] | None:
    """The (collection, image id) a rendition key belongs to; None for any other key."""
    parts = key.split("/")
    if len(parts) == 4 and parts[1] == RENDITIONS_DIR:
        return parts[0], parts[2]
    return None


def collection_prefix(collection: str) -> str:
    # Always with its slash: a prefix of "images" must never match "images2/...".
    return f"{collection}/"


@dataclass(frozen=True)
class BlobInfo:
    key: str
    size: int
    last_modified: datetime


@runtime_checkable
class BlobStore(Protocol):
    """Where image bytes live. Keys are produced by `object_key` and already validated.

    Implementations translate their SDK's errors: a missing key is `BlobNotFound`, any other
    failure of the store is `Unavailable`.
    """

    name: str

    @classmethod
    def open(cls, config: Config) -> AbstractAsyncContextManager[Self]:
        """The store `config` names, for as long as the context lasts: clients opened and the
        bucket or directory ensured on entry (`Unavailable` if the store cannot be reached),
        every client closed on exit."""

    async def put(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        content_type: str,
        filename: str,
        sha256: Callable[[], bytes] | None = None,
    ) -> None:
        """Store the bytes `chunks` yields under `key`, visible only once the whole body is in:
        a reader sees the full object or none. Never replaces an object: if `key` exists, raises
        `Conflict` (code `object_exists`) and leaves it as it was. If `chunks` raises, nothing is
        left behind and the exception propagates. `filename` goes into Content-Disposition.
        `sha256`, when given, returns the SHA-256 digest of everything `chunks` yielded (called
        once they are exhausted): a store that sends a checksum with the body may use it instead
        of hashing the bytes again."""

    def get(self, key: str) -> AsyncIterator[bytes]:
        """The object's bytes, in chunks. Raises `BlobNotFound`."""

    async def delete(self, key: str) -> None:
        """Remove `key`; removing a missing key is not an error."""

    async def delete_many(self, keys: list[str]) -> None:
        """Remove up to `DELETE_MANY_LIMIT` keys at once; missing keys are not an error."""

    def list(self, prefix: str) -> AsyncIterator[BlobInfo]:
        """Every object whose key starts with `prefix`, in key order, streamed page by page."""

    async def presign(self, key: str, *, ttl: int, content_type: str, filename: str) -> str:
        """A URL that lets its bearer GET the object for `ttl` seconds, served with
        `content_type` and a Content-Disposition naming `filename`. May be relative to the
        gateway (the filesystem backend's links are gateway routes)."""

    async def partial_writes(self, older_than: datetime, prefix: str = "", *, remove: bool = False, keep: frozenset[str] = frozenset()) -> int:
        """How many writes a crash left unfinished (temporary files, incomplete multipart
        uploads) under `prefix` that began before `older_than`: bytes nobody can reach. With
        `remove`, they are discarded too. Writes to a key in `keep` (a resumable upload's) are
        not counted. `reconcile` calls this."""

    async def ping(self) -> None:
        """Raise `Unavailable` unless the store answers."""


@runtime_checkable
class LocalFiles(Protocol):
    """A store whose objects are files on this host (the filesystem backend), served by the
    gateway's own signed-download route: what a presigned URL is to S3, a signed link is here."""

    def verify(self, method: str, path: str, query: dict[str, str]) -> None:
        """Raise `Forbidden` unless `query` carries a good, unexpired signature of method and path."""

    def local_path(self, key: str) -> Path:
        """The file that holds `key`; `Invalid` for a malformed key or one outside the store."""


def content_disposition(filename: str, disposition: str = "inline") -> str:
    """RFC 6266 with an RFC 5987 `filename*` for names beyond ASCII."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in filename) or "image"
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


# Staged writes (resumable uploads) keep their pieces here. No collection name starts with "_",
# so these keys never collide with an image's, and `reconcile` tells them apart by the prefix.
STAGING_PREFIX = "_uploads/"


@dataclass
class StagedWrite:
    """A resumable write in progress: how many bytes are stored, where the object will go, and the
    backend's own state (`store`, JSON-serialisable). The metadata store keeps it between
    requests, so any replica can continue a write another one began.

    `key`, `content_type` and `filename` are set by the service once the first bytes name the
    format; a backend reads them only when it must commit to the final key."""

    id: str
    size: int = 0
    key: str | None = None
    content_type: str = "application/octet-stream"
    filename: str = ""
    store: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "size": self.size, "key": self.key, "content_type": self.content_type, "filename": self.filename, "store": self.store}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StagedWrite:
        return cls(data["id"], data.get("size", 0), data.get("key"), data.get("content_type", "application/octet-stream"), data.get("filename", ""), dict(data.get("store") or {}))


# Called by a backend whenever more of a staged write is durable, with its new state.
Progress = Callable[[StagedWrite], Awaitable[None]]


@dataclass(frozen=True)
class UploadForm:
    """A form a client POSTs its file to, straight to the store: `url`, the `fields` to send
    before the file (field `file`), until `expires_at`."""

    url: str
    fields: dict[str, str]
    expires_at: datetime


@runtime_checkable
class StagingStore(Protocol):
    """The resumable and direct uploads an object store offers besides `BlobStore`; every backend
    implements both."""

    async def append_staged(self, staged: StagedWrite, chunks: AsyncIterator[bytes], progress: Progress) -> None:
        """Append what `chunks` yields to `staged` (which holds `staged.size` bytes; anything a
        failed request left beyond that is overwritten). `staged` is updated in place and passed
        to `progress` whenever more of it is durable; if `chunks` raises, what arrived is kept
        (and reported to `progress`) as far as the backend can, and the exception propagates."""

    async def finish_staged(self, staged: StagedWrite) -> None:
        """Publish the staged bytes as the object `staged.key` (`Conflict` if it exists) and
        discard the staging pieces."""

    async def discard_staged(self, staged: StagedWrite) -> None:
        """Throw away a staged write's pieces; discarding twice is not an error."""

    def staged_pieces(self) -> AsyncIterator[tuple[str, str, datetime]]:
        """(upload id, piece, last modified) of every staging piece stored, for `reconcile` to
        find pieces whose upload is gone."""

    async def delete_piece(self, piece: str) -> None:
        """Remove one piece `staged_pieces` named."""

    async def upload_form(self, key: str, *, max_bytes: int, ttl: int, content_type: str) -> UploadForm:
        """A form that lets its bearer store one object at `key` (at most `max_bytes`, with a
        Content-Type starting `image/`) for `ttl` seconds, without the gateway in the way."""

    async def head(self, key: str) -> BlobInfo:
        """The object's size and time; `BlobNotFound` if absent."""

    def get_range(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes `start` to `end` (exclusive) of the object, in chunks; `BlobNotFound` if absent."""
