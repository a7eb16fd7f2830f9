"""Lifelong repair: a stream of OOD episodes, every wrong prediction repairing the current model.

run(config, workdir) plays, per task, the same stream of stream_length OOD episodes (seed
stream_seed) in up to four modes: `base` (the base agent, no repair), `replan` (the base model
replanning at a detection: what recovery gives without repair), `one_shot` (the paper's: the
first failure classified in repair_classes is repaired with the main table's fine-tune settings,
the episode replans and continues, and that model is kept, without further repair, for the rest
of the stream) and `lifelong` (every such failure repairs the current model in turn, at most one
repair per episode, replaying the base data and the labels of every earlier repair at
lifelong_replay_fraction), and `lifelong_explore` (lifelong, with an agent that explores when
the model expects even its best plan to fail: below a goal probability of explore_below it
executes another skeleton's plan, drawn at random, so that a wrong belief about the plans it
rejects can be contradicted and repaired; f2p.agent.choose_plan). Success is the episode's: a
repair inside an episode replans and continues, as in the main table's recovery. Every episode
is a JSON file and every repaired model and its labels are saved, so a stopped stream resumes
from its last episode with the model it had; the models are read only to play on, so the
episode files alone retabulate a finished stream.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import Any

import jax
import numpy as np
from absl import logging

from f2p import fail2progress, generation, tasks
from f2p.io import dataset, reporting, scores
from f2p.io.config import parse_list
from f2p.io.pretrained import export_params, load_base_model
from f2p.recovery import original_policy, replan_policy
from f2p.repair import POLICY_PREFIX, repair_policy
from f2p.scene import Transition
from isaac_bridge import loop
from isaac_bridge.episodes import make_specs

MODES = ("base", "replan", "one_shot", "lifelong", "lifelong_explore")
LIFELONG = ("lifelong", "lifelong_explore")  # the modes that repair every failure in turn


def _concatenate(batches: list[Transition]) -> Transition:
    return Transition(*(np.concatenate([np.asarray(b[i]) for b in batches])
                        for i in range(len(Transition._fields))))


def _repairer(setup: loop.Setup, task: str, mode: str, earlier: list[Transition], config):
    """The task's Repairer for a mode: lifelong replays base data and every earlier repair."""
    repairer = setup.repairers[task]
    if mode not in LIFELONG:
        return repairer
    settings = repairer.config._replace(replay_fraction=float(config.lifelong_replay_fraction))
    replay = _concatenate([repairer.replay, *earlier]) if earlier else repairer.replay
    return repairer._replace(replay=replay, config=settings)


def _read(cache: dict[str, Any], path: str, load):
    """load(path), read once per path."""
    if path not in cache:
        cache[path] = load(path)
    return cache[path]


def _episode_entry(result, spec, index: int, mode: str) -> dict[str, Any]:
    classes = [r.get("class") for r in result.record["recoveries"] if "class" in r]
    return {"mode": mode, "task": spec.task, "episode": spec.name, "index": index,
            "success": bool(result.success), "detected": bool(result.record["detected"]),
            "class": classes[0] if classes else None, "repaired": False, "model": None,
            "labels": None,
            # What tells why an episode failed without a repair: e.g. an undetected failure
            # whose plan the model itself expected to miss the goal (a low goal probability),
            # so that no observation contradicted a prediction.
            "goal_probability": float(result.record["plan"]["goal_probability"]),
            # Every skeleton's best log goal probability: whether the model, when it gives up,
            # also rates the skeleton that would have worked as hopeless.
            "skeleton": int(result.record["plan"]["skeleton_index"]),
            "skeleton_scores": list(result.record["plan"]["skeleton_scores"]),
            "explored": bool(result.record["plan"]["explored"]),
            "unmet_goal": list(result.record["unmet_goal"]),
            "statuses": [step["status"] for step in result.record["steps"]]}


def stream(mode: str, task: str, setup: loop.Setup, config, workdir: str
           ) -> list[dict[str, Any]]:
    """Plays (or reads back) one task's stream in one mode; returns its episode entries."""
    folder = os.path.join(workdir, "streams", mode, task)
    os.makedirs(folder, exist_ok=True)
    specs = make_specs(int(config.stream_seed), [task], [int(config.object_count)], ["ood"],
                       int(config.stream_length))
    generator = str(config.generator)
    classes = tuple(parse_list(config.repair_classes, fail2progress.CLASSES, "repair_classes"))
    explore_below = float(config.explore_below) if mode == "lifelong_explore" else 0.0
    # The latest repaired model and every repair's labels, read only when an episode is to be
    # played: a finished stream retabulates from its episode files alone.
    model_path, label_paths, loaded = None, [], {}
    entries: list[dict[str, Any]] = []
    started, fresh = time.perf_counter(), 0
    for index, spec in enumerate(specs):
        path = os.path.join(folder, spec.name + ".json")
        played = not os.path.exists(path)
        if not played:
            with open(path) as file:
                entry = json.load(file)
        else:
            params = setup.params if model_path is None else _read(
                loaded, model_path, lambda p: load_base_model(p)[1])
            earlier = [_read(loaded, p, dataset.load_dataset) for p in label_paths]
            captured: dict[str, Any] = {}
            repairs_left = mode in LIFELONG or (
                mode == "one_shot" and not any(e["repaired"] for e in entries))
            if repairs_left:  # one repair per episode: the stream is where rounds add up
                name, policy = POLICY_PREFIX + generator, repair_policy(
                    generator, _repairer(setup, task, mode, earlier, config), 1,
                    repair_classes=classes, on_repair=lambda result, _, captured=captured:
                    captured.update(result=result))
            elif mode == "replan":
                name, policy = "replan", replan_policy(int(config.max_replans))
            else:
                name, policy = "original", original_policy
            result = loop.play(spec, params, lambda world, name=name, policy=policy:
                               {name: policy}, setup, config, explore_below)[name]
            entry = _episode_entry(result, spec, index, mode)
            if "result" in captured:
                repaired = captured["result"]
                stem = os.path.join(workdir, "models", f"{mode}--{spec.name}")
                export_params(stem, repaired.params, setup.checkpoint_config,
                              {"stream": mode, "episode": spec.name, "repair": repaired.info})
                shutil.rmtree(stem + "--labels", ignore_errors=True)  # a stopped earlier try
                dataset.save_dataset(stem + "--labels", jax.device_get(repaired.transitions),
                                     {"episode": spec.name}, int(config.stream_seed))
                entry.update(repaired=True, model=os.path.relpath(stem, workdir),
                             labels=os.path.relpath(stem + "--labels", workdir),
                             repair=repaired.info)
            reporting.write_json(path, entry)
            fresh += 1
        if entry["repaired"]:
            model_path = os.path.join(workdir, entry["model"])
            label_paths.append(os.path.join(workdir, entry["labels"]))
        entries.append(entry)
        if played:
            rate = fresh / (time.perf_counter() - started)
            logging.info("%s %s [%d/%d] success %s repaired %s | %.3f episodes/s, ETA %.0f s",
                         mode, task, index + 1, len(specs), entry["success"],
                         entry["repaired"], rate, (len(specs) - index - 1) / rate)
    return entries


def windows(entries: list[dict[str, Any]], size: int) -> list[dict[str, float]]:
    """Success over consecutive windows of `size` episodes (a shorter last one is kept)."""
    return [{"start": start, "end": min(start + size, len(entries)),
             "repairs": sum(e["repaired"] for e in entries[start:start + size]),
             **scores.rate(sum(e["success"] for e in entries[start:start + size]),
                           len(entries[start:start + size]))}
            for start in range(0, len(entries), size)]


def check_config(config) -> tuple[list[str], list[str]]:
    """Returns (tasks, modes), checked; raises ValueError naming a bad field."""
    names = parse_list(config.tasks, tasks.task_names(), "tasks")
    modes = parse_list(config.modes, MODES, "modes")
    parse_list(config.generator, generation.GENERATOR_NAMES, "generator")
    parse_list(config.repair_classes, fail2progress.CLASSES, "repair_classes")
    parse_list(config.object_count, tasks.OBJECT_COUNTS, "object_count", int)
    for field in ("stream_length", "window"):
        if int(config[field]) < 1:
            raise ValueError(f"config.{field}: must be >= 1, got {config[field]}")
    if not 0.0 <= float(config.explore_below) < 1.0:
        raise ValueError(f"config.explore_below: {config.explore_below}, allowed [0, 1)")
    if not 0.0 <= float(config.lifelong_replay_fraction) < 1.0:
        raise ValueError(f"config.lifelong_replay_fraction: {config.lifelong_replay_fraction}"
                         ", allowed [0, 1)")
    loop.repair_config(config)
    return names, modes


def stream_on_disk(mode: str, task: str, config, workdir: str) -> list[dict[str, Any]] | None:
    """A finished stream's episode entries read from its files; None when any is missing."""
    folder = os.path.join(workdir, "streams", mode, task)
    specs = make_specs(int(config.stream_seed), [task], [int(config.object_count)], ["ood"],
                       int(config.stream_length))
    paths = [os.path.join(folder, spec.name + ".json") for spec in specs]
    if not all(os.path.exists(path) for path in paths):
        return None
    entries = []
    for path in paths:
        with open(path) as file:
            entries.append(json.load(file))
    return entries


def run(config, workdir: str) -> dict[str, Any]:
    """Plays every task's stream in every mode; writes results.json, results.md, lifelong.png.

    With config.only_existing, nothing is played: the finished streams on disk are tabulated
    and the others are listed as missing.

    Returns:
      The results dict written to results.json.
    """
    names, modes = check_config(config)
    if config.only_existing:
        found = {(mode, name): stream_on_disk(mode, name, config, workdir)
                 for mode in modes for name in names}
        streams: dict[str, dict[str, list]] = {}
        for (mode, name), entries in found.items():
            if entries is not None:
                streams.setdefault(mode, {})[name] = entries
        missing = [f"{mode}/{name}" for (mode, name), entries in found.items()
                   if entries is None]
        return write(workdir, config, streams, missing)
    os.makedirs(os.path.join(workdir, "models"), exist_ok=True)
    setup = loop.make_setup(config, workdir, names)
    try:
        streams = {mode: {name: stream(mode, name, setup, config, workdir) for name in names}
                   for mode in modes}
    finally:
        setup.simulator.close()
    return write(workdir, config, streams)


def write(workdir: str, config, streams: dict[str, dict[str, list]],
          missing: list[str] = ()) -> dict[str, Any]:
    """results.json, results.md (success per window, mode and task) and lifelong.png.

    `missing` names the 'mode/task' streams left out because they are not finished on disk.
    """
    size = int(config.window)
    rows = [{"mode": mode, "task": task, "episodes": len(entries),
             "repairs": sum(e["repaired"] for e in entries),
             # Failed with no detection: nothing contradicted the model, so nothing to repair.
             "undetected_failures": sum(not e["success"] and not e["detected"]
                                        for e in entries),
             # Episodes whose first plan explored another skeleton (lifelong_explore).
             "explored": sum(bool(e.get("explored")) for e in entries),
             "success": scores.rate(sum(e["success"] for e in entries), len(entries)),
             "windows": windows(entries, size)}
            for mode, by_task in streams.items() for task, entries in by_task.items()]
    results = {"config": config.to_dict(), "environment": reporting.environment(),
               "rows": rows, "figures": ["lifelong.png"]}
    if missing:
        results["partial"] = f"streams not finished on disk, left out: {', '.join(missing)}"
    spans = max((r["windows"] for r in rows), key=len, default=[])
    count = len(spans)
    lines = ["# Lifelong repair over a stream of OOD episodes", "",
             f"Tasks {config.tasks} at {config.object_count} objects; {config.stream_length} "
             f"OOD episodes per task (seed {config.stream_seed}), the same stream in every mode; "
             f"generator {config.generator}. base: no repair; replan: the base model replans "
             "at a detection; one_shot: the first failure classified "
             f"{config.repair_classes} is repaired (replay fraction "
             f"{config.finetune.replay_fraction}), its episode replans, and that model is kept "
             "without further repair; lifelong: every such failure repairs the current model "
             "and replans, replaying the base data and all earlier repairs' labels (replay "
             f"fraction {config.lifelong_replay_fraction}), so it differs from one_shot in "
             "both the number of repairs and the replay; lifelong_explore: lifelong, with an "
             "agent that executes another skeleton's plan, drawn at random, when its best "
             f"plan's goal probability is below {config.explore_below} (explored: such "
             "episodes). Success per window of "
             f"{size} episodes (repairs in the window); 95 % Wilson intervals. undetected: "
             "failed episodes in which no observation contradicted a prediction (the plan was "
             "executed as the model expected), which no mode can repair.", "",
             reporting.finetune_settings(config.to_dict()) + " The lifelong modes fine-tune "
             "the same way, replaying at their own fraction (above).", "",
             "| task | mode | repairs | undetected | explored | "
             + " | ".join(f"episodes {w['start'] + 1}-{w['end']}" for w in spans)
             + " | whole stream |", "|" + " --- |" * (count + 6)]
    task_order = list(dict.fromkeys(r["task"] for r in rows))  # the config's order
    for row in sorted(rows, key=lambda r: (task_order.index(r["task"]),
                                           MODES.index(r["mode"]))):
        cells = [f"{w['rate']:.1f} ({w['repairs']})" for w in row["windows"]]
        cells += ["-"] * (count - len(cells))
        whole = row["success"]
        lines.append(f"| {row['task']} | {row['mode']} | {row['repairs']} | "
                     f"{row['undetected_failures']} | {row['explored']} | " + " | ".join(cells)
                     + f" | {whole['rate']:.2f} [{whole['low']:.2f}, {whole['high']:.2f}] |")
    if missing:
        lines += ["", f"Partial: {results['partial']}."]
    lines += ["", "![success per window](lifelong.png)"]
    draw(os.path.join(workdir, "lifelong.png"), rows)
    reporting.write_json(os.path.join(workdir, "results.json"), results)
    reporting.write_text(os.path.join(workdir, "results.md"), "\n".join(lines) + "\n")
    return results


def draw(path: str, rows: list[dict[str, Any]]) -> None:
    """Success per window against the episode index, a panel per task, a line per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["task"] for r in rows))
    figure, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names), 3), squeeze=False)
    for axis, task in zip(axes[0], names, strict=True):
        for row in (r for r in rows if r["task"] == task):
            axis.plot([w["end"] for w in row["windows"]], [w["rate"] for w in row["windows"]],
                      marker="o", label=row["mode"])
        axis.set_title(task, fontsize=9)
        axis.set_xlabel("episodes played")
        axis.set_ylim(-0.05, 1.05)
    axes[0][0].set_ylabel("success in the window")
    axes[0][-1].legend(fontsize=7)
    reporting.save_figure(path, figure)
