"""The object store contract, and the key layout every backend shares."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol, Self, runtime_checkable
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

    async def partial_writes(self, older_than: datetime, prefix: str = "", *, remove: bool = False) -> int:
        """How many writes a crash left unfinished (temporary files, incomplete multipart
        uploads) under `prefix` that began before `older_than`: bytes nobody can reach. With
        `remove`, they are discarded too. `reconcile` calls this."""

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
