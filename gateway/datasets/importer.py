"""Dataset import: our exports and the original service's, resumable, through the service's upload."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from gateway.errors import Conflict, GatewayError, Invalid, NotFound, TooLarge, Unavailable
from gateway.metadata.base import ImageRecord, parse_iso_time, to_millis
from gateway.datasets.progress import Progress
from gateway.service import ImageService
from gateway.names import IMAGE_ID_RE

from gateway.datasets import METADATA, ORIGINAL_METADATA, CHUNK, MAX_METADATA_BYTES, REPORTED, safe_member_name
from gateway.datasets.sources import ImportSource

log = logging.getLogger(__name__)


# --- import -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    id: str
    member: str
    filename: str
    time: datetime | None
    properties: dict[str, Any]
    sha256: str | None = None


@dataclass
class ImportSummary:
    imported: int = 0
    skipped: int = 0
    rejected: int = 0
    entries: list[dict[str, str]] = field(default_factory=list)

    def note(self, state: str, entry_id: str, member: str, reason: str) -> None:
        setattr(self, state, getattr(self, state) + 1)
        if len(self.entries) < REPORTED:
            self.entries.append({"id": entry_id, "member": member, "status": state, "reason": reason})

    def as_dict(self) -> dict[str, Any]:
        return {"imported": self.imported, "skipped": self.skipped, "rejected": self.rejected, "entries": self.entries}


def _parse_id(raw: Any) -> str:
    if isinstance(raw, dict) and set(raw) == {"$oid"}:
        raw = raw["$oid"]
    if not isinstance(raw, str) or IMAGE_ID_RE.fullmatch(raw) is None:
        raise Invalid("the entry's _id is not a 24-digit hex id", code="invalid_id")
    return raw.lower()


def _parse_time(raw: Any) -> datetime | None:
    if raw is None:
        return None
    if isinstance(raw, dict) and set(raw) == {"$date"}:
        raw = raw["$date"]
        if isinstance(raw, dict) and "$numberLong" in raw:
            raw = int(raw["$numberLong"])
    try:
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            value = datetime.fromtimestamp(raw / 1000, timezone.utc)
        elif isinstance(raw, str):
            value = parse_iso_time(raw)
        else:
            raise ValueError
        return to_millis(value)
    except (ValueError, OverflowError, OSError):
        raise Invalid("the entry's time is not an ISO 8601 date", code="invalid_time") from None


def _entry(doc: Any, ours: bool) -> Entry:
    if not isinstance(doc, dict):
        raise Invalid("an entry is not a JSON object", code="invalid_entry")
    image_id = _parse_id(doc.get("_id", doc.get("id")))
    if ours:
        member, filename, properties = doc.get("member"), doc.get("image"), doc.get("properties", {})
        digest = doc.get("sha256")
    else:
        member = filename = doc.get("image")
        properties = {k: v for k, v in doc.items() if k not in ("_id", "time", "image")}
        digest = None
    if not isinstance(member, str):
        raise Invalid("the entry names no image member", code="invalid_entry")
    safe_member_name(member)
    return Entry(image_id, member, filename if isinstance(filename, str) else member, _parse_time(doc.get("time")), properties, digest if isinstance(digest, str) else None)


async def _documents(source: ImportSource) -> tuple[AsyncIterator[Any], bool]:
    """The archive's documents, streamed from `metadata.jsonl` when it is ours."""
    for name in (METADATA, ORIGINAL_METADATA):
        if source.has(name) and source.size(name) > MAX_METADATA_BYTES:
            raise TooLarge(f"{name} is larger than {MAX_METADATA_BYTES} bytes", code="archive_too_large")
    if source.has(METADATA):
        handle = await asyncio.to_thread(source.open, METADATA)

        async def lines() -> AsyncIterator[Any]:
            with io.TextIOWrapper(handle, encoding="utf-8") as text:
                while line := await asyncio.to_thread(text.readline):
                    if line.strip():
                        yield _loads(line)

        return lines(), True
    if source.has(ORIGINAL_METADATA):

        def load() -> Any:
            with source.open(ORIGINAL_METADATA) as handle:
                return _loads(handle.read())

        documents = await asyncio.to_thread(load)
        if not isinstance(documents, list):
            raise Invalid(f"{ORIGINAL_METADATA} must hold a JSON array", code="invalid_archive")

        async def items() -> AsyncIterator[Any]:
            for doc in documents:
                yield doc

        return items(), False
    raise Invalid(f"the archive has neither {METADATA} nor {ORIGINAL_METADATA}", code="invalid_archive")


def _loads(raw: str | bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise Invalid("the archive's metadata is not valid JSON", code="invalid_archive") from None


async def _chunks(source: ImportSource, name: str) -> AsyncIterator[bytes]:
    opening = asyncio.ensure_future(asyncio.to_thread(source.open, name))
    try:
        handle = await asyncio.shield(opening)
    except asyncio.CancelledError:
        # The thread opens the member regardless; close it once it has, or it leaks.
        opening.add_done_callback(_close_once_open)
        raise
    try:
        while chunk := await asyncio.to_thread(handle.read, CHUNK):
            yield chunk
    finally:
        await asyncio.to_thread(handle.close)


def _close_once_open(opening: asyncio.Future[io.BufferedReader]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        opening.result().close()


async def _sha256_of(source: ImportSource, name: str) -> str:
    digest = hashlib.sha256()
    async for chunk in _chunks(source, name):
        digest.update(chunk)
    return digest.hexdigest()


class Importer:
    def __init__(self, service: ImageService, collection: str, source: ImportSource, *, owner: str | None = None, concurrency: int = 4, progress: Progress | None = None):
        self.service = service
        self.collection = collection
        self.source = source
        self.owner = owner
        self.concurrency = max(1, concurrency)
        self.progress = progress
        self.summary = ImportSummary()

    async def run(self) -> ImportSummary:
        documents, ours = await _documents(self.source)
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=self.concurrency * 2)

        async def work() -> None:
            while (doc := await queue.get()) is not None:
                await self._one(doc, ours)
                if self.progress:
                    self.progress.advance(note=f"imported {self.summary.imported} skipped {self.summary.skipped} rejected {self.summary.rejected}")

        workers = [asyncio.create_task(work()) for _ in range(self.concurrency)]
        try:
            async for doc in documents:
                # A worker that failed (a store down) ends the import rather than a blocked put.
                await _put_or_fail(queue, doc, workers)
            for _ in workers:
                await _put_or_fail(queue, None, workers)
            await asyncio.gather(*workers)
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        return self.summary

    async def _one(self, doc: Any, ours: bool) -> None:
        summary = self.summary
        label = doc.get("image", "") if isinstance(doc, dict) else ""
        try:
            entry = _entry(doc, ours)
        except Invalid as exc:
            summary.note("rejected", str(doc.get("_id", "")) if isinstance(doc, dict) else "", str(label), exc.message)
            return
        try:
            await self._store(entry)
        except (Unavailable, asyncio.CancelledError):
            raise
        except GatewayError as exc:
            summary.note("rejected", entry.id, entry.member, exc.message)

    async def _store(self, entry: Entry) -> None:
        service, source, summary = self.service, self.source, self.summary
        if not source.has(entry.member):
            raise Invalid("the archive has no member of that name", code="missing_member")
        if source.size(entry.member) > service.config.limits.max_upload_bytes:
            raise TooLarge(f"images are at most {service.config.limits.max_upload_bytes} bytes", code="upload_too_large")
        try:
            existing: ImageRecord | None = await service.meta.get(self.collection, entry.id)
        except NotFound:
            existing = None
        if existing is not None:
            digest = entry.sha256 or await _sha256_of(source, entry.member)
            if existing.sha256 != digest:
                raise Conflict("the id is taken by a different image", code="id_taken")
            summary.note("skipped", entry.id, entry.member, "already present with the same SHA-256")
            return
        async with service.upload(self.collection, owner=self.owner, image_id=entry.id, time=entry.time) as upload:
            await upload.put_image(_chunks(source, entry.member), entry.filename)
            if entry.sha256 is not None and upload.sha256 != entry.sha256.lower():
                raise Invalid("the member's bytes do not match its sha256", code="checksum_mismatch")
            await upload.commit(entry.properties)
        summary.imported += 1


async def _put_or_fail(queue: asyncio.Queue[Any], item: Any, workers: list[asyncio.Task[None]]) -> None:
    put = asyncio.ensure_future(queue.put(item))
    while not put.done():
        for worker in workers:
            if worker.done() and not worker.cancelled() and worker.exception() is not None:
                put.cancel()
                raise worker.exception()  # type: ignore[misc]
        running = [worker for worker in workers if not worker.done()]
        await asyncio.wait([put, *running], return_when=asyncio.FIRST_COMPLETED)


def import_archive(service: ImageService, collection: str, source: ImportSource, **options: Any) -> Awaitable[ImportSummary]:
    return Importer(service, collection, source, **options).run()


