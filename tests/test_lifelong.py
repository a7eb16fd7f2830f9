import json
import os
import shutil

import numpy as np
import pytest

from experiments import lifelong
from experiments.configs import lifelong as lifelong_config


def test_tiny_lifelong_end_to_end_and_resume(tmp_path, tiny_checkpoint):
    config = lifelong_config.get_config("tiny")
    config.checkpoint = tiny_checkpoint[0]
    config.lock()  # as config_flags hands it to the main: no new keys added
    results = lifelong.run(config, str(tmp_path))
    for name in ("results.json", "results.md", "lifelong.png"):
        assert os.path.getsize(tmp_path / name) > 0
    assert "relation inputs of the dynamics off, carry gate off" in (
        tmp_path / "results.md").read_text()
    rows = {row["mode"]: row for row in results["rows"]}
    assert set(rows) == {"base", "replan", "one_shot", "lifelong", "lifelong_explore"}
    assert rows["base"]["repairs"] == rows["replan"]["repairs"] == 0
    for row in rows.values():
        assert 0 <= row["undetected_failures"] <= row["episodes"]
    assert rows["one_shot"]["repairs"] == 1, "the untrained model's first episode fails"
    # Every failure repairs the lifelong model: at least as many repairs as one-shot.
    assert rows["lifelong"]["repairs"] >= rows["one_shot"]["repairs"]
    # Only lifelong_explore explores; its untrained model's plans all fall below 0.99.
    assert rows["lifelong_explore"]["explored"] >= 1
    assert all(row["explored"] == 0 for mode, row in rows.items() if mode != "lifelong_explore")
    for row in rows.values():
        assert row["episodes"] == 3
        assert [w["trials"] for w in row["windows"]] == [2, 1]
    folder = tmp_path / "streams" / "lifelong" / "tabletop"
    entries = [json.loads((folder / p).read_text()) for p in sorted(os.listdir(folder))]
    for entry in entries:  # what an unrepaired failure is read from: the plan's own belief
        assert 0.0 <= entry["goal_probability"] <= 1.0
        assert isinstance(entry["unmet_goal"], list) and entry["statuses"]
        scores = entry["skeleton_scores"]
        assert 0 <= entry["skeleton"] < len(scores) and max(scores) <= 1e-6
        if not entry["explored"]:  # the agent's own choice is its best-scored skeleton
            assert np.isclose(np.exp(max(scores)), entry["goal_probability"], atol=1e-6)
    for entry in (e for e in entries if e["repaired"]):
        assert os.path.exists(tmp_path / entry["model"] / "params.npz")
        assert os.path.exists(tmp_path / entry["labels"])
    stamps = {p: os.path.getmtime(folder / p) for p in os.listdir(folder)}
    again = lifelong.run(config, str(tmp_path))
    assert json.dumps(again["rows"]) == json.dumps(results["rows"])
    assert stamps == {p: os.path.getmtime(folder / p) for p in stamps}
    # Stopped before the last episode: the rerun plays only that one, with the model and the
    # replay the stream had, and gets the same outcome.
    last = sorted(os.listdir(folder))[-1]
    os.remove(folder / last)
    lifelong.run(config, str(tmp_path))
    replayed = json.loads((folder / last).read_text())
    keys = ("success", "detected", "class", "repaired", "goal_probability")
    assert {k: replayed[k] for k in keys} == {k: entries[-1][k] for k in keys}
    assert {p: os.path.getmtime(folder / p) for p in stamps if p != last} == {
        p: t for p, t in stamps.items() if p != last}
    # The episode files alone retabulate a finished stream: the models are not read.
    shutil.rmtree(tmp_path / "models")
    assert json.dumps(lifelong.run(config, str(tmp_path))["rows"]) == json.dumps(again["rows"])
    # only_existing tabulates the finished streams and plays nothing: an unfinished one is
    # listed as missing and stays unfinished.
    os.remove(folder / last)
    config.only_existing = True
    partial = lifelong.run(config, str(tmp_path))
    assert not (folder / last).exists()
    assert "lifelong/tabletop" in partial["partial"]
    assert json.dumps(partial["rows"]) == json.dumps(
        [row for row in again["rows"] if row["mode"] != "lifelong"])
    assert "Partial: streams not finished" in (tmp_path / "results.md").read_text()


def test_lifelong_replays_base_data_and_every_earlier_repair(tiny_checkpoint):
    from f2p.repair import RepairConfig, Repairer
    from f2p.scene import Transition

    def batch(rows, value):
        return Transition(*(np.full((rows, 2), value) for _ in Transition._fields))

    base = Repairer(None, None, None, None, batch(3, 0), None, RepairConfig())
    setup = lifelong.loop.Setup(None, None, 0, None, None, {"tabletop": base}, None)
    config = lifelong_config.get_config("tiny")
    one_shot = lifelong._repairer(setup, "tabletop", "one_shot", [batch(2, 1)], config)
    assert one_shot is base
    grown = lifelong._repairer(setup, "tabletop", "lifelong", [batch(2, 1), batch(1, 2)], config)
    assert grown.replay.mask.shape == (6, 2)
    assert sorted(grown.replay.mask[:, 0]) == [0, 0, 0, 1, 1, 2]
    assert grown.config.replay_fraction == config.lifelong_replay_fraction


def test_windows_keep_a_short_last_window():
    entries = [{"success": s, "repaired": r} for s, r in
               [(False, True), (True, False), (True, True), (True, False), (False, False)]]
    found = lifelong.windows(entries, 2)
    assert [(w["start"], w["end"], w["successes"], w["trials"], w["repairs"]) for w in found] \
        == [(0, 2, 1, 2, 1), (2, 4, 2, 2, 1), (4, 5, 0, 1, 0)]


@pytest.mark.parametrize("field, value, message", [
    ("modes", "base,forever", "modes"),
    ("generator", "nope", "config.generator: 'nope'"),
    ("object_count", 4, "object_count: 4 is not one of"),
    ("stream_length", 0, "stream_length: must be >= 1"),
    ("lifelong_replay_fraction", 1.0, "lifelong_replay_fraction"),
    ("explore_below", 1.0, "explore_below"),
    ("repair_classes", "everything", "repair_classes"),
])
def test_bad_config_is_refused_before_any_work(tmp_path, field, value, message):
    config = lifelong_config.get_config("tiny")
    config.checkpoint = "/nonexistent"
    setattr(config, field, value)
    with pytest.raises(ValueError, match=message):
        lifelong.run(config, str(tmp_path))
