"""Pending uploads and their lease: whichever replica holds it is the only one writing."""

from __future__ import annotations

import secrets
from dataclasses import replace
from datetime import datetime, timedelta

from gateway.errors import Conflict, NotFound
from gateway.metadata.base import MetadataStore, PendingUpload, utcnow

# Renewed with every part stored; a replica that died holding it frees it when it runs out.
LEASE = timedelta(minutes=3)


def new_upload_id() -> str:
    # Unguessable: the upload URL is what lets its creator continue it.
    return secrets.token_hex(16)


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
