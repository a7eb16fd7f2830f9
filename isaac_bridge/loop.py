"""The repair loop on MuJoCo: set-up, episodes, failure collection and (failure, method) units.

Shared by the Fail2Progress experiments (the main table and the studies): make_setup loads the
model, starts the simulator and makes the replay data; collect plays seeded OOD episodes until
enough failures of the repaired classes; run_unit recovers one failure with one method and
scores recovery, retry, future OOD and retention. Every episode entry and unit is a JSON file,
so callers resume where a stopped run ended.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, NamedTuple

import jax
import ml_collections
import numpy as np
from absl import logging

from f2p import episode, fail2progress, generation, oracle, tasks, train
from f2p.agent import detect_failure, model_agent, perceive
from f2p.io import dataset, failures, reporting
from f2p.io.config import as_named_tuple, parse_list
from f2p.io.pretrained import export_params, with_relation_features
from f2p.objectives import ObjectiveConfig, check_objective_config
from f2p.recovery import Recovery, original_policy, replan_policy, stop_policy
from f2p.repair import POLICY_PREFIX, RepairConfig, Repairer, repair_policy
from f2p.scene import K_MAX
from isaac_bridge import datagen
from isaac_bridge.episodes import EpisodeSpec, load_model, make_perceive, make_specs, make_world
from isaac_bridge.labelling import RenderSettings, label_batch
from isaac_bridge.mujoco_backend import MujocoSimulator
from isaac_bridge.perception import DEFAULT_CAMERAS, DEFAULT_IMAGE_SIZE, camera_pose

BASELINES = ("original", "replan")
ORACLE = "oracle"


def method_names(config, methods: str | None = None) -> list[str]:
    """The methods of `methods` (default config.methods), checked; errors name config.methods.

    Methods are original, replan and repair:<generator>.
    """
    allowed = list(BASELINES) + [POLICY_PREFIX + name for name in generation.GENERATOR_NAMES]
    return parse_list(config.methods if methods is None else methods, allowed, "methods")


def repair_config(config) -> RepairConfig:
    """The RepairConfig of the config's objective, generation and finetune sections."""
    objective = check_objective_config(as_named_tuple(config.objective, ObjectiveConfig,
                                                      "objective"))
    settings = generation.check_generation_config(as_named_tuple(
        config.generation, generation.GenerationConfig, "generation"))
    return RepairConfig(objective, settings, int(config.finetune.steps),
                        float(config.finetune.replay_fraction))


def camera_positions(scene) -> np.ndarray:
    """[C, 3] eye positions of the perception cameras framing a scene."""
    return np.stack([camera_pose(scene, camera, DEFAULT_IMAGE_SIZE)[0]
                     for camera in DEFAULT_CAMERAS])


class Setup(NamedTuple):
    """What every unit shares: the base model, the simulator, and the repairers by task."""
    model: Any
    params: Any
    num_points: int
    simulator: Any
    train_state: Any
    repairers: dict[str, Repairer]
    checkpoint_config: Any


def finetune_state(model, params, saved, num_points: int, relation_features: bool,
                   learning_rate: float | None, carry_gate: bool = False,
                   carry_held_only: bool = False):
    """(model, params, config, TrainState) of a loaded model for repairs.

    relation_features extends the model with zero-initialised relation inputs of its dynamics
    (f2p.io.pretrained.with_relation_features), carry_gate (which needs them) with the carry
    gate as well, carry_held_only (which needs the gate) limiting it to what the moved object
    holds; learning_rate, unless None, replaces the checkpoint config's fine-tune learning
    rate. `saved` itself is left unchanged.

    Raises:
      ValueError: carry_gate without relation_features, carry_held_only without carry_gate.
    """
    if carry_gate and not relation_features:
        raise ValueError("config.carry_gate: True needs config.relation_features True")
    if carry_held_only and not carry_gate:
        raise ValueError("config.carry_held_only: True needs config.carry_gate True")
    saved = ml_collections.ConfigDict(saved.to_dict())
    if relation_features:
        model, params = with_relation_features(model, params, num_points, carry_gate,
                                               carry_held_only)
        saved.model.relation_features = True
        saved.model.carry_gate = bool(carry_gate)
        saved.model.carry_held_only = bool(carry_held_only)
    if learning_rate is not None:
        saved.finetune.learning_rate = float(learning_rate)
    state = train.create_train_state(saved, K_MAX, num_points).replace(params=params)
    return model, params, saved, state


def make_setup(config, workdir: str, names: list[str], repairers: bool = True) -> Setup:
    """Loads the model, starts the simulator, and makes (or reads) each task's replay data.

    config.relation_features, config.carry_gate, config.carry_held_only and
    config.finetune.learning_rate go to finetune_state (with relation inputs and the carry gate
    the base agent plans as before, up to float rounding; repairs train them).

    With repairers=False no replay data is made and Setup.repairers is empty (studies that
    only collect failures or time the generators).
    """
    model, params, num_points, saved = load_model(config)
    model, params, saved, state = finetune_state(
        model, params, saved, num_points, bool(config.get("relation_features", False)),
        config.finetune.get("learning_rate"), bool(config.get("carry_gate", False)),
        bool(config.get("carry_held_only", False)))
    simulator = MujocoSimulator(num_workers=int(config.num_workers))
    render = RenderSettings(num_points=num_points)

    def label(scenes, skills, seed):
        return label_batch(simulator, scenes, skills, seed, render)[:2]

    if not repairers:
        return Setup(model, params, num_points, simulator, state, {}, saved)
    settings = repair_config(config)
    by_task = {}
    for name in names:
        directory = os.path.join(workdir, "replay", name)
        replay_settings = ml_collections.ConfigDict({**config.replay.to_dict(),
                                                     "num_points": num_points})
        datagen.generate(tasks.get_task(name), "train", replay_settings, directory, simulator)
        by_task[name] = Repairer(model, state, simulator, label,
                                 dataset.load_dataset(directory), camera_positions, settings)
    return Setup(model, params, num_points, simulator, state, by_task, saved)


def _agent(spec: EpisodeSpec, params, setup: Setup, config, explore_below: float = 0.0):
    world, nominal = make_world(spec, config, setup.num_points)
    agent = model_agent(setup.model, params, config.planner,
                        make_perceive(world, nominal, config.belief), config.detection_threshold,
                        explore_below)
    return world, agent


def play(spec: EpisodeSpec, params, make_policies, setup: Setup, config,
         explore_below: float = 0.0) -> dict[str, episode.EpisodeResult]:
    """Plays one seeded episode; make_policies(world) -> {name: policy}.

    explore_below > 0: the agent explores another skeleton when its best plan's goal
    probability is below it (f2p.agent.choose_plan).
    """
    world, agent = _agent(spec, params, setup, config, explore_below)
    key = jax.random.PRNGKey(spec.world_seed % (2**31))
    return episode.run_episode(world, tasks.get_task(spec.task), agent, make_policies(world), key,
                               seeds={"scene_seed": spec.scene_seed,
                                      "world_seed": spec.world_seed},
                               metadata={**spec._asdict(), "checkpoint": config.checkpoint},
                               max_steps=int(config.max_steps))


def oracle_recovery(world, simulator, config):
    """A policy that replans once from the current belief with the oracle planner (upper bound).

    The oracle simulates candidate plans from the world's TRUE scene: evaluation only.
    """
    def policy(context):
        if context.progress.recoveries >= 1:
            return Recovery("continue", info={"budget_spent": True})
        started = time.perf_counter()
        belief, _ = perceive(context.agent, context.failure.observation_after,
                             context.progress.belief)
        plan = oracle.plan(context.key, simulator, world.true_scene(), context.task, belief,
                           context.progress.goal, config.oracle_planner)
        return Recovery("replace", plan, belief=belief,
                        info={"plan_seconds": time.perf_counter() - started})

    return policy


def read_or_make(path: str, make) -> Any:
    """The JSON at path, or make()'s value written there (atomically) and returned."""
    if os.path.exists(path):
        with open(path) as file:
            return json.load(file)
    value = make()
    reporting.write_json(path, value)
    return value


def collect(name: str, setup: Setup, config, workdir: str, object_count: int | None = None,
            *, num_failures: int | None = None, max_episodes: int | None = None,
            keep_classes: str | None = None) -> list[dict[str, Any]]:
    """Plays OOD episodes of failure_seed until num_failures failures of the repaired classes.

    Every episode's entry (detection, classification, ground truth) is a file under
    workdir/collect/ and every failure a record under workdir/failures/ (names carry the
    object count, so counts share a workdir). object_count, num_failures, max_episodes and
    keep_classes default to config.object_count, config.num_failures,
    config.max_collection_episodes and config.repair_classes. With config.real_failures_only
    the rest of the plan is also executed from the detection's snapshot (the `original`
    policy) and the entry's original_success says whether it reached the goal anyway; such a
    detection is no failure to learn from and is not kept (an entry written without that
    field is played again).
    Returns all entries; those with "kept" True are the failures to repair.
    """
    keep = parse_list(config.repair_classes if keep_classes is None else keep_classes,
                      fail2progress.CLASSES, "repair_classes")
    count = int(config.object_count if object_count is None else object_count)
    wanted = int(config.num_failures if num_failures is None else num_failures)
    real_only = bool(config.real_failures_only)
    policies = {"stop": stop_policy, **({"original": original_policy} if real_only else {})}
    for folder in ("collect", "failures"):
        os.makedirs(os.path.join(workdir, folder), exist_ok=True)
    specs = make_specs(int(config.failure_seed), [name], [count], ["ood"],
                       int(config.max_collection_episodes if max_episodes is None
                           else max_episodes))
    entries, kept = [], 0
    for spec in specs:
        if kept >= wanted:
            break

        def make(spec=spec):
            results = play(spec, setup.params, lambda world: policies, setup, config)
            result = results["stop"]
            entry = {"spec": spec._asdict(), "name": spec.name, "detected": result.failure
                     is not None, "success": result.success, "failure_file": None}
            if real_only:  # without a detection both branches are the same whole plan
                entry["original_success"] = bool(results["original"].success)
            if result.failure is not None:
                entry["failure_file"] = os.path.basename(failures.save_failure(
                    os.path.join(workdir, "failures"), spec.name, result.failure))
                label = fail2progress.classify(result.failure, setup.simulator)
                failure = result.failure
                check = detect_failure(failure.predicted_relations, failure.observed_relations,
                                       failure.goal, failure.observation_after.mask,
                                       failure.detection_threshold)
                entry.update(step=int(failure.step), predicted_class=label.label,
                             simulated=label.simulated.tolist(),
                             observed=label.observed.tolist(),
                             mismatch=check.describe(), skill=episode.skill_record(failure.skill),
                             replay_status=label.status,
                             true_class=fail2progress.true_class(result.failure,
                                                                 setup.simulator))
            return entry

        path = os.path.join(workdir, "collect", spec.name + ".json")
        entry = read_or_make(path, make)
        if real_only and "original_success" not in entry:
            entry = make()  # written before real_failures_only: play it again
            reporting.write_json(path, entry)
        entry["kept"] = bool(entry["detected"] and entry["predicted_class"] in keep
                             and not entry.get("original_success", False))
        kept += entry["kept"]
        entries.append(entry)
    logging.info("%s: %d failures to repair from %d OOD episodes", name, kept, len(entries))
    return entries


def evaluation_specs(name: str, config, object_count: int | None = None
                     ) -> dict[str, list[EpisodeSpec]]:
    """The future OOD and retention (in-distribution) episodes of eval_seed.

    object_count defaults to config.object_count; num_future or num_retention 0 gives none.
    """
    count = [int(config.object_count if object_count is None else object_count)]
    roles = {"future": ("ood", config.num_future), "retention": ("train", config.num_retention)}
    specs = {}
    for role, (split, number) in roles.items():
        if int(number) < 0:
            raise ValueError(f"config.num_{role}: must be >= 0, got {number}")
        specs[role] = (make_specs(int(config.eval_seed), [name], count, [split], int(number))
                       if int(number) else [])
    return specs


def whole_plan(spec: EpisodeSpec, params, setup: Setup, config) -> dict[str, Any]:
    """One episode, whole plan executed with `params`.

    Returns its success, whether it detected a failure, and the plan chosen at the start: its
    skeleton, goal probability and every skeleton's log goal probability (what a repair
    changed in the agent's choice).
    """
    result = play(spec, params, lambda world: {"original": original_policy}, setup,
                  config)["original"]
    plan = result.record["plan"]
    return {"episode": spec.name, "success": result.success,
            "detected": result.record["detected"], "skeleton": plan["skeleton_index"],
            "goal_probability": plan["goal_probability"],
            "skeleton_scores": plan["skeleton_scores"]}


def base_evaluation(name: str, setup: Setup, config, workdir: str,
                    object_count: int | None = None) -> dict[str, list]:
    """The base agent's future OOD and retention episodes (original and replan share them).

    object_count defaults to config.object_count (episode names carry the count).
    """
    return {role: [read_or_make(os.path.join(workdir, "base", spec.name + ".json"),
                                 lambda spec=spec: whole_plan(spec, setup.params, setup, config))
                   for spec in specs]
            for role, specs in evaluation_specs(name, config, object_count).items()}


def _policies(method: str, setup: Setup, config, task: str, captured: dict):
    """make_policies(world) for one method; repairs store their result in `captured`."""
    if method == "original":
        return lambda world: {method: original_policy}
    if method == "replan":
        return lambda world: {method: replan_policy(int(config.max_replans))}
    if method == ORACLE:
        return lambda world: {method: oracle_recovery(world, setup.simulator, config)}
    classes = parse_list(config.repair_classes, fail2progress.CLASSES, "repair_classes")
    policy = repair_policy(method[len(POLICY_PREFIX):], setup.repairers[task],
                           int(config.max_rounds), on_repair=lambda result, failure:
                           captured.update(result=result), repair_classes=tuple(classes))
    return lambda world: {method: policy}


def _evaluate(task: str, params, setup: Setup, config, object_count: int | None
              ) -> dict[str, list]:
    """A model's future OOD and retention episodes (whole plans) at one object count."""
    return {role: [whole_plan(s, params, setup, config) for s in specs]
            for role, specs in evaluation_specs(task, config, object_count).items()}


def unit_name(failure_name: str, method: str) -> str:
    """File stem of one (failure, method) unit, e.g. transport-n3-ood-e003--repair-svgd."""
    return f"{failure_name}--{method.replace(':', '-')}"


def run_unit(entry: dict[str, Any], method: str, setup: Setup, config, workdir: str,
             base: dict[str, list] | None, counts: dict[int, dict[str, list]] | None = None
             ) -> dict[str, Any]:
    """Recovery, retry, future OOD and retention of one failure under one method.

    Args:
      entry: a kept entry of collect().
      method: original, replan, oracle or repair:<generator>.
      setup, config, workdir: as for collect().
      base: base_evaluation() at config.object_count (an unrepaired model's episodes).
      counts: optional {object count: base_evaluation() at that count}, in place of `base`:
        the model is played on those counts' future OOD and retention episodes instead of
        config.object_count's, kept under unit["by_count"][str(count)] (generalisation).
    """
    spec = EpisodeSpec(**entry["spec"])
    captured: dict[str, Any] = {}
    started = time.perf_counter()
    result = play(spec, setup.params, _policies(method, setup, config, spec.task, captured),
                  setup, config)[method]
    unit = {"task": spec.task, "failure": entry["name"], "method": method,
            "recovery": result.success, "recovery_seconds": time.perf_counter() - started,
            "same_failure": result.failure is not None and int(result.failure.step)
            == entry["step"], "recoveries": result.record["recoveries"],
            "unmet_goal": result.record["unmet_goal"], "repaired": "result" in captured}
    if method == ORACLE:
        return unit
    params = captured["result"].params if "result" in captured else setup.params
    unit["retry"] = whole_plan(spec, params, setup, config)["success"]
    if "result" not in captured:
        if counts is None:
            unit.update(future=base["future"], retention=base["retention"])
        else:
            unit["by_count"] = {str(count): played for count, played in counts.items()}
        return unit
    repaired = captured["result"]
    unit["repair"] = repaired.info
    if counts is None:
        unit.update(_evaluate(spec.task, params, setup, config, None))
    else:
        unit["by_count"] = {str(count): _evaluate(spec.task, params, setup, config, count)
                            for count in counts}
    name = unit_name(entry["name"], method)
    path = os.path.join(workdir, "generated", name + ".npz")
    np.savez(path + ".partial.npz", **repaired.generated)  # renamed once complete
    os.replace(path + ".partial.npz", path)
    saved = (parse_list(config.save_models, generation.GENERATOR_NAMES, "save_models")
             if str(config.save_models).strip() else [])
    if method[len(POLICY_PREFIX):] in saved:
        export_params(os.path.join(workdir, "models", name), params,
                      setup.checkpoint_config, {"failure": entry["name"], "method": method,
                                                "repair": repaired.info})
    return unit
