"""The agent (DESIGN section 5): perceive, plan, read relations from points, detect failures."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

from f2p import planner
from f2p.planner import check_goal
from f2p.scene import RELATION_NAMES, Scene
from f2p.tasks.base import Goal, Task
from f2p.world import Observation

DETECTION_THRESHOLD = 0.5
"""A relation counts as holding when its probability exceeds this."""


class FailureCheck(NamedTuple):
    """Predicted against observed relations on the goal's triples after one executed step.

    Attributes:
      failed: True when at least one goal triple is predicted one way and observed the other.
      relation, first, second: [G] int32 the goal triples (relation index, i, j).
      predicted: [G] bool the plan's prediction of each triple after the step.
      observed: [G] bool each triple as read from the observation after the step.
      mismatch: [G] bool predicted != observed.
    """

    failed: bool
    relation: np.ndarray
    first: np.ndarray
    second: np.ndarray
    predicted: np.ndarray
    observed: np.ndarray
    mismatch: np.ndarray

    def describe(self) -> list[str]:
        """Return one line per mismatched triple, e.g. 'inside(3, 1): predicted 1, observed 0'."""
        return [f"{RELATION_NAMES[r]}({i}, {j}): predicted {int(p)}, observed {int(o)}"
                for r, i, j, p, o, bad in zip(self.relation, self.first, self.second,
                                               self.predicted, self.observed, self.mismatch,
                                               strict=True) if bad]


def read_relations(model, params, observation: Observation) -> np.ndarray:
    """Reads the current relations from an observation with the model's relation head.

    Args:
      model: a SkillEffectModel.
      params: its parameters.
      observation: an Observation of one scene (points [K, P, 3], mask, kind, half_extents).

    Returns:
      [K, K, R] float32 relation probabilities (near 0 for padded or diagonal pairs).
    """
    latents = model.encode(params, observation.points, observation.mask, observation.kind,
                           observation.half_extents)
    logits = model.decode_relations(params, latents, observation.mask)
    return np.asarray(jax.nn.sigmoid(logits), np.float32)


def goal_triples(goal, mask) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns the (relation, i, j) arrays [G] of a goal's must-hold and must-not-hold triples.

    Raises:
      ValueError: the goal names a slot the scene does not have (out of range or masked out),
        or is empty (see f2p.planner.check_goal).
    """
    relation, first, second, _ = check_goal(goal, mask)
    return (np.asarray(relation, np.int32), np.asarray(first, np.int32),
            np.asarray(second, np.int32))


def detect_failure(predicted, observed, goal, mask,
                   threshold: float = DETECTION_THRESHOLD) -> FailureCheck:
    """Compares predicted and observed relations on the relations the goal is made of.

    Only the goal's triples are compared (DESIGN section 5: "the relations that matter to the
    goal"): a wrong guess about an irrelevant pair must not stop an episode. Both sides are
    thresholded, so the comparison is between hard labels.

    Args:
      predicted: [K, K, R] relation probabilities the plan predicted after this step.
      observed: [K, K, R] relation probabilities (or bool labels) read after the step.
      goal: a tasks.Goal over the scene's slots.
      mask: [K] bool valid slots of the scene.
      threshold: probability above which a relation holds, in (0, 1).

    Returns:
      A FailureCheck.

    Raises:
      ValueError: mismatched shapes, a threshold outside (0, 1), or a goal naming slots the
        scene does not have.
    """
    predicted = np.asarray(predicted, np.float32)
    observed = np.asarray(observed, np.float32)
    if predicted.ndim != 3 or predicted.shape[0] != predicted.shape[1]:
        raise ValueError(f"predicted: shape {predicted.shape}, expected [K, K, R]")
    if observed.shape != predicted.shape:
        raise ValueError(f"observed: shape {observed.shape}, predicted has {predicted.shape}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold: must be in (0, 1), got {threshold}")
    mask = np.asarray(mask, bool)
    if mask.shape != predicted.shape[:1]:
        raise ValueError(f"mask: shape {mask.shape}, expected ({predicted.shape[0]},)")
    relation, first, second = goal_triples(goal, mask)
    predicted_holds = predicted[first, second, relation] > threshold
    observed_holds = observed[first, second, relation] > threshold
    mismatch = predicted_holds != observed_holds
    return FailureCheck(bool(mismatch.any()), relation, first, second, predicted_holds,
                        observed_holds, mismatch)


def triples_table(check: FailureCheck, truth=None) -> list[dict[str, Any]]:
    """Returns one JSON-ready dict per goal triple: names, predicted, observed (and true) labels.

    Args:
      check: a FailureCheck.
      truth: optional [K, K, R] bool true relations, for analysis (never shown to the agent).
    """
    rows = []
    for index in range(check.relation.shape[0]):
        r, i, j = int(check.relation[index]), int(check.first[index]), int(check.second[index])
        row = {"relation": RELATION_NAMES[r], "i": i, "j": j,
               "predicted": bool(check.predicted[index]),
               "observed": bool(check.observed[index]),
               "mismatch": bool(check.mismatch[index])}
        if truth is not None:
            row["true"] = bool(np.asarray(truth)[i, j, r])
        rows.append(row)
    return rows


PlanFn = Callable[[jax.Array, Any, Observation, Task, Scene, Goal], planner.Plan]
"""plan(key, params, observation, task, belief, goal) -> Plan over the belief's skeletons."""


class Agent(NamedTuple):
    """The robot's side of an episode. Nothing here may read the world's true state.

    Attributes:
      params: the skill-effect model's parameters (a repair replaces them).
      plan: a PlanFn.
      read: read(params, observation) -> [K, K, 9] relation probabilities of an observation.
      perceive: perceive(observation, prior) -> the believed Scene (Real2Sim); prior is the
        previous belief (None at the start of an episode).
      detection_threshold: probability above which a relation counts as holding.
    """

    params: Any
    plan: PlanFn
    read: Callable[[Any, Observation], np.ndarray]
    perceive: Callable[[Observation, Scene | None], Scene]
    detection_threshold: float = DETECTION_THRESHOLD


def choose_plan(key: jax.Array, plans: list[planner.Plan], explore_below: float = 0.0
                ) -> planner.Plan:
    """The best plan, or, when the model expects even that one to fail, another to explore.

    A plan whose predicted goal probability is below explore_below is one the model itself
    expects to miss the goal. Executing it teaches nothing when the model is right about it
    (no observation contradicts a prediction), while the model may be wrong about the plans it
    rejected. So below the threshold a skeleton other than the best is drawn uniformly with
    `key` and its plan is returned with explored=True: a wrong prediction along it is a
    detected failure to repair.

    Args:
      key: PRNG key of the draw.
      plans: one Plan per skeleton (f2p.planner.plan_every_skeleton), non-empty.
      explore_below: goal-probability threshold in [0, 1); 0 never explores.

    Raises:
      ValueError: explore_below outside [0, 1) or no plans.
    """
    if not 0.0 <= explore_below < 1.0:
        raise ValueError(f"explore_below: must be in [0, 1), got {explore_below}")
    if not plans:
        raise ValueError("plans: give at least one plan")
    best = planner.best_plan(plans)
    if len(plans) == 1 or not np.exp(best.score) < explore_below:
        return best
    others = [plan for plan in plans if plan.skeleton_index != best.skeleton_index]
    return others[int(jax.random.randint(key, (), 0, len(others)))]._replace(explored=True)


def model_agent(model, params, planner_config, perceive, detection_threshold: float =
                DETECTION_THRESHOLD, explore_below: float = 0.0) -> Agent:
    """An Agent that plans with CEM on `model` (f2p.planner) and reads relations with its head.

    explore_below > 0 makes it explore when its best plan's goal probability is below that
    (choose_plan); 0 always executes the best plan.
    """
    config = planner.as_planner_config(planner_config)
    explore_below = float(explore_below)
    if not 0.0 <= explore_below < 1.0:
        raise ValueError(f"explore_below: must be in [0, 1), got {explore_below}")

    def plan(key, params, observation, task, belief, goal):
        key = jax.random.PRNGKey(config.seed) if key is None else key
        plans = planner.plan_every_skeleton(key, model, params, observation, goal,
                                            planner.task_skeletons(task, belief, config), config)
        # The draw's key is folded from the planning key, which stays the one a
        # non-exploring agent plans with: its plans are unchanged.
        return choose_plan(jax.random.fold_in(key, 1), plans, explore_below)

    def read(params, observation):
        return read_relations(model, params, observation)

    return Agent(params, plan, read, perceive, float(detection_threshold))


class Progress(NamedTuple):
    """The agent's state between two steps; with a world snapshot it resumes an episode.

    Attributes:
      observation: the latest observation, with the believed mask and sizes filled in.
      belief: the latest believed scene (its slots define the goal and the skeletons).
      goal: the goal, fixed at the start of the episode.
      plan: the plan being executed.
      next_step: index into plan of the next skill to execute.
      params: the model parameters in use.
      recoveries: how many times a recovery policy replaced the plan.
      key: PRNG key for later planning.
    """

    observation: Observation
    belief: Scene
    goal: Goal
    plan: planner.Plan
    next_step: int
    params: Any
    recoveries: int
    key: jax.Array


def perceive(agent: Agent, observation: Observation, prior: Scene | None
             ) -> tuple[Scene, Observation]:
    """Real2Sim on an observation: the believed scene and the observation the model reads."""
    belief = agent.perceive(observation, prior)
    return belief, as_believed(observation, belief)


def as_believed(observation: Observation, belief: Scene) -> Observation:
    """The observation the model reads: slots valid in both, sizes from the believed scene."""
    mask = np.asarray(observation.mask, bool) & np.asarray(belief.mask, bool)
    return observation._replace(mask=mask, half_extents=belief.half_extents)


__all__ = ["DETECTION_THRESHOLD", "Agent", "FailureCheck", "PlanFn", "Progress", "as_believed",
           "choose_plan", "detect_failure", "goal_triples", "model_agent", "perceive",
           "read_relations", "triples_table"]
