"""Resumable uploads (tus 1.0.0): the steps between a creation and the image record.

The state of each upload (bytes stored, the object store's parts and tail) lives in the metadata
store, and every write is done under the upload's lease, so any replica can continue an upload
another began, and two requests never write the same upload at once. When the last byte is in,
the staged bytes are published under the image's key and go through the service exactly as an
ordinary upload's do (format, pixels, truncation, SHA-256 by reading the object once); an image
that fails is deleted with its upload and the request gets the same 4xx.

Write order, and what each failure leaves:
1. creation records the pending upload (nothing stored yet);
2. each PATCH appends under the lease and records the new state after each durable step; a
   crash loses only bytes not yet recorded, which the client sends again from the offset a HEAD
   reports (the S3 parts and tail pieces are named so recorded state never points at a piece
   that is gone);
3. completion marks the upload `finishing`, publishes the object, records the image, and marks
   the upload done; a crash in between is finished by the next PATCH, or swept: the object of
   an upload that never became an image is deleted with it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from bson import ObjectId

from gateway.errors import BlobNotFound, ChecksumMismatch, Conflict, GatewayError, Invalid, NotFound, TooLarge, Unsupported
from gateway.images import sniff
from gateway.metadata.base import ImageRecord, PendingUpload, utcnow
from gateway.properties import validate_properties
from gateway.service import ImageService, sanitize_filename
from gateway.storage.base import StagedWrite, object_key
from gateway.uploads import leases

log = logging.getLogger(__name__)

VERSION = "1.0.0"
EXTENSIONS = ("creation", "creation-with-upload", "termination", "expiration", "checksum")
CHECKSUMS: dict[str, Callable[[], Any]] = {"sha1": hashlib.sha1, "sha256": hashlib.sha256}
_SNIFF_BYTES = 32


@dataclass(frozen=True)
class Declared:
    """What a client says about its upload in Upload-Metadata."""

    filename: str | None = None
    content_type: str | None = None
    properties: dict[str, Any] | None = None


@dataclass(frozen=True)
class Appended:
    upload: PendingUpload
    # Set by the request that stored the last byte (or a repeat of it): the image recorded.
    record: ImageRecord | None = None


class ResumableUploads:
    def __init__(self, service: ImageService):
        self.service = service
        self.meta = service.meta
        self.blobs: Any = service.blobs

    @property
    def expiry(self) -> timedelta:
        return timedelta(seconds=self.service.config.uploads.tus_expiry_seconds)

    async def create(self, collection: str, length: int, declared: Declared, *, owner: str | None, upload_id: str | None = None) -> PendingUpload:
        limits = self.service.config.limits
        if length <= 0:
            raise Invalid("the image is empty", code="empty_image")
        if length > limits.max_upload_bytes:
            raise TooLarge(f"images are at most {limits.max_upload_bytes} bytes", code="upload_too_large")
        properties = validate_properties(declared.properties or {}, max_bytes=limits.max_properties_bytes)
        # Refused now rather than after the last byte: an upload into a collection being dropped.
        await self.meta.ensure_collection(collection)
        upload_id = upload_id or leases.new_upload_id()
        now = utcnow()
        info = {"filename": declared.filename, "content_type": declared.content_type, "properties": properties, "image_id": str(ObjectId()), "head": ""}
        upload = PendingUpload(
            id=upload_id, kind="tus", collection=collection, owner=owner, length=length, info=info,
            staged=StagedWrite(upload_id).as_dict(), created_at=now, expires_at=now + self.expiry,
        )
        await self.meta.insert_upload(upload)
        return upload

    async def get(self, collection: str, upload_id: str, *, owner: str | None) -> PendingUpload:
        """The upload, if it is this collection's and this caller's and has not expired."""
        try:
            upload = await self.meta.get_upload(upload_id)
        except NotFound:
            raise NotFound("no upload with that id", code="upload_not_found") from None
        if upload.kind != "tus" or upload.collection != collection or (upload.owner is not None and upload.owner != owner):
            raise NotFound("no upload with that id", code="upload_not_found")
        if leases.expired(upload):
            raise NotFound("the upload has expired", code="upload_expired")
        return upload

    def offset(self, upload: PendingUpload) -> int:
        return upload.length if upload.image_id else StagedWrite.from_dict(upload.staged).size

    async def append(
        self, collection: str, upload_id: str, offset: int, chunks: AsyncIterator[bytes], *,
        owner: str | None, checksum: tuple[str, bytes] | None = None,
    ) -> Appended:
        upload = await self.get(collection, upload_id, owner=owner)
        if upload.image_id is not None:
            if offset == upload.length:
                # A repeat of the last PATCH whose answer was lost: the same image.
                return Appended(upload, await self.meta.get(collection, upload.image_id))
            raise Conflict(f"the upload is complete at offset {upload.length}", code="offset_mismatch")
        if offset != self.offset(upload):
            raise Conflict(f"the upload is at offset {self.offset(upload)}, not {offset}", code="offset_mismatch")
        upload, _token = await leases.acquire(self.meta, upload_id)
        patch = _Patch(self, upload)
        try:
            return await patch.run(chunks, checksum)
        except Unsupported as exc:
            if exc.code == "unsupported_image":
                # The first bytes are no image: the upload goes, as an ordinary upload's bytes would.
                await self.discard(patch.latest)
            raise
        finally:
            try:
                await leases.release(self.meta, patch.latest)
            except GatewayError:
                log.warning("tus upload %s: lease not released; it runs out by itself", upload_id)

    async def discard(self, upload: PendingUpload) -> None:
        """Remove an upload that did not become an image, with everything it stored."""
        if upload.image_id is None:
            staged = StagedWrite.from_dict(upload.staged)
            await self.blobs.discard_staged(staged)
            if staged.key and (upload.info.get("finishing") or upload.kind == "direct"):
                # The object may already be an image whose upload was not marked done: it stays.
                try:
                    await self.meta.get(upload.collection, upload.info["image_id"])
                except NotFound:
                    await self.blobs.delete(staged.key)
        await self.meta.delete_upload(upload.id)

    async def terminate(self, collection: str, upload_id: str, *, owner: str | None) -> None:
        upload = await self.get(collection, upload_id, owner=owner)
        upload, _token = await leases.acquire(self.meta, upload.id)
        await self.discard(upload)


class _Patch:
    """One PATCH under the lease; `latest` is the upload as last stored."""

    def __init__(self, uploads: ResumableUploads, upload: PendingUpload):
        self.meta = uploads.meta
        self.blobs = uploads.blobs
        self.service = uploads.service
        self.expiry = uploads.expiry
        self.latest = upload

    async def _save(self, staged: StagedWrite, head: bytes) -> None:
        now = utcnow()
        self.latest = await leases.save(
            self.meta, self.latest, staged=staged.as_dict(), info={**self.latest.info, "head": head.hex()},
            lock_expires=now + leases.LEASE, expires_at=now + self.expiry,
        )

    async def run(self, chunks: AsyncIterator[bytes], checksum: tuple[str, bytes] | None) -> Appended:
        upload = self.latest
        staged = StagedWrite.from_dict(upload.staged)
        if not upload.info.get("finishing"):
            digest = CHECKSUMS[checksum[0]]() if checksum else None
            head = bytearray(bytes.fromhex(upload.info.get("head", "")))

            async def progress(state: StagedWrite) -> None:
                # With a checksum nothing of the body counts until it matched: stored at the end.
                if digest is None:
                    await self._save(state, bytes(head))

            async def body() -> AsyncIterator[bytes]:
                received = staged.size
                async for chunk in chunks:
                    received += len(chunk)
                    if received > upload.length:
                        raise TooLarge(f"the upload is {upload.length} bytes long, as its Upload-Length said", code="upload_too_long")
                    if digest is not None:
                        digest.update(chunk)
                    if len(head) < _SNIFF_BYTES:
                        head.extend(chunk[: _SNIFF_BYTES - len(head)])
                        if len(head) >= min(_SNIFF_BYTES, upload.length):
                            self._name_the_object(staged, bytes(head))
                    yield chunk

            await self.blobs.append_staged(staged, body(), progress)
            if checksum is not None and digest is not None:
                if digest.digest() != checksum[1]:
                    raise ChecksumMismatch("the body does not match its Upload-Checksum", code="checksum_mismatch")
                await self._save(staged, bytes(head))
            if staged.size < upload.length:
                return Appended(self.latest)
        return Appended(self.latest, await self._complete())

    def _name_the_object(self, staged: StagedWrite, head: bytes) -> None:
        fmt = sniff(head)
        if fmt is None:
            raise Unsupported("the bytes are not a supported image (JPEG, PNG, GIF, WebP, TIFF or BMP)", code="unsupported_image")
        info = self.latest.info
        image_id = info["image_id"]
        staged.key = object_key(self.latest.collection, image_id, fmt.extension)
        staged.content_type = fmt.content_type
        staged.filename = sanitize_filename(info.get("filename"), f"{image_id}.{fmt.extension}")

    async def _complete(self) -> ImageRecord:
        upload = self.latest
        staged = StagedWrite.from_dict(upload.staged)
        if staged.key is None:
            raise Invalid("the image is truncated or corrupt", code="invalid_image")
        if not upload.info.get("finishing"):
            self.latest = upload = await leases.save(self.meta, upload, info={**upload.info, "finishing": True})
            await self.blobs.finish_staged(staged)
        else:
            # A completion that stopped part way; finish what it began.
            try:
                record = await self.meta.get(upload.collection, upload.info["image_id"])
                return await self._done(record)
            except NotFound:
                pass
            try:
                await self.blobs.head(staged.key)
            except BlobNotFound:
                await self.blobs.finish_staged(staged)
        try:
            async with self.service.upload(upload.collection, owner=upload.owner, image_id=upload.info["image_id"]) as image:
                await image.adopt_object(staged.key, upload.info.get("filename"))
                record = await image.commit(upload.info.get("properties") or {})
        except GatewayError as exc:
            if exc.status < 500:
                # Refused as an ordinary upload would be; its object is deleted, and the upload with it.
                await self.meta.delete_upload(upload.id)
            raise
        return await self._done(record)

    async def _done(self, record: ImageRecord) -> ImageRecord:
        upload = self.latest
        try:
            self.latest = await leases.save(self.meta, upload, image_id=record.id, expires_at=utcnow() + self.expiry)
        except GatewayError:
            log.warning("tus upload %s: recorded as image %s, but not marked done", upload.id, record.id)
        return record
