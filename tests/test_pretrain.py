import json
import os
import shutil

import numpy as np
import pytest

from experiments import pretrain
from experiments.configs import pretrain as pretrain_config
from f2p import tasks
from f2p.io import checkpoint, dataset, pretrained
from f2p.scene import K_MAX, NUM_RELATIONS, Transition, stack_rows, transition_skill


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("pretrain"))
    config = pretrain_config.get_config("tiny")
    config.export_dir = os.path.join(workdir, "export")
    results = pretrain.run(config, workdir, command="pytest tiny")
    return config, workdir, results


# The checks of the tiny run are one test, so that the run is made once even when pytest-xdist
# spreads a module's tests over its workers.
def test_tiny_run_reports_exports_and_resumes(tiny_run):
    _check_tiny_run_writes_results_tables_figure_and_checkpoints(tiny_run)
    _check_export_reloads_to_the_same_predictions(tiny_run)
    _check_rerun_reuses_the_data_and_resumes_the_training(tiny_run)  # last: it reruns


def _check_tiny_run_writes_results_tables_figure_and_checkpoints(tiny_run):
    config, workdir, results = tiny_run
    saved = json.load(open(os.path.join(workdir, "results.json")))
    assert saved["environment"]["versions"]["jax"] == "0.10.1"
    assert saved["seeds"] == {"train": 0, "data_train": 0, "data_eval": 2}
    assert saved["training"]["steps"] == config.train.num_steps
    assert saved["training"]["train_rows"] == sum(
        saved["data"][name]["train"]["kept"] for name in tasks.task_names())
    for name in tasks.task_names():
        for role in pretrain.ROLES:
            summary = saved["data"][name][role]
            assert summary["kept"] > 0
            assert summary["kept"] + summary["dropped"] == summary["attempted"]
        for split in ("id", "ood"):
            metrics = saved["metrics"][name][split]
            assert metrics["rows"] == saved["data"][name][split]["kept"]
            for key in ("f1_t", "f1_t1", "copy_f1_t1"):
                assert 0.0 <= metrics[key]["f1/macro"] <= 1.0
            assert set(metrics["key_f1_t1"]) == {"inside", "above", "contact"}
        # Training rows never hold the situations the OOD sampler is built around.
        assert saved["metrics"][name]["id"]["ood_situation_rows"] == 0
    assert saved["metrics"]["tabletop"]["ood"]["ood_situation_rows"] > 0
    table = open(os.path.join(workdir, "results.md")).read()
    assert "| tabletop | ood |" in table and "| packing | id | inside |" in table
    with open(os.path.join(workdir, pretrain.FIGURE), "rb") as file:
        assert file.read(8) == b"\x89PNG\r\n\x1a\n"
    assert checkpoint.latest_step(os.path.join(workdir, "checkpoints")) == config.train.num_steps


def _check_export_reloads_to_the_same_predictions(tiny_run):
    config, workdir, results = tiny_run
    readme = open(os.path.join(config.export_dir, "README.md")).read()
    assert "pytest tiny" in readme and "| transport | ood |" in readme
    model, params, loaded = pretrained.load_base_model(config.export_dir)
    assert loaded.model.to_dict() == config.model.to_dict()
    data = dataset.load_dataset(os.path.join(workdir, results["data"]["tabletop"]["ood"][
        "directory"]))
    logits_t, logits_t1 = pretrain.predict_logits(model, params, data, config.eval.batch_size)
    again = pretrain.measure_dataset(tasks.get_task("tabletop"), data, logits_t, logits_t1,
                                     ["inside", "above", "contact"])
    assert again["f1_t1"] == results["metrics"]["tabletop"]["ood"]["f1_t1"]


def _check_rerun_reuses_the_data_and_resumes_the_training(tiny_run):
    config, workdir, results = tiny_run
    shard = os.path.join(workdir, results["data"]["packing"]["train"]["directory"],
                         "shard-00000.npz")
    written = os.path.getmtime(shard)
    again = pretrain.run(config, workdir)
    assert os.path.getmtime(shard) == written
    assert again["training"]["resumed_from_step"] == config.train.num_steps
    assert again["training"]["steps_this_run"] == 0
    assert again["metrics"]["packing"]["id"]["f1_t1"] == results["metrics"]["packing"]["id"][
        "f1_t1"]


def test_dataset_directories_follow_the_generation_settings(tmp_path):
    config = pretrain_config.get_config("tiny")
    settings = pretrain.generation_config(config, "id")
    same = pretrain.dataset_directory(str(tmp_path), "packing", "id", settings)
    assert same == pretrain.dataset_directory(str(tmp_path), "packing", "id",
                                              pretrain.generation_config(config, "id"))
    config.data.num_eval += 1
    assert same != pretrain.dataset_directory(str(tmp_path), "packing", "id",
                                              pretrain.generation_config(config, "id"))
    assert pretrain.generation_config(config, "ood").seed == config.data.eval_seed
    config.data.eval_seed = config.data.train_seed
    with pytest.raises(ValueError, match="eval_seed"):
        pretrain.generation_config(config, "id")
    with pytest.raises(ValueError, match="role"):
        pretrain.generation_config(pretrain_config.get_config("tiny"), "test")


def test_counts_of_hand_built_predictions():
    labels = np.zeros((1, 2, 2, NUM_RELATIONS), bool)
    predicted = np.zeros_like(labels)
    labels[0, 0, 1, 0] = labels[0, 1, 0, 1] = True  # two positives of relations 0 and 1
    predicted[0, 0, 1, 0] = True  # one hit
    predicted[0, 1, 0, 2] = True  # one false positive
    pairs = np.array([[[False, True], [True, False]]])
    result = pretrain.counts(predicted, labels, pairs)
    np.testing.assert_array_equal(result[:, :3], [[1, 0, 0], [0, 0, 1], [0, 1, 0]])
    # Entries outside `pairs` are not counted at all.
    result = pretrain.counts(predicted, labels, pairs & np.array([[[False, True], [False,
                                                                                  False]]]))
    assert result[:, 1:3].sum() == 0


def _executed_task_scenes(num_points: int) -> Transition:
    """One labelled training transition per task (true relations and observed points at t)."""
    from isaac_bridge.labelling import RenderSettings, label_batch
    from isaac_bridge.mujoco_backend import MujocoSimulator

    rng = np.random.default_rng(0)
    scenes, skills = [], []
    for name in tasks.task_names():
        task = tasks.get_task(name)
        scene = task.sample_scene(rng, 3, "train")
        scenes.append(scene)
        skills.append(task.sample_skill(rng, scene, "train"))
    with MujocoSimulator(num_workers=1) as simulator:
        transitions, _, kept = label_batch(simulator, stack_rows(scenes), stack_rows(skills), 0,
                                           RenderSettings(num_points=num_points))
    assert kept.all()
    return transitions


def test_committed_base_checkpoint_loads_and_reads_true_relations():
    model, params, config = pretrained.load_base_model()
    assert config.data.tasks == "tabletop,transport,packing"
    data = _executed_task_scenes(config.data.num_points)
    output = model.apply(params, data.points_t, data.mask, data.kind, transition_skill(data),
                         data.half_extents)
    logits = np.asarray(output.relation_logits)
    assert logits.shape == (3, K_MAX, K_MAX, NUM_RELATIONS)
    valid = data.mask[:, :, None] & data.mask[:, None, :] & ~np.eye(K_MAX, dtype=bool)
    assert np.isfinite(logits[valid]).all()
    assert np.isfinite(np.asarray(output.next_relation_logits)[valid]).all()
    # A trained model reads the current relations of training scenes (chance is about 0.5).
    agreement = ((logits > 0) == data.relations_t)[valid].mean()
    assert agreement > 0.95


def test_missing_or_incompatible_checkpoint_raises_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="experiments.pretrain_main"):
        pretrained.load_base_model(str(tmp_path / "nowhere"))
    copy = tmp_path / "copy"
    shutil.copytree(pretrained._resolve(pretrained.BASE_PATH), copy)
    payload = json.loads((copy / pretrained.CONFIG_FILE).read_text())
    payload["config"]["model"]["width"] = 2 * payload["config"]["model"]["width"]
    (copy / pretrained.CONFIG_FILE).write_text(json.dumps(payload))
    with pytest.raises(ValueError, match="does not fit the current model"):
        pretrained.load_base_model(str(copy))
    del payload["config"]["model"]["num_anchors"]
    (copy / pretrained.CONFIG_FILE).write_text(json.dumps(payload))
    with pytest.raises(ValueError, match="model config keys differ"):
        pretrained.load_base_model(str(copy))
    payload["version"] = 0
    (copy / pretrained.CONFIG_FILE).write_text(json.dumps(payload))
    with pytest.raises(ValueError, match="export version"):
        pretrained.load_base_model(str(copy))
