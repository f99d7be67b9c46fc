from __future__ import annotations

import random
import statistics

import pytest

from firmware_sim.radio import RSSI_CEILING_DBM, RSSI_FLOOR_DBM, PathLossModel


def test_mean_rssi_follows_the_log_distance_model() -> None:
    model = PathLossModel(rssi_at_1m=-59, exponent=2.0)
    assert model.mean_rssi(1.0) == -59
    assert model.mean_rssi(10.0) == pytest.approx(-79)
    # Free space: each doubling of distance costs about 6 dB.
    assert model.mean_rssi(4.0) - model.mean_rssi(8.0) == pytest.approx(6.02, abs=0.01)
    assert PathLossModel(exponent=3.0).mean_rssi(10.0) == pytest.approx(-89)


def test_shadowing_is_gaussian_around_the_mean() -> None:
    model = PathLossModel(shadowing_db=3.0)
    rng = random.Random(1)
    samples = [model.rssi(4.0, rng) for _ in range(5000)]
    assert statistics.fmean(samples) == pytest.approx(model.mean_rssi(4.0), abs=0.2)
    assert statistics.stdev(samples) == pytest.approx(3.0, abs=0.2)
    assert all(isinstance(sample, int) for sample in samples)


def test_rssi_is_clamped_to_what_a_receiver_reports() -> None:
    rng = random.Random(2)
    assert PathLossModel(rssi_at_1m=10).rssi(0.0, rng) == RSSI_CEILING_DBM
    assert PathLossModel().rssi(1e6, rng) == RSSI_FLOOR_DBM


def test_same_seed_same_samples() -> None:
    model = PathLossModel()

    def draws(seed: int) -> list[int]:
        rng = random.Random(seed)
        return [model.rssi(distance, rng) for distance in (1, 2, 3, 4, 5, 6)]

    assert draws(7) == draws(7)
    assert draws(7) != draws(8)
