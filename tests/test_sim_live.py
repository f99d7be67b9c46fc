"""A scenario's gateway as a live process: the real gateway over MQTT, hearing a simulated store."""

from __future__ import annotations

import asyncio
from pathlib import Path

from typer.testing import CliRunner

from firmware_sim.live import live_gateway
from firmware_sim.scanner import SimScanner
from gateway.config import GatewaySettings
from gateway.run import run_gateway
from storelink.cli import app
from storelink.wire import PresenceEvent, PresenceKind, contains_mac_address
from tests.helpers import MqttRecorder, wait_for
from tests.services import Mosquitto


def test_a_scenario_gateway_publishes_the_scenarios_presence_over_mqtt(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    base = GatewaySettings(
        _env_file=None,
        mqtt_url=mosquitto.url,
        gateway_id="gw-right",
        zone_id="anything",
        enter_distance_m=1.0,
        outbox_path=tmp_path / "outbox.db",
        remote_config=False,
    )
    live = live_gateway(base, "two-counters", seed=1, speed=150.0)
    settings = live.settings
    # The scenario's presence settings, the local broker and outbox.
    assert (settings.store_id, settings.gateway_id, settings.zone_id) == (
        "counters-1",
        "gw-right",
        "right",
    )
    assert settings.enter_distance_m == 5.0 and settings.scanner == "sim"
    assert (settings.mqtt_url, settings.outbox_path) == (base.mqtt_url, base.outbox_path)
    collector = MqttRecorder(mosquitto.url, "storelink/v1/counters-1/gw-right/#")

    async def main() -> None:
        stop = asyncio.Event()
        gateway = asyncio.create_task(
            run_gateway(
                settings,
                clock=live.clock,
                backend=SimScanner,
                backend_kwargs={"world": live.world, "gateway_id": "gw-right", "clock": live.clock},
                stop=stop,
            )
        )
        await asyncio.sleep(4.0)  # 10 minutes of the scenario's morning
        stop.set()
        await gateway

    asyncio.run(main())
    wait_for(
        lambda: any(topic.endswith("/presence") for topic, _ in collector.all()),
        what="presence events",
    )
    messages = collector.all()
    collector.close()
    events = [
        PresenceEvent.model_validate_json(payload)
        for topic, payload in messages
        if topic.endswith("/presence")
    ]
    assert {e.zone_id for e in events} == {"right"}
    assert PresenceKind.ENTER in {e.kind for e in events}
    # Dated on the scenario's day, on its clock.
    assert {e.ts.date().isoformat() for e in events} == {"2026-11-24"}
    assert not any(contains_mac_address(payload.decode()) for _, payload in messages)


def test_an_unknown_scenario_is_a_clear_error() -> None:
    result = CliRunner().invoke(app, ["gateway", "run", "--scenario", "no-such-store"])
    assert result.exit_code != 0
    assert "no scenario 'no-such-store'" in result.output
