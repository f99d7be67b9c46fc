"""RSSI filters, one state per device: EWMA, median window, Kalman, 1-euro.

Each filter is pure arithmetic on its own state: ``update(rssi, now)`` returns the smoothed
value, O(1) per sample (the median window O(window)). ``docs/tracking.md`` compares them on the
simulator's ground truth.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Literal, Protocol

FilterKind = Literal["ewma", "median", "kalman", "one_euro"]
FILTER_KINDS: tuple[FilterKind, ...] = ("ewma", "median", "kalman", "one_euro")


class RssiFilter(Protocol):
    def update(self, rssi: float, now: float) -> float: ...


class Ewma:
    """Exponential moving average: each new sample weighs ``alpha``."""

    __slots__ = ("alpha", "value")

    def __init__(self, rssi: float, alpha: float) -> None:
        self.alpha = alpha
        self.value = rssi

    def update(self, rssi: float, now: float) -> float:
        self.value += self.alpha * (rssi - self.value)
        return self.value


class MedianWindow:
    """Median of the last ``window`` samples: a deep fade or a reflection spike moves it little."""

    __slots__ = ("samples",)

    def __init__(self, rssi: float, window: int) -> None:
        self.samples: deque[float] = deque((rssi,), maxlen=window)

    def update(self, rssi: float, now: float) -> float:
        self.samples.append(rssi)
        ordered = sorted(self.samples)
        n = len(ordered)
        mid = n // 2
        return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


class Kalman:
    """One-dimensional Kalman filter, the RSSI a random walk.

    ``process_var`` (dB² per second) is how fast the true RSSI may drift as the device moves,
    ``measurement_var`` (dB²) how much one packet scatters around it.
    """

    __slots__ = ("last", "measurement_var", "process_var", "value", "variance")

    def __init__(self, rssi: float, now: float, process_var: float, measurement_var: float) -> None:
        self.value = rssi
        self.variance = measurement_var
        self.last = now
        self.process_var = process_var
        self.measurement_var = measurement_var

    def update(self, rssi: float, now: float) -> float:
        self.variance += self.process_var * max(now - self.last, 0.0)
        self.last = now
        gain = self.variance / (self.variance + self.measurement_var)
        self.value += gain * (rssi - self.value)
        self.variance *= 1.0 - gain
        return self.value


def _smoothing_factor(dt: float, cutoff_hz: float) -> float:
    tau = 1.0 / (2.0 * math.pi * cutoff_hz)
    return 1.0 / (1.0 + tau / dt)


class OneEuro:
    """1-euro filter (Casiez et al. 2012): a low-pass whose cutoff rises with the speed of change.

    Still, it smooths hard (``min_cutoff_hz``); moving, it follows (``beta``).
    """

    __slots__ = ("beta", "d_cutoff_hz", "derivative", "last", "min_cutoff_hz", "value")

    def __init__(self, rssi: float, now: float, min_cutoff_hz: float, beta: float) -> None:
        self.value = rssi
        self.derivative = 0.0
        self.last = now
        self.min_cutoff_hz = min_cutoff_hz
        self.beta = beta
        self.d_cutoff_hz = 1.0

    def update(self, rssi: float, now: float) -> float:
        dt = now - self.last
        if dt <= 0:
            return self.value
        self.last = now
        a_d = _smoothing_factor(dt, self.d_cutoff_hz)
        self.derivative += a_d * ((rssi - self.value) / dt - self.derivative)
        cutoff = self.min_cutoff_hz + self.beta * abs(self.derivative)
        self.value += _smoothing_factor(dt, cutoff) * (rssi - self.value)
        return self.value


def filter_factory(
    kind: FilterKind,
    *,
    alpha: float = 0.3,
    window: int = 7,
    process_var: float = 4.0,
    measurement_var: float = 25.0,
    min_cutoff_hz: float = 0.1,
    beta: float = 0.05,
) -> Callable[[float, float], RssiFilter]:
    """A function making a device's filter from its first sample ``(rssi, now)``."""
    if kind == "ewma":
        if not 0 < alpha <= 1:
            raise ValueError("alpha must be in (0, 1]")
        return lambda rssi, now: Ewma(rssi, alpha)
    if kind == "median":
        if window < 1:
            raise ValueError("window must be at least 1")
        return lambda rssi, now: MedianWindow(rssi, window)
    if kind == "kalman":
        if process_var <= 0 or measurement_var <= 0:
            raise ValueError("variances must be positive")
        return lambda rssi, now: Kalman(rssi, now, process_var, measurement_var)
    if kind == "one_euro":
        if min_cutoff_hz <= 0 or beta < 0:
            raise ValueError("min_cutoff_hz must be positive and beta not negative")
        return lambda rssi, now: OneEuro(rssi, now, min_cutoff_hz, beta)
    raise ValueError(f"unknown filter {kind!r}")
