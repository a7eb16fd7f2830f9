"""Fail2Progress generation (DESIGN section 6): N states x M actions from one failure, by name."""

from __future__ import annotations

import functools
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from f2p import objectives, svgd
from f2p.baselines import rejection_sampling, run_until_full
from f2p.objectives import POSE_DIMS, FailureScene, ObjectiveConfig

GENERATOR_NAMES = ("svgd", "gradient", "sampling", "random", "svgd_no_entropy")
"""Generators of (state, action) pairs compared under one label budget (DESIGN section 6)."""
TARGETED = ("svgd", "gradient", "sampling", "svgd_no_entropy")
"""Generators that start from the failure (`random` draws from the training distribution)."""


class GenerationConfig(NamedTuple):
    """Particle counts, steps and step sizes of the two stages.

    Attributes:
      num_states: N state particles (>= 2).
      num_actions: M action particles per state (>= 2); the label budget is N x M.
      state_steps, action_steps: optimiser steps of stage 1 and stage 2 (one scan each).
      state_learning_rate, action_learning_rate: Adam step sizes (metres per step, roughly).
      init_std: std (metres, and metres of yaw_scale * yaw) of the initial state particles
        around the failure scene; actions start at a^F plus objective.action_sigma noise.
      proposal_std: std of sampling's perturbations of the failure scene.
      sampling_batch: proposals per rejection-sampling draw.
      sampling_max_draws: bound on rejection-sampling draws; slots still empty then are
        filled with rejected proposals (and counted).
    """

    num_states: int = 20
    num_actions: int = 20
    state_steps: int = 60
    action_steps: int = 40
    state_learning_rate: float = 0.005
    action_learning_rate: float = 0.005
    init_std: float = 0.01
    proposal_std: float = 0.04
    sampling_batch: int = 64
    sampling_max_draws: int = 64


def check_generation_config(config: GenerationConfig) -> GenerationConfig:
    """Returns config, or raises ValueError naming the first bad field."""
    for field in ("num_states", "num_actions"):
        if int(getattr(config, field)) < 2:
            raise ValueError(f"generation.{field}: must be >= 2 (SVGD's kernel needs two "
                             f"particles), got {getattr(config, field)}")
    for field in ("state_steps", "action_steps", "sampling_batch", "sampling_max_draws"):
        if int(getattr(config, field)) < 1:
            raise ValueError(f"generation.{field}: must be >= 1, got {getattr(config, field)}")
    for field in ("state_learning_rate", "action_learning_rate", "init_std", "proposal_std"):
        if not float(getattr(config, field)) > 0:
            raise ValueError(f"generation.{field}: must be > 0, got {getattr(config, field)}")
    return config


def check_generator(name: str) -> str:
    """Returns name, or raises ValueError listing GENERATOR_NAMES."""
    if name not in GENERATOR_NAMES:
        raise ValueError(f"generator: unknown name {name!r}; allowed: {', '.join(GENERATOR_NAMES)}")
    return name


class Particles(NamedTuple):
    """What a targeted generator returns (arrays; leading axes static).

    Attributes:
      states: [N, K * 3] state particles (offsets from the failure scene, see objectives).
      actions: [N, M, 2] action particles per state, inside the skill's bounds.
      accepted: [N] bool, states that passed sampling's test (all True for the others).
      attempts: [] int32 proposals evaluated (sampling; 0 for the others).
      state_log_prob: [N] final state log-densities.
    """

    states: Any
    actions: Any
    accepted: Any
    attempts: Any
    state_log_prob: Any


def _stage_generator(name: str, log_prob, learning_rate: float) -> svgd.Generator:
    optimizer = optax.adam(learning_rate)
    if name == "gradient":
        return svgd.gradient(log_prob, optimizer)
    return svgd.svgd(log_prob, optimizer)


def _matching_relations(model, config: ObjectiveConfig, failure: FailureScene, params,
                        particle) -> jax.Array:
    """Sampling's test: every scored relation of R^F holds as read on the state, no penetration."""
    scene = objectives.pose_scene(failure, particle, config.yaw_scale)
    points = objectives.rendered(failure, scene, config.num_points)
    if config.relation_term == "model":
        latents = model.encode(params, points, scene.mask, scene.kind, scene.half_extents)
        prob = jax.nn.sigmoid(model.decode_relations(params, latents, scene.mask))
    else:
        contact = failure.target[..., objectives.REL["contact"]]
        prob = objectives.smooth_relations(scene, contact, config.temperature)
    same = (prob > 0.5) == (failure.target > 0.5)
    clean = objectives.prior_violation(failure, scene, config.workspace_radius) \
        < config.prior_scale**2
    return jnp.all(same | (failure.weight == 0)) & clean


def _states(name: str, model, objective: ObjectiveConfig, config: GenerationConfig, key,
            params, failure: FailureScene):
    """Stage 1: [N, K * 3] states, [N] accepted, attempts."""
    num_slots = failure.movable.shape[0]
    shape = (config.num_states, num_slots * POSE_DIMS)
    movable = jnp.repeat(failure.movable, POSE_DIMS).astype(jnp.float32)
    init_key, run_key = jax.random.split(key)
    if name == "sampling":
        def propose(proposal_key, n, context):
            del context
            noise = jax.random.normal(proposal_key, (n, shape[1]))
            return noise * config.proposal_std * movable

        def accept(particle, context):
            return _matching_relations(model, objective, failure, context, particle)

        generator = rejection_sampling(propose, accept, config.sampling_batch)
        state = run_until_full(generator, run_key, jnp.zeros(shape), config.sampling_max_draws,
                               params)
        # Slots the draws never filled take fresh (rejected) proposals: the budget is fixed.
        filler = propose(init_key, config.num_states, None)
        states = jnp.where(state.accepted[:, None], state.particles, filler)
        return states, state.accepted, state.attempts
    log_prob = functools.partial(objectives.state_log_prob, model, objective)
    generator = _stage_generator(name, log_prob, config.state_learning_rate)
    initial = jax.random.normal(init_key, shape) * config.init_std * movable
    final, _ = svgd.run(generator, run_key, initial, config.state_steps, (params, failure))
    states = final.particles * movable  # frozen slots stay exactly at the failure scene
    return states, jnp.ones(config.num_states, bool), jnp.zeros((), jnp.int32)


def _actions(name: str, model, objective: ObjectiveConfig, config: GenerationConfig, key,
             params, failure: FailureScene, states):
    """Stage 2: [N, M, 2] actions, vmapped over the states."""
    anchor = failure.skill.params
    keys = jax.random.split(key, config.num_states)

    def gaussian(action_key):
        noise = jax.random.normal(action_key, (config.num_actions, 2))
        return anchor + objective.action_sigma * noise

    if name in ("sampling", "svgd_no_entropy"):
        actions = jax.vmap(gaussian)(keys)
    else:
        log_prob = functools.partial(objectives.action_log_prob, model, objective)
        generator = _stage_generator(name, log_prob, config.action_learning_rate)

        def one(action_key, state):
            latents = objectives.state_latents(model, params, failure, state, objective)
            init_key, run_key = jax.random.split(action_key)
            final, _ = svgd.run(generator, run_key, gaussian(init_key), config.action_steps,
                                (params, failure, latents))
            return final.particles

        actions = jax.vmap(one)(keys, states)
    return jnp.clip(actions, failure.low, failure.high)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _generate_compiled(name, model, objective, config, key, params, failure):
    state_key, action_key = jax.random.split(key)
    states, accepted, attempts = _states(name, model, objective, config, state_key, params,
                                         failure)
    actions = _actions(name, model, objective, config, action_key, params, failure, states)
    log_prob = jax.vmap(lambda s: objectives.state_log_prob(model, objective, s,
                                                            (params, failure)))(states)
    return Particles(states, actions, accepted, attempts, log_prob)


_COMPILED: dict[Any, Any] = {}
"""Compiled generations by (name, model, configs, argument shapes): compile time is timed apart."""


def generate_particles(name: str, key: jax.Array, model, params, failure: FailureScene,
                       objective: ObjectiveConfig, config: GenerationConfig
                       ) -> tuple[Particles, dict[str, float]]:
    """Runs a targeted generator: one compiled function per (name, model, configs, shapes).

    The parameters and the failure are traced arguments, so a fine-tuned model or another
    failure with the same slot count reuses the compilation.

    Returns:
      (particles, timings): timings holds "compile_seconds" (0 when reused) and "seconds",
      the wall time of the run itself, blocked until done.

    Raises:
      ValueError: an unknown or untargeted generator name, or a bad config field.
    """
    check_generator(name)
    if name not in TARGETED:
        raise ValueError(f"generator: {name!r} draws from the task's training distribution; "
                         f"generate_particles runs only {', '.join(TARGETED)}")
    objectives.check_objective_config(objective)
    check_generation_config(config)
    arguments = (key, params, failure)
    shapes = jax.tree.map(lambda x: (jnp.shape(x), jnp.result_type(x)), arguments)
    cache_key = (name, model, objective, config, jax.tree.structure(arguments),
                 tuple(jax.tree.leaves(shapes)))
    compile_seconds = 0.0
    if cache_key not in _COMPILED:
        started = time.perf_counter()
        _COMPILED[cache_key] = _generate_compiled.lower(name, model, objective, config,
                                                        *arguments).compile()
        compile_seconds = time.perf_counter() - started
    started = time.perf_counter()
    particles = jax.block_until_ready(_COMPILED[cache_key](*arguments))
    return particles, {"compile_seconds": compile_seconds,
                       "seconds": time.perf_counter() - started}


def state_poses(failure: FailureScene, states, yaw_scale: float) -> np.ndarray:
    """[N, K, 3] world (x, y, yaw) of the state particles' scenes (NumPy)."""
    def one(particle):
        scene = objectives.pose_scene(failure, particle, yaw_scale)
        return jnp.concatenate([scene.pos[:, :2], scene.yaw[:, None]], axis=-1)

    return np.asarray(jax.vmap(one)(jnp.asarray(states)))


def diversity(poses: np.ndarray, movable, yaw_scale: float) -> float:
    """Mean pairwise distance between states over the movable objects' (x, y, yaw_scale * yaw).

    Metres; yaw differences are wrapped to (-pi, pi] first.
    """
    poses = np.asarray(poses, np.float64)[:, np.asarray(movable, bool)]
    if poses.shape[0] < 2:
        return 0.0
    delta = poses[:, None] - poses[None, :]
    delta[..., 2] = yaw_scale * (np.mod(delta[..., 2] + np.pi, 2 * np.pi) - np.pi)
    distance = np.sqrt(np.sum(delta**2, axis=(-1, -2)))
    upper = np.triu_indices(poses.shape[0], 1)
    return float(distance[upper].mean())
