"""The application factory: no globals, clients opened once in `cleanup_ctx`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

from aiohttp import web

from gateway.api import openapi
from gateway.auth.middleware import auth_context, authenticate
from gateway.edge import edge
from gateway import metrics
from gateway.api import collections, datasets, feeds, health, signed_downloads, v1
from gateway.api import tus, uploads
from gateway.uploads import sweep
from gateway.config import Config
from gateway.events import EventHub, EventWriter, open_event_log
from gateway.keys import BLOBS, CONFIG, EVENTS, METADATA, METRICS, SERVICE
from gateway.metadata import open_metadata_store
from gateway.middlewares import errors, request_context
from gateway.service import ImageService
from gateway.storage import open_blob_store


async def _backends(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    async with AsyncExitStack() as stack:
        measured = app[METRICS]
        blobs = metrics.instrument(await stack.enter_async_context(open_blob_store(config)), measured, "object_store")
        metadata = metrics.instrument(await stack.enter_async_context(open_metadata_store(config)), measured, "database")
        app[BLOBS] = blobs
        app[METADATA] = metadata
        app[SERVICE] = image_service = ImageService(blobs, metadata, config)
        event_log = await stack.enter_async_context(open_event_log(config))
        app[EVENTS] = hub = EventHub(event_log, config.events.poll_interval_seconds)
        writer = EventWriter(event_log)
        image_service.listeners += [measured.record_event, writer.publish]
        tasks = [asyncio.create_task(hub.run()), asyncio.create_task(writer.run())]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await writer.flush()


def create_app(config: Config) -> web.Application:
    # Bodies are read by our own bounded readers; aiohttp's limit applies only to `post()`.
    app = web.Application(middlewares=[request_context, edge, errors, authenticate], client_max_size=1024 * 1024)
    app[CONFIG] = config
    # Outermost, so it times and counts the whole answer as the client gets it.
    app[METRICS] = measured = metrics.Metrics()
    app.middlewares.insert(0, metrics.middleware(measured))
    app.on_shutdown.append(feeds.close_sockets)
    app.router.add_get("/metrics", metrics.exposition)
    app.add_routes(health.routes())
    app.add_routes(feeds.routes())
    app.cleanup_ctx.append(_backends)
    app.cleanup_ctx.append(auth_context)
    app.cleanup_ctx.append(sweep.background)
    app.add_routes(collections.routes())
    # Before v1's: /v1/images/tus must not be taken for an image id.
    app.add_routes(tus.routes())
    app.add_routes(uploads.routes(config))
    app.add_routes(v1.routes())
    app.add_routes(datasets.routes())
    app.add_routes(openapi.routes())
    if config.storage.backend == "filesystem":
        app.add_routes(signed_downloads.routes())
    return app
