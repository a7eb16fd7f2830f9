"""Tests of the scaling study: the tiny config end to end, resumed from its rows."""

import json
import os

import pytest

from experiments import scaling
from experiments.configs import scaling as scaling_config


def test_tiny_study_writes_rows_reports_and_resumes(tmp_path, tiny_checkpoint):
    config = scaling_config.get_config("tiny")
    config.checkpoint = tiny_checkpoint[0]
    workdir = str(tmp_path / "study")
    config.lock()  # as config_flags hands it to the main: no new keys added
    results = scaling.run(config, workdir)
    # 1 N x 1 generator x 1 device count (2 forced CPU devices in a worker process).
    assert len(results["rows"]) == 1 and not results["missing"]
    paths = sorted(os.listdir(os.path.join(workdir, "rows")))
    assert paths == ["svgd-n8-d2.json"]
    for row in results["rows"]:
        assert row["finite"] and row["run_seconds"] > 0 and row["compile_seconds"] > 0
        assert row["devices_spanned"] == row["num_devices"]  # the 2-device row is split
        assert row["platform"] == "cpu" and row["forced_host_devices"]
        assert row["num_actions"] == 2 and row["repeats"] == 1
        assert row["per_particle_ms"] == pytest.approx(1e3 * row["run_seconds"] / 8)
    for name in ("results.json", "results.md", "scaling.png"):
        assert os.path.getsize(os.path.join(workdir, name)) > 0
    table = open(os.path.join(workdir, "results.md")).read()
    assert "| svgd | 8 | 2 | 2 |" in table and "forced host devices" in table
    saved = json.load(open(os.path.join(workdir, "results.json")))
    assert saved["environment"]["versions"]["jax"] and len(saved["rows"]) == 1
    # A rerun measures nothing (no worker starts): every row is read back, unchanged.
    stamps = {path: os.path.getmtime(os.path.join(workdir, "rows", path)) for path in paths}
    again = scaling.run(config, workdir)
    assert again["rows"] == results["rows"]
    assert stamps == {path: os.path.getmtime(os.path.join(workdir, "rows", path))
                      for path in paths}
    # A row stored with other settings is not reused; more repeats alone do not matter.
    row = {"generator": "svgd", "num_states": 8, "num_devices": 2}
    assert scaling.load_row(workdir, row, scaling.settings(config)) is not None
    config.repeats = 5
    assert scaling.load_row(workdir, row, scaling.settings(config)) is not None
    config.generation.state_steps = 3
    assert scaling.load_row(workdir, row, scaling.settings(config)) is None


def test_bad_configs_are_refused(tmp_path):
    with pytest.raises(ValueError, match="config variant: unknown 'huge'; allowed: default, "
                                         "tiny"):
        scaling_config.get_config("huge")
    config = scaling_config.get_config("tiny")
    with pytest.raises(FileNotFoundError, match="config.checkpoint"):
        scaling.run(config, str(tmp_path))
    config.checkpoint = str(tmp_path)
    config.generators = ("svgd", "nope")
    with pytest.raises(ValueError, match="unknown name 'nope'"):
        scaling.run(config, str(tmp_path))
    config.generators = ("svgd",)
    config.generation.steps = 3
    with pytest.raises(ValueError, match="config.steps: unknown generation field"):
        scaling.run(config, str(tmp_path))


def test_device_counts_on_cpu_and_accelerators():
    config = scaling_config.get_config("default")
    assert scaling.device_counts(config, "cpu", 1) == [1, 2, 4]
    assert scaling.device_counts(config, "gpu", 1) == [1]
    assert scaling.device_counts(config, "gpu", 8) == [1, 2, 4, 8]
    config.num_states = (20, 6)
    rows = scaling.plan_rows(config, [1, 4])
    assert {(r["num_states"], r["num_devices"]) for r in rows} == {(6, 1), (20, 1), (20, 4)}


def test_a_failed_worker_is_reported_after_the_reports_are_written(tmp_path, tiny_checkpoint):
    config = scaling_config.get_config("tiny")
    config.checkpoint = tiny_checkpoint[0]
    config.device_counts = (1,)
    config.worker_memory_gb = 0.3  # far below what JAX needs: the worker dies at once
    with pytest.raises(RuntimeError, match=r"the workers for \(N, devices\) \[\(8, 1\)\] "
                                           r"failed; 1 rows missing"):
        scaling.run(config, str(tmp_path))
    saved = json.load(open(tmp_path / "results.json"))
    assert saved["rows"] == [] and saved["missing"] == [
        {"generator": "svgd", "num_states": 8, "num_devices": 1}]
    assert "1 planned rows are not measured yet" in open(tmp_path / "results.md").read()


def test_row_time_estimates_follow_the_repeat_rule():
    config = scaling_config.get_config("default")  # 3 repeats, 120 s
    # 10 s runs: warm-up and 3 timed runs; 50 s: warm-up and 2 (a third would start after
    # 150 s, past 120 s); 200 s: the first run is the one timed run.
    assert scaling.estimate_seconds(100, 30.0, 0.1, config) == pytest.approx(30 + 4 * 10)
    assert scaling.estimate_seconds(500, 30.0, 0.1, config) == pytest.approx(30 + 3 * 50)
    assert scaling.estimate_seconds(2000, 30.0, 0.1, config) == pytest.approx(30 + 200)
