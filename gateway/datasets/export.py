"""Dataset export: a zip or a directory of images with our and the original service's metadata."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
import zipfile
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, cast

from gateway.errors import BlobNotFound
from gateway.metadata.base import ImageRecord, iso_time
from gateway.datasets.progress import Progress
from gateway.service import ImageService

from gateway.datasets import METADATA, ORIGINAL_METADATA, safe_member_name

log = logging.getLogger(__name__)


# export -----------------------------------------------------------------------------------


def member_name(record: ImageRecord) -> str:
    return PurePosixPath(record.path).name


def record_document(record: ImageRecord) -> dict[str, Any]:
    """Our document as `metadata.jsonl` holds it: every field of the record."""
    doc = record.to_json()
    doc.update(_id=doc.pop("id"), member=member_name(record))
    return doc


def original_document(record: ImageRecord) -> dict[str, Any]:
    """The original service's document: the properties at top level, beside `_id`, `time`, `image`."""
    reserved = {"_id", "time", "image"}
    return {**{k: v for k, v in record.properties.items() if k not in reserved}, "_id": record.id, "time": iso_time(record.time), "image": member_name(record)}


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
        # typeshed's writable-file protocol asks for close(), which zipfile never calls on a file
        # it was given; _Sink has none on purpose (see above).
        self._zip = zipfile.ZipFile(self._sink, "w", allowZip64=True)  # type: ignore[call-overload]

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


