"""Corrections sent to POST /feedback, kept in SQLite (WAL, committed before the reply)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY,
    digest TEXT NOT NULL UNIQUE,
    row TEXT NOT NULL,
    created TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
)
"""
# Fields of a stored row, in the project's labelled format (see the README).
FIELDS = ("text", "actor", "start", "end", "stance", "sentiment", "source")


class FeedbackStore:
    """One SQLite file; safe to share between threads."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(SCHEMA)

    def add(self, row: dict[str, Any]) -> tuple[int, bool]:
        """Store `row` unless an identical one is stored; returns (id, newly stored). Durable on return."""
        clean = {k: row[k] for k in FIELDS if row.get(k) is not None}
        payload = json.dumps(clean, sort_keys=True, ensure_ascii=False)
        digest = hashlib.sha256(payload.encode()).hexdigest()
        with self._lock:
            cursor = self._db.execute("INSERT OR IGNORE INTO feedback (digest, row) VALUES (?, ?)", (digest, payload))
            created = cursor.rowcount == 1
            (row_id,) = self._db.execute("SELECT id FROM feedback WHERE digest = ?", (digest,)).fetchone()
        return row_id, created

    def rows(self) -> Iterator[dict[str, Any]]:
        with self._lock:
            stored = self._db.execute("SELECT row FROM feedback ORDER BY id").fetchall()
        for (payload,) in stored:
            yield json.loads(payload)

    def export(self, out: str | Path) -> int:
        """Write every stored row as JSONL in the labelled format; returns the count."""
        count = 0
        with open(out, "w", encoding="utf-8") as handle:
            for row in self.rows():
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                count += 1
        return count

    def close(self) -> None:
        with self._lock:
            self._db.close()
