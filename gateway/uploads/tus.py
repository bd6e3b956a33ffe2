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
   an upload that never became an image is deleted with it. A dedupe upload whose bytes the
   collection holds already is marked done as that image, then its own copy is deleted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from gateway.errors import BlobNotFound, ChecksumMismatch, Conflict, GatewayError, Invalid, NotFound, TooLarge, Unsupported
from gateway.images import ACCEPTED, sniff
from gateway.metadata.base import PendingUpload, utcnow
from gateway.names import new_image_id
from gateway.properties import validate_properties
from gateway.service.core import ImageService, sanitize_filename
from gateway.storage.base import StagedWrite, StagingStore, object_key
from gateway.uploads import idempotency, leases
from gateway.uploads.leases import Recorded

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
    # As multipart's `dedupe`: answer the image already holding these bytes instead of a copy.
    dedupe: bool = False


@dataclass(frozen=True)
class Appended:
    upload: PendingUpload
    # Set by the request that stored the last byte (or a repeat of it): the image recorded.
    done: Recorded | None = None


class ResumableUploads:
    def __init__(self, service: ImageService):
        self.service = service
        self.meta = service.meta
        self.blobs: StagingStore = service.staging

    @property
    def expiry(self) -> timedelta:
        return timedelta(seconds=self.service.config.uploads.tus_expiry_seconds)

    async def create(self, collection: str, length: int, declared: Declared, *, owner: str | None, idempotency_key: str | None = None) -> PendingUpload:
        """A new upload, its declaration validated now. With an Idempotency-Key, a repeat of the
        same creation answers the upload the first one made (a different one is a 422)."""

        async def recover(upload_id: str) -> dict[str, Any] | None:
            try:
                return {"upload_id": (await self.meta.get_upload(upload_id)).id}
            except NotFound:
                return None

        async def replayed(answer: dict[str, Any]) -> PendingUpload:
            return await self.get(collection, answer["upload_id"], owner=owner)

        async def work(upload_id: str | None) -> PendingUpload:
            return await self._create(collection, length, declared, owner=owner, upload_id=upload_id)

        return await idempotency.once(
            self.service, idempotency_key, caller=owner, collection=collection, kind="tus",
            fingerprint=idempotency.fingerprint("tus", length, dataclasses.astuple(declared)), recover=recover,
            work=work, answer=lambda upload: {"upload_id": upload.id}, replayed=replayed, new_id=leases.new_upload_id,
        )

    async def _create(self, collection: str, length: int, declared: Declared, *, owner: str | None, upload_id: str | None) -> PendingUpload:
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
        info = {
            "filename": declared.filename, "content_type": declared.content_type, "properties": properties,
            "dedupe": declared.dedupe, "image_id": new_image_id(), "head": "",
        }  # fmt: skip
        upload = PendingUpload(
            id=upload_id, kind="tus", collection=collection, owner=owner, length=length, info=info,
            staged=StagedWrite(upload_id).as_dict(), created_at=now, expires_at=now + self.expiry,
        )
        await self.meta.insert_upload(upload)
        return upload

    async def get(self, collection: str, upload_id: str, *, owner: str | None) -> PendingUpload:
        return await leases.find(self.meta, upload_id, kind="tus", collection=collection, owner=owner)

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
                return Appended(upload, leases.answered(upload, await self.meta.get(collection, upload.image_id)))
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
                    await self.service.blobs.delete(staged.key)
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
            raise Unsupported(f"the bytes are not a supported image ({ACCEPTED})", code="unsupported_image")
        info = self.latest.info
        image_id = info["image_id"]
        staged.key = object_key(self.latest.collection, image_id, fmt.extension)
        staged.content_type = fmt.content_type
        staged.filename = sanitize_filename(info.get("filename"), f"{image_id}.{fmt.extension}")

    async def _complete(self) -> Recorded:
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
                return await self._done(Recorded(record), staged.key)
            except NotFound:
                pass
            try:
                await self.blobs.head(staged.key)
            except BlobNotFound:
                await self.blobs.finish_staged(staged)
        try:
            done = await leases.adopt(self.service, upload, staged.key)
        except GatewayError as exc:
            if exc.status < 500:
                # Refused as an ordinary upload would be; its object is deleted, and the upload with it.
                await self.meta.delete_upload(upload.id)
            raise
        return await self._done(done, staged.key)

    async def _done(self, done: Recorded, key: str) -> Recorded:
        try:
            self.latest = await leases.finished(self.service, self.latest, done, key, expires_at=utcnow() + self.expiry)
        except GatewayError:
            log.warning("tus upload %s: answered as image %s, but not marked done", self.latest.id, done.record.id)
        return done
