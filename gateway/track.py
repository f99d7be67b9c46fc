"""Signal strength per device, smoothed, and the distance it suggests."""

from __future__ import annotations

from collections.abc import Callable, Hashable

from gateway.smoothing import FilterKind, RssiFilter, filter_factory


def estimate_distance_m(rssi: float, measured_power: float, exponent: float) -> float:
    """Invert the log-distance model ``rssi = measured_power - 10 n log10(d)``."""
    return float(10.0 ** ((measured_power - rssi) / (10.0 * exponent)))


class _Smoothed:
    __slots__ = ("filter", "last_seen")

    def __init__(self, rssi_filter: RssiFilter, last_seen: float) -> None:
        self.filter = rssi_filter
        self.last_seen = last_seen


class RssiSmoother:
    """Smoothed RSSI per device, with the filter chosen by ``kind`` (see gateway.smoothing).

    A single advert's RSSI swings by several dB with fading and body blocking, which would make a
    shopper standing still flicker in and out of the zone.
    """

    def __init__(
        self,
        alpha: float,
        forget_after_s: float,
        *,
        kind: FilterKind = "ewma",
        window: int = 7,
        factory: Callable[[float, float], RssiFilter] | None = None,
    ) -> None:
        if not 0 < alpha <= 1:
            raise ValueError("alpha must be in (0, 1]")
        self.alpha = alpha
        self._factory = factory or filter_factory(kind, alpha=alpha, window=window)
        # After a long gap the old average describes where the device was, not where it is.
        self.forget_after_s = forget_after_s
        self._devices: dict[Hashable, _Smoothed] = {}

    def __len__(self) -> int:
        return len(self._devices)

    def update(self, device: Hashable, rssi: float, now: float) -> float:
        state = self._devices.get(device)
        if state is None or now - state.last_seen > self.forget_after_s:
            self._devices[device] = _Smoothed(self._factory(rssi, now), now)
            return rssi
        state.last_seen = now
        return state.filter.update(rssi, now)

    def prune(self, now: float) -> None:
        """Forget devices gone quiet; random addresses would otherwise pile up for ever."""
        stale = [key for key, s in self._devices.items() if now - s.last_seen > self.forget_after_s]
        for key in stale:
            del self._devices[key]
