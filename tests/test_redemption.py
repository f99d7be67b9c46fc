"""Redemption: single use, expiry, and tills racing on one code, on SQLite and PostgreSQL."""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from cloud_api.offers.codes import new_offer_code
from cloud_api.offers.redemption import RedeemStatus, Redemption, redeem_code
from cloud_api.store.db import make_engine, make_sessionmaker
from cloud_api.store.migrate import upgrade_database
from cloud_api.store.models import Offer, Shopper
from tests.engagement_fixtures import ADMIN_HEADERS, running_engagement

NOW = datetime(2031, 5, 1, 12, 0, tzinfo=UTC)
TILLS = 8


def database(url: str) -> sessionmaker[Session]:
    upgrade_database(url)
    return make_sessionmaker(make_engine(url))


def make_offer(
    sessions: sessionmaker[Session], expires_at: datetime = NOW + timedelta(hours=2)
) -> str:
    code = new_offer_code()
    with sessions.begin() as session:
        if session.get(Shopper, "shp_till") is None:
            session.add(
                Shopper(
                    id="shp_till",
                    display_name=None,
                    app_key=b"k" * 32,
                    consent_personal_offers=True,
                    consent_footfall_analytics=False,
                    consent_text_version="1",
                    consent_at=NOW,
                    created_at=NOW,
                )
            )
            session.flush()
        session.add(
            Offer(
                code=code,
                shopper_id="shp_till",
                store_id="store-1",
                cart_id=None,
                visit_id=None,
                percent_off=Decimal("10"),
                items=[],
                currency="EUR",
                created_at=NOW - timedelta(minutes=5),
                expires_at=expires_at,
                redeemed_at=None,
                campaign_id="c1",
            )
        )
    return code


def redeem(
    sessions: sessionmaker[Session], code: str, order_ref: str, at: datetime = NOW
) -> Redemption:
    with sessions.begin() as session:
        return redeem_code(session, code, order_ref, at)


def test_a_code_redeems_once_and_records_the_order(database_url: str) -> None:
    sessions = database(database_url)
    code = make_offer(sessions)
    first = redeem(sessions, code, "till-1/0001")
    assert first.status == RedeemStatus.REDEEMED
    assert first.store_id == "store-1"
    # As typed at a till: lower case, no dashes; still the same code, now used.
    second = redeem(sessions, code.lower().replace("-", ""), "till-2/0002")
    assert second.status == RedeemStatus.ALREADY_REDEEMED
    assert "by order till-1/0001" in second.detail
    with sessions() as session:
        offer = session.scalars(sa.select(Offer).where(Offer.code == code)).one()
    assert (offer.redeemed_at, offer.order_ref) == (NOW, "till-1/0001")


def test_expired_unknown_and_malformed_codes(database_url: str) -> None:
    sessions = database(database_url)
    code = make_offer(sessions, expires_at=NOW)
    expired = redeem(sessions, code, "o1")
    assert expired.status == RedeemStatus.EXPIRED
    assert "expired at" in expired.detail
    assert redeem(sessions, "SL-0000-0000-0000-0000", "o2").status == RedeemStatus.UNKNOWN
    malformed = redeem(sessions, "not a code", "o3")
    assert (malformed.status, malformed.code) == (RedeemStatus.NOT_A_CODE, None)
    # A refused code is still unused: it expired, nobody redeemed it.
    with sessions() as session:
        assert session.scalar(sa.select(Offer.redeemed_at).where(Offer.code == code)) is None


def test_tills_racing_on_one_code_exactly_one_wins(database_url: str) -> None:
    sessions = database(database_url)
    for _ in range(3):
        code = make_offer(sessions)
        start = threading.Barrier(TILLS)

        def till(number: int, code: str = code, start: threading.Barrier = start) -> Redemption:
            # Each till its own connection and transaction, released at the same instant.
            with sessions.begin() as session:
                start.wait()
                return redeem_code(session, code, f"till-{number}", NOW)

        with ThreadPoolExecutor(TILLS) as pool:
            results = list(pool.map(till, range(TILLS)))
        statuses = sorted(r.status for r in results)
        assert statuses.count(RedeemStatus.REDEEMED) == 1, statuses
        assert statuses.count(RedeemStatus.ALREADY_REDEEMED) == TILLS - 1
        winner = next(i for i, r in enumerate(results) if r.redeemed)
        with sessions() as session:
            stored = session.scalar(sa.select(Offer.order_ref).where(Offer.code == code))
        assert stored == f"till-{winner}"


def test_the_redeem_endpoint_takes_a_tills_api_key_for_the_offers_store(database_url: str) -> None:
    with running_engagement(database_url) as cloud:
        client = cloud.client
        for store in ("store-1", "store-2"):
            created = client.post(
                "/v1/stores", json={"store_id": store, "name": store}, headers=ADMIN_HEADERS
            )
            assert created.status_code == 201, created.text
        keys = {
            store: client.post(
                "/v1/api-keys",
                json={"name": f"till {store}", "store_ids": [store]},
                headers=ADMIN_HEADERS,
            ).json()["key"]
            for store in ("store-1", "store-2")
        }
        code = make_offer(cloud.context.sessions, expires_at=datetime.now(UTC) + timedelta(hours=1))
        path = f"/v1/offers/{code}/redeem"
        assert client.post(path).status_code == 401
        other = client.post(path, headers={"X-API-Key": keys["store-2"]})
        assert other.status_code == 403
        ok = client.post(path, params={"order_ref": "R-1"}, headers={"X-API-Key": keys["store-1"]})
        assert ok.status_code == 200, ok.text
        assert ok.json()["order_ref"] == "R-1"
        again = client.post(path, headers={"X-API-Key": keys["store-1"]})
        assert again.status_code == 409
        assert "already redeemed" in again.json()["detail"]


def _till_process(url: str, code: str, number: int, start: Any, results: Any) -> None:
    """One till in its own process, with its own engine, released with the others."""
    sessions = make_sessionmaker(make_engine(url))
    with sessions.begin() as session:
        start.wait()
        results.put((number, redeem_code(session, code, f"till-{number}", NOW).status.value))


def test_till_processes_racing_on_one_code_exactly_one_wins(database_url: str) -> None:
    sessions = database(database_url)
    code = make_offer(sessions)
    context = multiprocessing.get_context("spawn")
    tills = 4
    start = context.Barrier(tills)
    results = context.Queue()
    processes = [
        context.Process(target=_till_process, args=(database_url, code, n, start, results))
        for n in range(tills)
    ]
    for process in processes:
        process.start()
    outcomes = dict(results.get(timeout=60) for _ in processes)
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    assert sorted(outcomes.values()) == ["already_redeemed"] * (tills - 1) + ["redeemed"]
    winner = next(n for n, status in outcomes.items() if status == "redeemed")
    with sessions() as session:
        assert (
            session.scalar(sa.select(Offer.order_ref).where(Offer.code == code)) == f"till-{winner}"
        )
