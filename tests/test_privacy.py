"""No raw address leaves the gateway: not in a published payload, a log line or a file it writes.

A simulated hour of the supermarket (phones without the app, wearables with rotating addresses,
beacons) runs through the real gateway pipelines with logging at DEBUG; every presence payload,
every status, every file of the run and every log record is scanned for the addresses the
simulator actually used, and for anything shaped like one.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from firmware_sim.airwaves import TICK_S, Airwaves, Reception
from firmware_sim.runner import run_scenario
from firmware_sim.scenario import load_scenario
from firmware_sim.store import SimStore
from storelink.wire import contains_mac_address


def _bare(address: str) -> str:
    return address.replace(":", "").lower()


def test_a_simulated_hour_publishes_and_logs_no_address(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SimStore(load_scenario("supermarket"), 4, hours=1)
    seen: set[str] = set()
    make_airwaves = store.airwaves

    def recording_airwaves(tick_s: float = TICK_S) -> Airwaves:
        """The store's airwaves, noting every address that goes on air."""
        airwaves = make_airwaves(tick_s)
        tick = airwaves.tick

        def recording_tick() -> tuple[float, float, list[Reception]]:
            t0, t1, receptions = tick()
            seen.update(advert.address for _, _, advert in receptions)
            return t0, t1, receptions

        airwaves.tick = recording_tick  # type: ignore[method-assign]
        return airwaves

    store.airwaves = recording_airwaves  # type: ignore[method-assign]
    with caplog.at_level(logging.DEBUG):
        summary = run_scenario(store, tmp_path)

    assert len(seen) > 50, "the hour must have heard many devices"
    texts = [path.read_text() for path in tmp_path.iterdir() if path.suffix in (".jsonl", ".json")]
    texts += [record.getMessage() for record in caplog.records]
    presence = (tmp_path / "presence.jsonl").read_text()
    assert presence.count("\n") > 20, summary
    bare = {_bare(address) for address in seen}
    for text in texts:
        assert not contains_mac_address(text)
        lowered = text.lower().replace(":", "")
        leaked = [address for address in bare if address in lowered]
        assert not leaked, f"raw addresses leaked: {leaked[:3]}"
