import json
import os

import numpy as np
import pytest
from conftest import TINY_NUM_POINTS as NUM_POINTS

from experiments import evaluate
from experiments.configs import evaluate as evaluate_config
from f2p import agent, tasks
from f2p.io import failures
from f2p.io.pretrained import PARAMS_FILE
from f2p.planner import observe_scene
from f2p.scene import REL
from f2p.tasks import Goal


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
    config.policies = "stop,original"
    config.oracle_splits = ""
    results = evaluate.run(config, str(tmp_path))
    for name in ("results.json", "results.md", "success.png"):
        assert os.path.getsize(tmp_path / name) > 0
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["config"]["num_episodes"] == 2 and saved["num_points"] == NUM_POINTS
    # 2 tasks x 2 splits x 2 episodes, each under 2 policies.
    assert len(saved["records"]) == 16 and len(saved["rows"]) == 8
    assert len(os.listdir(tmp_path / "episodes")) == 8
    for row in results["rows"]:
        assert row["episodes"] == 2
        assert row["ci_low"] <= row["success_rate"] <= row["ci_high"]
        assert row["detected_among_failed"] <= row["failed"]
    detected = [r for r in results["records"] if r["detected"]]
    assert detected, "the untrained model's predictions should be caught failing"
    for record in results["records"]:
        if record["success"]:
            assert record["unmet_goal"] == []
        if not record["detected"]:
            assert record["failure_file"] is None
            assert record["steps_executed"] == len(record["plan"]["skills"])
            continue
        if record["policy"] == "stop":
            assert record["steps_executed"] == record["detection_step"] + 1  # stopped there
        else:  # original: the whole plan, whatever was detected
            assert record["steps_executed"] == len(record["plan"]["skills"])
        failure = failures.load_failure(str(tmp_path / "failures" / record["failure_file"]))
        assert failure.step == record["detection_step"] and failure.task == record["task"]
        assert failure.seeds["world_seed"] == record["world_seed"]
        assert failure.metadata["split"] == record["split"]
        assert failure.observation_after.points.shape == (8, NUM_POINTS, 3)
        assert failure.plan.skill.shape == (len(record["plan"]["skills"]),)
        # The stored record reproduces the detection.
        check = agent.detect_failure(failure.predicted_relations, failure.observed_relations,
                                     failure.goal, failure.observation_after.mask,
                                     failure.detection_threshold)
        assert check.failed


def test_a_stopped_run_resumes_from_its_episode_files(tmp_path, tiny_checkpoint):
    config = evaluate_config.get_config("tiny")
    config.checkpoint = tiny_checkpoint[0]
    config.tasks, config.splits, config.oracle_splits = "packing", "train", ""
    first = evaluate.run(config, str(tmp_path))
    episode_file = tmp_path / "episodes" / "packing-n3-train-e000.json"
    stored = json.loads(episode_file.read_text())
    stored[0]["success"] = not stored[0]["success"]  # a marker: resumed runs read the file
    episode_file.write_text(json.dumps(stored))
    second = evaluate.run(config, str(tmp_path))
    assert second["records"][0]["success"] == stored[0]["success"]
    assert second["records"][1:] == first["records"][1:]


def test_the_oracle_plays_the_ood_episodes_with_the_whole_plan(tmp_path, tiny_checkpoint):
    config = evaluate_config.get_config("tiny")
    config.checkpoint = tiny_checkpoint[0]
    config.tasks, config.splits, config.num_episodes = "transport", "train,ood", 1
    results = evaluate.run(config, str(tmp_path))
    oracle_records = [r for r in results["records"] if r["planner"] == "oracle"]
    assert [(r["split"], r["policy"]) for r in oracle_records] == [("ood", "original")]
    record = oracle_records[0]
    assert record["steps_executed"] == len(record["plan"]["skills"])
    assert {(r["planner"], r["split"]) for r in results["rows"]} == {
        ("model", "train"), ("model", "ood"), ("oracle", "ood")}


def _record(success, detected, false_alarm=None, mismatch_step=None, policy="stop", error=None):
    return {"task": "t", "count": 3, "split": "ood", "planner": "model", "policy": policy,
            "success": success, "detected": detected, "false_alarm": false_alarm,
            "first_true_mismatch_step": mismatch_step, "error": error, "plan_seconds": 1.0,
            "plan": {"goal_probability": 0.5}, "recoveries": [], "unmet_goal":
            [] if success else ["inside(3, 1)"]}


def test_summarise_counts_what_the_records_say():
    records = [_record(True, False), _record(True, True, True, None),
               _record(False, True, False, 0), _record(False, False, None, 1),
               _record(False, False, None, None, error="diverged"),
               _record(True, False, policy="original")]
    rows = evaluate.summarise(records)
    assert [(r["policy"], r["episodes"]) for r in rows] == [("stop", 5), ("original", 1)]
    row = rows[0]
    assert (row["successes"], row["failed"], row["detections"]) == (2, 3, 2)
    assert row["detected_among_failed"] == 1 and row["detected_in_successful"] == 1
    assert row["false_alarms"] == 1 and row["missed_true_mismatch"] == 1
    assert row["errors"] == 1 and row["unmet_relations"] == "inside 3"
    assert abs(row["detection_rate"] - 1 / 3) < 1e-9 and row["success_rate"] == 0.4
