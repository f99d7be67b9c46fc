from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from storelink.mqtt import BrokerAddress
from storelink.settings import StorelinkSettings


def test_yaml_file_then_environment_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "storelink.yaml"
    config.write_text('mqtt_url: mqtt://yaml-broker:1884\nmqtt_protocol: "3.1.1"\n')
    monkeypatch.setenv("STORELINK_CONFIG", str(config))
    assert StorelinkSettings().mqtt_url == "mqtt://yaml-broker:1884"
    assert StorelinkSettings().mqtt_protocol == "3.1.1"
    monkeypatch.setenv("STORELINK_MQTT_URL", "mqtt://env-broker:1885")
    assert StorelinkSettings().mqtt_url == "mqtt://env-broker:1885"


def test_missing_config_file_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORELINK_CONFIG", str(tmp_path / "nope.yaml"))
    with pytest.raises(FileNotFoundError, match=r"nope\.yaml"):
        StorelinkSettings()


def test_bad_protocol_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORELINK_MQTT_PROTOCOL", "4")
    with pytest.raises(ValidationError, match="mqtt_protocol"):
        StorelinkSettings()


def test_broker_address_from_url() -> None:
    plain = BrokerAddress.from_url("mqtt://127.0.0.1:1999")
    assert (plain.host, plain.port, plain.tls, plain.username) == ("127.0.0.1", 1999, False, None)
    secure = BrokerAddress.from_url("mqtts://gw%2D1:p%40ss@broker.example.com")
    assert (secure.port, secure.tls, secure.username, secure.password) == (
        8883,
        True,
        "gw-1",
        "p@ss",
    )
    with pytest.raises(ValueError, match="unsupported MQTT URL scheme"):
        BrokerAddress.from_url("http://broker")
    with pytest.raises(ValueError, match="no host"):
        BrokerAddress.from_url("mqtt://")
