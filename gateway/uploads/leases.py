"""Pending uploads: their lease (whichever replica holds it is the only one writing), and how
the object one stored becomes an image."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from gateway.errors import Conflict, GatewayError, NotFound
from gateway.metadata.base import ImageRecord, MetadataStore, PendingUpload, utcnow
from gateway.service.core import ImageService

log = logging.getLogger(__name__)

# Renewed with every part stored; a replica that died holding it frees it when it runs out.
LEASE = timedelta(minutes=3)


def new_upload_id() -> str:
    # Unguessable: the upload URL is what lets its creator continue it.
    return secrets.token_hex(16)


async def find(meta: MetadataStore, upload_id: str, *, kind: str, collection: str, owner: str | None) -> PendingUpload:
    """The upload of this kind, if it is this collection's and this caller's (its creator's:
    the upload URL alone is not enough) and has not expired; `NotFound` otherwise."""
    try:
        upload = await meta.get_upload(upload_id)
    except NotFound:
        raise NotFound("no upload with that id", code="upload_not_found") from None
    if upload.kind != kind or upload.collection != collection or (upload.owner is not None and upload.owner != owner):
        raise NotFound("no upload with that id", code="upload_not_found")
    if expired(upload):
        raise NotFound("the upload has expired", code="upload_expired")
    return upload


def expired(upload: PendingUpload, now: datetime | None = None) -> bool:
    return upload.image_id is None and upload.expires_at <= (now or utcnow())


def locked(upload: PendingUpload, now: datetime | None = None) -> bool:
    return upload.lock is not None and upload.lock_expires is not None and upload.lock_expires > (now or utcnow())


async def save(meta: MetadataStore, upload: PendingUpload, **changes: object) -> PendingUpload:
    """`upload` with `changes`, stored if nobody changed it since it was read; `Conflict` if
    somebody did (another request holds or took the lease)."""
    updated = replace(upload, **changes, version=upload.version + 1)  # type: ignore[arg-type]
    if not await meta.replace_upload(updated, upload.version):
        raise Conflict("another request is working on this upload; retry with its current offset", code="upload_locked")
    return updated


async def acquire(meta: MetadataStore, upload_id: str, now: datetime | None = None) -> tuple[PendingUpload, str]:
    """The upload, now leased to the caller (with the token to keep it); `Conflict` while
    another request holds the lease, `NotFound` if there is no such upload."""
    now = now or utcnow()
    upload = await meta.get_upload(upload_id)
    if locked(upload, now):
        raise Conflict("another request is working on this upload; retry with its current offset", code="upload_locked")
    token = secrets.token_hex(8)
    return await save(meta, upload, lock=token, lock_expires=now + LEASE), token


async def release(meta: MetadataStore, upload: PendingUpload) -> None:
    """Give the lease back; if the upload changed or vanished meanwhile, there is nothing to give."""
    try:
        current = await meta.get_upload(upload.id)
    except NotFound:
        return
    if current.lock == upload.lock:
        await meta.replace_upload(replace(current, lock=None, lock_expires=None, version=current.version + 1), current.version)


@dataclass(frozen=True)
class Recorded:
    """What a finished upload answers: its image, or with `duplicate` (a dedupe upload) the
    image that already held its bytes."""

    record: ImageRecord
    duplicate: bool = False


async def adopt(service: ImageService, upload: PendingUpload, key: str) -> Recorded:
    """The upload's object at `key`, validated and recorded as an ordinary upload's is (format,
    pixels, truncation, SHA-256, properties; orientation and displayed size as multipart gives
    them). With `dedupe` declared and these bytes already in the collection, that image instead,
    and nothing recorded: the caller marks the upload done, then removes the object
    (`drop_duplicate`). A 4xx leaves the object deleted; any other failure keeps it for a retry."""
    info = upload.info
    async with service.upload(upload.collection, owner=upload.owner, image_id=info["image_id"]) as image:
        await image.adopt_object(key, info.get("filename"))
        if info.get("dedupe") and (existing := await image.existing_copy()) is not None:
            return Recorded(existing, duplicate=True)
        return Recorded(await image.commit(info.get("properties") or {}))


async def finished(service: ImageService, upload: PendingUpload, done: Recorded, key: str, **changes: object) -> PendingUpload:
    """Mark `upload` done as `done`'s image, so a repeat answers the same (`Conflict` or
    `Unavailable` when that fails). A duplicate's own copy at `key` is removed only once the
    upload says so: until then a retry finds the copy and dedupes again, or the sweep takes it."""
    info = {**upload.info, "duplicate": True} if done.duplicate else upload.info
    updated = await save(service.meta, upload, image_id=done.record.id, info=info, **changes)
    if done.duplicate:
        try:
            await service.blobs.delete(key)
        except GatewayError:
            log.warning("upload %s: the duplicate's copy %s stays for reconcile", upload.id, key)
    return updated


def answered(upload: PendingUpload, record: ImageRecord) -> Recorded:
    """What a done upload answers again."""
    return Recorded(record, duplicate=bool(upload.info.get("duplicate")))
