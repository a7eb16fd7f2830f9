"""Ablation sweeps of the repair loop: every point repairs the same failures and is scored.

run(config, workdir) reads config.sweeps (see experiments/configs/sweep.py for the syntax),
collects the failures and the base agent's evaluation episodes once (isaac_bridge.loop), and for
every point of every sweep runs the (failure, method) units of the main table with the point's
config: recovery, retry, future OOD and retention. Points that change only the repair (the
objective, generation and finetune sections, method, max_rounds) share the collected failures;
a point that changes anything else gets its own collection under points/<point>/. Every unit
is its own JSON file, so a stopped sweep resumes.
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any

import numpy as np
from absl import logging

from f2p import tasks
from f2p.io import reporting, scores
from f2p.io.config import parse_list
from f2p.io.sweep import Point, apply_point, parse_sweep, point_fields, point_name
from isaac_bridge import loop

REPAIR_SECTIONS = ("objective", "generation", "finetune")
REPAIR_FIELDS = ("method", "max_rounds")
"""Fields a point may change and still share the collected failures and base episodes."""


def sweep_points(config) -> list[list[Point]]:
    """The points of every sweep in config.sweeps (specifications of a grid joined by " & ")."""
    entries = [config.sweeps] if isinstance(config.sweeps, str) else list(config.sweeps)
    if not entries:
        raise ValueError("config.sweeps: empty; give at least one field=v1,v2,... sweep")
    sweeps = []
    for entry in entries:
        points = parse_sweep([spec.strip() for spec in str(entry).split(" & ")], config)
        for point in points:
            check_point(config, point)
        sweeps.append(points)
    return sweeps


def check_point(config, point: Point) -> None:
    """Raises ValueError when a point's config is not a runnable repair config."""
    updated = apply_point(config, point)
    loop.method_names(updated, updated.method)
    loop.repair_config(updated)


def repair_only(point: Point) -> bool:
    """True when the point changes only the repair (failures and base episodes are shared)."""
    return all(field.split(".")[0] in REPAIR_SECTIONS or field in REPAIR_FIELDS
               for field, _ in point)


class _Resources:
    """Set-ups, collected failures and base episodes, made once per distinct folder."""

    def __init__(self, names: list[str]):
        self.names, self.cache = names, {}

    def get(self, config, folder: str):
        if folder not in self.cache:
            for sub in ("collect", "failures", "base"):
                os.makedirs(os.path.join(folder, sub), exist_ok=True)
            setup = loop.make_setup(config, folder, self.names)
            collected = {name: loop.collect(name, setup, config, folder) for name in self.names}
            base = {name: loop.base_evaluation(name, setup, config, folder)
                    for name in self.names}
            self.cache[folder] = (setup, collected, base)
        return self.cache[folder]

    def close(self):
        for setup, _, _ in self.cache.values():
            setup.simulator.close()


def _point_setup(setup: loop.Setup, config) -> loop.Setup:
    settings = loop.repair_config(config)
    return setup._replace(repairers={name: repairer._replace(config=settings)
                                     for name, repairer in setup.repairers.items()})


def run(config, workdir: str) -> dict[str, Any]:
    """Runs every point of every sweep; writes results.json, results.md and a figure per sweep.

    Returns:
      The results dict written to results.json.
    """
    names = parse_list(config.tasks, tasks.task_names(), "tasks")
    sweeps = sweep_points(config)
    resources = _Resources(names)
    work = [(index, point) for index, points in enumerate(sweeps) for point in points]
    units: dict[int, list[dict[str, Any]]] = {index: [] for index in range(len(sweeps))}
    started, done, missing = time.perf_counter(), 0, 0
    try:
        for position, (index, point) in enumerate(work):
            point_config = apply_point(config, point)
            point_dir = os.path.join(workdir, "points", point_name(point))
            for sub in ("units", "generated", "models"):
                os.makedirs(os.path.join(point_dir, sub), exist_ok=True)
            folder = workdir if repair_only(point) else point_dir
            setup, collected, base = resources.get(
                config if repair_only(point) else point_config, folder)
            setup = _point_setup(setup, point_config)
            method = point_config.method
            for name in names:
                for entry in (e for e in collected[name] if e["kept"]):
                    path = os.path.join(point_dir, "units",
                                        loop.unit_name(entry["name"], method) + ".json")
                    fresh = not os.path.exists(path)
                    if fresh and config.only_existing:
                        missing += 1
                        continue
                    unit = loop.read_or_make(path, functools.partial(
                        loop.run_unit, entry, method, setup, point_config, point_dir,
                        base[name]))
                    units[index].append({**unit, "point": point_name(point)})
                    done += fresh
            rate = done / (time.perf_counter() - started) if done else float("nan")
            logging.info("[%d/%d points] %s | %.4f units/s", position + 1, len(work),
                         point_name(point), rate)
    finally:
        resources.close()
    return write(workdir, config, sweeps, units, missing)


def sweep_rows(points: list[Point], units: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per point x task x method: the point's values and the unit scores."""
    rows = []
    for point in points:
        cell = [u for u in units if u["point"] == point_name(point)]
        for row in scores.summarise(cell):
            rows.append({**dict(point), **row, "point": point_name(point)})
    return rows


def sweep_title(points: list[Point]) -> str:
    """E.g. 'generation.num_states x finetune.steps' (zipped fields joined by '+')."""
    return " x ".join(point_fields(points))


def write(workdir: str, config, sweeps: list[list[Point]],
          units: dict[int, list[dict[str, Any]]], missing: int = 0) -> dict[str, Any]:
    """results.json, results.md (a table per sweep) and sweep_<i>.png.

    `missing` units (not on disk, skipped with config.only_existing) make the results partial.
    """
    results = {"config": config.to_dict(), "environment": reporting.environment(),
               "sweeps": [], "figures": []}
    done = sum(len(cell) for cell in units.values())
    if missing:
        results["partial"] = f"{done} of {done + missing} units on disk (only_existing)"
    lines = ["# Ablation sweeps", "",
             f"Tasks {config.tasks}; {config.num_failures} failures per task (failure seed "
             f"{config.failure_seed}), {config.num_future} future OOD and {config.num_retention}"
             f" retention episodes per repaired model (evaluation seed {config.eval_seed}). "
             "Rates with 95 % Wilson intervals (trials).", ""]
    if missing:
        lines += [f"**Partial**: {results['partial']}; the rows below cover only those.", ""]
    for index, points in enumerate(sweeps):
        rows = sweep_rows(points, units[index])
        figure = f"sweep_{index}.png"
        results["sweeps"].append({"fields": point_fields(points), "rows": rows,
                                  "figure": figure})
        results["figures"].append(figure)
        fields = [f for f in point_fields(points) if f != "method"]  # a column of its own
        lines += [f"## {sweep_title(points)}", "",
                  "| " + " | ".join(fields) + " | task | method | failures | recovery | retry"
                  " | future OOD | retention | labels | generation s |",
                  "|" + " --- |" * (len(fields) + 9)]
        for row in rows:
            lines.append("| " + " | ".join(str(row[f]) for f in fields)
                         + f" | {row['task']} | {row['method']} | {row['failures']} | "
                         + " | ".join(scores.cell(row[r]) for r in scores.RATES)
                         + f" | {row['labels']:.0f} | {row['generation_seconds']:.1f} |")
        lines += ["", f"![{sweep_title(points)}]({figure})", ""]
        draw(os.path.join(workdir, figure), points, rows)
    reporting.write_json(os.path.join(workdir, "results.json"), results)
    reporting.write_text(os.path.join(workdir, "results.md"), "\n".join(lines) + "\n")
    return results


BUDGET_FIELDS = ("generation.num_states", "generation.num_actions")


def x_axis(fields: list[str]) -> tuple[tuple[str, ...], str]:
    """The fields a sweep's figure plots along, and the axis label.

    A sweep of both particle counts is plotted against the label budget N x M (their product:
    zipped counts such as N=10 with M=5 and M=10 would otherwise share an x); any other sweep
    against its first field.
    """
    if set(BUDGET_FIELDS) <= set(fields):
        return BUDGET_FIELDS, "label budget N x M"
    return (fields[0],), fields[0]


def draw(path: str, points: list[Point], rows: list[dict[str, Any]]) -> None:
    """Recovery and future OOD success against the sweep's x: a row per task, a line per rest.

    The x is x_axis(fields); a line is one value of the other swept fields (e.g. the method).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fields = point_fields(points)
    along, label_x = x_axis(fields)
    names = list(dict.fromkeys(row["task"] for row in rows)) or ["-"]
    labelled = []  # (task, line label, x, row)
    for row in rows:
        rest = ", ".join(f"{k}={v}" for k, v in row.items() if k in fields and k not in along)
        x = int(np.prod([row[f] for f in along])) if len(along) > 1 else row[along[0]]
        labelled.append((row["task"], rest or row["task"], x, row))
    lines = list(dict.fromkeys(label for _, label, _, _ in labelled))
    numeric = all(isinstance(x, (int, float)) for _, _, x, _ in labelled)
    # Numeric values left to right; categorical ones (e.g. methods) in specification order.
    seen = list(dict.fromkeys(x for _, _, x, _ in labelled))
    ticks = sorted(seen) if numeric else seen
    log_x = numeric and len(along) > 1
    span = ((max(ticks) - min(ticks)) or 1) if numeric else 1
    figure, axes = plt.subplots(len(names), 2, figsize=(9, 3.2 * len(names)), squeeze=False)
    for task_axes, name in zip(axes, names, strict=True):
        for axis, rate in zip(task_axes, ("recovery", "future"), strict=True):
            for index, label in enumerate(lines):
                cells = sorted(((x, row) for task, line, x, row in labelled
                                if task == name and line == label),
                               key=lambda cell: ticks.index(cell[0]))
                if not cells:
                    continue
                # Lines side by side around each x, so that equal rates stay readable.
                dodge = 0.03 * (index - (len(lines) - 1) / 2)
                positions = [x * (1 + dodge) if log_x else
                             (x + dodge * span if numeric else ticks.index(x) + dodge * 3)
                             for x, _ in cells]
                scored = [row[rate] for _, row in cells]
                axis.errorbar(positions, [c["rate"] for c in scored],
                              yerr=[[c["rate"] - c["low"] for c in scored],
                                    [c["high"] - c["rate"] for c in scored]],
                              marker="o", capsize=3, label=label, color=f"C{index % 10}")
            if log_x:
                axis.set_xscale("log")
                axis.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
            axis.set_xticks(ticks if numeric else range(len(ticks)), [str(t) for t in ticks])
            axis.set_xlabel(label_x)
            axis.set_ylabel(f"{'future OOD' if rate == 'future' else rate} success")
            axis.set_title(name, fontsize=9)
            axis.set_ylim(-0.05, 1.05)
        task_axes[1].legend(fontsize=7)
    figure.tight_layout()
    reporting.save_figure(path, figure)
