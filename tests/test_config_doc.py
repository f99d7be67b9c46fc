from __future__ import annotations

from pathlib import Path

from storelink.config_doc import render

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def test_configuration_page_is_current() -> None:
    assert DOC.read_text() == render(), (
        "docs/configuration.md is stale: python -m storelink.config_doc > docs/configuration.md"
    )


def test_every_setting_is_described() -> None:
    from cloud_api.config import CloudSettings
    from gateway.config import GatewaySettings

    for settings_cls in (CloudSettings, GatewaySettings):
        for name, field in settings_cls.model_fields.items():
            assert field.description, f"{settings_cls.__name__}.{name} has no description"
