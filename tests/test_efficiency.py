import json
import os

import pytest

from experiments import efficiency
from experiments.configs import efficiency as efficiency_config
from f2p import generation


def test_tiny_efficiency_end_to_end_and_resume(tmp_path, tiny_checkpoint):
    config = efficiency_config.get_config("tiny")
    config.checkpoint = tiny_checkpoint[0]
    config.lock()  # as config_flags hands it to the main: no new keys added
    # Another test in this process may have compiled the same shapes (compile_s would be 0).
    generation.clear_compiled()
    results = efficiency.run(config, str(tmp_path))
    rows = results["rows"]
    assert [row["generator"] for row in rows] == ["svgd", "sampling"]
    for row in rows:
        assert row["failure"] is not None, "the untrained model's tabletop plans fail"
        assert row["seconds"] > 0 and row["budget"] == 4
    assert rows[0]["compile_s"] > 0, "svgd compiles on its first cell"
    sampling = rows[1]
    assert sampling["attempts"] >= 4 and 0 <= sampling["accepted"] <= 2
    assert 0.0 <= sampling["acceptance"] <= 1.0
    assert sampling["fill"] == ("measured" if sampling["filled"] else "projected")
    assert rows[0]["fill"] == "measured" and rows[0]["fill_s"] == rows[0]["seconds"]
    assert rows[0]["vs_svgd"] == pytest.approx(1.0)
    for name in ("results.json", "results.md", "times.png"):
        assert os.path.getsize(tmp_path / name) > 0
    assert "| tabletop | 3 | sampling |" in (tmp_path / "results.md").read_text()
    stamps = {p: os.path.getmtime(tmp_path / "rows" / p) for p in os.listdir(tmp_path / "rows")}
    again = efficiency.run(config, str(tmp_path))
    assert json.dumps(again["rows"], sort_keys=True) == json.dumps(results["rows"], sort_keys=True)
    assert stamps == {p: os.path.getmtime(tmp_path / "rows" / p) for p in stamps}


def test_bad_efficiency_configuration_is_refused(tmp_path, tiny_checkpoint):
    config = efficiency_config.get_config("tiny")
    config.checkpoint = tiny_checkpoint[0]
    config.generators = "svgd,random"
    with pytest.raises(ValueError, match="generators"):
        efficiency.run(config, str(tmp_path))
    config = efficiency_config.get_config("tiny")
    config.object_counts = "3,4"
    with pytest.raises(ValueError, match="object_counts"):
        efficiency.run(config, str(tmp_path))
    with pytest.raises(ValueError, match="config variant"):
        efficiency_config.get_config("huge")


def test_fill_seconds_measured_when_every_run_filled():
    fill = efficiency.fill_seconds([1.0, 3.0, 2.0], [128, 192, 128], [20, 20, 20], 20)
    assert fill == {"fill_s": 2.0, "fill_low": 2.0, "fill_high": 2.0, "fill": "measured"}


def test_fill_seconds_projects_from_the_acceptance_rate():
    # 2 of 2000 proposals accepted in 4 s: 2 ms per proposal, 20 states need 20000 proposals.
    fill = efficiency.fill_seconds([2.0, 2.0], [1000, 1000], [1, 1], 20)
    assert fill["fill"] == "projected"
    assert fill["fill_s"] == pytest.approx(40.0)
    assert fill["fill_low"] < fill["fill_s"] < fill["fill_high"]
    # Nothing accepted: only the lower end (from the interval's upper acceptance) is known.
    none = efficiency.fill_seconds([2.0], [1000], [0], 20)
    assert none["fill_s"] is None and none["fill_high"] is None
    assert none["fill_low"] > 2.0
    with pytest.raises(ValueError, match="attempts"):
        efficiency.fill_seconds([2.0], [0], [0], 20)


def test_ratios_use_the_fill_time_and_mark_bounds():
    rows = [{"task": "t", "objects": 3, "generator": "svgd", "seconds": 2.0, "fill_s": 2.0,
             "fill": "measured"},
            {"task": "t", "objects": 3, "generator": "sampling", "seconds": 4.0, "fill_s": None,
             "fill_low": 50.0, "fill_high": None, "fill": "projected"}]
    svgd, sampling = efficiency._with_ratios(rows)
    assert svgd["fill_vs_svgd"] == pytest.approx(1.0) and svgd["fill_range"] is None
    assert sampling["vs_svgd"] == pytest.approx(2.0)
    assert sampling["fill_vs_svgd"] == pytest.approx(25.0)
    assert sampling["fill_range"] == "> 50"
