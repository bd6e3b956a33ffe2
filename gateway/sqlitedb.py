"""Opening the SQLite files the embedded default keeps (metadata, events) safely from several
processes at once: workers of `--workers` and replicas sharing a data directory."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

_WAL_SWITCH_SECONDS = 10.0


def connect(path: Path) -> sqlite3.Connection:
    """A connection in WAL mode, autocommit (explicit BEGIN), with a busy timeout from the start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
    # Switching a new database to WAL needs exclusive access, and SQLite answers "locked" at once,
    # without its busy handler, when another process is switching it too: wait for that one.
    deadline = time.monotonic() + _WAL_SWITCH_SECONDS
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                db.close()
                raise
            time.sleep(0.02)
    db.execute("PRAGMA synchronous=NORMAL")
    return db
