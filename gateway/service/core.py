"""ImageService: the one place that orders writes across the object store and the database.

The two stores share no transaction, so every operation is ordered to keep these true:
- an acknowledged upload has its object and its record, and the object hashes to `sha256`;
- a visible record has its object (objects are written before records, deleted after them);
- a failed request leaves nothing, or an object without a record, which `reconcile` removes.

It also owns the owner scope (`auth.scope: user`): reads and writes take the caller's `Scope`,
and refuse (`Forbidden`) another user's image, or a whole-collection operation, to a caller held
to their own images.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import unicodedata
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, cast

from gateway.caches import ExpiringCache, SharedReads
from gateway.config import Config
from gateway.errors import BlobNotFound, Conflict, Forbidden, GatewayError, NotFound, PreconditionFailed, TooLarge, Unsupported
from gateway.images import ACCEPTED, ImageInspector, sniff
from gateway.metadata.base import CollectionStats, ImageRecord, MetadataStore, utcnow
from gateway.storage.base import DELETE_MANY_LIMIT, BlobStore, StagingStore, collection_prefix, object_key, rendition_prefix
from gateway.metadata.query import SHA256_FIELD, Condition, ListQuery, owned_by
from gateway.names import new_image_id
from gateway.properties import merge_patch
from gateway.properties import validate_properties as valid_properties

log = logging.getLogger(__name__)

# Control characters (C0, DEL, C1), line and paragraph separators, quotes and path separators.
_UNSAFE_FILENAME = re.compile(r'[\x00-\x1f\x7f-\x9f\u2028\u2029"\\/]')
_UPDATE_ATTEMPTS = 10

# Told of every acknowledged change: ("upload" | "update" | "delete", the record). Listeners
# (metrics, the event log) must not fail the request, so their errors are only logged.
Listener = Callable[[str, ImageRecord], Awaitable[None]]


def sanitize_filename(raw: str | None, fallback: str) -> str:
    """The client's file name without directories, control characters or quotes; never empty,
    at most 255 characters, keeping its extension when it has to be shortened."""
    if not raw:
        return fallback
    name = unicodedata.normalize("NFC", raw).replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE_FILENAME.sub("_", name).strip(" .")
    if len(name) > 255:
        stem, dot, extension = name.rpartition(".")
        name = stem[: 254 - len(extension)] + dot + extension if dot and len(extension) <= 16 else name[:255]
    return name or fallback


@dataclass(frozen=True)
class Scope:
    """Whose images a caller reaches: everyone's (`owner` None: auth off, `auth.scope: all`,
    services, public reads), or only the images `owner` uploaded."""

    owner: str | None = None

    def check(self, record: ImageRecord) -> ImageRecord:
        if self.owner is not None and record.owner != self.owner:
            raise Forbidden("this image belongs to another user", code="not_owner")
        return record

    def query(self, query: ListQuery) -> ListQuery:
        return owned_by(query, self.owner)

    def whole_collection(self, what: str) -> None:
        """Refuse an operation on every user's images (a drop, an export) to one user."""
        if self.owner is not None:
            raise Forbidden(f"{what} a whole collection needs a service key", code="not_owner")


EVERYONE = Scope()


@dataclass(frozen=True)
class Page:
    records: list[ImageRecord]
    has_more: bool
    total: int | None


class Upload:
    """One upload in progress. Use as `async with service.upload(c) as upload:`; the object is
    removed on exit unless `commit` recorded it."""

    def __init__(self, service: ImageService, collection: str, owner: str | None, image_id: str | None = None, time: datetime | None = None):
        self._service = service
        self.collection = collection
        self.owner = owner
        # An import keeps the archive's id and time; everything else gets fresh ones.
        self.id = image_id or new_image_id()
        self._time = time
        # True when an insert found the id taken by a record naming our very key: that object
        # is the other record's, and must not be discarded with our failed upload.
        self._key_taken = False
        self._key: str | None = None
        self._record: ImageRecord | None = None
        self._filename = ""
        self._inspector: ImageInspector | None = None
        self._sha256 = hashlib.sha256()
        self._committed = False
        # The object was stored by the client (`adopt_object`), not by this upload.
        self._adopted = False

    async def __aenter__(self) -> Upload:
        return self

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if not self._committed and self._adopted and not (isinstance(exc, GatewayError) and exc.status < 500):
            # The object stays its pending upload's: a retry adopts it again, or the sweep
            # removes it. Only a record that may have been written is undone.
            if self._record is not None:
                await asyncio.shield(self._service._discard_record(self.collection, self.id))
            return
        if not self._committed and self._key is not None and not self._key_taken:
            # Shielded: a client that disconnects cancels the request, and the undo must still finish.
            await asyncio.shield(
                self._service._discard(self.collection, self.id, self._key, record_maybe_written=self._record is not None)
            )

    @property
    def has_image(self) -> bool:
        return self._key is not None

    @property
    def sha256(self) -> str:
        """The hex SHA-256 of the bytes stored so far."""
        return self._sha256.hexdigest()

    async def put_image(self, chunks: AsyncIterator[bytes], filename: str | None) -> None:
        """Stream the image to the object store, hashing, counting and validating on the way."""
        if self._key is not None:
            raise Conflict("an upload carries one image", code="multiple_images")
        limits = self._service.config.limits
        inspector = self._inspector = ImageInspector(limits.max_image_pixels)
        iterator = chunks.__aiter__()
        head: list[bytes] = []

        def take(chunk: bytes) -> None:
            if inspector.size + len(chunk) > limits.max_upload_bytes:
                raise TooLarge(f"images are at most {limits.max_upload_bytes} bytes", code="upload_too_large")
            inspector.feed(chunk)
            self._sha256.update(chunk)

        # Read until the header names the format: the key's extension depends on it, and bytes
        # that are no image are refused before the object store sees any of them.
        async for chunk in iterator:
            take(chunk)
            head.append(chunk)
            if inspector.info is not None:
                break
        else:
            inspector.finish()
        assert inspector.info is not None
        fmt = inspector.info.format
        self._filename = sanitize_filename(filename, f"{self.id}.{fmt.extension}")

        async def body() -> AsyncIterator[bytes]:
            for chunk in head:
                yield chunk
            async for chunk in iterator:
                take(chunk)
                yield chunk
            # A truncated image raises here, inside the store's put, which then keeps nothing.
            inspector.finish()

        self._key = object_key(self.collection, self.id, fmt.extension)
        try:
            await self._service.blobs.put(
                self._key, body(), content_type=fmt.content_type, filename=self._filename, sha256=self._sha256.digest
            )
        except Conflict:
            # The key holds another image's object (only imports choose ids); it is not ours to remove.
            self._key_taken = True
            raise Conflict("an image with that id exists", code="image_exists") from None

    async def existing_copy(self) -> ImageRecord | None:
        """The oldest image of this collection (of this owner, when there is one) whose bytes are
        the ones stored so far, if any: what `dedupe` answers instead of a second copy."""
        query = ListQuery((Condition(SHA256_FIELD, "$eq", self.sha256),), limit=1, descending=False, owner=self.owner)
        found = await self._service.meta.find(self.collection, query)
        return found[0] if found else None

    async def _insert(self, record: ImageRecord) -> None:
        try:
            await self._service.meta.insert(record)
        except Conflict:
            # Only an import chooses ids: the same one ran concurrently and won.
            self._record = None
            existing = await self._service.meta.get(self.collection, self.id)
            self._key_taken = existing.path == self._key
            raise

    async def _recover_from_stale_generation(self, record: ImageRecord) -> str:
        """The cached generation was dropped (by another replica) before or during this upload.
        Registering the collection again either refuses (`Conflict`: a drop is running now) or
        proves that drop finished: nothing it does can still remove our object or record. If it
        ran during the upload it may have removed either, so the object is looked for and the
        record written again; the caller then checks the new generation as usual."""
        service = self._service
        service.generations.discard(self.collection)
        generation, _ = await service.collection_generation(self.collection)
        assert self._key is not None
        if not await service.blob_exists(self._key):
            raise Conflict("the collection was deleted during the upload", code="collection_dropping")
        try:
            await self._service.meta.insert(record)
        except Conflict:
            existing = await service.meta.get(self.collection, self.id)
            if existing != record:
                # An import of the same id took it after the drop removed ours.
                self._record = None
                self._key_taken = existing.path == self._key
                raise
        return generation
    async def adopt_object(self, key: str, filename: str | None) -> None:
        """Take the object a client stored at `key` without streaming it through us (a direct or
        resumable upload) as this upload's image: its first bytes are sniffed by a ranged read,
        then it is read once, hashed and validated as `put_image` validates. From here on it
        is this upload's, so it is deleted on exit unless `commit` recorded it."""
        if self._key is not None:
            raise Conflict("an upload carries one image", code="multiple_images")
        self._key = key
        self._adopted = True
        staging = self._service.staging
        limits = self._service.config.limits
        info = await staging.head(key)
        if info.size > limits.max_upload_bytes:
            raise TooLarge(f"images are at most {limits.max_upload_bytes} bytes", code="upload_too_large")
        head = b"".join([chunk async for chunk in staging.get_range(key, 0, 32)])
        fmt = sniff(head)
        if fmt is None and info.size >= 18:
            raise Unsupported(f"the bytes are not a supported image ({ACCEPTED})", code="unsupported_image")
        inspector = self._inspector = ImageInspector(limits.max_image_pixels)
        async for chunk in self._service.blobs.get(key):
            if inspector.size + len(chunk) > limits.max_upload_bytes:
                raise TooLarge(f"images are at most {limits.max_upload_bytes} bytes", code="upload_too_large")
            inspector.feed(chunk)
            self._sha256.update(chunk)
        found = inspector.finish().format
        if not key.endswith("." + found.extension):
            raise Unsupported(f"the bytes are a {found.name} image, not the type that was declared", code="format_mismatch")
        self._filename = sanitize_filename(filename, f"{self.id}.{found.extension}")

    async def commit(self, properties: dict[str, Any]) -> ImageRecord:
        """Record the stored image with its properties; the upload is acknowledged after this."""
        if self._key is None or self._inspector is None or self._inspector.info is None:
            raise GatewayError("commit before put_image")  # a programming error, not a request error
        service = self._service
        properties = valid_properties(properties, max_bytes=service.config.limits.max_properties_bytes)
        info = self._inspector.info
        now = self._time or utcnow()
        record = ImageRecord(
            collection=self.collection, id=self.id, image=self._filename, time=now, updated_at=now,
            content_type=info.format.content_type, format=info.format.name.lower(), width=info.width,
            height=info.height, size=self._inspector.size, sha256=self._sha256.hexdigest(), path=self._key,
            properties=properties, owner=self.owner, orientation=info.orientation,
        )
        # Usually no round trip: the generation is reused from an earlier upload (see
        # `ImageService.collection_generation`), so the common case is the insert and the check.
        generation, cached = await service.collection_generation(self.collection)
        self._record = record
        await self._insert(record)
        # A drop that began while we uploaded may have listed the objects before ours existed;
        # a changed generation means our record must not stay. This check guards the race and
        # reads the database every time: `generation` still active after our insert proves that
        # no drop of it had begun, so any later drop finds and deletes our record.
        # Concurrent uploads share this read; each waits for one that began after its insert.
        live = await service.live_generations.get(self.collection)
        if live != generation and cached:
            generation = await self._recover_from_stale_generation(record)
            live = await service.live_generations.get(self.collection)
        if live != generation:
            service.generations.discard(self.collection)
            raise Conflict("the collection was deleted during the upload", code="collection_dropping")
        self._committed = True
        await service.notify("upload", record)
        return record


# How long a collection's generation is reused before an upload registers the collection again.
# Uploads stay correct whatever the cache holds (the post-insert check reads the database, and a
# stale entry is recovered from); this only bounds how long a dropped collection's entry lingers.
GENERATION_REUSE_SECONDS = 10.0
# A presigned link is handed out again for part of its lifetime, at most this long: signing
# costs more CPU than the rest of a redirect, and the same URL lets browsers reuse cached bytes.
LINK_REUSE_SECONDS = 60.0
_CACHE_ENTRIES = 10_000


class ImageService:
    def __init__(self, blobs: BlobStore, meta: MetadataStore, config: Config):
        self.blobs = blobs
        self.meta = meta
        self.config = config
        self.listeners: list[Listener] = []
        self.generations: ExpiringCache[str] = ExpiringCache(GENERATION_REUSE_SECONDS, _CACHE_ENTRIES)
        self.live_generations: SharedReads[str, str | None] = SharedReads(lambda name: self.meta.collection_generation(name))
        # Reads of one image by concurrent requests (a popular image, a page's thumbnails) share a
        # database read that began after each of them: as fresh as a read of one's own, so a
        # delete or update acknowledged by any replica before a request is never answered from
        # an older read. Only read-only paths use it: the record is shared, never changed.
        self.record_reads: SharedReads[tuple[str, str], ImageRecord | None] = SharedReads(self._read_record)
        ttl = config.storage.presign_ttl_seconds
        self.links: ExpiringCache[str] = ExpiringCache(min(ttl / 2, LINK_REUSE_SECONDS), _CACHE_ENTRIES)

    @property
    def staging(self) -> StagingStore:
        """The object store's resumable and direct uploads: every backend offers them beside
        `BlobStore` (a fault-injecting or metrics wrapper passes them through)."""
        return cast(StagingStore, self.blobs)

    async def collection_generation(self, collection: str) -> tuple[str, bool]:
        """The generation of an active collection, registering it if new (`Conflict` while it is
        being dropped), and whether it came from the cache: reused from the last registration
        for a while, which saves an upload one of its round trips to the database."""
        generation = self.generations.get(collection)
        if generation is not None:
            return generation, True
        generation = await self.meta.ensure_collection(collection)
        self.generations.put(collection, generation)
        return generation, False

    async def blob_exists(self, key: str) -> bool:
        # A generator (every store's `get` is one), so it can be closed before it is exhausted.
        chunks = cast(AsyncGenerator[bytes, None], self.blobs.get(key))
        try:
            await chunks.__anext__()
        except StopAsyncIteration:
            pass  # an empty object
        except BlobNotFound:
            return False
        finally:
            await chunks.aclose()
        return True

    async def notify(self, kind: str, record: ImageRecord) -> None:
        for listener in self.listeners:
            try:
                await listener(kind, record)
            except Exception:
                log.warning("listener %r failed on %s of %s/%s", listener, kind, record.collection, record.id, exc_info=True)

    def upload(self, collection: str, *, owner: str | None = None, image_id: str | None = None, time: datetime | None = None) -> Upload:
        return Upload(self, collection, owner, image_id, time)

    async def upload_bytes(self, collection: str, data: bytes, filename: str | None, properties: dict[str, Any], *, owner: str | None = None) -> ImageRecord:
        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(data), 1024 * 1024):
                yield data[start : start + 1024 * 1024]

        async with self.upload(collection, owner=owner) as upload:
            await upload.put_image(chunks(), filename)
            return await upload.commit(properties)

    async def _discard_record(self, collection: str, image_id: str) -> bool:
        """Remove a failed upload's record if it was written; False when that is unknown."""
        try:
            await self.meta.delete(collection, image_id)
        except NotFound:
            pass
        except GatewayError:
            log.warning("upload %s/%s: record state unknown after a failure; object kept for reconcile", collection, image_id)
            return False
        return True

    async def _discard(self, collection: str, image_id: str, key: str, *, record_maybe_written: bool) -> None:
        """Undo a failed upload: the record first (if it may exist), then the object, so no
        visible record ever lacks its object. When the record cannot be confirmed gone, the
        object stays; the pair is then complete, or the object is an orphan for reconcile."""
        if record_maybe_written and not await self._discard_record(collection, image_id):
            return
        try:
            await self.blobs.delete(key)
        except GatewayError:
            log.warning("upload %s/%s: object %s left for reconcile", collection, image_id, key)

    async def _read_record(self, key: tuple[str, str]) -> ImageRecord | None:
        try:
            return await self.meta.get(*key)
        except NotFound:
            return None  # each caller raises its own NotFound

    async def get(self, collection: str, image_id: str, *, scope: Scope = EVERYONE) -> ImageRecord:
        """The image's record, read from the database for this call (possibly together with
        concurrent calls for the same image, see `record_reads`)."""
        record = await self.record_reads.get((collection, image_id))
        if record is None:
            raise NotFound("no image with that id", code="image_not_found")
        return scope.check(record)

    async def find(self, collection: str, query: ListQuery, *, with_total: bool, scope: Scope = EVERYONE) -> Page:
        query = scope.query(query)
        records = await self.meta.find(collection, replace(query, limit=query.limit + 1))
        total = None
        if with_total:
            # A page that reaches the end from an offset knows the total without counting, which
            # is a scan of the collection on FerretDB.
            ends = len(records) <= query.limit and query.after is None and query.after_key is None
            if ends and (records or not query.skip):
                total = query.skip + len(records)
            else:
                total = await self.meta.count(collection, query.conditions, owner=query.owner)
        return Page(records[: query.limit], len(records) > query.limit, total)

    async def replace_properties(
        self, collection: str, image_id: str, properties: dict[str, Any], *, if_version: int | None = None, scope: Scope = EVERYONE
    ) -> ImageRecord:
        return await self._update(collection, image_id, lambda _current: properties, if_version, scope)

    async def patch_properties(
        self, collection: str, image_id: str, patch: dict[str, Any], *, if_version: int | None = None, scope: Scope = EVERYONE
    ) -> ImageRecord:
        return await self._update(collection, image_id, lambda current: merge_patch(current, patch), if_version, scope)

    async def _update(self, collection: str, image_id: str, change: Any, if_version: int | None, scope: Scope) -> ImageRecord:
        limit = self.config.limits.max_properties_bytes
        for _ in range(_UPDATE_ATTEMPTS):
            current = scope.check(await self.meta.get(collection, image_id))
            if if_version is not None and current.version != if_version:
                raise PreconditionFailed("the image changed since that version", code="version_mismatch")
            updated = current.with_properties(valid_properties(change(current.properties), max_bytes=limit), utcnow())
            stored = await self.meta.replace_properties(updated, current.version)
            if stored is not None:
                await self.notify("update", stored)
                return stored
        raise Conflict("the image is being updated concurrently; try again", code="update_conflict")

    async def delete(self, collection: str, image_id: str, *, scope: Scope = EVERYONE) -> ImageRecord:
        if scope.owner is not None:
            # An image's owner never changes, so the check cannot go stale before the delete.
            scope.check(await self.meta.get(collection, image_id))
        record = await self.meta.delete(collection, image_id)
        try:
            await self.blobs.delete(record.path)
        except GatewayError:
            # The image is gone from every listing; its bytes are an orphan for reconcile.
            log.warning("deleted %s/%s but its object %s stays for reconcile", collection, image_id, record.path)
        await self._delete_renditions(collection, image_id)
        await self.notify("delete", record)
        return record

    async def _delete_renditions(self, collection: str, image_id: str) -> None:
        # After the record: a rendition made meanwhile finds the record gone and removes itself.
        try:
            keys = [blob.key async for blob in self.blobs.list(rendition_prefix(collection, image_id))]
            for start in range(0, len(keys), DELETE_MANY_LIMIT):
                await self.blobs.delete_many(keys[start : start + DELETE_MANY_LIMIT])
        except GatewayError:
            log.warning("deleted %s/%s but its renditions stay for reconcile", collection, image_id)

    async def download_url(self, collection: str, image_id: str, *, scope: Scope = EVERYONE) -> str:
        # The record is read every time, so a deleted image is a 404 on every replica at once;
        # only the signature over what it names (key, type, file name) is reused.
        record = await self.get(collection, image_id, scope=scope)
        link = (record.path, record.content_type, record.image)
        url = self.links.get(link)
        if url is None:
            url = await self.blobs.presign(
                record.path, ttl=self.config.storage.presign_ttl_seconds, content_type=record.content_type, filename=record.image
            )
            self.links.put(link, url)
        return url

    async def collections(self) -> list[str]:
        return await self.meta.collections()

    async def collection_stats(self, collection: str) -> CollectionStats:
        return await self.meta.collection_stats(collection)

    async def drop_collection(self, collection: str, *, scope: Scope = EVERYONE) -> dict[str, int]:
        """Records first, then objects under the collection's prefix, then the registry entry.
        The collection is marked first, so uploads into it are refused and a drop that stops
        half way resumes on the next call."""
        scope.whole_collection("deleting")
        self.generations.discard(collection)
        if not await self.meta.begin_drop(collection):
            raise NotFound("no collection with that name", code="collection_not_found")
        records = await self.meta.delete_records(collection)
        objects = 0
        batch: list[str] = []
        async for blob in self.blobs.list(collection_prefix(collection)):
            batch.append(blob.key)
            if len(batch) == DELETE_MANY_LIMIT:
                await self.blobs.delete_many(batch)
                objects += len(batch)
                batch = []
        if batch:
            await self.blobs.delete_many(batch)
            objects += len(batch)
        await self.meta.finish_drop(collection)
        return {"documents": records, "objects": objects}
