"""Tests of f2p.io.reporting: atomic writes, JSON, tables and Wilson intervals."""

import json
import os

import numpy as np
import pytest

from f2p.io import reporting


@pytest.mark.parametrize("trials", [1, 3, 7, 30, 50, 97, 1000])
def test_wilson_interval_contains_the_rate_for_every_count(trials):
    for successes in range(trials + 1):
        low, high = reporting.wilson_interval(successes, trials)
        rate = successes / trials
        assert 0.0 <= low <= rate <= high <= 1.0, (successes, trials, low, high)
    assert reporting.wilson_interval(trials, trials)[1] == 1.0
    assert reporting.wilson_interval(0, trials)[0] == 0.0


def test_wilson_interval_matches_the_textbook_value():
    # 8 of 10, z = 1.96: (0.4902, 0.9433) (Wilson 1927; Newcombe 1998, table I).
    low, high = reporting.wilson_interval(8, 10)
    np.testing.assert_allclose([low, high], [0.4902, 0.9433], atol=1e-4)
    assert all(np.isnan(reporting.wilson_interval(0, 0)))


def test_atomic_write_leaves_no_partial_file_on_error(tmp_path):
    path = tmp_path / "sub" / "result.json"
    reporting.write_json(str(path), {"rate": np.float32(0.5), "bad": float("nan"),
                                     "array": np.arange(2)})
    assert json.loads(path.read_text()) == {"rate": 0.5, "bad": None, "array": [0, 1]}

    def explode(file):
        file.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        reporting.atomic_write(str(path), explode)
    assert json.loads(path.read_text())["rate"] == 0.5  # the old file is untouched
    assert os.listdir(path.parent) == ["result.json"]  # and no temporary is left


def test_markdown_table_formats_numbers_and_marks_missing_values():
    rows = [{"name": "a", "rate": 0.51234, "n": 3}, {"name": "b", "rate": float("nan")}]
    lines = reporting.markdown_table(rows, ["name", "rate", "n"], {"rate": ".2f"}).splitlines()
    assert lines[0].replace(" ", "") == "|name|rate|n|"
    assert lines[2].replace(" ", "") == "|a|0.51|3|"
    assert lines[3].replace(" ", "") == "|b|-||"


def test_finetune_settings_states_the_options_and_their_defaults():
    text = reporting.finetune_settings(
        {"finetune": {"steps": 200, "replay_fraction": 0.5, "learning_rate": 0.001},
         "relation_features": True, "carry_gate": True})
    assert text == ("Fine-tune: 200 steps, learning rate 0.001, replay fraction 0.5; relation "
                    "inputs of the dynamics on, carry gate on.")
    older = reporting.finetune_settings({"finetune": {"steps": 100, "replay_fraction": 0.0}})
    assert "learning rate 0.0003" in older and older.endswith("dynamics off, carry gate off.")
