"""Tests of f2p.episode and f2p.recovery on the real MuJoCo world with a tiny model."""

import jax
import numpy as np
import pytest

from f2p import tasks
from f2p.agent import model_agent
from f2p.episode import run_episode
from f2p.models import SkillEffectModel
from f2p.models import get_config as model_config
from f2p.recovery import Recovery, make_policy, original_policy, replan_policy, stop_policy
from isaac_bridge.real2sim import fit_scene
from isaac_bridge.real_world import PhysicsRanges, RealWorld

NUM_POINTS = 32
PLANNER = {"population": 8, "iterations": 2, "elites": 2}


@pytest.fixture(scope="module")
def tiny_model():
    model = SkillEffectModel(model_config("tiny").model)
    return model, model.init(jax.random.PRNGKey(0), 8, NUM_POINTS)


def _episode(tiny_model, policies, seed=3, split="ood"):
    """A tabletop episode: the untrained model's predictions are caught failing at once."""
    model, params = tiny_model
    task = tasks.get_task("tabletop")

    def build():
        nominal = task.sample_scene(np.random.default_rng(seed), 3, split)
        return RealWorld(nominal, PhysicsRanges(), 0.1, seed, num_points=NUM_POINTS), nominal

    world, nominal = build()
    kind, fixtures = world.kind, world.fixtures

    def perceive(observation, prior):
        return fit_scene(observation, kind, fixtures=fixtures,
                         prior=nominal if prior is None else prior)

    agent = model_agent(model, params, PLANNER, perceive)
    results = run_episode(world, task, agent, policies, jax.random.PRNGKey(seed),
                          seeds={"scene_seed": seed, "world_seed": seed}, metadata={"n": 3})
    return results, build


def test_policies_branch_from_one_failure_and_its_snapshot_replays(tiny_model):
    policies = {"stop": stop_policy, "original": original_policy,
                "replan": replan_policy(max_replans=1)}
    results, build = _episode(tiny_model, policies)
    stop, original, replan = (results[name] for name in policies)
    failure = stop.failure
    assert failure is not None, "the untrained model should be caught failing"
    assert original.failure is failure and replan.failure is failure
    step = stop.record["detection_step"]
    plan_length = len(stop.record["plan"]["skills"])
    assert stop.record["steps_executed"] == step + 1
    assert original.record["steps_executed"] == plan_length
    # Every branch shares the steps up to the failure, checks included.
    for result in (original, replan):
        assert result.record["steps"][:step + 1] == stop.record["steps"]
    assert [e["action"] for e in stop.record["recoveries"]] == ["stop"]
    assert replan.record["recoveries"][0]["action"] == "replace"
    assert sum(e["action"] == "replace" for e in replan.record["recoveries"]) == 1  # budget
    # The failure holds the failed skill and the belief refitted just before it.
    assert failure.step == step and int(failure.skill.obj) == int(failure.plan.obj[step])
    assert failure.observation_before.half_extents is not None
    np.testing.assert_array_equal(failure.belief_before.half_extents,
                                  failure.observation_before.half_extents)
    # Restored into a fresh world built the same way, the failed skill replays bit-identically.
    world, _ = build()
    world.restore(failure.snapshot_before)
    np.testing.assert_array_equal(world.true_scene().pos, failure.truth.scene_before.pos)
    replayed = world.step(failure.skill)
    np.testing.assert_array_equal(replayed.points, failure.observation_after.points)
    np.testing.assert_array_equal(replayed.num_visible, failure.observation_after.num_visible)
    np.testing.assert_array_equal(world.true_relations(), failure.truth.relations_after)


def test_a_policy_decision_is_checked(tiny_model):
    with pytest.raises(ValueError, match="recovery action: 'retry' is not one of"):
        _episode(tiny_model, {"bad": lambda context: Recovery("retry")})
    with pytest.raises(ValueError, match="needs a plan"):
        _episode(tiny_model, {"bad": lambda context: Recovery("replace")})


def test_make_policy_names_the_allowed_policies():
    assert make_policy("stop") is stop_policy and make_policy("original") is original_policy
    with pytest.raises(ValueError, match="'repair' is not one of original, stop, replan"):
        make_policy("repair")
    with pytest.raises(ValueError, match="max_replans"):
        replan_policy(0)
