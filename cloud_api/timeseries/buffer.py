"""Points waiting on disk while InfluxDB is unreachable: a bounded SQLite file, oldest dropped.

The file survives a restart of the cloud, so an outage that outlasts the process still loses
nothing up to the bound. Past the bound the oldest points go first (the newest are what a
dashboard shows), and every one dropped is counted.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path


class DiskBuffer:
    """Line-protocol lines in arrival order; safe to use from several threads."""

    def __init__(self, path: Path | str, max_points: int) -> None:
        if max_points < 1:
            raise ValueError("the buffer must hold at least one point")
        self._max = max_points
        self._lock = threading.Lock()
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS points (id INTEGER PRIMARY KEY AUTOINCREMENT, line TEXT)"
        )
        self._count: int = self._db.execute("SELECT count(*) FROM points").fetchone()[0]
        self.dropped = 0
        """Points dropped because the buffer was full, since this process opened it."""

    def __len__(self) -> int:
        return self._count

    def append(self, lines: Sequence[str]) -> int:
        """Keep ``lines``; the number of older points dropped to make room."""
        if not lines:
            return 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT INTO points (line) VALUES (?)", [(x,) for x in lines])
            over = self._count + len(lines) - self._max
            if over > 0:
                self._db.execute(
                    "DELETE FROM points WHERE id IN (SELECT id FROM points ORDER BY id LIMIT ?)",
                    (over,),
                )
            self._db.execute("COMMIT")
            dropped = max(over, 0)
            self._count += len(lines) - dropped
            self.dropped += dropped
            return dropped

    def peek(self, limit: int) -> list[tuple[int, str]]:
        """The oldest ``limit`` points, with their ids for ``remove``."""
        with self._lock:
            return list(
                self._db.execute("SELECT id, line FROM points ORDER BY id LIMIT ?", (limit,))
            )

    def remove(self, ids: Sequence[int]) -> None:
        """Forget points once written: ``ids`` from ``peek``, the oldest in the buffer (some
        may have been dropped meanwhile)."""
        if not ids:
            return
        with self._lock:
            removed = self._db.execute("DELETE FROM points WHERE id <= ?", (max(ids),)).rowcount
            self._count -= removed

    def close(self) -> None:
        with self._lock:
            self._db.close()
