"""The consenting shoppers' app keys, loaded into a ``TokenIndex`` and reloaded when they change."""

from __future__ import annotations

import logging
import threading
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from cloud_api.models import Shopper
from cloud_api.resolve import ConsentingShopper, TokenIndex

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


class ShopperDirectory:
    """Shared by the HTTP API, which invalidates it, and the consumer, which resolves with it."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self._lock = threading.Lock()
        self._index: TokenIndex | None = None
        # Bumped by every invalidation, so that an index loaded from before a registration
        # or a consent withdrawal is never installed after it.
        self._generation = 0

    def invalidate(self) -> None:
        with self._lock:
            self._index = None
            self._generation += 1

    def resolve(self, ref: str, at: datetime) -> ConsentingShopper | None:
        return self._current().resolve(ref, at)

    def _current(self) -> TokenIndex:
        with self._lock:
            index, generation = self._index, self._generation
        if index is not None:
            return index
        # A session of its own, begun after reading the generation: it sees every change
        # committed before the invalidation that generation counts.
        with self._sessions() as session:
            index = TokenIndex(load_consenting_shoppers(session))
        logger.debug("token index rebuilt for %d consenting shoppers", len(index))
        with self._lock:
            if self._generation == generation:
                self._index = index
        return index
