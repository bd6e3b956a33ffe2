"""Object stores. The configuration names the backend; this is the only place that reads that
choice. How a backend connects is its own class's business (`open`), and each backend's SDK is
imported only when that backend runs."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from gateway.config import Config
from gateway.storage.base import BlobStore


def _backend(config: Config) -> type[BlobStore]:
    if config.storage.backend == "s3":
        from gateway.storage.s3 import S3BlobStore

        return S3BlobStore
    from gateway.storage.filesystem import FilesystemBlobStore

    return FilesystemBlobStore


def open_blob_store(config: Config) -> AbstractAsyncContextManager[BlobStore]:
    return _backend(config).open(config)
