"""Baseline generators (rejection and random sampling) and the registry naming every generator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from f2p import svgd as svgd_lib
from f2p.svgd import Generator, check_particles, with_context


class Target(NamedTuple):
    """What a generator may use; each generator needs only some fields.

    Each function also takes the target's data as its last argument when the generator's
    init/step get a context (see svgd.Generator), e.g. log_prob(particle, context).

    Attributes:
      log_prob: log-density of one particle (svgd, gradient).
      propose: propose(key, n) -> n particles, e.g. random perturbations of a reference (sampling).
      accept: accept(particle) -> bool, the rejection test (sampling).
      prior: prior(key, n) -> n particles from a generic distribution (random).
    """

    log_prob: Callable[..., jax.Array] | None = None
    propose: Callable[..., Any] | None = None
    accept: Callable[..., jax.Array] | None = None
    prior: Callable[..., Any] | None = None


class RejectionState(NamedTuple):
    """A fixed-capacity buffer of accepted samples (static shapes under jit).

    Attributes:
      particles: pytree with leading axis C (capacity); only rows with `accepted` are samples.
      accepted: [C] bool; the first `count` rows are True.
      count: number of accepted samples so far (<= C).
      attempts: number of proposals evaluated so far: the cost to report.
    """

    particles: Any
    accepted: jax.Array
    count: jax.Array
    attempts: jax.Array


class RejectionInfo(NamedTuple):
    """Per-step counters of rejection sampling."""

    count: jax.Array
    attempts: jax.Array


def rejection_sampling(propose: Callable[..., Any], accept: Callable[..., jax.Array],
                       batch_size: int = 64) -> Generator:
    """Rejection sampling: draw `batch_size` proposals per step, keep those that pass `accept`.

    The capacity is the particle count of the template given to init. Once the buffer is full,
    steps draw nothing and the attempt counter stops, so its final value is the true cost.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size: must be >= 1, got {batch_size}")

    def init(key: jax.Array | None, particles: Any, context: Any = None) -> RejectionState:
        del key, context  # the buffer starts empty
        check_particles(particles)
        capacity = jax.tree.leaves(particles)[0].shape[0]
        return RejectionState(particles, jnp.zeros(capacity, bool), jnp.zeros((), jnp.int32),
                              jnp.zeros((), jnp.int32))

    def draw(key: jax.Array, state: RejectionState, context: Any) -> RejectionState:
        capacity = state.accepted.shape[0]
        proposals = with_context(propose, context)(key, batch_size)
        ok = jax.vmap(with_context(accept, context))(proposals).astype(bool)
        # Accepted proposal number m goes to slot count + m; slots past the capacity are dropped.
        slots = jnp.where(ok, state.count + jnp.cumsum(ok) - 1, capacity)
        particles = jax.tree.map(lambda buf, new: buf.at[slots].set(new, mode="drop"),
                                 state.particles, proposals)
        accepted = state.accepted.at[slots].set(True, mode="drop")
        count = jnp.minimum(state.count + jnp.sum(ok), capacity)
        return RejectionState(particles, accepted, count, state.attempts + batch_size)

    def step(key: jax.Array, state: RejectionState,
             context: Any = None) -> tuple[RejectionState, RejectionInfo]:
        full = state.count >= state.accepted.shape[0]
        state = jax.lax.cond(full, lambda: state, lambda: draw(key, state, context))
        return state, RejectionInfo(state.count, state.attempts)

    return Generator(init, step)


def run_until_full(generator: Generator, key: jax.Array, particles: Any, max_steps: int,
                   context: Any = None):
    """Runs rejection sampling until the buffer is full or max_steps draws (a lax.while_loop).

    context is handed to init and every step (see svgd.Generator). Returns the final state.
    """
    init_key, loop_key = jax.random.split(key)
    state = generator.init(init_key, particles, context)

    def not_done(carry):
        step_index, state = carry
        return (step_index < max_steps) & (state.count < state.accepted.shape[0])

    def body(carry):
        step_index, state = carry
        state, _ = generator.step(jax.random.fold_in(loop_key, step_index), state, context)
        return step_index + 1, state

    return jax.lax.while_loop(not_done, body, (jnp.zeros((), jnp.int32), state))[1]


class RandomState(NamedTuple):
    """Particles drawn once from the prior."""

    particles: Any
    step: jax.Array


def random_sampling(prior: Callable[..., Any]) -> Generator:
    """Domain randomisation: N draws from a generic prior, not targeted; steps change nothing."""

    def init(key: jax.Array, particles: Any, context: Any = None) -> RandomState:
        check_particles(particles)
        num = jax.tree.leaves(particles)[0].shape[0]
        return RandomState(with_context(prior, context)(key, num), jnp.zeros((), jnp.int32))

    def step(key: jax.Array, state: RandomState,
             context: Any = None) -> tuple[RandomState, jax.Array]:
        del key, context
        return RandomState(state.particles, state.step + 1), state.step + 1

    return Generator(init, step)


def _require(target: Target, name: str, fields: tuple[str, ...]) -> None:
    missing = [field for field in fields if getattr(target, field) is None]
    if missing:
        raise ValueError(f"target: generator {name!r} needs target.{', target.'.join(missing)}")


def make_generator(name: str, target: Target, *, optimizer: optax.GradientTransformation | None
                   = None, kernel: str = "rbf", bandwidth: float | jax.Array | None = None,
                   batch_size: int = 64) -> Generator:
    """Builds the generator registered under `name` (a flag value) for a target.

    Args:
      name: one of GENERATOR_NAMES; any other raises ValueError naming it and the allowed.
      target: the Target; each generator checks that the fields it needs are set.
      optimizer: optax transformation for svgd and gradient (default: Adam, 1e-2).
      kernel, bandwidth: SVGD kernel name and fixed bandwidth (None = median heuristic).
      batch_size: proposals per step for rejection sampling.
    """
    if name not in GENERATOR_NAMES:
        raise ValueError(f"generator: unknown name {name!r}; allowed: {', '.join(GENERATOR_NAMES)}")
    optimizer = optax.adam(1e-2) if optimizer is None else optimizer
    if name == "svgd":
        _require(target, name, ("log_prob",))
        return svgd_lib.svgd(target.log_prob, optimizer, kernel, bandwidth)
    if name == "gradient":
        _require(target, name, ("log_prob",))
        return svgd_lib.gradient(target.log_prob, optimizer)
    if name == "sampling":
        _require(target, name, ("propose", "accept"))
        return rejection_sampling(target.propose, target.accept, batch_size)
    _require(target, name, ("prior",))
    return random_sampling(target.prior)


GENERATOR_NAMES = ("svgd", "gradient", "sampling", "random")
