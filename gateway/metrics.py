"""Prometheus metrics: one registry per application (tests build many apps in one process).

Requests are counted by route template, never by raw path, so label cardinality stays bounded
(the request middleware, `middlewares.measure`, records them). The stores are wrapped rather
than edited: every backend is measured the same way.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import contextmanager
from typing import Any, Iterator

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from gateway.errors import GatewayError, NotFound
from gateway.metadata.base import ImageRecord

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# Outcomes a caller asked for, not failures of the dependency.
_EXPECTED = (NotFound,)

BLOB_OPERATIONS = (
    "put", "get", "delete", "delete_many", "list", "presign", "ping",
    "append_staged", "finish_staged", "discard_staged", "upload_form", "head", "get_range",
)  # fmt: skip
METADATA_OPERATIONS = (
    "insert", "insert_many", "get", "find", "count", "replace_properties", "delete", "delete_records", "records",
    "ensure_collection", "collection_generation", "begin_drop", "finish_drop", "collections",
    "collection_stats", "ping",
    "insert_upload", "get_upload", "replace_upload", "delete_upload", "pending_uploads",
    "claim_idempotency", "replace_idempotency", "purge_idempotency",
)  # fmt: skip


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("gateway_http_requests", "HTTP requests answered", ["method", "route", "status"], registry=r)
        self.request_seconds = Histogram(
            "gateway_http_request_duration_seconds", "Time to answer, by route template", ["method", "route"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.in_progress = Gauge("gateway_http_requests_in_progress", "Requests being handled", registry=r)
        self.bytes_received = Counter("gateway_http_received_bytes", "Request body bytes with a declared length", registry=r)
        self.bytes_served = Counter("gateway_http_served_bytes", "Response body bytes sent", registry=r)
        self.images_stored = Counter("gateway_images_stored", "Images uploaded and recorded", ["collection"], registry=r)
        self.images_deleted = Counter("gateway_images_deleted", "Images deleted", ["collection"], registry=r)
        self.bytes_uploaded = Counter("gateway_uploaded_bytes", "Bytes of images stored", registry=r)
        self.dependency_seconds = Histogram(
            "gateway_dependency_duration_seconds", "Calls to the object store, database and identity service",
            ["dependency", "operation"], buckets=_LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.dependency_errors = Counter(
            "gateway_dependency_errors", "Failed calls to the object store, database and identity service",
            ["dependency", "operation"], registry=r,
        )  # fmt: skip

        # The labelled children of the per-request metrics, looked up once per label set: a
        # `labels()` call costs a lock and a tuple per request, and the label sets are bounded.
        self._answered: dict[tuple[str, str, int], tuple[Any, Any]] = {}

        self.renditions_rendered = Counter("gateway_renditions_rendered", "Renditions rendered and stored", ["format"], registry=r)
        self.rendition_cache_hits = Counter("gateway_rendition_cache_hits", "Rendition requests served from a stored rendition", registry=r)
        self.render_seconds = Histogram("gateway_render_duration_seconds", "Time to render one rendition", buckets=_LATENCY_BUCKETS, registry=r)
        self.render_queue = Gauge("gateway_render_queue_depth", "Renders waiting for a worker", registry=r)

    def answered(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request and time it, by route template."""
        key = (method, route, status)
        children = self._answered.get(key)
        if children is None:
            children = self._answered[key] = (self.requests.labels(method, route, str(status)), self.request_seconds.labels(method, route))
        children[0].inc()
        children[1].observe(seconds)

    @contextmanager
    def observe(self, dependency: str, operation: str) -> Iterator[None]:
        """Time one call to a dependency (`object_store`, `database`, `identity`); count failures."""
        started = time.perf_counter()
        try:
            yield
        except _EXPECTED:
            raise
        except (GatewayError, OSError, TimeoutError):
            self.dependency_errors.labels(dependency, operation).inc()
            raise
        finally:
            self.dependency_seconds.labels(dependency, operation).observe(time.perf_counter() - started)

    async def record_event(self, kind: str, record: ImageRecord) -> None:
        """A service listener: counts stored and deleted images."""
        if kind == "upload":
            self.images_stored.labels(record.collection).inc()
            self.bytes_uploaded.inc(record.size)
        elif kind == "delete":
            self.images_deleted.labels(record.collection).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class Instrumented:
    """Wraps a store: its coroutine and async-iterator methods named in `operations` are timed
    and their failures counted; everything else is passed through untouched."""

    def __init__(self, inner: Any, metrics: Metrics, dependency: str, operations: tuple[str, ...]):
        self._inner = inner
        self._metrics = metrics
        self._dependency = dependency
        self._operations = operations

    @property
    def wrapped(self) -> Any:
        return self._inner

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if name not in self._operations or not callable(attribute):
            return attribute
        observe = self._metrics.observe
        dependency = self._dependency
        # Keep the kind of callable (async generator or coroutine), which wrappers inspect.
        if inspect.isasyncgenfunction(attribute):

            async def stream(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
                iterator = attribute(*args, **kwargs)
                while True:
                    # The wait for each item is what a slow store costs a streaming reader.
                    with observe(dependency, name):
                        try:
                            item = await iterator.__anext__()
                        except StopAsyncIteration:
                            return
                    yield item

            return stream

        async def call(*args: Any, **kwargs: Any) -> Any:
            with observe(dependency, name):
                return await attribute(*args, **kwargs)

        return call


def instrument(store: Any, metrics: Metrics, dependency: str) -> Any:
    operations = BLOB_OPERATIONS if dependency == "object_store" else METADATA_OPERATIONS
    return Instrumented(store, metrics, dependency, operations)


def client_trace(metrics: Metrics, dependency: str) -> aiohttp.TraceConfig:
    """Times every request of an outgoing aiohttp session (the identity service, JWKS) and counts
    failures: no answer, or a 5xx. A 401/403 is the service's verdict, not its failure."""
    trace = aiohttp.TraceConfig()

    async def start(session: Any, context: Any, params: Any) -> None:
        context.started = time.perf_counter()

    async def end(session: Any, context: Any, params: aiohttp.TraceRequestEndParams) -> None:
        metrics.dependency_seconds.labels(dependency, "request").observe(time.perf_counter() - context.started)
        if params.response.status >= 500:
            metrics.dependency_errors.labels(dependency, "request").inc()

    async def failed(session: Any, context: Any, params: Any) -> None:
        metrics.dependency_seconds.labels(dependency, "request").observe(time.perf_counter() - context.started)
        metrics.dependency_errors.labels(dependency, "request").inc()

    trace.on_request_start.append(start)
    trace.on_request_end.append(end)
    trace.on_request_exception.append(failed)
    return trace


def exposition_handler(metrics: Metrics) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The `/metrics` handler, bound to this app's registry."""

    async def exposition(request: web.Request) -> web.Response:
        return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return exposition
