"""The cross-entropy method over a box, and the CEM settings the planners share."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from f2p.io.config import as_named_tuple

__all__ = ["CEMResult", "PlannerConfig", "as_planner_config", "cem"]


class PlannerConfig(NamedTuple):
    """CEM settings.

    Attributes:
      population: samples per CEM iteration.
      iterations: CEM iterations.
      elites: best samples that refit the Gaussian (1 <= elites <= population).
      init_std: initial standard deviation as a fraction of each arg's box width.
      seed: PRNG seed used when the caller passes key=None.
      clearance_weight: nats of plan score lost per metre of placement overlap with objects
        still standing where a step places (f2p.clearance); 0 plans on the model alone.
      clearing_skeletons: plan over the task's clearing_skeletons as well as its skeletons
        (f2p.planner.task_skeletons); not used inside the compiled search.
    """

    population: int = 64
    iterations: int = 5
    elites: int = 8
    init_std: float = 0.5
    seed: int = 0
    clearance_weight: float = 0.0
    clearing_skeletons: bool = False


def as_planner_config(config) -> PlannerConfig:
    """Returns a validated PlannerConfig from a PlannerConfig, ConfigDict or mapping.

    Missing fields take PlannerConfig's defaults; unknown fields raise (they are likely typos).
    """
    result = as_named_tuple(config, PlannerConfig, "planner")
    for name in ("population", "iterations", "elites"):
        if int(getattr(result, name)) < 1:
            raise ValueError(f"config.{name}: must be >= 1, got {getattr(result, name)}")
    if result.elites > result.population:
        raise ValueError(f"config.elites: {result.elites} exceeds population {result.population}")
    if not float(result.init_std) > 0:
        raise ValueError(f"config.init_std: must be > 0, got {result.init_std}")
    if not float(result.clearance_weight) >= 0:
        raise ValueError(f"config.clearance_weight: must be >= 0, got {result.clearance_weight}")
    if not isinstance(result.clearing_skeletons, (bool, np.bool_)):
        raise ValueError("config.clearing_skeletons: must be True or False, got "
                         f"{result.clearing_skeletons!r}")
    return PlannerConfig(int(result.population), int(result.iterations), int(result.elites),
                         float(result.init_std), int(result.seed),
                         float(result.clearance_weight), bool(result.clearing_skeletons))


class CEMResult(NamedTuple):
    """Outcome of cem().

    Attributes:
      best_params: the best sample ever scored, shaped like `low`.
      best_score: [] its score (-inf when every score was -inf or NaN).
      mean, std: the final Gaussian, shaped like `low`.
      score_history: [iterations] best score so far after each iteration (non-decreasing).
    """

    best_params: jax.Array
    best_score: jax.Array
    mean: jax.Array
    std: jax.Array
    score_history: jax.Array


def cem(key: jax.Array, score_fn: Callable[[jax.Array], jax.Array], low, high,
        config) -> CEMResult:
    """Maximises score_fn over the box [low, high] by the cross-entropy method.

    One independent Gaussian per coordinate starts at the box centre with std init_std times
    the box width; every iteration samples `population` points (clipped to the box), scores
    them with vmap(score_fn), and refits mean and std to the `elites` best. Sample 0 of each
    iteration is the current mean, so the mean's score is always considered. Pure and
    traceable: call it inside jit (one lax.scan over iterations).

    Args:
      key: PRNG key.
      score_fn: maps params shaped like `low` to a scalar score (higher is better).
      low, high: box bounds of the same shape (any shape), low <= high.
      config: a PlannerConfig (or anything as_planner_config accepts).

    Returns:
      A CEMResult.
    """
    config = as_planner_config(config)
    low = jnp.asarray(low, jnp.float32)
    high = jnp.asarray(high, jnp.float32)
    if low.shape != high.shape:
        raise ValueError(f"high: shape {high.shape} differs from low's {low.shape}")
    mean = 0.5 * (low + high)
    std = config.init_std * (high - low)
    batch_score = jax.vmap(score_fn)

    def iteration(carry, iteration_key):
        mean, std, best_params, best_score = carry
        noise = jax.random.normal(iteration_key, (config.population,) + low.shape)
        samples = jnp.clip(mean + std * noise, low, high).at[0].set(mean)
        scores = batch_score(samples)
        # NaN never wins: it would poison top_k and the refit.
        scores = jnp.where(jnp.isnan(scores), -jnp.inf, scores)
        elite_scores, elite_index = jax.lax.top_k(scores, config.elites)
        elites = samples[elite_index]
        improved = elite_scores[0] > best_score
        best_params = jnp.where(improved, elites[0], best_params)
        best_score = jnp.where(improved, elite_scores[0], best_score)
        # The elite mean of in-box samples stays in the box (it is convex).
        carry = (elites.mean(axis=0), elites.std(axis=0), best_params, best_score)
        return carry, best_score

    keys = jax.random.split(key, config.iterations)
    initial = (mean, std, mean, jnp.array(-jnp.inf, jnp.float32))
    (mean, std, best_params, best_score), history = jax.lax.scan(iteration, initial, keys)
    return CEMResult(best_params, best_score, mean, std, history)
