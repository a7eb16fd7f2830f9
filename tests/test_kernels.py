import jax
import jax.numpy as jnp
import numpy as np
import pytest

from f2p import kernels, median


def _particles(seed=0, num=16):
    rng = np.random.default_rng(seed)
    return {"pose": jnp.asarray(rng.normal(size=(num, 3, 2)), jnp.float32),
            "angle": jnp.asarray(rng.normal(size=(num,)), jnp.float32)}


@pytest.mark.parametrize("kernel", ["rbf", "imq"])
def test_gram_properties(kernel):
    particles = _particles()
    k = np.asarray(kernels.gram(particles, kernel=kernel))
    np.testing.assert_allclose(np.diag(k), 1.0, rtol=1e-6)
    np.testing.assert_allclose(k, k.T, rtol=1e-6)
    assert np.linalg.eigvalsh(k.astype(np.float64)).min() > -1e-5
    assert np.all((k > 0) & (k <= 1.0 + 1e-6))


def test_pytree_flatten_matches_manual():
    particles = _particles()
    x, unflatten = kernels.flatten_particles(particles)
    manual = np.concatenate([np.asarray(particles["angle"])[:, None],
                             np.asarray(particles["pose"]).reshape(16, 6)], axis=1)
    np.testing.assert_allclose(x, manual)  # dict leaves come out in sorted key order
    back = unflatten(x)
    assert back["pose"].shape == (16, 3, 2) and back["angle"].shape == (16,)
    k_tree = kernels.gram(particles, bandwidth=2.0)
    sq = ((manual[:, None] - manual[None]) ** 2).sum(-1)
    np.testing.assert_allclose(k_tree, np.exp(-sq / 2.0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bandwidth", [None, 1.5])
def test_gram_far_from_origin(bandwidth):
    # Only differences matter: both sets moved 1000 units out give the same Gram matrices
    # (float32 rounds x + 1000 to ~6e-5, ~1e-4 of the spacings).
    rng = np.random.default_rng(4)
    x = rng.normal(size=(70, 3)).astype(np.float32)
    y = rng.normal(size=(9, 3)).astype(np.float32)
    for other in (None, y):
        near = kernels.gram(jnp.asarray(x), None if other is None else jnp.asarray(other),
                            bandwidth=bandwidth)
        far = kernels.gram(jnp.asarray(x + 1000.0),
                           None if other is None else jnp.asarray(other + 1000.0),
                           bandwidth=bandwidth)
        np.testing.assert_allclose(far, near, atol=2e-3)


def test_pairwise_sq_dists_matches_direct():
    x = np.random.default_rng(1).normal(size=(30, 7)).astype(np.float32)
    direct = ((x[:, None] - x[None]) ** 2).sum(-1)
    got = np.asarray(kernels.pairwise_sq_dists(jnp.asarray(x)))
    np.testing.assert_allclose(got, direct, rtol=1e-4, atol=1e-4)
    assert np.all(np.diag(got) == 0) and np.all(got >= 0)


@pytest.mark.parametrize("kernel", ["rbf", "imq"])
def test_kernel_gradient_matches_finite_differences(kernel):
    x = jnp.asarray(np.random.default_rng(2).normal(size=(5, 3)), jnp.float64
                    if jax.config.jax_enable_x64 else jnp.float32)
    y = x[::-1] + 0.3

    def total(x):
        return jnp.sum(kernels.gram(x, y, bandwidth=1.7, kernel=kernel))

    grad = np.asarray(jax.grad(total)(x))
    eps = 1e-2
    for index in [(0, 0), (2, 1), (4, 2)]:
        step = jnp.zeros_like(x).at[index].set(eps)
        numeric = (total(x + step) - total(x - step)) / (2 * eps)
        np.testing.assert_allclose(grad[index], numeric, rtol=2e-2, atol=1e-3)


@pytest.mark.parametrize("num", [2, 3, 20, 63, 64, 65, 97, 130, 256, 300])
@pytest.mark.parametrize("layout", ["gauss", "bimodal", "ties", "scales"])
def test_median_equals_numpy(num, layout):
    rng = np.random.default_rng(num)
    x = rng.normal(size=(num, 5)).astype(np.float32)
    if layout == "bimodal":
        x[: num // 2] += 8.0
    elif layout == "ties":
        x = np.round(x)
    elif layout == "scales":
        x *= np.exp(2.0 * rng.normal(size=(num, 1))).astype(np.float32)
    sq = kernels.pairwise_sq_dists(jnp.asarray(x))
    expected = np.median(np.asarray(sq)[np.triu_indices(num, 1)])
    assert float(jax.jit(kernels.median_pairwise_sq_dist)(sq)) == pytest.approx(expected, rel=1e-7)


@pytest.mark.parametrize("num", [2, 3, 20, 40, 63])
def test_vmapped_small_median_equals_numpy(num):
    # Under vmap the small-N median sorts with a bitonic network (the batch rule).
    rng = np.random.default_rng(num)
    x = rng.normal(size=(2, 3, num, 4)).astype(np.float32)
    x[0] = np.round(x[0])  # ties
    sq = jax.vmap(jax.vmap(kernels.pairwise_sq_dists))(jnp.asarray(x))
    expected = np.median(np.asarray(sq)[..., *np.triu_indices(num, 1)], axis=-1)
    nested = jax.jit(jax.vmap(jax.vmap(kernels.median_pairwise_sq_dist)))(sq)
    np.testing.assert_allclose(nested, expected, rtol=1e-7)
    # Problems along axis 1 of the input, not 0.
    moved = jax.vmap(kernels.median_pairwise_sq_dist, in_axes=1)(jnp.moveaxis(sq[0], 0, 1))
    np.testing.assert_allclose(moved, expected[0], rtol=1e-7)


@pytest.mark.parametrize("num", [20, 100])
def test_median_bandwidth_has_zero_gradient(num):
    # Both the small-N and the selection path treat the bandwidth as a constant.
    x = jnp.asarray(np.random.default_rng(num).normal(size=(num, 3)), jnp.float32)
    grad = jax.grad(lambda x: kernels.median_bandwidth(kernels.pairwise_sq_dists(x)))(x)
    np.testing.assert_array_equal(grad, 0.0)
    batched = jax.vmap(jax.grad(
        lambda x: kernels.median_bandwidth(kernels.pairwise_sq_dists(x))))(x[None])
    np.testing.assert_array_equal(batched, 0.0)


def test_median_large_selection_path_exact():
    x = np.random.default_rng(5).normal(size=(600, 12)).astype(np.float32)
    sq = kernels.pairwise_sq_dists(jnp.asarray(x))
    expected = np.median(np.asarray(sq)[np.triu_indices(600, 1)])
    assert float(jax.jit(kernels.median_pairwise_sq_dist)(sq)) == expected


@pytest.mark.parametrize("num_rows", [128, 8, 100, 1])
def test_column_sums_match_numpy(num_rows):
    # 8-row partials and a tree of adds (rows a multiple of 8), or the plain reduction.
    matrix = np.random.default_rng(num_rows).integers(0, 2**20, size=(num_rows, 300))
    matrix = matrix.astype(np.uint32)
    sums = jax.jit(median._column_sums)(jnp.asarray(matrix))
    assert sums.dtype == jnp.uint32
    np.testing.assert_array_equal(sums, matrix.sum(axis=0, dtype=np.uint32))


def test_median_bandwidth_rule():
    x = jnp.asarray(np.random.default_rng(3).normal(size=(40, 4)), jnp.float32)
    sq = kernels.pairwise_sq_dists(x)
    med = np.median(np.asarray(sq)[np.triu_indices(40, 1)])
    np.testing.assert_allclose(kernels.median_bandwidth(sq), med / np.log(41), rtol=1e-6)


def test_bad_input_errors():
    with pytest.raises(ValueError, match="empty"):
        kernels.flatten_particles({"x": jnp.zeros((0, 3))})
    with pytest.raises(ValueError, match="disagree"):
        kernels.flatten_particles({"a": jnp.zeros((3, 2)), "b": jnp.zeros((4, 2))})
    with pytest.raises(ValueError, match="allowed: rbf, imq"):
        kernels.get_kernel("laplace")
    with pytest.raises(ValueError, match="at least 2"):
        kernels.median_pairwise_sq_dist(jnp.zeros((1, 1)))
