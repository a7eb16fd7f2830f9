"""Generalisation study: models repaired on failures at one object count, played on others.

run(config, workdir) collects OOD failures at config.object_count (failure_seed), runs every
(failure, method) unit of the main table there (isaac_bridge.loop: recovery and retry at that
count) and plays each resulting model, repaired or not, on fresh future OOD and retention
episodes (eval_seed) at every count of config.eval_counts. The base agent's episodes at each
count are played once and shared by every unrepaired unit. Every episode and unit is a JSON
file, so a stopped run resumes.
"""

from __future__ import annotations

import functools
import json
import os
import time
from typing import Any

from absl import logging

from f2p import fail2progress, tasks
from f2p.io import reporting, scores
from f2p.io.config import parse_list
from isaac_bridge import loop

ROLES = ("future", "retention")


def check_config(config) -> tuple[list[str], list[str], list[int]]:
    """Returns (tasks, methods, evaluation counts), checked; raises ValueError naming a field."""
    names = parse_list(config.tasks, tasks.task_names(), "tasks")
    methods = loop.method_names(config)
    counts = parse_list(config.eval_counts, tasks.OBJECT_COUNTS, "eval_counts", int)
    parse_list(config.repair_classes, fail2progress.CLASSES, "repair_classes")
    parse_list(config.object_count, tasks.OBJECT_COUNTS, "object_count", int)
    loop.repair_config(config)
    return names, methods, counts


def check_units(workdir: str, counts: list[int]) -> None:
    """Raises ValueError when a unit on disk lacks one of the counts (written by another run)."""
    folder = os.path.join(workdir, "units")
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        with open(os.path.join(folder, name)) as file:
            written = set(json.load(file).get("by_count", {}))
        missing = sorted(set(map(str, counts)) - written, key=int)
        if missing:
            raise ValueError(f"config.eval_counts: units/{name} in {workdir} was written without "
                             f"the counts {', '.join(missing)}; use another workdir (or delete "
                             "its units/) to evaluate at new counts")


def run(config, workdir: str) -> dict[str, Any]:
    """Collects, runs every unit and its evaluation at every count; writes the results.

    Returns:
      The results dict written to results.json.
    """
    names, methods, counts = check_config(config)
    check_units(workdir, counts)
    for sub in ("collect", "failures", "base", "units", "generated", "models"):
        os.makedirs(os.path.join(workdir, sub), exist_ok=True)
    setup = loop.make_setup(config, workdir, names)
    units: list[dict[str, Any]] = []
    try:
        collected = {name: loop.collect(name, setup, config, workdir) for name in names}
        base = {name: {count: loop.base_evaluation(name, setup, config, workdir, count)
                       for count in counts} for name in names}
        work = [(name, entry, method) for method in methods for name in names
                for entry in collected[name] if entry["kept"]]
        started, done = time.perf_counter(), 0
        for index, (name, entry, method) in enumerate(work):
            path = os.path.join(workdir, "units", loop.unit_name(entry["name"], method) + ".json")
            fresh = not os.path.exists(path)
            units.append(loop.read_or_make(path, functools.partial(
                loop.run_unit, entry, method, setup, config, workdir, None,
                counts=base[name])))
            if fresh:
                done += 1
                rate = done / (time.perf_counter() - started)
                logging.info("[%d/%d] %s %s | %.4f units/s, ETA %.0f s", index + 1, len(work),
                             entry["name"], method, rate, (len(work) - index - 1) / rate)
    finally:
        setup.simulator.close()
    return write(workdir, config, collected, units, counts)


def count_rows(units: list[dict[str, Any]], counts: list[int]) -> list[dict[str, Any]]:
    """One row per object count x task x method: future OOD and retention rates."""
    rows = []
    for count in counts:
        at_count = [{**u, **u["by_count"][str(count)]} for u in units]
        for row in scores.summarise(at_count):
            rows.append({"object_count": count, "task": row["task"], "method": row["method"],
                         "failures": row["failures"], "recovery": row["recovery"],
                         **{role: row[role] for role in ROLES}})
    return rows


def write(workdir: str, config, collected: dict[str, list], units: list[dict[str, Any]],
          counts: list[int]) -> dict[str, Any]:
    """results.json, results.md (count x task x method) and generalisation.png."""
    rows = count_rows(units, counts)
    results = {"config": config.to_dict(), "environment": reporting.environment(),
               "collected": collected, "rows": rows, "figures": ["generalisation.png"]}
    lines = ["# Generalisation to more objects", "",
             f"Failures collected and repaired at {config.object_count} objects (OOD episodes of "
             f"seed {config.failure_seed}, {config.num_failures} per task); every model, "
             f"repaired or not, then plays {config.num_future} future OOD and "
             f"{config.num_retention} in-distribution (retention) episodes of seed "
             f"{config.eval_seed} at each count, whole plans. original and replan keep the base "
             "model, so their rows are the base agent's. recovery is at the repair count. 95 % "
             "Wilson intervals (trials).", "",
             "| objects | task | method | failures | recovery | future OOD | retention |",
             "|" + " --- |" * 7]
    for row in rows:
        lines.append(f"| {row['object_count']} | {row['task']} | {row['method']} | "
                     f"{row['failures']} | {scores.cell(row['recovery'])} | "
                     f"{scores.cell(row['future'])} | {scores.cell(row['retention'])} |")
    lines += ["", "![success by object count](generalisation.png)"]
    draw(os.path.join(workdir, "generalisation.png"), rows)
    reporting.write_json(os.path.join(workdir, "results.json"), results)
    reporting.write_text(os.path.join(workdir, "results.md"), "\n".join(lines) + "\n")
    return results


def draw(path: str, rows: list[dict[str, Any]]) -> None:
    """Future OOD and retention success against object count, a panel per task and role."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["task"] for r in rows))
    figure, axes = plt.subplots(len(ROLES), len(names), figsize=(3.4 * len(names), 5.6),
                                squeeze=False)
    for column, task in enumerate(names):
        for line, role in enumerate(ROLES):
            axis = axes[line][column]
            for method in dict.fromkeys(r["method"] for r in rows):
                cells = [r for r in rows if (r["task"], r["method"]) == (task, method)]
                axis.errorbar([c["object_count"] for c in cells],
                              [c[role]["rate"] for c in cells],
                              yerr=[[c[role]["rate"] - c[role]["low"] for c in cells],
                                    [c[role]["high"] - c[role]["rate"] for c in cells]],
                              marker="o", capsize=3, label=method)
            axis.set_title(f"{task}: {'future OOD' if role == 'future' else role}", fontsize=9)
            if line == len(ROLES) - 1:  # a label on the upper row would cover the titles
                axis.set_xlabel("objects")
            axis.set_ylim(-0.05, 1.05)
    axes[0][-1].legend(fontsize=7)
    reporting.save_figure(path, figure)
