"""Metadata backends: image records and, in the same database, the event log.

The configuration names the backend; this is the only place that reads that choice. How a
backend connects is its own class's business (`open`, `open_with_event_log`), and each backend's
driver is imported only when that backend runs.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

from gateway.config import Config
from gateway.metadata.base import EventLog, MetadataStore


def _backend(config: Config) -> type[MetadataStore]:
    if config.metadata.backend == "mongodb":
        from gateway.metadata.mongo import MongoMetadataStore

        return MongoMetadataStore
    from gateway.metadata.sqlite import SqliteMetadataStore

    return SqliteMetadataStore


def open_metadata(config: Config) -> AbstractAsyncContextManager[tuple[MetadataStore, EventLog]]:
    """The store and the event log, as the app runs them: one connection to the database where
    the backend can share it, closed when the context ends."""
    return _backend(config).open_with_event_log(config)


def open_metadata_store(config: Config) -> AbstractAsyncContextManager[MetadataStore]:
    """Only the store (maintenance commands, tests)."""
    return _backend(config).open(config)


async def migrate_metadata(config: Config) -> dict[str, Any]:
    """Bring stored data to the current layout (`gateway migrate`); what was done."""
    if config.metadata.backend == "mongodb":
        from gateway.metadata.mongo_migrate import migrate_database

        return (await migrate_database(config)).as_dict()
    # SQLite's schema migrates whenever it opens.
    async with open_metadata_store(config):
        return {"moved": 0, "already_there": 0, "collections": {}}
