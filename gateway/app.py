"""The application factory: no globals, clients opened once in `cleanup_ctx`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

from aiohttp import web

from gateway import openapi
from gateway.api import collections, objects, v1
from gateway.config import Config
from gateway.keys import BLOBS, CONFIG, METADATA, SERVICE
from gateway.metadata import open_metadata_store
from gateway.middlewares import errors, request_context
from gateway.service import ImageService
from gateway.storage import open_blob_store


async def _backends(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    async with AsyncExitStack() as stack:
        blobs = await stack.enter_async_context(open_blob_store(config))
        metadata = await stack.enter_async_context(open_metadata_store(config))
        app[BLOBS] = blobs
        app[METADATA] = metadata
        app[SERVICE] = ImageService(blobs, metadata, config)
        yield


def create_app(config: Config) -> web.Application:
    # Bodies are read by our own bounded readers; aiohttp's limit applies only to `post()`.
    app = web.Application(middlewares=[request_context, errors], client_max_size=1024 * 1024)
    app[CONFIG] = config
    app.cleanup_ctx.append(_backends)
    app.add_routes(collections.routes())
    app.add_routes(v1.routes())
    app.add_routes(openapi.routes())
    if config.storage.backend == "filesystem":
        app.add_routes(objects.routes())
    return app
