"""How well the gateways' presence events agree with the ground truth of a run.

Definitions (docs/simulator.md explains them with examples):

- A gateway visit is an ``enter`` and the ``exit`` that follows for the same gateway, zone and
  subject; it spans ``[enter ts, enter ts + exit dwell_s]``.
- A gateway visit matches a true visit when the zone is the same, its subject ref is one of the
  true visit's ``subject_refs`` and the two intervals overlap. Fragments (one true visit seen as
  several gateway visits, e.g. across an address rotation) all match it.
- Only zones some gateway watches are scored. True visits shorter than ``min_visit_s`` are
  optional: missing them costs nothing, and gateway visits that match only them are ignored.
- precision = matching gateway visits / gateway visits; recall = true visits matched / true
  visits; F1 their harmonic mean.
- Dwell error: for each matched true visit, |span of its fragments - true duration|.
- Footfall: true = shoppers (``shopper``, ``shopper_app``) with a visit; measured = distinct
  subjects, other than beacons (staff badges, key fobs), entering an entrance zone;
  ``footfall_breakdown`` says whom the measured count counted.
- Wrong-zone rate: gateway visits that match no true visit in their zone, but overlap a true
  visit of the same subject in another zone, over all gateway visits.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware_sim.population import PersonKind
from firmware_sim.runner import PRESENCE_FILE, RUN_FILE, TRUTH_FILE
from firmware_sim.truth import TruthVisit
from storelink.wire import PresenceEvent, PresenceKind, SubjectType

MIN_VISIT_S = 10.0
SHOPPER_KINDS = frozenset({PersonKind.SHOPPER, PersonKind.SHOPPER_APP})


@dataclass(frozen=True)
class GatewayVisit:
    zone_id: str
    subject_type: SubjectType
    ref: str
    start: float
    end: float


def gateway_visits(events: Iterable[PresenceEvent]) -> list[GatewayVisit]:
    """Pair each enter with the exit that follows; a visit never exited ends at its last event."""
    open_visits: dict[tuple[str, str, SubjectType, str], tuple[float, float]] = {}
    visits: list[GatewayVisit] = []
    for event in events:
        key = (event.gateway_id, event.zone_id, event.subject.type, event.subject.ref)
        ts = event.ts.timestamp()
        if event.kind is PresenceKind.ENTER:
            open_visits[key] = (ts, ts)
        elif key in open_visits:
            start, _ = open_visits[key]
            end = start + event.dwell_s
            if event.kind is PresenceKind.EXIT:
                del open_visits[key]
                visits.append(GatewayVisit(key[1], key[2], key[3], start, end))
            else:
                open_visits[key] = (start, end)
    for (_, zone, subject_type, ref), (start, end) in open_visits.items():
        visits.append(GatewayVisit(zone, subject_type, ref, start, end))
    return sorted(visits, key=lambda v: (v.start, v.zone_id, v.ref))


def _overlaps(a0: float, a1: float, b0: float, b1: float) -> bool:
    return a0 <= b1 and b0 <= a1


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def _f1(precision: float | None, recall: float | None) -> float | None:
    if precision is None or recall is None or precision + recall == 0:
        return None
    return 2 * precision * recall / (precision + recall)


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def score(
    truth: Sequence[TruthVisit],
    events: Sequence[PresenceEvent],
    *,
    watched_zones: Iterable[str] | None = None,
    entrance_zones: Iterable[str] | None = None,
    min_visit_s: float = MIN_VISIT_S,
) -> dict[str, Any]:
    """The scores of one run as a JSON-ready dict (see the module docstring)."""
    predicted = gateway_visits(events)
    watched = (
        frozenset(watched_zones)
        if watched_zones is not None
        else frozenset(e.zone_id for e in events)
    )
    entrances = frozenset(entrance_zones) if entrance_zones is not None else frozenset({"entrance"})
    scored = [v for v in truth if v.zone_id in watched]
    by_ref: dict[tuple[str, str], list[int]] = defaultdict(list)
    for index, true_visit in enumerate(scored):
        for ref in true_visit.subject_refs:
            by_ref[true_visit.zone_id, ref].append(index)
    # Every true visit of a ref, any zone, for telling wrong zones from phantom subjects.
    anywhere: dict[str, list[TruthVisit]] = defaultdict(list)
    for true_visit in truth:
        for ref in true_visit.subject_refs:
            anywhere[ref].append(true_visit)

    fragments: dict[int, list[GatewayVisit]] = defaultdict(list)
    counted = matched = wrong_zone = 0
    counted_in: Counter[str] = Counter()
    matched_in: Counter[str] = Counter()
    for visit in predicted:
        if visit.zone_id not in watched:
            continue
        hits = [
            index
            for index in by_ref.get((visit.zone_id, visit.ref), [])
            if _overlaps(
                visit.start,
                visit.end,
                scored[index].enter_ts.timestamp(),
                scored[index].exit_ts.timestamp(),
            )
        ]
        required = [index for index in hits if scored[index].duration_s >= min_visit_s]
        if hits and not required:
            continue  # matches only optional visits: neither right nor wrong
        counted += 1
        counted_in[visit.zone_id] += 1
        if hits:
            matched += 1
            matched_in[visit.zone_id] += 1
            for index in hits:
                fragments[index].append(visit)
        elif any(
            other.zone_id != visit.zone_id
            and _overlaps(
                visit.start, visit.end, other.enter_ts.timestamp(), other.exit_ts.timestamp()
            )
            for other in anywhere.get(visit.ref, [])
        ):
            wrong_zone += 1

    required_truth = [i for i, v in enumerate(scored) if v.duration_s >= min_visit_s]
    found = [i for i in required_truth if i in fragments]
    precision, recall = _ratio(matched, counted), _ratio(len(found), len(required_truth))
    f1 = _f1(precision, recall)
    dwell_errors = []
    for index in found:
        parts = fragments[index]
        span = max(p.end for p in parts) - min(p.start for p in parts)
        dwell_errors.append(abs(span - scored[index].duration_s))

    by_zone: dict[str, dict[str, float | None]] = {}
    for zone in sorted(watched):
        of_zone = [i for i in required_truth if scored[i].zone_id == zone]
        zone_precision = _ratio(matched_in[zone], counted_in[zone])
        zone_recall = _ratio(sum(1 for i in of_zone if i in fragments), len(of_zone))
        by_zone[zone] = {
            "precision": _round(zone_precision),
            "recall": _round(zone_recall),
            "f1": _round(_f1(zone_precision, zone_recall)),
        }

    recall_by_kind: dict[str, float | None] = {}
    for kind in PersonKind:
        of_kind = [i for i in required_truth if scored[i].kind is kind]
        if of_kind:
            hit = sum(1 for i in of_kind if i in fragments)
            recall_by_kind[kind.value] = _round(_ratio(hit, len(of_kind)))

    true_footfall = len({v.person for v in truth if v.kind in SHOPPER_KINDS})
    counted_subjects = {
        (e.subject.type, e.subject.ref)
        for e in events
        if e.kind is PresenceKind.ENTER
        and e.zone_id in entrances
        and e.subject.type is not SubjectType.BEACON
    }
    measured_footfall = len(counted_subjects)
    return {
        "precision": _round(precision),
        "recall": _round(recall),
        "f1": _round(f1),
        "dwell_error_median_s": _round(_percentile(dwell_errors, 0.5), 1),
        "dwell_error_p90_s": _round(_percentile(dwell_errors, 0.9), 1),
        "footfall_true": true_footfall,
        "footfall_measured": measured_footfall,
        "footfall_error": _round(_ratio(measured_footfall - true_footfall, true_footfall)),
        "footfall_breakdown": _footfall_breakdown(truth, counted_subjects),
        "wrong_zone_rate": _round(_ratio(wrong_zone, counted)),
        "gateway_visits": counted,
        "true_visits": len(required_truth),
        "true_visits_optional": len(scored) - len(required_truth),
        "true_visits_unwatched": len(truth) - len(scored),
        "fragments_per_visit": _round(_ratio(sum(len(fragments[i]) for i in found), len(found)), 2),
        "recall_by_kind": recall_by_kind,
        "by_zone": by_zone,
        "watched_zones": sorted(watched),
        "min_visit_s": min_visit_s,
    }


def _footfall_breakdown(
    truth: Sequence[TruthVisit], counted: Iterable[tuple[SubjectType, str]]
) -> dict[str, int]:
    """Whom the measured footfall counted: each shopper once, the same shopper again under
    another subject (a second device, a new address), staff, or nobody the truth knows
    (passers-by outside, a subject never in a zone)."""
    owner = {ref: (v.person, v.kind) for v in truth for ref in v.subject_refs}
    shoppers: set[str] = set()
    breakdown = {"shoppers": 0, "same_shopper_again": 0, "staff": 0, "unknown": 0}
    for _, ref in sorted(counted):
        person, kind = owner.get(ref, (None, None))
        if person is None:
            breakdown["unknown"] += 1
        elif kind not in SHOPPER_KINDS:
            breakdown["staff"] += 1
        elif person in shoppers:
            breakdown["same_shopper_again"] += 1
        else:
            shoppers.add(person)
            breakdown["shoppers"] += 1
    return breakdown


def read_truth(path: Path) -> list[TruthVisit]:
    return [TruthVisit.model_validate_json(line) for line in path.read_text().splitlines() if line]


def read_events(path: Path) -> list[PresenceEvent]:
    lines = path.read_text().splitlines()
    return [PresenceEvent.model_validate_json(line) for line in lines if line]


def score_dir(out_dir: Path, min_visit_s: float = MIN_VISIT_S) -> dict[str, Any]:
    """Score the files ``storelink sim run`` wrote into ``out_dir``."""
    meta_path = out_dir / RUN_FILE
    meta: dict[str, Any] = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    return score(
        read_truth(out_dir / TRUTH_FILE),
        read_events(out_dir / PRESENCE_FILE),
        watched_zones=meta.get("watched_zones"),
        entrance_zones=meta.get("entrance_zones"),
        min_visit_s=min_visit_s,
    )
