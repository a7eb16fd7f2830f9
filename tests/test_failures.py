"""Tests of f2p.io.failures: the typed Failure record on disk."""

import json
import os

import numpy as np
import pytest

from f2p.io import failures
from f2p.scene import FIXTURE, ITEM, PICK_PLACE, REL, Skill, make_scene
from f2p.tasks import Goal
from f2p.world import Observation, WorldSnapshot


def _failure() -> failures.Failure:
    scene = make_scene([FIXTURE, ITEM], [[0.2, 0.2, 0.05], [0.02, 0.02, 0.03]],
                       [[0.5, 0.3, 0.05], [0.5, -0.3, 0.03]], k_max=4)
    plan = Skill(np.array([PICK_PLACE, PICK_PLACE], np.int32), np.array([1, 1], np.int32),
                 np.array([0, 0], np.int32), np.array([[0.0, 0.01], [0.02, 0.0]], np.float32))
    points = np.arange(4 * 5 * 3, dtype=np.float32).reshape(4, 5, 3)
    before = Observation(points, np.array([1, 1, 0, 0], bool), np.array([9, 7, 0, 0], np.int32),
                         np.asarray(scene.kind), np.asarray(scene.half_extents))
    after = Observation(points + 1.0, before.mask, None, before.kind)  # no camera counts
    relations = np.zeros((4, 4, 9), np.float32)
    relations[1, 0, REL["above"]] = 0.9
    snapshot = WorldSnapshot({"state_pos": np.asarray(scene.pos), "relations": relations > 0.5},
                             {"steps": 1, "rng": {"state": 2**100 + 3, "inc": 5}})
    truth = failures.FailureTruth(scene, relations > 0.5, relations < 0.5)
    return failures.Failure(
        task="tabletop", goal=Goal(((REL["above"], 1, 0),), ((REL["inside"], 1, 0),)),
        detection_threshold=0.6, step=1, plan=plan,
        skill=Skill(*(np.asarray(field)[1] for field in plan)),
        predicted_relations=relations, observed_relations=1.0 - relations,
        observation_before=before, observation_after=after, belief_before=scene,
        snapshot_before=snapshot, seeds={"scene_seed": 3, "world_seed": 4},
        metadata={"split": "ood", "count": 1}, truth=truth)


def _assert_equal(a, b):
    if isinstance(a, tuple) and hasattr(a, "_fields"):
        assert type(a) is type(b)
        for x, y in zip(a, b, strict=True):
            _assert_equal(x, y)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _assert_equal(a[key], b[key])
    elif a is None or isinstance(a, (str, int, float)):
        assert a == b
    else:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert np.asarray(a).dtype == np.asarray(b).dtype


def test_save_and_load_round_trip(tmp_path):
    failure = _failure()
    base = failures.save_failure(str(tmp_path), "tabletop-e3", failure)
    assert base == os.path.join(str(tmp_path), "tabletop-e3")
    assert sorted(os.listdir(tmp_path)) == ["tabletop-e3.json", "tabletop-e3.npz"]
    for path in (base, base + ".npz", base + ".json"):
        loaded = failures.load_failure(path)
        _assert_equal(failure, loaded)
    assert loaded.observation_after.num_visible is None
    assert loaded.snapshot_before.metadata["rng"]["state"] == 2**100 + 3  # big ints survive


def test_other_versions_and_missing_files_are_refused(tmp_path):
    base = failures.save_failure(str(tmp_path), "f", _failure())
    for version in (1, failures.FAILURE_VERSION + 1):
        with open(base + ".json", "w") as file:
            json.dump({"version": version}, file)
        with pytest.raises(ValueError, match=f"layout version {version}; this code reads "
                                             f"version {failures.FAILURE_VERSION}"):
            failures.load_failure(base)
    with pytest.raises(FileNotFoundError):
        failures.load_failure(str(tmp_path / "missing"))
    failures.save_failure(str(tmp_path), "f", _failure())
    os.remove(base + ".npz")
    with pytest.raises(FileNotFoundError):
        failures.load_failure(base)
