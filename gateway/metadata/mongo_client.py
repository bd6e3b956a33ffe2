"""The one `AsyncMongoClient` the MongoDB store and event log share (one connection pool to the
database), and the translation of the driver's errors both apply at their boundary."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError, PyMongoError

from gateway.config import Config
from gateway.errors import Unavailable

Client = AsyncMongoClient[dict[str, Any]]
_TIMEOUT_MS = 5000


@asynccontextmanager
async def connect(config: Config) -> AsyncIterator[Client]:
    """A client for the configured database, closed when the context ends: whoever enters
    this owns the client, and what it is handed to only borrows it."""
    assert config.metadata.mongodb_url is not None  # enforced by config validation
    # tz_aware: datetimes come back as UTC-aware, equal to what was stored.
    client: Client = AsyncMongoClient(
        config.metadata.mongodb_url.reveal(), tz_aware=True, serverSelectionTimeoutMS=_TIMEOUT_MS,
        connectTimeoutMS=_TIMEOUT_MS, appname="image-gateway",
    )
    try:
        yield client
    finally:
        await client.close()


@contextmanager
def unavailable_on_failure() -> Iterator[None]:
    """The driver's errors raised inside become `Unavailable`."""
    try:
        yield
    except PyMongoError as exc:
        raise Unavailable(f"the metadata database failed ({exc.__class__.__name__})", code="database_unavailable") from exc


async def upsert_one(collection: Any, spec: dict[str, Any], update: dict[str, Any]) -> None:
    """`update_one` that creates the document where none matches. Two first upserts may race
    to create it, and one fails on the unique `_id`: the document exists then, so it is updated."""
    try:
        await collection.update_one(spec, update, upsert=True)
    except DuplicateKeyError:
        await collection.update_one(spec, update)
