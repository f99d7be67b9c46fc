"""Whose app token is this? Resolution of a gateway's app subject ref to a consenting shopper.

A gateway sees only the 32-bit token the app advertises (``storelink.tokens``). The cloud holds
the app keys, so it can compute every consenting shopper's token for a window and look the ref
up. Tokens change every window, not every event: the index computes one table per window, once,
and answers each event with three dictionary look-ups (current, previous and next window).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from storelink.tokens import app_token, candidate_windows, token_major_minor, token_ref


@dataclass(frozen=True)
class ConsentingShopper:
    """A shopper who agreed to be recognised, for offers, for footfall analytics or both."""

    shopper_id: str
    app_key: bytes
    personal_offers: bool
    footfall_analytics: bool


def shopper_token_ref(app_key: bytes, window: int) -> str:
    """The subject ref a gateway publishes for this app key in this window."""
    return token_ref(*token_major_minor(app_token(app_key, window)))


# ref -> shopper; None for a ref that two shoppers' keys produce in the same window: 32-bit
# tokens do collide among many shoppers, and a guess would send one shopper another's offer.
WindowTable = Mapping[str, ConsentingShopper | None]


def window_table(shoppers: Iterable[ConsentingShopper], window: int) -> WindowTable:
    table: dict[str, ConsentingShopper | None] = {}
    for shopper in shoppers:
        ref = shopper_token_ref(shopper.app_key, window)
        table[ref] = None if ref in table else shopper
    return table


class TokenIndex:
    """Resolves app refs among a fixed set of consenting shoppers; build a new one on change.

    Thread-safe: the MQTT consumer and HTTP workers may share one.
    """

    def __init__(self, shoppers: Iterable[ConsentingShopper], *, max_windows: int = 8) -> None:
        self._shoppers = tuple(shoppers)
        self._max_windows = max_windows
        self._tables: dict[int, WindowTable] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._shoppers)

    def resolve(self, ref: str, at: datetime) -> ConsentingShopper | None:
        """The one shopper whose token is ``ref`` around time ``at``; None if none or several."""
        ref = ref.lower()
        match: ConsentingShopper | None = None
        for window in candidate_windows(at.timestamp()):
            table = self._tables.get(window)
            if table is None:
                table = self._table(window)
            if ref not in table:
                continue
            shopper = table[ref]
            if shopper is None or (match is not None and match.shopper_id != shopper.shopper_id):
                return None
            match = shopper
        return match

    def _table(self, window: int) -> WindowTable:
        """The table of ``window``, built if it is not there. A table once built is read without
        the lock (a dict look-up is atomic): every app event of the ingest looks up three, and
        the lock and the reordering were most of its time. The oldest built is dropped first."""
        with self._lock:
            table = self._tables.get(window)
            if table is None:
                table = self._tables[window] = window_table(self._shoppers, window)
                while len(self._tables) > self._max_windows:
                    del self._tables[next(iter(self._tables))]
            return table
