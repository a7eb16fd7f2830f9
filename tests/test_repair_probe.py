import json
import os
import types

import ml_collections
import numpy as np
import pytest

from experiments import repair_probe
from experiments.configs import repair_probe as probe_config
from f2p.scene import REL, Transition


def test_tiny_probe_end_to_end_and_resume(tmp_path, tiny_checkpoint):
    config = probe_config.get_config("tiny")
    config.checkpoint = tiny_checkpoint[0]
    config.lock()
    results = repair_probe.run(config, str(tmp_path))
    arms = {row["arm"] for row in results["rows"]}
    assert arms == {"base model", "relation_features=0,replay=0.0,lr=0.0003",
                    "relation_features=1,replay=0.5,lr=0.001,carry_gate=1",
                    "relation_features=1,replay=0.5,lr=0.001,carry_gate=held"}
    for row in results["rows"]:
        assert row["replay_loss"] >= 0
        assert (row["arm"] == "base model") != ("repair_displacement" in row)
    assert "| tabletop |" in (tmp_path / "results.md").read_text()
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["environment"]["versions"]["jax"]
    stamps = {p: os.path.getmtime(tmp_path / "units" / p) for p in os.listdir(tmp_path / "units")}
    again = repair_probe.run(config, str(tmp_path))
    assert json.dumps(again["rows"], sort_keys=True) == json.dumps(results["rows"], sort_keys=True)
    assert stamps == {p: os.path.getmtime(tmp_path / "units" / p) for p in stamps}


@pytest.mark.parametrize("spec, message", [
    ("", "empty"), ("1:0.5", "relation_features:replay:lr"), ("2:0.5:0.001", "0 or 1"),
    ("1:1.0:0.001", r"\[0, 1\)"), ("1:0.5:x", "relation_features:replay:lr"),
    ("1:0.5:0.001:3", "carry gate 0, 1 or 2"), ("0:0.5:0.001:1", "needs relation_features 1"),
    ("0:0.5:0.001:2", "needs relation_features 1"), ("1:0.5:0.001:1:1", "carry gate 0, 1 or 2")])
def test_bad_arms_are_refused(spec, message):
    with pytest.raises(ValueError, match="config.arms.*" + message):
        repair_probe.parse_arms(spec)


def test_arm_names_and_parsing():
    arms = repair_probe.parse_arms("0:0.0:0.0003, 1:0.5:0.001")
    assert arms == [repair_probe.Arm(False, 0.0, 3e-4), repair_probe.Arm(True, 0.5, 1e-3)]
    assert arms[1].name == "relation_features=1,replay=0.5,lr=0.001"
    gated = repair_probe.parse_arms("1:0.5:0.001:1")[0]
    assert gated == repair_probe.Arm(True, 0.5, 1e-3, 1)
    assert gated.name == "relation_features=1,replay=0.5,lr=0.001,carry_gate=1"
    held = repair_probe.parse_arms("1:0.5:0.001:2")[0]
    assert held.name == "relation_features=1,replay=0.5,lr=0.001,carry_gate=held"


class _FixedDisplacement:
    """A stand-in model for the ratio functions: predicts the displacement it was given."""

    def __init__(self, displacement):
        self.config = ml_collections.ConfigDict({"use_half_extents": False})
        self.displacement = np.asarray(displacement, np.float32)

    def apply(self, params, points, mask, kind, skill, half_extents):
        return types.SimpleNamespace(displacement=self.displacement)


def _lift_row(moved, holder):
    """One 3-object row: slot `moved` (inside slot `holder`) moves by (0.2, 0, 0)."""
    relations = np.zeros((1, 3, 3, len(REL)), bool)
    relations[0, moved, holder, REL["inside"]] = True
    pos_t = np.zeros((1, 3, 3), np.float32)
    pos_t1 = pos_t.copy()
    pos_t1[0, moved, 0] = 0.2
    return Transition(
        points_t=np.zeros((1, 3, 4, 3), np.float32), mask=np.ones((1, 3), bool),
        kind=np.zeros((1, 3), np.int32), half_extents=np.zeros((1, 3, 3), np.float32),
        skill=np.zeros(1, np.int32), obj=np.array([moved]), support=np.array([0]),
        params=np.zeros((1, 2), np.float32), relations_t=relations, relations_t1=relations,
        pos_t=pos_t, pos_t1=pos_t1, yaw_t=np.zeros((1, 3), np.float32),
        yaw_t1=np.zeros((1, 3), np.float32))


def test_container_and_contents_ratios_read_the_right_objects():
    data = _lift_row(moved=2, holder=1)  # item 2 lifted out of container 1
    predicted = np.zeros((1, 3, 3), np.float32)
    predicted[0, 2, 0] = 0.2
    predicted[0, 1, 0] = 0.05  # the container dragged along by a quarter of the item's move
    ratios = repair_probe.container_ratio(_FixedDisplacement(predicted), None, data)
    np.testing.assert_allclose(ratios, [0.25], atol=1e-6)
    assert repair_probe.contents_ratio(_FixedDisplacement(predicted), None, data).size == 0
    carried = _lift_row(moved=1, holder=2)._replace(relations_t=data.relations_t)
    carried.pos_t1[0, 2, 0] = 0.2  # container 1 moves, its content 2 rides along fully
    carried.pos_t1[0, 1, 0] = 0.2
    both = np.zeros((1, 3, 3), np.float32)
    both[0, 1, 0], both[0, 2, 0] = 0.2, 0.1
    np.testing.assert_allclose(
        repair_probe.contents_ratio(_FixedDisplacement(both), None, carried), [0.5], atol=1e-6)
