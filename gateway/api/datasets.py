"""Dataset export (a streamed zip) and import (the same zip, or the original service's)."""

from __future__ import annotations

import asyncio
import logging
import tempfile
from pathlib import Path

from aiohttp import MultipartReader, web

from gateway.api.common import media_type, multipart, next_part, part_chunks, scope, service
from gateway.datasets.export import ZipExport
from gateway.datasets.service import Datasets
from gateway.api.openapi import json_answer, operation
from gateway.errors import Invalid, TooLarge, Unsupported
from gateway.keys import CONFIG, USER_ID
from gateway.api.params import no_query
from gateway.names import collection_name
from gateway.jsoncodec import json_response

log = logging.getLogger(__name__)

ARCHIVE_FIELD = "archive"
TAG = "datasets"
_ARCHIVE = {"description": "a zip streamed as it is made", "content": {"application/zip": {"schema": {"type": "string", "contentMediaType": "application/zip"}}}}
_IMPORT_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": [ARCHIVE_FIELD],
                "properties": {ARCHIVE_FIELD: {"type": "string", "contentMediaType": "application/zip", "description": "our export, or the original service's (images + mongodb_data.json)"}},
            }
        }
    },
}
_ENTRY = {"type": "object", "properties": {"id": {"type": "string"}, "member": {"type": "string"}, "status": {"enum": ["skipped", "rejected"]}, "reason": {"type": "string"}}}
_SUMMARY = {
    "type": "object",
    "properties": {"collection": {"type": "string"}, "imported": {"type": "integer"}, "skipped": {"type": "integer"}, "rejected": {"type": "integer"}, "entries": {"type": "array", "items": _ENTRY}},
}


@operation("Export the images, metadata.jsonl and mongodb_data.json as a zip", tag=TAG, ok={"200": _ARCHIVE}, errors=(404, 503))
async def export_dataset(request: web.Request) -> web.StreamResponse:
    no_query(request.query)
    collection = collection_name(request.match_info["collection"])
    datasets = Datasets(service(request))
    # Refused (403, 404) before the 200 and the zip begin.
    await datasets.check_export(collection, scope=scope(request))
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/zip",
            # The original's name for it.
            "Content-Disposition": f'attachment; filename="{collection}_export.zip"',
            "Cache-Control": "no-store",
        }
    )
    await response.prepare(request)
    try:
        await datasets.export(collection, ZipExport(response.write))
    except Exception:
        # The 200 is sent: the only way left to say the zip is incomplete is to cut the
        # connection before its end, so the client sees a broken transfer, not a short zip.
        log.exception("export of %s failed after it began; connection cut", collection)
        if request.transport is not None:
            request.transport.abort()
        return response
    await response.write_eof()
    return response


async def _spool(reader: MultipartReader, path: Path, max_bytes: int, idle: float) -> bool:
    """Write the archive field's bytes to `path`; False when the body has none."""
    found = False
    while (part := await next_part(reader, idle)) is not None:
        if part.name != ARCHIVE_FIELD or found:
            await part.release()
            continue
        found = True
        size = 0
        with path.open("wb") as handle:
            async for chunk in part_chunks(part, idle):
                size += len(chunk)
                if size > max_bytes:
                    raise TooLarge(f"archives are at most {max_bytes} bytes", code="archive_too_large")
                await asyncio.to_thread(handle.write, chunk)
    return found


@operation(
    "Import a dataset zip; ids and times are kept, re-imports skip", tag=TAG,
    ok={"200": json_answer("what was imported, skipped and rejected, with reasons", _SUMMARY)}, errors=(409, 413, 415, 503), body=_IMPORT_BODY,
)
async def import_dataset(request: web.Request) -> web.Response:
    no_query(request.query)
    collection = collection_name(request.match_info["collection"])
    if media_type(request) != "multipart/form-data":
        raise Unsupported(f"imports are multipart/form-data with the zip in the field {ARCHIVE_FIELD!r}", code="expected_multipart")
    limits = request.app[CONFIG].limits
    if request.content_length is not None and request.content_length > limits.max_archive_bytes:
        raise TooLarge(f"archives are at most {limits.max_archive_bytes} bytes", code="archive_too_large")
    reader = await multipart(request)
    # zipfile reads the central directory at the end, so the archive is spooled to disk first.
    with tempfile.TemporaryDirectory(prefix="gateway-import-") as folder:
        path = Path(folder) / "archive.zip"
        if not await _spool(reader, path, limits.max_archive_bytes, limits.body_idle_timeout_seconds):
            raise Invalid(f"the import has no zip in the field {ARCHIVE_FIELD!r}", code="missing_archive")
        summary = await Datasets(service(request)).import_path(collection, path, owner=request.get(USER_ID))
    return json_response({"collection": collection, **summary.as_dict()})
