import os
import subprocess
import sys
import textwrap

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
    # The particle axis stays split over the 4 devices: a replicated result fails here.
    assert not split.sharding.is_fully_replicated
    assert split.sharding.shard_shape(split.shape) == (32, 6)
    rows = sorted(shard.index[0].start for shard in split.addressable_shards)
    assert rows == [0, 32, 64, 96] and len(split.sharding.device_set) == 4
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


def test_context_is_a_traced_argument():
    # New target data of the same shapes (model parameters after a fine-tune) reuses the
    # compiled run: log_prob_fn is traced once.
    traces = []

    def log_prob(x, context):
        traces.append(1)  # runs only while tracing
        return -0.5 * jnp.sum((x - context["mean"]) ** 2) / context["variance"]

    generator = svgd.svgd(log_prob, optax.adam(0.1))
    run = jax.jit(svgd.run, static_argnums=(0, 3))
    x0 = jax.random.normal(jax.random.key(9), (40, 3))
    finals = []
    for mean in (jnp.array([2.0, 0.0, -1.0]), jnp.array([-3.0, 1.0, 0.5])):
        state, info = run(generator, jax.random.key(0), x0, 300,
                          {"mean": mean, "variance": jnp.float32(0.5)})
        finals.append(np.asarray(state.particles))
        np.testing.assert_allclose(finals[-1].mean(0), mean, atol=0.15)
    assert len(traces) == 1
    assert not np.allclose(finals[0], finals[1])
    # The baselines take the context the same way.
    state, _ = run(svgd.gradient(log_prob, optax.adam(0.1)), jax.random.key(0), x0, 300,
                   {"mean": jnp.ones(3), "variance": jnp.float32(0.5)})
    np.testing.assert_allclose(np.asarray(state.particles), 1.0, atol=0.05)


def test_bandwidth_is_traced_and_vmaps():
    x0 = jax.random.normal(jax.random.key(10), (24, 2))
    traces = []

    def solve(bandwidth):
        traces.append(1)
        generator = svgd.svgd(gaussian_log_prob, optax.sgd(0.1), bandwidth=bandwidth)
        return svgd.run(generator, jax.random.key(0), x0, 30)

    bandwidths = jnp.array([0.05, 0.5, 5.0])
    state, info = jax.jit(jax.vmap(solve))(bandwidths)
    np.testing.assert_array_equal(info.bandwidth, np.repeat(bandwidths[:, None], 30, axis=1))
    for index, bandwidth in enumerate([0.05, 0.5, 5.0]):
        alone = _run(svgd.svgd(gaussian_log_prob, optax.sgd(0.1), bandwidth=bandwidth), x0, 30)
        np.testing.assert_allclose(state.particles[index], alone[0].particles, rtol=1e-5,
                                   atol=1e-5)
    assert not np.allclose(state.particles[0], state.particles[2], atol=1e-2)  # h matters
    solve_jit = jax.jit(solve)
    count = len(traces)
    for bandwidth in (0.3, 3.0):
        jax.block_until_ready(solve_jit(jnp.float32(bandwidth)))
    assert len(traces) == count + 1


def test_bandwidth_scale_multiplies_the_median_heuristic_and_vmaps():
    rng = np.random.default_rng(11)
    x = jnp.asarray(rng.normal(size=(16, 3)), jnp.float32)
    score = jnp.asarray(rng.normal(size=(16, 3)), jnp.float32)
    plain, h = svgd.stein_direction(x, score)
    unit, h_unit = svgd.stein_direction(x, score, bandwidth_scale=1.0)
    np.testing.assert_array_equal(unit, plain)  # the Python 1.0 leaves the step as it was
    assert float(h_unit) == float(h)
    for kernel in ("rbf", "imq"):
        scaled, h_scaled = svgd.stein_direction(x, score, kernel, bandwidth_scale=3.0)
        fixed, _ = svgd.stein_direction(x, score, kernel, bandwidth=3.0 * h)
        np.testing.assert_allclose(h_scaled, 3.0 * h, rtol=1e-6)
        np.testing.assert_allclose(scaled, fixed, rtol=1e-5, atol=1e-6)
    x0 = jax.random.normal(jax.random.key(12), (24, 2))

    def solve(scale):
        generator = svgd.svgd(gaussian_log_prob, optax.sgd(0.1), bandwidth_scale=scale)
        return svgd.run(generator, jax.random.key(0), x0, 30)

    scales = jnp.array([0.2, 1.0, 5.0])
    state, info = jax.jit(jax.vmap(solve))(scales)
    alone, alone_info = _run(svgd.svgd(gaussian_log_prob, optax.sgd(0.1)), x0, 30)
    np.testing.assert_allclose(state.particles[1], alone.particles, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(info.bandwidth[1], alone_info.bandwidth, rtol=1e-5)
    assert not np.allclose(state.particles[0], state.particles[2], atol=1e-2)  # scale matters
    with pytest.raises(ValueError, match="bandwidth_scale: must be > 0"):
        svgd.svgd(gaussian_log_prob, optax.sgd(0.1), bandwidth_scale=0.0)


def test_info_reports_nonfinite_particles_under_jit():
    # log p = +|x|^4 pushes the particles out faster each step, until they overflow.
    generator = svgd.svgd(lambda x: jnp.sum(x**4), optax.sgd(0.5))
    state, info = _run(generator, jax.random.normal(jax.random.key(11), (16, 2)), 40)
    counts = np.asarray(info.num_nonfinite)
    assert counts.dtype == np.int32 and counts.shape == (40,)
    first = int(np.flatnonzero(counts)[0])
    assert counts[0] == 0 and counts[-1] == 16
    assert (~np.isfinite(np.asarray(state.particles)).all(-1)).sum() == 16
    with pytest.raises(ValueError, match=f"non-finite .* at step {first}"):
        svgd.check_finite(info)
    # A NaN particle handed to a jitted run (init cannot read it) shows at step 0, in all the
    # updates, since the kernel mixes it into every particle's direction.
    x0 = jnp.zeros((16, 2)).at[3, 1].set(jnp.nan) + jnp.arange(16.0)[:, None]
    _, info = _run(svgd.svgd(gaussian_log_prob, optax.sgd(0.1)), x0, 3)
    np.testing.assert_array_equal(info.num_nonfinite, 16)
    with pytest.raises(ValueError, match="16 particle.* at step 0"):
        svgd.check_finite(info)
    _, info = _run(svgd.svgd(gaussian_log_prob, optax.sgd(0.1)), jnp.zeros((16, 2)) + 0.1, 5)
    assert not np.asarray(info.num_nonfinite).any()
    svgd.check_finite(info)  # finite: no error


BATCH_CHILD = textwrap.dedent("""
    import sys
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from f2p import svgd
    data = np.load(sys.argv[1])

    def log_prob(x, context):  # sign +1: a target that pushes out (the set diverges)
        return context["sign"] * 0.5 * jnp.sum((x - context["centre"]) ** 2)

    generator = svgd.svgd(log_prob, optax.sgd(0.5))
    context = {"sign": jnp.asarray(data["sign"]), "centre": jnp.asarray(data["centre"])}
    solve = jax.vmap(lambda x, c: svgd.run(generator, jax.random.key(0), x, 300, c))
    state, info = jax.jit(solve)(jnp.asarray(data["particles"]), context)
    np.savez(sys.argv[2], particles=state.particles, bandwidth=info.bandwidth,
             num_nonfinite=info.num_nonfinite)
""")


def test_vmapped_run_over_64_problems_with_adversarial_sets(tmp_path):
    # One batch of N = 100 problems: 0 diverges during the run (log p = +|x|^2 / 2, from the
    # particles the "diverged" set was captured from: the old median hung on this batch near
    # step 145), 1 starts from that captured set and diverges too, 2 and 3 start from the
    # other two sets the old median hung on, and 60 ordinary problems.
    from test_median import hanging_sets

    sets = hanging_sets()
    rng = np.random.default_rng(12)
    particles = rng.normal(size=(64, 100, 2)).astype(np.float32)
    particles[0] = np.asarray(jax.random.normal(jax.random.key(0), (4, 100, 2)))[0]
    particles[1], particles[2], particles[3] = (sets[name] for name in (
        "diverged", "clusters_55_45", "coincident_circle"))
    sign = np.full(64, -1.0, np.float32)
    sign[:2] = 1.0
    centre = rng.normal(size=(64, 2)).astype(np.float32)
    inputs, outputs = tmp_path / "in.npz", tmp_path / "out.npz"
    np.savez(inputs, particles=particles, sign=sign, centre=centre)
    try:
        subprocess.run([sys.executable, "-c", BATCH_CHILD, str(inputs), str(outputs)],
                       check=True, timeout=240, capture_output=True, text=True,
                       env=dict(os.environ, JAX_PLATFORMS="cpu"))
    except subprocess.TimeoutExpired:
        pytest.fail("the vmapped run did not finish within 240 s: the median hangs")
    except subprocess.CalledProcessError as error:
        pytest.fail(f"child failed:\n{error.stderr[-3000:]}")
    out = np.load(outputs)
    assert out["particles"].shape == (64, 100, 2) and out["bandwidth"].shape == (64, 300)
    # The diverging problems overflow and report it; their NaN bandwidth stays theirs.
    assert out["num_nonfinite"][:2, -1].min() > 0
    assert not out["num_nonfinite"][2:].any()
    assert np.isfinite(out["bandwidth"][2:]).all() and (out["bandwidth"][2:] > 0).all()
    error = np.abs(out["particles"][2:].mean(1) - centre[2:]).max()
    assert error < 0.3, error
