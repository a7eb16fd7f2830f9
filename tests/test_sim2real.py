import json
import os

import pytest
from conftest import TINY_NUM_POINTS

from experiments import sim2real
from experiments.configs import sim2real as sim2real_config
from f2p.io import scores
from isaac_bridge.episodes import EpisodeSpec, make_world


def test_tiny_sim2real_end_to_end_and_resume(tmp_path, tiny_checkpoint):
    config = sim2real_config.get_config("tiny")
    config.checkpoint = tiny_checkpoint[0]
    config.lock()  # as config_flags hands it to the main: no new keys added
    results = sim2real.run(config, str(tmp_path))
    for name in ("results.json", "results.md", "sim2real.png"):
        assert os.path.getsize(tmp_path / name) > 0
    rows = results["rows"]
    assert {(r["axis"], r["gap"], r["method"]) for r in rows} == {
        ("noise", 0.0, "original"), ("noise", 0.0, "repair:svgd"),
        ("friction", 0.8, "original"), ("friction", 0.8, "repair:svgd")}
    for row in rows:  # the fixed list is played whole; a random model's plans are caught
        assert row["episodes"] == row["success"]["trials"] == 2
        assert row["detected"] >= 1 and sum(row["confusion"].values()) == row["detected"]
        assert row["recovery"]["trials"] == row["detected"]
    folder = tmp_path / "levels" / "friction=0.8"
    entries = [json.loads((folder / "collect" / p).read_text())
               for p in sorted(os.listdir(folder / "collect"))]
    entry = next(e for e in entries if e["detected"])
    assert len(entries) == 2
    assert len(os.listdir(folder / "units")) == 2 * sum(e["detected"] for e in entries)
    # The level's world really is slippery: 0.2 x the nominal friction, whatever the seed.
    level = sim2real.levels(config)[-1]
    world, _ = make_world(EpisodeSpec(**entry["spec"]), sim2real.level_config(config, level),
                          TINY_NUM_POINTS)
    assert world.true_physics().friction_scale == pytest.approx(0.2)
    stamps = {p: os.path.getmtime(folder / "units" / p) for p in os.listdir(folder / "units")}
    again = sim2real.run(config, str(tmp_path))
    assert json.dumps(again["rows"]) == json.dumps(rows)
    assert stamps == {p: os.path.getmtime(folder / "units" / p) for p in stamps}


def test_levels_set_the_world_fields_of_their_axis():
    config = sim2real_config.get_config("default")
    found = sim2real.levels(config)
    assert [level.name for level in found] == [
        "noise=0", "noise=0.2", "noise=0.4", "noise=0.6", "noise=0.8",
        "friction=0", "friction=0.4", "friction=0.8"]
    slippery = sim2real.level_config(config, found[-1])
    assert tuple(slippery.friction_scale) == pytest.approx((0.2, 0.2))
    assert slippery.noise_level == config.noise_level
    assert sim2real.level_config(config, found[2]).noise_level == 0.4


@pytest.mark.parametrize("field, value, message", [
    ("noise_levels", "0.2,lots", "noise_levels: 'lots' is not a number"),
    ("noise_levels", "1.5", "noise_levels: 1.5 is outside"),
    ("friction_gaps", "0.2,0.2", "friction_gaps: repeated level"),
])
def test_bad_levels_are_refused(field, value, message):
    config = sim2real_config.get_config("default")
    setattr(config, field, value)
    with pytest.raises(ValueError, match=message):
        sim2real.levels(config)


@pytest.mark.parametrize("field, value, message", [
    ("num_episodes", 0, "num_episodes: must be >= 1"),
    ("object_count", 4, "object_count: 4 is not one of"),
    ("methods", "repair:nope", "methods"),
])
def test_bad_config_is_refused_before_any_work(tmp_path, field, value, message):
    config = sim2real_config.get_config("tiny")
    config.checkpoint = "/nonexistent"
    setattr(config, field, value)
    with pytest.raises(ValueError, match=message):
        sim2real.run(config, str(tmp_path))


def test_no_levels_is_refused():
    config = sim2real_config.get_config("default")
    config.noise_levels = config.friction_gaps = ""
    with pytest.raises(ValueError, match="both empty"):
        sim2real.levels(config)


def test_halving_gap_interpolates_between_levels():
    assert sim2real.halving_gap([0.0, 0.2, 0.4], [0.8, 0.6, 0.2]) == pytest.approx(0.3)
    assert sim2real.halving_gap([0.4, 0.0, 0.2], [0.2, 0.8, 0.6]) == pytest.approx(0.3)
    assert sim2real.halving_gap([0.0, 0.2], [0.8, 0.5]) is None
    assert sim2real.halving_gap([0.0, 0.2], [0.0, 0.0]) is None


def test_pooled_rows_sum_successes_and_trials_over_tasks():
    def row(task, gap, method, successes, trials):
        return {"axis": "noise", "gap": gap, "task": task, "method": method,
                "success": scores.rate(successes, trials)}

    rows = [row("a", 0.0, "m", 1, 4), row("b", 0.0, "m", 3, 4),
            row("a", 0.4, "m", 0, 4), row("b", 0.4, "m", 1, 3)]
    pooled = sim2real.pooled_rows(rows, ["m"])
    assert [(p["gap"], p["task"], p["success"]["successes"], p["success"]["trials"])
            for p in pooled] == [(0.0, "all", 4, 8), (0.4, "all", 1, 7)]


def test_episode_success_counts_undetected_episodes_as_they_ended():
    entries = [{"name": "a", "detected": False, "success": True},
               {"name": "b", "detected": False, "success": False},
               {"name": "c", "detected": True, "success": False},
               {"name": "d", "detected": True, "success": False}]
    units = [{"failure": "c", "method": "m", "recovery": True},
             {"failure": "d", "method": "m", "recovery": False},
             {"failure": "c", "method": "other", "recovery": False}]
    rate = sim2real.episode_success(entries, units, "m")
    assert (rate["successes"], rate["trials"]) == (2, 4)
    labelled = [{"detected": True, "predicted_class": "sim2real",
                 "true_class": "wrong_prediction"},
                {"detected": True, "predicted_class": "sim2real", "true_class": "sim2real"},
                {"detected": True, "predicted_class": "sim2real", "true_class": "sim2real"},
                {"detected": False}]
    assert sim2real.confusion(labelled) == {"sim2real|sim2real": 2,
                                            "sim2real|wrong_prediction": 1}
