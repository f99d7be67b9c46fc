from __future__ import annotations

import random
import statistics

import pytest

from gateway.smoothing import (
    FILTER_KINDS,
    Ewma,
    Kalman,
    MedianWindow,
    OneEuro,
    filter_factory,
)


def _run(kind: str, samples: list[float], dt: float = 0.2) -> list[float]:
    make = filter_factory(kind)  # type: ignore[arg-type]
    state = make(samples[0], 0.0)
    return [samples[0]] + [state.update(x, i * dt) for i, x in enumerate(samples[1:], start=1)]


def test_ewma_moves_by_alpha() -> None:
    ewma = Ewma(-60, alpha=0.5)
    assert ewma.update(-70, 1) == pytest.approx(-65)
    assert ewma.update(-70, 2) == pytest.approx(-67.5)


def test_median_ignores_a_single_deep_fade_and_a_spike() -> None:
    median = MedianWindow(-60, window=5)
    for value in (-61, -59, -60):
        median.update(value, 0)
    assert median.update(-95, 1) == pytest.approx(-60)  # one fade: the median stays
    assert median.update(-30, 2) == pytest.approx(-60)  # one spike
    # The window is bounded: five steady samples later the outliers are gone.
    for _ in range(5):
        last = median.update(-70, 3)
    assert last == -70


def test_median_of_an_even_window_averages_the_middle_two() -> None:
    median = MedianWindow(-60, window=4)
    assert median.update(-70, 1) == pytest.approx(-65)


def test_kalman_converges_and_its_gain_reflects_the_variances() -> None:
    kalman = Kalman(-80, 0.0, process_var=0.01, measurement_var=25.0)
    for i in range(1, 200):
        kalman.update(-60, i * 0.2)
    assert kalman.value == pytest.approx(-60, abs=0.5)
    # Settled with little process noise: one outlier moves it a little only.
    assert kalman.update(-90, 40.2) > -62
    # A long silence lets the variance grow: the next sample is trusted more.
    trusting = Kalman(-60, 0.0, process_var=4.0, measurement_var=25.0)
    trusting.update(-60, 0.2)
    assert trusting.update(-80, 100.0) < -78


def test_one_euro_smooths_still_signals_and_beta_speeds_up_a_step() -> None:
    rng = random.Random(5)
    noisy = [-65 + rng.gauss(0, 4) for _ in range(400)]
    still = OneEuro(noisy[0], 0.0, min_cutoff_hz=0.1, beta=0.0)
    smoothed = [still.update(x, i * 0.2) for i, x in enumerate(noisy[1:], start=1)]
    assert statistics.stdev(smoothed[100:]) < statistics.stdev(noisy) / 2
    assert statistics.fmean(smoothed[100:]) == pytest.approx(-65, abs=1.5)
    # After a 30 dB step, the speed term raises the cutoff: beta > 0 gets there sooner.
    slow = OneEuro(-80, 0.0, min_cutoff_hz=0.1, beta=0.0)
    fast = OneEuro(-80, 0.0, min_cutoff_hz=0.1, beta=0.05)
    for i in range(1, 6):
        slow.update(-50, i * 0.2)
        fast.update(-50, i * 0.2)
    assert fast.value > slow.value + 3
    # Two samples at the same instant: no division by zero, nothing changes.
    assert fast.update(-90, 1.0) == fast.value


@pytest.mark.parametrize("kind", FILTER_KINDS)
def test_every_filter_calms_fading_around_the_true_level(kind: str) -> None:
    rng = random.Random(3)
    raw = [-65 + rng.gauss(0, 4) for _ in range(500)]
    smoothed = _run(kind, raw)
    assert statistics.stdev(smoothed[50:]) < statistics.stdev(raw) * 0.7
    assert statistics.fmean(smoothed[50:]) == pytest.approx(-65, abs=1)


@pytest.mark.parametrize("kind", FILTER_KINDS)
def test_every_filter_reaches_a_new_level_after_a_step(kind: str) -> None:
    smoothed = _run(kind, [-80.0] * 50 + [-55.0] * 150)
    assert smoothed[49] == pytest.approx(-80)
    assert smoothed[-1] == pytest.approx(-55, abs=1.5)


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="alpha"):
        filter_factory("ewma", alpha=0)
    with pytest.raises(ValueError, match="window"):
        filter_factory("median", window=0)
    with pytest.raises(ValueError, match="variances"):
        filter_factory("kalman", process_var=0)
    with pytest.raises(ValueError, match="min_cutoff"):
        filter_factory("one_euro", min_cutoff_hz=0)
    with pytest.raises(ValueError, match="unknown"):
        filter_factory("boxcar")  # type: ignore[arg-type]
