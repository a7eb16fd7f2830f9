"""Tests of f2p.fail2progress and f2p.repair on the real MuJoCo backend with a tiny model."""

import json

import jax
import numpy as np
import pytest

from f2p import fail2progress, train
from f2p.generation import GenerationConfig
from f2p.io.failures import Failure, FailureTruth, load_failure, save_failure
from f2p.models import get_config as model_config
from f2p.objectives import ObjectiveConfig
from f2p.repair import RepairConfig, Repairer, repair, repair_policy
from f2p.scene import FIXTURE, ITEM, PICK_PLACE, PUSH, REL, Skill, make_scene, stack_rows
from f2p.tasks import Goal, get_task
from f2p.tasks.layout import loaded_containers
from isaac_bridge.labelling import RenderSettings, label_batch
from isaac_bridge.mujoco_backend import MujocoSimulator
from isaac_bridge.real2sim import fit_scene
from isaac_bridge.real_world import NOMINAL_RANGES, PhysicsRanges, RealWorld

NUM_POINTS = 32
TABLE, BLOCK = 0, 1
BAG, TABLE_B = 1, 0  # the transport task's slots
# A 1 kg block 7 cm from the far edge of the table (x = 0.75): a 10 cm push takes it within
# 10 cm of the edge (`boundary`) at nominal friction; at doubled friction the paddle's force
# limit cannot move it (see test_real_world).
BLOCK_SCENE = make_scene([FIXTURE, ITEM], [[0.35, 0.5, 0.02], [0.054, 0.054, 0.054]],
                         [[0.4, 0.0, -0.02], [0.58, 0.0, 0.054]])
PUSH_BLOCK = Skill(np.int32(PUSH), np.int32(BLOCK), np.int32(-1), np.array([0.1, 0.0], np.float32))
AT_EDGE = Goal(((REL["boundary"], BLOCK, TABLE),))
ROUGH = PhysicsRanges((2.0, 2.0), (1.0, 1.0), (1.0, 1.0))


@pytest.fixture(scope="module")
def sim():
    simulator = MujocoSimulator(num_workers=1)
    yield simulator
    simulator.close()


def record_failure(world: RealWorld, task: str, goal: Goal, skill: Skill, predicted,
                   prior=None) -> Failure:
    """Steps `skill` in the world and records the step as run_episode does.

    The observed relations are the true ones after the step (a perfect relation reader).
    """
    before = world.observe()
    belief = fit_scene(before, world.kind, fixtures=world.fixtures, prior=prior)
    snapshot = world.snapshot()
    scene_before, relations_before = world.true_scene(), world.true_relations()
    after = world.step(skill)
    relations_after = world.true_relations()
    return Failure(
        task=task, goal=goal, detection_threshold=0.5, step=0, plan=stack_rows([skill]),
        skill=skill, predicted_relations=np.asarray(predicted, np.float32),
        observed_relations=relations_after.astype(np.float32),
        observation_before=before._replace(half_extents=belief.half_extents),
        observation_after=after, belief_before=belief, snapshot_before=snapshot,
        seeds={"world_seed": 0}, metadata={},
        truth=FailureTruth(scene_before, relations_before, relations_after))


def pushed_block(ranges: PhysicsRanges, predicted_at_edge: float) -> Failure:
    predicted = np.zeros((8, 8, 9), np.float32)
    predicted[BLOCK, TABLE, REL["boundary"]] = predicted_at_edge
    world = RealWorld(BLOCK_SCENE, ranges, noise_level=0.0, seed=0, num_points=NUM_POINTS)
    return record_failure(world, "tabletop", AT_EDGE, PUSH_BLOCK, predicted)


@pytest.fixture(scope="module")
def carry():
    """The transport OOD failure: the loaded bag carried to table B; the model had predicted
    that its contents stay behind, but they ride along."""
    task = get_task("transport")
    scene = task.sample_scene(np.random.default_rng(0), 3, "ood")
    assert loaded_containers(scene)[BAG]
    skill = Skill(np.int32(PICK_PLACE), np.int32(BAG), np.int32(TABLE_B),
                  np.array([0.0, 0.0], np.float32))
    predicted = np.zeros((8, 8, 9), np.float32)
    predicted[BAG, TABLE_B, REL["above"]] = 0.9
    world = RealWorld(scene, NOMINAL_RANGES, noise_level=0.0, seed=0, num_points=NUM_POINTS)
    return record_failure(world, "transport", task.goal(scene), skill, predicted, prior=scene)


def test_a_reproduced_outcome_is_a_wrong_prediction(sim, carry):
    failure = pushed_block(NOMINAL_RANGES, predicted_at_edge=0.1)
    assert failure.truth.relations_after[BLOCK, TABLE, REL["boundary"]]  # the push got there
    result = fail2progress.classify(failure, sim)
    assert result.label == "wrong_prediction" and result.status == "ok"
    assert result.simulated.tolist() == [True] and result.observed.tolist() == [True]
    assert result.mismatch.tolist() == [True]
    assert fail2progress.true_class(failure, sim) == "wrong_prediction"
    # A correct prediction is no model error, whatever the detector said.
    right = failure._replace(predicted_relations=failure.observed_relations)
    assert fail2progress.true_class(right, sim) == "sim2real"
    # The loaded bag: all three goal triples (bag and both items above table B) replay; the
    # detection is on the two items, predicted to stay behind.
    result = fail2progress.classify(carry, sim)
    assert result.label == "wrong_prediction"
    assert result.simulated.tolist() == [True, True, True] == result.observed.tolist()
    assert result.mismatch.tolist() == [False, True, True]
    assert fail2progress.true_class(carry, sim) == "wrong_prediction"
    # A triple on which prediction and observation agree is not judged, even where the replay
    # disagrees with both (here the bag's, misread alike by model and observation).
    agreeing = carry.predicted_relations.copy()
    agreeing[BAG, TABLE_B, REL["above"]] = 0.1
    misread = carry.observed_relations.copy()
    misread[BAG, TABLE_B, REL["above"]] = 0.1
    result = fail2progress.classify(carry._replace(predicted_relations=agreeing,
                                                   observed_relations=misread), sim)
    assert result.label == "wrong_prediction" and result.mismatch.tolist() == [False, True, True]
    assert result.simulated[0] and not result.observed[0]


def test_an_outcome_the_simulator_does_not_reproduce_is_sim2real(sim, carry):
    # Physics gap: in the rough world the block does not move; the nominal replay moves it.
    failure = pushed_block(ROUGH, predicted_at_edge=0.9)
    assert not failure.truth.relations_after[BLOCK, TABLE, REL["boundary"]]
    result = fail2progress.classify(failure, sim)
    assert result.label == "sim2real" and result.status == "ok"
    assert result.simulated.tolist() == [True] and result.observed.tolist() == [False]
    assert result.mismatch.tolist() == [True]
    assert fail2progress.true_class(failure, sim) == "sim2real"
    # Perception gap: the push worked as predicted, but the relation was misread after it.
    nominal = pushed_block(NOMINAL_RANGES, predicted_at_edge=0.9)
    misread = nominal.observed_relations.copy()
    misread[BLOCK, TABLE, REL["boundary"]] = 0.2
    misread_failure = nominal._replace(observed_relations=misread)
    result = fail2progress.classify(misread_failure, sim)
    assert result.label == "sim2real" and result.mismatch.tolist() == [True]
    assert fail2progress.true_class(misread_failure, sim) == "sim2real"
    # The same on the carry: the bag, rightly predicted on table B, misread as not there.
    misread = carry.observed_relations.copy()
    misread[BAG, TABLE_B, REL["above"]] = 0.0
    result = fail2progress.classify(carry._replace(observed_relations=misread), sim)
    assert result.label == "sim2real" and result.mismatch.tolist() == [True, True, True]
    # A believed scene the simulator flags (the block sunk into the table) is not replayable.
    wrong = pushed_block(NOMINAL_RANGES, predicted_at_edge=0.1)
    assert fail2progress.classify(wrong, sim).label == "wrong_prediction"
    sunk = wrong.belief_before._replace(pos=wrong.belief_before.pos.copy())
    sunk.pos[BLOCK, 2] -= 0.03
    result = fail2progress.classify(wrong._replace(belief_before=sunk), sim)
    assert result.label == "sim2real" and result.status == "interpenetration"


def test_check_failure_names_what_a_repair_cannot_do_without(sim, tmp_path):
    failure = pushed_block(NOMINAL_RANGES, predicted_at_edge=0.1)
    assert fail2progress.check_failure(failure) is failure
    for field in ("observation_before", "observation_after", "belief_before", "skill"):
        with pytest.raises(ValueError, match=f"failure.{field}: missing"):
            fail2progress.check_failure(failure._replace(**{field: None}))
    masked = failure._replace(goal=Goal(((REL["above"], 5, TABLE),)))  # slot 5 is padding
    with pytest.raises(ValueError, match="failure.goal: names slots the believed scene lacks"):
        fail2progress.check_failure(masked)
    with pytest.raises(ValueError, match="failure.goal"):
        fail2progress.classify(masked, sim)
    # On disk: the current layout loads back; an old one is refused, naming its version.
    base = save_failure(str(tmp_path), "block", failure)
    loaded = load_failure(base + ".json")
    np.testing.assert_array_equal(loaded.belief_before.pos, failure.belief_before.pos)
    assert fail2progress.classify(loaded, sim).label == "wrong_prediction"
    with open(base + ".json") as file:
        stored = json.load(file)
    stored["version"] = 1
    with open(base + ".json", "w") as file:
        json.dump(stored, file)
    with pytest.raises(ValueError, match="failure layout version 1; this code reads version 2"):
        load_failure(base)


@pytest.fixture(scope="module")
def repairer(sim):
    """A Repairer of the tiny model, 2 x 2 pairs, recording every labelled batch."""
    config = model_config("tiny")
    state = train.create_train_state(config, 8, NUM_POINTS)
    labelled = []

    def label(scenes, skills, seed):
        transitions, counts = label_batch(sim, scenes, skills, seed,
                                          RenderSettings(num_points=NUM_POINTS))[:2]
        labelled.append(transitions)
        return transitions, counts

    settings = RepairConfig(
        ObjectiveConfig(num_points=NUM_POINTS),
        GenerationConfig(num_states=2, num_actions=2, state_steps=3, action_steps=3),
        finetune_steps=10)
    cameras = lambda scene: np.array([[-1.0, 0.0, 1.0], [-0.5, 0.0, 1.5]])  # noqa: E731
    return Repairer(state.model, state, sim, label, None, cameras, settings), labelled


def _changed(old, new) -> bool:
    return any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(old),
                                                        jax.tree.leaves(new), strict=True))


def _loss(state, params, transitions) -> float:
    return train.evaluate(state.replace(params=params), transitions)["loss"]


def test_repair_fine_tunes_on_labelled_states_near_the_failure(carry, repairer):
    repairer, labelled = repairer
    params = repairer.train_state.params
    result = repair(repairer, "svgd", carry, params, jax.random.PRNGKey(0))
    info = result.info
    assert info["generator"] == "svgd" and info["pairs"] == 4
    assert 1 <= info["labels"] <= 4 and info["labels"] + info["dropped"] == 4
    assert 0.0 <= info["reproduction"] <= 1.0 and info["diversity"] >= 0.0
    assert result.generated["poses"].shape == (2, 8, 3)
    assert result.generated["actions"].shape == (2, 2, 2)
    # What was labelled: the failed skill (the loaded bag onto table B) at the generated
    # actions, from states whose bag is still loaded.
    transitions = labelled[-1]
    assert transitions.skill.shape[0] == info["labels"]
    assert np.all(transitions.skill == PICK_PLACE) and np.all(transitions.obj == BAG)
    assert np.all(transitions.support == TABLE_B)
    actions = result.generated["actions"].reshape(-1, 2)
    assert all(np.any(np.all(np.isclose(actions, row), axis=-1)) for row in transitions.params)
    assert np.all(transitions.relations_t[:, 2:4, BAG, REL["inside"]])
    # New parameters, and a lower loss on the new data than before the fine-tune.
    assert _changed(params, result.params)
    state = repairer.train_state
    assert _loss(state, result.params, transitions) < 0.995 * _loss(state, params, transitions)


def test_random_repair_labels_the_training_distribution(carry, repairer):
    repairer, labelled = repairer
    result = repair(repairer, "random", carry, repairer.train_state.params,
                    jax.random.PRNGKey(1))
    assert result.info["generator"] == "random" and result.info["compile_seconds"] == 0.0
    assert 1 <= result.info["labels"] <= 4 and np.isnan(result.info["diversity"])
    transitions = labelled[-1]
    # Training scenes: the bag starts empty.
    assert not np.any(transitions.relations_t[:, :, BAG, REL["inside"]])
    assert _changed(repairer.train_state.params, result.params)


def test_repair_and_repair_policy_refuse_bad_settings(carry, repairer):
    repairer, _ = repairer
    params = repairer.train_state.params
    with pytest.raises(ValueError, match="generator: unknown name 'nope'"):
        repair(repairer, "nope", carry, params, jax.random.PRNGKey(0))
    small = repairer._replace(config=repairer.config._replace(
        generation=GenerationConfig(num_states=1)))
    with pytest.raises(ValueError, match="generation.num_states: must be >= 2"):
        repair(small, "svgd", carry, params, jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="failure.observation_before: missing"):
        repair(repairer, "svgd", carry._replace(observation_before=None), params,
               jax.random.PRNGKey(0))
    assert callable(repair_policy("svgd", repairer))
    with pytest.raises(ValueError, match="generator: unknown name 'nope'"):
        repair_policy("nope", repairer)
    for rounds in (0, -1):
        with pytest.raises(ValueError, match=f"max_rounds: must be >= 1, got {rounds}"):
            repair_policy("svgd", repairer, max_rounds=rounds)
    with pytest.raises(ValueError, match="repair_classes: 'oops' is not one of"):
        repair_policy("svgd", repairer, repair_classes=("oops",))
