import jax
import numpy as np
import pytest

from f2p import oracle
from f2p.scene import FIXTURE, ITEM, K_MAX, PICK_PLACE, REL, Skill, make_scene, take_row
from f2p.tasks import get_task
from f2p.tasks.base import Goal, SkeletonStep
from f2p.world import OK, STATUS_NAMES, TIPPED, Outcome

TARGET = np.array([0.08, -0.05])
"""The fake world's goal: the item's accumulated displacement must end within TOLERANCE of it."""
TOLERANCE = 0.025


class FakeSimulator:
    """Moves the item (slot 1) by the skill's params; above(1, 0) holds when it ends near TARGET.

    Candidates whose params have dx < -0.15 come back TIPPED (flagged), even on the target.
    Every execute call is logged with its batch size.
    """

    def __init__(self, tip_target: bool = False):
        self.calls = []
        self.tip_target = tip_target

    def execute(self, scenes, skills, seed=0):
        batch = scenes.kind.shape[0]
        self.calls.append(batch)
        pos = np.array(scenes.pos)
        pos[:, 1, :2] += np.asarray(skills.params)
        post = scenes._replace(pos=pos)
        offset = pos[:, 1, :2] - np.asarray(scenes.pos)[:, 0, :2]
        hit = np.all(np.abs(offset - TARGET) < TOLERANCE, axis=-1)
        relations = np.zeros((batch, K_MAX, K_MAX, 9), bool)
        relations[:, 1, 0, REL["above"]] = hit
        status = np.where(np.asarray(skills.params)[:, 0] < -0.15, TIPPED, OK).astype(np.int32)
        if self.tip_target:
            status = np.where(hit, TIPPED, status).astype(np.int32)
        contact = np.zeros((batch, K_MAX, K_MAX), bool)
        return Outcome(scenes, post, contact, contact, relations, relations,
                       np.zeros((batch, K_MAX), bool), status == OK, status, STATUS_NAMES)


class FakeTask:
    """The oracle only needs goal, skeletons and is_success."""

    def __init__(self, skeletons):
        self._skeletons = skeletons

    def goal(self, scene):
        return Goal(((REL["above"], 1, 0),))

    def skeletons(self, scene):
        return self._skeletons

    def is_success(self, scene, relations):
        return bool(np.asarray(relations)[1, 0, REL["above"]])


def _scene():
    return make_scene([FIXTURE, ITEM], [(0.2, 0.2, 0.05), (0.02, 0.02, 0.02)],
                      [(0.5, 0.3, 0.05), (0.5, 0.3, 0.12)])  # the item starts at the centre


def _step(low, high):
    return SkeletonStep(PICK_PLACE, 1, 0, low, high)


def _config(**overrides):
    return oracle.OracleConfig(**{"population": 48, "iterations": 4, "elites": 6, **overrides})


def test_oracle_picks_the_skeleton_that_can_reach_the_goal():
    hopeless = (_step((-0.1, 0.05), (0.0, 0.1)),)  # the box never contains TARGET
    reachable = (_step((-0.1, -0.1), (0.1, 0.1)),)
    task = FakeTask((hopeless, reachable))
    simulator = FakeSimulator()
    plan = oracle.plan(jax.random.PRNGKey(0), simulator, _scene(), task, _scene(),
                       config=_config())
    assert plan.skeleton_index == 1
    np.testing.assert_allclose(plan.skills.params[0], TARGET, atol=TOLERANCE)
    assert plan.relations.shape == (1, K_MAX, K_MAX, 9)
    assert plan.relations[-1, 1, 0, REL["above"]] == 1.0
    assert plan.score > np.log(1 / (2 * 48))  # some candidates succeeded
    assert plan.skeleton_scores[0] == pytest.approx(np.log(1 / (2 * 48)))  # none did there
    assert int(plan.skills.skill[0]) == PICK_PLACE and int(plan.skills.support[0]) == 0


def test_every_step_of_every_skeleton_is_one_execute_call():
    two_steps = (_step((-0.05, -0.05), (0.05, 0.05)), _step((-0.05, -0.05), (0.05, 0.05)))
    one_step = (_step((0.2, 0.2), (0.3, 0.3)),)  # hopeless: keeps iterating to the end
    simulator = FakeSimulator()
    oracle.plan(None, simulator, _scene(), FakeTask((two_steps, one_step)), _scene(),
                config=_config(population=16, iterations=2, elites=16))
    # Per iteration: step 0 of both skeletons together, then step 1 of the two-step one.
    assert simulator.calls == [32, 16, 32, 16]


def test_second_step_starts_from_the_first_steps_outcome():
    # Each step alone moves at most 0.05 in x: only the sum of both reaches TARGET.
    steps = (_step((0.0, -0.05), (0.05, 0.0)), _step((0.0, -0.05), (0.05, 0.0)))
    plan = oracle.plan(jax.random.PRNGKey(1), FakeSimulator(), _scene(), FakeTask((steps,)),
                       _scene(), config=_config(population=64, iterations=5, elites=8))
    np.testing.assert_allclose(plan.skills.params.sum(axis=0), TARGET, atol=TOLERANCE)
    assert plan.relations[0, 1, 0, REL["above"]] == 0 and plan.relations[1, 1, 0, REL["above"]]


def test_flagged_candidates_never_count_as_successes():
    steps = (_step((-0.1, -0.1), (0.1, 0.1)),)
    plan = oracle.plan(jax.random.PRNGKey(2), FakeSimulator(tip_target=True), _scene(),
                       FakeTask((steps,)), _scene(), config=_config())
    assert plan.score == pytest.approx(np.log(1 / (2 * 48)))
    assert not plan.relations.any()  # the chosen (best graded) candidate was flagged


def test_oracle_is_reproducible_per_key():
    steps = (_step((-0.1, -0.1), (0.1, 0.1)),)
    task = FakeTask((steps,))
    first, second = (oracle.plan(jax.random.PRNGKey(5), FakeSimulator(), _scene(), task,
                                 _scene(), config=_config()) for _ in range(2))
    np.testing.assert_array_equal(first.skills.params, second.skills.params)


def test_config_is_validated():
    assert oracle.as_oracle_config(None) == oracle.OracleConfig()
    assert oracle.as_oracle_config({"population": 8, "elites": 2}).population == 8
    with pytest.raises(ValueError, match="config.popsize"):
        oracle.as_oracle_config({"popsize": 8})
    with pytest.raises(ValueError, match="exceeds population"):
        oracle.as_oracle_config({"population": 4, "elites": 8})
    with pytest.raises(ValueError, match="config.iterations"):
        oracle.as_oracle_config({"iterations": 0})
    with pytest.raises(ValueError, match="goal"):
        oracle.plan(None, FakeSimulator(), _scene(), FakeTask(((_step((0, 0), (0, 0)),),)),
                    _scene(), goal=Goal(((REL["above"], 5, 0),)))


def _replay(simulator, scene, skills):
    for t in range(skills.skill.shape[0]):
        batch = [type(x)(*(np.asarray(f)[None] for f in x)) for x in (scene, take_row(skills, t))]
        outcome = simulator.execute(*batch, seed=0)
        scene, relations = take_row(outcome.post, 0), outcome.relations_post[0]
    return scene, relations


@pytest.mark.parametrize("name", ("tabletop", "transport"))
def test_oracle_solves_an_ood_scene_in_mujoco(name):
    from isaac_bridge.mujoco_backend import MujocoSimulator

    task = get_task(name)
    scene = task.sample_scene(np.random.default_rng(3), 3, "ood")
    config = oracle.OracleConfig(population=8, iterations=2, elites=2)
    with MujocoSimulator(num_workers=1) as simulator:
        plan = oracle.plan(jax.random.PRNGKey(0), simulator, scene, task, scene, config=config)
        assert plan.score > np.log(1 / (2 * config.population))
        assert isinstance(plan.skills, Skill)
        final, relations = _replay(simulator, scene, plan.skills)
    # The plan succeeds when executed again, and the relations it reports are the simulated ones.
    assert task.is_success(final, relations)
    np.testing.assert_array_equal(plan.relations[-1], relations)
