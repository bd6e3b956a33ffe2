"""Every piece of application state, each behind a typed `web.AppKey`."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from gateway.auth.policy import Authenticator, Principal
from gateway.config import Config
from gateway.service.events import EventHub
from gateway.metadata.base import MetadataStore
from gateway.metrics import Metrics
from gateway.renditions.service import RenditionService
from gateway.service import ImageService, Scope
from gateway.storage.base import BlobStore, LocalFiles

CONFIG = web.AppKey("config", Config)
BLOBS = web.AppKey("blobs", BlobStore)
METADATA = web.AppKey("metadata", MetadataStore)
SERVICE = web.AppKey("service", ImageService)
AUTH = web.AppKey("auth", Authenticator)
METRICS = web.AppKey("metrics", Metrics)
EVENTS = web.AppKey("events", EventHub)
# Set only when the object store keeps its objects as local files (the filesystem backend).
LOCAL_FILES = web.AppKey("local_files", LocalFiles)
# The tasks answering requests (WebSocket feeds aside): graceful shutdown waits for none left.
IN_FLIGHT: web.AppKey[set[asyncio.Task[Any]]] = web.AppKey("in_flight")
RENDITIONS = web.AppKey("renditions", RenditionService)

REQUEST_ID = web.RequestKey("request_id", str)
# The authenticated caller (set by the auth middleware when credentials were presented).
PRINCIPAL = web.RequestKey("principal", Principal)
# The authenticated caller's id, recorded as the image's `owner`.
USER_ID = web.RequestKey("user_id", str)
# Whose images the caller reaches; the service's reads and writes take it. Absent: everyone's.
SCOPE = web.RequestKey("scope", Scope)
