"""What each kind of device puts on air, advertising event by advertising event.

A firmware model answers two questions: which address and bytes the device sends at its n-th
advertising event at unix time t (``emit``), and which distinct advertisements it sends over a
time range (``emissions_during``), from which the ground truth works out what a gateway calls
the device (``firmware_sim.naming``).

Advertising intervals (the time between advertising events before the 0-10 ms random delay):

- dedicated beacons are configured per scenario; Apple's Proximity Beacon specification asks
  100 ms of an iBeacon, vendors ship 350 ms to 1 s to save the coin cell;
- the shopper app on Android: ``AdvertiseSettings.ADVERTISE_MODE_BALANCED`` (AOSP uses 250 ms);
- the shopper app on iOS: in the foreground about the iBeacon's 100 ms; iOS does not let a
  backgrounded app advertise an iBeacon at all, so a backgrounded app sends nothing of its own;
- phones without the app: Apple Continuity "Nearby Info" from iPhones, Android Nearby service
  data; both at a few hundred ms while the screen is on;
- wearables about once a second.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from uuid import UUID

from firmware_sim import eddystone
from firmware_sim.addresses import RotatingAddress
from firmware_sim.frames import (
    android_nearby_frame,
    fitness_band_frame,
    heart_rate_strap_frame,
    ibeacon_frame,
    nearby_info_frame,
)
from storelink.tokens import TOKEN_WINDOW_S, app_token, token_major_minor, token_window

ANDROID_APP_INTERVAL_S = 0.25
IOS_APP_INTERVAL_S = 0.1
IPHONE_NEARBY_INTERVAL_S = 0.3
ANDROID_NEARBY_INTERVAL_S = 0.5
WEARABLE_INTERVAL_S = 1.0
PHONE_MEASURED_POWER = -59


@dataclass(frozen=True)
class Emission:
    address: str
    raw: bytes


class Firmware(ABC):
    kind: str
    interval_s: float

    @abstractmethod
    def emit(self, t: float, event: int) -> Emission:
        """The advertisement of event number ``event``, sent at unix time ``t``."""

    @abstractmethod
    def emissions_during(self, t0: float, t1: float) -> list[tuple[float, Emission]]:
        """One ``(time, emission)`` for each distinct advertisement sent during ``[t0, t1]``.

        What a gateway could call the device over that time follows from these.
        """


def _rotations(address: RotatingAddress, t0: float, t1: float) -> list[float]:
    """A time within ``[t0, t1]`` for each address the device has in that range."""
    return [max(t0, address.start_of(i)) for i in range(address.index(t0), address.index(t1) + 1)]


@dataclass
class IBeaconFirmware(Firmware):
    """A dedicated iBeacon (store beacon, staff badge, key fob) at a static address."""

    uuid: UUID
    major: int
    minor: int
    address: str
    interval_s: float
    measured_power: int = -59
    kind: str = "ibeacon"
    _raw: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._raw = ibeacon_frame(self.uuid, self.major, self.minor, self.measured_power)

    @property
    def beacon_id(self) -> str:
        return f"{self.uuid}:{self.major}:{self.minor}"

    def emit(self, t: float, event: int) -> Emission:
        return Emission(self.address, self._raw)

    def emissions_during(self, t0: float, t1: float) -> list[tuple[float, Emission]]:
        return [(t0, self.emit(t0, 0))]


@dataclass
class EddystoneFirmware(Firmware):
    """UID (and URL, if set) frames, with a TLM frame every ``tlm_every`` events.

    The battery drains linearly from ``battery_mv`` at ``powered_on`` (unix time) by
    ``drain_mv_per_day``; a CR2032 starts near 3000 mV and a beacon browns out around 2000 mV.
    """

    namespace: bytes
    instance: bytes
    address: str
    interval_s: float
    powered_on: float
    tx_power_0m: int = -18
    url: str | None = None
    tlm_every: int = 10
    battery_mv: int = 3000
    drain_mv_per_day: float = 1.0
    temperature_c: float = 21.0
    kind: str = "eddystone"
    _identifying: tuple[bytes, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        frames = [eddystone.uid_frame(self.namespace, self.instance, self.tx_power_0m)]
        if self.url is not None:
            frames.append(eddystone.url_frame(self.url, self.tx_power_0m))
        self._identifying = tuple(frames)
        if self.tlm_every < 2:
            raise ValueError("TLM frames interleave with identifying ones: tlm_every >= 2")

    def battery_at(self, t: float) -> int:
        days = max(0.0, t - self.powered_on) / 86_400
        return max(0, round(self.battery_mv - self.drain_mv_per_day * days))

    def emit(self, t: float, event: int) -> Emission:
        if event % self.tlm_every == self.tlm_every - 1:
            uptime = max(0.0, t - self.powered_on)
            # Advertising events since power-on, whether or not the simulation saw them.
            adv_count = int(uptime / self.interval_s)
            raw = eddystone.tlm_frame(self.battery_at(t), self.temperature_c, adv_count, uptime)
        else:
            # UID and URL take turns in the slots the TLM frames leave.
            slot = event - event // self.tlm_every
            raw = self._identifying[slot % len(self._identifying)]
        return Emission(self.address, raw)

    def emissions_during(self, t0: float, t1: float) -> list[tuple[float, Emission]]:
        frames = [*self._identifying, self.emit(t0, self.tlm_every - 1).raw]
        return [(t0, Emission(self.address, raw)) for raw in frames]


@dataclass
class AppFirmware(Firmware):
    """The shopper app: an iBeacon under the retailer's UUID carrying the rotating token."""

    app_key: bytes
    app_uuid: UUID
    address: RotatingAddress
    interval_s: float
    kind: str = "app"
    _frames: dict[int, bytes] = field(default_factory=dict, repr=False)

    def frame_for_window(self, window: int) -> bytes:
        raw = self._frames.get(window)
        if raw is None:
            major, minor = token_major_minor(app_token(self.app_key, window))
            raw = ibeacon_frame(self.app_uuid, major, minor, PHONE_MEASURED_POWER)
            self._frames = {window: raw}
        return raw

    def emit(self, t: float, event: int) -> Emission:
        return Emission(self.address.at(t), self.frame_for_window(token_window(t)))

    def emissions_during(self, t0: float, t1: float) -> list[tuple[float, Emission]]:
        windows = range(token_window(t0), token_window(t1) + 1)
        times = sorted(
            {max(t0, w * TOKEN_WINDOW_S) for w in windows} | set(_rotations(self.address, t0, t1))
        )
        return [(t, self.emit(t, 0)) for t in times]


@dataclass
class PhoneFirmware(Firmware):
    """A phone's own broadcasts, app or not: iPhone Nearby Info, or Android Nearby."""

    platform: str
    address: RotatingAddress
    interval_s: float
    kind: str = "phone"
    _current: tuple[int, Emission] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.platform not in ("ios", "android"):
            raise ValueError("a phone is ios or android")

    def emit(self, t: float, event: int) -> Emission:
        index = self.address.index(t)
        if self._current is None or self._current[0] != index:
            address = self.address.for_index(index)
            # The payloads change with the address, so the frame links nothing across rotations.
            tag = bytes.fromhex(address.replace(":", ""))
            if self.platform == "ios":
                raw = nearby_info_frame(tag[3:])
            else:
                raw = android_nearby_frame(tag + tag[::-1])
            self._current = (index, Emission(address, raw))
        return self._current[1]

    def emissions_during(self, t0: float, t1: float) -> list[tuple[float, Emission]]:
        return [(t, self.emit(t, 0)) for t in _rotations(self.address, t0, t1)]


WATCH_ON_WRIST = 0x0A


@dataclass
class WearableFirmware(Firmware):
    """A watch, fitness band or heart-rate strap at a rotating private address."""

    kind: str
    address: RotatingAddress
    interval_s: float = WEARABLE_INTERVAL_S
    _current: tuple[int, Emission] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in ("watch", "band", "hr_strap"):
            raise ValueError("a wearable is a watch, band or hr_strap")

    def emit(self, t: float, event: int) -> Emission:
        index = self.address.index(t)
        if self._current is None or self._current[0] != index:
            address = self.address.for_index(index)
            octets = bytes.fromhex(address.replace(":", ""))
            if self.kind == "watch":
                # Action code 0x0A: "on wrist and unlocked", what a worn Apple Watch reports.
                raw = nearby_info_frame(octets[3:], action_code=WATCH_ON_WRIST)
            elif self.kind == "band":
                raw = fitness_band_frame(octets[::-1])
            else:
                raw = heart_rate_strap_frame()
            self._current = (index, Emission(address, raw))
        return self._current[1]

    def emissions_during(self, t0: float, t1: float) -> list[tuple[float, Emission]]:
        return [(t, self.emit(t, 0)) for t in _rotations(self.address, t0, t1)]
