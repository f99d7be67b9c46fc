"""Funnel and uplift arithmetic, against published values and a seeded simulated population."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from cloud_api.match.decide import is_held_out
from cloud_api.stats.funnel import DecisionFacts, funnel, median, uplift, wilson


def test_wilson_interval_matches_newcombe_1998() -> None:
    # Newcombe (1998), "Two-sided confidence intervals for the single proportion", 81/263.
    low, high = wilson(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    assert wilson(0, 10)[0] == 0.0
    assert wilson(10, 10)[1] == pytest.approx(1.0)


def test_difference_interval_matches_newcombe_1998_method_10() -> None:
    # Newcombe (1998), "Interval estimation for the difference between independent
    # proportions", example 56/70 - 48/80, method 10 (score, no continuity correction).
    result = uplift(56, 70, 48, 80)
    assert result.difference == pytest.approx(0.2)
    assert (round(result.ci_low or 0, 4), round(result.ci_high or 0, 4)) == (0.0524, 0.3339)


def test_uplift_is_undefined_without_a_holdout() -> None:
    result = uplift(5, 10, 0, 0)
    assert (result.treated_rate, result.holdout_rate, result.difference) == (0.5, None, None)
    assert (result.ci_low, result.ci_high) == (None, None)


def simulate(
    seed: int, shoppers: int, holdout: float, base_rate: float, lift: float
) -> list[DecisionFacts]:
    """A population decided by the real holdout hash; the offer adds ``lift`` to buying."""
    rng = random.Random(seed)
    facts = []
    for number in range(shoppers):
        held = is_held_out(f"shp_sim_{seed}_{number}", "sim", holdout)
        rate = base_rate if held else base_rate + lift
        purchased = rng.random() < rate
        redeemed = not held and purchased and rng.random() < 0.6
        facts.append(
            DecisionFacts(
                campaign_id="sim",
                held_out=held,
                sent=not held,
                delivered=not held and rng.random() < 0.95,
                opened=not held and rng.random() < 0.5,
                redeemed=redeemed,
                revenue=Decimal("40.00") if redeemed else Decimal(0),
                purchased=purchased,
                entry_to_notification_s=None if held else rng.uniform(0.1, 2.0),
            )
        )
    return facts


def test_a_real_lift_is_found() -> None:
    result = funnel("sim", simulate(7, 20000, 0.1, 0.10, 0.05))
    assert 1800 < result.held_out < 2200
    assert result.eligible == 20000
    assert result.sent == result.eligible - result.held_out
    assert result.redeemed <= result.sent
    assert result.revenue == Decimal("40.00") * result.redeemed
    assert result.entry_to_notification_p50_s is not None
    assert 0.9 < result.entry_to_notification_p50_s < 1.2
    up = result.uplift
    assert up.ci_low is not None and up.ci_high is not None and up.difference is not None
    assert up.ci_low < up.difference < up.ci_high
    assert abs(up.difference - 0.05) < 0.03
    assert up.ci_low > 0, "a 5-point lift on 20,000 shoppers is distinguishable from none"


def test_no_lift_is_not_reported_as_one() -> None:
    up = funnel("sim", simulate(11, 20000, 0.1, 0.10, 0.0)).uplift
    assert up.ci_low is not None and up.ci_high is not None
    assert up.ci_low < 0 < up.ci_high


def test_the_interval_covers_the_true_difference_about_95_percent_of_the_time() -> None:
    rng = random.Random(3)
    covered = 0
    trials = 400
    for _ in range(trials):
        treated = sum(rng.random() < 0.15 for _ in range(300))
        held = sum(rng.random() < 0.10 for _ in range(100))
        up = uplift(treated, 300, held, 100)
        assert up.ci_low is not None and up.ci_high is not None
        covered += up.ci_low <= 0.05 <= up.ci_high
    assert 0.92 <= covered / trials <= 0.98


def test_median() -> None:
    assert median([]) is None
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 2.0, 3.0]) == 2.5
