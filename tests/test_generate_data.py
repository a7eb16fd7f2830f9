import json
import os

import numpy as np
import pytest

from experiments import generate_data as generate
from experiments.configs import generate_data
from f2p.io import dataset
from f2p.scene import K_MAX, NUM_RELATIONS, REL, take_row
from f2p.tasks import get_task


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("generate_data"))
    config = generate_data.get_config("tiny")
    results = generate.run(config, workdir, render=True)
    return config, workdir, results


def test_tiny_config_writes_every_dataset_and_report(tiny_run):
    config, workdir, results = tiny_run
    for task_name in ("tabletop", "transport", "packing"):
        for split in ("train", "ood"):
            directory = os.path.join(workdir, task_name, split)
            metadata = dataset.read_metadata(directory)
            summary = metadata["summary"]
            assert summary["attempted"] == config.num_transitions
            assert summary["kept"] + summary["dropped"] == summary["attempted"]
            assert sum(summary["status"].values()) == summary["attempted"]
            data = dataset.load_dataset(directory)
            kept = summary["kept"]
            assert kept > 0
            assert data.points_t.shape == (kept, K_MAX, config.num_points, 3)
            assert data.relations_t1.shape == (kept, K_MAX, K_MAX, NUM_RELATIONS)
            # Every row is a real execution: the fixture is slot 0 and is never moved.
            np.testing.assert_allclose(data.pos_t[:, 0], data.pos_t1[:, 0], atol=1e-6)
            moved = np.linalg.norm(data.pos_t1 - data.pos_t, axis=-1).max(axis=-1)
            assert np.any(moved > 0.01)
            task = get_task(task_name)
            flags = [task.measure(take_row(data, index)) for index in range(kept)]
            counted = sum(flag["ood_situation"] for flag in flags)
            assert counted == summary["flags"]["ood_situation"]
            if split == "train":
                assert counted == 0
    assert (results["summaries"]["tabletop"]["ood"]["flags"]["loaded_container_moved"] > 0)
    table = open(os.path.join(workdir, "distribution_shift.md")).read()
    assert "| tabletop | loaded_container_moved |" in table
    assert "| packing | placement_blocked |" in table
    saved = json.load(open(os.path.join(workdir, "results.json")))
    assert saved["summaries"] == results["summaries"]
    assert saved["environment"]["versions"]["jax"] == saved["environment"]["versions"]["jaxlib"]
    assert saved["environment"]["devices"] and saved["dataset_version"] == dataset.DATASET_VERSION
    assert len(saved["figures"]) == 6
    for figure in saved["figures"]:
        with open(os.path.join(workdir, figure), "rb") as file:
            assert file.read(8) == b"\x89PNG\r\n\x1a\n"


def test_loaded_cups_carry_their_contents_in_simulation(tiny_run):
    _, workdir, _ = tiny_run
    data = dataset.load_dataset(os.path.join(workdir, "tabletop", "ood"))
    carried = 0
    for index in range(data.mask.shape[0]):
        obj = int(data.obj[index])
        contents = np.flatnonzero(data.relations_t[index, :, obj, REL["inside"]])
        if contents.size and np.linalg.norm(data.pos_t1[index, obj, :2]
                                            - data.pos_t[index, obj, :2]) > 0.05:
            shift = data.pos_t1[index, contents, :2] - data.pos_t[index, contents, :2]
            carried += bool(np.all(np.linalg.norm(shift, axis=-1) > 0.03))
    assert carried > 0


def test_a_rerun_resumes_and_regenerates_a_lost_shard_identically(tiny_run):
    config, workdir, _ = tiny_run
    config = config.copy_and_resolve_references()
    config.tasks, config.splits = "packing", "ood"
    directory = os.path.join(workdir, "packing", "ood")
    before = dataset.load_dataset(directory)
    first = os.path.join(directory, "shard-00000.npz")
    mtime = os.path.getmtime(first)
    os.remove(os.path.join(directory, "shard-00001.npz"))
    generate.run(config, workdir)
    assert os.path.getmtime(first) == mtime  # the complete shard was not rewritten
    after = dataset.load_dataset(directory)
    for field, a, b in zip(before._fields, before, after, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=field)


def test_a_rerun_with_another_config_is_refused(tiny_run):
    config, workdir, _ = tiny_run
    config = config.copy_and_resolve_references()
    config.tasks, config.splits = "tabletop", "train"
    config.num_points = 16
    with pytest.raises(ValueError, match="config differs"):
        generate.run(config, workdir)


def test_bad_config_values_are_rejected(tmp_path):
    config = generate_data.get_config("tiny")
    config.tasks = "tabletop,stacking"
    with pytest.raises(ValueError, match="config.tasks"):
        generate.run(config, str(tmp_path))
    with pytest.raises(ValueError, match="variant"):
        generate_data.get_config("huge")


def test_experiments_do_not_import_each_other():
    """DESIGN section 2: what two experiments share is library code; a *_main.py imports only
    its own experiment module (and configs), and an experiment only its own parts."""
    import ast
    import pathlib

    folder = pathlib.Path(generate.__file__).parent
    for path in sorted(folder.glob("*.py")):
        own = path.stem.removesuffix("_main")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "experiments":
                names = {alias.name for alias in node.names} - {"configs"}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                    "experiments.") and not node.module.startswith("experiments.configs"):
                names = {node.module.split(".")[1]}
            elif isinstance(node, ast.Import):
                names = {alias.name.split(".")[1] for alias in node.names
                         if alias.name.startswith("experiments.")
                         and not alias.name.startswith("experiments.configs")}
            else:
                continue
            # An experiment may be split into modules named after it (fail2progress_report).
            names -= {name for name in names if name.startswith(own + "_")
                      and name != own + "_main"}
            assert names <= {own} and (own != path.stem or not names), (
                f"{path.name} imports experiments {sorted(names)}")
