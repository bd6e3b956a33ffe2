"""The sweep of abandoned uploads: expired tus uploads and direct-upload forms lose their bytes
and their record, finished ones their record; expired Idempotency-Keys are forgotten.

Every replica runs it in the background and `reconcile --fix` runs it too; an upload is swept
only under its lease, so a sweep never races a request that is writing or completing it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from aiohttp import web

from gateway.errors import Conflict, GatewayError
from gateway.keys import CONFIG, SERVICE
from gateway.metadata.base import utcnow
from gateway.service.core import ImageService
from gateway.uploads import leases
from gateway.uploads.tus import ResumableUploads

log = logging.getLogger(__name__)


@dataclass
class Swept:
    uploads: int = 0
    idempotency_keys: int = 0


async def sweep(service: ImageService, now: datetime | None = None) -> Swept:
    now = now or utcnow()
    swept = Swept()
    uploads = ResumableUploads(service)
    for upload in await service.meta.pending_uploads(expired_before=now):
        if leases.locked(upload, now):
            continue  # a request is on it; it renews the expiry, or the next sweep looks again
        try:
            claimed = await leases.save(service.meta, upload, lock=secrets.token_hex(8), lock_expires=now + leases.LEASE)
        except Conflict:
            continue
        await uploads.discard(claimed)
        swept.uploads += 1
    swept.idempotency_keys = await service.meta.purge_idempotency(now)
    return swept


async def background(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: sweep every `uploads.sweep_interval_seconds` while the app runs."""
    interval = app[CONFIG].uploads.sweep_interval_seconds

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                swept = await sweep(app[SERVICE])
                if swept.uploads or swept.idempotency_keys:
                    log.info("swept %d expired uploads and %d idempotency keys", swept.uploads, swept.idempotency_keys)
            except GatewayError as exc:
                log.warning("the upload sweep failed: %s", exc.message)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
