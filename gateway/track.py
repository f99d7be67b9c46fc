"""Signal strength per device, smoothed, and the distance it suggests."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass


def estimate_distance_m(rssi: float, measured_power: float, exponent: float) -> float:
    """Invert the log-distance model ``rssi = measured_power - 10 n log10(d)``."""
    return float(10.0 ** ((measured_power - rssi) / (10.0 * exponent)))


@dataclass
class _Smoothed:
    rssi: float
    last_seen: float


class RssiSmoother:
    """Exponential moving average of RSSI per device.

    A single advert's RSSI swings by several dB with fading and body blocking, which would make a
    shopper standing still flicker in and out of the zone.
    """

    def __init__(self, alpha: float, forget_after_s: float) -> None:
        if not 0 < alpha <= 1:
            raise ValueError("alpha must be in (0, 1]")
        self.alpha = alpha
        # After a long gap the old average describes where the device was, not where it is.
        self.forget_after_s = forget_after_s
        self._devices: dict[Hashable, _Smoothed] = {}

    def __len__(self) -> int:
        return len(self._devices)

    def update(self, device: Hashable, rssi: float, now: float) -> float:
        state = self._devices.get(device)
        if state is None or now - state.last_seen > self.forget_after_s:
            state = self._devices[device] = _Smoothed(rssi=rssi, last_seen=now)
        else:
            state.rssi += self.alpha * (rssi - state.rssi)
            state.last_seen = now
        return state.rssi

    def prune(self, now: float) -> None:
        """Forget devices gone quiet; random addresses would otherwise pile up for ever."""
        stale = [key for key, s in self._devices.items() if now - s.last_seen > self.forget_after_s]
        for key in stale:
            del self._devices[key]
