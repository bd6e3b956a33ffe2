"""The application factory: no globals, clients opened once in `cleanup_ctx`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

from aiohttp import web

from gateway.auth.middleware import admission, auth_context
from gateway import metrics
from gateway.api import feeds
from gateway.api.routes import setup_routes
from gateway.config import Config
from gateway.service.events import EventHub, EventWriter
from gateway.keys import BLOBS, CONFIG, EVENTS, IN_FLIGHT, LOCAL_FILES, METADATA, METRICS, RENDITIONS, SERVICE
from gateway.metadata import open_metadata
from gateway.middlewares import pipeline
from gateway.renditions.service import RenditionService
from gateway.service import ImageService
from gateway.storage import open_blob_store
from gateway.storage.base import LocalFiles
from gateway.uploads import sweep


async def _backends(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    async with AsyncExitStack() as stack:
        measured = app[METRICS]
        store = await stack.enter_async_context(open_blob_store(config))
        if isinstance(store, LocalFiles):
            # Its files are served by the gateway's signed-download route.
            app[LOCAL_FILES] = store
        blobs = metrics.instrument(store, measured, "object_store")
        records, event_log = await stack.enter_async_context(open_metadata(config))
        metadata = metrics.instrument(records, measured, "database")
        app[BLOBS] = blobs
        app[METADATA] = metadata
        app[SERVICE] = image_service = ImageService(blobs, metadata, config)
        app[RENDITIONS] = renditions = RenditionService(image_service, config, measured)
        stack.callback(renditions.close)
        app[EVENTS] = hub = EventHub(event_log, config.events.poll_interval_seconds)
        writer = EventWriter(event_log)
        image_service.listeners += [measured.record_event, writer.publish, renditions.record_event]
        tasks = [asyncio.create_task(hub.run()), asyncio.create_task(writer.run())]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await writer.flush()


def create_app(config: Config) -> web.Application:
    measured = metrics.Metrics()
    in_flight: set[asyncio.Task[Any]] = set()
    # One middleware: metrics, request context, edge, errors and authentication, in that order.
    middlewares = [pipeline(config, measured, in_flight, admission(config))]
    # Bodies are read by our own bounded readers; aiohttp's limit applies only to `post()`.
    app = web.Application(middlewares=middlewares, client_max_size=1024 * 1024)
    app[CONFIG] = config
    app[METRICS] = measured
    app[IN_FLIGHT] = in_flight
    app.on_shutdown.append(feeds.close_sockets)
    app.cleanup_ctx.append(_backends)
    app.cleanup_ctx.append(auth_context)
    app.cleanup_ctx.append(sweep.background)
    setup_routes(app, config)
    return app
