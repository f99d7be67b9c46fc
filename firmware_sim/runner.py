"""Runs a scenario through the real gateway pipeline, one per simulated gateway, and writes files.

At full speed nothing sleeps: simulated time is stepped tick by tick, each tick's receptions are
handed to the gateways' ``GatewayPipeline.on_advertisement`` in time order (as bleak's
``BLEDevice``/``AdvertisementData``), then every gateway runs its housekeeping, all on a
``SteppedClock`` that says what time the simulation has reached. Every ``sightings_interval_s``
the gateways exchange their sightings summaries (``PeerSightings``, as on the sightings topic)
for cross-gateway arbitration. At a finite speed the same loop is
paced against the wall clock.

Output folder:

- ``truth.jsonl``: one ``TruthVisit`` per true zone visit;
- ``presence.jsonl``: every presence event the gateways published, as the MQTT payload;
- ``people.jsonl``: one ``PersonRecord`` per simulated person;
- ``run.json``: scenario, seed, time range, zones watched and entrance zones (for the scorer).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bleak.backends.device import BLEDevice
from ulid import ULID

from firmware_sim.bleak_data import advertisement_data, ble_device
from firmware_sim.store import SimStore
from firmware_sim.truth import person_record, zone_visits
from gateway.pipeline import GatewayPipeline
from storelink.clock import SteppedClock
from storelink.wire import GatewayStatus, PresenceEvent

TRUTH_FILE = "truth.jsonl"
PRESENCE_FILE = "presence.jsonl"
PEOPLE_FILE = "people.jsonl"
RUN_FILE = "run.json"
# Distinct addresses kept as BLEDevice objects; rotating addresses would otherwise pile up.
_DEVICE_CACHE = 20_000


class EventLog:
    """An in-memory ``EventSink`` that gives each event a ULID derived from the seed.

    The gateway draws event ids at random; here they are re-issued from a seeded generator with
    the event's own timestamp, so that the same seed writes byte-identical files.
    """

    def __init__(self, seed: int) -> None:
        self.events: list[PresenceEvent] = []
        self.statuses: list[GatewayStatus] = []
        self._ids = random.Random(f"{seed}/event-ids")

    def publish(self, event: PresenceEvent) -> bool:
        millis = round(event.ts.timestamp() * 1000)
        ulid = ULID.from_bytes(millis.to_bytes(6, "big") + self._ids.randbytes(10))
        self.events.append(event.model_copy(update={"event_id": str(ulid)}))
        return True

    def publish_status(self, status: GatewayStatus) -> bool:
        self.statuses.append(status)
        return True


@dataclass(frozen=True)
class RunSummary:
    scenario: str
    seed: int
    sim_seconds: float
    wall_seconds: float
    people: int
    adverts: int
    presence_events: int
    truth_visits: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "seed": self.seed,
            "sim_seconds": round(self.sim_seconds, 1),
            "wall_seconds": round(self.wall_seconds, 2),
            "speedup": round(self.sim_seconds / max(self.wall_seconds, 1e-9), 1),
            "people": self.people,
            "adverts": self.adverts,
            "presence_events": self.presence_events,
            "truth_visits": self.truth_visits,
        }


def drive(
    store: SimStore,
    sink: EventLog,
    *,
    speed: float | None = None,
    progress: Callable[[float], None] | None = None,
) -> int:
    """Run every gateway over the store's whole time range; returns the adverts delivered.

    ``speed`` None runs as fast as possible; otherwise simulated time runs ``speed`` times as
    fast as the wall clock.
    """
    airwaves = store.airwaves()
    clock = SteppedClock(airwaves.start)
    pipelines = [GatewayPipeline(settings, sink, clock) for settings in store.gateway_settings()]
    exchange_every = min(p.settings.sightings_interval_s for p in pipelines)
    next_exchange = airwaves.start + exchange_every
    devices: dict[str, BLEDevice] = {}
    delivered = 0
    wall_start = time.monotonic()
    while airwaves.next_tick_start < store.end:
        _, t1, receptions = airwaves.tick()
        for t, gateway, advert in receptions:
            adv = advertisement_data(advert)
            device = devices.get(advert.address)
            if device is None:
                if len(devices) >= _DEVICE_CACHE:
                    devices.clear()
                device = devices[advert.address] = ble_device(advert, adv)
            clock.t = t
            pipelines[gateway].on_advertisement(device, adv)
        delivered += len(receptions)
        clock.t = t1
        if t1 >= next_exchange:
            next_exchange += exchange_every
            exchange_sightings(pipelines, t1)
        for pipeline in pipelines:
            pipeline.housekeeping(t1)
        if progress is not None:
            progress(t1)
        if speed is not None:
            ahead = (t1 - airwaves.start) / speed - (time.monotonic() - wall_start)
            if ahead > 0:
                time.sleep(ahead)
    for pipeline in pipelines:
        pipeline.close(clock.t)
    return delivered


def exchange_sightings(pipelines: list[GatewayPipeline], now: float) -> None:
    """Each gateway's sightings summary to every other gateway, as MQTT would carry them."""
    if len(pipelines) < 2:
        return
    summaries = [p.sightings(now) for p in pipelines]
    for summary in summaries:
        if summary is None:
            continue
        for pipeline in pipelines:
            pipeline.on_peer_sightings(summary, now)


def _write_jsonl(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines))


def run_scenario(
    store: SimStore,
    out_dir: Path,
    *,
    speed: float | None = None,
    progress: Callable[[float], None] | None = None,
) -> RunSummary:
    """Simulate ``store``, write the output files into ``out_dir`` and summarise the run."""
    wall_start = time.monotonic()
    out_dir.mkdir(parents=True, exist_ok=True)
    scenario = store.scenario
    truth = zone_visits(store.people, scenario.floor.zones, store.naming)
    sink = EventLog(store.seed)
    adverts = drive(store, sink, speed=speed, progress=progress)
    _write_jsonl(out_dir / TRUTH_FILE, [visit.model_dump_json() for visit in truth])
    _write_jsonl(out_dir / PRESENCE_FILE, [event.model_dump_json() for event in sink.events])
    _write_jsonl(out_dir / PEOPLE_FILE, [person_record(p).model_dump_json() for p in store.people])
    meta = {
        "scenario": scenario.name,
        "seed": store.seed,
        "store_id": scenario.store_id,
        "start": datetime.fromtimestamp(store.start, UTC).isoformat(),
        "end": datetime.fromtimestamp(store.end, UTC).isoformat(),
        "zones": [zone.id for zone in scenario.floor.zones],
        "watched_zones": sorted(scenario.watched_zones),
        "entrance_zones": sorted(scenario.entrance_zones),
        "gateways": {g.id: g.zone for g in scenario.gateways},
    }
    (out_dir / RUN_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return RunSummary(
        scenario=scenario.name,
        seed=store.seed,
        sim_seconds=store.end - store.start,
        wall_seconds=time.monotonic() - wall_start,
        people=len(store.people),
        adverts=adverts,
        presence_events=len(sink.events),
        truth_visits=len(truth),
    )
