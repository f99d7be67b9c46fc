"""How long the campaign decision takes for one presence event, in process. Prints JSON lines.

The decision is the pure ``cloud_api.match.decide.decide``: a shopper with three carts (one
abandoned, one ordered, one still being shopped), a week of past offers and four visits, evaluated
against the demo's three campaigns, then against those plus seven more (enter, dwell and
visit-count triggers, cart age and value windows, zone categories, segments, caps, quiet hours,
budgets, holdouts), every check of every campaign evaluated and explained. Printed: wall-clock p50
and p99 per decision, and the CPU time per decision, which other load on the machine does not
inflate. Target: under 1 ms.

Run with ``.venv/bin/python bench/decide.py [--events N]``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from cloud_api.match.campaigns import CampaignSpec, load_campaign_file
from cloud_api.match.decide import CartFacts, CartLine, Moment, PastDecision, ShopperFacts, decide
from cloud_api.shoppers.loyalty import Segment
from storelink.wire import PresenceKind

DEMO_CAMPAIGNS = (
    Path(__file__).resolve().parent.parent / "cloud_api" / "match" / "demo_campaigns.yaml"
)
START = datetime(2031, 3, 14, 9, 0, tzinfo=UTC)
ZONES = ("entrance", "racks", "fitting-rooms", "shoes", "tills")


def campaigns() -> list[CampaignSpec]:
    extra = [
        CampaignSpec.model_validate(
            {
                "id": f"extra-{n}",
                "name": f"Extra {n}",
                "priority": n,
                "trigger": {"kind": "dwell", "dwell_s": 30 + n, "zone": ZONES[n % len(ZONES)]},
                "conditions": {
                    "cart_min_age_s": 600,
                    "cart_max_value": 500,
                    "zone_categories": {zone: "shoes" for zone in ZONES},
                    "segments": ["new", "regular"],
                },
                "reward": {"kind": "percent", "value": 5 + n, "applies_to": "matching_items"},
                "limits": {
                    "per_shopper_per_week": 2,
                    "quiet_start": "22:00",
                    "quiet_end": "07:00",
                    "timezone": "Europe/Paris",
                    "budget_offers": 10000,
                },
                "holdout_share": 0.1,
            }
        )
        for n in range(7)
    ]
    return [*load_campaign_file(DEMO_CAMPAIGNS), *extra]


def shopper(rng: random.Random, at: datetime) -> ShopperFacts:
    lines = (
        CartLine("SHOE-042", "Trail runners", "shoes", Decimal("89.90"), 1),
        CartLine("SOCK-007", "Merino socks", "accessories", Decimal("12.50"), 2),
    )
    carts = [
        CartFacts("abandoned", lines, "EUR", "open", at - timedelta(hours=rng.uniform(2, 48))),
        CartFacts("ordered", lines, "EUR", "ordered", at - timedelta(days=3)),
        CartFacts("live", lines[:1], "EUR", "open", at - timedelta(minutes=2)),
    ]
    past = [
        PastDecision(f"extra-{n % 7}", at - timedelta(days=rng.uniform(1, 7)), "abandoned")
        for n in range(5)
    ]
    visits = [at - timedelta(days=d) for d in (0, 4, 11, 25)]
    return ShopperFacts(
        f"shp_{rng.getrandbits(64):016x}",
        True,
        rng.choice(list(Segment)),
        carts,
        past,
        visits,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20000)
    args = parser.parse_args()
    rng = random.Random(1)
    specs = campaigns()
    inputs = []
    for n in range(args.events):
        at = START + timedelta(seconds=n * 7)
        kind = PresenceKind.ENTER if n % 3 == 0 else PresenceKind.DWELL
        zone = ZONES[n % len(ZONES)]
        moment = Moment(f"ev{n}", "store-1", zone, kind, 0.0 if n % 3 == 0 else 45.0, at, at)
        inputs.append((moment, shopper(rng, at)))
    for label, chosen in (("demo", specs[:3]), ("ten", specs)):
        measure(label, inputs, chosen)


def measure(
    label: str, inputs: list[tuple[Moment, ShopperFacts]], specs: list[CampaignSpec]
) -> None:
    budgets = {spec.id: 10 for spec in specs}
    for moment, facts in inputs[:500]:
        decide(moment, facts, specs, budgets, 1)
    timings = []
    offered = 0
    cpu_started = time.process_time_ns()
    for moment, facts in inputs:
        started = time.perf_counter_ns()
        verdicts = decide(moment, facts, specs, budgets, 1)
        timings.append((time.perf_counter_ns() - started) / 1000)
        offered += any(v.outcome == "offered" for v in verdicts)
    cpu_us = (time.process_time_ns() - cpu_started) / 1000 / len(inputs)
    timings.sort()
    figures = {
        "decide_p50_us": statistics.median(timings),
        "decide_p99_us": timings[int(len(timings) * 0.99) - 1],
        # CPU time per decision: what the machine's other load does not inflate.
        "decide_cpu_us_per_event": cpu_us,
    }
    common = {"campaigns": len(specs), "set": label, "events": len(timings)}
    for metric, value in figures.items():
        print(json.dumps({"metric": metric, "value": round(value, 1), "unit": "us", **common}))
    share = round(offered / len(timings), 3)
    print(json.dumps({"metric": "decide_offer_share", "value": share, "unit": "ratio", **common}))


if __name__ == "__main__":
    main()
