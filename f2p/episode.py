"""One episode against a World: perceive, plan, execute step by step, detect, recover."""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import numpy as np

from f2p import agent as monitor
from f2p.agent import Agent, Progress, as_believed, perceive
from f2p.io.failures import Failure, FailureTruth
from f2p.planner import Plan
from f2p.recovery import ACTIONS, RecoveryContext, RecoveryPolicy
from f2p.scene import RELATION_NAMES, SKILL_NAMES, Skill, take_row
from f2p.tasks.base import Task
from f2p.world import Observation, World


def start(world: World, task: Task, agent: Agent, key: jax.Array) -> tuple[Progress, dict]:
    """Observe, perceive, set the goal and plan: the Progress before the first step.

    Returns:
      (progress, record): record is the JSON-ready start of the episode record.

    Raises:
      ValueError: the goal names objects the believed scene does not have.
    """
    belief, seen = perceive(agent, world.observe(), None)
    goal = task.goal(belief)
    try:  # before any planning
        monitor.goal_triples(goal, seen.mask)
    except ValueError as error:
        raise ValueError(f"the {task.name} goal names objects the believed scene does not "
                         f"have (valid slots {np.flatnonzero(seen.mask).tolist()}): {error}"
                         ) from error
    plan_key, key = jax.random.split(key)
    started = time.perf_counter()
    plan = agent.plan(plan_key, agent.params, seen, task, belief, goal)
    record = {"initial_status": world.true_status(), "goal": goal.describe(),
              "plan": plan_record(plan), "plan_seconds": time.perf_counter() - started,
              "steps": [], "recoveries": [], "detected": False, "detection_step": None,
              "false_alarm": None, "first_true_mismatch_step": None, "error": None}
    return Progress(seen, belief, goal, plan, 0, agent.params, 0, key), record


def plan_record(plan: Plan) -> dict[str, Any]:
    """The JSON-ready summary of a plan: chosen skeleton, scores, skills."""
    skills = [skill_record(take_row(plan.skills, t)) for t in range(plan.relations.shape[0])]
    return {"skeleton_index": plan.skeleton_index, "score": plan.score,
            "goal_probability": float(np.exp(plan.score)),
            "skeleton_scores": np.asarray(plan.skeleton_scores).tolist(),
            "explored": bool(plan.explored), "skills": skills}


def skill_record(skill: Skill) -> dict[str, Any]:
    """One skill as JSON: name, object, support, rounded params."""
    return {"skill": SKILL_NAMES[int(skill.skill)], "obj": int(skill.obj),
            "support": int(skill.support), "params": np.asarray(skill.params).round(4).tolist()}


class EpisodeResult(NamedTuple):
    """How one episode ended under one recovery policy.

    Attributes:
      success: the goal holds in the world's true final state.
      record: JSON-ready record: plan, per-step checks (with the truth, for analysis),
        detections, recoveries, outcome and timings.
      failure: the first detected Failure, or None.
    """

    success: bool
    record: dict[str, Any]
    failure: Failure | None


def run_episode(world: World, task: Task, agent: Agent, policies: Mapping[str, RecoveryPolicy],
                key: jax.Array, *, seeds: Mapping[str, int] | None = None,
                metadata: Mapping[str, Any] | None = None,
                max_steps: int = 32) -> dict[str, EpisodeResult]:
    """Plays one episode, branching at the first detected failure into every policy.

    The steps up to and including the first detected failure are shared. There the world is
    snapshotted, and each policy continues from that snapshot and the same agent state, so
    all of them face bit-identical conditions. Without a detection every policy gets the same
    result. Success is read from the world's true_* view, which the agent never sees.

    Args:
      world: the World (it ends in the state of the last policy's branch).
      task: the task; its goal is set on the first belief.
      agent: the Agent.
      policies: name -> RecoveryPolicy, run in this order.
      key: PRNG key of the episode's planning.
      seeds: JSON-ready seeds that rebuild the episode, stored in Failure records.
      metadata: JSON-ready context stored in Failure records.
      max_steps: bound on the skills executed in one branch (replans can add steps).

    Returns:
      name -> EpisodeResult, one per policy.
    """
    if not policies:
        raise ValueError("policies: give at least one recovery policy")
    started = time.perf_counter()
    context = _Context(world, task, agent, dict(seeds or {}), dict(metadata or {}), max_steps)
    progress, record = start(world, task, agent, key)
    progress, failure = _execute(context, progress, record, policy=None, failure=None)
    if failure is None:
        result = _finish(context, progress, record, time.perf_counter() - started)
        return {name: result._replace(record=copy.deepcopy(result.record)) for name in policies}
    branch_point, shared_seconds = world.snapshot(), time.perf_counter() - started
    results = {}
    for name, policy in policies.items():
        branch_started = time.perf_counter()
        world.restore(branch_point)
        branch_record = copy.deepcopy(record)
        branched, _ = _execute(context, progress, branch_record, policy, failure)
        seconds = shared_seconds + time.perf_counter() - branch_started
        results[name] = _finish(context, branched, branch_record, seconds)._replace(
            failure=failure)
    return results


class _Context(NamedTuple):
    world: World
    task: Task
    agent: Agent
    seeds: dict[str, int]
    metadata: dict[str, Any]
    max_steps: int


def _execute(context: _Context, progress: Progress, record: dict[str, Any],
             policy: RecoveryPolicy | None, failure: Failure | None
             ) -> tuple[Progress, Failure | None]:
    """Executes the plan from progress.next_step, detecting failures after every step.

    With policy None it returns right after the first detected failure (the branch point).
    Otherwise `failure`, when given, is first handed to the policy (the branch starts there),
    and every later detection too, until the plan ends, a policy stops, or max_steps.

    Returns:
      (progress, failure): the last progress, and the detected failure when policy is None.
    """
    world, agent = context.world, context.agent
    if failure is not None and policy is not None:
        progress, stop = _recover(context, progress, record, policy, failure)
        if stop:
            return progress, failure
    while progress.next_step < progress.plan.relations.shape[0]:
        if world.steps >= context.max_steps:
            record["error"] = f"step budget: {context.max_steps} skills executed"
            break
        step, plan = progress.next_step, progress.plan
        skill = take_row(plan.skills, step)
        snapshot = world.snapshot()
        truth_before = (world.true_scene(), world.true_relations())
        try:
            observation = world.step(skill)
        except RuntimeError as error:  # the simulator diverged: the episode cannot go on
            record["error"] = str(error)
            break
        before = progress.observation
        seen = before._replace(points=observation.points, num_visible=observation.num_visible)
        observed = agent.read(progress.params, seen)
        check = monitor.detect_failure(plan.relations[step], observed, progress.goal, seen.mask,
                                       agent.detection_threshold)
        # Scoring only: the same check against the true relations, for the record.
        truth = world.true_relations()
        true_check = monitor.detect_failure(plan.relations[step], truth, progress.goal,
                                            seen.mask, agent.detection_threshold)
        if true_check.failed and record["first_true_mismatch_step"] is None:
            record["first_true_mismatch_step"] = len(record["steps"])
        record["steps"].append({"step": len(record["steps"]), "plan_step": step,
                                "skill": skill_record(skill), "status": world.true_status(),
                                "detected": check.failed, "true_mismatch": true_check.failed,
                                "triples": monitor.triples_table(check, truth)})
        progress = progress._replace(observation=seen, next_step=step + 1)
        if not check.failed:
            continue
        failure = _failure(context, progress, before, skill, step, observed, snapshot,
                           FailureTruth(truth_before[0], truth_before[1], truth))
        if not record["detected"]:
            record.update(detected=True, detection_step=len(record["steps"]) - 1,
                          false_alarm=not true_check.failed)
        if policy is None:
            return progress, failure
        progress, stop = _recover(context, progress, record, policy, failure)
        if stop:
            break
    return progress, None


def _failure(context: _Context, progress: Progress, before: Observation, skill: Skill,
             step: int, observed: np.ndarray, snapshot, truth: FailureTruth) -> Failure:
    """The Failure record of the step just executed (belief refitted from the pre-step view)."""
    belief_before, seen_before = perceive(context.agent, before, progress.belief)
    return Failure(
        task=context.task.name, goal=progress.goal,
        detection_threshold=context.agent.detection_threshold, step=step,
        plan=progress.plan.skills, skill=skill,
        predicted_relations=np.asarray(progress.plan.relations[step]),
        observed_relations=np.asarray(observed), observation_before=seen_before,
        observation_after=progress.observation, belief_before=belief_before,
        snapshot_before=snapshot, seeds=context.seeds,
        metadata={**context.metadata, "plan_score": progress.plan.score,
                  "skeleton_index": progress.plan.skeleton_index,
                  "recoveries": progress.recoveries},
        truth=truth)


def _recover(context: _Context, progress: Progress, record: dict[str, Any],
             policy: RecoveryPolicy, failure: Failure) -> tuple[Progress, bool]:
    """Hands a failure to the policy and applies its decision; returns (progress, stop)."""
    policy_key, key = jax.random.split(progress.key)
    progress = progress._replace(key=key)
    started = time.perf_counter()
    decision = policy(RecoveryContext(failure, context.agent._replace(params=progress.params),
                                      progress, context.task, policy_key))
    if decision.action not in ACTIONS:
        raise ValueError(f"recovery action: {decision.action!r} is not one of "
                         f"{', '.join(ACTIONS)}")
    entry = {"after_step": len(record["steps"]) - 1, "action": decision.action,
             "seconds": time.perf_counter() - started, **dict(decision.info)}
    if decision.action == "replace":
        if decision.plan is None:
            raise ValueError("recovery: action 'replace' needs a plan")
        belief = progress.belief if decision.belief is None else decision.belief
        params = progress.params if decision.params is None else decision.params
        progress = progress._replace(observation=as_believed(progress.observation, belief),
                                     belief=belief, plan=decision.plan, next_step=0,
                                     params=params, recoveries=progress.recoveries + 1)
        entry["plan"] = plan_record(decision.plan)
    record["recoveries"].append(entry)
    return progress, decision.action == "stop"


def _finish(context: _Context, progress: Progress, record: dict[str, Any],
            seconds: float) -> EpisodeResult:
    """Scores the episode on the world's true final state; seconds is its wall time."""
    world = context.world
    truth = world.true_relations()
    final_check = monitor.detect_failure(progress.plan.relations[-1], truth, progress.goal,
                                         progress.observation.mask)
    wanted = progress.goal.arrays()[3]
    unmet = [f"{'' if want else 'not '}{RELATION_NAMES[r]}({i}, {j})"
             for r, i, j, holds, want in zip(final_check.relation, final_check.first,
                                             final_check.second, final_check.observed, wanted,
                                             strict=True) if holds != want]
    success = bool(context.task.is_success(world.true_scene(), truth))
    record.update(success=success, final_status=world.true_status(),
                  steps_executed=world.steps, unmet_goal=unmet,
                  episode_seconds=seconds)
    return EpisodeResult(success, record, None)
