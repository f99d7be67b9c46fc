from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.config import GatewaySettings, canonical_beacon_id


def test_defaults() -> None:
    settings = GatewaySettings()
    assert (settings.store_id, settings.gateway_id, settings.zone_id) == (
        "store-1",
        "gw-1",
        "entrance",
    )
    assert settings.scanner == "bleak"
    assert settings.store_beacons == []
    assert settings.pseudonym_key is None


def test_environment_variables_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORELINK_ENTER_DISTANCE_M", "2.5")
    monkeypatch.setenv("STORELINK_SCANNER", "sim")
    monkeypatch.setenv("STORELINK_STORE_BEACONS", '["E2C56DB5-DFFB-48D2-B060-D0F5A71096E0:1:2"]')
    settings = GatewaySettings()
    assert settings.enter_distance_m == 2.5
    assert settings.scanner == "sim"
    assert settings.store_beacons == ["e2c56db5-dffb-48d2-b060-d0f5a71096e0:1:2"]


def test_store_beacons_are_canonical() -> None:
    assert canonical_beacon_id("E2C56DB5DFFB48D2B060D0F5A71096E0:01:2") == (
        "e2c56db5-dffb-48d2-b060-d0f5a71096e0:1:2"
    )


@pytest.mark.parametrize(
    "value",
    [
        "not-a-uuid:1:2",
        "e2c56db5-dffb-48d2-b060-d0f5a71096e0:1",
        "e2c56db5-dffb-48d2-b060-d0f5a71096e0:1:65536",
    ],
)
def test_bad_store_beacons_are_refused(value: str) -> None:
    with pytest.raises(ValidationError, match=r"beacon|16-bit"):
        GatewaySettings(store_beacons=[value])


def test_out_of_range_values_are_refused() -> None:
    with pytest.raises(ValidationError):
        GatewaySettings(smoothing_alpha=0)
    with pytest.raises(ValidationError):
        GatewaySettings(gateway_id="gw/1")


def test_the_pseudonym_key_stays_secret() -> None:
    settings = GatewaySettings(pseudonym_key="hunter2-hunter2")
    assert "hunter2" not in repr(settings)
    assert settings.pseudonym_key is not None
    assert settings.pseudonym_key.get_secret_value() == "hunter2-hunter2"


def test_every_field_is_documented() -> None:
    undocumented = [n for n, f in GatewaySettings.model_fields.items() if not f.description]
    assert undocumented == []
