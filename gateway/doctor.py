"""`storelink gateway doctor`: is this machine ready to run the gateway, and if not, why not.

One line per check, ``OK``, ``WARN`` or ``FAIL``, with what to do about anything that is not OK.
A FAIL makes the command exit non-zero, so it can gate an install script. Every check is bounded
in time and reports what it could not find instead of raising: on a machine without BlueZ or
D-Bus (a container, a laptop) it says so.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gateway.config import GatewaySettings
from gateway.status import CPU_THERMAL_PATH, read_cpu_temp_c
from storelink.settings import CONFIG_ENV

DEFAULT_TIMEOUT_S = 5.0
SYSTEM_BUS_SOCKET = Path("/run/dbus/system_bus_socket")
SYS_BLUETOOTH = Path("/sys/class/bluetooth")
SYS_RFKILL = Path("/sys/class/rfkill")
TIMESYNC_FLAG = Path("/run/systemd/timesync/synchronized")
# Before this the clock is certainly wrong: a Pi has no real-time clock and boots at the time it
# was shut down (fake-hwclock) or in 1970.
EARLIEST_PLAUSIBLE_TIME = 1_735_689_600  # 2025-01-01T00:00:00Z
CPU_HOT_C = 80.0  # a Pi throttles from 80 °C
CAP_NET_ADMIN = 12


class Level(StrEnum):
    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Check:
    name: str
    level: Level
    message: str
    advice: str = ""

    def line(self) -> str:
        text = f"{self.level.value:<4}  {self.name:<13} {self.message}"
        if self.advice and self.level is not Level.OK:
            text += f" -> {self.advice}"
        return text


def _ok(name: str, message: str) -> Check:
    return Check(name, Level.OK, message)


def _warn(name: str, message: str, advice: str) -> Check:
    return Check(name, Level.WARN, message, advice)


def _fail(name: str, message: str, advice: str) -> Check:
    return Check(name, Level.FAIL, message, advice)


# --- configuration ------------------------------------------------------------------------------


def check_config(
    load: Callable[[], GatewaySettings] = GatewaySettings,
) -> tuple[Check, GatewaySettings | None]:
    """The settings (YAML, environment), or a FAIL saying what is wrong with them."""
    source = os.environ.get(CONFIG_ENV) or "environment and defaults"
    try:
        settings = load()
    except FileNotFoundError as exc:
        return _fail("config", str(exc), "point --config at the gateway's YAML file"), None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}"
            for e in exc.errors(include_url=False, include_input=False)[:3]
        )
        return _fail(
            "config", f"{source}: {problems}", "fix these keys (docs/configuration.md)"
        ), None
    except Exception as exc:  # a YAML syntax error, an unreadable file
        return _fail("config", f"{source}: {type(exc).__name__}: {exc}", "fix the file"), None
    return (
        _ok(
            "config",
            f"{source}: gateway {settings.store_id}/{settings.gateway_id}, "
            f"scanner {settings.scanner}",
        ),
        settings,
    )


def check_state_dir(settings: GatewaySettings) -> Check:
    """The outbox's folder must be writable: events wait there while the broker is away."""
    outbox = settings.outbox_path
    if str(outbox) == ":memory:":
        return _warn(
            "outbox",
            "in memory: events are lost on a restart",
            "set outbox_path to a file, e.g. /var/lib/storelink/outbox.db",
        )
    folder = outbox.resolve().parent
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not os.access(existing, os.W_OK | os.X_OK):
        return _fail(
            "outbox",
            f"{folder} is not writable by this user",
            "run as the gateway's user, or give it the folder (systemd: StateDirectory=)",
        )
    return _ok("outbox", f"{outbox.resolve()} (folder writable)")


def check_saved_config(settings: GatewaySettings) -> Check:
    from gateway.remote_config import parse_config, persisted_config_path

    if not settings.remote_config:
        return _ok("remote-config", "off (remote_config: false)")
    path = persisted_config_path(settings)
    if path is None or not path.exists():
        return _ok("remote-config", "none saved yet: the retained config arrives from the broker")
    try:
        config = parse_config(path.read_bytes(), settings)
    except (OSError, ValueError) as exc:
        return _warn(
            "remote-config",
            f"{path} is not usable: {exc}",
            "it is ignored; publish a valid config to the config topic",
        )
    return _ok("remote-config", f"saved version {config.version} in {path}")


# --- the broker ---------------------------------------------------------------------------------


def check_broker(settings: GatewaySettings, timeout_s: float = DEFAULT_TIMEOUT_S) -> Check:
    """Connect to ``mqtt_url`` (CONNECT and CONNACK) within ``timeout_s``."""
    import paho.mqtt.client as mqtt

    from storelink.mqtt import make_client

    try:
        client, address = make_client(
            settings.mqtt_url,
            settings.mqtt_protocol,
            f"storelink-doctor-{settings.gateway_id}-{uuid.uuid4().hex[:8]}",
        )
    except ValueError as exc:
        return _fail("broker", str(exc), "fix mqtt_url (mqtt://host:1883 or mqtts://host:8883)")
    where = f"{address.host}:{address.port}"
    done = threading.Event()
    outcome: dict[str, Any] = {}

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        outcome["reason"] = reason
        done.set()

    client.on_connect = on_connect
    client.connect_timeout = timeout_s
    started = time.monotonic()
    try:
        client.connect(address.host, address.port, keepalive=10)
    except OSError as exc:
        return _fail(
            "broker",
            f"cannot reach {where}: {exc.strerror or exc}",
            "is the broker running and mqtt_url right? is a firewall in the way?",
        )
    client.loop_start()
    try:
        answered = done.wait(timeout_s)
    finally:
        client.disconnect()
        client.loop_stop()
    elapsed_ms = (time.monotonic() - started) * 1000
    if not answered:
        return _fail(
            "broker",
            f"{where} did not answer the MQTT CONNECT within {timeout_s:.0f} s",
            "is it an MQTT broker? with mqtts://, does it speak TLS on that port?",
        )
    reason = outcome["reason"]
    if reason.is_failure:
        return _fail(
            "broker",
            f"{where} refused the connection: {reason}",
            "check the user name and password in mqtt_url and the broker's ACL",
        )
    return _ok(
        "broker", f"connected to {where} (MQTT {settings.mqtt_protocol}) in {elapsed_ms:.0f} ms"
    )


# --- Bluetooth ----------------------------------------------------------------------------------


async def _bluez_over_dbus(timeout_s: float) -> tuple[bool, dict[str, dict[str, Any]]]:
    """Whether org.bluez is on the system bus, and its adapters' properties by hci name."""
    from dbus_fast import BusType, Message, MessageType
    from dbus_fast.aio import MessageBus

    bus = await asyncio.wait_for(MessageBus(bus_type=BusType.SYSTEM).connect(), timeout_s)
    try:
        reply = await asyncio.wait_for(
            bus.call(
                Message(
                    destination="org.freedesktop.DBus",
                    path="/org/freedesktop/DBus",
                    interface="org.freedesktop.DBus",
                    member="NameHasOwner",
                    signature="s",
                    body=["org.bluez"],
                )
            ),
            timeout_s,
        )
        if reply is None or reply.message_type is MessageType.ERROR or not reply.body[0]:
            return False, {}
        objects = await asyncio.wait_for(
            bus.call(
                Message(
                    destination="org.bluez",
                    path="/",
                    interface="org.freedesktop.DBus.ObjectManager",
                    member="GetManagedObjects",
                )
            ),
            timeout_s,
        )
        adapters: dict[str, dict[str, Any]] = {}
        if objects is not None and objects.message_type is not MessageType.ERROR:
            for path, interfaces in objects.body[0].items():
                props = interfaces.get("org.bluez.Adapter1")
                if props is not None:
                    adapters[path.rsplit("/", 1)[-1]] = {k: v.value for k, v in props.items()}
        return True, adapters
    finally:
        bus.disconnect()


def _rfkill_blocked() -> list[str]:
    blocked: list[str] = []
    if not SYS_RFKILL.is_dir():
        return blocked
    for device in sorted(SYS_RFKILL.iterdir()):
        try:
            if (device / "type").read_text().strip() != "bluetooth":
                continue
            soft = (device / "soft").read_text().strip() == "1"
            hard = (device / "hard").read_text().strip() == "1"
        except OSError:
            continue
        if soft or hard:
            blocked.append(f"{device.name} ({'hard' if hard else 'soft'})")
    return blocked


def check_bluetooth(
    settings: GatewaySettings | None, timeout_s: float = DEFAULT_TIMEOUT_S
) -> list[Check]:
    """BlueZ on the system D-Bus, the adapter, rfkill and the permissions bleak needs."""
    if settings is not None and settings.scanner != "bleak":
        return [_ok("bluetooth", f"not used: scanner is {settings.scanner}")]
    if not sys.platform.startswith("linux"):
        return [_ok("bluetooth", f"not Linux ({sys.platform}): bleak uses the system's own stack")]
    checks: list[Check] = []
    adapter = (settings.adapter if settings is not None else None) or None
    if shutil.which("bluetoothctl") is None:
        checks.append(
            _warn("bluez", "bluetoothctl not found", "install BlueZ: sudo apt-get install bluez")
        )
    bus_address = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
    if bus_address is None and not SYSTEM_BUS_SOCKET.exists():
        checks.append(
            _fail(
                "dbus",
                f"no system D-Bus ({SYSTEM_BUS_SOCKET} missing): bleak talks to BlueZ over it",
                "install and start dbus (sudo apt-get install dbus); in a container, mount "
                "/run/dbus from the host",
            )
        )
        checks.extend(_adapter_from_sysfs(adapter))
        return checks
    try:
        bluez, adapters = asyncio.run(_bluez_over_dbus(timeout_s))
    except Exception as exc:
        checks.append(
            _fail(
                "dbus",
                f"cannot use the system D-Bus: {type(exc).__name__}: {exc}",
                "is dbus running? may this user talk to it (the bluetooth group)?",
            )
        )
        checks.extend(_adapter_from_sysfs(adapter))
        return checks
    if not bluez:
        checks.append(
            _fail(
                "bluez",
                "bluetoothd is not on the system D-Bus",
                "sudo systemctl enable --now bluetooth",
            )
        )
        return checks
    checks.append(_ok("bluez", "bluetoothd answers on the system D-Bus"))
    checks.append(_adapter_check(adapter, adapters))
    checks.append(_permissions_check())
    return checks


def _adapter_check(wanted: str | None, adapters: dict[str, dict[str, Any]]) -> Check:
    if not adapters:
        blocked = _rfkill_blocked()
        if blocked:
            return _fail(
                "adapter",
                f"no adapter; rfkill blocks {', '.join(blocked)}",
                "sudo rfkill unblock bluetooth",
            )
        return _fail(
            "adapter",
            "BlueZ knows no Bluetooth adapter",
            "plug one in, or on a Pi check that the UART Bluetooth is enabled (no "
            "dtoverlay=disable-bt) and hciuart runs",
        )
    name = wanted or sorted(adapters)[0]
    props = adapters.get(name)
    if props is None:
        return _fail(
            "adapter",
            f"{name} not found; BlueZ has {', '.join(sorted(adapters))}",
            "fix the adapter setting",
        )
    if not props.get("Powered"):
        blocked = _rfkill_blocked()
        advice = "sudo rfkill unblock bluetooth" if blocked else "bluetoothctl power on"
        return _fail("adapter", f"{name} is powered off", advice)
    return _ok("adapter", f"{name} {props.get('Address', '')} powered on")


def _adapter_from_sysfs(wanted: str | None) -> list[Check]:
    """Without D-Bus, what the kernel says: is there an hci device at all?"""
    present = sorted(p.name for p in SYS_BLUETOOTH.iterdir()) if SYS_BLUETOOTH.is_dir() else []
    present = [name for name in present if name.startswith("hci") and ":" not in name]
    if not present:
        return [
            _fail(
                "adapter",
                "the kernel has no Bluetooth adapter (/sys/class/bluetooth is empty or missing)",
                "plug one in, or run the gateway on the Pi itself",
            )
        ]
    if wanted is not None and wanted not in present:
        return [
            _fail(
                "adapter", f"{wanted} not found; the kernel has {', '.join(present)}", "fix adapter"
            )
        ]
    return [_ok("adapter", f"the kernel has {', '.join(present)}")]


def _has_capability(bit: int) -> bool:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> bit & 1)
    except (OSError, ValueError):
        pass
    return False


def _permissions_check() -> Check:
    if os.geteuid() == 0:
        return _ok("permissions", "root: everything allowed (the service runs as a plain user)")
    if _has_capability(CAP_NET_ADMIN):
        return _ok("permissions", "CAP_NET_ADMIN: adapter resets possible")
    return _warn(
        "permissions",
        "no CAP_NET_ADMIN: the watchdog can restart scanning but not reset the adapter",
        "run under deploy/systemd/storelink-gateway.service (AmbientCapabilities)",
    )


# --- the clock ----------------------------------------------------------------------------------


def _run(command: list[str], timeout_s: float) -> str | None:
    if shutil.which(command[0]) is None:
        return None
    try:
        done = subprocess.run(  # noqa: S603 (fixed commands, no shell)
            command, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def check_clock(timeout_s: float = DEFAULT_TIMEOUT_S, now: float | None = None) -> Check:
    """Events carry the gateway's time: a Pi without network time dates them wrongly."""
    now = time.time() if now is None else now
    if now < EARLIEST_PLAUSIBLE_TIME:
        return _fail(
            "clock",
            f"the clock says {time.strftime('%Y-%m-%d', time.gmtime(now))}: not set",
            "enable network time: sudo timedatectl set-ntp true (or install chrony)",
        )
    synced = _run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"], timeout_s)
    if synced is not None:
        if synced.strip() == "yes":
            return _ok("clock", "synchronised (timedatectl)")
        return _warn(
            "clock",
            "not synchronised (timedatectl)",
            "sudo timedatectl set-ntp true; does the store network allow NTP (UDP 123)?",
        )
    tracking = _run(["chronyc", "-n", "tracking"], timeout_s)
    if tracking is not None:
        if "Leap status     : Normal" in tracking:
            return _ok("clock", "synchronised (chrony)")
        return _warn("clock", "chrony is not synchronised", "check chronyc sources")
    if TIMESYNC_FLAG.exists():
        return _ok("clock", "synchronised (systemd-timesyncd)")
    return _warn(
        "clock",
        "cannot tell whether the clock is synchronised (no answer from timedatectl or chronyc)",
        "a Pi has no real-time clock: run systemd-timesyncd or chrony",
    )


def check_cpu_temperature(path: Path = CPU_THERMAL_PATH) -> Check:
    temp = read_cpu_temp_c(path)
    if temp is None:
        return _ok("cpu-temp", "not exposed on this machine (the heartbeat sends null)")
    if temp >= CPU_HOT_C:
        return _warn(
            "cpu-temp", f"{temp:.1f} °C: the CPU throttles", "give the Pi air or a heatsink"
        )
    return _ok("cpu-temp", f"{temp:.1f} °C")


# --- all of it ----------------------------------------------------------------------------------


def run_checks(
    load: Callable[[], GatewaySettings] = GatewaySettings, timeout_s: float = DEFAULT_TIMEOUT_S
) -> list[Check]:
    config, settings = check_config(load)
    checks = [config]
    if settings is not None:
        checks.append(check_state_dir(settings))
        checks.append(check_saved_config(settings))
        checks.append(check_broker(settings, timeout_s))
    checks.extend(check_bluetooth(settings, timeout_s))
    checks.append(check_clock(timeout_s))
    checks.append(check_cpu_temperature())
    return checks


def report(checks: list[Check], echo: Callable[[str], None] = print) -> int:
    """Print one line per check; the exit code: 1 if anything failed."""
    for check in checks:
        echo(check.line())
    failed = sum(check.level is Level.FAIL for check in checks)
    warned = sum(check.level is Level.WARN for check in checks)
    echo(f"{len(checks)} checks: {failed} failed, {warned} warnings")
    return 1 if failed else 0
