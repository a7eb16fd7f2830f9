import json
import os

import pytest

from experiments import sweep
from experiments.configs import sweep as sweep_config


def test_tiny_sweep_end_to_end_and_resume(tmp_path, tiny_checkpoint):
    config = sweep_config.get_config("tiny")
    config.checkpoint = tiny_checkpoint[0]
    config.lock()  # as config_flags hands it to the main: no new keys added
    results = sweep.run(config, str(tmp_path))
    (only,) = results["sweeps"]
    assert only["fields"] == ["finetune.steps"]
    assert [row["finetune.steps"] for row in only["rows"]] == [1, 2]
    for row in only["rows"]:
        assert row["method"] == "repair:svgd" and row["failures"] == 1
        assert row["recovery"]["trials"] == 1 and row["retry"]["trials"] == 1
        assert row["future"]["trials"] == 0  # the tiny config plays no fresh episodes
    for point in ("finetune.steps=1", "finetune.steps=2"):
        (unit,) = os.listdir(tmp_path / "points" / point / "units")
        assert unit.endswith("--repair-svgd.json")
    # Both points repair the one collected failure: one collection, shared.
    assert len(os.listdir(tmp_path / "collect")) >= 1
    assert not os.path.exists(tmp_path / "points" / "finetune.steps=1" / "collect")
    for name in ("results.json", "results.md", "sweep_0.png"):
        assert os.path.getsize(tmp_path / name) > 0
    assert "| 2 | tabletop | repair:svgd | 1 |" in (tmp_path / "results.md").read_text()
    units = tmp_path / "points" / "finetune.steps=2" / "units"
    stamps = {p: os.path.getmtime(units / p) for p in os.listdir(units)}
    again = sweep.run(config, str(tmp_path))
    assert (json.dumps(again["sweeps"], sort_keys=True)
            == json.dumps(results["sweeps"], sort_keys=True))
    assert stamps == {p: os.path.getmtime(units / p) for p in stamps}
    config.unlock()
    config.sweeps = ("finetune.steps=1,2,3",)
    config.only_existing = True  # tabulate what is on disk: step 3 is skipped, not run
    partial = sweep.run(config, str(tmp_path))
    assert partial["partial"] == "2 of 3 units on disk (only_existing)"
    assert [row["finetune.steps"] for row in partial["sweeps"][0]["rows"]] == [1, 2]
    assert os.listdir(tmp_path / "points" / "finetune.steps=3" / "units") == []
    assert "**Partial**: 2 of 3 units" in (tmp_path / "results.md").read_text()


def test_default_sweeps_parse_and_the_budget_sweep_is_a_grid_over_generators():
    config = sweep_config.get_config("default")
    config.lock()  # as config_flags hands it to sweep_main: checking a point adds no key
    sweeps = sweep.sweep_points(config)
    assert len(sweeps) == len(sweep_config.DEFAULT_SWEEPS)
    budget = sweeps[-1]
    assert len(budget) == 4 * 5
    pairs = {(dict(p)["generation.num_states"], dict(p)["generation.num_actions"])
             for p in budget}
    assert sorted(n * m for n, m in pairs) == [20, 50, 100, 400]
    assert all(sweep.repair_only(point) for points in sweeps for point in points)
    assert not sweep.repair_only((("noise_level", 0.2),))


@pytest.mark.parametrize("sweeps, message", [
    (("finetune.nope=1,2",), "unknown field 'finetune.nope'"),
    (("finetune.steps=",), "finetune.steps: empty value list"),
    (("finetune.steps=many",), "finetune.steps='many' is not a valid int"),
    (("method=repair:nope",), "config.methods"),
    (("generation.num_states=1",), "generation.num_states"),
    ((), "config.sweeps: empty"),
])
def test_bad_sweeps_are_refused_before_any_work(tmp_path, sweeps, message):
    config = sweep_config.get_config("tiny")
    config.checkpoint = "/nonexistent"  # never read: the sweeps are checked first
    config.sweeps = sweeps
    with pytest.raises(ValueError, match=message):
        sweep.run(config, str(tmp_path))


def _units(points):
    """One scored unit per point, as loop.run_unit writes them (a packing failure)."""
    repair = {"generation_seconds": 0.5, "labelling_seconds": 8.0, "finetune_seconds": 30.0,
              "compile_seconds": 0.0, "labels": 50, "dropped": 0, "reproduction": 0.0,
              "diversity": None, "attempts": 0, "accepted": 0}
    return [{"task": "packing", "method": dict(point)["method"], "failure": "f0",
             "recovery": True, "retry": False, "repaired": True, "same_failure": True,
             "repair": repair, "future": [], "retention": [],
             "recoveries": [{"action": "replace", "classify_seconds": 0.1,
                             "plan_seconds": 0.2}],
             "point": sweep.point_name(point)} for point in points]


def test_a_budget_sweep_is_plotted_against_n_times_m(tmp_path):
    assert sweep.x_axis(["generation.num_states", "generation.num_actions", "method"]) == (
        ("generation.num_states", "generation.num_actions"), "label budget N x M")
    assert sweep.x_axis(["finetune.steps", "method"]) == (("finetune.steps",),
                                                           "finetune.steps")
    points = [(("generation.num_states", n), ("generation.num_actions", m), ("method", name))
              for n, m in ((10, 5), (10, 10)) for name in ("repair:svgd", "repair:random")]
    sweep.write(str(tmp_path), sweep_config.get_config("tiny"), [points], {0: _units(points)})
    assert os.path.getsize(tmp_path / "sweep_0.png") > 0


def test_a_method_sweep_has_one_method_column(tmp_path):
    config = sweep_config.get_config("tiny")
    points = [(("finetune.steps", 1), ("method", name))
              for name in ("repair:svgd", "repair:random")]
    sweep.write(str(tmp_path), config, [points], {0: _units(points)})
    table = (tmp_path / "results.md").read_text()
    assert "| finetune.steps | task | method | failures |" in table
    assert "| 1 | packing | repair:random | 1 | 1.00" in table
