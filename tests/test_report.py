"""Tests of experiments.report: one Markdown report gathered from fake experiment workdirs."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from experiments import report
from experiments.configs import report as report_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TABLE = ("| task | method | recovery |\n| --- | --- | --- |\n"
         "| tabletop | svgd | 0.60 [0.31, 0.83] (10) |")


def _png(path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(os.path.dirname(path), exist_ok=True)
    plt.imsave(path, np.zeros((1, 1, 3)))


def _experiment(workdir, markdown=None, figures=(), **fields):
    """A well-formed workdir: results.json (environment, figures, fields), results.md, PNGs."""
    os.makedirs(workdir, exist_ok=True)
    results = {"config": {"seed": 0}, "figures": list(figures),
               "environment": {"versions": {"jax": "9.9.1", "jaxlib": "9.9.2"},
                               "devices": ["cpu:0", "cpu:1"], "cpu_count": 2}, **fields}
    with open(os.path.join(workdir, "results.json"), "w") as file:
        json.dump(results, file)
    if markdown is not None:
        with open(os.path.join(workdir, "results.md"), "w") as file:
            file.write(markdown)
    for name in figures:
        _png(os.path.join(workdir, name))


def _config(tmp_path, extra=""):
    config = report_config.get_config("tiny")
    config.sections = (f"base_agent={tmp_path}/evaluate,main_table={tmp_path}/fail2progress"
                       + extra)
    return config


def _links(text):
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)


def test_report_copies_tables_and_figures_and_marks_missing_sections(tmp_path):
    markdown = (f"# Base agent in the real world\n\nIntro.\n\n{TABLE}\n\n## Notes\n\n"
                "```\n# not a heading\n```\n\n![success](success.png)\n")
    _experiment(str(tmp_path / "evaluate"), markdown, figures=("success.png", "extra.png"),
                timestamp="2026-12-01T21:44:33Z")
    config = _config(tmp_path, f",lifelong={tmp_path}/lifelong")
    config.commands.lifelong = "python -m experiments.lifelong_main --workdir=x"
    out = tmp_path / "out"

    written = report.build(config, str(out))

    assert written["sections"] == {"base_agent": "finished", "main_table": "missing",
                                   "lifelong": "missing"}
    text = (out / "report.md").read_text()
    assert TABLE in text  # copied verbatim
    assert "9.9.1" in text and "9.9.2" in text and "cpu:0, cpu:1" in text
    assert "2026-12-01T21:44:33Z" in text
    outside_code = re.sub(r"```.*?```", "", text, flags=re.S)
    assert re.findall(r"^# ", outside_code, flags=re.M) == ["# "]  # one H1
    assert "\n#### Notes\n" in text and "\n# not a heading\n" in text  # fences untouched
    assert "### Base agent in the real world" not in text  # the repeated title is dropped
    links = _links(text)
    assert links == ["figures/base_agent/success.png", "figures/base_agent/extra.png"]
    for link in links:
        assert (out / link).is_file()
    body = text.replace("Not run yet", "not run yet")
    for folder, command in (("fail2progress", config.commands.main_table),
                            ("lifelong", config.commands.lifelong)):
        expected = os.path.join(str(tmp_path), folder, "results.json")
        assert f"not run yet (expected at `{expected}`, command: `{command}`)" in body


def test_partial_unfinished_and_markdown_less_sections_say_so(tmp_path):
    _experiment(str(tmp_path / "evaluate"), None, figures=())
    _png(str(tmp_path / "evaluate" / "loose.png"))  # no list, no results.md: top-level PNGs
    _experiment(str(tmp_path / "fail2progress"), f"# Main\n\n{TABLE}\n", partial=True,
                figures=("rates.png", "gone.png"))
    os.remove(tmp_path / "fail2progress" / "gone.png")
    os.makedirs(tmp_path / "generalisation" / "units")
    config = _config(tmp_path, f",generalisation={tmp_path}/generalisation")
    config.commands.generalisation = "make generalisation"

    written = report.build(config, str(tmp_path / "out"))

    assert written["sections"] == {"base_agent": "finished", "main_table": "partial",
                                   "generalisation": "unfinished"}
    text = (tmp_path / "out" / "report.md").read_text()
    assert "**Partial run**: results.json says partial: true" in text
    assert "No `results.md`" in text
    assert "Figure `gone.png` is named by the results but is not in" in text
    assert "a run is in progress or stopped" in text and "`make generalisation`" in text
    assert "(file time of results.json)" in text
    for link in _links(text):
        assert (tmp_path / "out" / link).is_file()
    assert sorted(_links(text)) == ["figures/base_agent/loose.png",
                                    "figures/main_table/rates.png"]


def test_a_rebuild_replaces_the_report_whole_and_leaves_no_temporary_folder(tmp_path):
    _experiment(str(tmp_path / "evaluate"), "# E\n", figures=("old.png",))
    out = tmp_path / "out"
    report.build(_config(tmp_path), str(out))
    assert (out / "figures" / "base_agent" / "old.png").is_file()
    os.remove(tmp_path / "evaluate" / "old.png")
    _experiment(str(tmp_path / "evaluate"), "# E\n", figures=("new.png",))

    report.build(_config(tmp_path), str(out))

    assert sorted(os.listdir(out / "figures" / "base_agent")) == ["new.png"]
    assert sorted(os.listdir(tmp_path)) == ["evaluate", "out"]


def test_a_section_whose_workdir_is_gone_keeps_the_previous_report_labelled(tmp_path):
    _experiment(str(tmp_path / "evaluate"), f"# E\n\n{TABLE}\n", figures=("old.png",))
    _experiment(str(tmp_path / "fail2progress"), "# M\n\nmain table v1\n",
                figures=("rates.png",))
    out = tmp_path / "out"
    report.build(_config(tmp_path), str(out))
    for folder in ("evaluate", "fail2progress"):  # a fresh checkout: no workdirs at all
        for name in os.listdir(tmp_path / folder):
            os.remove(tmp_path / folder / name)
        os.rmdir(tmp_path / folder)
    _experiment(str(tmp_path / "evaluate"), "# E\n\nbase v2\n")  # one of them is rerun

    written = report.build(_config(tmp_path), str(out))

    assert written["sections"] == {"base_agent": "finished", "main_table": "carried over"}
    text = (out / "report.md").read_text()
    assert "base v2" in text and TABLE not in text  # a rerun replaces the old text
    assert "main table v1" in text and "Carried over from the report generated" in text
    assert "| carried over |" in text
    assert (out / "figures" / "main_table" / "rates.png").is_file()
    assert not (out / "figures" / "base_agent").exists()
    again = report.build(_config(tmp_path), str(out))  # carried twice: still labelled once
    assert again["sections"]["main_table"] == "carried over"
    assert (out / "report.md").read_text().count("Carried over from") == 1
    config = _config(tmp_path)
    config.carry_over = False
    assert report.build(config, str(out))["sections"]["main_table"] == "missing"


def test_an_output_dir_holding_other_files_is_refused_not_deleted(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match=r"output_dir .*notes\.txt.*refusing"):
        report.build(_config(tmp_path), str(tmp_path / "out"))
    assert (tmp_path / "out" / "notes.txt").read_text() == "keep me"
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_bad_configs_name_the_field(tmp_path):
    with pytest.raises(ValueError, match=r"unknown 'huge'; allowed: default, tiny"):
        report_config.get_config("huge")
    config = _config(tmp_path, ",sweep=")
    with pytest.raises(ValueError, match=r"config\.sections: 'sweep=' has no path"):
        report.parse_sections(config)
    config = _config(tmp_path, ",sweep")
    with pytest.raises(ValueError, match=r"config\.sections: 'sweep' has no path"):
        report.parse_sections(config)
    config = _config(tmp_path, f",sweep={tmp_path}/sweep")
    with pytest.raises(ValueError, match=r"config\.commands\.sweep: missing"):
        report.parse_sections(config)
    config = _config(tmp_path, f",base_agent={tmp_path}/x")
    with pytest.raises(ValueError, match=r"config\.sections: 'base_agent' is listed twice"):
        report.parse_sections(config)
    config.sections = " , "
    with pytest.raises(ValueError, match=r"config\.sections: empty"):
        report.parse_sections(config)
    config.sections = "Base Agent=x"
    with pytest.raises(ValueError, match=r"config\.sections: 'Base Agent' is not a"):
        report.parse_sections(config)


def test_the_default_config_lists_every_section_in_order_with_a_command():
    sections = report.parse_sections(report_config.get_config())
    assert [s.name for s in sections] == ["base_agent", "main_table", "main_table_replay",
                                          "main_table_relation", "main_table_carry",
                                          "repair_probe", "demo", "repair_timing",
                                          "generalisation", "generalisation_tabletop",
                                          "generalisation_replay", "sim2real", "efficiency",
                                          "sweep", "scaling", "lifelong", "lifelong_carry",
                                          "lifelong_held"]
    assert sections[1].path == "results/fail2progress"
    assert all(s.command.startswith("python -m experiments.") for s in sections)


def test_main_writes_the_report_from_the_command_line(tmp_path):
    _experiment(str(tmp_path / "evaluate"), f"# E\n\n{TABLE}\n", figures=("success.png",))
    out = tmp_path / "reports"
    command = [sys.executable, "-m", "experiments.report_main",
               "--config=experiments/configs/report.py:tiny",
               f"--config.sections=base_agent={tmp_path}/evaluate",
               f"--output_dir={out}"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert TABLE in (out / "report.md").read_text()
    assert "base_agent: finished" in done.stderr
