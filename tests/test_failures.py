"""Tests of f2p.io.failures: the on-disk layout of detected failures."""

import json
import os

import numpy as np
import pytest

from f2p.io import failures


def test_save_and_load_round_trip(tmp_path):
    arrays = {"points": np.arange(24, dtype=np.float32).reshape(2, 4, 3),
              "mask": np.array([True, False])}
    base = failures.save_failure(str(tmp_path), "tabletop-e3", arrays,
                                 {"task": "tabletop", "world_seed": 7})
    assert base == os.path.join(str(tmp_path), "tabletop-e3")
    assert sorted(os.listdir(tmp_path)) == ["tabletop-e3.json", "tabletop-e3.npz"]
    for path in (base, base + ".npz", base + ".json"):
        loaded, metadata = failures.load_failure(path)
        assert metadata == {"version": failures.FAILURE_VERSION, "task": "tabletop",
                            "world_seed": 7}
        assert loaded.keys() == arrays.keys()
        for key, value in arrays.items():
            np.testing.assert_array_equal(loaded[key], value)
            assert loaded[key].dtype == value.dtype


def test_other_versions_and_missing_files_are_refused(tmp_path):
    base = failures.save_failure(str(tmp_path), "f", {"x": np.zeros(2)}, {})
    with open(base + ".json", "w") as file:
        json.dump({"version": failures.FAILURE_VERSION + 1}, file)
    with pytest.raises(ValueError, match="failure version"):
        failures.load_failure(base)
    with pytest.raises(FileNotFoundError):
        failures.load_failure(str(tmp_path / "missing"))
    os.remove(base + ".npz")
    with open(base + ".json", "w") as file:
        json.dump({"version": failures.FAILURE_VERSION}, file)
    with pytest.raises(FileNotFoundError):
        failures.load_failure(base)
