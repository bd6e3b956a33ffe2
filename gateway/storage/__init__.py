"""Object stores. `open_blob_store` picks the backend named by the configuration."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from gateway.config import Config
from gateway.storage.base import BlobStore


@asynccontextmanager
async def open_blob_store(config: Config) -> AsyncIterator[BlobStore]:
    # Each backend's SDK is imported only when that backend runs.
    if config.storage.backend == "s3":
        from gateway.storage.s3 import S3BlobStore

        async with S3BlobStore.open(config.storage.s3) as store:
            yield store
        return
    from gateway.storage.signing import UrlSigner, load_or_create_secret
    from gateway.storage.filesystem import FilesystemBlobStore

    secret = config.storage.signing_secret
    key = secret.reveal().encode() if secret else load_or_create_secret(config.data_dir / ".signing_key")
    yield FilesystemBlobStore(config.data_dir / "objects", UrlSigner(key))
