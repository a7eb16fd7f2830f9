import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from f2p import baselines, kernels, svgd

COV = np.array([[1.0, 0.6], [0.6, 0.8]], np.float32)
MEAN = np.array([1.0, -2.0], np.float32)
PRECISION = np.linalg.inv(COV)


def gaussian_log_prob(x):
    d = x - MEAN
    return -0.5 * d @ PRECISION @ d


def mixture_log_prob(x, centre=3.0):
    a = -0.5 * jnp.sum((x - jnp.array([centre, 0.0])) ** 2)
    b = -0.5 * jnp.sum((x + jnp.array([centre, 0.0])) ** 2)
    return jnp.logaddexp(a, b)


def numpy_stein_direction(x, score, h):
    """Textbook phi*(x_i) = mean_j [k(x_j, x_i) score_j + grad_{x_j} k(x_j, x_i)], per pair."""
    n = len(x)
    phi = np.zeros_like(x, dtype=np.float64)
    for i in range(n):
        for j in range(n):
            k = np.exp(-np.sum((x[j] - x[i]) ** 2) / h)
            phi[i] += k * score[j] - 2.0 / h * (x[j] - x[i]) * k
    return phi / n


@pytest.mark.parametrize("kernel", ["rbf", "imq"])
def test_stein_direction_matches_textbook(kernel):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 3)).astype(np.float32)
    score = rng.normal(size=(12, 3)).astype(np.float32)
    phi, h = svgd.stein_direction(jnp.asarray(x), jnp.asarray(score), kernel=kernel)
    sq = ((x[:, None] - x[None]) ** 2).sum(-1)
    np.testing.assert_allclose(h, np.median(sq[np.triu_indices(12, 1)]) / np.log(13), rtol=1e-5)
    if kernel == "rbf":
        expected = numpy_stein_direction(x, score, float(h))
    else:  # IMQ through autodiff of the kernel, per pair
        def k(a, b):
            return (1 + jnp.sum((a - b) ** 2) / h) ** -0.5
        grad_k = jax.vmap(jax.vmap(jax.grad(k), (0, None)), (None, 0))(x, x)  # [i, j, D]
        kij = jax.vmap(jax.vmap(k, (0, None)), (None, 0))(x, x)
        expected = (kij @ score + grad_k.sum(1)) / 12
    np.testing.assert_allclose(phi, expected, rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("kernel", ["rbf", "imq"])
def test_stein_direction_far_from_origin(kernel):
    """Only differences between particles matter: a set 1000 units out loses no accuracy."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 3)).astype(np.float32)
    score = rng.normal(size=(64, 3)).astype(np.float32)
    near, h = svgd.stein_direction(jnp.asarray(x), jnp.asarray(score), kernel=kernel)
    far, h_far = svgd.stein_direction(jnp.asarray(x + 1000.0), jnp.asarray(score), kernel=kernel)
    # float32 rounds x + 1000 to ~6e-5, ~1e-4 of the spacings: 1e-3 allows for that (without
    # centring, h came out 5 % off).
    np.testing.assert_allclose(h_far, h, rtol=1e-3)
    np.testing.assert_allclose(far, near, rtol=1e-3, atol=1e-3 * np.abs(near).max())


def _run(generator, particles, steps):
    return jax.jit(svgd.run, static_argnums=(0, 3))(generator, jax.random.key(0), particles,
                                                    steps)


def test_svgd_recovers_correlated_gaussian():
    x0 = jax.random.normal(jax.random.key(1), (200, 2)) * 0.5
    generator = svgd.svgd(gaussian_log_prob, optax.adam(0.05))
    state, info = _run(generator, x0, 600)
    x = np.asarray(state.particles)
    np.testing.assert_allclose(x.mean(0), MEAN, atol=0.1)
    np.testing.assert_allclose(np.cov(x.T), COV, atol=0.12)
    assert info.bandwidth.shape == (600,) and np.all(np.asarray(info.bandwidth) > 0)
    assert np.isfinite(np.asarray(info.log_prob)).all()


def test_svgd_covers_both_modes_gradient_collapses():
    x0 = jax.random.uniform(jax.random.key(2), (100, 2), minval=-6.0, maxval=6.0)
    results = {}
    for name in ["svgd", "gradient"]:
        generator = baselines.make_generator(
            name, baselines.Target(log_prob=mixture_log_prob), optimizer=optax.adam(0.05))
        results[name] = np.asarray(_run(generator, x0, 500)[0].particles)
    for name, x in results.items():
        right = x[:, 0] > 0
        assert 0.3 < right.mean() < 0.7, name
        spread = np.mean([x[right].std(0).mean(), x[~right].std(0).mean()])
        if name == "svgd":
            assert 0.6 < spread < 1.4, spread
        else:
            assert spread < 0.05, spread


def test_vmap_over_problems_equals_loop():
    centres = jnp.linspace(-2.0, 2.0, 4)
    x0 = jax.random.normal(jax.random.key(3), (4, 20, 12))

    def solve(centre, particles):
        generator = svgd.svgd(lambda x: -0.5 * jnp.sum((x - centre) ** 2), optax.sgd(0.1))
        return svgd.run(generator, jax.random.key(0), particles, 25)[0].particles

    batched = jax.jit(jax.vmap(solve))(centres, x0)
    for index in range(4):
        looped = jax.jit(solve)(centres[index], x0[index])
        np.testing.assert_allclose(batched[index], looped, rtol=1e-4, atol=1e-5)


def test_batch_of_256_problems_of_20_particles():
    x0 = jax.random.normal(jax.random.key(4), (256, 20, 12))
    targets = jax.random.normal(jax.random.key(5), (256, 12))

    def solve(target, particles):
        generator = svgd.svgd(lambda x: -0.5 * jnp.sum((x - target) ** 2), optax.adam(0.1))
        return svgd.run(generator, jax.random.key(0), particles, 100)

    state, info = jax.jit(jax.vmap(solve))(targets, x0)
    assert state.particles.shape == (256, 20, 12) and info.bandwidth.shape == (256, 100)
    error = np.abs(np.asarray(state.particles.mean(1) - targets)).max()
    assert error < 0.3, error


def test_no_recompilation_on_second_call():
    traces = []

    def log_prob(x):
        traces.append(1)  # runs only while tracing
        return -0.5 * jnp.sum(x**2)

    generator = svgd.svgd(log_prob, optax.adam(0.1))
    run = jax.jit(svgd.run, static_argnums=(0, 3))
    x0 = jax.random.normal(jax.random.key(6), (32, 4))
    jax.block_until_ready(run(generator, jax.random.key(0), x0, 10))
    count = len(traces)
    jax.block_until_ready(run(generator, jax.random.key(1), x0 + 1.0, 10))
    assert len(traces) == count


def test_sharded_and_unsharded_agree():
    devices = jax.devices()
    assert len(devices) >= 4, "conftest forces 4 CPU devices"
    mesh = Mesh(np.array(devices[:4]), ("particles",))
    x0 = jax.random.normal(jax.random.key(7), (128, 6))
    sharded = jax.device_put(x0, NamedSharding(mesh, P("particles")))
    generator = svgd.svgd(gaussian_log_prob_6d, optax.adam(0.05))
    run = jax.jit(svgd.run, static_argnums=(0, 3))
    plain = run(generator, jax.random.key(0), x0, 20)[0].particles
    split = run(generator, jax.random.key(0), sharded, 20)[0].particles
    assert split.sharding.spec == P("particles") or len(split.sharding.device_set) == 4
    np.testing.assert_allclose(plain, split, rtol=1e-4, atol=1e-5)


def gaussian_log_prob_6d(x):
    return -0.5 * jnp.sum((x - 1.0) ** 2)


def test_pytree_particles_run():
    particles = {"xy": jax.random.normal(jax.random.key(8), (30, 3, 2)),
                 "yaw": jnp.zeros((30, 3))}

    def log_prob(p):
        return -0.5 * jnp.sum((p["xy"] - 2.0) ** 2) - 0.5 * jnp.sum((p["yaw"] - 1.0) ** 2)

    state, _ = _run(svgd.svgd(log_prob, optax.adam(0.1)), particles, 200)
    np.testing.assert_allclose(np.asarray(state.particles["xy"]).mean((0, 1)), 2.0, atol=0.15)
    np.testing.assert_allclose(np.asarray(state.particles["yaw"]).mean(), 1.0, atol=0.15)


def test_bad_input_errors():
    generator = svgd.svgd(gaussian_log_prob, optax.sgd(0.1))
    with pytest.raises(ValueError, match="non-finite"):
        generator.init(None, jnp.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="empty"):
        generator.init(None, jnp.zeros((0, 2)))
    with pytest.raises(ValueError, match="disagree"):
        generator.init(None, {"a": jnp.zeros((3, 2)), "b": jnp.zeros((4,))})
    with pytest.raises(ValueError, match="bandwidth"):
        svgd.svgd(gaussian_log_prob, optax.sgd(0.1), bandwidth=-1.0)
    with pytest.raises(ValueError, match="allowed"):
        svgd.svgd(gaussian_log_prob, optax.sgd(0.1), kernel="cosine")
    assert kernels.KERNELS  # registry is importable for flags
