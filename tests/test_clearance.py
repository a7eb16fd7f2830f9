import jax
import numpy as np
import pytest

from f2p import clearance, planner
from f2p.scene import CONTAINER, FIXTURE, ITEM, PICK_PLACE, PUSH, make_scene

TABLE, CUP, MARBLE, BLOCK = 0, 1, 2, 3
TABLE_CENTRE = np.array([0.55, 0.35])


@pytest.fixture(scope="module")
def observation():
    # A table, a cup holding a marble (both bottoms on the table) and a block beside them.
    scene = make_scene([FIXTURE, CONTAINER, ITEM, ITEM],
                       [[0.2, 0.25, 0.05], [0.05, 0.05, 0.05], [0.02, 0.02, 0.03],
                        [0.03, 0.03, 0.03]],
                       [[0.55, 0.35, 0.05], [0.50, 0.20, 0.15], [0.50, 0.20, 0.13],
                        [0.62, 0.50, 0.13]])
    return planner.observe_scene(scene, 64)


def overlap(observation, steps):
    """steps: (skill, obj, support, (x, y) world target or push offset)."""
    skill, obj, support = (np.array([s[i] for s in steps], np.int32) for i in range(3))
    params = np.array([np.subtract(s[3], TABLE_CENTRE) if s[0] == PICK_PLACE and s[2] == TABLE
                       else s[3] for s in steps], np.float32)
    return float(clearance.placement_overlap(observation.points, observation.mask,
                                             observation.kind, skill, obj, support, params))


def test_footprints_and_riders_of_a_rendered_scene(observation):
    centre, half, bottom = (np.asarray(x) for x in clearance.footprints(observation.points))
    np.testing.assert_allclose(centre[CUP], [0.50, 0.20], atol=0.01)
    np.testing.assert_allclose(half[BLOCK], [0.03, 0.03], atol=0.01)
    assert bottom[CUP] == pytest.approx(0.10, abs=0.02)
    riders = np.asarray(clearance.rides_on(observation.points, observation.kind))
    assert riders[MARBLE, CUP] and not riders[CUP, MARBLE]
    assert not riders[BLOCK, CUP] and not riders[CUP, BLOCK]
    assert not riders.diagonal().any()


def test_a_placement_onto_an_object_still_in_place_overlaps(observation):
    # The block put where the cup stands: 0.03 + 0.05 m deep into the cup, 0.03 + 0.02 into
    # the marble.
    assert overlap(observation, [(PICK_PLACE, BLOCK, TABLE, (0.50, 0.20))]) == pytest.approx(
        0.13, abs=0.015)
    assert overlap(observation, [(PICK_PLACE, BLOCK, TABLE, (0.65, 0.30))]) == 0.0
    # The cup put onto the block's spot: the block is in the way, the marble rides along.
    assert overlap(observation, [(PICK_PLACE, CUP, TABLE, (0.62, 0.48))]) > 0.05
    assert overlap(observation, [(PICK_PLACE, CUP, TABLE, (0.65, 0.30))]) == 0.0


def test_objects_moved_earlier_supports_and_pushes_are_not_obstacles(observation):
    # The cup (carrying the marble) leaves first, so its old spot is free for the block.
    assert overlap(observation, [(PICK_PLACE, CUP, TABLE, (0.68, 0.60)),
                                 (PICK_PLACE, BLOCK, TABLE, (0.50, 0.20))]) == 0.0
    # Only the marble leaves: the cup still stands there.
    assert overlap(observation, [(PICK_PLACE, MARBLE, TABLE, (0.68, 0.60)),
                                 (PICK_PLACE, BLOCK, TABLE, (0.50, 0.20))]) > 0.05
    # The block into the cup: the cup is the support, not an obstacle, but the marble is.
    assert overlap(observation, [(PICK_PLACE, BLOCK, CUP, (0.0, 0.0))]) > 0.02
    assert overlap(observation, [(PICK_PLACE, MARBLE, TABLE, (0.68, 0.60)),
                                 (PICK_PLACE, BLOCK, CUP, (0.0, 0.0))]) == 0.0
    # A push has no placement.
    assert overlap(observation, [(PUSH, BLOCK, -1, (-0.12, -0.30))]) == 0.0


def test_the_planner_keeps_placements_clear_when_weighted(observation):
    from f2p.models import SkillEffectModel, get_config
    from f2p.scene import REL, Skill
    from f2p.tasks import Goal, SkeletonStep

    model = SkillEffectModel(get_config("tiny").model)
    params = model.init(jax.random.PRNGKey(0), 8, observation.points.shape[1])
    rng = np.random.default_rng(1)
    params = jax.tree.map(lambda leaf: leaf + 0.1 * rng.normal(size=leaf.shape), params)
    # Bounds around the cup's spot: all but x > 0.58 overlap it.
    low, high = np.subtract((0.44, 0.14), TABLE_CENTRE), np.subtract((0.595, 0.26), TABLE_CENTRE)
    step = SkeletonStep(PICK_PLACE, BLOCK, TABLE, tuple(low), tuple(high))
    goal = Goal(must_hold=((REL["above"], BLOCK, TABLE),))
    arrays = planner.skeleton_arrays((step,), observation.mask, observation.kind)
    config = planner.PlannerConfig(population=32, iterations=4, elites=4)

    weight = 1e4
    chosen, score, _ = planner.plan_skeleton(
        jax.random.PRNGKey(0), model, params, observation, arrays, goal.arrays(),
        config._replace(clearance_weight=weight))
    x, y = np.asarray(chosen[0]) + TABLE_CENTRE
    assert overlap(observation, [(PICK_PLACE, BLOCK, TABLE, (x, y))]) == 0.0
    # The score is the objective: the goal log-probability less the weighted overlap, which
    # is what CEM maximised (checked at an overlapping placement, the box's centre).
    centre = (low + high) / 2

    def objective(step_params, weight):
        rollout = model.rollout(params, observation.points, observation.mask, observation.kind,
                                Skill(*(np.asarray(a) for a in arrays[:3]), step_params),
                                observation.half_extents)
        return float(planner.goal_log_prob(rollout.relation_logits[-1], goal.arrays())) \
            - weight * overlap(observation, [(PICK_PLACE, BLOCK, TABLE, step_params[0]
                                              + TABLE_CENTRE)])

    assert float(score) == pytest.approx(objective(np.asarray(chosen), weight), abs=1e-3)
    assert objective(centre[None], weight) < objective(centre[None], 0.0) - 100
    with pytest.raises(ValueError, match="config.clearance_weight"):
        planner.as_planner_config({"clearance_weight": -1.0})
