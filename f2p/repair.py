"""The repair step of Fail2Progress and the `repair:<generator>` recovery policy."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

from f2p import fail2progress, generation, objectives, train
from f2p.agent import goal_triples, perceive
from f2p.generation import GenerationConfig
from f2p.io.failures import Failure
from f2p.objectives import FailureScene, ObjectiveConfig
from f2p.recovery import Recovery, RecoveryContext, RecoveryPolicy
from f2p.scene import FIXTURE, Scene, Skill, Transition, stack_rows, take_row
from f2p.tasks import get_task
from f2p.world import Simulator

POLICY_PREFIX = "repair:"
"""A recovery policy named repair:<generator> repairs with that generator (f2p.generation)."""

LabelFn = Callable[[Scene, Skill, int], tuple[Transition, dict]]
"""label(scenes [B], skills [B], seed) -> (transitions of the usable items, counts)."""


class RepairConfig(NamedTuple):
    """How one failure becomes a fine-tuned model.

    Attributes:
      objective: the ObjectiveConfig of the densities.
      generation: the GenerationConfig (N, M, steps).
      finetune_steps: optimiser steps of the fine-tune.
      replay_fraction: share of each fine-tune batch replayed from the base data, in [0, 1)
        (see experiments/configs/fail2progress.py for how the default was chosen).
    """

    objective: ObjectiveConfig = ObjectiveConfig()
    generation: GenerationConfig = GenerationConfig()
    finetune_steps: int = 200
    replay_fraction: float = 0.0


class Repairer(NamedTuple):
    """What a repair uses besides the failure: model, simulator, labeller, replay data.

    Attributes:
      model: the SkillEffectModel.
      train_state: a train.TrainState of the model (its config's finetune section and optimiser
        settings are used; its params are replaced by the params being repaired).
      simulator: the nominal Simulator (classification, reproduction check).
      label: a LabelFn (the shared labeller, isaac_bridge.labelling.label_batch).
      replay: Transition batch of base training data, or None.
      cameras: cameras(scene) -> [C, 3] camera positions the rendering Psi(S) faces.
      config: the RepairConfig.
    """

    model: Any
    train_state: Any
    simulator: Simulator
    label: LabelFn
    replay: Transition | None
    cameras: Callable[[Scene], np.ndarray]
    config: RepairConfig = RepairConfig()


class RepairResult(NamedTuple):
    """A repaired model and what it took.

    Attributes:
      params: the fine-tuned parameters.
      info: JSON-ready timings (seconds per stage; generation's and the fine-tune's compile
        times apart, as compile_seconds and finetune_compile_seconds), label counts, attempts,
        diversity and the fraction of states that reproduce the failure's relations in
        simulation.
      generated: NumPy arrays for figures: poses [N, K, 3], actions [N, M, 2], accepted [N].
      transitions: the labelled Transition batch fine-tuned on (what a later repair replays).
    """

    params: Any
    info: dict[str, Any]
    generated: dict[str, np.ndarray]
    transitions: Transition | None = None


def goal_objects(failure: Failure) -> np.ndarray:
    """Sorted slots named by the goal, plus the failed skill's object and support."""
    _, first, second = goal_triples(failure.goal, failure.belief_before.mask)
    extra = [int(failure.skill.obj)] + ([int(failure.skill.support)]
                                        if int(failure.skill.support) >= 0 else [])
    return np.unique(np.concatenate([first, second, extra]))


def _pairs_equal(relations, reference, slots) -> np.ndarray:
    """[B] bool: every relation between distinct `slots` equals the reference's."""
    index = np.ix_(slots, slots)
    off = ~np.eye(len(slots), dtype=bool)
    same = np.asarray(relations)[(slice(None),) + index] == np.asarray(reference)[index]
    return np.all(same | ~off[None, :, :, None], axis=(1, 2, 3))


def reproduction(simulator: Simulator, failure: Failure, scenes: Scene, seed: int) -> float:
    """Fraction of states reproducing the failure scene's relations among the goal objects.

    Both the states and the believed failure scene are settled in the simulator first.
    """
    reference = simulator.settle(stack_rows([failure.belief_before]), seed=seed)
    settled = simulator.settle(scenes, seed=seed)
    same = _pairs_equal(settled.relations_post, np.asarray(reference.relations_post)[0],
                        goal_objects(failure))
    return float(np.mean(same & np.asarray(settled.ok, bool)))


def _random_pairs(failure: Failure, count: int, seed: int) -> tuple[Scene, Skill]:
    """Domain randomisation: `count` scenes and skills from the task's training distribution."""
    task = get_task(failure.task)
    scene = failure.belief_before
    num_movable = int(np.sum(np.asarray(scene.mask, bool) & (np.asarray(scene.kind) != FIXTURE)))
    rng = np.random.default_rng(seed)
    scenes, skills = [], []
    for _ in range(count):
        sampled = task.sample_scene(rng, num_movable, "train")
        scenes.append(sampled)
        skills.append(task.sample_skill(rng, sampled, "train"))
    return stack_rows(scenes), stack_rows(skills)


def failure_data(model, params, failure: Failure, cameras, objective: ObjectiveConfig
                 ) -> FailureScene:
    """The generators' FailureScene, R^F read by the model (params) on the failure's O^F.

    Args:
      model, params: the relation head that reads the observed relations.
      failure: the Failure (checked by fail2progress.failure_scene).
      cameras: [C, 3] camera positions of the rendering Psi(S).
      objective: the ObjectiveConfig.
    """
    observation = failure.observation_before
    observed = jax.nn.sigmoid(model.decode_relations(
        params, model.encode(params, observation.points, observation.mask, observation.kind,
                             observation.half_extents), observation.mask))
    return fail2progress.failure_scene(failure, observed, cameras, objective)


def _targeted_pairs(repairer: Repairer, name: str, failure: Failure, params, key
                    ) -> tuple[Scene, Skill, dict, dict]:
    """Runs a targeted generator; returns (scenes [N M], skills [N M], info, arrays)."""
    config = repairer.config
    objective = config.objective
    data = failure_data(repairer.model, params, failure,
                        repairer.cameras(failure.belief_before), objective)
    particles, timings = generation.generate_particles(name, key, repairer.model, params, data,
                                                       objective, config.generation)
    poses = generation.state_poses(data, particles.states, objective.yaw_scale)
    num_states, num_actions = np.asarray(particles.actions).shape[:2]
    states = [_posed(data, particles.states[i], objective) for i in range(num_states)]
    scenes = stack_rows([state for state in states for _ in range(num_actions)])
    actions = np.asarray(particles.actions).reshape(-1, 2)
    skill = Skill(*(np.asarray(field) for field in failure.skill))
    skills = stack_rows([skill._replace(params=action.astype(np.float32)) for action in actions])
    info = {"generation_seconds": timings["seconds"],
            "compile_seconds": timings["compile_seconds"],
            "attempts": int(particles.attempts),
            "accepted": int(np.sum(particles.accepted)),
            "diversity": generation.diversity(poses, np.asarray(data.movable),
                                              objective.yaw_scale)}
    arrays = {"poses": poses, "actions": np.asarray(particles.actions),
              "accepted": np.asarray(particles.accepted),
              "failure_pose": generation.state_poses(data, np.zeros_like(particles.states[:1]),
                                                     objective.yaw_scale)[0]}
    return scenes, skills, info, arrays


def _posed(data: FailureScene, particle, objective: ObjectiveConfig) -> Scene:
    scene = objectives.pose_scene(data, particle, objective.yaw_scale)
    return Scene(*(np.asarray(field) for field in scene))


def labelled_pairs(repairer: Repairer, generator: str, failure: Failure, params,
                   key: jax.Array) -> tuple[Transition, dict[str, Any], dict[str, np.ndarray]]:
    """Generates N x M (state, action) pairs and labels them: the data a repair fine-tunes on.

    Returns:
      (transitions of the usable pairs, JSON-ready info: timings, counts, reproduction,
      arrays for figures), as RepairResult holds them.

    Raises:
      ValueError: an unknown generator, a bad config field, or a failure a repair cannot use.
      RuntimeError: the simulator kept none of the pairs.
    """
    generation.check_generator(generator)
    generation.check_generation_config(repairer.config.generation)
    fail2progress.check_failure(failure)
    config = repairer.config
    budget = config.generation.num_states * config.generation.num_actions
    seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
    started = time.perf_counter()
    if generator == "random":
        scenes, skills = _random_pairs(failure, budget, seed)
        info = {"generation_seconds": time.perf_counter() - started, "compile_seconds": 0.0,
                "attempts": 0, "accepted": 0, "diversity": float("nan")}
        arrays = {}
    else:
        scenes, skills, info, arrays = _targeted_pairs(repairer, generator, failure, params, key)
    # One scene per state (each repeats for its M actions); random's N x M are all distinct.
    states = take_row(scenes, np.arange(0, budget, config.generation.num_actions))
    arrays.setdefault("poses", np.concatenate([states.pos[..., :2], states.yaw[..., None]],
                                              axis=-1))
    started = time.perf_counter()
    info["reproduction"] = reproduction(repairer.simulator, failure, states, seed)
    info["reproduction_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    transitions, counts = repairer.label(scenes, skills, seed)
    info.update(labelling_seconds=time.perf_counter() - started, pairs=budget,
                labels=int(counts["kept"]), dropped=int(counts["dropped"]),
                label_status=counts["status"])
    if counts["kept"] == 0:
        raise RuntimeError(f"repair: the simulator kept none of the {budget} generated pairs "
                           f"(statuses {counts['status']}); nothing to fine-tune on")
    return transitions, info, arrays


def repair(repairer: Repairer, generator: str, failure: Failure, params, key: jax.Array
           ) -> RepairResult:
    """Generates N x M (state, action) pairs, labels them and fine-tunes `params` on them.

    Raises:
      ValueError: an unknown generator, a bad config field, or a failure a repair cannot use.
    """
    transitions, info, arrays = labelled_pairs(repairer, generator, failure, params, key)
    config = repairer.config
    started, compiled = time.perf_counter(), [0.0]
    state = train.finetune(repairer.train_state.replace(params=params), transitions,
                           repairer.replay, config.replay_fraction, config.finetune_steps,
                           callback=lambda _, m: compiled.append(m["finetune/compile_seconds"]))
    new_params = jax.block_until_ready(state.params)
    # Like generation's, the fine-tune's compile (once per process and step count) is apart.
    info["finetune_compile_seconds"] = compiled[-1]
    info["finetune_seconds"] = time.perf_counter() - started - compiled[-1]
    info["generator"] = generator
    return RepairResult(new_params, info, arrays, transitions)


def repair_policy(generator: str, repairer: Repairer, max_rounds: int = 1,
                  on_repair: Callable[[RepairResult, Failure], None] | None = None,
                  repair_classes: tuple[str, ...] = (fail2progress.CLASSES[0],)
                  ) -> RecoveryPolicy:
    """`repair:<generator>`: classify, repair, replan from the current observation, continue.

    A failure classified `sim2real` is recorded and the plan continues unchanged; so does every
    detection once max_rounds repairs were made in the episode.

    Args:
      generator: one of f2p.generation.GENERATOR_NAMES.
      repairer: the Repairer.
      max_rounds: repairs per episode (1: the paper's one-shot repair).
      on_repair: called with each RepairResult and its failure (to keep the repaired model).
      repair_classes: the classes repaired (f2p.fail2progress.CLASSES); the paper repairs
        wrong predictions only.
    """
    generation.check_generator(generator)
    if int(max_rounds) < 1:
        raise ValueError(f"max_rounds: must be >= 1, got {max_rounds}")
    unknown = sorted(set(repair_classes) - set(fail2progress.CLASSES))
    if unknown:
        raise ValueError(f"repair_classes: {unknown[0]!r} is not one of "
                         f"{', '.join(fail2progress.CLASSES)}")

    def policy(context: RecoveryContext) -> Recovery:
        # Only this policy replaces plans in its branch, so recoveries counts its repairs.
        if context.progress.recoveries >= max_rounds:
            return Recovery("continue", info={"budget_spent": True})
        started = time.perf_counter()
        label = fail2progress.classify(context.failure, repairer.simulator).label
        info = {"class": label, "classify_seconds": time.perf_counter() - started}
        if label not in repair_classes:
            return Recovery("continue", info=info)
        repair_key, plan_key = jax.random.split(context.key)
        result = repair(repairer, generator, context.failure, context.progress.params,
                        repair_key)
        if on_repair is not None:
            on_repair(result, context.failure)
        started = time.perf_counter()
        belief, seen = perceive(context.agent, context.failure.observation_after,
                                context.progress.belief)
        plan = context.agent.plan(plan_key, result.params, seen, context.task, belief,
                                  context.progress.goal)
        info.update(result.info, plan_seconds=time.perf_counter() - started)
        return Recovery("replace", plan, params=result.params, belief=belief, info=info)

    return policy
