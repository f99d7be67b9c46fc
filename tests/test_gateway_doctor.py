"""`storelink gateway doctor`, the systemd unit and the Pi's health readings."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway import doctor
from gateway.config import GatewaySettings
from gateway.doctor import Level, check_bluetooth, check_clock, check_cpu_temperature
from gateway.status import GatewayCounters, Heartbeat, read_cpu_temp_c
from storelink.broker import free_port
from storelink.cli import app
from storelink.settings import CONFIG_ENV
from storelink.wire import GatewayState
from tests.services import Mosquitto

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "deploy" / "systemd" / "storelink-gateway.service"
EXAMPLE = ROOT / "deploy" / "systemd" / "gateway.example.yaml"


def doctor_cli(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, yaml: str, *extra: str
) -> tuple[int, list[str]]:
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml)
    # The command sets STORELINK_CONFIG; monkeypatch puts the old value back afterwards.
    monkeypatch.setenv(CONFIG_ENV, str(config))
    result = CliRunner().invoke(app, ["gateway", "doctor", "--config", str(config), *extra])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output.splitlines()


def line(lines: list[str], name: str) -> str:
    [found] = [text for text in lines if text.split()[1:2] == [name]]
    return found


def test_doctor_passes_with_a_reachable_broker(
    mosquitto: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, lines = doctor_cli(
        monkeypatch,
        tmp_path,
        f"mqtt_url: {mosquitto.url}\nscanner: sim\noutbox_path: {tmp_path}/state/outbox.db\n",
    )
    assert line(lines, "broker").startswith("OK")
    assert f"connected to {mosquitto.host}:{mosquitto.port}" in line(lines, "broker")
    assert line(lines, "config").startswith("OK")
    assert line(lines, "outbox").startswith("OK")
    assert line(lines, "bluetooth") == "OK    bluetooth     not used: scanner is sim"
    for text in lines[:-1]:
        assert text.split()[0] in {"OK", "WARN", "FAIL"}, text
    assert not any(text.startswith("FAIL") for text in lines), lines
    assert code == 0
    assert ": 0 failed, " in lines[-1]


def test_doctor_fails_on_a_closed_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    started = time.monotonic()
    code, lines = doctor_cli(
        monkeypatch,
        tmp_path,
        f"mqtt_url: mqtt://127.0.0.1:{port}\nscanner: sim\noutbox_path: {tmp_path}/o.db\n",
        "--timeout",
        "2",
    )
    assert time.monotonic() - started < 30
    broker = line(lines, "broker")
    assert broker.startswith("FAIL")
    assert f"127.0.0.1:{port}" in broker and "->" in broker, "says what failed and what to do"
    assert code == 1


def test_doctor_fails_on_a_broken_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, lines = doctor_cli(
        monkeypatch, tmp_path, "scanner: sim\nsmoothing_alpha: 7\nstore_beacons: [nope]\n"
    )
    config = line(lines, "config")
    assert config.startswith("FAIL")
    assert "smoothing_alpha" in config and "store_beacons" in config
    assert not any(text.split()[1:2] == ["broker"] for text in lines), "no broker to try"
    assert code == 1


def test_without_dbus_bluetooth_checks_say_so_and_do_not_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(doctor, "SYSTEM_BUS_SOCKET", tmp_path / "no-such-socket")
    monkeypatch.setattr(doctor, "SYS_BLUETOOTH", tmp_path / "no-sysfs")
    monkeypatch.delenv("DBUS_SYSTEM_BUS_ADDRESS", raising=False)
    checks = {c.name: c for c in check_bluetooth(GatewaySettings(scanner="bleak"), 2.0)}
    assert checks["dbus"].level is Level.FAIL
    assert "no system D-Bus" in checks["dbus"].message and checks["dbus"].advice
    assert checks["adapter"].level is Level.FAIL
    # The kernel lists an adapter: that much is known even without D-Bus.
    sysfs = tmp_path / "sysfs"
    (sysfs / "hci0").mkdir(parents=True)
    monkeypatch.setattr(doctor, "SYS_BLUETOOTH", sysfs)
    checks = {c.name: c for c in check_bluetooth(GatewaySettings(scanner="bleak"), 2.0)}
    assert (checks["adapter"].level, checks["adapter"].message) == (
        Level.OK,
        "the kernel has hci0",
    )
    checks = {
        c.name: c for c in check_bluetooth(GatewaySettings(scanner="bleak", adapter="hci1"), 2.0)
    }
    assert checks["adapter"].level is Level.FAIL and "hci1 not found" in checks["adapter"].message


def test_a_dbus_address_that_answers_nothing_is_a_failure_not_a_hang(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/nobody-listens")
    started = time.monotonic()
    checks = {c.name: c for c in check_bluetooth(GatewaySettings(scanner="bleak"), 2.0)}
    assert time.monotonic() - started < 10
    assert checks["dbus"].level is Level.FAIL


def fake_command(bin_dir: Path, name: str, output: str, code: int = 0) -> None:
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / name
    script.write_text(f"#!/bin/sh\nprintf '%s\\n' '{output}'\nexit {code}\n")
    script.chmod(0o755)


def test_clock_sync_is_read_from_timedatectl_or_chrony(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(doctor, "TIMESYNC_FLAG", tmp_path / "no-flag")
    assert check_clock(2.0).level is Level.WARN, "nothing to ask: cannot tell"
    assert "cannot tell" in check_clock(2.0).message
    fake_command(bin_dir, "chronyc", "Leap status     : Not synchronised")
    assert check_clock(2.0).level is Level.WARN
    fake_command(bin_dir, "chronyc", "Leap status     : Normal")
    assert check_clock(2.0) == doctor.Check("clock", Level.OK, "synchronised (chrony)")
    fake_command(bin_dir, "timedatectl", "no")
    assert check_clock(2.0).level is Level.WARN
    fake_command(bin_dir, "timedatectl", "yes")
    assert check_clock(2.0).message == "synchronised (timedatectl)"
    # timedatectl without systemd (a container) fails: the next source is asked.
    fake_command(bin_dir, "timedatectl", "System has not been booted with systemd", code=1)
    assert check_clock(2.0).message == "synchronised (chrony)"
    assert check_clock(2.0, now=3600.0).level is Level.FAIL, "1970: the clock was never set"


def test_cpu_temperature_from_sysfs(tmp_path: Path) -> None:
    thermal = tmp_path / "temp"
    assert read_cpu_temp_c(thermal) is None
    assert check_cpu_temperature(thermal).level is Level.OK
    thermal.write_text("48312\n")
    assert read_cpu_temp_c(thermal) == 48.3
    assert check_cpu_temperature(thermal).message == "48.3 °C"
    thermal.write_text("83000\n")
    assert check_cpu_temperature(thermal).level is Level.WARN


def test_the_heartbeat_carries_rate_uptime_temperature_and_config() -> None:
    thermal_missing = Path("/nonexistent/thermal")
    heartbeat = Heartbeat(GatewaySettings(), 1000.0, thermal_path=thermal_missing)
    counters = GatewayCounters(adverts_seen=0)
    counters.adverts_seen = 300
    status = heartbeat.status(GatewayState.ONLINE, 1030.0, counters)
    assert (status.adverts_per_s, status.uptime_s, status.cpu_temp_c) == (10.0, 30.0, None)
    heartbeat.config_rejected("zones: too short")
    counters.adverts_seen, counters.scanner_restarts = 300, 2
    status = heartbeat.status(GatewayState.ONLINE, 1060.0, counters)
    assert (status.adverts_per_s, status.scanner_restarts) == (0.0, 2)
    assert (status.config_version, status.config_error) == (None, "zones: too short")
    heartbeat.config_applied(4)
    status = heartbeat.status(GatewayState.ONLINE, 1061.0, counters)
    assert (status.config_version, status.config_error) == (4, None)


def test_the_systemd_unit_runs_the_gateway_as_documented() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(UNIT.read_text())
    service = unit["Service"]
    assert service["Restart"] == "always"
    assert service["ExecStart"].endswith(
        "storelink gateway run --config /etc/storelink/gateway.yaml"
    )
    assert service["User"] not in ("", "root")
    assert "bluetooth" in service["SupplementaryGroups"].split()
    assert set(service["AmbientCapabilities"].split()) == {"CAP_NET_ADMIN", "CAP_NET_RAW"}
    assert service["StateDirectory"] == "storelink"
    assert service["WorkingDirectory"] == "/var/lib/storelink"
    assert unit["Unit"]["StartLimitIntervalSec"] == "0"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text())
    done = subprocess.run(
        ["systemd-analyze", "verify", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # /opt/storelink is not installed here; anything else it says is a mistake in the unit.
    complaints = [
        text
        for text in (done.stdout + done.stderr).splitlines()
        if text.strip() and "/opt/storelink/bin/storelink" not in text
    ]
    assert complaints == []


def test_the_example_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_ENV, str(EXAMPLE))
    settings = GatewaySettings()
    assert settings.outbox_path == Path("/var/lib/storelink/outbox.db")
    assert settings.store_id == "store-berlin-01"
    assert settings.scanner == "bleak"
