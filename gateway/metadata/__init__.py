"""Metadata stores. `open_metadata_store` picks the backend named by the configuration."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from gateway.config import Config
from gateway.metadata.base import MetadataStore


@asynccontextmanager
async def open_metadata_store(config: Config) -> AsyncIterator[MetadataStore]:
    if config.metadata.backend == "mongodb":
        from gateway.metadata.mongo import MongoMetadataStore

        assert config.metadata.mongodb_url is not None  # enforced by config validation
        async with MongoMetadataStore(config.metadata.mongodb_url.reveal(), config.metadata.mongodb_db) as store:
            yield store
        return
    from gateway.metadata.sqlite import SqliteMetadataStore

    async with SqliteMetadataStore(config.data_dir / "metadata.sqlite3") as store:
        yield store
