"""The base agent in the "real" world: seeded episodes, failure detection, success table."""

from __future__ import annotations

import os
import time
import zlib
from typing import Any, NamedTuple

import jax
import numpy as np
from absl import logging

from f2p import agent, planner, tasks
from f2p.io import failures, reporting
from f2p.scene import RELATION_NAMES, SKILL_NAMES, Scene, Skill
from f2p.world import Observation
from isaac_bridge.real2sim import fit_scene
from isaac_bridge.real_world import PhysicsRanges, RealWorld

BELIEFS = ("real2sim", "nominal")


class EpisodeSpec(NamedTuple):
    """One seeded episode: task, object count, split, index and the seeds derived from them."""
    task: str
    count: int
    split: str
    episode: int
    scene_seed: int
    world_seed: int


def parse_list(config, field: str, allowed, cast=str) -> list:
    """Splits a comma-separated config field and checks every entry against `allowed`."""
    values = [cast(part.strip()) for part in str(config[field]).split(",") if part.strip()]
    if not values:
        raise ValueError(f"config.{field}: empty; allowed: {', '.join(map(str, allowed))}")
    for value in values:
        if value not in allowed:
            raise ValueError(f"config.{field}: {value!r} is not one of "
                             f"{', '.join(map(str, allowed))}")
    return values


def episode_specs(config) -> list[EpisodeSpec]:
    """The fixed list of seeded episodes: every task x object count x split x episode index.

    Seeds depend on (config.seed, task name, count, split, episode) only, so adding a task or
    a count to the config leaves every other episode unchanged.
    """
    names = parse_list(config, "tasks", tasks.task_names())
    counts = parse_list(config, "object_counts", tasks.OBJECT_COUNTS, int)
    splits = parse_list(config, "splits", tasks.SPLITS)
    if int(config.num_episodes) < 1:
        raise ValueError(f"config.num_episodes: must be >= 1, got {config.num_episodes}")
    specs = []
    for name in names:
        for count in counts:
            for split in splits:
                for episode in range(int(config.num_episodes)):
                    entropy = [int(config.seed), zlib.crc32(name.encode()), count,
                               tasks.SPLITS.index(split), episode]
                    scene_seed, world_seed = np.random.SeedSequence(entropy).generate_state(2)
                    specs.append(EpisodeSpec(name, count, split, episode, int(scene_seed),
                                             int(world_seed)))
    return specs


def belief_scene(observation, world: RealWorld, nominal: Scene, belief: str) -> Scene:
    """The agent's scene estimate that defines the goal's and skeletons' slots and the sizes.

    Args:
      observation: the first Observation of the episode.
      world: the RealWorld (only its public kind and fixtures are read).
      nominal: the sampled task scene (before the world's hidden size perturbation).
      belief: "real2sim" (boxes fitted to the observation; the nominal boxes only for objects
        seen by too few points) or "nominal".
    """
    if belief == "nominal":
        return nominal
    if belief == "real2sim":
        return fit_scene(observation, world.kind, fixtures=world.fixtures, prior=nominal)
    raise ValueError(f"config.belief: {belief!r} is not one of {', '.join(BELIEFS)}")


def checked_goal(task, scene: Scene, mask, where: str):
    """Returns task.goal(scene), or a ValueError when it names objects the scene does not have."""
    goal = task.goal(scene)
    try:
        agent.goal_triples(goal, mask)
    except ValueError as error:
        raise ValueError(f"{where}: the {task.name} goal names objects the scene does not have "
                         f"(valid slots {np.flatnonzero(mask).tolist()}): {error}") from error
    return goal


def _skill_at(skills: Skill, step: int) -> Skill:
    return Skill(*(np.asarray(field)[step] for field in skills))


def _skill_record(skill: Skill) -> dict[str, Any]:
    return {"skill": SKILL_NAMES[int(skill.skill)], "obj": int(skill.obj),
            "support": int(skill.support), "params": np.asarray(skill.params).round(4).tolist()}


def run_episode(spec: EpisodeSpec, model, params, num_points: int, config,
                failure_dir: str | None) -> dict[str, Any]:
    """Plays one episode: observe, plan, execute step by step, stop at a detected failure.

    Returns:
      The episode record (JSON-ready): seeds, plan, per-step checks, outcome, timings.
    """
    task = tasks.get_task(spec.task)
    where = f"{spec.task}/{spec.count}/{spec.split}/episode {spec.episode}"
    nominal = task.sample_scene(np.random.default_rng(spec.scene_seed), spec.count, spec.split)
    ranges = PhysicsRanges(tuple(config.friction_scale), tuple(config.mass_scale),
                           tuple(config.size_scale))
    started = time.perf_counter()
    world = RealWorld(nominal, ranges, float(config.noise_level), spec.world_seed,
                      num_points=num_points)
    observation = world.observe()
    belief = belief_scene(observation, world, nominal, config.belief)
    mask = np.asarray(observation.mask, bool) & np.asarray(belief.mask, bool)
    seen = observation._replace(mask=mask, half_extents=belief.half_extents)
    goal = checked_goal(task, belief, mask, where)
    plan_started = time.perf_counter()
    plan = planner.plan(jax.random.PRNGKey(spec.world_seed % (2**31)), model, params, seen,
                        task, belief, config.planner)
    plan_seconds = time.perf_counter() - plan_started
    record = {**spec._asdict(), "initial_status": world.true_status(),
              "plan": {"skeleton_index": plan.skeleton_index, "score": plan.score,
                       "goal_probability": float(np.exp(plan.score)),
                       "skeleton_scores": plan.skeleton_scores.tolist(),
                       "skills": [_skill_record(_skill_at(plan.skills, t))
                                  for t in range(plan.relations.shape[0])]},
              "goal": goal.describe(), "plan_seconds": plan_seconds, "steps": [],
              "detected": False, "detection_step": None, "false_alarm": None,
              "first_true_mismatch_step": None, "error": None, "failure_file": None}
    for step in range(plan.relations.shape[0]):
        skill = _skill_at(plan.skills, step)
        before, truth_before = observation, world.true_relations()
        try:
            observation = world.step(skill)
        except RuntimeError as error:  # the simulator diverged: the episode cannot go on
            record["error"] = str(error)
            break
        truth = world.true_relations()
        observed = agent.read_relations(model, params, seen._replace(points=observation.points))
        check = agent.detect_failure(plan.relations[step], observed, goal, mask,
                                     config.detection_threshold)
        true_check = agent.detect_failure(plan.relations[step], truth, goal, mask,
                                          config.detection_threshold)
        if true_check.failed and record["first_true_mismatch_step"] is None:
            record["first_true_mismatch_step"] = step
        record["steps"].append({"step": step, "status": world.true_status(),
                                "detected": check.failed, "true_mismatch": true_check.failed,
                                "triples": agent.triples_table(check, truth)})
        if not check.failed:
            continue
        if not record["detected"]:
            record.update(detected=True, detection_step=step,
                          false_alarm=not true_check.failed)
            if failure_dir is not None:
                record["failure_file"] = os.path.basename(failures.save_failure(
                    failure_dir, f"{spec.task}-n{spec.count}-{spec.split}-e{spec.episode:03d}",
                    _failure_arrays(before, observation, seen, belief, plan, observed,
                                    truth_before, truth),
                    {**spec._asdict(), "step": step, "plan_score": plan.score,
                     "skeleton_index": plan.skeleton_index, "mismatches": check.describe(),
                     "triples": agent.triples_table(check),
                     "noise_level": float(config.noise_level), "belief": config.belief,
                     "checkpoint": config.checkpoint}))
        if config.stop_on_failure:
            break
    final_check = agent.detect_failure(plan.relations[-1], world.true_relations(), goal, mask)
    record.update(success=task.is_success(world.true_scene(), world.true_relations()),
                  final_status=world.true_status(), steps_executed=world.steps,
                  unmet_goal=[f"{'' if want else 'not '}{RELATION_NAMES[r]}({i}, {j})"
                              for r, i, j, holds, want in zip(
                      final_check.relation, final_check.first, final_check.second,
                      final_check.observed, goal.arrays()[3], strict=True) if holds != want],
                  episode_seconds=time.perf_counter() - started)
    return record


def _failure_arrays(before, after, seen: Observation, belief: Scene, plan: planner.Plan,
                    observed, truth_before, truth_after) -> dict[str, np.ndarray]:
    """The arrays of a detected failure: what Real2Sim and Fail2Progress start from."""
    return {
        "points_before": before.points, "num_visible_before": before.num_visible,
        "points": after.points, "num_visible": after.num_visible, "mask": seen.mask,
        "kind": seen.kind, "half_extents": seen.half_extents, "belief_pos": belief.pos,
        "belief_yaw": belief.yaw, "skill": plan.skills.skill, "obj": plan.skills.obj,
        "support": plan.skills.support, "params": plan.skills.params,
        "predicted_relations": plan.relations, "observed_relations": observed,
        # Scoring-only labels, for analysis; the agent never reads them.
        "true_relations_before": truth_before, "true_relations": truth_after,
    }


def _relation_counts(triple_lists) -> str:
    """'above 5, left 2': how often each relation appears in lists of 'name(i, j)' strings."""
    names = [triple.split("(")[0] for triples in triple_lists for triple in triples]
    counts = {name: names.count(name) for name in dict.fromkeys(names)}
    return ", ".join(f"{name} {count}" for name, count in
                     sorted(counts.items(), key=lambda item: -item[1])) or "-"


def summarise(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per task x object count x split: success with Wilson interval, detection, time."""
    rows = []
    keys = list(dict.fromkeys((r["task"], r["count"], r["split"]) for r in records))
    for name, count, split in keys:
        cell = [r for r in records if (r["task"], r["count"], r["split"]) == (name, count, split)]
        successes = sum(r["success"] for r in cell)
        failed, succeeded = ([r for r in cell if r["success"] == want] for want in (False, True))
        detected = [r for r in cell if r["detected"]]
        low, high = reporting.wilson_interval(successes, len(cell))
        times = np.array([r["plan_seconds"] for r in cell])
        rows.append({
            "task": name, "objects": count, "split": split, "episodes": len(cell),
            "successes": successes, "success_rate": successes / len(cell),
            "ci_low": low, "ci_high": high,
            "detected_among_failed": sum(r["detected"] for r in failed),
            "failed": len(failed),
            "detection_rate": (sum(r["detected"] for r in failed) / len(failed)
                               if failed else float("nan")),
            "detected_in_successful": sum(r["detected"] for r in succeeded),
            "false_alarms": sum(bool(r["false_alarm"]) for r in detected),
            "detections": len(detected),
            "missed_true_mismatch": sum(r["first_true_mismatch_step"] is not None
                                        and not r["detected"] for r in cell),
            "errors": sum(r["error"] is not None for r in cell),
            "plan_seconds_median": float(np.median(times)),
            "plan_seconds_mean": float(times.mean()),
            "mean_goal_probability": float(np.mean([r["plan"]["goal_probability"] for r in cell])),
            "unmet_relations": _relation_counts(r["unmet_goal"] for r in failed),
        })
    return rows


def draw_figure(path: str, rows: list[dict[str, Any]]) -> None:
    """Bar chart: success in distribution vs OOD per task (and object count), Wilson intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(row["task"] for row in rows))
    figure, axes = plt.subplots(1, len(names), figsize=(4.0 * len(names), 3.4), squeeze=False)
    for axis, name in zip(axes[0], names, strict=True):
        counts = sorted({row["objects"] for row in rows if row["task"] == name})
        width = 0.8 / len(tasks.SPLITS)
        for offset, split in enumerate(tasks.SPLITS):
            cells = [next((r for r in rows if (r["task"], r["objects"], r["split"])
                           == (name, count, split)), None) for count in counts]
            x = [i + (offset - 0.5 * (len(tasks.SPLITS) - 1)) * width
                 for i, cell in enumerate(cells) if cell]
            cells = [cell for cell in cells if cell]
            if not cells:
                continue
            rate = np.array([c["success_rate"] for c in cells])
            error = np.array([[r - c["ci_low"] for r, c in zip(rate, cells, strict=True)],
                              [c["ci_high"] - r for r, c in zip(rate, cells, strict=True)]])
            axis.bar(x, rate, width, yerr=error, capsize=4,
                     label="in distribution" if split == "train" else "OOD")
        axis.set_xticks(range(len(counts)), [f"{count} objects" for count in counts])
        axis.set_ylim(0.0, 1.25)
        axis.set_yticks(np.linspace(0.0, 1.0, 6))
        axis.set_title(name)
        axis.set_ylabel("success rate (95 % Wilson)")
        axis.legend(loc="upper center", ncol=2, fontsize=8)
    figure.suptitle("Base agent in the real world", y=1.02)
    reporting.save_figure(path, figure)


TABLE_COLUMNS = ("task", "objects", "split", "episodes", "success_rate", "ci_low", "ci_high",
                 "failed", "detection_rate", "detected_in_successful",
                 "false_alarms", "missed_true_mismatch", "errors",
                 "plan_seconds_median", "plan_seconds_mean", "mean_goal_probability",
                 "unmet_relations")


def markdown_report(results: dict[str, Any]) -> str:
    """The results.md text: the success table, then how each column is defined."""
    formats = {name: ".2f" for name in ("success_rate", "ci_low", "ci_high", "detection_rate",
                                        "plan_seconds_median", "plan_seconds_mean",
                                        "mean_goal_probability")}
    config = results["config"]
    return (f"# Base agent in the real world\n\ncheckpoint `{config['checkpoint']}`, belief "
            f"`{config['belief']}`, perception noise {config['noise_level']}, "
            f"{config['num_episodes']} seeded episodes per cell, stop on detected failure: "
            f"{config['stop_on_failure']}.\n\n"
            + reporting.markdown_table(results["rows"], TABLE_COLUMNS, formats)
            + "\n- success_rate: goal relations hold in the true final state; ci: 95 % Wilson.\n"
            "- detection_rate: detected failures among failed episodes.\n"
            "- detected_in_successful: successful episodes with a detection (the model was "
            "wrong, the world kinder than predicted, or the goal held when the episode stopped).\n"
            "- false_alarms: detections where the true relations agreed with the plan's "
            "prediction on every goal triple (the relation head misread the observation).\n"
            "- missed_true_mismatch: the true relations left the prediction on a goal triple "
            "but nothing was detected.\n"
            "- mean_goal_probability: exp(plan score), the model's belief that the plan works.\n"
            "- unmet_relations: goal relations false in the true final state of failed "
            "episodes, by relation.\n"
            "- plan_seconds: CEM over all skeletons per episode (the median hides jit "
            "compilation, paid once per skeleton length and goal size).\n")


def load_model(config):
    """Returns (model, params, num_points, checkpoint config) from config.checkpoint.

    Raises:
      ValueError: config.checkpoint is empty, or the checkpoint does not fit the model code.
      FileNotFoundError: no exported checkpoint there.
    """
    from f2p.io.pretrained import load_base_model

    if not config.checkpoint:
        raise ValueError("config.checkpoint: empty; give the folder of an exported model "
                         "(default checkpoints/base)")
    model, params, saved = load_base_model(config.checkpoint)
    data = saved.get("data", {})
    return model, params, int(data.get("num_points", 128)), saved


def run(config, workdir: str) -> dict[str, Any]:
    """Plays every seeded episode and writes results.json, results.md, success.png, failures/.

    Args:
      config: the experiments/configs/evaluate.py config.
      workdir: output folder (created).

    Returns:
      The results dict written to results.json.
    """
    specs = episode_specs(config)  # validates tasks, counts and splits before any work
    if config.belief not in BELIEFS:
        raise ValueError(f"config.belief: {config.belief!r} is not one of {', '.join(BELIEFS)}")
    planner.as_planner_config(config.planner)
    model, params, num_points, saved = load_model(config)
    os.makedirs(workdir, exist_ok=True)
    failure_dir = os.path.join(workdir, "failures") if config.save_failures else None
    records: list[dict[str, Any]] = []
    started = time.perf_counter()
    for index, spec in enumerate(specs):
        record = run_episode(spec, model, params, num_points, config, failure_dir)
        records.append(record)
        elapsed = time.perf_counter() - started
        rate = (index + 1) / elapsed
        logging.info("[%d/%d] %s n=%d %s e%d: success %s, detected %s (step %s), plan %.1fs | "
                     "%.2f episodes/s, ETA %.0fs", index + 1, len(specs), spec.task, spec.count,
                     spec.split, spec.episode, record["success"], record["detected"],
                     record["detection_step"], record["plan_seconds"], rate,
                     (len(specs) - index - 1) / rate)
    results = {"config": config.to_dict(), "environment": reporting.environment(),
               "checkpoint_metadata": saved.to_dict().get("data", {}),
               "num_points": num_points, "seconds": time.perf_counter() - started,
               "rows": summarise(records), "records": records,
               "seeds": [[r["scene_seed"], r["world_seed"]] for r in records],
               "figures": ["success.png"]}
    reporting.write_json(os.path.join(workdir, "results.json"), results)
    reporting.write_text(os.path.join(workdir, "results.md"), markdown_report(results))
    draw_figure(os.path.join(workdir, "success.png"), results["rows"])
    return results
