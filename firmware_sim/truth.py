"""Ground truth: who was really in which zone, when, and under which refs a gateway knows them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from itertools import pairwise

from pydantic import BaseModel, ConfigDict

from firmware_sim.naming import Naming
from firmware_sim.population import Person, PersonKind
from firmware_sim.scenario import ZoneSpec
from storelink.wire import UtcDatetime

DAY_S = 86_400


class TruthVisit(BaseModel):
    """One line of truth.jsonl: a person's stay in one zone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    person: str
    kind: PersonKind
    zone_id: str
    enter_ts: UtcDatetime
    exit_ts: UtcDatetime
    subject_ref: str | None
    """What a gateway would first call this person here: the app token if the app advertises,
    else the phone's pseudonym, a staff badge's beacon ref... None if nothing they carry names
    them."""
    subject_refs: tuple[str, ...]
    """Every ref a gateway would publish for any of the person's devices during the visit: app
    tokens of each 15-minute window, the pseudonym of each private address, badge refs."""

    @property
    def duration_s(self) -> float:
        return (self.exit_ts - self.enter_ts).total_seconds()


class PersonRecord(BaseModel):
    """One line of people.jsonl: who a simulated person is, for tools driving the cloud."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    person: str
    kind: PersonKind
    platform: str | None
    devices: tuple[str, ...]
    app_key: str | None
    """Hex; present for app shoppers, whose app advertises the rotating token with it."""
    abandoned_cart: bool
    arrive_ts: UtcDatetime
    leave_ts: UtcDatetime


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def person_refs(person: Person, t0: float, t1: float, naming: Naming) -> tuple[str, ...]:
    """Every ref a gateway would publish for the person's devices during ``[t0, t1]``, in order."""
    refs: dict[str, None] = {}
    # Gateways may name anonymous devices differently each UTC day.
    midnights = [d * DAY_S for d in range(int(t0 // DAY_S) + 1, int(t1 // DAY_S) + 1)]
    bounds = [t0, *midnights, t1]
    for carried in person.devices:
        for a, b in pairwise(bounds):
            for t, emission in carried.firmware.emissions_during(a, b):
                subject = naming.subject(emission.address, emission.raw, t)
                if subject is not None:
                    refs.setdefault(subject.ref)
    return tuple(refs)


def zone_visits(
    people: Iterable[Person], zones: Sequence[ZoneSpec], naming: Naming
) -> list[TruthVisit]:
    """Every stay of every person in every zone, in order of entry."""
    visits = []
    for person in people:
        for zone in zones:
            for t0, t1 in person.trajectory.inside(zone.polygon):
                refs = person_refs(person, t0, t1, naming)
                visits.append(
                    TruthVisit(
                        person=person.id,
                        kind=person.kind,
                        zone_id=zone.id,
                        enter_ts=_utc(t0),
                        exit_ts=_utc(t1),
                        subject_ref=refs[0] if refs else None,
                        subject_refs=refs,
                    )
                )
    return sorted(visits, key=lambda v: (v.enter_ts, v.person, v.zone_id))


def person_record(person: Person) -> PersonRecord:
    return PersonRecord(
        person=person.id,
        kind=person.kind,
        platform=person.platform,
        devices=tuple(carried.firmware.kind for carried in person.devices),
        app_key=person.app_key.hex() if person.app_key else None,
        abandoned_cart=person.abandoned_cart,
        arrive_ts=_utc(person.trajectory.start),
        leave_ts=_utc(person.trajectory.end),
    )
