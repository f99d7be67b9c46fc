"""The scorer against hand-made truth and event files whose scores are worked out by hand."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from firmware_sim.population import PersonKind
from firmware_sim.score import gateway_visits, score, score_dir
from firmware_sim.truth import TruthVisit
from storelink.cli import app
from storelink.wire import PresenceEvent, PresenceKind, Subject, SubjectType

T0 = 1_795_500_000.0


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(T0 + seconds, UTC)


def truth(
    person: str, kind: PersonKind, zone: str, start: float, end: float, *refs: str
) -> TruthVisit:
    return TruthVisit(
        person=person,
        kind=kind,
        zone_id=zone,
        enter_ts=at(start),
        exit_ts=at(end),
        subject_ref=refs[0] if refs else None,
        subject_refs=refs,
    )


def stay(
    zone: str, ref: str, start: float, dwell: float, kind: SubjectType = SubjectType.ANONYMOUS
) -> list[PresenceEvent]:
    """An enter, a dwell halfway and the exit 20 s after the subject was last seen."""
    common = {"store_id": "s", "gateway_id": f"gw-{zone}", "zone_id": zone, "rssi": -60.0}
    subject = Subject(type=kind, ref=ref)
    return [
        PresenceEvent(kind=PresenceKind.ENTER, subject=subject, ts=at(start), dwell_s=0, **common),
        PresenceEvent(
            kind=PresenceKind.DWELL,
            subject=subject,
            ts=at(start + dwell / 2),
            dwell_s=dwell / 2,
            **common,
        ),
        PresenceEvent(
            kind=PresenceKind.EXIT,
            subject=subject,
            ts=at(start + dwell + 20),
            dwell_s=dwell,
            **common,
        ),
    ]


TRUTH = [
    truth("p1", PersonKind.SHOPPER_APP, "a", 0, 100, "tok1", "tok2"),
    truth("p2", PersonKind.SHOPPER, "a", 50, 80, "anon-2"),
    truth("p3", PersonKind.STAFF, "b", 0, 300, "badge3", "anon-3"),
    truth("p1", PersonKind.SHOPPER_APP, "b", 120, 125, "tok2"),  # 5 s: optional
    truth("p4", PersonKind.SHOPPER, "c", 0, 50, "anon-4"),  # nobody watches zone c
    truth("p5", PersonKind.SHOPPER, "a", 200, 260, "anon-5"),  # never seen
]
EVENTS = sorted(
    [
        *stay("a", "tok1", 2, 48, SubjectType.APP),  # p1, until the token rotates
        *stay("a", "tok2", 52, 50, SubjectType.APP),  # p1 again: a second fragment
        *stay("a", "anon-2", 55, 20),  # p2, 10 s short
        *stay("b", "badge3", 10, 280, SubjectType.BEACON),  # p3, 20 s short
        *stay("b", "tok2", 121, 3, SubjectType.APP),  # p1's optional visit: ignored
        *stay("a", "anon-9", 400, 10),  # nobody: a phantom
        *stay("a", "anon-3", 100, 30),  # p3, but p3 was in zone b: wrong zone
    ],
    key=lambda e: e.ts,
)


def test_scores_match_the_worked_example() -> None:
    result = score(TRUTH, EVENTS, watched_zones=["a", "b"], entrance_zones=["a"])
    # Gateway visits counted: tok1, tok2 (a), anon-2, badge3 match; anon-9 and anon-3 do not.
    assert result["gateway_visits"] == 6
    assert result["precision"] == pytest.approx(4 / 6, abs=1e-4)
    # Required true visits: p1/a, p2/a, p3/b, p5/a; p5 was missed.
    assert result["true_visits"] == 4
    assert result["recall"] == 0.75
    assert result["f1"] == pytest.approx(2 * (4 / 6) * 0.75 / (4 / 6 + 0.75), abs=1e-4)
    # Dwell errors: p1 0 s (fragments 2..102 against 0..100), p2 10 s, p3 20 s.
    assert result["dwell_error_median_s"] == 10.0
    assert result["dwell_error_p90_s"] == 18.0
    assert result["wrong_zone_rate"] == pytest.approx(1 / 6, abs=1e-4)
    assert result["fragments_per_visit"] == pytest.approx(4 / 3, abs=0.01)
    assert result["recall_by_kind"] == {"shopper_app": 1.0, "shopper": 0.5, "staff": 1.0}
    assert (result["true_visits_optional"], result["true_visits_unwatched"]) == (1, 1)
    # Zone a: 3 of 5 gateway visits right, 2 of 3 true visits found; zone b: all right.
    assert result["by_zone"] == {
        "a": {"precision": 0.6, "recall": 0.6667, "f1": 0.6316},
        "b": {"precision": 1.0, "recall": 1.0, "f1": 1.0},
    }


def test_footfall_counts_shoppers_against_subjects_entering_the_entrance() -> None:
    result = score(TRUTH, EVENTS, watched_zones=["a", "b"], entrance_zones=["a"])
    # True: p1, p2, p4 and p5 are shoppers; p3 is staff. Measured: every non-beacon subject
    # entering zone a (tok1, tok2, anon-2, anon-9, anon-3); the badge in zone b does not count.
    assert (result["footfall_true"], result["footfall_measured"]) == (4, 5)
    assert result["footfall_error"] == 0.25
    # p1 twice (two tokens), p2 once, p3 is staff, anon-9 is nobody the truth knows.
    assert result["footfall_breakdown"] == {
        "shoppers": 2,
        "same_shopper_again": 1,
        "staff": 1,
        "unknown": 1,
    }


def test_a_perfect_gateway_scores_one() -> None:
    perfect = [truth("p", PersonKind.SHOPPER, "a", 0, 60, "anon-1")]
    events = stay("a", "anon-1", 0, 60)
    result = score(perfect, events, watched_zones=["a"], entrance_zones=["a"])
    assert (result["precision"], result["recall"], result["f1"]) == (1.0, 1.0, 1.0)
    assert result["dwell_error_median_s"] == 0.0
    assert result["footfall_error"] == 0.0
    assert result["wrong_zone_rate"] == 0.0


def test_no_events_scores_zero_recall_and_no_precision() -> None:
    result = score(TRUTH, [], watched_zones=["a", "b"])
    assert result["recall"] == 0.0
    assert result["precision"] is None and result["f1"] is None
    assert result["footfall_measured"] == 0 and result["footfall_error"] == -1.0


def test_gateway_visits_pair_enters_and_exits_per_subject() -> None:
    visits = gateway_visits(EVENTS)
    assert len(visits) == 7
    first = visits[0]
    assert (first.zone_id, first.ref, first.start - T0, first.end - T0) == ("a", "tok1", 2, 50)
    # A visit the file never exits ends at its last event.
    unfinished = gateway_visits(stay("a", "x", 0, 40)[:2])
    assert [(v.start - T0, v.end - T0) for v in unfinished] == [(0, 20)]


def write_run(folder: Path) -> None:
    folder.mkdir()
    (folder / "truth.jsonl").write_text("".join(v.model_dump_json() + "\n" for v in TRUTH))
    (folder / "presence.jsonl").write_text("".join(e.model_dump_json() + "\n" for e in EVENTS))
    meta = {"watched_zones": ["a", "b"], "entrance_zones": ["a"]}
    (folder / "run.json").write_text(json.dumps(meta))


def test_sim_score_prints_one_json_object(tmp_path: Path) -> None:
    write_run(tmp_path / "run")
    result = CliRunner().invoke(app, ["sim", "score", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert printed == score_dir(tmp_path / "run")
    assert printed["recall"] == 0.75 and printed["footfall_error"] == 0.25
