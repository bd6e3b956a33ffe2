"""Every piece of application state, each behind a typed `web.AppKey`."""

from __future__ import annotations

from aiohttp import web

from gateway.config import Config
from gateway.metadata.base import MetadataStore
from gateway.service import ImageService
from gateway.storage.base import BlobStore

CONFIG = web.AppKey("config", Config)
BLOBS = web.AppKey("blobs", BlobStore)
METADATA = web.AppKey("metadata", MetadataStore)
SERVICE = web.AppKey("service", ImageService)

REQUEST_ID = web.RequestKey("request_id", str)
# The authenticated caller's id, recorded as the image's `owner`.
USER_ID = web.RequestKey("user_id", str)
