import json
import os

import numpy as np
import pytest

from f2p.io import dataset
from f2p.scene import K_MAX, NUM_RELATIONS, Transition, take_row

POINTS = 16


def random_transitions(size, seed=0):
    rng = np.random.default_rng(seed)
    return Transition(
        points_t=rng.normal(size=(size, K_MAX, POINTS, 3)).astype(np.float32),
        mask=rng.random((size, K_MAX)) < 0.8,
        kind=rng.integers(0, 3, (size, K_MAX)).astype(np.int32),
        half_extents=rng.uniform(0.01, 0.1, (size, K_MAX, 3)).astype(np.float32),
        skill=rng.integers(0, 2, size).astype(np.int32),
        obj=rng.integers(1, K_MAX, size).astype(np.int32),
        support=rng.integers(-1, K_MAX, size).astype(np.int32),
        params=rng.normal(size=(size, 2)).astype(np.float32),
        relations_t=rng.random((size, K_MAX, K_MAX, NUM_RELATIONS)) < 0.3,
        relations_t1=rng.random((size, K_MAX, K_MAX, NUM_RELATIONS)) < 0.3,
        pos_t=rng.normal(size=(size, K_MAX, 3)).astype(np.float32),
        pos_t1=rng.normal(size=(size, K_MAX, 3)).astype(np.float32),
        yaw_t=rng.normal(size=(size, K_MAX)).astype(np.float32),
        yaw_t1=rng.normal(size=(size, K_MAX)).astype(np.float32),
    )


def assert_same(a, b):
    for field, x, y in zip(Transition._fields, a, b, strict=True):
        assert np.asarray(x).dtype == np.asarray(y).dtype, field
        np.testing.assert_array_equal(x, y, err_msg=field)


def test_round_trip_keeps_every_field_and_dtype(tmp_path):
    data = random_transitions(10)
    metadata = dataset.save_dataset(str(tmp_path), data, {"task": "tabletop"}, seed=7, shard_size=4)
    assert metadata["num_shards"] == 3 and metadata["complete"]
    assert [metadata["shards"][k]["size"] for k in ("0", "1", "2")] == [4, 4, 2]
    assert_same(dataset.load_dataset(str(tmp_path)), data)
    on_disk = json.loads((tmp_path / dataset.METADATA_FILE).read_text())
    assert on_disk["seed"] == 7 and on_disk["config"] == {"task": "tabletop"}
    assert on_disk["version"] == dataset.DATASET_VERSION


def test_writer_resumes_where_it_stopped(tmp_path):
    data = random_transitions(6)
    parts = [Transition(*(np.asarray(f)[i * 2:(i + 1) * 2] for f in data)) for i in range(3)]
    writer = dataset.DatasetWriter(str(tmp_path), {"n": 6}, seed=1, num_shards=3)
    writer.write_shard(0, parts[0], {"dropped": 1})
    with pytest.raises(ValueError, match="incomplete"):
        dataset.load_dataset(str(tmp_path))
    assert_same(dataset.load_dataset(str(tmp_path), allow_incomplete=True), parts[0])
    with pytest.raises(ValueError, match="not written"):
        writer.finish({})

    resumed = dataset.DatasetWriter(str(tmp_path), {"n": 6}, seed=1, num_shards=3)
    assert resumed.is_done(0) and resumed.pending() == [1, 2]
    for index in resumed.pending():
        resumed.write_shard(index, parts[index], {"dropped": 0})
    metadata = resumed.finish({"transitions": 6})
    assert metadata["shards"]["0"]["dropped"] == 1
    assert_same(dataset.load_dataset(str(tmp_path)), data)


def test_writer_refuses_a_directory_of_another_config_or_seed(tmp_path):
    dataset.DatasetWriter(str(tmp_path), {"n": 6}, seed=1, num_shards=3)
    with pytest.raises(ValueError, match="config differs"):
        dataset.DatasetWriter(str(tmp_path), {"n": 7}, seed=1, num_shards=3)
    with pytest.raises(ValueError, match="seed differs"):
        dataset.DatasetWriter(str(tmp_path), {"n": 6}, seed=2, num_shards=3)


def test_a_crash_while_writing_leaves_no_shard_and_no_temporary(tmp_path, monkeypatch):
    writer = dataset.DatasetWriter(str(tmp_path), {}, seed=0, num_shards=2)
    writer.write_shard(0, random_transitions(2), {})
    before = (tmp_path / dataset.METADATA_FILE).read_text()

    def crash(file, **arrays):
        file.write(b"half a shard")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        writer.write_shard(1, random_transitions(2, seed=1), {})
    assert sorted(os.listdir(tmp_path)) == [dataset.METADATA_FILE, "shard-00000.npz"]
    assert (tmp_path / dataset.METADATA_FILE).read_text() == before
    monkeypatch.undo()
    resumed = dataset.DatasetWriter(str(tmp_path), {}, seed=0, num_shards=2)
    assert resumed.pending() == [1]


def test_a_shard_listed_but_missing_is_rewritten(tmp_path):
    writer = dataset.DatasetWriter(str(tmp_path), {}, seed=0, num_shards=1)
    writer.write_shard(0, random_transitions(2), {})
    os.remove(tmp_path / "shard-00000.npz")
    assert dataset.DatasetWriter(str(tmp_path), {}, seed=0, num_shards=1).pending() == [0]
    with pytest.raises(FileNotFoundError, match="shard file"):
        dataset.load_dataset(str(tmp_path))


def test_clear_errors_for_missing_directory_and_version_mismatch(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        dataset.load_dataset(str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="metadata.json"):
        dataset.load_dataset(str(tmp_path))
    dataset.save_dataset(str(tmp_path), random_transitions(3), {}, seed=0)
    path = tmp_path / dataset.METADATA_FILE
    metadata = json.loads(path.read_text())
    metadata["version"] = dataset.DATASET_VERSION + 1
    path.write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match="version"):
        dataset.load_dataset(str(tmp_path))


def test_malformed_batches_are_rejected(tmp_path):
    data = random_transitions(3)
    with pytest.raises(ValueError, match="batch sizes"):
        dataset.save_dataset(str(tmp_path), data._replace(skill=data.skill[:2]), {}, seed=0)
    with pytest.raises(ValueError, match="transitions.skill"):
        dataset.save_dataset(str(tmp_path), data._replace(skill=np.int32(0)), {}, seed=0)


def test_a_shard_whose_items_were_all_dropped_round_trips(tmp_path):
    # A shard where the simulator kept nothing: zero rows, the trailing shapes and dtypes kept.
    data = random_transitions(3)
    writer = dataset.DatasetWriter(str(tmp_path), {"task": "packing"}, seed=1, num_shards=3)
    writer.write_shard(0, take_row(data, slice(0, 2)), {"kept": 2})
    writer.write_shard(1, take_row(data, slice(2, 2)), {"kept": 0})
    writer.write_shard(2, take_row(data, slice(2, 3)), {"kept": 1})
    writer.finish({})
    assert_same(dataset.load_dataset(str(tmp_path)), data)
    assert dataset.read_metadata(str(tmp_path))["shards"]["1"]["size"] == 0
