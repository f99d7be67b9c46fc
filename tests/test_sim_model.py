"""The store model: geometry, walking, the radio channel, scenarios and the people in them."""

from __future__ import annotations

import random
import statistics
from collections import Counter

import pytest
from pydantic import ValidationError

from firmware_sim.channel import (
    FadingTable,
    GatewayChannel,
    Wall,
    airtime_s,
    body_loss_db,
    collision_survival,
)
from firmware_sim.geometry import RouteGraph, contains, inside_intervals
from firmware_sim.mobility import Walker
from firmware_sim.population import PersonKind, hourly_arrivals
from firmware_sim.radio import RadioParams
from firmware_sim.scenario import load_scenario, scenario_names, with_overrides
from firmware_sim.store import SimStore

SQUARE = ((0.0, 0.0), (4.0, 0.0), (4.0, 4.0), (0.0, 4.0))


def test_polygons_and_segment_crossings() -> None:
    assert contains(SQUARE, (2, 2)) and not contains(SQUARE, (5, 2))
    assert inside_intervals((-2, 2), (6, 2), SQUARE) == [(0.25, 0.75)]
    assert inside_intervals((1, 1), (2, 2), SQUARE) == [(0.0, 1.0)]
    assert inside_intervals((5, 0), (5, 4), SQUARE) == []


def test_routes_follow_the_aisles_around_obstacles() -> None:
    graph = RouteGraph({"a": (0, 0), "b": (0, 10), "c": (10, 10)}, [("a", "b"), ("b", "c")])
    assert graph.route((0, -1), (10, 11)) == [(0, -1), (0, 0), (0, 10), (10, 10), (10, 11)]
    # A short hop goes straight.
    assert graph.route((0, 1), (0, 2)) == [(0, 1), (0, 2)]
    with pytest.raises(ValueError, match="unknown node"):
        RouteGraph({"a": (0, 0)}, [("a", "z")])


def test_a_walk_knows_where_it_is_and_when_it_was_in_a_zone() -> None:
    walker = Walker(100.0, (-2.0, 2.0), 1.0, random.Random(1))
    walker.walk([(2.0, 2.0)]).stand(30).walk([(6.0, 2.0)])
    path = walker.trajectory()
    assert (path.start, path.end) == (100.0, 138.0)
    assert path.position(101) == (-1.0, 2.0)
    assert path.position(120) == (2.0, 2.0)
    assert path.facing(101) == 0.0  # walking east
    assert path.inside(SQUARE) == [(102.0, 136.0)]  # in at x=0, out at x=4, standing between


def test_body_loss_is_behind_the_carrier_and_not_overhead() -> None:
    facing_east = 0.0
    assert body_loss_db(facing_east, (0, 0), (5, 0), 12) == 0.0
    assert body_loss_db(facing_east, (0, 0), (-5, 0), 12) == pytest.approx(12.0)
    assert body_loss_db(facing_east, (0, 0), (0, 5), 12) == pytest.approx(3.0)
    # A gateway almost straight above: the path clears the body.
    assert body_loss_db(facing_east, (0, 0), (-0.1, 0), 12, height_diff_m=2.0) < 1.0


def test_fast_fading_has_unit_mean_power_and_deep_fades() -> None:
    table = FadingTable(k_db=3.0)
    mean_power = statistics.fmean(10 ** (v / 10) for v in table.values)
    assert mean_power == pytest.approx(1.0, abs=0.05)
    assert min(table.values) < -10 < max(table.values) - 15
    rayleigh = FadingTable(k_db=-30.0)
    assert statistics.pstdev(rayleigh.values) > statistics.pstdev(table.values)


def test_walls_attenuate_and_shadowing_is_spatially_correlated() -> None:
    params = RadioParams(shadowing_db=2.0, shadowing_nlos_db=6.0, shadowing_decorrelation_m=2.5)
    channel = GatewayChannel("gw", (0.0, 0.0), [Wall((5, -10), (5, 10), 12.0)], params, seed=1)
    assert channel.wall_loss_db((4.0, 0.0)) == 0.0
    assert channel.wall_loss_db((6.0, 3.0)) == 12.0
    samples = [channel.shadowing((x * 0.7, y * 0.9)) for x in range(40) for y in range(40)]
    assert statistics.pstdev(samples) == pytest.approx(1.0, rel=0.25)
    near = [channel.shadowing((x, 0.0)) - channel.shadowing((x + 0.2, 0.0)) for x in range(30)]
    far = [channel.shadowing((x, 0.0)) - channel.shadowing((x + 10.0, 0.0)) for x in range(30)]
    assert statistics.pstdev(near) < statistics.pstdev(far) / 3
    # Behind the wall the shadowing is the NLOS one, on top of the wall's own loss.
    los = [channel.static_loss_db((-x * 0.5 - 1, y * 0.5)) for x in range(8) for y in range(30)]
    nlos = [channel.static_loss_db((x * 0.5 + 6, y * 0.5)) for x in range(8) for y in range(30)]
    assert statistics.fmean(nlos) - statistics.fmean(los) == pytest.approx(12.0, abs=3.0)
    assert statistics.pstdev(nlos) > 2 * statistics.pstdev(los)


def test_collisions_grow_with_the_crowd() -> None:
    one_phone = airtime_s(31) / 0.25
    assert airtime_s(31) == pytest.approx(376e-6)
    assert collision_survival(10 * one_phone, 0.2) > 0.99
    assert collision_survival(3000 * one_phone, 0.2) < 0.65


def test_every_shipped_scenario_loads_and_is_consistent() -> None:
    assert {"boutique", "supermarket", "black-friday"} <= set(scenario_names())
    shape = {
        name: (len(s.gateways), len(s.floor.zones), round(sum(s.shoppers.per_hour.values())))
        for name in scenario_names()
        if (s := load_scenario(name))
    }
    assert shape["boutique"] == (1, 3, 92)
    assert shape["supermarket"] == (6, 12, 400)
    assert shape["black-friday"][2] == 2000
    assert load_scenario("black-friday").shoppers.per_hour == {6: 2000}


def test_bad_scenarios_are_refused() -> None:
    scenario = load_scenario("boutique").model_dump(by_alias=True)
    scenario["gateways"][0]["zone"] = "nowhere"
    with pytest.raises(ValidationError, match="unknown zone"):
        type(load_scenario("boutique")).model_validate(scenario)
    with pytest.raises(ValueError, match="no scenario"):
        load_scenario("moon-base")


def test_overrides_change_gateways_and_radio() -> None:
    base = load_scenario("supermarket")
    tuned = with_overrides(base, ["enter_distance_m=2.5", "radio.shadowing_db=6"])
    assert {tuned.enter_distance(g) for g in tuned.gateways} == {2.5}
    assert tuned.radio.shadowing_db == 6.0
    assert base.radio.shadowing_db == RadioParams().shadowing_db
    with pytest.raises(ValueError, match="unknown setting"):
        with_overrides(base, ["volume=11"])


def test_a_gateway_of_a_scenario_can_have_its_own_door_settings() -> None:
    base = load_scenario("boutique")
    [door] = base.gateways
    scenario = base.model_copy(
        update={
            "gateways": (
                door.model_copy(update={"companion_window_s": 8.0, "arrival_heard_max_s": 60.0}),
                door.model_copy(update={"id": "gw-racks", "zone": "racks"}),
            ),
            "gateway_defaults": base.gateway_defaults.model_copy(update={"enter_confirm_s": 1.0}),
        }
    )
    own, default = SimStore(scenario, 1, hours=0.1).gateway_settings()
    assert (own.companion_window_s, own.arrival_heard_max_s, own.enter_confirm_s) == (8, 60, 1)
    assert (default.companion_window_s, default.arrival_heard_max_s) == (0, 0)
    assert default.enter_confirm_s == 1


def test_hourly_profile_is_rounded_to_the_total() -> None:
    counts = hourly_arrivals({9: 2.5, 10: 2.5, 11: 1.0}, day_start=0.0)
    assert [c for c, _ in counts] == [3, 2, 1]
    assert [start for _, start in counts] == [9 * 3600.0, 10 * 3600.0, 11 * 3600.0]


def test_the_supermarket_day_has_its_crowd() -> None:
    store = SimStore(load_scenario("supermarket"), seed=3)
    kinds = Counter(person.kind for person in store.people)
    assert kinds[PersonKind.SHOPPER] + kinds[PersonKind.SHOPPER_APP] == 400
    assert kinds[PersonKind.STAFF] == 12
    assert 0.15 < kinds[PersonKind.SHOPPER_APP] / 400 < 0.35
    scenario = store.scenario
    outline = scenario.floor.outline
    for person in store.people:
        path = person.trajectory
        if person.kind is PersonKind.STAFF:
            # Staff are in before opening and leave after closing.
            assert path.start < scenario.open_ts and path.end > scenario.close_ts
        if person.kind is PersonKind.PASSERBY:
            assert all(not contains(outline, leg.b) for leg in path.legs)
        if person.kind is PersonKind.SHOPPER_APP:
            assert person.app_key is not None and len(person.app_key) == 32
    arrivals = [p.trajectory.start for p in store.people if p.kind is not PersonKind.STAFF]
    assert min(arrivals) > scenario.open_ts - 600


def test_same_seed_same_people_other_seed_others() -> None:
    def crowd(seed: int) -> list[tuple[str, float, int]]:
        store = SimStore(load_scenario("boutique"), seed=seed, hours=1)
        return [(p.id, p.trajectory.end, len(p.devices)) for p in store.people]

    assert crowd(5) == crowd(5)
    assert crowd(5) != crowd(6)
