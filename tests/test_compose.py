"""docker-compose.yml cannot run here (no Docker engine): it must parse and name real files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
EXPECTED_SERVICES = {"mosquitto", "influxdb", "postgres", "cloud-api", "grafana", "sim-gateway"}


def _compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def test_compose_describes_the_production_stack() -> None:
    services = _compose()["services"]
    assert set(services) == EXPECTED_SERVICES
    assert services["mosquitto"]["image"].startswith("eclipse-mosquitto:2")
    assert services["influxdb"]["image"].startswith("influxdb:2")
    assert services["postgres"]["image"].startswith("postgres")
    assert services["grafana"]["image"].startswith("grafana/grafana")
    api_env = services["cloud-api"]["environment"]
    assert api_env["STORELINK_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert api_env["STORELINK_MQTT_URL"] == "mqtt://mosquitto:1883"


def test_every_referenced_file_exists() -> None:
    compose = _compose()
    named_volumes = set(compose.get("volumes") or {})
    checked = 0
    for name, service in compose["services"].items():
        if "build" in service:
            context = ROOT / (service["build"] if isinstance(service["build"], str) else ".")
            assert (context / "Dockerfile").is_file(), f"{name}: no Dockerfile in {context}"
            checked += 1
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source in named_volumes:
                continue
            assert (ROOT / source).exists(), f"{name}: {source} does not exist"
            checked += 1
    assert checked >= 5


def test_dockerfile_copies_existing_paths() -> None:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    copies = [line.split()[1:-1] for line in lines if line.startswith("COPY ")]
    assert copies
    for sources in copies:
        for source in sources:
            assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"


def test_compose_commands_name_real_cli_commands() -> None:
    from typer.testing import CliRunner

    from storelink.cli import app

    runner = CliRunner()
    for service in _compose()["services"].values():
        command = service.get("command")
        if not command or command[0] != "storelink":
            continue
        result = runner.invoke(app, [*command[1:3], "--help"])
        assert result.exit_code == 0, result.output
