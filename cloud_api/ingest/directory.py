"""The consenting shoppers' app keys, loaded into a ``TokenIndex`` and reloaded when they change,
with the refs of their wearables and key fobs.

Every cloud worker holds its own index. A registration or consent change bumps the database's
``directory_version`` in its own transaction (``record_change``); the worker that made it drops
its index at once (``invalidate``), and every worker's ingest compares the version before each
batch (``refresh``), so a consent withdrawn through one worker stops offers from all of them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from cloud_api.ingest.resolve import ConsentingShopper, TokenIndex
from cloud_api.shoppers.devices import load_device_owners
from cloud_api.store.models import DirectoryVersion, Shopper

logger = logging.getLogger(__name__)


def load_consenting_shoppers(session: Session) -> list[ConsentingShopper]:
    rows = session.execute(
        sa.select(
            Shopper.id,
            Shopper.app_key,
            Shopper.consent_personal_offers,
            Shopper.consent_footfall_analytics,
        ).where(sa.or_(Shopper.consent_personal_offers, Shopper.consent_footfall_analytics))
    )
    return [ConsentingShopper(*row) for row in rows]


def record_change(session: Session) -> None:
    """Mark, in the caller's transaction, that consenting shoppers or their consents changed."""
    session.execute(
        sa.update(DirectoryVersion)
        .where(DirectoryVersion.id == 1)
        .values(version=DirectoryVersion.version + 1)
    )


# Read before every batch: built once, and run on the batch's connection without the ORM.
_VERSION = sa.select(DirectoryVersion.__table__.c.version).where(
    DirectoryVersion.__table__.c.id == 1
)


def _version(session: Session) -> int | None:
    return session.connection().execute(_VERSION).scalar()


@dataclass(frozen=True)
class _Loaded:
    tokens: TokenIndex
    # Wearable and key-fob refs: fixed, so a plain look-up, unlike the app's rotating token.
    devices: Mapping[str, ConsentingShopper]


def _load(session: Session) -> tuple[_Loaded, int | None]:
    version = _version(session)
    tokens = TokenIndex(load_consenting_shoppers(session))
    return _Loaded(tokens, load_device_owners(session)), version


class ShopperDirectory:
    """Shared by the HTTP API, which invalidates it, and the consumer, which resolves with it."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._lock = threading.Lock()
        self._index: _Loaded | None = None
        # The database's directory_version the index was loaded at.
        self._version: int | None = None
        # Bumped by every invalidation, so that an index loaded from before a registration
        # or a consent withdrawal is never installed after it.
        self._generation = 0

    def invalidate(self) -> None:
        with self._lock:
            self._index = None
            self._generation += 1

    def refresh(self, session: Session | None = None) -> None:
        """Drop the index if another worker changed the shoppers since it was loaded.

        ``session``: the caller's transaction, which saves the ingest a session (a connection
        check-out and, on PostgreSQL, its ping) per batch; a session of its own without it.
        """
        if session is None:
            with self._sessions() as own:
                version = _version(own)
        else:
            version = _version(session)
        with self._lock:
            if self._index is not None and version != self._version:
                self._index = None
                self._generation += 1

    def resolve(
        self, ref: str, at: datetime, session: Session | None = None
    ) -> ConsentingShopper | None:
        """The consenting shopper whose app advertised the token ``ref`` around ``at``.

        ``session``: where to load the index from if it must be (see ``refresh``).
        """
        return self._current(session).tokens.resolve(ref, at)

    def resolve_device(self, ref: str, session: Session | None = None) -> ConsentingShopper | None:
        """The consenting owner of the wearable or key fob a gateway published as ``ref``."""
        return self._current(session).devices.get(ref.lower())

    def _current(self, session: Session | None) -> _Loaded:
        with self._lock:
            index, generation = self._index, self._generation
        if index is not None:
            return index
        # Loaded after reading the generation, so it sees every change committed before the
        # invalidation that generation counts: a session of its own begins now, and a caller's
        # write transaction holds SQLite's write lock (nothing commits while it runs) or reads
        # each statement afresh (PostgreSQL's READ COMMITTED). The version is read first: a
        # change committed in between makes the next refresh load again.
        if session is None:
            with self._sessions() as own:
                index, version = _load(own)
        else:
            index, version = _load(session)
        logger.debug("token index rebuilt for %d consenting shoppers", len(index.tokens))
        with self._lock:
            if self._generation == generation:
                self._index, self._version = index, version
        return index
