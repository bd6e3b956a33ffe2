"""Direct uploads: the client sends its file straight to the object store with a signed form,
then asks for completion, which validates the stored object as an ordinary upload is validated.

Write order: the pending upload is recorded before the form is signed (so an object sent with
it always has an owner the sweep and `reconcile` know); completion reads the object once
(format from its first bytes, pixels, truncation, SHA-256), records the image and marks the
upload done. A refused object is deleted with its upload; an unfinished one expires with its
form and is swept. A dedupe upload whose bytes the collection holds already is marked done as
that image, then its object is deleted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from gateway.errors import BlobNotFound, Conflict, GatewayError, Invalid, NotFound, TooLarge, Unsupported
from gateway.images import FORMATS
from gateway.metadata.base import PendingUpload, utcnow
from gateway.names import new_image_id
from gateway.properties import validate_properties
from gateway.service.core import ImageService, sanitize_filename
from gateway.storage.base import StagedWrite, StagingStore, UploadForm, object_key
from gateway.uploads import idempotency, leases
from gateway.uploads.leases import Recorded

log = logging.getLogger(__name__)

_EXTENSIONS = {f.content_type: f.extension for f in FORMATS.values()}


@dataclass(frozen=True)
class Started:
    upload: PendingUpload
    form: UploadForm


class DirectUploads:
    def __init__(self, service: ImageService):
        self.service = service
        self.meta = service.meta
        self.blobs: StagingStore = service.staging

    async def start(
        self, collection: str, *, filename: Any, size: Any, content_type: Any, properties: Any, dedupe: Any = False, owner: str | None,
    ) -> Started:
        limits = self.service.config.limits
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise Invalid("size must be a positive integer (bytes)", code="invalid_body")
        if size > limits.max_upload_bytes:
            raise TooLarge(f"images are at most {limits.max_upload_bytes} bytes", code="upload_too_large")
        if not isinstance(content_type, str) or content_type not in _EXTENSIONS:
            raise Unsupported(f"content_type must be one of {', '.join(sorted(_EXTENSIONS))}", code="unsupported_image")
        if filename is not None and not isinstance(filename, str):
            raise Invalid("filename must be a string", code="invalid_body")
        if properties is not None and not isinstance(properties, dict):
            raise Invalid("properties must be a JSON object", code="invalid_properties")
        if not isinstance(dedupe, bool):
            raise Invalid("dedupe must be true or false", code="invalid_body")
        checked = validate_properties(properties or {}, max_bytes=limits.max_properties_bytes)
        await self.meta.ensure_collection(collection)
        ttl = self.service.config.uploads.direct_expiry_seconds
        upload_id, image_id = leases.new_upload_id(), new_image_id()
        extension = _EXTENSIONS[content_type]
        key = object_key(collection, image_id, extension)
        staged = StagedWrite(upload_id, key=key, content_type=content_type, filename=sanitize_filename(filename, f"{image_id}.{extension}"))
        now = utcnow()
        upload = PendingUpload(
            id=upload_id, kind="direct", collection=collection, owner=owner, length=size,
            info={"filename": filename, "content_type": content_type, "properties": checked, "dedupe": dedupe, "image_id": image_id},
            staged=staged.as_dict(), created_at=now, expires_at=now + timedelta(seconds=ttl),
        )
        # Recorded first: whatever is sent with the form has an upload that sweeps it.
        await self.meta.insert_upload(upload)
        form = await self.blobs.upload_form(key, max_bytes=limits.max_upload_bytes, ttl=ttl, content_type=content_type)
        return Started(upload, form)

    async def get(self, collection: str, upload_id: str, *, owner: str | None) -> PendingUpload:
        return await leases.find(self.meta, upload_id, kind="direct", collection=collection, owner=owner)

    async def complete(self, collection: str, upload_id: str, *, owner: str | None, idempotency_key: str | None = None) -> Recorded:
        """Validate the object the client sent and record it (a repeat answers the same image;
        with an Idempotency-Key, so does a repeat whose first answer was lost)."""

        async def recover(image_id: str) -> dict[str, Any] | None:
            try:
                return idempotency.record_answer(await self.meta.get(collection, image_id))
            except NotFound:
                return None

        async def replayed(answer: dict[str, Any]) -> Recorded:
            return Recorded(idempotency.answered_record(answer), duplicate=bool(answer.get("duplicate")))

        async def work(_: str | None) -> Recorded:
            return await self._complete(collection, upload_id, owner=owner)

        return await idempotency.once(
            self.service, idempotency_key, caller=owner, collection=collection, kind="direct",
            fingerprint=idempotency.fingerprint("direct", upload_id), recover=recover, work=work,
            answer=lambda done: idempotency.record_answer(done.record, duplicate=done.duplicate), replayed=replayed,
        )

    async def _complete(self, collection: str, upload_id: str, *, owner: str | None) -> Recorded:
        upload = await self.get(collection, upload_id, owner=owner)
        if upload.image_id is not None:
            return leases.answered(upload, await self.meta.get(collection, upload.image_id))
        key = StagedWrite.from_dict(upload.staged).key
        assert key is not None
        try:
            await self.blobs.head(key)
        except BlobNotFound:
            raise Conflict("the file has not been sent to the upload form yet", code="upload_incomplete") from None
        upload, _token = await leases.acquire(self.meta, upload_id)
        try:
            try:
                # A completion that stopped after recording the image.
                done = Recorded(await self.meta.get(collection, upload.info["image_id"]))
            except NotFound:
                done = await leases.adopt(self.service, upload, key)
            try:
                await leases.finished(self.service, upload, done, key, lock=None, lock_expires=None)
            except GatewayError:
                log.warning("direct upload %s: answered as image %s, but not marked done", upload.id, done.record.id)
            return done
        except GatewayError as exc:
            if exc.status < 500:
                # Refused as an ordinary upload is; the object went with the failed upload.
                await self.meta.delete_upload(upload.id)
            else:
                await leases.release(self.meta, upload)
            raise
