"""Command stores: in memory (tests, demos) and SQLite (survives a restart).

Both implement :class:`adapters.mqtt.types.CommandStore`.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import orjson

from adapters.mqtt.types import TERMINAL_STATES, CommandRecord


class MemoryCommandStore:
    """Command records and versions in dicts; lost when the process ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._versions: dict[str, int] = {}
        self._records: dict[str, CommandRecord] = {}

    def next_version(self, device_id: str) -> int:
        with self._lock:
            v = self._versions.get(device_id, 0) + 1
            self._versions[device_id] = v
            return v

    def save(self, record: CommandRecord) -> None:
        with self._lock:
            self._records[record.command_id] = record

    def get(self, command_id: str) -> CommandRecord | None:
        return self._records.get(command_id)

    def open_commands(self) -> list[CommandRecord]:
        with self._lock:
            return [r for r in self._records.values() if r.state not in TERMINAL_STATES]

    def history(self, device_id: str | None = None, limit: int = 100) -> list[CommandRecord]:
        with self._lock:
            recs = [r for r in self._records.values()
                    if device_id is None or r.device_id == device_id]
        recs.sort(key=lambda r: (r.issued_at_s, r.version), reverse=True)
        return recs[:limit]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS device_version (
    device_id TEXT PRIMARY KEY,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS command (
    command_id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    issued_at_s REAL NOT NULL,
    version INTEGER NOT NULL,
    state TEXT NOT NULL,
    record BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS command_device ON command (device_id, issued_at_s);
CREATE INDEX IF NOT EXISTS command_state ON command (state);
"""


class SqliteCommandStore:
    """Command records and versions in a SQLite file (one connection, one lock).

    Parameters
    ----------
    path : str or Path
        Database file; created with its tables when missing.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False,
                                   isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def next_version(self, device_id: str) -> int:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "INSERT INTO device_version (device_id, version) VALUES (?, 1) "
                    "ON CONFLICT (device_id) DO UPDATE SET version = version + 1 "
                    "RETURNING version", (device_id,)).fetchone()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return int(row[0])

    def save(self, record: CommandRecord) -> None:
        blob = orjson.dumps(record.to_dict())
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO command (command_id, device_id, issued_at_s, version, "
                "state, record) VALUES (?, ?, ?, ?, ?, ?)",
                (record.command_id, record.device_id, record.issued_at_s, record.version,
                 record.state, blob))

    def get(self, command_id: str) -> CommandRecord | None:
        with self._lock:
            row = self._db.execute("SELECT record FROM command WHERE command_id = ?",
                                   (command_id,)).fetchone()
        return CommandRecord.from_dict(orjson.loads(row[0])) if row else None

    def open_commands(self) -> list[CommandRecord]:
        marks = ",".join("?" * len(TERMINAL_STATES))
        with self._lock:
            rows = self._db.execute(f"SELECT record FROM command WHERE state NOT IN ({marks})",
                                    tuple(TERMINAL_STATES)).fetchall()
        return [CommandRecord.from_dict(orjson.loads(r[0])) for r in rows]

    def history(self, device_id: str | None = None, limit: int = 100) -> list[CommandRecord]:
        sql = "SELECT record FROM command"
        args: tuple[object, ...] = ()
        if device_id is not None:
            sql += " WHERE device_id = ?"
            args = (device_id,)
        sql += " ORDER BY issued_at_s DESC, version DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, (*args, int(limit))).fetchall()
        return [CommandRecord.from_dict(orjson.loads(r[0])) for r in rows]
