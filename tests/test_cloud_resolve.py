from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from cloud_api.ingest.directory import ShopperDirectory, record_change
from cloud_api.ingest.resolve import ConsentingShopper, TokenIndex, shopper_token_ref
from cloud_api.store.db import make_engine, make_sessionmaker
from cloud_api.store.migrate import upgrade_database
from cloud_api.store.models import Shopper
from storelink.tokens import TOKEN_WINDOW_S, app_token, token_major_minor, token_ref, token_window

AT = datetime(2030, 6, 1, 10, 7, 30, tzinfo=UTC)
WINDOW = token_window(AT.timestamp())


def shopper(number: int, *, offers: bool = True, footfall: bool = True) -> ConsentingShopper:
    return ConsentingShopper(f"shp_{number}", bytes([number]) * 32, offers, footfall)


def gateway_ref(app_key: bytes, at: datetime) -> str:
    """The ref exactly as a gateway derives it from the iBeacon the app advertises at ``at``."""
    major, minor = token_major_minor(app_token(app_key, token_window(at.timestamp())))
    return token_ref(major, minor)


def test_shopper_token_ref_is_what_the_gateway_publishes() -> None:
    key = bytes(range(32))
    assert shopper_token_ref(key, WINDOW) == gateway_ref(key, AT)
    assert len(shopper_token_ref(key, WINDOW)) == 8


def test_resolves_the_current_token_among_many_shoppers() -> None:
    shoppers = [shopper(n) for n in range(1, 50)]
    index = TokenIndex(shoppers)
    for one in shoppers:
        assert index.resolve(gateway_ref(one.app_key, AT), AT) == one


def test_tolerates_one_window_of_clock_skew_each_way_but_not_two() -> None:
    alice = shopper(1)
    index = TokenIndex([alice])
    window = timedelta(seconds=TOKEN_WINDOW_S)
    assert index.resolve(gateway_ref(alice.app_key, AT - window), AT) == alice
    assert index.resolve(gateway_ref(alice.app_key, AT + window), AT) == alice
    assert index.resolve(gateway_ref(alice.app_key, AT - 2 * window), AT) is None
    assert index.resolve(gateway_ref(alice.app_key, AT + 2 * window), AT) is None


def test_unknown_ref_resolves_to_nobody() -> None:
    index = TokenIndex([shopper(1), shopper(2)])
    assert index.resolve("00000000", AT) is None
    assert TokenIndex([]).resolve(gateway_ref(shopper(1).app_key, AT), AT) is None


def test_ref_is_matched_whatever_its_case() -> None:
    alice = shopper(7)
    assert TokenIndex([alice]).resolve(gateway_ref(alice.app_key, AT).upper(), AT) == alice


def test_a_token_two_shoppers_share_resolves_to_neither() -> None:
    # Same key, same token: the 32-bit collision case, forced. Guessing would leak an offer.
    first = ConsentingShopper("shp_a", b"k" * 32, True, True)
    second = ConsentingShopper("shp_b", b"k" * 32, True, True)
    index = TokenIndex([first, second, shopper(3)])
    assert index.resolve(gateway_ref(b"k" * 32, AT), AT) is None
    assert index.resolve(gateway_ref(shopper(3).app_key, AT), AT) == shopper(3)


def test_resolution_costs_no_hmac_per_shopper_per_event() -> None:
    # 3000 shoppers and 3000 events in one window: by brute force 27 million HMACs (minutes);
    # with one table per window, 9000 HMACs and dictionary look-ups.
    shoppers = [
        ConsentingShopper(f"shp_{n}", n.to_bytes(32, "big"), True, True) for n in range(3000)
    ]
    index = TokenIndex(shoppers)
    refs = [gateway_ref(one.app_key, AT) for one in shoppers]
    started = time.perf_counter()
    resolved = [index.resolve(ref, AT + timedelta(seconds=n % 60)) for n, ref in enumerate(refs)]
    assert time.perf_counter() - started < 10
    assert resolved == shoppers


def test_window_tables_are_bounded() -> None:
    alice = shopper(1)
    index = TokenIndex([alice], max_windows=4)
    for hours in range(48):
        at = AT + timedelta(hours=hours)
        assert index.resolve(gateway_ref(alice.app_key, at), at) == alice
    # An old window is recomputed on demand after it was evicted.
    assert index.resolve(gateway_ref(alice.app_key, AT), AT) == alice


# --- the directory: consenting shoppers from the database ---------------------------------------


def add_shopper(
    sessions: sessionmaker[Session], shopper_id: str, key: bytes, offers: bool, footfall: bool
) -> None:
    now = datetime.now(UTC)
    with sessions.begin() as session:
        session.add(
            Shopper(
                id=shopper_id,
                display_name=None,
                app_key=key,
                consent_personal_offers=offers,
                consent_footfall_analytics=footfall,
                consent_text_version="t1",
                consent_at=now,
                created_at=now,
            )
        )


def directory_for(database_url: str) -> tuple[ShopperDirectory, sessionmaker[Session]]:
    upgrade_database(database_url)
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    return ShopperDirectory(sessions), sessions


def test_only_shoppers_with_some_consent_are_resolvable(database_url: str) -> None:
    directory, sessions = directory_for(database_url)
    add_shopper(sessions, "shp_both", b"1" * 32, offers=True, footfall=True)
    add_shopper(sessions, "shp_offers", b"2" * 32, offers=True, footfall=False)
    add_shopper(sessions, "shp_footfall", b"3" * 32, offers=False, footfall=True)
    add_shopper(sessions, "shp_none", b"4" * 32, offers=False, footfall=False)

    def found(key: bytes) -> ConsentingShopper | None:
        return directory.resolve(gateway_ref(key, AT), AT)

    both, offers, footfall = found(b"1" * 32), found(b"2" * 32), found(b"3" * 32)
    assert both == ConsentingShopper("shp_both", b"1" * 32, True, True)
    assert offers == ConsentingShopper("shp_offers", b"2" * 32, True, False)
    assert footfall == ConsentingShopper("shp_footfall", b"3" * 32, False, True)
    assert found(b"4" * 32) is None


def test_registration_and_withdrawal_apply_after_invalidation(database_url: str) -> None:
    directory, sessions = directory_for(database_url)
    ref = gateway_ref(b"n" * 32, AT)
    assert directory.resolve(ref, AT) is None

    add_shopper(sessions, "shp_new", b"n" * 32, offers=True, footfall=True)
    directory.invalidate()
    resolved = directory.resolve(ref, AT)
    assert resolved is not None
    assert resolved.shopper_id == "shp_new"

    with sessions.begin() as session:
        withdrawn = session.get_one(Shopper, "shp_new")
        withdrawn.consent_personal_offers = False
        withdrawn.consent_footfall_analytics = False
    directory.invalidate()
    assert directory.resolve(ref, AT) is None


def test_a_consent_change_made_through_one_worker_reaches_every_worker(database_url: str) -> None:
    """Each cloud worker caches the tokens; the directory version tells them all of a change."""
    worker_a, sessions = directory_for(database_url)
    worker_b = ShopperDirectory(sessions)
    add_shopper(sessions, "shp_shared", b"s" * 32, offers=True, footfall=True)
    with sessions.begin() as session:
        record_change(session)
    ref = gateway_ref(b"s" * 32, AT)
    worker_b.refresh()
    assert worker_b.resolve(ref, AT) is not None

    # Worker A handles the withdrawal, as the consent route does: record, commit, invalidate.
    with sessions.begin() as session:
        withdrawn = session.get_one(Shopper, "shp_shared")
        withdrawn.consent_personal_offers = False
        withdrawn.consent_footfall_analytics = False
        record_change(session)
    worker_a.invalidate()
    assert worker_a.resolve(ref, AT) is None

    # Worker B still holds the old tokens until its ingest refreshes before the next batch.
    assert worker_b.resolve(ref, AT) is not None
    worker_b.refresh()
    assert worker_b.resolve(ref, AT) is None


def test_refreshing_without_a_change_keeps_the_tokens(database_url: str) -> None:
    directory, sessions = directory_for(database_url)
    add_shopper(sessions, "shp_kept", b"k" * 32, offers=True, footfall=True)
    ref = gateway_ref(b"k" * 32, AT)
    assert directory.resolve(ref, AT) is not None
    # A shopper added behind the directory's back (no record_change) is not picked up: the
    # refresh is one primary-key read, not a reload.
    add_shopper(sessions, "shp_unannounced", b"u" * 32, offers=True, footfall=True)
    directory.refresh()
    assert directory.resolve(gateway_ref(b"u" * 32, AT), AT) is None
    assert directory.resolve(ref, AT) is not None
