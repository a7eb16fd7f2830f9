"""The base agent (and the oracle) in the "real" world: a seeded sweep over f2p.episode."""

from __future__ import annotations

import json
import os
import time
from typing import Any, NamedTuple

import jax
import numpy as np
from absl import logging

from f2p import episode, planner, tasks
from f2p.agent import model_agent
from f2p.io import failures, reporting
from f2p.io.config import parse_list
from f2p.recovery import POLICY_NAMES, make_policy, original_policy
from isaac_bridge.episodes import (
    BELIEFS,
    EpisodeSpec,
    episode_specs,
    load_model,
    make_perceive,
    make_world,
    oracle_plan_fn,
)
from isaac_bridge.mujoco_backend import MujocoSimulator


class Setup(NamedTuple):
    """What every episode of a run shares: the model, its point count, the oracle's simulator."""
    model: Any
    params: Any
    num_points: int
    simulator: Any


def play(spec: EpisodeSpec, planner_name: str, policies, setup: Setup, config
         ) -> dict[str, episode.EpisodeResult]:
    """Plays one seeded episode with the model (or oracle) planner under every policy."""
    world, nominal = make_world(spec, config, setup.num_points)
    agent = model_agent(setup.model, setup.params, config.planner,
                        make_perceive(world, nominal, config.belief), config.detection_threshold)
    if planner_name == "oracle":
        agent = agent._replace(plan=oracle_plan_fn(world, setup.simulator, config))
    metadata = {**spec._asdict(), "planner": planner_name, "checkpoint": config.checkpoint,
                "noise_level": float(config.noise_level), "belief": config.belief}
    key = jax.random.PRNGKey(spec.world_seed % (2**31))
    try:
        return episode.run_episode(world, tasks.get_task(spec.task), agent, policies, key,
                                   seeds={"scene_seed": spec.scene_seed,
                                          "world_seed": spec.world_seed},
                                   metadata=metadata, max_steps=int(config.max_steps))
    except ValueError as error:
        raise ValueError(f"{spec.task}/{spec.count}/{spec.split}/episode {spec.episode}: "
                         f"{error}") from error


def episode_records(spec: EpisodeSpec, planner_name: str, results, failure_dir: str | None
                    ) -> list[dict[str, Any]]:
    """One JSON record per policy; the episode's first detected failure saved once."""
    failure_file = None
    first = next(iter(results.values()))
    if first.failure is not None and failure_dir is not None:
        failure_file = os.path.basename(failures.save_failure(
            failure_dir, f"{spec.name}-{planner_name}", first.failure))
    return [{**spec._asdict(), "planner": planner_name, "policy": name, **result.record,
             "failure_file": failure_file} for name, result in results.items()]


def _relation_counts(triple_lists) -> str:
    """'above 5, left 2': how often each relation appears in lists of 'name(i, j)' strings."""
    names = [triple.split("(")[0] for triples in triple_lists for triple in triples]
    counts = {name: names.count(name) for name in dict.fromkeys(names)}
    return ", ".join(f"{name} {count}" for name, count in
                     sorted(counts.items(), key=lambda item: -item[1])) or "-"


GROUP_KEYS = ("task", "count", "split", "planner", "policy")


def summarise(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per task x object count x split x planner x policy.

    Columns: success with a Wilson interval; detections among failed and successful episodes;
    false alarms (a detection where the truth agreed with the prediction); missed true
    mismatches; simulator errors; planning time; the plan's predicted goal probability.
    """
    rows = []
    keys = list(dict.fromkeys(tuple(r[key] for key in GROUP_KEYS) for r in records))
    for key in keys:
        cell = [r for r in records if tuple(r[k] for k in GROUP_KEYS) == key]
        successes = sum(bool(r["success"]) for r in cell)
        failed, succeeded = ([r for r in cell if bool(r["success"]) == want]
                             for want in (False, True))
        detected = [r for r in cell if r["detected"]]
        low, high = reporting.wilson_interval(successes, len(cell))
        times = np.array([r["plan_seconds"] for r in cell])
        rows.append({
            **dict(zip(("task", "objects", "split", "planner", "policy"), key, strict=True)),
            "episodes": len(cell), "successes": successes,
            "success_rate": successes / len(cell), "ci_low": low, "ci_high": high,
            "failed": len(failed),
            "detected_among_failed": sum(r["detected"] for r in failed),
            "detection_rate": (sum(r["detected"] for r in failed) / len(failed)
                               if failed else float("nan")),
            "detected_in_successful": sum(r["detected"] for r in succeeded),
            "false_alarms": sum(bool(r["false_alarm"]) for r in detected),
            "detections": len(detected),
            "missed_true_mismatch": sum(r["first_true_mismatch_step"] is not None
                                        and not r["detected"] for r in cell),
            "replans": sum(sum(e["action"] == "replace" for e in r["recoveries"]) for r in cell),
            "errors": sum(r["error"] is not None for r in cell),
            "plan_seconds_median": float(np.median(times)),
            "plan_seconds_mean": float(times.mean()),
            "mean_goal_probability": float(np.mean([r["plan"]["goal_probability"]
                                                    for r in cell])),
            "unmet_relations": _relation_counts(r["unmet_goal"] for r in failed),
        })
    return rows


def method_name(row: dict[str, Any]) -> str:
    """'model/original', 'oracle/original', ...: the planner and the recovery policy."""
    return f"{row['planner']}/{row['policy']}"


def draw_figure(path: str, rows: list[dict[str, Any]]) -> None:
    """Bar chart per task: success of each method in distribution and OOD, Wilson intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(row["task"] for row in rows))
    methods = list(dict.fromkeys(method_name(row) for row in rows))
    figure, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.6), squeeze=False)
    for axis, name in zip(axes[0], names, strict=True):
        cells = [r for r in rows if r["task"] == name]
        groups = list(dict.fromkeys((r["objects"], r["split"]) for r in cells))
        width = 0.8 / len(methods)
        for offset, method in enumerate(methods):
            points = [(i, r) for i, group in enumerate(groups) for r in cells
                      if (r["objects"], r["split"]) == group and method_name(r) == method]
            if not points:
                continue
            x = [i + (offset - 0.5 * (len(methods) - 1)) * width for i, _ in points]
            rate = np.array([r["success_rate"] for _, r in points])
            error = np.array([rate - [r["ci_low"] for _, r in points],
                              [r["ci_high"] for _, r in points] - rate])
            axis.bar(x, rate, width, yerr=error, capsize=3, label=method)
        axis.set_xticks(range(len(groups)), [f"{count} obj, {'ID' if split == 'train' else 'OOD'}"
                                             for count, split in groups])
        axis.set_ylim(0.0, 1.3)
        axis.set_yticks(np.linspace(0.0, 1.0, 6))
        axis.set_title(name)
        axis.set_ylabel("success rate (95 % Wilson)")
        axis.legend(loc="upper center", ncol=2, fontsize=7)
    figure.suptitle("Base agent and oracle in the real world", y=1.02)
    reporting.save_figure(path, figure)


TABLE_COLUMNS = ("task", "objects", "split", "planner", "policy", "episodes", "success_rate",
                 "ci_low", "ci_high", "failed", "detection_rate", "detected_in_successful",
                 "false_alarms", "missed_true_mismatch", "replans", "errors",
                 "plan_seconds_median", "mean_goal_probability", "unmet_relations")


def markdown_report(results: dict[str, Any]) -> str:
    """The results.md text: the success table, then how each column is defined."""
    formats = {name: ".2f" for name in ("success_rate", "ci_low", "ci_high", "detection_rate",
                                        "plan_seconds_median", "mean_goal_probability")}
    config = results["config"]
    return (f"# Base agent in the real world\n\ncheckpoint `{config['checkpoint']}`, belief "
            f"`{config['belief']}`, perception noise {config['noise_level']}, "
            f"{config['num_episodes']} seeded episodes per cell (seed {config['seed']}).\n\n"
            + reporting.markdown_table(results["rows"], TABLE_COLUMNS, formats)
            + "\n- planner: `model` plans by CEM on the skill-effect model; `oracle` simulates "
            "candidate plans from the true scene in the nominal simulator (an upper bound).\n"
            "- policy, at the first detected failure (the same snapshot for every policy): "
            "`stop` ends the episode, `original` executes the rest of the plan, `replan` "
            "replans from the current observation with the same model.\n"
            "- success_rate: goal relations hold in the true final state; ci: 95 % Wilson.\n"
            "- detection_rate: detected failures among failed episodes.\n"
            "- detected_in_successful: successful episodes with a detection (the model was "
            "wrong, the world kinder than predicted, or the goal held when the episode stopped).\n"
            "- false_alarms: detections where the true relations agreed with the plan's "
            "prediction on every goal triple (the relation head misread the observation).\n"
            "- missed_true_mismatch: the true relations left the prediction on a goal triple "
            "but nothing was detected.\n"
            "- replans: plans replaced by the policy, summed over the cell's episodes.\n"
            "- mean_goal_probability: exp(plan score), the planner's belief that the plan "
            "works (the oracle's score is the fraction of its simulated candidates that "
            "succeed, see f2p.oracle).\n"
            "- unmet_relations: goal relations false in the true final state of failed "
            "episodes, by relation.\n"
            "- plan_seconds: planning at the start of an episode (the median hides jit "
            "compilation, paid once per skeleton length and goal size).\n")


def run(config, workdir: str) -> dict[str, Any]:
    """Plays every seeded episode; writes episodes/, failures/, results.json, .md and .png.

    Each episode's records are written to workdir/episodes/<name>.json as soon as it ends; a
    run started again over the same workdir reads them instead of playing them again.

    Args:
      config: the experiments/configs/evaluate.py config.
      workdir: output folder (created).

    Returns:
      The results dict written to results.json.
    """
    specs = episode_specs(config)  # validates tasks, counts and splits before any work
    if config.belief not in BELIEFS:
        raise ValueError(f"config.belief: {config.belief!r} is not one of {', '.join(BELIEFS)}")
    names = parse_list(config.policies, POLICY_NAMES, "policies")
    policies = {name: make_policy(name, max_replans=int(config.max_replans)) for name in names}
    oracle_splits = (parse_list(config.oracle_splits, tasks.SPLITS, "oracle_splits")
                     if str(config.oracle_splits).strip() else [])
    planner.as_planner_config(config.planner)
    model, params, num_points, saved = load_model(config)
    simulator = MujocoSimulator(num_workers=int(config.oracle.num_workers)) if oracle_splits \
        else None
    setup = Setup(model, params, num_points, simulator)
    episode_dir = os.path.join(workdir, "episodes")
    failure_dir = os.path.join(workdir, "failures") if config.save_failures else None
    os.makedirs(episode_dir, exist_ok=True)
    records: list[dict[str, Any]] = []
    started, played = time.perf_counter(), 0
    for index, spec in enumerate(specs):
        path = os.path.join(episode_dir, spec.name + ".json")
        if os.path.exists(path):
            with open(path) as file:
                records.extend(json.load(file))
            continue
        runs = [("model", policies)] + ([("oracle", {"original": original_policy})]
                                        if spec.split in oracle_splits else [])
        new = []
        for planner_name, chosen in runs:
            new += episode_records(spec, planner_name, play(spec, planner_name, chosen, setup,
                                                            config), failure_dir)
        reporting.write_json(path, new)
        records.extend(new)
        played += 1
        rate = played / (time.perf_counter() - started)
        logging.info("[%d/%d] %s: %s | %.2f episodes/s, ETA %.0fs", index + 1, len(specs),
                     spec.name, ", ".join(f"{r['planner']}/{r['policy']} "
                                          f"{'ok' if r['success'] else 'FAIL'}" for r in new),
                     rate, (len(specs) - index - 1) / rate)
    results = {"config": config.to_dict(), "environment": reporting.environment(),
               "checkpoint_metadata": saved.to_dict().get("data", {}),
               "num_points": num_points, "seconds": time.perf_counter() - started,
               "rows": summarise(records), "records": records,
               "seeds": [[s.scene_seed, s.world_seed] for s in specs],
               "figures": ["success.png"]}
    reporting.write_json(os.path.join(workdir, "results.json"), results)
    reporting.write_text(os.path.join(workdir, "results.md"), markdown_report(results))
    draw_figure(os.path.join(workdir, "success.png"), results["rows"])
    return results
