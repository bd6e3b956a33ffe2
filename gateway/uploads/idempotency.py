"""Idempotency-Key: a retried upload answers what the first one answered, without storing twice.

The key is claimed in the metadata store before anything is stored, with the id the first
request will give what it creates, so a retry finds that image even when the first request's
answer was lost (a database that died after committing the insert): the image exists, the
retry answers it. While the first is still running (on any replica) a retry waits a little,
then answers 409 `in_progress`; one whose first request died without an outcome takes over.
A first request's 4xx is kept and answered again; a 5xx is not, so a retry does the work.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from typing import Any, TypeVar

from gateway.errors import Conflict, GatewayError, Invalid, NotFound, TooLarge, Unprocessable
from gateway.metadata.base import IdempotencyEntry, ImageRecord, MetadataStore, utcnow
from gateway.names import new_image_id
from gateway.properties import validate_properties
from gateway.service.core import ImageService, Upload

HEADER = "Idempotency-Key"
_KEY = re.compile(r"[\x20-\x7e]{1,255}")
# How long a first request is taken to be running when it said nothing since; after that a
# retry takes over (a replica that died mid-upload never reports its outcome).
LEASE = timedelta(minutes=10)
_WAIT_SECONDS = 2.0
_POLL_SECONDS = 0.05

Recover = Callable[[str], Awaitable[dict[str, Any] | None]]
T = TypeVar("T")


def parse_key(raw: str | None) -> str | None:
    if raw is None:
        return None
    if _KEY.fullmatch(raw) is None or not raw.strip():
        raise Invalid(f"{HEADER} must be 1 to 255 printable ASCII characters", code="invalid_idempotency_key")
    return raw


def fingerprint(*parts: Any) -> str:
    """What makes two requests the same request, as a digest."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def _replayed(answer: dict[str, Any]) -> GatewayError:
    error = GatewayError(answer["message"], code=answer["code"])
    error.status = answer["status"]
    return error


class Claim:
    """One request's hold on its key. `fresh`: this request does the work under `resource_id`
    and reports how it went; otherwise `replay` gives the first request's answer."""

    def __init__(self, meta: MetadataStore | None, entry: IdempotencyEntry | None, *, fresh: bool, answer: dict[str, Any] | None = None):
        self._meta = meta
        self.entry = entry
        self.fresh = fresh
        self.answer = answer
        self.resource_id = entry.resource_id if entry is not None and fresh else new_image_id()

    async def _store(self, **changes: Any) -> None:
        if self._meta is None or self.entry is None or not self.fresh:
            return
        updated = replace(self.entry, **changes, version=self.entry.version + 1)
        try:
            if await self._meta.replace_idempotency(updated, self.entry.version):
                self.entry = updated
        except GatewayError:
            # The outcome is not recorded; a retry looks for what this request created.
            pass

    async def succeeded(self, answer: dict[str, Any], fingerprint: str | None = None) -> None:
        await self._store(state="done", answer=answer, fingerprint=fingerprint or (self.entry.fingerprint if self.entry else ""))

    async def refused(self, exc: GatewayError, fingerprint: str | None = None) -> None:
        answer = {"status": exc.status, "code": exc.code, "message": exc.message}
        await self._store(state="refused", answer=answer, fingerprint=fingerprint or (self.entry.fingerprint if self.entry else ""))

    async def failed(self) -> None:
        # No outcome to keep: a retry may check for what was created and take over at once.
        await self._store(lease_expires=utcnow())

    async def outcome(self, exc: BaseException | None) -> None:
        """Report how the work went, from the exception it ended with (None: it succeeded but
        the caller reports the answer with `succeeded`)."""
        if isinstance(exc, GatewayError) and exc.status < 500:
            await self.refused(exc)
        elif exc is not None:
            await asyncio.shield(self.failed())

    async def replay(self, fingerprint: str | None, recover: Recover) -> dict[str, Any]:
        """The first request's answer: its document, or its 4xx raised again; 422 when this
        request is not the same, 409 `in_progress` while the first has not finished."""
        assert self._meta is not None and self.entry is not None
        if self.answer is not None:
            return self.answer
        deadline = time.monotonic() + _WAIT_SECONDS
        existing = self.entry
        while True:
            if fingerprint and existing.fingerprint and existing.fingerprint != fingerprint:
                raise Unprocessable(f"this {HEADER} was used for a different request", code="idempotency_key_reused")
            if existing.state == "done" and existing.answer is not None:
                return existing.answer
            if existing.state == "refused" and existing.answer is not None:
                raise _replayed(existing.answer)
            found = await recover(existing.resource_id)
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise Conflict(f"a request with this {HEADER} is still in progress; retry later", code="in_progress")
            await asyncio.sleep(_POLL_SECONDS)
            again = await self._meta.claim_idempotency(existing)
            if again is None:
                # It expired meanwhile and our claim of it stood; nothing of the first remains.
                raise Conflict(f"a request with this {HEADER} is still in progress; retry later", code="in_progress")
            existing = again


class Idempotency:
    def __init__(self, meta: MetadataStore, ttl_seconds: int):
        self.meta = meta
        self.ttl = timedelta(seconds=ttl_seconds)

    async def claim(
        self, key: str | None, *, caller: str | None, collection: str, kind: str, recover: Recover, fingerprint: str = "",
        new_id: Callable[[], str] = lambda: new_image_id(),
    ) -> Claim:
        """Claim `key` for this caller, collection and kind of request. A first request whose
        outcome is unknown and whose lease ran out is taken over unless what it created exists."""
        if key is None:
            return Claim(None, None, fresh=True)
        scope = hashlib.sha256("\x00".join((caller or "", collection, kind, key)).encode()).hexdigest()
        now = utcnow()
        entry = IdempotencyEntry(scope, fingerprint, new_id(), "in_flight", now + LEASE, now + self.ttl)
        existing = await self.meta.claim_idempotency(entry)
        if existing is None:
            return Claim(self.meta, entry, fresh=True)
        if existing.state == "in_flight":
            found = await recover(existing.resource_id)
            if found is not None:
                return Claim(self.meta, existing, fresh=False, answer=found)
            if existing.lease_expires <= now:
                taken = replace(existing, resource_id=new_id(), lease_expires=now + LEASE, fingerprint=fingerprint or existing.fingerprint, version=existing.version + 1)
                if await self.meta.replace_idempotency(taken, existing.version):
                    return Claim(self.meta, taken, fresh=True)
                existing = await self.meta.claim_idempotency(entry) or taken
        return Claim(self.meta, existing, fresh=False)


def record_answer(record: ImageRecord, *, duplicate: bool = False) -> dict[str, Any]:
    """An image record as an entry's answer (JSON); `duplicate`: a dedupe upload answered with
    an image that already held its bytes."""
    answer = record.to_json()
    if duplicate:
        answer["duplicate"] = True
    return answer


def answered_record(answer: dict[str, Any]) -> ImageRecord:
    return ImageRecord.from_json({name: value for name, value in answer.items() if name != "duplicate"})


def image_fingerprint(sha256: str, properties: dict[str, Any]) -> str:
    """Two uploads are the same request when their image bytes and properties are."""
    return fingerprint("image", sha256, properties)


class RepeatedUpload:
    """Stands in for `Upload` when a request repeats a key: the image is read (and hashed) only
    to tell whether this is the same request, nothing is stored, and `commit` answers what the
    first request answered."""

    def __init__(self, claim: Claim, recover: Recover, *, max_bytes: int, max_properties_bytes: int):
        self._claim = claim
        self._recover = recover
        self._max_bytes = max_bytes
        self._max_properties_bytes = max_properties_bytes
        self._sha256 = hashlib.sha256()
        self._size = 0
        self.has_image = False

    async def put_image(self, chunks: AsyncIterator[bytes], filename: str | None) -> None:
        if self.has_image:
            raise Conflict("an upload carries one image", code="multiple_images")
        self.has_image = True
        async for chunk in chunks:
            self._size += len(chunk)
            if self._size > self._max_bytes:
                raise TooLarge(f"images are at most {self._max_bytes} bytes", code="upload_too_large")
            self._sha256.update(chunk)

    async def _answer(self, properties: dict[str, Any]) -> dict[str, Any]:
        try:
            checked = validate_properties(properties, max_bytes=self._max_properties_bytes)
        except GatewayError:
            checked = properties
        return await self._claim.replay(image_fingerprint(self._sha256.hexdigest(), checked), self._recover)

    async def existing_copy(self, properties: dict[str, Any]) -> ImageRecord | None:
        """What a dedupe upload answers: the image the first request answered, if that was a
        duplicate; None if it stored a new image (which `commit` then answers)."""
        answer = await self._answer(properties)
        return answered_record(answer) if answer.get("duplicate") else None

    async def commit(self, properties: dict[str, Any]) -> ImageRecord:
        return answered_record(await self._answer(properties))


class RecordedUpload:
    """An `Upload` that reports its outcome to its claim."""

    def __init__(self, upload: Upload, claim: Claim, *, max_properties_bytes: int):
        self._upload = upload
        self._claim = claim
        self._max_properties_bytes = max_properties_bytes

    @property
    def has_image(self) -> bool:
        return self._upload.has_image

    async def put_image(self, chunks: AsyncIterator[bytes], filename: str | None) -> None:
        await self._upload.put_image(chunks, filename)

    async def existing_copy(self, properties: dict[str, Any]) -> ImageRecord | None:
        """`Upload.existing_copy`, answered again to a repeat of this request when found."""
        found = await self._upload.existing_copy()
        if found is not None:
            checked = validate_properties(properties, max_bytes=self._max_properties_bytes)
            await self._claim.succeeded(record_answer(found, duplicate=True), image_fingerprint(self._upload.sha256, checked))
        return found

    async def commit(self, properties: dict[str, Any]) -> ImageRecord:
        record = await self._upload.commit(properties)
        await self._claim.succeeded(record_answer(record), image_fingerprint(record.sha256, record.properties))
        return record


@asynccontextmanager
async def idempotent_upload(service: ImageService, collection: str, key: str | None, *, owner: str | None) -> AsyncIterator[RecordedUpload | RepeatedUpload]:
    """`service.upload(...)` guarded by an Idempotency-Key (none: an ordinary upload)."""
    limits = service.config.limits

    async def recover(image_id: str) -> dict[str, Any] | None:
        try:
            return record_answer(await service.meta.get(collection, image_id))
        except NotFound:
            return None

    claim = await Idempotency(service.meta, service.config.uploads.idempotency_ttl_seconds).claim(
        key, caller=owner, collection=collection, kind="image", recover=recover
    )
    if not claim.fresh:
        yield RepeatedUpload(claim, recover, max_bytes=limits.max_upload_bytes, max_properties_bytes=limits.max_properties_bytes)
        return
    try:
        async with service.upload(collection, owner=owner, image_id=claim.resource_id if key else None) as upload:
            yield RecordedUpload(upload, claim, max_properties_bytes=limits.max_properties_bytes)
    except BaseException as exc:
        await claim.outcome(exc)
        raise


async def once(
    service: ImageService, key: str | None, *, caller: str | None, collection: str, kind: str, fingerprint: str,
    recover: Recover, work: Callable[[str | None], Awaitable[T]], answer: Callable[[T], dict[str, Any]],
    replayed: Callable[[dict[str, Any]], Awaitable[T]], new_id: Callable[[], str] = new_image_id,
) -> T:
    """`work(resource_id)` done once per Idempotency-Key (None: no key, done every time):
    `answer` says what to keep of its result, `replayed` makes the result again from that for a
    repeat. `resource_id` is the id `work` must give what it creates (None without a key)."""
    claim = await Idempotency(service.meta, service.config.uploads.idempotency_ttl_seconds).claim(
        key, caller=caller, collection=collection, kind=kind, recover=recover, fingerprint=fingerprint, new_id=new_id,
    )
    if not claim.fresh:
        return await replayed(await claim.replay(fingerprint, recover))
    try:
        result = await work(claim.resource_id if key else None)
    except BaseException as exc:
        await claim.outcome(exc)
        raise
    await claim.succeeded(answer(result))
    return result
