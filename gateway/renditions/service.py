"""Renditions as the service makes them: look in the object store, render when absent, store,
presign. The object is the cache, shared by every replica.

Order of writes: a rendition is stored only for an image whose record exists, and checked again
after the store; if the image was deleted meanwhile the rendition is removed at once (and, should
that fail, `reconcile` removes it, as it does any rendition whose image is gone). Puts never
replace: a replica that loses the race to store the same rendition gets `Conflict` and serves
the winner's object, which is the same rendition.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from gateway.config import Config
from gateway.errors import Conflict, GatewayError, NotFound, TooLarge
from gateway.metadata.base import ImageRecord
from gateway.renditions.render import Rendered, Renderer
from gateway.renditions.spec import Spec, Wanted, resolve
from gateway.service import EVERYONE, ImageService, Scope
from gateway.storage.base import rendition_prefix

if TYPE_CHECKING:
    from gateway.metrics import Metrics

log = logging.getLogger(__name__)

# Keys this process saw stored, so a warm request costs what an original's redirect does (no
# listing). Bounded in size and age: a rendition removed behind our back (its image deleted and
# re-imported under the same id through another replica) is looked up again within a minute.
_KNOWN_KEYS = 10_000
_KNOWN_SECONDS = 60.0


class RenditionService:
    def __init__(self, images: ImageService, config: Config, metrics: Metrics | None = None):
        self.images = images
        self.config = config
        self.metrics = metrics
        settings = config.renditions
        on_queue = metrics.render_queue.set if metrics is not None else None
        self.renderer = Renderer(settings.workers, settings.queue_size, config.limits.max_image_pixels, on_queue)
        # One render per rendition key in this process; later askers await the first one.
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._known: OrderedDict[str, float] = OrderedDict()

    def close(self) -> None:
        self.renderer.close()

    async def url(self, collection: str, image_id: str, wanted: Wanted, accept: str = "", *, scope: Scope = EVERYONE) -> tuple[str, Spec]:
        """A presigned URL of the rendition (made first if it does not exist), and its spec; the
        caller's scope is checked as for the original."""
        record = await self.images.get(collection, image_id, scope=scope)
        spec = resolve(wanted, record.format, accept, self.config.renditions.max_dimension)
        key = spec.key(collection, image_id)
        if await self._exists(key):
            if self.metrics is not None:
                self.metrics.rendition_cache_hits.inc()
        else:
            await self._make_once(record, spec, key)
        filename = f"{PurePosixPath(record.image).stem or record.id}.{spec.format.extension}"
        url = await self.images.blobs.presign(
            key, ttl=self.config.storage.presign_ttl_seconds, content_type=spec.format.content_type, filename=filename
        )
        return url, spec

    async def _exists(self, key: str) -> bool:
        seen = self._known.get(key)
        if seen is not None and time.monotonic() - seen < _KNOWN_SECONDS:
            return True
        # A listing with the key as its prefix: one request, and no store method beyond the contract.
        async for blob in self.images.blobs.list(key):
            if blob.key == key:
                self._remember(key)
                return True
        self._known.pop(key, None)
        return False

    def _remember(self, key: str) -> None:
        self._known[key] = time.monotonic()
        self._known.move_to_end(key)
        while len(self._known) > _KNOWN_KEYS:
            self._known.popitem(last=False)

    async def record_event(self, kind: str, record: ImageRecord) -> None:
        """A service listener: a deleted image's renditions are no longer known to exist."""
        if kind == "delete":
            prefix = rendition_prefix(record.collection, record.id)
            for key in [k for k in self._known if k.startswith(prefix)]:
                del self._known[key]

    async def _make_once(self, record: ImageRecord, spec: Spec, key: str) -> None:
        task = self._in_flight.get(key)
        if task is None:
            task = asyncio.create_task(self._make(record, spec, key))
            self._in_flight[key] = task
            task.add_done_callback(lambda _: self._in_flight.pop(key, None))
        # Shielded: a client that leaves must not cancel the render others are waiting for.
        await asyncio.shield(task)

    async def _make(self, record: ImageRecord, spec: Spec, key: str) -> None:
        limit = self.config.limits.max_image_pixels
        if record.width * record.height > limit:
            # Never decoded: the record's size (from the upload's header) is over the limit.
            raise TooLarge(f"the image has {record.width}x{record.height} pixels, more than the limit of {limit}", code="too_many_pixels")
        rendered = await self.renderer.run(lambda: self._source(record), spec)
        if self.metrics is not None:
            self.metrics.renditions_rendered.labels(spec.format.name).inc()
            self.metrics.render_seconds.observe(rendered.seconds)
        await self._store(record, spec, key, rendered)

    async def _source(self, record: ImageRecord) -> bytes:
        return b"".join([chunk async for chunk in self.images.blobs.get(record.path)])

    async def _store(self, record: ImageRecord, spec: Spec, key: str, rendered: Rendered) -> None:
        blobs = self.images.blobs

        async def body() -> AsyncIterator[bytes]:
            yield rendered.data

        try:
            await blobs.put(key, body(), content_type=spec.format.content_type, filename=PurePosixPath(key).name)
        except Conflict:
            pass  # another replica stored it first; theirs is served
        try:
            await self.images.get(record.collection, record.id)
            self._remember(key)
        except NotFound:
            try:
                await blobs.delete(key)
            except GatewayError:
                log.warning("rendition %s of a deleted image stays for reconcile", key)
            raise
