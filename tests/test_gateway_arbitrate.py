"""Cross-gateway arbitration: the rules, the sightings message, two pipelines, a simulated shop."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from bleak.backends.device import BLEDevice
from pydantic import ValidationError

from firmware_sim.frames import ibeacon_frame
from firmware_sim.runner import run_scenario
from firmware_sim.scanner import SimScanner
from firmware_sim.scenario import Scenario, load_scenario, with_overrides
from firmware_sim.score import score_dir
from firmware_sim.store import SimStore
from firmware_sim.world import (
    DEMO_STORE_BEACON,
    DEMO_STORE_BEACON_ID,
    SimShopper,
    StoreWorld,
    demo_app_keys,
)
from gateway.arbitrate import Arbiter, ArbitrationRules
from gateway.config import GatewaySettings
from gateway.pipeline import GatewayPipeline
from gateway.run import run_gateway
from storelink.clock import ScaledClock, SteppedClock
from storelink.tokens import TOKEN_WINDOW_S, token_ref, token_window
from storelink.wire import (
    GatewayConfig,
    GatewayState,
    GatewayStatus,
    PeerSightings,
    PresenceEvent,
    PresenceKind,
    Sighting,
    Subject,
    SubjectType,
    contains_mac_address,
    sightings_topic,
    store_sightings_subscription,
)
from tests.helpers import ListSink, MqttRecorder, bluez_advert, wait_for
from tests.services import Mosquitto

RULES = ArbitrationRules(margin_db=5.0, hold_s=2.0, stale_s=10.0)
T0 = 1_764_000_000.0
APP_UUID = "5f2dd896-b886-4549-ae01-e41acd7a354a"
PHONE = "5A:11:22:33:44:55"
SUBJECT = Subject(type=SubjectType.APP, ref=token_ref(0x104D, 0xE62A))


# --- the rules ----------------------------------------------------------------------------------


def test_the_loudest_gateway_owns_a_new_subject_at_once() -> None:
    arbiter = Arbiter("a", RULES)
    assert arbiter.owner("s", T0) is None
    arbiter.heard("b", "s", -70.0, T0)
    arbiter.heard("a", "s", -62.0, T0)
    assert arbiter.owner("s", T0) == "a"
    assert arbiter.owns("s", T0)


def test_a_challenger_inside_the_margin_never_takes_over() -> None:
    arbiter = Arbiter("a", RULES)
    arbiter.heard("a", "s", -65.0, T0)
    assert arbiter.owns("s", T0)
    for step in range(60):
        t = T0 + step
        arbiter.heard("a", "s", -65.0, t)
        arbiter.heard("b", "s", -61.0, t)  # louder, but by 4 dB: inside the 5 dB deadband
        assert arbiter.owner("s", t) == "a"


def test_a_challenger_beyond_the_margin_takes_over_after_the_hold_time() -> None:
    arbiter = Arbiter("a", RULES)
    arbiter.heard("a", "s", -65.0, T0)
    assert arbiter.owns("s", T0)
    owners = []
    for tenth in range(1, 40):
        t = T0 + tenth / 10
        arbiter.heard("a", "s", -65.0, t)
        arbiter.heard("b", "s", -58.0, t)  # 7 dB louder
        owners.append((round(tenth / 10, 1), arbiter.owner("s", t)))
    switched = next(t for t, owner in owners if owner == "b")
    assert switched == pytest.approx(0.1 + RULES.hold_s)
    assert all(owner == "b" for t, owner in owners if t >= switched)


def test_a_break_in_the_challenge_starts_the_hold_time_again() -> None:
    arbiter = Arbiter("a", RULES)
    arbiter.heard("a", "s", -65.0, T0)
    arbiter.owner("s", T0)
    arbiter.heard("b", "s", -58.0, T0 + 1)
    assert arbiter.owner("s", T0 + 1) == "a"
    arbiter.heard("b", "s", -62.0, T0 + 2)  # back inside the deadband
    assert arbiter.owner("s", T0 + 2) == "a"
    arbiter.heard("b", "s", -58.0, T0 + 2.5)
    assert arbiter.owner("s", T0 + 2.5) == "a"
    assert arbiter.owner("s", T0 + 3.5) == "a"  # only 1 s since the challenge resumed
    assert arbiter.owner("s", T0 + 4.5) == "b"


def test_a_peer_going_silent_releases_its_subjects() -> None:
    arbiter = Arbiter("a", RULES)
    arbiter.heard("b", "s", -55.0, T0)
    arbiter.heard("a", "s", -75.0, T0)
    assert arbiter.owner("s", T0) == "b"
    # Gateway a keeps hearing the subject, b says nothing more.
    for step in range(1, 12):
        arbiter.heard("a", "s", -75.0, T0 + step)
    assert arbiter.owner("s", T0 + RULES.stale_s) == "b"
    assert arbiter.owner("s", T0 + RULES.stale_s + 1) == "a"


def test_nobody_owns_a_subject_nobody_hears_and_prune_forgets_it() -> None:
    arbiter = Arbiter("a", RULES)
    arbiter.heard("a", "s", -60.0, T0)
    assert arbiter.owns("s", T0)
    assert arbiter.owner("s", T0 + RULES.stale_s + 0.1) is None
    arbiter.prune(T0 + RULES.stale_s + 0.1)
    assert len(arbiter) == 0


def test_a_new_subject_settles_before_anybody_owns_it_while_peers_talk() -> None:
    rules = ArbitrationRules(margin_db=5.0, hold_s=2.0, stale_s=10.0, settle_s=1.5)
    alone = Arbiter("a", rules)
    alone.heard("a", "s", -60.0, T0)
    assert alone.owns("s", T0)
    arbiter = Arbiter("a", rules)
    arbiter.peer_alive(T0)
    arbiter.heard("a", "s", -60.0, T0)
    assert arbiter.owner("s", T0 + 1) is None
    arbiter.heard("b", "s", -50.0, T0 + 1)  # the peer's summary arrives, louder
    assert arbiter.owner("s", T0 + 1.5) == "b"


def test_ties_and_late_summaries_are_decided_alike_everywhere() -> None:
    for me in ("a", "b"):
        arbiter = Arbiter(me, RULES)
        arbiter.heard("b", "s", -60.0, T0)
        arbiter.heard("a", "s", -60.0, T0)
        arbiter.heard("a", "s", -40.0, T0 - 5)  # older than what is kept: ignored
        assert arbiter.owner("s", T0) == "a"


def test_only_readings_newer_than_the_last_summary_are_told() -> None:
    arbiter = Arbiter("a", RULES)
    arbiter.heard("a", "s1", -60.0, T0)
    arbiter.heard("a", "s2", -70.0, T0 + 1)
    arbiter.heard("b", "s3", -70.0, T0 + 1)
    assert [s for s, _ in arbiter.own_readings(T0 + 0.5)] == ["s2"]


def test_rules_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="stale_s"):
        ArbitrationRules(margin_db=3.0, hold_s=1.0, stale_s=0.0)
    with pytest.raises(ValueError, match="margin_db"):
        ArbitrationRules(margin_db=-1.0, hold_s=1.0, stale_s=5.0)


# --- the sightings message ----------------------------------------------------------------------


def test_sightings_round_trip_and_refuse_addresses() -> None:
    message = PeerSightings(
        store_id="store-1",
        gateway_id="gw-2",
        ts=datetime.fromtimestamp(T0, UTC),
        sightings=(Sighting(subject=SUBJECT, rssi=-61.5, age_s=0.25),),
    )
    assert PeerSightings.model_validate_json(message.model_dump_json()) == message
    assert sightings_topic("store-1", "gw-2") == "storelink/v1/store-1/gw-2/sightings"
    assert store_sightings_subscription("store-1") == "storelink/v1/store-1/+/sightings"
    raw = json.loads(message.model_dump_json())
    raw["sightings"][0]["subject"] = {"type": "anonymous", "ref": "5A:11:22:33:44:55"}
    with pytest.raises(ValidationError, match="hardware address"):
        PeerSightings.model_validate(raw)
    raw["sightings"][0] = {"subject": SUBJECT.model_dump(), "rssi": -61.5, "age_s": -1}
    with pytest.raises(ValidationError, match="age_s"):
        PeerSightings.model_validate(raw)


# --- two pipelines ------------------------------------------------------------------------------


def _gateway(
    gateway_id: str, clock: SteppedClock, **overrides: Any
) -> tuple[GatewayPipeline, ListSink]:
    settings = GatewaySettings(
        _env_file=None,
        app_uuid=APP_UUID,
        gateway_id=gateway_id,
        zone_id=f"zone-{gateway_id}",
        pseudonym_key="shared-store-key",
        **overrides,
    )
    sink = ListSink()
    return GatewayPipeline(settings, sink, clock), sink


def _hear(pipeline: GatewayPipeline, rssi: int) -> None:
    frame = ibeacon_frame(UUID(APP_UUID), 0x104D, 0xE62A, -59)
    pipeline.on_advertisement(BLEDevice(PHONE, None, None), bluez_advert(frame, rssi))


def _walk(
    a: GatewayPipeline, b: GatewayPipeline, clock: SteppedClock, rssi_a: int, rssi_b: int, s: int
) -> None:
    """``s`` seconds of a subject heard 5 times a second by both gateways, which exchange
    sightings every second."""
    for _ in range(s):
        for _ in range(5):
            clock.t += 0.2
            _hear(a, rssi_a)
            _hear(b, rssi_b)
        _exchange(a, b, clock)


def _exchange(a: GatewayPipeline, b: GatewayPipeline, clock: SteppedClock) -> None:
    """What the gateways do every second: tell each other what they heard, then housekeeping."""
    for pipeline in (a, b):
        summary = pipeline.sightings(clock.t)
        assert summary is not None
        a.on_peer_sightings(summary, clock.t)
        b.on_peer_sightings(summary, clock.t)
        pipeline.housekeeping(clock.t)


def _introduce(a: GatewayPipeline, b: GatewayPipeline, clock: SteppedClock) -> None:
    """The two gateways have been sending each other their (empty) summaries already."""
    for sender, receiver in ((a, b), (b, a)):
        summary = sender.sightings(clock.t)
        assert summary is not None and summary.sightings == ()
        receiver.on_peer_sightings(summary, clock.t)


def _kinds(sink: ListSink) -> list[PresenceKind]:
    return [event.kind for event in sink.events if event.kind is not PresenceKind.DWELL]


def test_only_the_gateway_hearing_a_shopper_best_enters_it_and_hands_it_over() -> None:
    clock = SteppedClock(T0)
    a, sink_a = _gateway("gw-a", clock)
    b, sink_b = _gateway("gw-b", clock)
    _introduce(a, b, clock)
    # Both gateways estimate the shopper within their 3 m; a hears it 6 dB louder.
    _walk(a, b, clock, -62, -68, 10)
    assert _kinds(sink_a) == [PresenceKind.ENTER]
    assert _kinds(sink_b) == []
    # The shopper walks over to b: b takes over after the hold time, a lets go at once.
    _walk(a, b, clock, -68, -61, 10)
    assert _kinds(sink_a) == [PresenceKind.ENTER, PresenceKind.EXIT]
    assert _kinds(sink_b) == [PresenceKind.ENTER]
    exit_a = sink_a.events[-1]
    enter_b = next(e for e in sink_b.events if e.kind is PresenceKind.ENTER)
    assert enter_b.ts >= exit_a.ts
    assert 0 <= (enter_b.ts - exit_a.ts).total_seconds() <= 1.0
    assert exit_a.subject == enter_b.subject


def test_without_arbitration_both_gateways_enter_the_shopper() -> None:
    clock = SteppedClock(T0)
    a, sink_a = _gateway("gw-a", clock, arbitration=False)
    b, sink_b = _gateway("gw-b", clock, arbitration=False)
    for _ in range(50):
        clock.t += 0.2
        _hear(a, -62)
        _hear(b, -68)
    assert a.sightings(clock.t) is None
    assert _kinds(sink_a) == _kinds(sink_b) == [PresenceKind.ENTER]


def test_a_remote_config_sets_margin_and_hold() -> None:
    clock = SteppedClock(T0)
    a, _ = _gateway("gw-a", clock)
    a.apply_config(
        GatewayConfig(
            version=3,
            store_id="store-1",
            gateway_id="gw-a",
            arbitration_margin_db=8.0,
            arbitration_hold_s=5.0,
        )
    )
    b, sink_b = _gateway("gw-b", clock)
    b.apply_config(
        GatewayConfig(
            version=3,
            store_id="store-1",
            gateway_id="gw-b",
            arbitration_margin_db=8.0,
            arbitration_hold_s=5.0,
        )
    )
    _introduce(a, b, clock)
    _walk(a, b, clock, -62, -68, 5)
    _walk(a, b, clock, -68, -61, 10)  # 7 dB louder: inside the 8 dB margin now
    assert _kinds(sink_b) == []


def test_shoppers_taken_over_together_exit_in_the_order_they_entered() -> None:
    """Exits decided in one housekeeping pass come out in entry order, not in an order that
    Python's string hashing changes from run to run (same seed, same files)."""
    clock = SteppedClock(T0)
    a, sink_a = _gateway("gw-a", clock)
    b, _ = _gateway("gw-b", clock)
    _introduce(a, b, clock)
    phones = [(f"5A:11:22:33:44:{n:02X}", n) for n in range(24)]

    def hear(pipeline: GatewayPipeline, rssi: int) -> None:
        for address, minor in phones:
            frame = ibeacon_frame(UUID(APP_UUID), 0x104D, minor, -59)
            pipeline.on_advertisement(BLEDevice(address, None, None), bluez_advert(frame, rssi))

    def second(heard_by_a: bool) -> None:
        for _ in range(5):
            clock.t += 0.2
            if heard_by_a:
                hear(a, -62)
            hear(b, -75 if heard_by_a else -60)
        _exchange(a, b, clock)

    for _ in range(5):
        second(heard_by_a=True)
    entered = [e.subject for e in sink_a.events if e.kind is PresenceKind.ENTER]
    assert len(entered) == len(phones)
    # a stops hearing them all at once; b, which hears them, takes them when a's readings go
    # stale, all in the same pass.
    while len([e for e in sink_a.events if e.kind is PresenceKind.EXIT]) < len(phones):
        second(heard_by_a=False)
    exits = [e for e in sink_a.events if e.kind is PresenceKind.EXIT]
    assert len({e.ts for e in exits}) == 1
    assert [e.subject for e in exits] == entered


def test_a_gateway_with_a_weaker_radio_is_evened_out_by_its_rssi_offset() -> None:
    """b's radio hears everything 8 dB weaker than a's: a shopper 3 dB nearer b stays a's until
    b's offset makes up for its radio."""
    clock = SteppedClock(T0)
    a, sink_a = _gateway("gw-a", clock)
    b, sink_b = _gateway("gw-b", clock)
    _introduce(a, b, clock)
    _walk(a, b, clock, -64, -69, 10)  # b hears it as if 3 dB louder than a, radios equal
    assert _kinds(sink_a) == [PresenceKind.ENTER]
    assert _kinds(sink_b) == []

    clock = SteppedClock(T0)
    a, sink_a = _gateway("gw-a", clock)
    b, sink_b = _gateway("gw-b", clock, rssi_offset_db=8.0)
    _introduce(a, b, clock)
    _walk(a, b, clock, -64, -69, 10)
    assert _kinds(sink_a) == []
    assert _kinds(sink_b) == [PresenceKind.ENTER]
    assert sink_b.events[0].rssi == pytest.approx(-61, abs=0.5)


def test_a_remote_config_sets_the_rssi_offset_and_null_keeps_the_local_one() -> None:
    config = {"version": 1, "store_id": "store-1", "gateway_id": "gw-a"}
    for remote, heard in ((-3.0, -63), (None, -56)):
        clock = SteppedClock(T0)
        pipeline, sink = _gateway("gw-a", clock, rssi_offset_db=4.0, arbitration=False)
        pipeline.apply_config(GatewayConfig.model_validate({**config, "rssi_offset_db": remote}))
        for _ in range(20):
            clock.t += 0.2
            _hear(pipeline, -60)
        assert [event.kind for event in sink.events] == [PresenceKind.ENTER]
        assert sink.events[0].rssi == pytest.approx(heard, abs=0.5)
    with pytest.raises(ValidationError):
        GatewayConfig.model_validate({**config, "rssi_offset_db": 45})


def test_summaries_from_another_store_or_from_itself_are_ignored() -> None:
    clock = SteppedClock(T0)
    a, sink_a = _gateway("gw-a", clock)
    loud = (Sighting(subject=SUBJECT, rssi=-40.0, age_s=0.0),)
    ts = datetime.fromtimestamp(T0, UTC)
    a.on_peer_sightings(
        PeerSightings(store_id="store-2", gateway_id="gw-b", ts=ts, sightings=loud), T0
    )
    a.on_peer_sightings(
        PeerSightings(store_id="store-1", gateway_id="gw-a", ts=ts, sightings=loud), T0
    )
    _hear(a, -62)
    # Alone in its store as far as it knows: no settling time, it enters at once.
    assert _kinds(sink_a) == [PresenceKind.ENTER]


# --- a simulated shop with two gateways ---------------------------------------------------------


def _score(scenario: Scenario, out: Path) -> dict[str, Any]:
    run_scenario(SimStore(scenario, 3, hours=1.0), out)
    return score_dir(out)


def test_arbitration_halves_the_wrong_zone_visits_of_two_neighbouring_gateways(
    tmp_path: Path,
) -> None:
    scenario = load_scenario("two-counters")
    alone = _score(with_overrides(scenario, ["arbitration=false"]), tmp_path / "alone")
    arbitrated = _score(scenario, tmp_path / "arbitrated")
    assert alone["wrong_zone_rate"] > 0.1
    assert arbitrated["wrong_zone_rate"] < alone["wrong_zone_rate"] / 2
    assert arbitrated["precision"] > alone["precision"]
    assert arbitrated["f1"] > alone["f1"]


# --- two gateway processes over a real broker ---------------------------------------------------


def test_two_gateways_agree_over_mqtt_which_of_them_hears_the_shoppers(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """The door gateway hears the shoppers lingering under it; the one 8 m away, set to enter
    anybody within 50 m, hears them too, and leaves them to the door gateway.

    (Right after start, before the first summaries, each gateway would own what it hears: the
    shoppers come 20 s later.)"""
    start = token_window(time.time()) * TOKEN_WINDOW_S + 1.0
    clock = ScaledClock(start=start, speed=20.0)
    keys: list[bytes | None] = [*demo_app_keys(3), None, None]
    shoppers = [
        SimShopper(f"shopper-{i}", key, arrive_s=20.0 + 3 * i, stay_s=25.0)
        for i, key in enumerate(keys)
    ]
    world = StoreWorld(
        app_uuid=APP_UUID,
        gateways={"gw-door": (0.0, 1.0), "gw-back": (0.0, 9.0)},
        shoppers=shoppers,
        store_beacons=[DEMO_STORE_BEACON],
        start=start,
        seed=0,
    )
    settings = {
        gateway_id: GatewaySettings(
            _env_file=None,
            mqtt_url=mosquitto.url,
            app_uuid=APP_UUID,
            gateway_id=gateway_id,
            zone_id=gateway_id.removeprefix("gw-"),
            enter_distance_m=enter_m,
            exit_timeout_s=10,
            store_beacons=[DEMO_STORE_BEACON_ID],
            pseudonym_key="one-key-for-the-store",
            outbox_path=tmp_path / f"{gateway_id}.db",
            remote_config=False,
        )
        for gateway_id, enter_m in (("gw-door", 3.0), ("gw-back", 50.0))
    }
    everything = MqttRecorder(mosquitto.url, "storelink/v1/#")

    async def main() -> None:
        stop = asyncio.Event()
        gateways = [
            asyncio.create_task(
                run_gateway(
                    gateway,
                    clock=clock,
                    backend=SimScanner,
                    backend_kwargs={"world": world, "gateway_id": gateway_id, "clock": clock},
                    stop=stop,
                )
            )
            for gateway_id, gateway in settings.items()
        ]
        await asyncio.sleep(5.0)  # 100 s of store time: everybody has come and gone
        stop.set()
        await asyncio.gather(*gateways)

    asyncio.run(main())
    wait_for(
        lambda: (
            [
                GatewayStatus.model_validate_json(payload).state
                for topic, payload in everything.all()
                if topic.endswith("/status")
            ].count(GatewayState.OFFLINE)
            == 2
        ),
        what="both gateways offline",
    )
    messages = everything.all()
    everything.close()
    sightings = [
        PeerSightings.model_validate_json(payload)
        for topic, payload in messages
        if topic.endswith("/sightings")
    ]
    assert {s.gateway_id for s in sightings} == {"gw-door", "gw-back"}
    for _, payload in messages:
        assert not contains_mac_address(payload.decode()), payload
    events = [
        PresenceEvent.model_validate_json(payload)
        for topic, payload in messages
        if topic.endswith("/presence")
    ]
    stays: dict[tuple[str, Subject], float] = {}
    for event in events:
        if event.kind is PresenceKind.EXIT:
            stays[event.gateway_id, event.subject] = event.dwell_s
    door = {subject for gateway_id, subject in stays if gateway_id == "gw-door"}
    assert len(door) >= 5  # 3 app tokens and 2 phones, at least
    # Shoppers come once the gateways have been telling each other what they hear for a while.
    # A shopper walking in from the street, 22 m from the back gateway, is the back gateway's
    # while only it hears them (the door gateway may miss their first adverts: one run in about
    # 25), and the door gateway's once it hears them louder: never while they linger.
    back = {
        subject: dwell for (gateway_id, subject), dwell in stays.items() if gateway_id == "gw-back"
    }
    assert set(back) <= door
    assert all(dwell < 20.0 for dwell in back.values()), back
