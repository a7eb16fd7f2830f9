"""Oracle planner for evaluation: candidate plans scored by simulating them from the true scene."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import numpy as np

from f2p.io.config import as_named_tuple
from f2p.planner import Plan, SkeletonArrays, check_goal, skeleton_arrays
from f2p.scene import NUM_RELATIONS, Scene, Skill, stack_rows, take_row

__all__ = ["OracleConfig", "Rollouts", "as_oracle_config", "plan", "simulate"]


class OracleConfig(NamedTuple):
    """Oracle search settings (the `oracle` section of experiments/configs/evaluate.py).

    Attributes:
      population: candidates simulated per skeleton and iteration.
      iterations: CEM iterations (at most: the search stops once a skeleton has `elites`
        successes in one iteration).
      elites: best candidates that refit the Gaussian; also that early-stop success count.
      seed: simulator seed used when plan() gets key=None.
      num_workers: worker processes of the simulator the caller builds; plan() does not read it.
    """

    population: int = 64
    iterations: int = 3
    elites: int = 8
    seed: int = 0
    num_workers: int = 2


MIN_STD = 0.02
"""Floor of the refitted std (normalised units), so CEM never collapses onto one point."""


def as_oracle_config(config) -> OracleConfig:
    """Returns a validated OracleConfig from an OracleConfig, ConfigDict, mapping or None.

    Missing fields take the defaults; unknown fields raise (they are likely typos).
    """
    if config is None:
        return OracleConfig()
    result = as_named_tuple(config, OracleConfig, "oracle")
    for name in ("population", "iterations", "elites"):
        if int(getattr(result, name)) < 1:
            raise ValueError(f"config.{name}: must be >= 1, got {getattr(result, name)}")
    if int(result.elites) > int(result.population):
        raise ValueError(f"config.elites: {result.elites} exceeds population {result.population}")
    return OracleConfig(int(result.population), int(result.iterations), int(result.elites),
                        int(result.seed), int(result.num_workers))


class Rollouts(NamedTuple):
    """Simulated outcomes of N candidate plans (rows may come from different skeletons).

    Attributes:
      success: [N] bool task.is_success of the final true-started state.
      satisfied: [N] float fraction of the goal's literals that hold at the end.
      alive: [N] bool every step's simulation was usable (status ok or fell).
      relations: list of N [T_n, K, K, R] bool relations after every step of row n.
      final: Scene batch [N] of the final states.
    """

    success: np.ndarray
    satisfied: np.ndarray
    alive: np.ndarray
    relations: list[np.ndarray]
    final: Scene


def simulate(simulator, scene: Scene, skeletons: Sequence[SkeletonArrays], rows: Sequence[int],
             params: Sequence[np.ndarray], task, goal, seed: int) -> Rollouts:
    """Executes candidate plans step by step from one scene, one execute call per step.

    Args:
      simulator: anything with execute(scenes, skills, seed) -> f2p.world.Outcome.
      scene: the unbatched scene every candidate starts from (the true scene).
      skeletons: SkeletonArrays the rows refer to.
      rows: [N] index into `skeletons` of each candidate.
      params: N arrays [T_n, 2], the continuous arguments of each candidate.
      task: the Task whose is_success judges the final states.
      goal: the tasks.Goal whose literals give the graded `satisfied`.
      seed: simulator seed; step t uses seed + t, so candidates stay reproducible.

    Returns:
      Rollouts.
    """
    count = len(rows)
    lengths = np.array([len(skeletons[row].skill) for row in rows], np.int64)
    states = stack_rows([scene] * count)
    alive = np.ones(count, bool)
    k = np.asarray(scene.mask).shape[0]
    relations = [np.zeros((length, k, k, NUM_RELATIONS), bool) for length in lengths]
    for t in range(int(lengths.max(initial=0))):
        live = np.flatnonzero(alive & (lengths > t))
        if live.size == 0:
            break
        skills = stack_rows([
            Skill(*(np.asarray(field)[t] for field in skeletons[rows[n]][:3]),
                  np.asarray(params[n][t], np.float32)) for n in live])
        outcome = simulator.execute(take_row(states, live), skills, seed=int(seed) + t)
        for field, value in zip(states, outcome.post, strict=True):
            field[live] = np.asarray(value)
        for position, n in enumerate(live):
            relations[n][t] = np.asarray(outcome.relations_post[position], bool)
        alive[live] &= np.asarray(outcome.ok, bool)
    relation, first, second, target = (np.asarray(x) for x in goal.arrays())
    success = np.zeros(count, bool)
    satisfied = np.zeros(count)
    for n in np.flatnonzero(alive):
        last = relations[n][-1]
        satisfied[n] = np.mean(last[first, second, relation] == target)
        success[n] = bool(task.is_success(take_row(states, n), last))
    return Rollouts(success, satisfied, alive, relations, states)


def _seed_from(key, config: OracleConfig) -> int:
    if key is None:
        return config.seed
    return int(jax.random.randint(key, (), 0, 2**30))


def _draw(rng: np.random.Generator, mean, std, population: int, first: bool) -> np.ndarray:
    """[population, D] normalised candidates; row 0 is the mean (the box centre at first)."""
    if first:
        samples = rng.uniform(0.0, 1.0, (population,) + mean.shape)
    else:
        samples = np.clip(mean + std * rng.standard_normal((population,) + mean.shape), 0, 1)
    samples[0] = mean
    return samples


def _central(points: np.ndarray) -> int:
    """Index of the point nearest the centroid of `points` [M, D]."""
    return int(np.argmin(np.sum((points - points.mean(axis=0)) ** 2, axis=-1)))


def plan(key, simulator, true_scene: Scene, task, belief: Scene, goal=None, config=None) -> Plan:
    """Plans a task by simulating candidate plans from the true scene (evaluation only).

    The model planner scores a plan by the skill-effect model's belief; the oracle scores it by
    what the simulator does with it, started from the world's TRUE state, over the very
    skeletons and argument bounds the model planner uses (task.skeletons of the believed
    scene). It is the upper bound of DESIGN section 8 and must never be handed to the agent.

    Search, per skeleton: CEM over all continuous arguments at once, in coordinates normalised
    to the skeleton's box. The first iteration draws uniformly in the box (candidate 0 is its
    centre); later ones draw from a Gaussian refitted to the elites. A candidate scores task
    success (1) plus the fraction of goal literals it satisfies (a graded signal while nothing
    succeeds). Step t of every live candidate of every skeleton goes to the simulator in one
    execute call, and step t + 1 starts from those post states; a candidate whose simulation
    is flagged (tipped, interpenetration, diverged...) is dropped. The search stops after the
    first iteration in which some skeleton has `elites` successes. The skeleton with the
    highest success fraction wins,
    and its plan is the successful candidate nearest the centre of its successes: the most
    robust one when the real world's physics differ a little from the nominal.

    Args:
      key: JAX PRNG key (the simulator seed and the candidates derive from it), or None for
        config.seed.
      simulator: the nominal simulator, anything with execute(scenes, skills, seed) ->
        f2p.world.Outcome (e.g. isaac_bridge.mujoco_backend.MujocoSimulator).
      true_scene: the world's true state (unbatched); every candidate starts from it.
      task: the Task; its skeletons come from the believed scene, as the model planner's do.
      belief: the scene the agent believes; it defines the skeletons' slots and bounds.
      goal: the tasks.Goal the episode holds the agent to (default task.goal(belief)).
      config: an OracleConfig, ConfigDict or mapping (see OracleConfig).

    Returns:
      A planner.Plan: the chosen skeleton, its skills, the relations the simulator gave after
      every step [T, K, K, 9] (float32 0/1), score = log of the fraction of the chosen
      skeleton's candidates that succeeded in its best iteration (floored at
      1 / (2 population)), and skeleton_scores, the same per skeleton.

    Raises:
      ValueError: a bad config, no skeletons, or a goal or skeleton naming missing slots.
    """
    config = as_oracle_config(config)
    goal = task.goal(belief) if goal is None else goal
    mask = np.asarray(belief.mask, bool) & np.asarray(true_scene.mask, bool)
    check_goal(goal, mask)
    skeletons = task.skeletons(belief)
    if len(skeletons) == 0:
        raise ValueError("skeletons: the task gave no plan skeletons")
    arrays = [skeleton_arrays(s, mask, np.asarray(belief.kind), f"skeletons[{index}]")
              for index, s in enumerate(skeletons)]
    seed = _seed_from(key, config)
    rng = np.random.default_rng(seed)
    low = [a.low.reshape(-1).astype(np.float64) for a in arrays]
    width = [a.high.reshape(-1).astype(np.float64) - lo for a, lo in zip(arrays, low, strict=True)]
    mean = [np.full(lo.shape, 0.5) for lo in low]  # the first draw is uniform: std unused
    std = [np.full(lo.shape, 0.5) for lo in low]
    active = list(range(len(arrays)))  # every skeleton is searched in every iteration
    last: dict[int, tuple[np.ndarray, Rollouts]] = {}  # skeleton -> its best iteration
    for iteration in range(config.iterations):
        drawn = {s: _draw(rng, mean[s], std[s], config.population, iteration == 0) for s in active}
        rows = [s for s in active for _ in range(config.population)]
        params = [(low[s] + u * width[s]).reshape(-1, 2) for s in active for u in drawn[s]]
        rollouts = simulate(simulator, true_scene, arrays, rows, params, task, goal,
                            seed + 1000 * iteration)
        solved = False
        for position, s in enumerate(active):
            part = slice(position * config.population, (position + 1) * config.population)
            mine = Rollouts(rollouts.success[part], rollouts.satisfied[part],
                            rollouts.alive[part], rollouts.relations[part],
                            take_row(rollouts.final, np.arange(part.start, part.stop)))
            # Keep the iteration with the most successes (the latest on ties): a later one
            # can have fewer when CEM refits to elites that are not all successes.
            if s not in last or mine.success.sum() >= last[s][1].success.sum():
                last[s] = (drawn[s], mine)
            score = mine.success + mine.satisfied
            elite = np.argsort(-score, kind="stable")[:config.elites]
            mean[s] = drawn[s][elite].mean(axis=0)
            std[s] = np.maximum(drawn[s][elite].std(axis=0), MIN_STD)
            solved = solved or mine.success.sum() >= config.elites
        # Once one skeleton has `elites` successes the plan is found: refining the others
        # could only show them as reliable too, at the cost of a full simulated iteration.
        if solved:
            break
    rates = np.array([last[s][1].success.mean() for s in range(len(arrays))])
    floor = 1.0 / (2 * config.population)
    skeleton_scores = np.log(np.maximum(rates, floor))
    graded = np.array([np.max(last[s][1].success + last[s][1].satisfied)
                       for s in range(len(arrays))])
    best = int(np.argmax(rates)) if rates.max() > 0 else int(np.argmax(graded))
    drawn_best, rollouts_best = last[best]
    winners = np.flatnonzero(rollouts_best.success)
    if winners.size:
        chosen = int(winners[_central(drawn_best[winners])])
    else:
        chosen = int(np.argmax(rollouts_best.success + rollouts_best.satisfied))
    params = (low[best] + drawn_best[chosen] * width[best]).reshape(-1, 2).astype(np.float32)
    skeleton = arrays[best]
    skills = Skill(skeleton.skill, skeleton.obj, skeleton.support, params)
    return Plan(best, skills, float(skeleton_scores[best]),
                rollouts_best.relations[chosen].astype(np.float32), skeleton_scores)

