"""Skeleton planner (DESIGN section 5): CEM over continuous skill args, scored by the model."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from f2p.cem import CEMResult, PlannerConfig, as_planner_config, cem
from f2p.clearance import placement_overlap
from f2p.geometry import render_points
from f2p.scene import (
    FIXTURE,
    NUM_RELATIONS,
    PICK_PLACE,
    SKILL_NAMES,
    Scene,
    Skill,
    stack_rows,
)
from f2p.world import Observation

__all__ = [
    "CEMResult", "GoalArrays", "Plan", "PlannerConfig", "SkeletonArrays",
    "as_planner_config", "best_plan", "cem", "check_goal", "goal_log_prob", "observe_scene",
    "plan", "plan_every_skeleton", "plan_skeleton", "plan_skeletons", "skeleton_arrays",
    "task_skeletons",
]

GoalArrays = tuple[Any, Any, Any, Any]
"""(relation [G], i [G], j [G], target [G] bool), as returned by tasks.Goal.arrays()."""


def goal_log_prob(relation_logits: jax.Array, goal: GoalArrays) -> jax.Array:
    """Log-probability that the goal holds, relations treated as independent Bernoullis.

    Args:
      relation_logits: [K, K, R] logits; entry (i, j, r) is "i r j".
      goal: (relation [G], i [G], j [G], target [G] bool) from Goal.arrays().

    Returns:
      [] sum of log sigmoid(logit) over targets True plus log(1 - sigmoid(logit)) =
      log sigmoid(-logit) over targets False.
    """
    relation, first, second, target = (jnp.asarray(x) for x in goal)
    logits = relation_logits[first, second, relation]
    return jnp.sum(jax.nn.log_sigmoid(jnp.where(target, logits, -logits)))


def observe_scene(scene: Scene, num_points: int = 128, camera_positions=None
                  ) -> Observation:
    """Returns the noise-free Observation of a scene (f2p.geometry.render_points)."""
    points = np.asarray(render_points(scene, num_points, camera_positions), np.float32)
    return Observation(points, np.asarray(scene.mask, bool),
                       kind=np.asarray(scene.kind, np.int32),
                       half_extents=np.asarray(scene.half_extents, np.float32))


class SkeletonArrays(NamedTuple):
    """A skeleton as arrays over its T steps: skill, obj, support [T] int32; low, high [T, 2]."""

    skill: Any
    obj: Any
    support: Any
    low: Any
    high: Any


def skeleton_arrays(skeleton: Sequence, mask=None, kind=None,
                    name: str = "skeleton") -> SkeletonArrays:
    """Converts a tuple of tasks.SkeletonStep to SkeletonArrays, validating every step.

    Args:
      skeleton: the steps (skill, obj, support, low, high).
      mask, kind: optional [K] slots of the scene; when given, objects must be valid movable
        slots and pick_place supports valid slots.
      name: the field name used in error messages.

    Raises:
      ValueError: naming the step and field of the first problem.
    """
    if len(skeleton) == 0:
        raise ValueError(f"{name}: has no steps")
    for t, step in enumerate(skeleton):
        where = f"{name}[{t}]"
        if step.skill not in range(len(SKILL_NAMES)):
            raise ValueError(f"{where}.skill: {step.skill}, allowed 0..{len(SKILL_NAMES) - 1} "
                             f"({', '.join(SKILL_NAMES)})")
        slots = [("obj", step.obj)] + ([("support", step.support)]
                                       if step.skill == PICK_PLACE else [])
        for field, slot in slots:
            if mask is not None and not (0 <= slot < len(mask) and mask[slot]):
                raise ValueError(f"{where}.{field}: slot {slot} is out of range or masked out")
        if kind is not None and kind[step.obj] == FIXTURE:
            raise ValueError(f"{where}.obj: slot {step.obj} is a fixture (cannot be moved)")
        if step.skill == PICK_PLACE and step.support == step.obj:
            raise ValueError(f"{where}.support: equals obj ({step.obj})")
        low, high = np.asarray(step.low, np.float32), np.asarray(step.high, np.float32)
        if low.shape != (2,) or high.shape != (2,) or not np.all(np.isfinite([low, high])):
            raise ValueError(f"{where}.low/high: expected finite (dx, dy) pairs")
        if np.any(low > high):
            raise ValueError(f"{where}.low: {tuple(low)} exceeds high {tuple(high)}")
    return SkeletonArrays(
        skill=np.array([s.skill for s in skeleton], np.int32),
        obj=np.array([s.obj for s in skeleton], np.int32),
        support=np.array([s.support if s.skill == PICK_PLACE else -1 for s in skeleton], np.int32),
        low=np.array([s.low for s in skeleton], np.float32),
        high=np.array([s.high for s in skeleton], np.float32),
    )


def check_goal(goal, mask) -> GoalArrays:
    """Validates a tasks.Goal against the valid slots [K] and returns its arrays.

    Raises:
      ValueError: naming the goal field (must_hold / must_not_hold) and the bad triple.
    """
    mask = np.asarray(mask, bool)
    if not goal.must_hold and not goal.must_not_hold:
        raise ValueError("goal: must_hold and must_not_hold are both empty")
    for field in ("must_hold", "must_not_hold"):
        for index, (relation, first, second) in enumerate(getattr(goal, field)):
            where = f"goal.{field}[{index}]"
            if not 0 <= relation < NUM_RELATIONS:
                raise ValueError(f"{where}: relation {relation}, allowed 0..{NUM_RELATIONS - 1}")
            for slot in (first, second):
                if not (0 <= slot < mask.shape[0] and mask[slot]):
                    raise ValueError(f"{where}: object slot {slot} is out of range 0.."
                                     f"{mask.shape[0] - 1} or masked out in the scene")
            if first == second:
                raise ValueError(f"{where}: relates slot {first} to itself")
    return goal.arrays()


def _plan_one(key, model, params, observation, skeleton, goal, config):
    """CEM over one skeleton's args, then the rollout of the best: (params, score, relations)."""

    def relation_logits(step_params):  # [T, 2] -> [T, K, K, R]
        skills = Skill(skeleton.skill, skeleton.obj, skeleton.support, step_params)
        return model.rollout(params, observation.points, observation.mask, observation.kind,
                             skills, observation.half_extents).relation_logits

    def score(step_params):
        log_prob = goal_log_prob(relation_logits(step_params)[-1], goal)
        if config.clearance_weight == 0:  # static: the default graph has no clearance term
            return log_prob
        return log_prob - config.clearance_weight * placement_overlap(
            observation.points, observation.mask, observation.kind, skeleton.skill,
            skeleton.obj, skeleton.support, step_params)

    result = cem(key, score, skeleton.low, skeleton.high, config)
    return result.best_params, result.best_score, jax.nn.sigmoid(
        relation_logits(result.best_params))


@functools.partial(jax.jit, static_argnames=("model", "config"))
def _plan_skeleton_compiled(key, model, params, observation, skeleton, goal, config):
    """One skeleton in one compiled call; recompiles only for new shapes or settings."""
    return _plan_one(key, model, params, observation, skeleton, goal, config)


@functools.partial(jax.jit, static_argnames=("model", "config"))
def _plan_skeletons_compiled(keys, model, params, observation, skeletons, goal, config):
    """A stack of S equal-length skeletons (keys [S], SkeletonArrays [S, T]) in one call."""
    return jax.vmap(lambda key, skeleton: _plan_one(key, model, params, observation, skeleton,
                                                    goal, config))(keys, skeletons)


def plan_skeleton(key, model, params, observation: Observation, skeleton: SkeletonArrays,
                  goal: GoalArrays, config) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Plans the continuous args of one skeleton by CEM, scored by the model's rollout.

    Skeletons are planned one at a time: a skeleton of T steps rolls the model out exactly T
    steps (no padded no-op steps, which the model cannot represent), and jit caches one
    compilation per (T, goal size, observation shapes, CEM settings); skeletons of equal length
    share it.

    Args:
      key: PRNG key, or None for PRNGKey(config.seed).
      model: a SkillEffectModel.
      params: its parameters.
      observation: an Observation (points [K, P, 3], mask, kind, half_extents).
      skeleton: SkeletonArrays with T steps.
      goal: GoalArrays (see Goal.arrays()).
      config: a PlannerConfig, ConfigDict or mapping.

    Returns:
      (best params [T, 2], best score [], relation probabilities after every step [T, K, K, R]).
    """
    config = as_planner_config(config)
    key = jax.random.PRNGKey(config.seed) if key is None else key
    # The seed is not part of the compiled function: zero it so it never causes a recompile.
    return _plan_skeleton_compiled(key, model, params, observation, skeleton, goal,
                                   config._replace(seed=0, clearing_skeletons=False))


class Plan(NamedTuple):
    """A planned skeleton (NumPy): by default the best over a task's skeletons.

    Attributes:
      skeleton_index: index of the planned skeleton.
      skills: Skill batch [T] with the chosen (dx, dy) in params [T, 2].
      score: goal log-probability predicted for the plan, minus the planner's
        clearance_weight times its placement overlap (f2p.clearance; no term at weight 0).
      relations: [T, K, K, R] predicted relation probabilities after every step.
      skeleton_scores: [S] best score of each skeleton.
      explored: chosen in place of the best plan, whose goal probability was too low
        (f2p.agent.choose_plan).
    """

    skeleton_index: int
    skills: Skill
    score: float
    relations: np.ndarray
    skeleton_scores: np.ndarray
    explored: bool = False


def _check_observation(observation) -> Observation:
    points = np.asarray(observation.points, np.float32)
    if points.ndim != 3 or points.shape[-1] != 3:
        raise ValueError(f"observation.points: shape {points.shape}, expected [K, P, 3]")
    k = points.shape[0]
    fields = {"mask": (np.asarray(observation.mask, bool), (k,)),
              "kind": (np.asarray(observation.kind, np.int32), (k,))}
    half = observation.half_extents
    if half is not None:
        fields["half_extents"] = (np.asarray(half, np.float32), (k, 3))
    for field, (value, shape) in fields.items():
        if value.shape != shape:
            raise ValueError(f"observation.{field}: shape {value.shape}, expected {shape}")
    mask, kind = fields["mask"][0], fields["kind"][0]
    if not np.all(np.isfinite(points[mask])):
        raise ValueError("observation.points: non-finite points in valid slots")
    half = fields["half_extents"][0] if half is not None else None
    return Observation(points, mask, kind=kind, half_extents=half)


def plan_every_skeleton(key, model, params, observation, goal, skeletons: Sequence, config
                        ) -> list[Plan]:
    """Plans every skeleton's args by CEM (as plan_skeleton): one Plan per skeleton, in order.

    Skeletons of equal length T run in one vmapped compiled call, compiled once per (T, number
    of such skeletons, goal size, observation shapes, CEM settings). Every Plan carries the
    scores of all skeletons in skeleton_scores.

    Args:
      key: PRNG key (split once per skeleton), or None for PRNGKey(config.seed).
      model, params: the SkillEffectModel and its parameters.
      observation: an Observation (or any object with the same fields) of one scene.
      goal: a tasks.Goal over the observation's slots.
      skeletons: a non-empty sequence of skeletons (tuples of tasks.SkeletonStep).
      config: a PlannerConfig, ConfigDict or mapping.

    Raises:
      ValueError: empty skeleton list, a goal or a skeleton naming slots the scene lacks,
        malformed observation arrays.
    """
    config = as_planner_config(config)
    key = jax.random.PRNGKey(config.seed) if key is None else key
    observation = _check_observation(observation)
    if len(skeletons) == 0:
        raise ValueError("skeletons: the task gave no plan skeletons")
    goal_arrays = check_goal(goal, observation.mask)
    arrays = [skeleton_arrays(s, observation.mask, observation.kind, f"skeletons[{index}]")
              for index, s in enumerate(skeletons)]
    # Skeletons of equal length share one vmapped compiled call (and one compilation), and
    # every call is dispatched before the single host transfer below.
    # Neither the seed nor the skeleton choice is part of the compiled function.
    config = config._replace(seed=0, clearing_skeletons=False)
    keys = jax.random.split(key, len(arrays))
    by_length: dict[int, list[int]] = {}
    for index, skeleton in enumerate(arrays):
        by_length.setdefault(skeleton.skill.shape[0], []).append(index)
    outputs = {length: _plan_skeletons_compiled(
        keys[np.array(indices)], model, params, observation,
        stack_rows([arrays[i] for i in indices]), goal_arrays, config)
        for length, indices in by_length.items()}
    outputs = jax.device_get(outputs)
    results = [None] * len(arrays)
    for length, indices in by_length.items():
        for row, index in enumerate(indices):
            results[index] = tuple(np.asarray(field)[row] for field in outputs[length])
    scores = np.array([float(score) for _, score, _ in results], np.float64)
    return [Plan(index, Skill(chosen.skill, chosen.obj, chosen.support,
                              np.asarray(step_params, np.float32)),
                 float(score), np.asarray(relations), scores)
            for index, (chosen, (step_params, score, relations))
            in enumerate(zip(arrays, results, strict=True))]


def best_plan(plans: Sequence[Plan]) -> Plan:
    """The plan with the highest goal log-probability (a NaN score never wins)."""
    scores = np.array([plan.score for plan in plans], np.float64)
    return plans[int(np.argmax(np.where(np.isnan(scores), -np.inf, scores)))]


def plan_skeletons(key, model, params, observation, goal, skeletons: Sequence, config) -> Plan:
    """The best of plan_every_skeleton's plans (same arguments and errors)."""
    return best_plan(plan_every_skeleton(key, model, params, observation, goal, skeletons,
                                         config))


def task_skeletons(task, scene: Scene, config) -> tuple:
    """The skeletons a planner searches for a task in `scene`.

    task.skeletons(scene), followed by task.clearing_skeletons(scene) when
    config.clearing_skeletons (a PlannerConfig, ConfigDict or mapping) is set.
    """
    skeletons = tuple(task.skeletons(scene))
    if as_planner_config(config).clearing_skeletons:
        skeletons += tuple(task.clearing_skeletons(scene))
    return skeletons


def plan(key, model, params, observation, task, scene: Scene, config) -> Plan:
    """Plans a task: the goal and skeletons come from task.goal(scene), task_skeletons(...).

    Args:
      key: PRNG key, or None for PRNGKey(config.seed).
      model, params: the SkillEffectModel and its parameters.
      observation: an Observation of the scene as perceived.
      task: an f2p.tasks.Task.
      scene: the (reconstructed) scene that defines the goal's and skeletons' slots.
      config: a PlannerConfig, ConfigDict or mapping.

    Returns:
      The best Plan over the task's skeletons.
    """
    return plan_skeletons(key, model, params, observation, task.goal(scene),
                          task_skeletons(task, scene, config), config)
