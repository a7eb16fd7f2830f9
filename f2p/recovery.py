"""Recovery policies: what an episode does at a detected failure (original, stop, replan)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax

from f2p.agent import Agent, Progress, perceive
from f2p.io.failures import Failure
from f2p.planner import Plan
from f2p.scene import Scene
from f2p.tasks.base import Task


class Recovery(NamedTuple):
    """A recovery policy's decision at a detected failure.

    Attributes:
      action: "continue" (execute the rest of the plan), "stop" (end the episode) or
        "replace" (execute `plan` from its first step, with `params`).
      plan: the new plan, for "replace".
      params: the model parameters from now on, for "replace" (None keeps the current ones).
      belief: the scene the new plan was made for, for "replace" (None keeps the current one).
      info: JSON-ready notes for the episode record (timings, counts).
    """

    action: str
    plan: Plan | None = None
    params: Any = None
    belief: Scene | None = None
    info: Mapping[str, Any] = {}


class RecoveryContext(NamedTuple):
    """What a recovery policy receives: the failure, the agent, where the episode stands."""

    failure: Failure
    agent: Agent
    progress: Progress
    task: Task
    key: jax.Array


RecoveryPolicy = Callable[[RecoveryContext], Recovery]
ACTIONS = ("continue", "stop", "replace")


def original_policy(context: RecoveryContext) -> Recovery:
    """No update, no replan: the plan runs to its end."""
    del context
    return Recovery("continue")


def stop_policy(context: RecoveryContext) -> Recovery:
    """End the episode at the first detected failure (the evaluation of the base agent)."""
    del context
    return Recovery("stop")


def replan_policy(max_replans: int = 1) -> RecoveryPolicy:
    """Replan from the current observation with the same model, at most max_replans times.

    Once the budget is spent, later detections let the current plan run on.
    """
    if int(max_replans) < 1:
        raise ValueError(f"max_replans: must be >= 1, got {max_replans}")

    def policy(context: RecoveryContext) -> Recovery:
        progress = context.progress
        if progress.recoveries >= max_replans:
            return Recovery("continue", info={"budget_spent": True})
        started = time.perf_counter()
        belief, seen = perceive(context.agent, context.failure.observation_after,
                                progress.belief)
        new_plan = context.agent.plan(context.key, progress.params, seen, context.task,
                                      belief, progress.goal)
        return Recovery("replace", new_plan, belief=belief,
                        info={"plan_seconds": time.perf_counter() - started})

    return policy


POLICY_NAMES = ("original", "stop", "replan")
"""Policies make_policy builds by name (a repair policy comes from f2p.fail2progress)."""


def make_policy(name: str, *, max_replans: int = 1) -> RecoveryPolicy:
    """Returns the recovery policy called `name`.

    Raises:
      ValueError: an unknown name, listing the allowed ones.
    """
    if name == "original":
        return original_policy
    if name == "stop":
        return stop_policy
    if name == "replan":
        return replan_policy(max_replans)
    raise ValueError(f"policy: {name!r} is not one of {', '.join(POLICY_NAMES)}")
