"""Settings shared by every storelink process.

Values come, highest priority first, from constructor arguments, ``STORELINK_*`` environment
variables, a ``.env`` file, and the YAML file named by ``STORELINK_CONFIG`` (see
docs/configuration.md). Each part (gateway, cloud) extends ``StorelinkSettings`` with its own
fields, so one YAML file can configure a whole machine.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

CONFIG_ENV = "STORELINK_CONFIG"

MqttProtocol = Literal["5", "3.1.1"]

MAX_REASONS = 5


def describe_validation_error(exc: ValidationError) -> str:
    """Where and what, never the offending value: it may be a password or a wearable's IRK."""
    reasons = []
    for error in exc.errors(include_url=False, include_input=False)[:MAX_REASONS]:
        where = ".".join(str(part) for part in error["loc"]) or "config"
        reasons.append(f"{where}: {error['msg']}")
    more = exc.error_count() - len(reasons)
    if more > 0:
        reasons.append(f"and {more} more")
    return "; ".join(reasons)


class StorelinkSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="STORELINK_", env_file=".env", extra="ignore", env_nested_delimiter="__"
    )

    mqtt_url: str = Field(
        default="mqtt://127.0.0.1:1883",
        description="mqtt://[user:password@]host[:port]; mqtts:// for TLS",
    )
    mqtt_protocol: MqttProtocol = Field(
        default="5", description="MQTT 5 for Mosquitto/EMQX; 3.1.1 for the embedded broker"
    )
    app_uuid: str = Field(
        default="5f2dd896-b886-4549-ae01-e41acd7a354a",
        description="the retailer's iBeacon proximity UUID that the shopper app advertises",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, dotenv_settings]
        config_file = os.environ.get(CONFIG_ENV)
        if config_file:
            path = Path(config_file)
            if not path.is_file():
                raise FileNotFoundError(f"{CONFIG_ENV}={config_file}: no such file")
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=path))
        sources.append(file_secret_settings)
        return tuple(sources)
