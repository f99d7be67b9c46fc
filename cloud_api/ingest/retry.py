"""Retrying a transaction while the database is unreachable, with backoff."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy as sa

logger = logging.getLogger(__name__)

RETRY_MIN_S = 0.1
RETRY_MAX_S = 5.0

T = TypeVar("T")


def is_transient(error: BaseException) -> bool:
    """A database failure that retrying the same transaction later may cure."""
    if not isinstance(error, sa.exc.DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    original = error.orig
    if isinstance(original, sqlite3.OperationalError):
        return "locked" in str(original) or "busy" in str(original)
    # psycopg: the server is down or restarting, a deadlock or serialization failure.
    sqlstate = getattr(original, "sqlstate", None) or ""
    return isinstance(error, sa.exc.OperationalError) or sqlstate in ("40001", "40P01")


def until_committed(
    transaction: Callable[[], T], closing: threading.Event, on_retry: Callable[[], None]
) -> T | None:
    """``transaction()``'s result, run again with backoff while the database is unreachable
    (``on_retry`` counts each failure); None when ``closing`` is set before it succeeded.
    Any other failure is raised."""
    delay = RETRY_MIN_S
    while True:
        try:
            return transaction()
        except sa.exc.DBAPIError as error:
            if not is_transient(error):
                raise
            on_retry()
            detail = str(error.orig).strip()
            logger.warning(
                "database unavailable (%s: %s); retrying in %.1fs",
                type(error.orig).__name__,
                detail.splitlines()[0] if detail else "",
                delay,
            )
        if closing.wait(delay):
            return None
        delay = min(delay * 2, RETRY_MAX_S)
