"""Recording what the radio hears and replaying it: `gateway record`, the replay scanner."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from typer.testing import CliRunner

from firmware_sim.bleak_data import advertisement_data, ble_device
from firmware_sim.frames import ibeacon_frame, nearby_info_frame
from firmware_sim.scanner import SimScanner
from firmware_sim.world import DEMO_STORE_BEACON_ID, demo_app_keys, demo_world
from gateway.config import GatewaySettings
from gateway.decode.ad import parse_ad
from gateway.pipeline import GatewayPipeline
from gateway.record import AdvertRecorder, record_adverts
from gateway.run import run_gateway
from gateway.sources import scanner_source
from gateway.sources_replay import (
    RecordedAdvert,
    RecordingError,
    ReplayScanner,
    advertisement,
    read_recording,
)
from storelink.cli import app
from storelink.clock import ScaledClock, SteppedClock
from storelink.tokens import TOKEN_WINDOW_S
from storelink.wire import PresenceEvent, SubjectType, contains_mac_address
from tests.helpers import ListSink, bluez_advert
from tests.services import Mosquitto

APP_UUID = "5f2dd896-b886-4549-ae01-e41acd7a354a"
START = 1_960_000 * TOKEN_WINDOW_S
PHONE = "5A:11:22:33:44:55"


def settings(**overrides: Any) -> GatewaySettings:
    return GatewaySettings(
        _env_file=None,
        app_uuid=APP_UUID,
        store_beacons=[DEMO_STORE_BEACON_ID],
        pseudonym_key="k" * 32,
        **overrides,
    )


# --- recording ----------------------------------------------------------------------------------


def test_a_recording_holds_no_hardware_address() -> None:
    out = io.StringIO()
    clock = SteppedClock(START)
    recorder = AdvertRecorder(out, clock, source="bleak")
    token = ibeacon_frame(UUID(APP_UUID), 1, 2, -59)
    for address in (PHONE, PHONE, "C3:00:00:00:00:01"):
        recorder.on_advertisement(BLEDevice(address, None, None), bluez_advert(token, -60))
        clock.t += 0.25
    text = out.getvalue()
    assert not contains_mac_address(text)
    assert "5a1122334455" not in text.lower().replace(":", "")
    header, *lines = (json.loads(line) for line in text.splitlines())
    assert header == {
        "format": "storelink-adverts",
        "version": 1,
        "started": START,
        "source": "bleak",
    }
    assert [line["t"] for line in lines] == [START, START + 0.25, START + 0.5]
    aliases = [line["address"] for line in lines]
    assert aliases[0] == aliases[1] != aliases[2]
    assert all(alias.startswith("rec-") for alias in aliases)
    # BlueZ gave fields only: the bytes are rebuilt, and decode as the original.
    assert all(line["rebuilt"] for line in lines)
    assert parse_ad(bytes.fromhex(lines[0]["raw"]))[3] == parse_ad(token)[3]
    assert recorder.recorded == 3 and recorder.rebuilt == 3


def test_each_recording_has_its_own_pseudonyms() -> None:
    aliases = set()
    for _ in range(2):
        recorder = AdvertRecorder(io.StringIO(), SteppedClock(START))
        aliases.add(recorder.alias(PHONE))
    assert len(aliases) == 2


def test_raw_bytes_are_recorded_as_received_where_the_source_keeps_them() -> None:
    world = demo_world(APP_UUID, START, demo_app_keys(1), anonymous=1, seed=1)
    out = io.StringIO()
    recorder = AdvertRecorder(out, SteppedClock(START), source="sim")
    adverts = world.adverts_between("gw-1", START, START + 5)
    for advert in adverts:
        adv = advertisement_data(advert)
        recorder.on_advertisement(ble_device(advert, adv), adv)
    lines = [json.loads(line) for line in out.getvalue().splitlines()[1:]]
    assert [bytes.fromhex(line["raw"]) for line in lines] == [a.raw for a in adverts]
    assert not any(line["rebuilt"] for line in lines)


def test_an_advert_that_cannot_be_recorded_is_counted() -> None:
    recorder = AdvertRecorder(io.StringIO(), SteppedClock(START))
    garbage = AdvertisementData(None, {0x004C: 12345}, {}, [], None, -60, ())  # type: ignore[dict-item]
    recorder.on_advertisement(BLEDevice(PHONE, None, None), garbage)
    assert (recorder.recorded, recorder.errors) == (0, 1)


# --- reading ------------------------------------------------------------------------------------


def write_lines(path: Path, *lines: object) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def test_unreadable_lines_are_skipped(tmp_path: Path) -> None:
    good = {"t": 1.5, "address": "rec-1", "rssi": -60, "raw": "020106", "rebuilt": False}
    path = write_lines(
        tmp_path / "r.jsonl",
        {"format": "storelink-adverts", "version": 1, "started": 1.0, "source": "sim"},
        good,
        "",
        {"t": "x", "address": "rec-1", "rssi": -60, "raw": "02"},
        {"t": 2, "address": "rec-1", "rssi": -60, "raw": "zz"},
        {"t": 2, "address": "rec-1", "rssi": True, "raw": "02"},
        [1, 2],
        '{"t": 3, "address": "rec-2", "rssi": -61, "ra',  # cut short by a power cut
        {"t": 4, "address": "rec-2", "rssi": -62, "raw": ""},
    )
    assert list(read_recording(path)) == [
        RecordedAdvert(1.5, "rec-1", -60, b"\x02\x01\x06"),
        RecordedAdvert(4.0, "rec-2", -62, b""),
    ]


@pytest.mark.parametrize(
    "header",
    [{"format": "something-else", "version": 1}, {"format": "storelink-adverts", "version": 2}],
)
def test_other_formats_are_refused(tmp_path: Path, header: dict[str, Any]) -> None:
    with pytest.raises(RecordingError):
        list(read_recording(write_lines(tmp_path / "r.jsonl", header)))


# --- replaying ----------------------------------------------------------------------------------


def test_a_replay_gives_the_events_the_live_gateway_gave(tmp_path: Path) -> None:
    world = demo_world(APP_UUID, START, demo_app_keys(2), anonymous=2, seed=5)
    adverts = world.adverts_between("gw-1", START, START + 90)
    live_clock, live_sink = SteppedClock(START), ListSink()
    live = GatewayPipeline(settings(), live_sink, live_clock)
    path = tmp_path / "store.jsonl"
    with path.open("w") as out:
        recorder = AdvertRecorder(out, live_clock, source="sim")
        for advert in adverts:
            live_clock.t = advert.t
            adv = advertisement_data(advert)
            device = ble_device(advert, adv)
            recorder.on_advertisement(device, adv)
            live.on_advertisement(device, adv)
    live.close(START + 90)

    replay_clock, replay_sink = SteppedClock(START), ListSink()
    replayed = GatewayPipeline(settings(), replay_sink, replay_clock)
    for recorded in read_recording(path):
        replay_clock.t = recorded.t
        replayed.on_advertisement(*advertisement(recorded))
    replayed.close(START + 90)

    def shape(events: list[PresenceEvent]) -> list[tuple[Any, ...]]:
        return [(e.kind, e.subject.type, e.ts, e.rssi, e.distance_m) for e in events]

    assert len(live_sink.events) > 5
    assert shape(replay_sink.events) == shape(live_sink.events)
    # Apps keep their tokens; anonymous phones get other pseudonyms, one for one.
    pairs = {
        (a.subject, b.subject) for a, b in zip(live_sink.events, replay_sink.events, strict=True)
    }
    assert all(a == b for a, b in pairs if a.type is SubjectType.APP)
    anonymous = [(a, b) for a, b in pairs if a.type is SubjectType.ANONYMOUS]
    assert anonymous and len({a for a, _ in anonymous}) == len({b for _, b in anonymous}) == len(
        anonymous
    )


def test_the_replay_scanner_keeps_the_recorded_pace(tmp_path: Path) -> None:
    raw = nearby_info_frame(b"abc").hex()
    path = write_lines(
        tmp_path / "r.jsonl",
        {"format": "storelink-adverts", "version": 1, "started": 100.0, "source": "bleak"},
        *(
            {"t": 100.0 + dt, "address": "rec-1", "rssi": -60, "raw": raw}
            for dt in (0, 0.5, 0.5, 3)
        ),
    )
    clock = SteppedClock(START)
    seen: list[tuple[float, BLEDevice, AdvertisementData]] = []

    async def run() -> ReplayScanner:
        scanner = BleakScanner(
            lambda device, adv: seen.append((clock.now(), device, adv)),
            backend=ReplayScanner,
            path=path,
            clock=clock,
        )
        backend = scanner._backend
        assert isinstance(backend, ReplayScanner)
        async with scanner:
            for _ in range(100):
                if backend.finished:
                    break
                await asyncio.sleep(0)
        return backend

    backend = asyncio.run(run())
    assert backend.delivered == 4
    assert [t - START for t, _, _ in seen] == [0, 0.5, 0.5, 3]
    device, adv = seen[0][1], seen[0][2]
    assert device.address == "rec-1"
    assert adv.manufacturer_data.keys() == {0x004C}
    assert isinstance(adv.platform_data[0], RecordedAdvert)


def test_scanner_source_plays_back_a_recording(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "r.jsonl", {"format": "storelink-adverts", "version": 1})
    clock = SteppedClock(START)
    backend, kwargs = scanner_source(settings(scanner="replay", replay_file=path), clock)
    assert backend is ReplayScanner
    assert kwargs == {"path": path, "clock": clock}
    with pytest.raises(ValueError, match="replay_file"):
        scanner_source(settings(scanner="replay"), clock)


def test_record_adverts_from_the_simulator(tmp_path: Path) -> None:
    clock = ScaledClock(start=START, speed=50)
    world = demo_world(APP_UUID, START, demo_app_keys(2), anonymous=1, seed=2)
    path = tmp_path / "sub" / "sim.jsonl"
    summary = asyncio.run(
        record_adverts(
            settings(scanner="sim"),
            path,
            clock=clock,
            stop=asyncio.Event(),
            duration_s=20,
            backend=SimScanner,
            backend_kwargs={"world": world, "gateway_id": "gw-1", "clock": clock},
        )
    )
    recorded = list(read_recording(path))
    assert summary["adverts"] == len(recorded) > 50
    assert summary["rebuilt"] == summary["errors"] == 0
    assert not contains_mac_address(path.read_text())


def test_the_record_command(tmp_path: Path) -> None:
    path = tmp_path / "cli.jsonl"
    result = CliRunner().invoke(
        app, ["gateway", "record", str(path), "--scanner", "sim", "--duration", "0.5"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["file"] == str(path)
    assert summary["adverts"] == len(list(read_recording(path))) > 0
    assert not contains_mac_address(path.read_text())


def test_a_finished_recording_is_not_a_stalled_radio(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """The watchdog restarts a silent scanner; a replay that ended must not start over."""
    raw = nearby_info_frame(b"abc").hex()
    path = write_lines(
        tmp_path / "r.jsonl",
        {"format": "storelink-adverts", "version": 1, "started": 100.0, "source": "bleak"},
        *({"t": 100.0 + i * 0.2, "address": "rec-1", "rssi": -60, "raw": raw} for i in range(10)),
    )
    clock = ScaledClock(start=START, speed=20)
    gateway = settings(
        scanner="replay",
        replay_file=path,
        mqtt_url=mosquitto.url,
        outbox_path=str(tmp_path / "outbox.db"),
        watchdog_s=2,
        exit_timeout_s=3,
    )

    async def run() -> Any:
        stop = asyncio.Event()
        backend, kwargs = scanner_source(gateway, clock)
        task = asyncio.create_task(
            run_gateway(gateway, clock=clock, backend=backend, backend_kwargs=kwargs, stop=stop)
        )
        await asyncio.sleep(20 / 20)  # 20 s of simulated time: ten watchdog periods
        stop.set()
        return await task

    counters = asyncio.run(run())
    assert counters.adverts_seen == 10
    assert counters.scanner_restarts == 0
