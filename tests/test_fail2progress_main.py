import json
import os

import pytest

from experiments import fail2progress
from experiments.configs import fail2progress as fail2progress_config


def test_tiny_fail2progress_end_to_end_and_resume(tmp_path, tiny_checkpoint):
    config = fail2progress_config.get_config("tiny")
    config.checkpoint = tiny_checkpoint[0]
    config.lock()  # as config_flags hands it to the main: no new keys added
    results = fail2progress.run(config, str(tmp_path))
    for name in ("results.json", "results.md", "rates.png"):
        assert os.path.getsize(tmp_path / name) > 0
    saved = json.loads((tmp_path / "results.json").read_text())
    kept = [e for e in saved["collected"]["tabletop"] if e["kept"]]
    assert len(kept) == 1, "the untrained model's tabletop plans should be caught failing"
    methods = {u["method"] for u in saved["units"]}
    assert methods == {"original", "repair:svgd"}
    for unit in results["units"]:
        assert unit["same_failure"], "the unit replays the collected failure"
        assert set(unit) >= {"recovery", "retry", "future", "retention"}
        assert len(unit["future"]) == len(unit["retention"]) == 1
        for episode in unit["future"] + unit["retention"]:  # the plan chosen is on record
            assert 0.0 <= episode["goal_probability"] <= 1.0
            assert 0 <= episode["skeleton"] < len(episode["skeleton_scores"])
        if unit["method"].startswith("repair:"):
            assert {"finetune_seconds", "finetune_compile_seconds"} <= set(unit["repair"])
            assert unit["repaired"]
            info = unit["repair"]
            assert info["pairs"] == 4 and 0 < info["labels"] <= 4
            assert info["labels"] + info["dropped"] == 4
            assert 0.0 <= info["reproduction"] <= 1.0
    assert os.path.exists(tmp_path / "models" / f"{kept[0]['name']}--repair-svgd" / "params.npz")
    assert "generation_tabletop.png" in saved["figures"]
    assert "| tabletop | repair:svgd | 1 |" in (tmp_path / "results.md").read_text()
    # A second run reads every unit back instead of playing it again.
    stamps = {p: os.path.getmtime(tmp_path / "units" / p) for p in os.listdir(tmp_path / "units")}
    again = fail2progress.run(config, str(tmp_path))
    assert json.dumps(again["rows"]) == json.dumps(results["rows"])  # NaN-safe comparison
    assert stamps == {p: os.path.getmtime(tmp_path / "units" / p) for p in stamps}
    # only_existing tabulates what is on disk and plays nothing new (replan is missing).
    config.unlock()
    config.update(only_existing=True, methods="original,replan,repair:svgd")
    partial = fail2progress.run(config, str(tmp_path))
    assert partial["partial"] == "2 of 3 units on disk (only_existing)"
    assert sorted(os.listdir(tmp_path / "units")) == sorted(stamps)
    assert "**Partial:** 2 of 3 units" in (tmp_path / "results.md").read_text()


def test_bad_configuration_is_refused(tmp_path, tiny_checkpoint):
    config = fail2progress_config.get_config("tiny")
    config.checkpoint = tiny_checkpoint[0]
    config.methods = "original,repair:nope"
    with pytest.raises(ValueError, match="config.methods"):
        fail2progress.run(config, str(tmp_path))
    config = fail2progress_config.get_config("tiny")
    config.generation.num_states = 1
    with pytest.raises(ValueError, match="generation.num_states"):
        fail2progress.run(config, str(tmp_path))
    config = fail2progress_config.get_config("tiny")
    config.objective.nope = 1.0
    with pytest.raises(ValueError, match="config.nope"):
        fail2progress.run(config, str(tmp_path))
    with pytest.raises(ValueError, match="config variant"):
        fail2progress_config.get_config("huge")
