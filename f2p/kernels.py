"""RBF and IMQ kernels over particle pytrees, and the exact median-heuristic bandwidth."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from f2p.median import median_pairwise_sq_dist

__all__ = ["KERNELS", "KernelFn", "flatten_particles", "get_kernel", "gram", "median_bandwidth",
           "median_pairwise_sq_dist", "pairwise_sq_dists"]


def flatten_particles(particles: Any) -> tuple[jax.Array, Callable[[jax.Array], Any]]:
    """Flattens a particle pytree whose leaves share a leading axis N into a [N, D] matrix.

    Args:
      particles: pytree of arrays, each [N, ...].

    Returns:
      (x, unflatten): x is [N, D] (D = sum of the per-particle leaf sizes, leaves concatenated
      in tree order); unflatten maps any [N, D] array back to a pytree shaped like `particles`.
    """
    leaves, treedef = jax.tree.flatten(particles)
    if not leaves:
        raise ValueError("particles: empty pytree; expected arrays with a leading particle axis")
    leaves = [jnp.asarray(leaf) for leaf in leaves]
    if any(leaf.ndim == 0 for leaf in leaves):
        raise ValueError("particles: every leaf needs a leading particle axis N")
    num = leaves[0].shape[0]
    if any(leaf.shape[0] != num for leaf in leaves):
        shapes = [leaf.shape for leaf in leaves]
        raise ValueError(f"particles: leaves disagree on the particle axis N: {shapes}")
    if num == 0:
        raise ValueError("particles: the particle set is empty (N = 0)")
    shapes = [leaf.shape[1:] for leaf in leaves]
    sizes = [math.prod(shape) for shape in shapes]
    dtype = jnp.result_type(*leaves)
    x = jnp.concatenate([leaf.reshape(num, -1).astype(dtype) for leaf in leaves], axis=1)

    def unflatten(flat: jax.Array) -> Any:
        parts = jnp.split(flat, np.cumsum(sizes)[:-1], axis=-1)
        return treedef.unflatten([
            part.reshape(part.shape[:-1] + shape).astype(leaf.dtype)
            for part, shape, leaf in zip(parts, shapes, leaves, strict=True)
        ])

    return x, unflatten


def pairwise_sq_dists(x: jax.Array, y: jax.Array | None = None) -> jax.Array:
    """Squared Euclidean distances [N, M] via |x|^2 + |y|^2 - 2 x y^T (one matmul, no N x M x D).

    Cancellation in the identity can make tiny distances slightly negative: they are clamped to 0.
    It also costs accuracy when |x|^2 dwarfs the distances (a set far from the origin): callers
    centre the particles first, as stein_direction and gram do.
    With y omitted (distances within one set) the squared norms are read off the diagonal of
    the Gram matrix x x^T, so the diagonal comes out exactly 0 (g + g - 2 g) and no separate
    pass over x computes the norms.
    """
    if y is None:
        inner = x @ x.T
        x_sq = jnp.diagonal(inner)
        return jnp.maximum(x_sq[:, None] + x_sq[None, :] - 2.0 * inner, 0.0)
    x_sq = jnp.sum(x * x, axis=-1)
    y_sq = jnp.sum(y * y, axis=-1)
    return jnp.maximum(x_sq[:, None] + y_sq[None, :] - 2.0 * (x @ y.T), 0.0)


def median_bandwidth(sq_dists: jax.Array) -> jax.Array:
    """Median heuristic of Liu & Wang (2016): h = med^2 / log(N + 1).

    med^2 is taken as the exact median of the squared pairwise distances (i < j). With
    k(x, y) = exp(-|x - y|^2 / h), a particle then sees sum_j k(x_i, x_j) ~ 1 + N * 1/(N+1): its
    own term balanced against the others', which is the point of the rule.
    """
    num = sq_dists.shape[0]
    median = median_pairwise_sq_dist(sq_dists)
    # A collapsed particle set has median 0; a floor keeps the kernel finite (and h > 0).
    return jnp.maximum(median, 1e-12) / math.log(num + 1)


class KernelFn(NamedTuple):
    """A stationary kernel k(s) of the squared distance s, with its derivative dk/ds."""

    value: Callable[[jax.Array, jax.Array], jax.Array]  # (sq_dists, bandwidth) -> k
    d_value: Callable[[jax.Array, jax.Array], jax.Array]  # (sq_dists, bandwidth) -> dk/ds


def _rbf_value(sq_dists, bandwidth):
    return jnp.exp(-sq_dists / bandwidth)


def _rbf_d_value(sq_dists, bandwidth):
    return -jnp.exp(-sq_dists / bandwidth) / bandwidth


IMQ_BETA = -0.5


def _imq_value(sq_dists, bandwidth):
    return (1.0 + sq_dists / bandwidth) ** IMQ_BETA


def _imq_d_value(sq_dists, bandwidth):
    return IMQ_BETA / bandwidth * (1.0 + sq_dists / bandwidth) ** (IMQ_BETA - 1.0)


KERNELS = {
    "rbf": KernelFn(_rbf_value, _rbf_d_value),  # exp(-s / h)
    "imq": KernelFn(_imq_value, _imq_d_value),  # (1 + s / h)^(-1/2)
}


def get_kernel(name: str) -> KernelFn:
    """Returns the kernel registered under `name`, or raises listing the allowed names."""
    if name not in KERNELS:
        raise ValueError(f"kernel: unknown name {name!r}; allowed: {', '.join(KERNELS)}")
    return KERNELS[name]


def gram(x: Any, y: Any = None, bandwidth: float | jax.Array | None = None,
         kernel: str = "rbf") -> jax.Array:
    """Gram matrix [N, M] between two particle pytrees (y defaults to x).

    Args:
      x, y: particle pytrees with leading axes N and M.
      bandwidth: h > 0, or None for the median heuristic of x against itself.
      kernel: a name in KERNELS.
    """
    kernel_fn = get_kernel(kernel)
    x_flat, _ = flatten_particles(x)
    # Both sets seen from x's mean: see pairwise_sq_dists on accuracy far from the origin.
    centre = jnp.mean(x_flat, axis=0)
    x_flat = x_flat - centre
    sq_self = pairwise_sq_dists(x_flat) if y is None or bandwidth is None else None
    sq = sq_self if y is None else pairwise_sq_dists(x_flat, flatten_particles(y)[0] - centre)
    h = median_bandwidth(sq_self) if bandwidth is None else jnp.asarray(bandwidth, sq.dtype)
    return kernel_fn.value(sq, h)
