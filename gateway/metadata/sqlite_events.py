"""The event log of the embedded default: a table in its own SQLite file beside the metadata
database, so processes sharing the data directory share it (WAL lets readers poll while one
writer appends). SQLite has no notification across processes, so readers poll."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

from gateway.metadata.base import Event, ImageRecord, iso_time
from gateway.metadata.sqlite_thread import SqliteThread, connect

# Old events are trimmed on every this many appends, not on each.
TRIM_EVERY = 256


class SqliteEventLog(SqliteThread):
    _thread_name = "events"

    def __init__(self, path: Path, retention: timedelta):
        super().__init__(path)
        self._retention = retention

    def _open(self) -> None:
        db = connect(self._path)
        db.execute(
            "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL,"
            " kind TEXT NOT NULL, record TEXT NOT NULL)"
        )
        db.execute("CREATE TABLE IF NOT EXISTS listeners (id INTEGER PRIMARY KEY CHECK (id = 1), until REAL NOT NULL)")
        self._db = db

    async def append(self, kind: str, record: ImageRecord) -> int:
        def append() -> int:
            assert self._db is not None
            now = datetime.now(timezone.utc)
            cursor = self._db.execute(
                "INSERT INTO events (time, kind, record) VALUES (?, ?, ?)", (iso_time(now), kind, json.dumps(record.to_json()))
            )
            seq = int(cursor.lastrowid or 0)
            if seq % TRIM_EVERY == 0:
                self._db.execute("DELETE FROM events WHERE time < ?", (iso_time(now - self._retention),))
            return seq

        return await self._run(append)

    async def append_many(self, entries: list[tuple[str, ImageRecord]]) -> None:
        def append_many() -> None:
            assert self._db is not None
            now = iso_time(datetime.now(timezone.utc))
            rows = [(now, kind, json.dumps(record.to_json())) for kind, record in entries]
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT INTO events (time, kind, record) VALUES (?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

        await self._run(append_many)

    async def latest(self) -> int:
        def latest() -> int:
            assert self._db is not None
            return int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])

        return await self._run(latest)

    async def read_after(self, seq: int, limit: int) -> list[Event]:
        def read() -> list[Event]:
            assert self._db is not None
            rows = self._db.execute("SELECT seq, kind, record FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit))
            return [Event(row[0], row[1], ImageRecord.from_json(json.loads(row[2]))) for row in rows]

        return await self._run(read)

    async def listen_until(self, until: float) -> None:
        def listen() -> None:
            assert self._db is not None
            self._db.execute(
                "INSERT INTO listeners (id, until) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET until = MAX(until, excluded.until)", (until,)
            )

        await self._run(listen)

    async def listening_until(self) -> float:
        def read() -> float:
            assert self._db is not None
            row = self._db.execute("SELECT until FROM listeners WHERE id = 1").fetchone()
            return float(row[0]) if row else 0.0

        return await self._run(read)

    async def follow(self) -> None:
        return None
