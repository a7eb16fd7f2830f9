"""Sim2Real study: repair and its baselines, and the classifier, against a growing reality gap.

run(config, workdir) takes two gap axes, perception noise (config.noise_levels, the world's one
noise knob) and friction (config.friction_gaps: the world's friction fixed at 1 - gap times the
nominal simulator's). At every level it plays the same fixed list of num_episodes OOD episodes
per task (seed failure_seed) and keeps every detection whatever its class, scores Real2Sim
classification against the ground truth, and runs every method's (failure, method) unit
(isaac_bridge.loop): wrong_prediction failures are repaired, sim2real ones let the plan run on.
Success at a level is the share of the list reaching the goal: undetected episodes count as they
ended, detected ones as the method recovered them (a fixed list, so the detection rate, which
moves with the gap, does not bias the rate). Every episode and unit is a JSON file, so a
stopped run resumes.
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any, NamedTuple

import numpy as np
from absl import logging

from f2p import fail2progress, tasks
from f2p.io import reporting, scores
from f2p.io.config import parse_list
from isaac_bridge import loop

AXES = ("noise", "friction")
"""The gap axes: perception noise level and friction gap, both in [0, 1)."""


class Level(NamedTuple):
    """One gap level: its axis, its value and the world fields it sets."""

    axis: str
    gap: float
    overrides: dict[str, Any]

    @property
    def name(self) -> str:
        """E.g. noise=0.2: the level's folder under workdir/levels/."""
        return f"{self.axis}={self.gap:g}"


def _gaps(text: str, field: str) -> list[float]:
    values = [v.strip() for v in str(text).split(",") if v.strip()]
    gaps = []
    for value in values:
        try:
            gap = float(value)
        except ValueError:
            raise ValueError(f"config.{field}: {value!r} is not a number") from None
        if not 0.0 <= gap < 1.0:
            raise ValueError(f"config.{field}: {gap} is outside [0, 1)")
        gaps.append(gap)
    if len(set(gaps)) != len(gaps):
        raise ValueError(f"config.{field}: repeated level in {text!r}")
    return gaps


def levels(config) -> list[Level]:
    """The gap levels of config.noise_levels and config.friction_gaps, checked."""
    found = [Level("noise", gap, {"noise_level": gap})
             for gap in _gaps(config.noise_levels, "noise_levels")]
    found += [Level("friction", gap, {"friction_scale": (1.0 - gap, 1.0 - gap)})
              for gap in _gaps(config.friction_gaps, "friction_gaps")]
    if not found:
        raise ValueError("config.noise_levels and config.friction_gaps: both empty; give at "
                         "least one gap level")
    return found


def level_config(config, level: Level):
    """The config of one level: the gap's world fields set."""
    updated = config.copy_and_resolve_references()
    for field, value in level.overrides.items():
        setattr(updated, field, value)
    return updated


def check_config(config) -> tuple[list[str], list[str], list[Level]]:
    """Returns (tasks, methods, levels), checked; raises ValueError naming a bad field."""
    names = parse_list(config.tasks, tasks.task_names(), "tasks")
    methods = loop.method_names(config)
    parse_list(config.repair_classes, fail2progress.CLASSES, "repair_classes")
    if int(config.num_episodes) < 1:
        raise ValueError(f"config.num_episodes: must be >= 1, got {config.num_episodes}")
    parse_list(config.object_count, tasks.OBJECT_COUNTS, "object_count", int)
    if int(config.num_future) < 0 or int(config.num_retention) < 0:
        raise ValueError("config.num_future, config.num_retention: must be >= 0, got "
                         f"{config.num_future}, {config.num_retention}")
    loop.repair_config(config)
    return names, methods, levels(config)


def run(config, workdir: str) -> dict[str, Any]:
    """Plays every level's episodes and units; writes results.json, results.md and figures.

    Returns:
      The results dict written to results.json.
    """
    names, methods, gap_levels = check_config(config)
    started, done = time.perf_counter(), 0
    setup = loop.make_setup(config, workdir, names)  # replay data is noise-free: shared
    collected: dict[str, dict[str, list]] = {}
    units: dict[str, list[dict[str, Any]]] = {}
    try:
        for position, level in enumerate(gap_levels):
            here = level_config(config, level)
            folder = os.path.join(workdir, "levels", level.name)
            for sub in ("collect", "failures", "base", "units", "generated", "models"):
                os.makedirs(os.path.join(folder, sub), exist_ok=True)
            # Every episode is played and every detection kept whatever its class: collect()
            # stops once num_failures are kept, so asking for one per episode never stops it.
            count = int(config.num_episodes)
            collected[level.name] = {
                name: loop.collect(name, setup, here, folder, num_failures=count,
                                   max_episodes=count,
                                   keep_classes=",".join(fail2progress.CLASSES))
                for name in names}
            base = {name: loop.base_evaluation(name, setup, here, folder) for name in names}
            units[level.name] = []
            for name in names:
                for entry in (e for e in collected[level.name][name] if e["kept"]):
                    for method in methods:
                        path = os.path.join(folder, "units",
                                            loop.unit_name(entry["name"], method) + ".json")
                        done += not os.path.exists(path)
                        units[level.name].append(loop.read_or_make(path, functools.partial(
                            loop.run_unit, entry, method, setup, here, folder, base[name])))
            if not done:
                logging.info("[%d/%d levels] %s | every unit already on disk", position + 1,
                             len(gap_levels), level.name)
                continue
            rate = done / (time.perf_counter() - started)
            logging.info("[%d/%d levels] %s | %.4f units/s, ETA %.0f s", position + 1,
                         len(gap_levels), level.name, rate,
                         (len(gap_levels) - position - 1) * len(units[level.name]) / rate)
    finally:
        setup.simulator.close()
    return write(workdir, config, gap_levels, collected, units)


def episode_success(entries: list[dict[str, Any]], units: list[dict[str, Any]], method: str
                    ) -> dict[str, float]:
    """Share of the played OOD episodes reaching the goal under `method` (Wilson interval).

    Undetected episodes count as they ended; a detected one as the method's unit recovered it.
    """
    recovered = {u["failure"]: bool(u["recovery"]) for u in units if u["method"] == method}
    outcomes = [recovered[e["name"]] if e["detected"] else bool(e["success"])
                for e in entries if not e["detected"] or e["name"] in recovered]
    return scores.rate(sum(outcomes), len(outcomes))


def confusion(entries: list[dict[str, Any]]) -> dict[str, int]:
    """Counts of 'predicted|true' classes over the detected episodes."""
    counts: dict[str, int] = {}
    for entry in entries:
        if entry["detected"]:
            key = f"{entry['predicted_class']}|{entry['true_class']}"
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def halving_gap(gaps: list[float], rates: list[float]) -> float | None:
    """The gap at which a rate first falls to half its value at the smallest gap.

    Linear between measured levels; None when it never halves (or starts at 0).
    """
    order = np.argsort(gaps)
    gaps, rates = np.asarray(gaps, float)[order], np.asarray(rates, float)[order]
    if len(gaps) == 0 or not np.isfinite(rates[0]) or rates[0] <= 0:
        return None
    half = rates[0] / 2
    for i in range(1, len(gaps)):
        if rates[i] <= half:
            fraction = (rates[i - 1] - half) / (rates[i - 1] - rates[i])
            return float(gaps[i - 1] + fraction * (gaps[i] - gaps[i - 1]))
    return None


def pooled_rows(rows: list[dict[str, Any]], methods: list[str]) -> list[dict[str, Any]]:
    """Episode success summed over the tasks: one row per axis x gap x method, task 'all'.

    Four episodes a task make each task's curve coarse; the pooled curve is the one whose
    halving gap the study reports.
    """
    pooled = []
    for axis, gap in dict.fromkeys((r["axis"], r["gap"]) for r in rows):
        for method in methods:
            cells = [r["success"] for r in rows
                     if (r["axis"], r["gap"], r["method"]) == (axis, gap, method)]
            pooled.append({"axis": axis, "gap": gap, "task": "all", "method": method,
                           "success": scores.rate(sum(c["successes"] for c in cells),
                                                  sum(c["trials"] for c in cells))})
    return pooled


def level_rows(level: Level, entries: dict[str, list], units: list[dict[str, Any]],
               methods: list[str]) -> list[dict[str, Any]]:
    """One row per task x method at a level: episode success, the unit rates, confusion."""
    rows = []
    summaries = {(row["task"], row["method"]): row for row in scores.summarise(units)}
    for task, played in entries.items():
        matrix = confusion(played)
        detected = sum(matrix.values())
        correct = sum(n for key, n in matrix.items() if len(set(key.split("|"))) == 1)
        for method in methods:
            cell = [u for u in units if u["task"] == task]
            summary = summaries.get((task, method), {})
            rows.append({"axis": level.axis, "gap": level.gap, "task": task, "method": method,
                         "episodes": len(played), "detected": detected,
                         "success": episode_success(played, cell, method),
                         **{name: summary.get(name, scores.rate(0, 0))
                            for name in ("recovery", "future")},
                         "classified_sim2real": sum(n for key, n in matrix.items()
                                                    if key.startswith("sim2real|")),
                         "classification_accuracy": correct / detected if detected
                         else float("nan"), "confusion": matrix})
    return rows


def write(workdir: str, config, gap_levels: list[Level], collected: dict[str, dict],
          units: dict[str, list]) -> dict[str, Any]:
    """results.json, results.md (a table per axis, the halving gaps) and sim2real.png."""
    methods = loop.method_names(config)
    rows = [row for level in gap_levels
            for row in level_rows(level, collected[level.name], units[level.name], methods)]
    pooled = pooled_rows(rows, methods)
    halving = []
    for axis in AXES:
        for task in [*dict.fromkeys(r["task"] for r in rows), "all"]:
            for method in methods:
                cells = [r for r in rows + pooled if (r["axis"], r["task"], r["method"])
                         == (axis, task, method)]
                if len(cells) > 1:
                    halving.append({"axis": axis, "task": task, "method": method,
                                    "gap": halving_gap([c["gap"] for c in cells],
                                                       [c["success"]["rate"] for c in cells])})
    results = {"config": config.to_dict(), "environment": reporting.environment(),
               "rows": rows, "pooled": pooled, "halving": halving, "figures": ["sim2real.png"]}
    lines = ["# Success against the Sim2Real gap", "",
             f"Tasks {config.tasks} at {config.object_count} objects; at each level the same "
             f"{config.num_episodes} OOD episodes per task (seed {config.failure_seed}), all "
             f"played; {config.num_future} future OOD episodes (seed {config.eval_seed}) per "
             "repaired model. success: share of the played episodes reaching the goal "
             "(undetected ones as they ended, detected ones as the method recovered them); "
             "recovery: over the detections; classification: predicted|true Real2Sim class. "
             "Noise: the world's perception-noise level; friction gap g: the world's friction "
             "is (1 - g) x the nominal simulator's. Halving gap: where success, linear between "
             "levels, first falls to half its value at the smallest gap. 95 % Wilson "
             "intervals (trials).", ""]
    for axis in AXES:
        cells = [r for r in rows if r["axis"] == axis]
        if not cells:
            continue
        lines += [f"## {axis}", "", "| gap | task | method | episodes | success | recovery "
                  "| future OOD | classified sim2real | accuracy | confusion |",
                  "|" + " --- |" * 10]
        for r in cells:
            # A bare '|' would end the Markdown cell.
            matrix = ", ".join(key.replace("|", "\\|") + f" {count}"
                               for key, count in r["confusion"].items()) or "-"
            lines.append(f"| {r['gap']:g} | {r['task']} | {r['method']} | {r['episodes']} | "
                         f"{scores.cell(r['success'])} | {scores.cell(r['recovery'])} | "
                         f"{scores.cell(r['future'])} | {r['classified_sim2real']}/{r['detected']}"
                         f" | {r['classification_accuracy']:.2f} | {matrix} |")
        lines.append("")
        gaps = list(dict.fromkeys(r["gap"] for r in cells))
        lines += [f"All tasks pooled, {axis}: success by gap.", "",
                  "| method | " + " | ".join(f"{g:g}" for g in gaps) + " |",
                  "|" + " --- |" * (len(gaps) + 1)]
        for method in methods:
            lines.append(f"| {method} | " + " | ".join(
                scores.cell(r["success"]) for r in pooled
                if (r["axis"], r["method"]) == (axis, method)) + " |")
        lines.append("")
    if halving:
        lines += ["## Gap at which success halves", "", "| axis | task | method | gap |",
                  "| --- | --- | --- | --- |"]
        lines += [f"| {h['axis']} | {h['task']} | {h['method']} | "
                  f"{'not reached' if h['gap'] is None else format(h['gap'], '.2f')} |"
                  for h in halving]
        lines.append("")
    lines.append("![success against the gap](sim2real.png)")
    draw(os.path.join(workdir, "sim2real.png"), rows + pooled, methods)
    reporting.write_json(os.path.join(workdir, "results.json"), results)
    reporting.write_text(os.path.join(workdir, "results.md"), "\n".join(lines) + "\n")
    return results


def draw(path: str, rows: list[dict[str, Any]], methods: list[str]) -> None:
    """Success against the gap: a row of panels per axis, a panel per task, a line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gap_axes = list(dict.fromkeys(r["axis"] for r in rows))
    tasks = list(dict.fromkeys(r["task"] for r in rows))  # 'all' last: pooled rows follow
    figure, axes = plt.subplots(len(gap_axes), len(tasks), figsize=(3.2 * len(tasks),
                                3 * len(gap_axes)), squeeze=False)
    for row_axes, gap_axis in zip(axes, gap_axes, strict=True):
        for axis, task in zip(row_axes, tasks, strict=True):
            for method in methods:
                cells = [r for r in rows if (r["axis"], r["task"], r["method"])
                         == (gap_axis, task, method)]
                rate = [c["success"]["rate"] for c in cells]
                axis.errorbar([c["gap"] for c in cells], rate,
                              yerr=[[c["success"]["rate"] - c["success"]["low"] for c in cells],
                                    [c["success"]["high"] - c["success"]["rate"]
                                     for c in cells]],
                              marker="o", capsize=3, label=method)
            axis.set_title("all tasks pooled" if task == "all" else task, fontsize=9)
            axis.set_xlabel("perception noise" if gap_axis == "noise" else "friction gap")
            axis.set_ylim(-0.05, 1.05)
        row_axes[0].set_ylabel("success")
    axes[0][-1].legend(fontsize=7)
    figure.tight_layout()
    reporting.save_figure(path, figure)
