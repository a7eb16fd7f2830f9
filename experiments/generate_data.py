"""Transition datasets per task and split (isaac_bridge.datagen), with reports and figures.

run(config, workdir, render) writes <workdir>/<task>/<split>/ (dataset shards + metadata.json,
resumable), the measured train/OOD comparison distribution_shift.md, results.json and, when
render is set, figures/*.png. experiments/generate_data_main.py is its command line.
"""

from __future__ import annotations

import os

import numpy as np

from f2p import tasks
from f2p.io import dataset, reporting
from f2p.io.config import parse_list
from f2p.scene import CONTAINER, FIXTURE, RELATION_NAMES, take_row, transition_scene

SHOWN_RELATIONS = ("above", "inside", "contact")
"""Relations listed in figures (the directional ones are too many to read)."""


def shift_table(summaries: dict) -> str:
    """Return a Markdown table: per task and flag, the fraction of kept transitions per split."""
    lines = ["# Training vs OOD distributions, measured on generated transitions", "",
             "Fractions of kept transitions (executed, status ok).", "",
             "| task | measure | " + " | ".join(next(iter(summaries.values()))) + " |",
             "| --- | --- |" + " --- |" * len(next(iter(summaries.values())))]
    for task_name, by_split in summaries.items():
        splits = list(by_split)
        names = sorted({name for s in splits for name in by_split[s]["flags"]})
        lines.append(f"| {task_name} | kept / attempted | " + " | ".join(
            f"{by_split[s]['kept']} / {by_split[s]['attempted']}" for s in splits) + " |")
        for name in names:
            cells = [by_split[s]["flags"].get(name, 0) / max(by_split[s]["kept"], 1)
                     for s in splits]
            lines.append(f"| {task_name} | {name} | " + " | ".join(f"{c:.3f}" for c in cells)
                         + " |")
    return "\n".join(lines) + "\n"


def _relation_lines(relations: np.ndarray, mask: np.ndarray) -> set[str]:
    slots = np.flatnonzero(mask)
    return {f"{name}({i},{j})" for name in SHOWN_RELATIONS for i in slots for j in slots
            if i != j and relations[i, j, RELATION_NAMES.index(name)]
            and (name != "contact" or i < j)}


def render_figures(task_name: str, split: str, directory: str, count: int, out_dir: str,
                   num_points: int) -> list[str]:
    """Draw the first `count` transitions: point clouds and relations before and after."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from isaac_bridge.perception import render_observation

    data = dataset.load_dataset(directory)
    paths = []
    colours = plt.get_cmap("tab10")
    for index in range(min(count, data.mask.shape[0])):
        row = take_row(data, index)
        after = render_observation(transition_scene(row, after=True), num_points, 0.0).points
        figure = plt.figure(figsize=(13, 5.5))
        # Same limits in both panels, so motion reads as motion (the cameras re-frame).
        seen = np.concatenate([row.points_t[row.mask], after[row.mask]]).reshape(-1, 3)
        low, high = seen.min(axis=0), seen.max(axis=0)
        for column, (points, title) in enumerate(((row.points_t, "before"), (after, "after"))):
            axis = figure.add_subplot(1, 3, column + 1, projection="3d")
            for slot in np.flatnonzero(row.mask):
                colour = "0.6" if row.kind[slot] == FIXTURE else colours(slot % 10)
                marker = "s" if row.kind[slot] == CONTAINER else "o"
                axis.scatter(*points[slot].T, s=3, color=colour, marker=marker, label=str(slot))
            axis.set_title(title)
            axis.set(xlim=(low[0], high[0]), ylim=(low[1], high[1]), zlim=(low[2], high[2]))
            axis.set_xlabel("x")
            axis.set_ylabel("y")
        before_set = _relation_lines(row.relations_t, row.mask)
        after_set = _relation_lines(row.relations_t1, row.mask)
        text = ["kept: " + ", ".join(sorted(before_set & after_set)),
                "lost: " + ", ".join(sorted(before_set - after_set)),
                "new: " + ", ".join(sorted(after_set - before_set))]
        skill = ("pick_place", "push")[int(row.skill)]
        axis = figure.add_subplot(1, 3, 3)
        axis.axis("off")
        axis.text(0.0, 1.0, "\n\n".join(_wrap(line) for line in text), va="top", fontsize=8)
        figure.suptitle(f"{task_name}/{split} #{index}: {skill}(obj={int(row.obj)}, "
                        f"support={int(row.support)}, dx,dy={np.round(row.params, 3)})")
        figure.axes[0].legend(loc="upper left", fontsize=6, markerscale=3)
        path = os.path.join(out_dir, f"{task_name}_{split}_{index}.png")
        reporting.save_figure(path, figure)
        paths.append(path)
    return paths


def _wrap(line: str, width: int = 60) -> str:
    words, lines, current = line.split(" "), [], ""
    for word in words:
        if len(current) + len(word) > width:
            lines.append(current)
            current = "  "
        current += word + " "
    return "\n".join(lines + [current])


def run(config, workdir: str, render: bool = False) -> dict:
    """Generate every configured (task, split) dataset and write the reports into workdir.

    Args:
      config: a generate_data config (experiments/configs/generate_data.py).
      workdir: output folder; existing datasets in it are resumed (or refused when their
        config differs).
      render: also draw config.render_count transitions per dataset into workdir/figures.

    Returns:
      The results written to results.json: config, seed, per-(task, split) summaries, figure
      paths, environment (versions, devices) and dataset_version.

    """
    from isaac_bridge.datagen import generate
    from isaac_bridge.mujoco_backend import MujocoSimulator

    task_names = parse_list(config.tasks, tasks.task_names(), "tasks")
    splits = parse_list(config.splits, tasks.SPLITS, "splits")
    os.makedirs(workdir, exist_ok=True)
    summaries, figures = {}, []
    with MujocoSimulator(num_workers=config.num_workers) as simulator:
        for task_name in task_names:
            task = tasks.get_task(task_name)
            summaries[task_name] = {}
            for split in splits:
                directory = os.path.join(workdir, task_name, split)
                summaries[task_name][split] = generate(task, split, config, directory, simulator)
                if render:
                    os.makedirs(os.path.join(workdir, "figures"), exist_ok=True)
                    figures += render_figures(task_name, split, directory, config.render_count,
                                              os.path.join(workdir, "figures"),
                                              config.num_points)
    reporting.write_text(os.path.join(workdir, "distribution_shift.md"), shift_table(summaries))
    results = {"config": config.to_dict(), "seed": config.seed, "summaries": summaries,
               "figures": [os.path.relpath(p, workdir) for p in figures],
               "environment": reporting.environment(),
               "dataset_version": dataset.DATASET_VERSION}
    reporting.write_json(os.path.join(workdir, "results.json"), results)
    return results
