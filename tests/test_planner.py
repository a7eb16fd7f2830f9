import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from f2p import planner
from f2p.models import SkillEffectModel, get_config
from f2p.scene import PICK_PLACE, PUSH, REL, Skill
from f2p.tasks import Goal, SkeletonStep, get_task

NUM_POINTS = 32
FAST = planner.PlannerConfig(population=8, iterations=2, elites=3, init_std=0.5, seed=0)


def quadratic(centre):
    centre = jnp.asarray(centre, jnp.float32)
    return lambda x: -jnp.sum((x - centre) ** 2)


def test_cem_finds_an_interior_maximum():
    low, high = -np.ones((3, 2)), np.ones((3, 2))
    centre = np.array([[0.3, -0.5], [0.7, 0.1], [-0.2, -0.8]])
    config = planner.PlannerConfig(population=64, iterations=12, elites=16, init_std=0.5)
    result = jax.jit(lambda key: planner.cem(key, quadratic(centre), low, high, config))(
        jax.random.PRNGKey(0))
    np.testing.assert_allclose(result.best_params, centre, atol=0.02)
    assert float(result.best_score) == pytest.approx(
        float(quadratic(centre)(result.best_params)), abs=1e-6)
    assert np.all(np.diff(np.asarray(result.score_history)) >= 0)
    assert result.score_history.shape == (12,)


def test_cem_ends_at_the_box_corner_when_the_optimum_is_outside():
    low, high = np.array([-1.0, 0.0]), np.array([1.0, 0.5])
    result = planner.cem(jax.random.PRNGKey(1), quadratic([2.0, -3.0]), low, high,
                         planner.PlannerConfig(population=32, iterations=6, elites=4))
    np.testing.assert_allclose(result.best_params, [1.0, 0.0], atol=1e-6)


def test_cem_keeps_zero_width_args_fixed_and_ignores_nan_scores():
    low, high = np.array([0.2, -1.0]), np.array([0.2, 1.0])

    def score(x):  # NaN on the left half: it must never be chosen.
        return jnp.where(x[1] < 0, jnp.nan, -(x[1] - 0.5) ** 2)

    result = planner.cem(jax.random.PRNGKey(2), score, low, high,
                         planner.PlannerConfig(population=32, iterations=6, elites=4))
    assert float(result.best_params[0]) == pytest.approx(0.2)
    assert float(result.best_params[1]) >= 0.0
    assert np.isfinite(float(result.best_score))


def test_planner_config_conversion_and_errors():
    config = ml_collections.ConfigDict({"population": 16, "elites": 4})
    assert planner.as_planner_config(config) == planner.PlannerConfig(population=16, elites=4)
    assert planner.as_planner_config({"iterations": 3}).iterations == 3
    with pytest.raises(ValueError, match="config.elites"):
        planner.as_planner_config(planner.PlannerConfig(population=4, elites=5))
    with pytest.raises(ValueError, match="config.populaton"):
        planner.as_planner_config({"populaton": 4})
    with pytest.raises(ValueError, match="config.init_std"):
        planner.as_planner_config({"init_std": 0.0})


def test_goal_log_prob_on_hand_made_logits():
    logits = np.zeros((3, 3, 9), np.float32)
    logits[1, 0, REL["inside"]] = 2.0
    logits[2, 0, REL["above"]] = -100.0  # must hold but predicted false: finite, about -100
    logits[1, 2, REL["left"]] = -3.0  # must not hold and predicted false
    goal = Goal(must_hold=((REL["inside"], 1, 0), (REL["above"], 2, 0)),
                must_not_hold=((REL["left"], 1, 2), (REL["contact"], 0, 1)))
    value = float(planner.goal_log_prob(jnp.asarray(logits), goal.arrays()))
    sigmoid = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    expected = np.log(sigmoid(2.0)) + (-100.0 - np.log1p(np.exp(-100.0))) \
        + np.log(1.0 - sigmoid(-3.0)) + np.log(0.5)
    assert value == pytest.approx(expected, rel=1e-5)
    only_holds = Goal(must_hold=((REL["inside"], 1, 0),))
    assert float(planner.goal_log_prob(jnp.asarray(logits), only_holds.arrays())) == \
        pytest.approx(np.log(sigmoid(2.0)), rel=1e-5)


@pytest.fixture(scope="module")
def setup():
    model = SkillEffectModel(get_config("tiny").model)
    params = model.init(jax.random.PRNGKey(0), 8, NUM_POINTS)
    # Zero-initialised output heads would predict no change at all: randomise every leaf.
    rng = np.random.default_rng(1)
    params = jax.tree.map(lambda leaf: leaf + 0.1 * rng.normal(size=leaf.shape), params)
    task = get_task("tabletop")
    scene = task.sample_scene(np.random.default_rng(3), 3)
    observation = planner.observe_scene(scene, NUM_POINTS)
    return model, params, task, scene, observation


def test_plan_returns_a_well_formed_best_plan(setup):
    model, params, task, scene, observation = setup
    result = planner.plan(jax.random.PRNGKey(0), model, params, observation, task, scene, FAST)
    skeletons = task.skeletons(scene)
    assert result.skeleton_scores.shape == (len(skeletons),)
    assert result.skeleton_index == int(np.argmax(result.skeleton_scores))
    assert result.score == pytest.approx(float(result.skeleton_scores.max()))
    steps = skeletons[result.skeleton_index]
    num_steps = len(steps)
    assert result.skills.params.shape == (num_steps, 2)
    assert result.relations.shape == (num_steps, 8, 8, 9)
    assert np.all((result.relations >= 0) & (result.relations <= 1))
    np.testing.assert_array_equal(result.skills.skill, [s.skill for s in steps])
    np.testing.assert_array_equal(result.skills.obj, [s.obj for s in steps])
    np.testing.assert_array_equal(result.skills.support, [s.support for s in steps])
    assert np.all(result.skills.params >= np.array([s.low for s in steps]) - 1e-7)
    assert np.all(result.skills.params <= np.array([s.high for s in steps]) + 1e-7)

    # The reported score and relations are those of a plain rollout of the chosen skills.
    rollout = model.rollout(params, observation.points, observation.mask, observation.kind,
                            result.skills, observation.half_extents)
    np.testing.assert_allclose(result.relations, jax.nn.sigmoid(rollout.relation_logits),
                               atol=1e-5)
    goal = task.goal(scene).arrays()
    assert float(planner.goal_log_prob(rollout.relation_logits[-1], goal)) == pytest.approx(
        result.score, abs=1e-4)
    # CEM scores the box centre first, so the plan is never worse than it.
    centre = Skill(*result.skills[:3], np.array([(np.add(s.low, s.high)) / 2 for s in steps]))
    centre_logits = model.rollout(params, observation.points, observation.mask,
                                  observation.kind, centre, observation.half_extents)
    assert result.score >= float(planner.goal_log_prob(
        centre_logits.relation_logits[-1], goal)) - 1e-5


def test_plan_does_not_recompile_for_new_keys_or_seeds(setup):
    model, params, task, scene, observation = setup
    planner.plan(None, model, params, observation, task, scene, FAST)
    compiled = planner._plan_skeletons_compiled._cache_size()
    other = planner.plan(None, model, params, observation, task, scene, FAST._replace(seed=5))
    planner.plan(jax.random.PRNGKey(7), model, params, observation, task, scene, FAST)
    # Which skeletons to plan over is chosen outside the compiled search.
    planner.plan_every_skeleton(None, model, params, observation, task.goal(scene),
                                task.skeletons(scene), FAST._replace(clearing_skeletons=True))
    assert planner._plan_skeletons_compiled._cache_size() == compiled
    assert other.relations.shape[1:] == (8, 8, 9)


def test_skeletons_planned_together_match_one_at_a_time(setup):
    model, params, task, scene, observation = setup
    skeletons = task.skeletons(scene)
    assert len(skeletons) > len({len(s) for s in skeletons})  # some lengths are shared
    key = jax.random.PRNGKey(4)
    together = planner.plan(key, model, params, observation, task, scene, FAST)
    goal = task.goal(scene).arrays()
    for index, (skeleton_key, skeleton) in enumerate(zip(
            jax.random.split(key, len(skeletons)), skeletons, strict=True)):
        arrays = planner.skeleton_arrays(skeleton, observation.mask, observation.kind)
        _, score, _ = planner.plan_skeleton(skeleton_key, model, params, observation, arrays,
                                            goal, FAST)
        assert together.skeleton_scores[index] == pytest.approx(float(score), abs=1e-4)


def test_goal_and_skeleton_errors_name_the_field(setup):
    model, params, task, scene, observation = setup
    skeletons = task.skeletons(scene)
    masked_slot = int(np.flatnonzero(~observation.mask)[0])
    cases = [
        (Goal(must_hold=((REL["above"], 1, masked_slot),)), r"goal.must_hold\[0\]"),
        (Goal(must_hold=((REL["above"], 1, 0),), must_not_hold=((REL["left"], 9, 0),)),
         r"goal.must_not_hold\[0\]"),
        (Goal(must_hold=((9, 1, 0),)), "relation 9"),
        (Goal(must_hold=()), "goal"),
    ]
    for goal, message in cases:
        with pytest.raises(ValueError, match=message):
            planner.plan_skeletons(None, model, params, observation, goal, skeletons, FAST)
    goal = task.goal(scene)
    with pytest.raises(ValueError, match="skeletons"):
        planner.plan_skeletons(None, model, params, observation, goal, (), FAST)
    bad_step = SkeletonStep(0, masked_slot, 0, (0.0, 0.0), (0.01, 0.01))
    with pytest.raises(ValueError, match=r"skeletons\[0\]\[0\].obj"):
        planner.plan_skeletons(None, model, params, observation, goal, ((bad_step,),), FAST)
    fixture_step = SkeletonStep(1, 0, -1, (0.0, 0.0), (0.01, 0.01))
    with pytest.raises(ValueError, match="fixture"):
        planner.plan_skeletons(None, model, params, observation, goal, ((fixture_step,),), FAST)
    inverted = SkeletonStep(0, 1, 0, (0.02, 0.0), (0.01, 0.01))
    with pytest.raises(ValueError, match="low"):
        planner.plan_skeletons(None, model, params, observation, goal, ((inverted,),), FAST)
    with pytest.raises(ValueError, match="observation.mask"):
        planner.plan_skeletons(None, model, params, observation._replace(mask=np.ones(7, bool)),
                               goal, skeletons, FAST)


def test_plan_handles_push_steps_and_skeletons_of_several_lengths(setup):
    model, params, _, _, _ = setup
    task = get_task("packing")
    scene = task.sample_scene(np.random.default_rng(0), 3, "ood")  # crowded shelf: pushes
    skeletons = task.skeletons(scene)
    assert len({len(s) for s in skeletons}) > 1 and any(
        step.skill == PUSH for s in skeletons for step in s)
    observation = planner.observe_scene(scene, NUM_POINTS)
    result = planner.plan(jax.random.PRNGKey(1), model, params, observation, task, scene, FAST)
    steps = skeletons[result.skeleton_index]
    assert result.relations.shape == (len(steps), 8, 8, 9)
    np.testing.assert_array_equal(result.skills.support,
                                  [s.support if s.skill == PICK_PLACE else -1 for s in steps])
    assert np.all(np.isfinite(result.skeleton_scores))


def test_every_skeleton_is_planned_and_the_best_is_the_plan(setup):
    model, params, task, scene, observation = setup
    skeletons, goal = task.skeletons(scene), task.goal(scene)
    key = jax.random.PRNGKey(4)
    plans = planner.plan_every_skeleton(key, model, params, observation, goal, skeletons, FAST)
    assert [p.skeleton_index for p in plans] == list(range(len(skeletons)))
    assert [p.skills.skill.shape[0] for p in plans] == [len(s) for s in skeletons]
    scores = np.array([p.score for p in plans])
    np.testing.assert_allclose(plans[0].skeleton_scores, scores)
    best = planner.plan_skeletons(key, model, params, observation, goal, skeletons, FAST)
    assert best.skeleton_index == int(np.argmax(scores)) and not best.explored
    np.testing.assert_array_equal(best.skills.params, plans[best.skeleton_index].skills.params)
    nan_first = [plans[0]._replace(score=float("nan")), *plans[1:]]
    assert planner.best_plan(nan_first).skeleton_index != 0
