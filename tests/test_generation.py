"""Tests of f2p.generation: the targeted generators of (state, action) particles."""

import jax
import numpy as np
import pytest

from f2p import generation, synthetic_failure
from f2p.generation import TARGETED, GenerationConfig
from f2p.io.failures import Failure
from f2p.models import SkillEffectModel
from f2p.models import get_config as model_config
from f2p.objectives import POSE_DIMS, ObjectiveConfig
from f2p.scene import K_MAX

NUM_POINTS = 32
CAMERAS = synthetic_failure.CAMERAS
# Two settings (each generator configuration compiles once, 10-30 s on two CPU cores). WIDE
# (geometric term, 8 states, 30 state steps) is also the diversity test's, so its
# compilations are shared; SMALL reads relations with the model.
WIDE = (ObjectiveConfig(relation_term="geometric", num_points=NUM_POINTS),
        GenerationConfig(num_states=8, num_actions=2, state_steps=30, action_steps=2,
                         sampling_batch=16, sampling_max_draws=4))
SMALL = (ObjectiveConfig(relation_term="model", num_points=NUM_POINTS),
         GenerationConfig(num_states=3, num_actions=4, state_steps=2, action_steps=3,
                          sampling_batch=8, sampling_max_draws=2))


@pytest.fixture(scope="module")
def tiny_model():
    model = SkillEffectModel(model_config("tiny").model)
    return model, model.init(jax.random.PRNGKey(0), K_MAX, NUM_POINTS)


def make_failure(seed: int) -> Failure:
    """A transport failure record: a loaded bag carried to table B, points rendered exactly."""
    return synthetic_failure.make_failure(seed, NUM_POINTS, cameras=CAMERAS)


def scene_data(failure: Failure, objective: ObjectiveConfig):
    """The FailureScene, R^F from the geometric rules on the believed scene."""
    return synthetic_failure.failure_data(failure, objective, CAMERAS)


@pytest.fixture(scope="module")
def failure():
    return make_failure(0)


# Every generator in SMALL; in WIDE those the diversity test compiles anyway.
@pytest.mark.parametrize("name, setting", [
    *((name, SMALL) for name in TARGETED),
    *((name, WIDE) for name in ("svgd", "gradient")),
], ids=[*(f"{name}-small" for name in TARGETED), "svgd-wide", "gradient-wide"])
def test_every_generator_returns_n_states_by_m_actions_inside_bounds(tiny_model, failure, name,
                                                                     setting):
    model, params = tiny_model
    objective, config = setting
    data = scene_data(failure, objective)
    particles, timings = generation.generate_particles(name, jax.random.PRNGKey(0), model,
                                                       params, data, objective, config)
    n, m = config.num_states, config.num_actions
    assert particles.states.shape == (n, K_MAX * POSE_DIMS)
    assert particles.actions.shape == (n, m, 2)
    assert particles.accepted.shape == (n,) and particles.state_log_prob.shape == (n,)
    assert particles.attempts.shape == ()
    for array in (particles.states, particles.actions, particles.state_log_prob):
        assert np.all(np.isfinite(array))
    actions = np.asarray(particles.actions)
    low, high = np.asarray(data.low), np.asarray(data.high)
    assert np.all(actions >= low) and np.all(actions <= high)
    assert np.ptp(actions.reshape(-1, 2), axis=0).max() > 0  # M distinct actions, not one
    # The table and the padded slots stay exactly at the failure scene.
    states = np.asarray(particles.states).reshape(n, K_MAX, POSE_DIMS)
    np.testing.assert_array_equal(states[:, ~np.asarray(data.movable)], 0.0)
    assert np.abs(states[:, np.asarray(data.movable)]).max() > 0
    if name == "sampling":
        attempts = int(particles.attempts)
        assert 0 < attempts <= config.sampling_batch * config.sampling_max_draws
        assert attempts % config.sampling_batch == 0
    else:
        assert int(particles.attempts) == 0 and np.all(particles.accepted)
    assert timings["seconds"] >= 0 and timings["compile_seconds"] >= 0


def test_new_parameters_and_failures_reuse_the_compilation(tiny_model, failure):
    model, params = tiny_model
    objective, config = SMALL
    data = scene_data(failure, objective)
    key = jax.random.PRNGKey(3)
    first, _ = generation.generate_particles("svgd", key, model, params, data, objective,
                                             config)
    compiled = len(generation._COMPILED)
    fine_tuned = jax.tree.map(lambda leaf: leaf + 1e-3, params)
    second, timings = generation.generate_particles("svgd", key, model, fine_tuned, data,
                                                    objective, config)
    assert len(generation._COMPILED) == compiled and timings["compile_seconds"] == 0.0
    # The new parameters were used: the model's relation term scores the states differently.
    assert not np.allclose(first.state_log_prob, second.state_log_prob)
    # Another failure with the same slot count reuses it too.
    other = scene_data(make_failure(1), objective)
    assert not np.allclose(other.scene.pos, data.scene.pos)
    _, timings = generation.generate_particles("svgd", key, model, params, other, objective,
                                               config)
    assert len(generation._COMPILED) == compiled and timings["compile_seconds"] == 0.0


def test_svgd_states_are_more_diverse_than_gradient_ascent(tiny_model, failure):
    model, params = tiny_model
    objective, config = WIDE
    data = scene_data(failure, objective)
    movable = np.asarray(data.movable)
    spread = {}
    for name in ("svgd", "gradient"):
        particles, _ = generation.generate_particles(name, jax.random.PRNGKey(0), model, params,
                                                     data, objective, config)
        poses = generation.state_poses(data, particles.states, objective.yaw_scale)
        assert poses.shape == (config.num_states, K_MAX, 3)
        spread[name] = generation.diversity(poses, movable, objective.yaw_scale)
    # The same start and steps: only the kernel's repulsion keeps the svgd particles apart.
    assert spread["gradient"] > 0 and spread["svgd"] > 2.0 * spread["gradient"]


def test_diversity_measures_mean_pairwise_distance():
    poses = np.zeros((3, 2, 3))
    poses[1, 0, 0] = 0.3  # 0.3 m along x
    poses[2, 0, 2] = 2 * np.pi - 0.1  # a turn of -0.1 rad, wrapped: 0.05 * 0.1 m
    movable = np.array([True, False])
    poses[:, 1] = np.random.default_rng(0).normal(size=(3, 3))  # not movable: ignored
    expected = np.mean([0.3, 0.005, np.hypot(0.3, 0.005)])
    np.testing.assert_allclose(generation.diversity(poses, movable, 0.05), expected)
    assert generation.diversity(poses[:1], movable, 0.05) == 0.0


def test_bad_generator_names_and_counts_are_refused(tiny_model, failure):
    model, params = tiny_model
    objective, config = SMALL
    data = scene_data(failure, objective)
    assert generation.check_generator("svgd") == "svgd"
    with pytest.raises(ValueError, match="generator: unknown name 'nope'; allowed: svgd, "
                                         "gradient, sampling, random, svgd_no_entropy"):
        generation.check_generator("nope")
    compiled = len(generation._COMPILED)

    def generate(name, objective=objective, config=config):
        return generation.generate_particles(name, jax.random.PRNGKey(0), model, params, data,
                                             objective, config)

    with pytest.raises(ValueError, match="generator: 'random' draws from the task's training "
                                         "distribution"):
        generate("random")
    with pytest.raises(ValueError, match="unknown name 'nope'"):
        generate("nope")
    with pytest.raises(ValueError, match="generation.num_states: must be >= 2"):
        generate("svgd", config=config._replace(num_states=1))
    with pytest.raises(ValueError, match="generation.num_actions: must be >= 2"):
        generate("gradient", config=config._replace(num_actions=1))
    with pytest.raises(ValueError, match="generation.state_steps: must be >= 1"):
        generate("svgd", config=config._replace(state_steps=0))
    with pytest.raises(ValueError, match="generation.init_std: must be > 0"):
        generate("svgd", config=config._replace(init_std=0.0))
    with pytest.raises(ValueError, match="objective.relation_term"):
        generate("svgd", objective=objective._replace(relation_term="points"))
    assert len(generation._COMPILED) == compiled  # refused before compiling anything


# Three zipped points; the middle one is SMALL's own values (its compilation is shared).
SWEEP = {"objective.entropy_weight": [0.0, 1.0, 4.0],
         "objective.chamfer_sigma": [0.06, 0.03, 0.02],
         "generation.bandwidth_scale": [0.25, 1.0, 4.0]}


def _set(objective, config, sweep, index):
    """The configs with point `index` of `sweep` written into them."""
    for field, values in sweep.items():
        section, name = field.split(".")
        if section == "objective":
            objective = objective._replace(**{name: values[index]})
        else:
            config = config._replace(**{name: values[index]})
    return objective, config


def test_a_sweep_compiles_once_and_each_slice_matches_its_own_run(tiny_model, failure):
    model, params = tiny_model
    objective, config = SMALL
    data = scene_data(failure, objective)
    key = jax.random.PRNGKey(5)
    before = len(generation._COMPILED)
    swept, timings = generation.generate_sweep("svgd", key, model, params, data, objective,
                                               config, SWEEP)
    assert len(generation._COMPILED) == before + 1 and timings["compile_seconds"] > 0
    n, m = config.num_states, config.num_actions
    assert swept.states.shape == (3, n, K_MAX * POSE_DIMS)
    assert swept.actions.shape == (3, n, m, 2) and swept.state_log_prob.shape == (3, n)
    assert swept.attempts.shape == (3,)
    for index in range(3):
        point_objective, point_config = _set(objective, config, SWEEP, index)
        alone, _ = generation.generate_particles("svgd", key, model, params, data,
                                                 point_objective, point_config)
        # float32 rounding only: the sweep computes in the program what the static run folds.
        for field in ("states", "actions", "state_log_prob"):
            np.testing.assert_allclose(getattr(swept, field)[index], getattr(alone, field),
                                       rtol=1e-5, atol=1e-5, err_msg=f"{field}, point {index}")
    # One key for every point: the differences come from the hyperparameters alone.
    assert not np.allclose(swept.states[0], swept.states[2], atol=1e-4)
    assert not np.allclose(swept.actions[0], swept.actions[2], atol=1e-4)
    # New values of the same fields and length reuse the compilation.
    other = {field: values[::-1] for field, values in SWEEP.items()}
    compiled = len(generation._COMPILED)
    again, timings = generation.generate_sweep("svgd", key, model, params, data, objective,
                                               config, other)
    assert len(generation._COMPILED) == compiled and timings["compile_seconds"] == 0.0
    np.testing.assert_allclose(again.states[0], swept.states[2], rtol=1e-6, atol=1e-7)


def test_bad_sweeps_are_refused_before_compiling(tiny_model, failure):
    model, params = tiny_model
    objective, config = SMALL
    data = scene_data(failure, objective)
    compiled = len(generation._COMPILED)

    def sweep(spec):
        return generation.generate_sweep("svgd", jax.random.PRNGKey(0), model, params, data,
                                         objective, config, spec)

    sweepable = "sweepable: objective.relation_weight, objective.chamfer_sigma"
    with pytest.raises(ValueError, match="sweep.generation.num_states: changes shapes or the "
                                         "compiled program; " + sweepable):
        sweep({"generation.num_states": [4, 8]})
    with pytest.raises(ValueError, match="sweep.objective.num_points: changes shapes"):
        sweep({"objective.num_points": [16, 32]})
    with pytest.raises(ValueError, match="sweep.objective.yaw_scale: changes shapes"):
        sweep({"objective.yaw_scale": [0.05]})
    with pytest.raises(ValueError, match="sweep.entropy_weight: unknown field; " + sweepable):
        sweep({"entropy_weight": [1.0]})
    with pytest.raises(ValueError, match="sweep: expected a non-empty mapping"):
        sweep({})
    with pytest.raises(ValueError, match="sweep.objective.entropy_weight: expected a "
                                         "non-empty list"):
        sweep({"objective.entropy_weight": []})
    with pytest.raises(ValueError, match="sweep.objective.entropy_weight: expected a "
                                         "non-empty list"):
        sweep({"objective.entropy_weight": 1.0})
    with pytest.raises(ValueError, match="sweep.objective.entropy_weight: 'high' is not a "
                                         "finite number"):
        sweep({"objective.entropy_weight": [1.0, "high"]})
    with pytest.raises(ValueError, match="sweep.generation.bandwidth_scale: True is not"):
        sweep({"generation.bandwidth_scale": [True]})
    with pytest.raises(ValueError, match="sweep.objective.chamfer_sigma: nan is not"):
        sweep({"objective.chamfer_sigma": [float("nan")]})
    with pytest.raises(ValueError, match="objective.chamfer_sigma: must be > 0"):
        sweep({"objective.chamfer_sigma": [0.03, 0.0]})
    with pytest.raises(ValueError, match="generation.bandwidth_scale: must be > 0"):
        sweep({"generation.bandwidth_scale": [-1.0]})
    with pytest.raises(ValueError, match="sweep.generation.bandwidth_scale: 2 values, but "
                                         "objective.entropy_weight has 3"):
        sweep({"objective.entropy_weight": [0.0, 1.0, 2.0],
               "generation.bandwidth_scale": [1.0, 2.0]})
    with pytest.raises(ValueError, match="generator: 'random' draws"):
        generation.generate_sweep("random", jax.random.PRNGKey(0), model, params, data,
                                  objective, config, {"objective.entropy_weight": [1.0]})
    assert len(generation._COMPILED) == compiled
