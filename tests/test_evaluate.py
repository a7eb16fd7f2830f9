import json
import os

import jax
import ml_collections
import numpy as np
import pytest

from experiments import evaluate
from experiments.configs import evaluate as evaluate_config
from f2p import agent, tasks
from f2p.io import failures
from f2p.io.pretrained import PARAMS_FILE, export_params
from f2p.models import SkillEffectModel
from f2p.models import get_config as model_config
from f2p.planner import observe_scene
from f2p.scene import REL, Scene
from f2p.tasks import Goal

NUM_POINTS = 32


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A freshly initialised tiny model exported the way the base model is."""
    config = model_config("tiny")
    config.data = ml_collections.ConfigDict({"num_points": NUM_POINTS})
    model = SkillEffectModel(config.model)
    params = model.init(jax.random.PRNGKey(0), 8, NUM_POINTS)
    directory = str(tmp_path_factory.mktemp("checkpoint"))
    export_params(directory, params, config)
    return directory, model, params


def _relations(k=4):
    return np.zeros((k, k, 9), np.float32)


GOAL = Goal(must_hold=((REL["inside"], 3, 1), (REL["above"], 1, 0)),
            must_not_hold=((REL["front"], 2, 1),))
MASK = np.array([True, True, True, True])


def test_detect_failure_compares_only_goal_triples():
    predicted = _relations()
    predicted[3, 1, REL["inside"]] = 0.9
    predicted[1, 0, REL["above"]] = 0.8
    observed = predicted.copy()
    observed[2, 3, REL["left"]] = 1.0  # a wrong guess about a pair the goal does not name
    check = agent.detect_failure(predicted, observed, GOAL, MASK)
    assert not check.failed and not check.mismatch.any()
    observed[3, 1, REL["inside"]] = 0.3  # the item did not end up in the cup
    check = agent.detect_failure(predicted, observed, GOAL, MASK)
    assert check.failed
    assert check.mismatch.tolist() == [True, False, False]
    assert check.describe() == ["inside(3, 1): predicted 1, observed 0"]
    # A forbidden relation observed where none was predicted is a failure too.
    observed = predicted.copy()
    observed[2, 1, REL["front"]] = 0.7
    check = agent.detect_failure(predicted, observed.astype(bool), GOAL, MASK)
    assert check.failed and check.mismatch.tolist() == [False, False, True]
    truth = np.zeros((4, 4, 9), bool)
    rows = agent.triples_table(check, truth)
    assert rows[2] == {"relation": "front", "i": 2, "j": 1, "predicted": False,
                       "observed": True, "mismatch": True, "true": False}


def test_detect_failure_threshold_and_bad_input():
    predicted, observed = _relations(), _relations()
    predicted[3, 1, REL["inside"]] = 0.65
    observed[3, 1, REL["inside"]] = 0.55
    assert not agent.detect_failure(predicted, observed, GOAL, MASK).failed
    assert agent.detect_failure(predicted, observed, GOAL, MASK, threshold=0.6).failed
    with pytest.raises(ValueError, match="observed: shape"):
        agent.detect_failure(predicted, observed[:3, :3], GOAL, MASK)
    with pytest.raises(ValueError, match="threshold"):
        agent.detect_failure(predicted, observed, GOAL, MASK, threshold=1.0)
    with pytest.raises(ValueError, match="masked out"):
        agent.detect_failure(predicted, observed, GOAL, np.array([True, True, True, False]))


def test_a_goal_naming_missing_objects_is_a_clear_error():
    task = tasks.get_task("tabletop")
    scene = task.sample_scene(np.random.default_rng(0), 3, "train")
    mask = np.asarray(scene.mask).copy()
    assert evaluate.checked_goal(task, scene, mask, "here") == task.goal(scene)
    mask[3] = False  # the item in slot 3 was never seen
    with pytest.raises(ValueError, match="here: the tabletop goal names objects the scene "
                                         "does not have"):
        evaluate.checked_goal(task, scene, mask, "here")


def test_read_relations_gives_probabilities(tiny_checkpoint):
    _, model, params = tiny_checkpoint
    scene = tasks.get_task("transport").sample_scene(np.random.default_rng(1), 3, "train")
    relations = agent.read_relations(model, params, observe_scene(scene, NUM_POINTS))
    assert relations.shape == (8, 8, 9)
    assert np.all((relations >= 0) & (relations <= 1))
    assert np.all(relations[~np.asarray(scene.mask)] < 1e-6)  # padded slots relate to nothing


def test_episode_seeds_are_fixed_per_cell():
    config = evaluate_config.get_config("tiny")
    config.tasks = "packing"
    alone = evaluate.episode_specs(config)
    config.tasks = "tabletop,packing"
    both = evaluate.episode_specs(config)
    assert len(alone) == 4 and len(both) == 8
    assert both[4:] == alone  # adding a task leaves the other tasks' episodes unchanged
    assert len({spec.scene_seed for spec in both}) == 8


def test_configuration_errors(tmp_path, tiny_checkpoint):
    config = evaluate_config.get_config("tiny")
    config.checkpoint = tiny_checkpoint[0]
    config.tasks = "tabletop,juggling"
    with pytest.raises(ValueError, match="config.tasks: 'juggling' is not one of"):
        evaluate.run(config, str(tmp_path))
    config.tasks = "tabletop"
    config.object_counts = "4"
    with pytest.raises(ValueError, match="config.object_counts: 4"):
        evaluate.run(config, str(tmp_path))
    config.object_counts = "3"
    config.belief = "oracle"
    with pytest.raises(ValueError, match="config.belief"):
        evaluate.run(config, str(tmp_path))
    config.belief = "real2sim"
    config.checkpoint = ""
    with pytest.raises(ValueError, match="config.checkpoint: empty"):
        evaluate.run(config, str(tmp_path))
    config.checkpoint = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no exported checkpoint"):
        evaluate.run(config, str(tmp_path))


def test_an_incompatible_checkpoint_is_refused(tmp_path, tiny_checkpoint):
    broken = tmp_path / "broken"
    broken.mkdir()
    source = tiny_checkpoint[0]
    for name in os.listdir(source):
        (broken / name).write_bytes((open(os.path.join(source, name), "rb")).read())
    with np.load(broken / PARAMS_FILE) as stored:
        arrays = {key: stored[key] for key in stored.files}
    first = sorted(arrays)[0]
    arrays[first] = np.zeros(arrays[first].shape + (2,), np.float32)
    np.savez(broken / PARAMS_FILE, **arrays)
    config = evaluate_config.get_config("tiny")
    config.checkpoint = str(broken)
    with pytest.raises(ValueError, match="does not fit the current model"):
        evaluate.run(config, str(tmp_path / "work"))


def test_tiny_evaluation_end_to_end(tmp_path, tiny_checkpoint):
    config = evaluate_config.get_config("tiny")
    config.checkpoint = tiny_checkpoint[0]
    # Two tasks keep the test fast (every skeleton length and goal size compiles once); the
    # random model's tabletop plans are always caught failing, which exercises the saving.
    config.tasks = "tabletop,transport"
    results = evaluate.run(config, str(tmp_path))
    for name in ("results.json", "results.md", "success.png"):
        assert os.path.getsize(tmp_path / name) > 0
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["config"]["num_episodes"] == 2 and saved["num_points"] == NUM_POINTS
    assert len(saved["records"]) == 8 and len(saved["rows"]) == 4
    for row in results["rows"]:
        assert row["episodes"] == 2
        assert row["ci_low"] <= row["success_rate"] <= row["ci_high"]
        assert row["detected_among_failed"] <= row["failed"]
    detected = [r for r in results["records"] if r["detected"]]
    assert detected, "the untrained model's predictions should be caught failing"
    for record in results["records"]:
        task = tasks.get_task(record["task"])
        if record["success"]:
            assert record["unmet_goal"] == []
        if not record["detected"]:
            assert record["failure_file"] is None
            assert record["steps_executed"] == len(record["plan"]["skills"])
            continue
        assert record["steps_executed"] == record["detection_step"] + 1  # stopped there
        arrays, metadata = failures.load_failure(
            str(tmp_path / "failures" / (record["failure_file"] + ".npz")))
        assert metadata["step"] == record["detection_step"]
        assert metadata["world_seed"] == record["world_seed"]
        assert metadata["task"] == record["task"] and metadata["split"] == record["split"]
        steps = arrays["skill"].shape[0]
        assert arrays["points"].shape == (8, NUM_POINTS, 3)
        assert arrays["points_before"].shape == (8, NUM_POINTS, 3)
        assert arrays["predicted_relations"].shape == (steps, 8, 8, 9)
        # The stored arrays reproduce the detection.
        belief = Scene(arrays["kind"], arrays["half_extents"], arrays["belief_pos"],
                       arrays["belief_yaw"], arrays["mask"])
        check = agent.detect_failure(arrays["predicted_relations"][metadata["step"]],
                                     arrays["observed_relations"], task.goal(belief),
                                     arrays["mask"])
        assert check.failed and check.describe() == metadata["mismatches"]
