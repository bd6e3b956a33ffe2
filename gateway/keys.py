"""Every piece of application state, each behind a typed `web.AppKey`."""

from __future__ import annotations

from aiohttp import web

from gateway.auth.policy import Authenticator
from gateway.config import Config
from gateway.events import EventHub
from gateway.metadata.base import MetadataStore
from gateway.metrics import Metrics
from gateway.renditions.service import RenditionService
from gateway.service import ImageService
from gateway.storage.base import BlobStore

CONFIG = web.AppKey("config", Config)
BLOBS = web.AppKey("blobs", BlobStore)
METADATA = web.AppKey("metadata", MetadataStore)
SERVICE = web.AppKey("service", ImageService)
AUTH = web.AppKey("auth", Authenticator)
METRICS = web.AppKey("metrics", Metrics)
EVENTS = web.AppKey("events", EventHub)
RENDITIONS = web.AppKey("renditions", RenditionService)

REQUEST_ID = web.RequestKey("request_id", str)
# The authenticated caller's id, recorded as the image's `owner`.
USER_ID = web.RequestKey("user_id", str)
# Set when each user reaches only their own images (auth.scope: user): listings show only theirs.
OWNER_SCOPE = web.RequestKey("owner_scope", str)
