import json
import os

import pytest

from experiments import repair_probe
from experiments.configs import repair_probe as probe_config


def test_tiny_probe_end_to_end_and_resume(tmp_path, tiny_checkpoint):
    config = probe_config.get_config("tiny")
    config.checkpoint = tiny_checkpoint[0]
    config.lock()
    results = repair_probe.run(config, str(tmp_path))
    arms = {row["arm"] for row in results["rows"]}
    assert arms == {"base model", "relation_features=0,replay=0.0,lr=0.0003",
                    "relation_features=1,replay=0.5,lr=0.001,carry_gate=1"}
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
    ("1:0.5:0.001:2", "carry gate 0 or 1"), ("0:0.5:0.001:1", "needs relation_features 1"),
    ("1:0.5:0.001:1:1", "carry gate 0 or 1")])
def test_bad_arms_are_refused(spec, message):
    with pytest.raises(ValueError, match="config.arms.*" + message):
        repair_probe.parse_arms(spec)


def test_arm_names_and_parsing():
    arms = repair_probe.parse_arms("0:0.0:0.0003, 1:0.5:0.001")
    assert arms == [repair_probe.Arm(False, 0.0, 3e-4), repair_probe.Arm(True, 0.5, 1e-3)]
    assert arms[1].name == "relation_features=1,replay=0.5,lr=0.001"
    gated = repair_probe.parse_arms("1:0.5:0.001:1")[0]
    assert gated == repair_probe.Arm(True, 0.5, 1e-3, True)
    assert gated.name == "relation_features=1,replay=0.5,lr=0.001,carry_gate=1"
