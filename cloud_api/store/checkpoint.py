"""Checkpointing a SQLite WAL file from a thread of its own, off the ingest's commits.

In WAL mode a commit appends its pages to the write-ahead log, and the connection whose commit
takes the log past ``wal_autocheckpoint`` pages copies the log back into the database file
(and fsyncs it) before its commit returns. A batch of a thousand events writes about a
thousand pages, so with SQLite's default (1,000 pages) nearly every ingest commit also did a
checkpoint: about a tenth of the worker's time per event, waiting on the disk.

``WalCheckpointer`` does that work on its own connection every ``interval_s`` instead
(``PRAGMA wal_checkpoint(PASSIVE)``: it never blocks the writer or the readers), while
``db.make_engine`` raises every connection's ``wal_autocheckpoint`` so that a commit only
checkpoints itself as a safety net, when nobody else has for a long while. The pages a batch
and the next one both change (open visits, the tails of the indexes) are copied once per
checkpoint rather than once per commit, and sqlite3 lets go of the GIL while it works, so the
copying runs beside the ingest on another core.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

import sqlalchemy as sa

logger = logging.getLogger(__name__)

CHECKPOINT_INTERVAL_S = 0.5


class WalCheckpointer:
    def __init__(self, path: str, interval_s: float = CHECKPOINT_INTERVAL_S) -> None:
        self._path = path
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def for_engine(cls, engine: sa.Engine) -> WalCheckpointer | None:
        """A checkpointer for the engine's SQLite file; None for any other database."""
        url = engine.url
        if url.get_backend_name() != "sqlite" or not url.database:
            return None
        return cls(url.database)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        connection = sqlite3.connect(self._path, check_same_thread=False)
        try:
            while not self._stop.wait(self._interval_s):
                try:
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as error:
                    # The commits' own checkpoints (see the module's description) take over.
                    logger.warning("SQLite checkpoint of %s failed: %s", self._path, error)
        finally:
            connection.close()
