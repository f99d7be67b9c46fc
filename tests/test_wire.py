from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from storelink.wire import (
    PresenceEvent,
    contains_mac_address,
    notification_topic,
    parse_gateway_topic,
    presence_topic,
    status_topic,
)


def event(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "store_id": "store-1",
        "gateway_id": "gw-1",
        "zone_id": "entrance",
        "kind": "enter",
        "subject": {"type": "app", "ref": "104de62a"},
        "ts": "2026-11-24T16:00:00+01:00",
        "dwell_s": 0,
        "rssi": -60.5,
        "distance_m": 1.2,
    }
    base.update(overrides)
    return base


def test_topics() -> None:
    assert presence_topic("s1", "g1") == "storelink/v1/s1/g1/presence"
    assert status_topic("s1", "g1") == "storelink/v1/s1/g1/status"
    assert notification_topic("shp_x") == "storelink/v1/shoppers/shp_x/notifications"
    assert parse_gateway_topic("storelink/v1/s1/g1/presence") == ("s1", "g1", "presence")
    with pytest.raises(ValueError, match="not a storelink gateway topic"):
        parse_gateway_topic("storelink/v2/s1/g1/presence")


def test_presence_event_round_trip_normalises_to_utc() -> None:
    parsed = PresenceEvent.model_validate(event())
    assert parsed.ts == datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
    assert parsed.ts.utcoffset() == timedelta(0)
    assert len(parsed.event_id) == 26
    assert PresenceEvent.model_validate_json(parsed.model_dump_json()) == parsed


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"kind": "wander"}, "kind"),
        ({"subject": {"type": "anonymous", "ref": "aa:bb:cc:dd:ee:ff"}}, "hardware address"),
        ({"subject": {"type": "app", "ref": "x-aa:bb-cc:dd-ee:ff"}}, "hardware address"),
        ({"ts": "2026-11-24T16:00:00"}, "timezone"),
        ({"store_id": "store/1"}, "store_id"),
        ({"zone_id": "#"}, "zone_id"),
        ({"dwell_s": -1}, "dwell_s"),
        ({"mac": "aa:bb:cc:dd:ee:ff"}, "Extra inputs"),
    ],
)
def test_presence_event_rejects_bad_input(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PresenceEvent.model_validate(event(**overrides))


def test_mac_detector() -> None:
    assert contains_mac_address('{"x": "AA:BB:CC:DD:EE:FF"}')
    assert contains_mac_address("aa-bb-cc-dd-ee-ff")
    assert contains_mac_address("ref-AA:bb-CC:dd-EE:ff.1")
    assert not contains_mac_address("aa:bb:cc:dd:ee")
    assert not contains_mac_address("5f2dd896-b886-4549-ae01-e41acd7a354a")
    assert not contains_mac_address("2026-11-24T16:00:00Z")


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_refused(value: str) -> None:
    payload = (
        PresenceEvent.model_validate(event())
        .model_dump_json()
        .replace('"rssi":-60.5', f'"rssi":{value}')
    )
    with pytest.raises(ValidationError, match="rssi"):
        PresenceEvent.model_validate_json(payload)
