"""A durable FIFO of outgoing MQTT messages, so that no presence event is lost to an outage.

The publisher appends every event here before it sends it, and deletes it only once the broker
has acknowledged it (PUBACK). Whatever is still here after a broker outage, a crash or a power
cut is sent again, in order, when the gateway is back: delivery is at least once, and the cloud
drops redelivered events by ``event_id``.

One SQLite file in WAL mode, stdlib only (the gateway runs on a Raspberry Pi). Each append is its
own transaction and, with the default ``synchronous="FULL"``, on disk before ``append`` returns:
in WAL mode ``NORMAL`` only syncs at checkpoints, so a power cut could lose the last events.
The file is opened with an exclusive lock: a second gateway process pointed at the same file
fails at start instead of sending the same events twice.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal

from storelink.wire import contains_mac_address

logger = logging.getLogger(__name__)

MEMORY = ":memory:"
"""An outbox path that keeps nothing on disk: for demos and tests, never for a store."""

DEFAULT_MAX_EVENTS = 100_000
# While the outbox is full every new event drops an old one; say so at most this often.
DROP_LOG_INTERVAL_S = 60.0

Synchronous = Literal["FULL", "NORMAL"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    -- AUTOINCREMENT: a seq is never reused, even after the queue empties, so the sender's
    -- "sent up to" cursor stays valid for the life of the file.
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    enqueued_at REAL NOT NULL
)
"""


class OutboxLockedError(RuntimeError):
    """Another process (or connection) holds the outbox file."""


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    """Increases with every append; the delivery order."""
    event_id: str
    topic: str
    payload: bytes
    enqueued_at: float
    """Unix time of the append."""


class Outbox:
    """Thread-safe: the publisher appends from the scanner's thread and acknowledges from its
    sender thread."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_events: int = DEFAULT_MAX_EVENTS,
        synchronous: Synchronous = "FULL",
    ) -> None:
        if max_events < 1:
            raise ValueError("max_events must be at least 1")
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be FULL or NORMAL, got {synchronous!r}")
        self.path = str(path)
        self.max_events = max_events
        self._lock = threading.Lock()
        self._dropped = 0
        self._last_drop_log = -DROP_LOG_INTERVAL_S
        if self.path != MEMORY:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # Autocommit (isolation_level=None): transactions are explicit. timeout=0: a locked file
        # is an error at once, not a wait.
        self._db: sqlite3.Connection | None = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=0
        )
        try:
            self._db.execute("PRAGMA locking_mode=EXCLUSIVE")
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if self.path != MEMORY and mode != "wal":
                raise RuntimeError(f"{self.path}: SQLite refused WAL mode ({mode})")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.execute(_SCHEMA)
            self._depth: int = self._db.execute("SELECT count(*) FROM outbox").fetchone()[0]
        except sqlite3.OperationalError as exc:
            self._db.close()
            self._db = None
            if "locked" in str(exc):
                raise OutboxLockedError(
                    f"the outbox {self.path} is in use by another gateway process"
                ) from exc
            raise
        if self._depth:
            logger.info(
                "outbox %s holds %d events from before; sending them first", path, self._depth
            )

    # --- writing --------------------------------------------------------------------------------

    def append(self, event_id: str, topic: str, payload: bytes) -> bool:
        """Store a message durably; False if ``event_id`` is already waiting (nothing changes).

        When the outbox is full the oldest messages make room, counted in ``dropped``.
        Refuses (ValueError) a topic or payload holding something shaped like a hardware
        address: only pseudonymised payloads may reach the disk.
        """
        if contains_mac_address(topic) or contains_mac_address(
            payload.decode("utf-8", errors="replace")
        ):
            raise ValueError("refusing to store a message that holds a hardware address")
        with self._lock:
            db = self._open()
            db.execute("BEGIN IMMEDIATE")
            try:
                inserted = db.execute(
                    "INSERT OR IGNORE INTO outbox (event_id, topic, payload, enqueued_at)"
                    " VALUES (?, ?, ?, ?)",
                    (event_id, topic, payload, time.time()),
                ).rowcount
                excess = self._depth + inserted - self.max_events
                if excess > 0:
                    db.execute(
                        "DELETE FROM outbox WHERE seq IN"
                        " (SELECT seq FROM outbox ORDER BY seq LIMIT ?)",
                        (excess,),
                    )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            self._depth += inserted
            if excess > 0:
                self._depth -= excess
                self._dropped += excess
                self._log_drop()
            return inserted == 1

    def ack(self, seq: int) -> bool:
        """Forget a delivered message; False if it was not (or no longer) here."""
        return self.ack_many((seq,)) == 1

    def ack_many(self, seqs: Iterable[int]) -> int:
        """Forget delivered messages in one transaction; returns how many were here."""
        rows = [(seq,) for seq in seqs]
        if not rows:
            return 0
        with self._lock:
            db = self._open()
            db.execute("BEGIN IMMEDIATE")
            try:
                before = db.total_changes
                db.executemany("DELETE FROM outbox WHERE seq = ?", rows)
                deleted = db.total_changes - before
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            self._depth -= deleted
            return deleted

    # --- reading --------------------------------------------------------------------------------

    def peek(self, limit: int, after_seq: int = 0) -> list[Entry]:
        """The oldest ``limit`` messages with a seq above ``after_seq``, oldest first."""
        with self._lock:
            rows = (
                self._open()
                .execute(
                    "SELECT seq, event_id, topic, payload, enqueued_at FROM outbox"
                    " WHERE seq > ? ORDER BY seq LIMIT ?",
                    (after_seq, limit),
                )
                .fetchall()
            )
        return [
            Entry(seq, event_id, topic, bytes(payload), at)
            for seq, event_id, topic, payload, at in rows
        ]

    def depth(self) -> int:
        """Messages waiting for an acknowledgement (still readable after ``close``)."""
        return self._depth

    @property
    def dropped(self) -> int:
        """Messages dropped since this outbox was opened because it was full."""
        return self._dropped

    # --- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> Outbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the outbox is closed")
        return self._db

    def _log_drop(self) -> None:
        now = time.monotonic()
        if now - self._last_drop_log >= DROP_LOG_INTERVAL_S:
            self._last_drop_log = now
            logger.warning(
                "outbox full (%d events): dropped the oldest, %d dropped so far",
                self.max_events,
                self._dropped,
            )
