"""Dataset export and import: a zip (or a directory) of images with their metadata.

An export holds one member per image, `<id>.<ext>`, stored as it is (images are compressed
already), then `metadata.jsonl` (our documents, one per line) and `mongodb_data.json` (the original
service's shape: a JSON array of `_id`, `time`, `image` = the member's name, and the properties at
top level). The zip is written to a non-seekable stream member by member, so it is never built in
memory or on disk.

An import reads our export or the original service's (a flat zip of images and
`mongodb_data.json`; its `mongodb_data.xlsx` is ignored). Ids and times are kept, so importing
the same archive twice changes nothing, and an interrupted import resumes: an id already stored
with the same SHA-256 is skipped. Every image goes through `ImageService`'s upload, so it is
validated and written in the same order as any other upload.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import IO, Any, Protocol, cast

from gateway.errors import BlobNotFound, Conflict, GatewayError, Invalid, NotFound, TooLarge, Unavailable
from gateway.metadata.base import ImageRecord
from gateway.progress import Progress
from gateway.service import ImageService
from gateway.validation import IMAGE_ID_RE

log = logging.getLogger(__name__)

METADATA = "metadata.jsonl"
ORIGINAL_METADATA = "mongodb_data.json"
_CHUNK = 256 * 1024
# Entries reported one by one in an import summary; beyond that, only counted.
_REPORTED = 1000
# Metadata files are parsed whole (the original's is one JSON array), so they have their own cap.
_MAX_METADATA_BYTES = 512 * 1024 * 1024
# Images hardly compress; a member that expands more than this is a bomb, not a dataset.
_MAX_RATIO = 100
_MAX_MEMBERS = 1_000_000


@dataclass(frozen=True)
class ArchiveLimits:
    member_bytes: int
    # The uncompressed total of every member together.
    total_bytes: int
    members: int = _MAX_MEMBERS
    ratio: int = _MAX_RATIO


def safe_member_name(name: str) -> str:
    """A relative POSIX name with no `..`, no drive, no backslash: refused otherwise."""
    path = PurePosixPath(name)
    if (
        not name
        or "\\" in name
        or "\x00" in name
        or path.is_absolute()
        or ".." in path.parts
        or (path.parts and ":" in path.parts[0])
    ):
        raise Invalid(f"the archive member name {name!r} is not a safe relative path", code="unsafe_member_name")
    return name


# --- export -----------------------------------------------------------------------------------


def member_name(record: ImageRecord) -> str:
    return PurePosixPath(record.path).name


def record_document(record: ImageRecord) -> dict[str, Any]:
    """Our document as `metadata.jsonl` holds it: every field of the record."""
    doc = dataclasses.asdict(record)
    doc.update(_id=doc.pop("id"), member=member_name(record), time=_iso(record.time), updated_at=_iso(record.updated_at))
    return doc


def original_document(record: ImageRecord) -> dict[str, Any]:
    """The original service's document: the properties at top level, beside `_id`, `time`, `image`."""
    reserved = {"_id", "time", "image"}
    return {**{k: v for k, v in record.properties.items() if k not in reserved}, "_id": record.id, "time": _iso(record.time), "image": member_name(record)}


def _iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ExportTarget(Protocol):
    async def member(self, name: str, chunks: AsyncIterator[bytes], *, size: int | None, time: datetime, compress: bool) -> None: ...

    async def close(self) -> None: ...


class _Sink:
    """Collects what `zipfile` writes; it has no `seek`/`tell`, so zipfile streams (data
    descriptors after each member) instead of going back to patch headers. Deliberately not an
    `io` object: one never closes, so a zip abandoned mid-export (the client left) can still be
    finalised into it harmlessly when collected."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: Any) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        return None

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


class ZipExport:
    """A zip written to `write` as it is made. The zip work per chunk is a CRC (members are
    stored) or a small deflate (the metadata), so it runs on the event loop between writes."""

    def __init__(self, write: Callable[[bytes], Awaitable[None]]):
        self._write = write
        self._sink = _Sink()
        self._zip = zipfile.ZipFile(self._sink, "w", allowZip64=True)  # type: ignore[arg-type]

    async def _drain(self) -> None:
        data = self._sink.take()
        if data:
            await self._write(data)

    async def member(self, name: str, chunks: AsyncIterator[bytes], *, size: int | None, time: datetime, compress: bool) -> None:
        info = zipfile.ZipInfo(name, date_time=time.astimezone(timezone.utc).timetuple()[:6])
        info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        info.external_attr = 0o644 << 16
        if size is not None:
            info.file_size = size
        async with aclosing(cast(AsyncGenerator[bytes, None], chunks)) as source:
            with self._zip.open(info, "w", force_zip64=size is None) as handle:
                async for chunk in source:
                    handle.write(chunk)
                    await self._drain()
        await self._drain()

    async def close(self) -> None:
        self._zip.close()
        await self._drain()


class DirExport:
    """The same members as files in a directory, each written atomically."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    async def member(self, name: str, chunks: AsyncIterator[bytes], *, size: int | None, time: datetime, compress: bool) -> None:
        target = self.root / safe_member_name(name)
        fd, tmp = await asyncio.to_thread(tempfile.mkstemp, dir=self.root, prefix=".export-")
        try:
            async with aclosing(cast(AsyncGenerator[bytes, None], chunks)) as source:
                with os.fdopen(fd, "wb") as handle:
                    async for chunk in source:
                        await asyncio.to_thread(handle.write, chunk)
            await asyncio.to_thread(os.replace, tmp, target)
        except BaseException:
            await asyncio.to_thread(Path(tmp).unlink, missing_ok=True)
            raise

    async def close(self) -> None:
        return None


async def _peeked(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """`chunks`, with its first chunk read now: a missing object raises here, before the
    member is begun in the archive. The source is closed however the reading ends (a client
    that leaves cancels the export mid-member)."""
    iterator = cast(AsyncGenerator[bytes, None], chunks.__aiter__())
    try:
        first = await anext(iterator, b"")
    except BaseException:
        await iterator.aclose()
        raise

    async def rest() -> AsyncIterator[bytes]:
        try:
            yield first
            async for chunk in iterator:
                yield chunk
        finally:
            await iterator.aclose()

    return rest()


async def export_collection(service: ImageService, collection: str, target: ExportTarget, progress: Progress | None = None) -> dict[str, int]:
    """Write the collection's images and metadata into `target`; counts of what was written.
    A record whose object vanished meanwhile (a concurrent delete) is left out of both. The ids
    written are remembered (about 100 bytes each) so the metadata, read in two more passes over
    the records, names exactly the images the archive holds."""
    meta = service.meta
    exported: set[str] = set()
    missing = 0
    started = datetime.now(timezone.utc)
    async with aclosing(cast(AsyncGenerator[ImageRecord, None], meta.records(collection))) as records:
        async for record in records:
            try:
                chunks = await _peeked(service.blobs.get(record.path))
            except BlobNotFound:
                missing += 1
                continue
            await target.member(member_name(record), chunks, size=record.size, time=record.time, compress=False)
            exported.add(record.id)
            if progress:
                progress.advance()

    async def lines(shape: Callable[[ImageRecord], dict[str, Any]]) -> AsyncIterator[bytes]:
        async with aclosing(cast(AsyncGenerator[ImageRecord, None], meta.records(collection))) as records:
            async for record in records:
                if record.id in exported:
                    yield json.dumps(shape(record), ensure_ascii=False, separators=(",", ":")).encode() + b"\n"

    async def array() -> AsyncIterator[bytes]:
        separator = b"[\n"
        async for line in lines(original_document):
            yield separator + line.rstrip(b"\n")
            separator = b",\n"
        yield b"[]\n" if separator == b"[\n" else b"\n]\n"

    await target.member(METADATA, lines(record_document), size=None, time=started, compress=True)
    await target.member(ORIGINAL_METADATA, array(), size=None, time=started, compress=True)
    await target.close()
    return {"images": len(exported), "missing_objects": missing}


# --- import sources ---------------------------------------------------------------------------


class ImportSource(Protocol):
    def has(self, name: str) -> bool: ...

    def size(self, name: str) -> int: ...

    def open(self, name: str) -> IO[bytes]: ...


class ZipSource:
    """A zip on disk, checked before anything is read: member names, count, declared sizes and
    compression ratios. While reading, a member that yields more than it declared is refused."""

    def __init__(self, path: Path, limits: ArchiveLimits):
        try:
            self._zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise Invalid(f"the archive is not a readable zip file ({exc})", code="invalid_archive") from None
        self.limits = limits
        infos = self._zip.infolist()
        if len(infos) > limits.members:
            raise TooLarge(f"archives hold at most {limits.members} members", code="archive_too_large")
        total = 0
        self._infos: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            if info.is_dir():
                continue
            safe_member_name(info.filename)
            if info.flag_bits & 0x1:
                raise Invalid(f"member {info.filename!r} is encrypted", code="invalid_archive")
            if info.file_size > limits.ratio * max(info.compress_size, 1) and info.file_size > 1024 * 1024:
                raise Invalid(f"member {info.filename!r} expands {info.file_size // max(info.compress_size, 1)} times: refused as a zip bomb", code="zip_bomb")
            total += info.file_size
            self._infos[info.filename] = info
        if total > limits.total_bytes:
            raise TooLarge(f"the archive expands to more than {limits.total_bytes} bytes", code="archive_too_large")

    def has(self, name: str) -> bool:
        return name in self._infos

    def size(self, name: str) -> int:
        return self._infos[name].file_size

    def open(self, name: str) -> IO[bytes]:
        return _Bounded(self._zip.open(self._infos[name]), self._infos[name].file_size, name)

    def close(self) -> None:
        self._zip.close()


class _Bounded(io.RawIOBase):
    """A member's reader that refuses to yield more than the member declared."""

    def __init__(self, inner: IO[bytes], declared: int, name: str):
        self._inner = inner
        self._left = declared
        self._name = name

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._inner.read(self._left + 1 if size < 0 else min(size, self._left + 1))
        except (zipfile.BadZipFile, EOFError, OSError) as exc:
            raise Invalid(f"member {self._name!r} is corrupt ({exc})", code="corrupt_member") from None
        self._left -= len(data)
        if self._left < 0:
            raise Invalid(f"member {self._name!r} is larger than its header declares", code="zip_bomb")
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._inner.close()
        super().close()


class DirSource:
    """An export unpacked into a directory (or written there by `gateway export C DIR`)."""

    def __init__(self, root: Path):
        self.root = root.resolve()

    def _path(self, name: str) -> Path:
        path = (self.root / safe_member_name(name)).resolve()
        if not path.is_relative_to(self.root):
            raise Invalid(f"the member name {name!r} leaves the directory", code="unsafe_member_name")
        return path

    def has(self, name: str) -> bool:
        return self._path(name).is_file()

    def size(self, name: str) -> int:
        return self._path(name).stat().st_size

    def open(self, name: str) -> IO[bytes]:
        return self._path(name).open("rb")

    def close(self) -> None:
        return None


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
        if len(self.entries) < _REPORTED:
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
            value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        else:
            raise ValueError
    except (ValueError, OverflowError, OSError):
        raise Invalid("the entry's time is not an ISO 8601 date", code="invalid_time") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    value = value.astimezone(timezone.utc)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


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
        if source.has(name) and source.size(name) > _MAX_METADATA_BYTES:
            raise TooLarge(f"{name} is larger than {_MAX_METADATA_BYTES} bytes", code="archive_too_large")
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
        opening.add_done_callback(lambda done: done.cancelled() or done.exception() or done.result().close())
        raise
    try:
        while chunk := await asyncio.to_thread(handle.read, _CHUNK):
            yield chunk
    finally:
        await asyncio.to_thread(handle.close)


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

