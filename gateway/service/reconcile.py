"""Compare the object store with the records, and repair what a failure left behind.

Both sides are streamed in the same order (object keys in key order, records in path order; S3,
the filesystem store, MongoDB and SQLite all compare keys as UTF-8 bytes, which is Python's
code point order), so one merge pass finds every difference with flat memory at any size:
- an object without a record is an orphan (a failed upload, a failed object delete); once older
  than the grace period (younger ones may belong to uploads in flight) `--fix` deletes it;
- a record without its object breaks invariant 2; `--fix` deletes the record after checking
  again that it still exists and its object still does not;
- with `--verify`, an object whose bytes do not hash to the record's `sha256` is reported
  (there is nothing to repair it from);
- a rendition (`<collection>/_renditions/<id>/...`) is counted as one while its image's record
  exists, and is an orphan like any other object once it does not;
- a collection drop that stopped half way is resumed with `--fix`;
- temporary files and incomplete multipart uploads older than the grace period (a crash's
  leftovers, never visible as objects) are discarded with `--fix`;
- objects and staging pieces of pending uploads (tus, direct) are theirs, not orphans; `--fix`
  first sweeps the expired uploads (`gateway.uploads.sweep`), and pieces whose upload is gone
  are orphans like any other.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from gateway.errors import GatewayError, NotFound
from gateway.metadata.base import ImageRecord
from gateway.service.core import ImageService
from gateway.storage.base import DELETE_MANY_LIMIT, STAGING_PREFIX, BlobInfo, StagedWrite, collection_prefix, rendition_owner
from gateway.uploads.sweep import sweep

log = logging.getLogger(__name__)

DEFAULT_GRACE = timedelta(minutes=15)
_SAMPLES = 100


class OrderError(RuntimeError):
    """A side did not stream in key order; a merge over it would report false orphans."""


@dataclass
class Summary:
    objects: int = 0
    records: int = 0
    matched: int = 0
    verified: int = 0
    young_objects: int = 0
    orphan_objects: int = 0
    # Temporary files and incomplete multipart uploads that a crash left.
    partial_writes: int = 0
    missing_objects: int = 0
    corrupt_objects: int = 0
    unfinished_drops: int = 0
    # Objects under `<collection>/_renditions/<id>/` whose image exists: never orphans.
    renditions: int = 0
    # Objects and staging pieces that belong to uploads still pending, and uploads swept.
    pending_uploads: int = 0
    swept_uploads: int = 0
    orphan_pieces: int = 0
    fixed: int = 0
    # Problems found and not repaired (a failed fix, a corrupt object, or no `--fix`).
    remaining: int = 0
    samples: list[dict[str, str]] = field(default_factory=list)

    def problem(self, kind: str, key: str, *, fixed: bool) -> None:
        if fixed:
            self.fixed += 1
        else:
            self.remaining += 1
        if len(self.samples) < _SAMPLES:
            self.samples.append({"problem": kind, "key": key, "state": "fixed" if fixed else "remaining"})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def _ordered(items: AsyncIterator[Any], key: Callable[[Any], str], side: str) -> AsyncIterator[Any]:
    previous = ""
    async for item in items:
        current = key(item)
        if current <= previous:
            raise OrderError(f"the {side} listing is not in key order ({previous!r} before {current!r})")
        previous = current
        yield item


async def _next(iterator: AsyncIterator[Any]) -> Any:
    return await anext(iterator, None)


class Reconciler:
    def __init__(self, service: ImageService, *, fix: bool = False, verify: bool = False, grace: timedelta = DEFAULT_GRACE, on_item: Callable[[Summary], None] | None = None):
        self.service = service
        self.fix = fix
        self.verify = verify
        self.grace = grace
        self.on_item = on_item or (lambda summary: None)
        self.summary = Summary()
        self._orphans: list[str] = []
        # The last image a rendition was checked against: an image's renditions list together.
        self._rendered: tuple[str, bool] = ("", False)
        self._pending_keys: set[str] = set()

    async def run(self, collection: str | None = None) -> Summary:
        # Taken once: an object older than this was stored before the run began minus the grace.
        cutoff = datetime.now(timezone.utc) - self.grace
        await self._resume_drops(collection)
        prefix = collection_prefix(collection) if collection else ""
        blobs = self.service.blobs
        await self._pending_uploads(cutoff)
        await self._partial_writes(cutoff, prefix)
        objects = _ordered(blobs.list(prefix).__aiter__(), lambda blob: blob.key, "object")
        records = _ordered(self.service.meta.records(collection).__aiter__(), lambda record: record.path, "record")
        blob: BlobInfo | None = await _next(objects)
        record: ImageRecord | None = await _next(records)
        while blob is not None or record is not None:
            if record is None or (blob is not None and blob.key < record.path):
                assert blob is not None
                self.summary.objects += 1
                await self._object_only(blob, cutoff)
                blob = await _next(objects)
            elif blob is None or record.path < blob.key:
                self.summary.records += 1
                await self._record_only(record)
                record = await _next(records)
            else:
                self.summary.objects += 1
                self.summary.records += 1
                self.summary.matched += 1
                if self.verify:
                    await self._verify(record)
                blob, record = await _next(objects), await _next(records)
            self.on_item(self.summary)
        await self._flush_orphans()
        return self.summary

    async def _resume_drops(self, collection: str | None) -> None:
        meta = self.service.meta
        dropping = set(await meta.collections(include_dropping=True)) - set(await meta.collections())
        for name in sorted(dropping):
            if collection is not None and name != collection:
                continue
            self.summary.unfinished_drops += 1
            fixed = False
            if self.fix:
                try:
                    await self.service.drop_collection(name)
                    fixed = True
                except GatewayError as exc:
                    log.warning("could not finish dropping %s: %s", name, exc.message)
            self.summary.problem("unfinished_drop", name, fixed=fixed)

    async def _pending_uploads(self, cutoff: datetime) -> None:
        if self.fix:
            self.summary.swept_uploads = (await sweep(self.service)).uploads
        live: set[str] = set()
        for upload in await self.service.meta.pending_uploads(limit=1_000_000):
            live.add(upload.id)
            key = StagedWrite.from_dict(upload.staged).key
            if key is not None and upload.image_id is None:
                self._pending_keys.add(key)
        self.summary.pending_uploads = len(live)
        async for upload_id, piece, modified in self.service.staging.staged_pieces():
            if upload_id in live or modified > cutoff:
                continue
            self.summary.orphan_pieces += 1
            fixed = False
            if self.fix:
                try:
                    await self.service.staging.delete_piece(piece)
                    fixed = True
                except GatewayError as exc:
                    log.warning("could not remove the staging piece %s: %s", piece, exc.message)
            self.summary.problem("orphan_piece", piece, fixed=fixed)

    async def _partial_writes(self, cutoff: datetime, prefix: str) -> None:
        found = await self.service.blobs.partial_writes(cutoff, prefix, remove=self.fix, keep=frozenset(self._pending_keys))
        self.summary.partial_writes = found
        for _ in range(found):
            self.summary.problem("partial_write", prefix or "*", fixed=self.fix)

    async def _object_only(self, blob: BlobInfo, cutoff: datetime) -> None:
        if blob.key.startswith(STAGING_PREFIX) or blob.key in self._pending_keys:
            return  # a pending upload's; counted above
        owner = rendition_owner(blob.key)
        if owner is not None and await self._image_exists(*owner):
            self.summary.renditions += 1
            return
        if blob.last_modified > cutoff:
            self.summary.young_objects += 1
            return
        self.summary.orphan_objects += 1
        if not self.fix:
            self.summary.problem("orphan_object", blob.key, fixed=False)
            return
        self._orphans.append(blob.key)
        if len(self._orphans) >= DELETE_MANY_LIMIT:
            await self._flush_orphans()

    async def _flush_orphans(self) -> None:
        if not self._orphans:
            return
        batch, self._orphans = self._orphans, []
        try:
            await self.service.blobs.delete_many(batch)
            fixed = True
        except GatewayError as exc:
            log.warning("could not delete %d orphan objects: %s", len(batch), exc.message)
            fixed = False
        for key in batch:
            self.summary.problem("orphan_object", key, fixed=fixed)

    async def _record_only(self, record: ImageRecord) -> None:
        self.summary.missing_objects += 1
        fixed = False
        if self.fix:
            fixed = await self._drop_broken_record(record)
        self.summary.problem("missing_object", record.path, fixed=fixed)

    async def _drop_broken_record(self, record: ImageRecord) -> bool:
        # The listing may have run after a delete removed the object and before we read the
        # record; both are looked at again, and the record goes only if it is still broken.
        service = self.service
        try:
            current = await service.meta.get(record.collection, record.id)
            if current.path != record.path or await self._exists(record.path):
                return current.path != record.path
            await service.meta.delete(record.collection, record.id)
            return True
        except NotFound:
            return True
        except GatewayError as exc:
            log.warning("could not remove the record %s/%s: %s", record.collection, record.id, exc.message)
            return False

    async def _image_exists(self, collection: str, image_id: str) -> bool:
        image = f"{collection}/{image_id}"
        if self._rendered[0] != image:
            try:
                await self.service.meta.get(collection, image_id)
                exists = True
            except NotFound:
                exists = False
            except GatewayError as exc:
                # Unknown is treated as present: a rendition is removed only when its image is gone.
                log.warning("could not look up %s for its renditions: %s", image, exc.message)
                exists = True
            self._rendered = (image, exists)
        return self._rendered[1]

    async def _exists(self, key: str) -> bool:
        async for blob in self.service.blobs.list(key):
            if blob.key == key:
                return True
        return False

    async def _verify(self, record: ImageRecord) -> None:
        digest = hashlib.sha256()
        size = 0
        try:
            async for chunk in self.service.blobs.get(record.path):
                digest.update(chunk)
                size += len(chunk)
        except NotFound:
            # Deleted since the listing: nothing left to verify.
            return
        self.summary.verified += 1
        if digest.hexdigest() != record.sha256 or size != record.size:
            self.summary.corrupt_objects += 1
            self.summary.problem("corrupt_object", record.path, fixed=False)


async def reconcile(service: ImageService, collection: str | None = None, **options: Any) -> Summary:
    return await Reconciler(service, **options).run(collection)
