import numpy as np
import pytest

from f2p import planner
from f2p.scene import CONTAINER, FIXTURE, ITEM, PICK_PLACE, PUSH, make_scene
from f2p.tasks import SkeletonStep, clearing, get_task
from f2p.tasks.tabletop import ASIDE_DX, TABLE_B_HALF, TABLE_B_POS

TABLE, CUP_1, CUP_2, ITEM_3 = 0, 1, 2, 3
TASK = get_task("tabletop")
LANE_DY = (-0.125, 0.125)  # the row lanes' centres on table B for two cups


def scene_with(cup_1, cup_2, item):
    """Table B, two cups and an item at the given xy (on table B when inside its span)."""

    def z(xy, half_z):
        on_b = np.all(np.abs(np.subtract(xy, TABLE_B_POS[:2])) < TABLE_B_HALF[:2])
        return (0.10 if on_b else 0.0) + half_z + 0.001

    halves = [[0.046, 0.046, 0.04], [0.046, 0.046, 0.04], [0.018, 0.018, 0.03]]
    return make_scene([FIXTURE, CONTAINER, CONTAINER, ITEM], [TABLE_B_HALF] + halves,
                      [TABLE_B_POS] + [[*xy, z(xy, h[2])] for xy, h in
                                       zip((cup_1, cup_2, item), halves, strict=True)])


def on_b(dx, dy):
    return (TABLE_B_POS[0] + dx, TABLE_B_POS[1] + dy)


def order(skeleton):
    return [(step.obj, step.support) for step in skeleton]


ITEMS_FIRST, CUPS_FIRST, CUPS_ONLY = 0, 1, 2


def test_a_cup_standing_in_another_cups_lane_moves_first():
    scene = scene_with((0.5, -0.4), on_b(0.0, LANE_DY[0]), (0.6, -0.2))
    cups_first = TASK.skeletons(scene)[CUPS_FIRST]
    assert order(cups_first) == [(CUP_1, TABLE), (CUP_2, TABLE), (ITEM_3, CUP_1)]
    reordered = clearing.clearing_order(scene, cups_first, aside_lanes=[])
    assert order(reordered) == [(CUP_2, TABLE), (CUP_1, TABLE), (ITEM_3, CUP_1)]
    # The steps themselves (bounds included) are unchanged, only their order.
    assert sorted(reordered) == sorted(cups_first)


def test_an_item_in_a_lane_goes_into_its_cup_before_that_lane_is_filled():
    scene = scene_with((0.5, -0.4), (0.6, -0.2), on_b(0.0, LANE_DY[1]))
    reordered = clearing.clearing_order(scene, TASK.skeletons(scene)[CUPS_FIRST], [])
    # item 3 belongs in cup 1: once cup 1 is in its lane, the item goes in, then cup 2 follows.
    assert order(reordered) == [(CUP_1, TABLE), (ITEM_3, CUP_1), (CUP_2, TABLE)]
    # items_first already fills the cup before any cup moves: nothing to reorder.
    items_first = TASK.skeletons(scene)[ITEMS_FIRST]
    assert clearing.clearing_order(scene, items_first, []) == items_first


def test_a_blocker_no_step_moves_is_put_aside_into_a_clear_lane():
    scene = scene_with((0.5, -0.4), (0.6, -0.2), on_b(0.0, LANE_DY[1]))
    cups_only = TASK.skeletons(scene)[CUPS_ONLY]
    lanes = [((-0.16, 0.0), (-0.13, 0.05)), ((-0.16, -0.15), (-0.13, -0.10))]
    assert clearing.clearing_order(scene, cups_only, []) is None  # no lane to put it in
    reordered = clearing.clearing_order(scene, cups_only, lanes)
    assert order(reordered) == [(CUP_1, TABLE), (ITEM_3, TABLE), (CUP_2, TABLE)]
    assert reordered[1] == SkeletonStep(PICK_PLACE, ITEM_3, TABLE, *lanes[0])
    # A lane where an object stands is skipped; an object that does not fit aside is refused.
    crowded = scene_with((0.5, -0.4), on_b(-0.145, 0.03), on_b(0.0, LANE_DY[1]))
    cup_2_to_its_lane = cups_only[1]
    assert clearing.clearing_order(crowded, (cup_2_to_its_lane,), lanes) == (
        SkeletonStep(PICK_PLACE, ITEM_3, TABLE, *lanes[1]), cup_2_to_its_lane)
    assert clearing.clearing_order(scene, cups_only, lanes, fits_aside=lambda s: False) is None


def test_two_cups_in_each_others_lanes_cannot_be_cleared():
    scene = scene_with(on_b(0.0, LANE_DY[1]), on_b(0.0, LANE_DY[0]), (0.6, -0.2))
    for skeleton in TASK.skeletons(scene):
        assert clearing.clearing_order(scene, skeleton, [((-0.16, 0.0), (-0.13, 0.05))],
                                       fits_aside=lambda s: s == ITEM_3) is None
    assert TASK.clearing_skeletons(scene) == ()


def test_only_pick_place_steps_are_reordered():
    scene = scene_with((0.5, -0.4), (0.6, -0.2), (0.6, -0.1))
    push = SkeletonStep(PUSH, ITEM_3, -1, (-0.05, -0.05), (0.05, 0.05))
    with pytest.raises(ValueError, match="pick_place"):
        clearing.clearing_order(scene, (push,), [])


@pytest.mark.parametrize("split", ["train", "ood"])
def test_tabletop_clearing_skeletons_are_new_clear_and_keep_the_goal_steps(split):
    rng = np.random.default_rng(0)
    found = 0
    for _ in range(30):
        scene = TASK.sample_scene(rng, 7, split)
        skeletons = TASK.skeletons(scene)
        lanes = TASK.clearing_lanes(scene)
        for skeleton in TASK.clearing_skeletons(scene):
            found += 1
            assert skeleton not in skeletons
            # Every step but the put-asides is a step of a planned skeleton, in a clear spot.
            layout = clearing._Layout(scene)
            for step in skeleton:
                assert not layout.blockers(step)
                layout.apply(step)
            lane_steps = [s for s in skeleton if (s.low, s.high) in lanes]
            assert all(scene.kind[s.obj] == ITEM and s.support == TABLE for s in lane_steps)
            assert len({(s.low, s.high) for s in lane_steps}) == len(lane_steps)
    assert found >= 10


def test_clearing_lanes_lie_in_the_aside_strip_and_keep_items_apart():
    scene = TASK.sample_scene(np.random.default_rng(1), 7, "ood")
    lanes = TASK.clearing_lanes(scene)
    assert len(lanes) == 4  # one per item
    for (low, high), (next_low, _) in zip(lanes[:-1], lanes[1:], strict=True):
        assert (low[0], high[0]) == ASIDE_DX
        assert next_low[1] - high[1] >= 2 * 0.031  # two items' largest footprints
    assert TASK.aside_bounds(scene)[0][0][1] < lanes[0][0][1]


def test_planners_add_clearing_skeletons_only_when_asked():
    scene = scene_with((0.5, -0.4), on_b(0.0, LANE_DY[0]), (0.6, -0.2))
    plain = planner.task_skeletons(TASK, scene, {})
    assert plain == TASK.skeletons(scene)
    both = planner.task_skeletons(TASK, scene, {"clearing_skeletons": True})
    assert both == plain + TASK.clearing_skeletons(scene) and len(both) > len(plain)
    assert planner.task_skeletons(get_task("transport"),
                                  get_task("transport").sample_scene(np.random.default_rng(0), 3),
                                  {"clearing_skeletons": True})
    with pytest.raises(ValueError, match="config.clearing_skeletons"):
        planner.as_planner_config({"clearing_skeletons": "yes"})


def test_the_clearing_order_solves_a_blocked_lane_in_mujoco():
    from f2p.tasks.base import make_skill
    from isaac_bridge.mujoco_backend import MujocoSimulator

    scene = scene_with((0.5, -0.4), on_b(0.0, LANE_DY[0]), (0.6, -0.2))
    cups_first = TASK.skeletons(scene)[CUPS_FIRST]

    def run(simulator, skeleton):
        state, relations = scene, None
        for step in skeleton:
            skill = make_skill(step.skill, step.obj, step.support,
                               (np.asarray(step.low) + np.asarray(step.high)) / 2)
            outcome = simulator.execute(*[type(t)(*(np.asarray(x)[None] for x in t))
                                          for t in (state, skill)], seed=0)
            state = type(scene)(*(np.asarray(x)[0] for x in outcome.post))
            relations = outcome.relations_post[0]
        return TASK.is_success(state, relations)

    with MujocoSimulator(num_workers=1) as simulator:
        assert not run(simulator, cups_first)  # cup 1 is put down onto cup 2
        assert run(simulator, clearing.clearing_order(scene, cups_first, []))
