"""SQLite metadata, the embedded default. WAL mode; every call runs on one dedicated thread so the
event loop never blocks and the connection is never shared between threads.

The schema is versioned with `PRAGMA user_version`; `MIGRATIONS[n]` takes version n to n+1.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

from gateway.config import Config
from gateway.errors import Conflict, NotFound
from gateway.metadata.base import CollectionStats, EventLog, IdempotencyEntry, ImageRecord, PendingUpload, to_millis, utcnow
from gateway.metadata.query import ID_FIELD, SHA256_FIELD, Condition, ListQuery, keyset, order
from gateway.metadata.sqlite_events import SqliteEventLog
from gateway.metadata.sqlite_thread import SqliteThread, connect

# In the data directory; the event log has its own file, so its appends never wait for the
# metadata database's write lock.
DATABASE_FILE = "metadata.sqlite3"
EVENTS_FILE = "events.sqlite3"

T = TypeVar("T")

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE collections (
        name TEXT PRIMARY KEY,
        generation TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'active',
        created_at TEXT NOT NULL
    );
    CREATE TABLE images (
        collection TEXT NOT NULL,
        id TEXT NOT NULL,
        image TEXT NOT NULL,
        time TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        content_type TEXT NOT NULL,
        format TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        size INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        path TEXT NOT NULL,
        properties TEXT NOT NULL,
        owner TEXT,
        version INTEGER NOT NULL DEFAULT 1,
        PRIMARY KEY (collection, id)
    ) WITHOUT ROWID;
    CREATE INDEX images_by_time ON images (collection, time, id);
    CREATE INDEX images_by_sha256 ON images (sha256);
    """,
    # An owner's pages (`auth.scope: user`) are index range seeks too, not filtered scans.
    """
    CREATE INDEX images_by_owner ON images (collection, owner, time, id);
    """,
    "ALTER TABLE images ADD COLUMN orientation INTEGER",
    # To v4: uploads in progress (tus, direct) and idempotency keys. Written to be idempotent
    # (IF NOT EXISTS), so applying it to a database that has them changes nothing.
    """
    CREATE TABLE IF NOT EXISTS uploads (
        id TEXT PRIMARY KEY,
        document TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        version INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS uploads_by_expiry ON uploads (expires_at);
    CREATE TABLE IF NOT EXISTS idempotency (
        scope TEXT PRIMARY KEY,
        document TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        version INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS idempotency_by_expiry ON idempotency (expires_at);
    """,
)

_COLUMNS = (
    "collection, id, image, time, updated_at, content_type, format, width, height, size, sha256, path, "
    "properties, owner, version, orientation"
)
_MARKS = ", ".join("?" for _ in _COLUMNS.split(","))


def _ts(value: datetime) -> str:
    # Fixed width, so text order is time order. Cut to milliseconds as BSON dates are, so stored
    # times and filter bounds compare exactly as they do in MongoDB.
    return to_millis(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _dt(value: str) -> datetime:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


def _row_to_record(row: sqlite3.Row) -> ImageRecord:
    return ImageRecord(
        collection=row["collection"],
        id=row["id"],
        image=row["image"],
        time=_dt(row["time"]),
        updated_at=_dt(row["updated_at"]),
        content_type=row["content_type"],
        format=row["format"],
        width=row["width"],
        height=row["height"],
        size=row["size"],
        sha256=row["sha256"],
        path=row["path"],
        properties=json.loads(row["properties"]),
        owner=row["owner"],
        version=row["version"],
        orientation=row["orientation"],
    )


_SQL_OPS = {"$eq": "=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


def _typed_match(alias: str, op: str, value: Any, params: list[Any]) -> str:
    """`alias.value <op> value` with MongoDB's type bracketing: numbers compare with numbers,
    strings with strings, booleans with booleans, and nothing else matches."""
    sql_op = _SQL_OPS[op]
    if value is None:
        return f"{alias}.type = 'null'" if op in ("$eq", "$gte", "$lte") else "0"
    if isinstance(value, bool):
        params.append(int(value))
        return f"({alias}.type IN ('true', 'false') AND ({alias}.type = 'true') {sql_op} ?)"
    if isinstance(value, (int, float)):
        params.append(value)
        return f"({alias}.type IN ('integer', 'real') AND {alias}.value {sql_op} ?)"
    params.append(value)
    return f"({alias}.type = 'text' AND {alias}.value {sql_op} ?)"


def _property_match(key: str, op: str, value: Any, params: list[Any]) -> str:
    """A property matches when its value does or, for an array, when any element does.

    Top-level keys are found with json_each and a bound `key = ?`, so a key is never part of SQL
    or JSON-path text, whatever characters it holds."""
    params.append(key)
    scalar = _typed_match("p", op, value, params)
    element = _typed_match("e", op, value, params)
    match = (
        f"EXISTS (SELECT 1 FROM json_each(images.properties) AS p WHERE p.key = ? AND ({scalar} OR "
        f"(p.type = 'array' AND EXISTS (SELECT 1 FROM json_each(p.value) AS e WHERE {element}))))"
    )
    if value is None and op in ("$eq", "$gte", "$lte"):
        # MongoDB: {k: null} also matches records that lack k.
        params.append(key)
        return f"({match} OR NOT EXISTS (SELECT 1 FROM json_each(images.properties) AS p WHERE p.key = ?))"
    return match


def _condition(condition: Condition, params: list[Any]) -> str:
    field, op, value = condition.field, condition.op, condition.value
    if field in (ID_FIELD, SHA256_FIELD):
        return _column_condition("id" if field == ID_FIELD else "sha256", op, value, params)
    if field == "time":
        if op == "$exists":
            return "1" if value else "0"
        if op in ("$in", "$nin"):
            params.extend(_ts(v) for v in value)
            marks = ", ".join("?" for _ in value) or "NULL"
            return f"time {'IN' if op == '$in' else 'NOT IN'} ({marks})" if value else ("0" if op == "$in" else "1")
        params.append(_ts(value))
        return f"time {'<>' if op == '$ne' else _SQL_OPS[op]} ?"
    if op == "$exists":
        params.append(field)
        return f"{'' if value else 'NOT '}EXISTS (SELECT 1 FROM json_each(images.properties) AS p WHERE p.key = ?)"
    if op in ("$ne", "$nin"):
        positive = Condition(field, "$eq" if op == "$ne" else "$in", value)
        return f"NOT {_condition(positive, params)}"
    if op == "$in":
        if not value:
            return "0"
        return "(" + " OR ".join(_property_match(field, "$eq", v, params) for v in value) + ")"
    return _property_match(field, op, value, params)


def _column_condition(column: str, op: str, value: Any, params: list[Any]) -> str:
    if op in ("$in", "$nin"):
        if not value:
            return "0" if op == "$in" else "1"
        params.extend(value)
        return f"{column} {'IN' if op == '$in' else 'NOT IN'} ({', '.join('?' for _ in value)})"
    params.append(value)
    return f"{column} {'<>' if op == '$ne' else '='} ?"


# A property's sort position (see query.sort_position): its bracket, then its value within it.
_BRACKET = (
    "(SELECT CASE p.type WHEN 'integer' THEN 1 WHEN 'real' THEN 1 WHEN 'text' THEN 2 WHEN 'object' THEN 3 "
    "WHEN 'array' THEN 4 WHEN 'true' THEN 5 WHEN 'false' THEN 5 END FROM json_each(images.properties) AS p WHERE p.key = ?)"
)
_IN_BRACKET = (
    "(SELECT CASE WHEN p.type IN ('integer', 'real', 'text') THEN p.value WHEN p.type = 'true' THEN 1 "
    "WHEN p.type = 'false' THEN 0 END FROM json_each(images.properties) AS p WHERE p.key = ?)"
)


def _sort_terms(query: ListQuery) -> tuple[list[tuple[str, list[Any], bool]], list[Any] | None]:
    """The ORDER BY terms (SQL, its parameters, descending) and the cursor's value for each."""
    keys = order(query)
    cursor = keyset(query)
    terms: list[tuple[str, list[Any], bool]] = []
    values: list[Any] = []
    for index, key in enumerate(keys):
        value = cursor.values[index] if cursor is not None else None
        if key.field == "time":
            terms.append(("time", [], key.descending))
            values.append(_ts(value) if value is not None else None)
        elif key.field == ID_FIELD:
            terms.append(("id", [], key.descending))
            values.append(value)
        else:
            terms += [(_BRACKET, [key.field], key.descending), (_IN_BRACKET, [key.field], key.descending)]
            values += list(value) if value is not None else [None, None]
    terms.append(("id", [], keys[-1].descending))
    values.append(cursor.id if cursor is not None else None)
    return terms, (values if cursor is not None else None)


def _after(terms: list[tuple[str, list[Any], bool]], values: list[Any], params: list[Any]) -> str:
    """Rows strictly after the cursor in the order of `terms`; NULL (a missing property) sorts
    first ascending and last descending, as in MongoDB."""
    alternatives = []
    for index, (sql, args, descending) in enumerate(terms):
        value = values[index]
        if value is None and descending:
            continue  # nothing sorts after NULL going down
        clause: list[str] = []
        local: list[Any] = []
        for (eq_sql, eq_args, _), eq_value in zip(terms[:index], values[:index]):
            clause.append(f"{eq_sql} IS NULL" if eq_value is None else f"{eq_sql} = ?")
            local += eq_args if eq_value is None else [*eq_args, eq_value]
        if value is None:
            clause.append(f"{sql} IS NOT NULL")
            local += args
        elif descending:
            clause.append(f"({sql} < ? OR {sql} IS NULL)")
            local += [*args, value, *args]
        else:
            clause.append(f"{sql} > ?")
            local += [*args, value]
        alternatives.append("(" + " AND ".join(clause) + ")")
        params += local
    return "(" + (" OR ".join(alternatives) or "0") + ")"


def _where(collection: str, conditions: tuple[Condition, ...], owner: str | None, params: list[Any]) -> str:
    params.append(collection)
    clauses = ["collection = ?"]
    if owner is not None:
        params.append(owner)
        clauses.append("owner = ?")
    clauses += [_condition(c, params) for c in conditions]
    return " AND ".join(clauses)


def _row(record: ImageRecord) -> tuple[Any, ...]:
    return (
        record.collection, record.id, record.image, _ts(record.time), _ts(record.updated_at),
        record.content_type, record.format, record.width, record.height, record.size,
        record.sha256, record.path, json.dumps(record.properties), record.owner, record.version,
        record.orientation,
    )


def find_sql(collection: str, query: ListQuery) -> tuple[str, list[Any]]:
    """The query of one page. A page in time order is a range seek on (collection, time, id), or
    on (collection, owner, time, id) for an owner's: the keyset is a row-value comparison, which
    SQLite turns into the range's start (an `OR` of the two cases it only filters with, walking
    from the top of the collection: O(depth) instead of O(page)). Property conditions filter the
    rows met on the way; `skip` walks past its rows. Other orders (`query.sort`) sort the matching
    rows by their terms, with the keyset spelled out term by term."""
    if query.sort:
        return _sorted_find_sql(collection, query)
    params: list[Any] = []
    where = _where(collection, query.conditions, query.owner, params)
    direction = "DESC" if query.descending else "ASC"
    if query.after is not None:
        where += f" AND (time, id) {'<' if query.descending else '>'} (?, ?)"
        params += [_ts(query.after.time), query.after.id]
    params += [query.limit, query.skip]
    return f"SELECT {_COLUMNS} FROM images WHERE {where} ORDER BY time {direction}, id {direction} LIMIT ? OFFSET ?", params


def _sorted_find_sql(collection: str, query: ListQuery) -> tuple[str, list[Any]]:
    params: list[Any] = []
    where = _where(collection, query.conditions, query.owner, params)
    terms, values = _sort_terms(query)
    if values is not None:
        where += " AND " + _after(terms, values, params)
    order_by = ", ".join(f"{sql} {'DESC' if descending else 'ASC'}" for sql, _, descending in terms)
    for _, args, _ in terms:
        params += args
    params += [query.limit, query.skip]
    return f"SELECT {_COLUMNS} FROM images WHERE {where} ORDER BY {order_by} LIMIT ? OFFSET ?", params


def count_sql(collection: str, conditions: tuple[Condition, ...], owner: str | None) -> tuple[str, list[Any]]:
    params: list[Any] = []
    return f"SELECT COUNT(*) FROM images WHERE {_where(collection, conditions, owner, params)}", params


class SqliteMetadataStore(SqliteThread):
    name = "sqlite"

    @classmethod
    @asynccontextmanager
    async def open(cls, config: Config) -> AsyncIterator[SqliteMetadataStore]:
        async with cls(config.data_dir / DATABASE_FILE) as store:
            yield store

    @classmethod
    @asynccontextmanager
    async def open_with_event_log(cls, config: Config) -> AsyncIterator[tuple[SqliteMetadataStore, EventLog]]:
        retention = timedelta(seconds=config.events.retention_seconds)
        async with cls.open(config) as store, SqliteEventLog(config.data_dir / EVENTS_FILE, retention) as events:
            yield store, events

    def _open(self) -> None:
        db = connect(self._path)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA foreign_keys=ON")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise RuntimeError(f"{self._path} has schema version {version}, newer than this gateway knows ({len(MIGRATIONS)})")
        for number in range(version, len(MIGRATIONS)):
            db.execute("BEGIN IMMEDIATE")
            # Another process (a worker of --workers, a replica) may have migrated while this
            # one waited for the write lock.
            if db.execute("PRAGMA user_version").fetchone()[0] > number:
                db.execute("COMMIT")
                continue
            for statement in filter(str.strip, MIGRATIONS[number].split(";")):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {number + 1}")
            db.execute("COMMIT")
        self._db = db

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None, "SqliteMetadataStore used outside its context"
        return self._db

    # --- records ---------------------------------------------------------------------------

    async def insert(self, record: ImageRecord) -> None:
        def insert() -> None:
            try:
                self.db.execute(f"INSERT INTO images ({_COLUMNS}) VALUES ({_MARKS})", _row(record))
            except sqlite3.IntegrityError:
                raise Conflict("an image with that id exists", code="image_exists") from None

        await self._run(insert)

    async def insert_many(self, records: list[ImageRecord]) -> None:
        def insert_many() -> int:
            taken = 0
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for record in records:
                    try:
                        self.db.execute(f"INSERT INTO images ({_COLUMNS}) VALUES ({_MARKS})", _row(record))
                    except sqlite3.IntegrityError:
                        taken += 1
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            return taken

        if await self._run(insert_many):
            raise Conflict("an image with that id exists", code="image_exists")

    async def get(self, collection: str, image_id: str) -> ImageRecord:
        def get() -> ImageRecord:
            row = self.db.execute(
                f"SELECT {_COLUMNS} FROM images WHERE collection = ? AND id = ?", (collection, image_id)
            ).fetchone()
            if row is None:
                raise NotFound("no image with that id", code="image_not_found")
            return _row_to_record(row)

        return await self._run(get)

    async def find(self, collection: str, query: ListQuery) -> list[ImageRecord]:
        sql, params = find_sql(collection, query)
        rows = await self._run(lambda: self.db.execute(sql, params).fetchall())
        return [_row_to_record(row) for row in rows]

    async def count(self, collection: str, conditions: tuple[Condition, ...], *, owner: str | None = None) -> int:
        sql, params = count_sql(collection, conditions, owner)
        return await self._run(lambda: self.db.execute(sql, params).fetchone()[0])

    async def replace_properties(self, record: ImageRecord, expected_version: int) -> ImageRecord | None:
        def update() -> ImageRecord | None:
            cursor = self.db.execute(
                "UPDATE images SET properties = ?, updated_at = ?, version = ? WHERE collection = ? AND id = ? AND version = ?",
                (json.dumps(record.properties), _ts(record.updated_at), record.version, record.collection, record.id, expected_version),
            )
            if cursor.rowcount == 1:
                return record
            exists = self.db.execute(
                "SELECT 1 FROM images WHERE collection = ? AND id = ?", (record.collection, record.id)
            ).fetchone()
            if exists is None:
                raise NotFound("no image with that id", code="image_not_found")
            return None

        return await self._run(update)

    async def delete(self, collection: str, image_id: str) -> ImageRecord:
        def delete() -> ImageRecord:
            row = self.db.execute(
                f"DELETE FROM images WHERE collection = ? AND id = ? RETURNING {_COLUMNS}", (collection, image_id)
            ).fetchone()
            if row is None:
                raise NotFound("no image with that id", code="image_not_found")
            return _row_to_record(row)

        return await self._run(delete)

    async def delete_records(self, collection: str) -> int:
        return await self._run(lambda: self.db.execute("DELETE FROM images WHERE collection = ?", (collection,)).rowcount)

    async def records(self, collection: str | None = None) -> AsyncIterator[ImageRecord]:
        after = ""
        params: tuple[str, ...]
        while True:
            # Pages by path keep memory flat however large the table is.
            if collection is None:
                sql, params = f"SELECT {_COLUMNS} FROM images WHERE path > ? ORDER BY path LIMIT 500", (after,)
            else:
                sql = f"SELECT {_COLUMNS} FROM images WHERE collection = ? AND path > ? ORDER BY path LIMIT 500"
                params = (collection, after)
            rows = await self._run(lambda: self.db.execute(sql, params).fetchall())
            for row in rows:
                yield _row_to_record(row)
            if len(rows) < 500:
                return
            after = rows[-1]["path"]

    # --- collections -------------------------------------------------------------------------

    async def ensure_collection(self, name: str) -> str:
        def ensure() -> str:
            self.db.execute(
                "INSERT INTO collections (name, generation, state, created_at) VALUES (?, ?, 'active', ?) "
                "ON CONFLICT (name) DO NOTHING",
                (name, secrets.token_hex(8), _ts(utcnow())),
            )
            generation, state = self.db.execute(
                "SELECT generation, state FROM collections WHERE name = ?", (name,)
            ).fetchone()
            if state != "active":
                raise Conflict("the collection is being deleted", code="collection_dropping")
            return generation

        return await self._run(ensure)

    async def collection_generation(self, name: str) -> str | None:
        row = await self._run(
            lambda: self.db.execute(
                "SELECT generation FROM collections WHERE name = ? AND state = 'active'", (name,)
            ).fetchone()
        )
        return None if row is None else row[0]

    async def begin_drop(self, name: str) -> bool:
        return await self._run(
            lambda: self.db.execute("UPDATE collections SET state = 'dropping' WHERE name = ?", (name,)).rowcount == 1
        )

    async def finish_drop(self, name: str) -> None:
        await self._run(lambda: self.db.execute("DELETE FROM collections WHERE name = ?", (name,)))

    async def collections(self, *, include_dropping: bool = False) -> list[str]:
        sql = "SELECT name FROM collections" + ("" if include_dropping else " WHERE state = 'active'") + " ORDER BY name"
        return [row[0] for row in await self._run(lambda: self.db.execute(sql).fetchall())]

    async def collection_stats(self, name: str) -> CollectionStats:
        def stats() -> CollectionStats:
            row = self.db.execute(
                "SELECT created_at FROM collections WHERE name = ? AND state = 'active'", (name,)
            ).fetchone()
            if row is None:
                raise NotFound("no collection with that name", code="collection_not_found")
            created_at = _dt(row[0])
            documents, size, updated = self.db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0), MAX(updated_at) FROM images WHERE collection = ?", (name,)
            ).fetchone()
            return CollectionStats(name, documents, size, created_at, _dt(updated) if updated else created_at)

        return await self._run(stats)

    async def ping(self) -> None:
        await self._run(lambda: self.db.execute("SELECT 1").fetchone())

    # --- uploads in progress and idempotency keys -------------------------------------------
    # Each is one JSON document with the columns queries need beside it.

    async def insert_upload(self, upload: PendingUpload) -> None:
        def insert() -> None:
            try:
                self.db.execute(
                    "INSERT INTO uploads (id, document, expires_at, version) VALUES (?, ?, ?, ?)",
                    (upload.id, _dump(upload), _ts(upload.expires_at), upload.version),
                )
            except sqlite3.IntegrityError:
                raise Conflict("an upload with that id exists", code="upload_exists") from None

        await self._run(insert)

    async def get_upload(self, upload_id: str) -> PendingUpload:
        row = await self._run(lambda: self.db.execute("SELECT document FROM uploads WHERE id = ?", (upload_id,)).fetchone())
        if row is None:
            raise NotFound("no upload with that id", code="upload_not_found")
        return _load(PendingUpload, row[0])

    async def replace_upload(self, upload: PendingUpload, expected_version: int) -> bool:
        return await self._run(
            lambda: self.db.execute(
                "UPDATE uploads SET document = ?, expires_at = ?, version = ? WHERE id = ? AND version = ?",
                (_dump(upload), _ts(upload.expires_at), upload.version, upload.id, expected_version),
            ).rowcount == 1
        )

    async def delete_upload(self, upload_id: str) -> None:
        await self._run(lambda: self.db.execute("DELETE FROM uploads WHERE id = ?", (upload_id,)))

    async def pending_uploads(self, *, expired_before: datetime | None = None, limit: int = 1000) -> list[PendingUpload]:
        bound = _ts(expired_before) if expired_before is not None else "9999"
        rows = await self._run(
            lambda: self.db.execute(
                "SELECT document FROM uploads WHERE expires_at < ? ORDER BY expires_at LIMIT ?", (bound, limit)
            ).fetchall()
        )
        return [_load(PendingUpload, row[0]) for row in rows]

    async def claim_idempotency(self, entry: IdempotencyEntry) -> IdempotencyEntry | None:
        def claim() -> IdempotencyEntry | None:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self.db.execute("DELETE FROM idempotency WHERE scope = ? AND expires_at < ?", (entry.scope, _ts(utcnow())))
                row = self.db.execute("SELECT document FROM idempotency WHERE scope = ?", (entry.scope,)).fetchone()
                if row is None:
                    self.db.execute(
                        "INSERT INTO idempotency (scope, document, expires_at, version) VALUES (?, ?, ?, ?)",
                        (entry.scope, _dump(entry), _ts(entry.expires_at), entry.version),
                    )
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            return None if row is None else _load(IdempotencyEntry, row[0])

        return await self._run(claim)

    async def replace_idempotency(self, entry: IdempotencyEntry, expected_version: int) -> bool:
        return await self._run(
            lambda: self.db.execute(
                "UPDATE idempotency SET document = ?, expires_at = ?, version = ? WHERE scope = ? AND version = ?",
                (_dump(entry), _ts(entry.expires_at), entry.version, entry.scope, expected_version),
            ).rowcount == 1
        )

    async def purge_idempotency(self, before: datetime) -> int:
        return await self._run(lambda: self.db.execute("DELETE FROM idempotency WHERE expires_at < ?", (_ts(before),)).rowcount)


def _dump(value: PendingUpload | IdempotencyEntry) -> str:
    return json.dumps(
        {name: _ts(item) if isinstance(item, datetime) else item for name, item in dataclasses.asdict(value).items()}
    )


def _load(cls: type[T], text: str) -> T:
    data = json.loads(text)
    for item in dataclasses.fields(cls):  # type: ignore[arg-type]
        if item.name in ("created_at", "expires_at", "lock_expires", "lease_expires") and isinstance(data.get(item.name), str):
            data[item.name] = _dt(data[item.name])
    return cls(**data)
