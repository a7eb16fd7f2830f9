import json
import os

import pytest

from experiments import generalisation
from experiments.configs import generalisation as generalisation_config


def test_tiny_generalisation_end_to_end_and_resume(tmp_path, tiny_checkpoint):
    config = generalisation_config.get_config("tiny")
    config.checkpoint = tiny_checkpoint[0]
    config.lock()  # as config_flags hands it to the main: no new keys added
    results = generalisation.run(config, str(tmp_path))
    for name in ("results.json", "results.md", "generalisation.png"):
        assert os.path.getsize(tmp_path / name) > 0
    rows = {(r["object_count"], r["method"]): r for r in results["rows"]}
    assert set(rows) == {(3, "original"), (3, "repair:svgd"), (5, "original"),
                         (5, "repair:svgd")}
    for row in rows.values():
        assert row["future"]["trials"] == row["retention"]["trials"] == 1
        assert row["recovery"]["trials"] == 1
    (repaired,) = [json.loads((tmp_path / "units" / p).read_text())
                   for p in os.listdir(tmp_path / "units") if p.endswith("repair-svgd.json")]
    assert repaired["repaired"] and set(repaired["by_count"]) == {"3", "5"}
    for count in (3, 5):  # each count's episodes are played at that count
        for role, split in (("future", "ood"), ("retention", "train")):
            (episode,) = repaired["by_count"][str(count)][role]
            assert f"-n{count}-{split}-" in episode["episode"]
    assert "future" not in repaired, "by_count holds the episodes of every count"
    base = {p for p in os.listdir(tmp_path / "base")}
    assert {p.split("-e")[0] for p in base} == {"tabletop-n3-ood", "tabletop-n3-train",
                                                "tabletop-n5-ood", "tabletop-n5-train"}
    stamps = {p: os.path.getmtime(tmp_path / "units" / p) for p in os.listdir(tmp_path / "units")}
    again = generalisation.run(config, str(tmp_path))
    assert json.dumps(again["rows"]) == json.dumps(results["rows"])
    assert stamps == {p: os.path.getmtime(tmp_path / "units" / p) for p in stamps}
    config.eval_counts = "3,5,7"  # units written without 7 objects are not silently mixed
    with pytest.raises(ValueError, match="config.eval_counts: .* without the counts 7"):
        generalisation.run(config, str(tmp_path))


@pytest.mark.parametrize("field, value, message", [
    ("eval_counts", "3,4", "eval_counts"),
    ("object_count", 4, "object_count: 4 is not one of"),
    ("methods", "repair:nope", "methods"),
])
def test_bad_config_is_refused_before_any_work(tmp_path, field, value, message):
    config = generalisation_config.get_config("tiny")
    config.checkpoint = "/nonexistent"
    setattr(config, field, value)
    with pytest.raises(ValueError, match=message):
        generalisation.run(config, str(tmp_path))


def test_real_failures_only_keeps_detections_whose_whole_plan_still_fails(tmp_path,
                                                                          tiny_checkpoint):
    from isaac_bridge import loop

    config = generalisation_config.get_config("tiny")
    config.checkpoint = tiny_checkpoint[0]
    config.real_failures_only = True
    config.num_failures = 3
    setup = loop.make_setup(config, str(tmp_path), ["tabletop"], repairers=False)
    try:
        entries = loop.collect("tabletop", setup, config, str(tmp_path))
        assert entries and all("original_success" in entry for entry in entries)
        for entry in entries:
            assert entry["kept"] == (entry["detected"] and not entry["original_success"]
                                     and entry["predicted_class"] in ("wrong_prediction",
                                                                      "sim2real"))
        # An entry written without the check is played again, to the same outcome.
        path = tmp_path / "collect" / (entries[0]["name"] + ".json")
        old = json.loads(path.read_text())
        path.write_text(json.dumps({k: v for k, v in old.items() if k != "original_success"}))
        again = loop.collect("tabletop", setup, config, str(tmp_path))
        assert json.loads(path.read_text()) == old
        assert [e["kept"] for e in again] == [e["kept"] for e in entries]
    finally:
        setup.simulator.close()
