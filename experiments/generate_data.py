"""Transition datasets: random task skills executed in MuJoCo, per task and split, with reports.

run(config, workdir, render) writes <workdir>/<task>/<split>/ (dataset shards + metadata.json,
resumable), the measured train/OOD comparison distribution_shift.md, results.json and, when
render is set, figures/*.png. experiments/generate_data_main.py is its command line.
"""

from __future__ import annotations

import os
import zlib

import numpy as np
from absl import logging
from tqdm import tqdm

from f2p import tasks
from f2p.io import dataset, reporting
from f2p.scene import (
    CONTAINER,
    FIXTURE,
    K_MAX,
    NUM_RELATIONS,
    RELATION_NAMES,
    Scene,
    Skill,
    Transition,
)

SHOWN_RELATIONS = ("above", "inside", "contact")
"""Relations listed in figures (the directional ones are too many to read)."""


def parse_list(text: str, allowed, field: str) -> list[str]:
    """Split a comma-separated config value and check every entry against `allowed`."""
    values = [value.strip() for value in str(text).split(",") if value.strip()]
    allowed = [str(a) for a in allowed]
    bad = [value for value in values if value not in allowed]
    if not values or bad:
        raise ValueError(f"config.{field}: {text!r} must list some of {', '.join(allowed)}")
    return values


def shard_rng(seed: int, task: str, split: str, shard: int) -> np.random.Generator:
    """Return the generator of one shard.

    It is a fixed function of (seed, task, split, shard index), so a resumed run writes exactly
    the shards an uninterrupted run would have written.
    """
    return np.random.default_rng([seed, zlib.crc32(task.encode()), tasks.SPLITS.index(split),
                                  shard])


def stack_rows(rows):
    """Stack unbatched NamedTuples (Scene, Skill, Transition) into one batch of NumPy arrays."""
    return type(rows[0])(*(np.stack(leaves) for leaves in zip(*rows, strict=True)))


def take_row(batch, index: int):
    """Return row `index` of a batched NamedTuple (Scene, Transition...) as NumPy values."""
    return type(batch)(*(np.asarray(leaf)[index] for leaf in batch))


def row_scene(row: Transition, after: bool = False) -> Scene:
    """Return the true Scene before (or after) the skill of one unbatched Transition."""
    return Scene(kind=row.kind, half_extents=row.half_extents,
                 pos=row.pos_t1 if after else row.pos_t, yaw=row.yaw_t1 if after else row.yaw_t,
                 mask=row.mask)


def measure(task: tasks.Task, row: Transition) -> dict[str, bool]:
    """Per-transition flags that tell the training from the OOD distribution."""
    scene = row_scene(row)
    skill = Skill(skill=row.skill, obj=row.obj, support=row.support, params=row.params)
    return {"ood_situation": task.ood_situation(scene, skill),
            **task.shift_statistics(scene, skill, row.relations_t, row.relations_t1, row.pos_t1)}


def generate_shard(task: tasks.Task, split: str, index: int, config, simulator):
    """Sample, execute and observe one shard; return (Transition batch, counts)."""
    from isaac_bridge.perception import render_observation

    rng = shard_rng(config.seed, task.name, split, index)
    counts = [int(c) for c in parse_list(config.object_counts, tasks.OBJECT_COUNTS,
                                          "object_counts")]
    attempted = min(config.shard_size, config.num_transitions - index * config.shard_size)
    scenes, skills = [], []
    for _ in range(attempted):
        scene = task.sample_scene(rng, int(rng.choice(counts)), split)
        scenes.append(scene)
        skills.append(task.sample_skill(rng, scene, split))
    outcome = simulator.execute(stack_rows(scenes), stack_rows(skills),
                                seed=int(rng.integers(2**31)))
    rows, flag_counts = [], {}
    for b in np.flatnonzero(np.asarray(outcome.ok)):
        pre, post, skill = take_row(outcome.pre, b), take_row(outcome.post, b), skills[b]
        observation = render_observation(pre, config.num_points, config.noise_level, rng)
        row = Transition(
            points_t=np.asarray(observation.points, np.float32),
            mask=np.asarray(pre.mask, bool), kind=np.asarray(pre.kind, np.int32),
            half_extents=np.asarray(pre.half_extents, np.float32),
            skill=np.int32(skill.skill), obj=np.int32(skill.obj),
            support=np.int32(skill.support), params=np.asarray(skill.params, np.float32),
            relations_t=np.asarray(outcome.relations_pre[b], bool),
            relations_t1=np.asarray(outcome.relations_post[b], bool),
            pos_t=np.asarray(pre.pos, np.float32), pos_t1=np.asarray(post.pos, np.float32),
            yaw_t=np.asarray(pre.yaw, np.float32), yaw_t1=np.asarray(post.yaw, np.float32))
        rows.append(row)
        for name, value in measure(task, row).items():
            flag_counts[name] = flag_counts.get(name, 0) + int(value)
    status = np.bincount(np.asarray(outcome.status), minlength=len(outcome.status_names))
    shard_counts = {
        "attempted": attempted, "kept": len(rows), "dropped": attempted - len(rows),
        "status": {name: int(n) for name, n in zip(outcome.status_names, status, strict=True)},
        "flags": flag_counts,
    }
    if rows:
        return stack_rows(rows), shard_counts
    empty = stack_rows([row_template(config.num_points)])
    return Transition(*(leaf[:0] for leaf in empty)), shard_counts


def row_template(num_points: int) -> Transition:
    """Return a zero Transition row with the dataset's shapes and dtypes (for empty shards)."""
    k, r = K_MAX, NUM_RELATIONS
    return Transition(
        points_t=np.zeros((k, num_points, 3), np.float32), mask=np.zeros(k, bool),
        kind=np.zeros(k, np.int32), half_extents=np.zeros((k, 3), np.float32),
        skill=np.int32(0), obj=np.int32(0), support=np.int32(0), params=np.zeros(2, np.float32),
        relations_t=np.zeros((k, k, r), bool), relations_t1=np.zeros((k, k, r), bool),
        pos_t=np.zeros((k, 3), np.float32), pos_t1=np.zeros((k, 3), np.float32),
        yaw_t=np.zeros(k, np.float32), yaw_t1=np.zeros(k, np.float32))


def dataset_config(config, task: str, split: str) -> dict:
    """Return the config entries that fix a dataset's content (not how fast it is made)."""
    keys = ("object_counts", "num_transitions", "shard_size", "num_points", "noise_level")
    return {"task": task, "split": split, **{key: config[key] for key in keys}}


def generate(task: tasks.Task, split: str, config, directory: str, simulator) -> dict:
    """Write (or resume) the dataset of one (task, split); return its summary counts."""
    if config.num_transitions < 1 or config.shard_size < 1:
        raise ValueError("config.num_transitions and config.shard_size must be >= 1")
    num_shards = -(-config.num_transitions // config.shard_size)
    writer = dataset.DatasetWriter(directory, dataset_config(config, task.name, split),
                                   config.seed, num_shards)
    pending = writer.pending()
    if len(pending) < num_shards:
        logging.info("%s/%s: resuming, %d of %d shards already written", task.name, split,
                     num_shards - len(pending), num_shards)
    with tqdm(total=num_shards, initial=num_shards - len(pending), unit="shard",
              desc=f"{task.name}/{split}") as progress:
        for index in pending:
            batch, counts = generate_shard(task, split, index, config, simulator)
            writer.write_shard(index, batch, counts)
            progress.set_postfix(kept=counts["kept"], dropped=counts["dropped"])
            progress.update()
    summary = {"attempted": 0, "kept": 0, "dropped": 0, "status": {}, "flags": {}}
    for entry in writer.metadata["shards"].values():
        for key in ("attempted", "kept", "dropped"):
            summary[key] += entry[key]
        for group in ("status", "flags"):
            for name, value in entry[group].items():
                summary[group][name] = summary[group].get(name, 0) + value
    return writer.finish(summary)["summary"]


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
        after = render_observation(row_scene(row, after=True), num_points, 0.0).points
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
