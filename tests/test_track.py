from __future__ import annotations

import random
import statistics

import pytest

from gateway.track import RssiSmoother, estimate_distance_m


def test_distance_inverts_the_log_distance_model() -> None:
    assert estimate_distance_m(-59, -59, 2.0) == pytest.approx(1.0)
    assert estimate_distance_m(-79, -59, 2.0) == pytest.approx(10.0)
    assert estimate_distance_m(-65.02, -59, 2.0) == pytest.approx(2.0, rel=1e-3)
    assert estimate_distance_m(-71, -59, 4.0) == pytest.approx(2.0, rel=1e-2)
    # A stronger transmitter at the same RSSI is farther away.
    assert estimate_distance_m(-70, -50, 2.0) > estimate_distance_m(-70, -59, 2.0)


def test_the_first_sample_passes_then_the_average_moves_by_alpha() -> None:
    smoother = RssiSmoother(alpha=0.3, forget_after_s=20)
    assert smoother.update("a", -60, now=0) == -60
    assert smoother.update("a", -70, now=1) == pytest.approx(-63)
    assert smoother.update("b", -80, now=1) == -80


def test_smoothing_calms_fading() -> None:
    rng = random.Random(3)
    raw = [-65 + rng.gauss(0, 4) for _ in range(500)]
    smoother = RssiSmoother(alpha=0.3, forget_after_s=20)
    smoothed = [smoother.update("a", value, now=i * 0.2) for i, value in enumerate(raw)]
    assert statistics.stdev(smoothed[50:]) < statistics.stdev(raw) / 2
    assert statistics.fmean(smoothed[50:]) == pytest.approx(-65, abs=1)


def test_a_long_silence_restarts_the_average() -> None:
    smoother = RssiSmoother(alpha=0.3, forget_after_s=20)
    smoother.update("a", -90, now=0)
    assert smoother.update("a", -50, now=21) == -50


def test_prune_forgets_devices_gone_quiet() -> None:
    smoother = RssiSmoother(alpha=0.3, forget_after_s=20)
    smoother.update("old", -60, now=0)
    smoother.update("new", -60, now=15)
    smoother.prune(now=25)
    assert len(smoother) == 1
    assert smoother.update("new", -70, now=26) == pytest.approx(-63)


def test_alpha_must_be_a_weight() -> None:
    with pytest.raises(ValueError, match="alpha"):
        RssiSmoother(alpha=0, forget_after_s=20)


def test_the_smoother_uses_the_chosen_filter_per_device() -> None:
    smoother = RssiSmoother(alpha=0.3, forget_after_s=20, kind="median", window=3)
    assert smoother.update("a", -60, now=0) == -60
    smoother.update("a", -61, now=1)
    assert smoother.update("a", -95, now=2) == -61  # median of -60, -61, -95
    assert smoother.update("b", -80, now=2) == -80
