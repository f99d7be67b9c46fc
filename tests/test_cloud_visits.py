from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cloud_api.ingest.visits import VISIT_IDLE_TIMEOUT_S, Sighting, Stitched, VisitState, stitch
from storelink.wire import PresenceKind

T0 = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
ENTER, DWELL, EXIT = PresenceKind.ENTER, PresenceKind.DWELL, PresenceKind.EXIT


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def run(*sightings: Sighting, visit: VisitState | None = None) -> list[Stitched]:
    """Feed sightings one after the other, as the service does with the latest visit it finds."""
    results = []
    for sighting in sightings:
        result = stitch(visit, sighting)
        results.append(result)
        visit = result.visit
    return results


def test_enter_dwell_exit_make_one_visit() -> None:
    opened, dwelt, exited = run(
        Sighting(ENTER, "entrance", "ref1", at(0), 0),
        Sighting(DWELL, "entrance", "ref1", at(60), 60),
        Sighting(EXIT, "entrance", "ref1", at(95), 95),
    )
    assert opened.opened and opened.visit.ended_at is None
    assert not dwelt.opened and dwelt.visit.dwell_s == 60
    assert not exited.opened
    assert exited.visit.started_at == at(0)
    assert exited.visit.ended_at == at(95)
    assert exited.visit.dwell_s == 95
    assert exited.visit.zones == ("entrance",)


def test_the_visit_lasts_until_the_last_zone_is_left() -> None:
    results = run(
        Sighting(ENTER, "entrance", "ref1", at(0), 0),
        Sighting(ENTER, "shoes", "ref1", at(20), 0),
        Sighting(EXIT, "entrance", "ref1", at(40), 40),
        Sighting(ENTER, "till", "ref1", at(300), 0),
        Sighting(EXIT, "shoes", "ref1", at(310), 290),
        Sighting(EXIT, "till", "ref1", at(400), 100),
    )
    assert [r.opened for r in results] == [True, False, False, False, False, False]
    assert all(r.visit.ended_at is None for r in results[:-1])
    last = results[-1].visit
    assert last.ended_at == at(400)
    assert last.zones == ("entrance", "shoes", "till")


def test_a_rotating_app_token_stays_one_visit() -> None:
    # The app's token rotates mid-visit: the gateway sees a new subject enter, the old one leave.
    results = run(
        Sighting(ENTER, "entrance", "old-token", at(0), 0),
        Sighting(ENTER, "entrance", "new-token", at(900), 0),
        Sighting(EXIT, "entrance", "old-token", at(920), 920),
        Sighting(EXIT, "entrance", "new-token", at(1000), 100),
    )
    assert [r.opened for r in results] == [True, False, False, False]
    assert results[2].visit.ended_at is None
    assert results[3].visit.ended_at == at(1000)
    assert results[3].visit.dwell_s == 1000


def test_dwell_without_enter_opens_a_visit_from_when_it_began() -> None:
    (result,) = run(Sighting(DWELL, "entrance", "ref1", at(600), 120))
    assert result.opened
    assert result.visit.started_at == at(480)
    assert result.visit.ended_at is None


def test_exit_without_enter_records_a_closed_visit() -> None:
    (result,) = run(Sighting(EXIT, "entrance", "ref1", at(600), 45))
    assert result.opened
    assert (result.visit.started_at, result.visit.ended_at) == (at(555), at(600))


def test_an_idle_open_visit_is_closed_and_the_next_sighting_starts_another() -> None:
    (first,) = run(Sighting(ENTER, "entrance", "ref1", at(0), 0))
    later = at(VISIT_IDLE_TIMEOUT_S + 61)
    (second,) = run(Sighting(ENTER, "entrance", "ref1", later, 0), visit=first.visit)
    assert second.opened
    assert second.visit.started_at == later
    assert second.abandoned is not None
    assert second.abandoned.ended_at == at(0)


def test_late_events_do_not_move_time_backwards() -> None:
    results = run(
        Sighting(ENTER, "entrance", "ref1", at(0), 0),
        Sighting(ENTER, "shoes", "ref1", at(100), 0),
        Sighting(DWELL, "entrance", "ref1", at(60), 60),
    )
    assert results[-1].visit.last_seen_at == at(100)


def test_an_exit_that_arrives_before_its_enter_still_makes_one_closed_visit() -> None:
    """Two workers may commit a subject's events in either order (shared subscription)."""
    results = run(
        Sighting(EXIT, "entrance", "ref1", at(95), 95),
        Sighting(DWELL, "entrance", "ref1", at(60), 60),
        Sighting(ENTER, "entrance", "ref1", at(0), 0),
    )
    assert [r.opened for r in results] == [True, False, False]
    visit = results[-1].visit
    assert (visit.started_at, visit.ended_at, visit.dwell_s) == (at(0), at(95), 95)
    assert visit.present == frozenset()


def test_whichever_order_events_arrive_in_the_visit_comes_out_the_same() -> None:
    events = [
        Sighting(ENTER, "entrance", "ref1", at(0), 0),
        Sighting(ENTER, "shoes", "ref1", at(20), 0),
        Sighting(EXIT, "entrance", "ref1", at(40), 40),
        Sighting(DWELL, "shoes", "ref1", at(80), 60),
        Sighting(EXIT, "shoes", "ref1", at(110), 90),
    ]
    in_order = run(*events)[-1].visit
    for shuffled in ([4, 3, 2, 1, 0], [2, 4, 0, 3, 1], [1, 0, 4, 2, 3]):
        results = run(*(events[i] for i in shuffled))
        assert [r.opened for r in results] == [True] + [False] * 4
        visit = results[-1].visit
        assert (visit.started_at, visit.last_seen_at, visit.ended_at) == (
            in_order.started_at,
            in_order.last_seen_at,
            in_order.ended_at,
        )
        assert set(visit.zones) == {"entrance", "shoes"}
        assert visit.presence == in_order.presence


def test_a_late_enter_of_a_zone_never_left_reopens_the_visit() -> None:
    results = run(
        Sighting(ENTER, "entrance", "ref1", at(0), 0),
        Sighting(EXIT, "entrance", "ref1", at(40), 40),
        # Entered the shoe aisle before leaving the entrance, and has not left it.
        Sighting(ENTER, "shoes", "ref1", at(30), 0),
    )
    assert results[1].visit.ended_at == at(40)
    assert not results[2].opened
    assert results[2].visit.ended_at is None
    assert results[2].visit.present == {"shoes/ref1"}


def test_a_sighting_after_the_end_of_the_last_visit_starts_another() -> None:
    results = run(
        Sighting(ENTER, "entrance", "ref1", at(0), 0),
        Sighting(EXIT, "entrance", "ref1", at(40), 40),
        Sighting(ENTER, "entrance", "ref1", at(600), 0),
    )
    assert results[2].opened
    assert results[2].visit.started_at == at(600)


def test_an_exit_and_an_enter_at_the_same_instant_leave_the_subject_gone() -> None:
    (_, result) = run(
        Sighting(EXIT, "entrance", "ref1", at(50), 50),
        Sighting(ENTER, "entrance", "ref1", at(50), 0),
    )
    assert result.visit.ended_at == at(50)
