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
