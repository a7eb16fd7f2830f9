"""Fail2Progress generation (DESIGN section 6): N states x M actions from one failure, by name."""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from f2p import objectives, sharding, svgd
from f2p.baselines import rejection_sampling, run_until_full
from f2p.compile_cache import CompileCache
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
      bandwidth_scale: factor on SVGD's median-heuristic bandwidth in both stages (1.0: the
        heuristic itself; larger spreads the repulsion wider).
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
    bandwidth_scale: float = 1.0


def check_generation_config(config: GenerationConfig) -> GenerationConfig:
    """Returns config, or raises ValueError naming the first bad field."""
    for field in ("num_states", "num_actions"):
        if int(getattr(config, field)) < 2:
            raise ValueError(f"generation.{field}: must be >= 2 (SVGD's kernel needs two "
                             f"particles), got {getattr(config, field)}")
    for field in ("state_steps", "action_steps", "sampling_batch", "sampling_max_draws"):
        if int(getattr(config, field)) < 1:
            raise ValueError(f"generation.{field}: must be >= 1, got {getattr(config, field)}")
    for field in ("state_learning_rate", "action_learning_rate", "init_std", "proposal_std",
                  "bandwidth_scale"):
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


def _stage_generator(name: str, log_prob, learning_rate, bandwidth_scale) -> svgd.Generator:
    optimizer = optax.adam(learning_rate)
    if name == "gradient":
        return svgd.gradient(log_prob, optimizer)
    return svgd.svgd(log_prob, optimizer, bandwidth_scale=bandwidth_scale)


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
            params, failure: FailureScene, mesh):
    """Stage 1: [N, K * 3] states (split over mesh when given), [N] accepted, attempts."""
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
        # The draws fill one buffer in order (a scatter by count), so they run unsplit; only
        # the result is split, for stage 2.
        return sharding.split(states, mesh), state.accepted, state.attempts
    log_prob = functools.partial(objectives.state_log_prob, model, objective)
    generator = _stage_generator(name, log_prob, config.state_learning_rate,
                                 config.bandwidth_scale)
    initial = jax.random.normal(init_key, shape) * config.init_std * movable
    # Split before the scan: GSPMD carries the split through the loop and inserts the
    # collectives that SVGD's kernel (it couples all N particles) needs.
    initial = sharding.split(initial, mesh)
    final, _ = svgd.run(generator, run_key, initial, config.state_steps, (params, failure))
    states = final.particles * movable  # frozen slots stay exactly at the failure scene
    return (sharding.split(states, mesh), jnp.ones(config.num_states, bool),
            jnp.zeros((), jnp.int32))


def _actions(name: str, model, objective: ObjectiveConfig, config: GenerationConfig, key,
             params, failure: FailureScene, states, mesh):
    """Stage 2: [N, M, 2] actions, vmapped over the states (split along N over mesh)."""
    anchor = failure.skill.params
    keys = sharding.split(jax.random.split(key, config.num_states), mesh)

    def gaussian(action_key):
        noise = jax.random.normal(action_key, (config.num_actions, 2))
        return anchor + objective.action_sigma * noise

    if name in ("sampling", "svgd_no_entropy"):
        actions = jax.vmap(gaussian)(keys)
    else:
        log_prob = functools.partial(objectives.action_log_prob, model, objective)
        generator = _stage_generator(name, log_prob, config.action_learning_rate,
                                     config.bandwidth_scale)

        def one(action_key, state):
            latents = objectives.state_latents(model, params, failure, state, objective)
            init_key, run_key = jax.random.split(action_key)
            final, _ = svgd.run(generator, run_key, gaussian(init_key), config.action_steps,
                                (params, failure, latents))
            return final.particles

        actions = jax.vmap(one)(keys, states)
    return sharding.split(jnp.clip(actions, failure.low, failure.high), mesh)


def _generate(name, model, objective, config, mesh, key, params, failure) -> Particles:
    """Both stages; objective and config may hold traced scalars (generate_sweep's)."""
    state_key, action_key = jax.random.split(key)
    states, accepted, attempts = _states(name, model, objective, config, state_key, params,
                                         failure, mesh)
    actions = _actions(name, model, objective, config, action_key, params, failure, states,
                       mesh)
    log_prob = jax.vmap(lambda s: objectives.state_log_prob(model, objective, s,
                                                            (params, failure)))(states)
    accepted, log_prob = sharding.split((accepted, log_prob), mesh)
    return Particles(states, actions, accepted, attempts, log_prob)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4))
def _generate_compiled(name, model, objective, config, mesh, key, params, failure):
    return _generate(name, model, objective, config, mesh, key, params, failure)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4))
def _sweep_compiled(name, model, objective, config, mesh, key, params, failure, values):
    def one(point):  # one sweep point: {"section.field": traced scalar}
        traced_objective, traced_config = _with_values(objective, config, point)
        return _generate(name, model, traced_objective, traced_config, mesh, key, params,
                         failure)

    return jax.vmap(one)(values)  # key, params and failure are shared by every point


SWEEPABLE = tuple(f"objective.{field}" for field in (
    "relation_weight", "chamfer_sigma", "prior_weight", "prior_scale", "workspace_radius",
    "temperature", "entropy_weight", "action_sigma")) + tuple(f"generation.{field}" for field in (
        "state_learning_rate", "action_learning_rate", "init_std", "proposal_std",
        "bandwidth_scale"))
"""Fields generate_sweep traces: scalars read only by arithmetic, so no shape or branch moves.

Counts, steps, num_points and relation_term change shapes or the program; yaw_scale changes
the states' own units (the particles hold yaw_scale * dyaw)."""

_DEFAULTS = {"objective": ObjectiveConfig._field_defaults,
             "generation": GenerationConfig._field_defaults}

_COMPILED = CompileCache()
"""Compiled generations by (kind, name, model, configs, mesh, argument shapes): compile time is
timed apart. generate_particles and generate_sweep share it (their keys differ in kind)."""


def clear_compiled() -> None:
    """Drops every cached compilation (a long sweep of shapes need not keep them all)."""
    _COMPILED.clear()


def _check_targeted(name: str, objective: ObjectiveConfig, config: GenerationConfig) -> None:
    check_generator(name)
    if name not in TARGETED:
        raise ValueError(f"generator: {name!r} draws from the task's training distribution; "
                         f"targeted generation runs only {', '.join(TARGETED)}")
    objectives.check_objective_config(objective)
    check_generation_config(config)


def generate_particles(name: str, key: jax.Array, model, params, failure: FailureScene,
                       objective: ObjectiveConfig, config: GenerationConfig,
                       mesh: jax.sharding.Mesh | None = None
                       ) -> tuple[Particles, dict[str, float]]:
    """Runs a targeted generator: one compiled function per (name, model, configs, mesh, shapes).

    The parameters and the failure are traced arguments, so a fine-tuned model or another
    failure with the same slot count reuses the compilation.

    Args:
      mesh: None (one device), or a 1-D Mesh (f2p.sharding.particle_mesh) that the state axis
        is split over: stage 1's N particles and stage 2's [N, M] actions along N. The
        results equal the unsharded run's up to float rounding (reductions over particles
        are summed in another order).

    Returns:
      (particles, timings): timings holds "compile_seconds" (0 when reused), "seconds", the
      wall time of the run itself, blocked until done, and "cpu_seconds", its process CPU
      time. With a mesh, the arrays with an N axis come back split over its devices.

    Raises:
      ValueError: an unknown or untargeted generator name, a bad config field, or a mesh
        whose device count does not divide num_states.
    """
    _check_targeted(name, objective, config)
    sharding.check_mesh(mesh, config.num_states)
    return _COMPILED.run(("particles", name, model, objective, config, mesh), _generate_compiled,
                         (name, model, objective, config, mesh), (key, params, failure))


def check_sweep(sweep: Mapping[str, Sequence[float]], objective: ObjectiveConfig,
                config: GenerationConfig) -> dict[str, np.ndarray]:
    """Returns {field: [S] float32 values} of a sweep spec, or raises ValueError.

    Every field must be in SWEEPABLE, every value a finite real number (not a bool or a
    string) that the config checks accept, and all fields zip: the same length S >= 1.
    """
    if not isinstance(sweep, Mapping) or not sweep:
        raise ValueError(f"sweep: expected a non-empty mapping of fields to value lists; "
                         f"sweepable: {', '.join(SWEEPABLE)}")
    values, length = {}, None
    for field, raw in sweep.items():
        if field not in SWEEPABLE:
            section, _, name = str(field).partition(".")
            why = ("changes shapes or the compiled program"
                   if name in _DEFAULTS.get(section, {}) else "unknown field")
            raise ValueError(f"sweep.{field}: {why}; sweepable: {', '.join(SWEEPABLE)}")
        raw = raw.tolist() if isinstance(raw, np.ndarray) and raw.ndim == 1 else raw
        if isinstance(raw, str | bytes) or not isinstance(raw, Sequence) or len(raw) == 0:
            raise ValueError(f"sweep.{field}: expected a non-empty list of numbers, got {raw!r}")
        for value in raw:
            if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real) \
                    or not math.isfinite(value):
                raise ValueError(f"sweep.{field}: {value!r} is not a finite number")
            section, name = field.split(".")
            if section == "objective":  # the configs' own checks: sigma > 0, weights >= 0
                objectives.check_objective_config(objective._replace(**{name: float(value)}))
            else:
                check_generation_config(config._replace(**{name: float(value)}))
        if length is not None and len(raw) != length:
            raise ValueError(f"sweep.{field}: {len(raw)} values, but {next(iter(sweep))} has "
                             f"{length}; swept fields zip, so all need the same length")
        length = len(raw)
        values[field] = np.asarray(raw, np.float32)
    return values


def _with_values(objective: ObjectiveConfig, config: GenerationConfig,
                 values: Mapping[str, Any]) -> tuple[ObjectiveConfig, GenerationConfig]:
    """The configs with the swept fields replaced (by traced scalars inside the sweep)."""
    split = [(*field.split("."), value) for field, value in values.items()]
    return (objective._replace(**{name: v for section, name, v in split if section == "objective"}),
            config._replace(**{name: v for section, name, v in split if section == "generation"}))


def generate_sweep(name: str, key: jax.Array, model, params, failure: FailureScene,
                   objective: ObjectiveConfig, config: GenerationConfig,
                   sweep: Mapping[str, Sequence[float]], mesh: jax.sharding.Mesh | None = None
                   ) -> tuple[Particles, dict[str, float]]:
    """Runs one generator for S settings of scalar hyperparameters in one vmapped compilation.

    The swept fields (names from SWEEPABLE, e.g. "objective.entropy_weight",
    "generation.bandwidth_scale") zip: point s sets every field to its s-th value. They are
    traced, so new values of the same fields and length reuse the compilation; the key, the
    parameters and the failure are the same for every point, so the slices differ only by
    the hyperparameters. Slice s matches generate_particles with those values in the configs
    up to float rounding (constants folded there are computed in the program here).

    Args:
      sweep: {field: S values}; the configs' own values of those fields are ignored.
      mesh: as for generate_particles (the state axis, not the sweep axis, is split).

    Returns:
      (particles with a leading [S] axis on every array, timings as generate_particles').

    Raises:
      ValueError: as generate_particles, and for a bad sweep spec (check_sweep): an unknown
        or shape-changing field (the message lists SWEEPABLE), an empty list, a non-numeric
        or refused value, fields of different lengths.
    """
    _check_targeted(name, objective, config)
    sharding.check_mesh(mesh, config.num_states)
    values = check_sweep(sweep, objective, config)
    # Swept fields take their defaults in the static configs: their values there are unused,
    # and equal static configs share one compilation.
    base_objective, base_config = _with_values(objective, config, {
        field: _DEFAULTS[field.split(".")[0]][field.split(".")[1]] for field in values})
    static = (name, model, base_objective, base_config, mesh)
    return _COMPILED.run(("sweep", *static), _sweep_compiled, static,
                         (key, params, failure, values))


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
