"""Per-object point encoder: PointNet with soft Gaussian-weighted local grouping, smooth in xyz."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

_EPS_SQ = 1e-6  # (1 mm)^2: keeps the RMS radius (and its gradient) finite for degenerate clouds


def soft_min_max(values: jax.Array, temperature: float, axis: int) -> tuple[jax.Array, jax.Array]:
    """Smooth minimum and maximum along an axis (log-sum-exp), so gradients reach every point."""
    soft_max = temperature * jax.nn.logsumexp(values / temperature, axis=axis)
    soft_min = -temperature * jax.nn.logsumexp(-values / temperature, axis=axis)
    return soft_min, soft_max


def _weighted_moments(weights: jax.Array, features: jax.Array, local: jax.Array,
                      anchors: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per anchor: weighted features [..., M, C], mean offset [..., M, 3], 2nd moment [..., M, 9].

    With w the anchor's weights (summing to 1), l the points and a the anchor, the mean offset
    sum_p w_p (l_p - a) = E[l] - a and the second moment sum_p w_p (l_p - a)(l_p - a)^T =
    E[l l^T] - a E[l]^T - E[l] a^T + a a^T. Expanding them lets one [M, P] x [P, C + 12] product
    gather everything, instead of materialising [..., M, P, 3, 3] products of offsets (the
    encoder's costliest tensor). Local coordinates are O(1) (RMS-normalised), so the float32
    cancellation stays near 1e-6.
    """
    outer = (local[..., :, None] * local[..., None, :]).reshape(local.shape[:-1] + (9,))
    stacked = jnp.concatenate([features, local, outer], axis=-1)  # [..., P, C + 12]
    moments = jnp.einsum("...mp,...pc->...mc", weights, stacked)
    channels = features.shape[-1]
    grouped = moments[..., :channels]
    first = moments[..., channels:channels + 3]  # E[l]
    second = moments[..., channels + 3:].reshape(moments.shape[:-1] + (3, 3))  # E[l l^T]
    cross = anchors[..., :, None] * first[..., None, :]  # a E[l]^T
    second = (second - cross - jnp.swapaxes(cross, -1, -2)
              + anchors[..., :, None] * anchors[..., None, :])
    return grouped, first - anchors, second.reshape(second.shape[:-2] + (9,))


class PointEncoder(nn.Module):
    """Encodes one object's points (any leading axes) into a shape feature.

    Points are centred on their mean and scaled by their RMS radius, so the feature describes
    shape only; where and how large the object is enters the token separately. Anchors are a
    fixed stride of the point list (the clouds are farthest-point sampled, so a stride spreads
    out) rather than an argmax over coordinates; every anchor pools all points with normalised
    Gaussian weights. Weights, pooling and activations are smooth in the coordinates.

    Attributes:
      features: per-point MLP widths.
      num_anchors: neighbourhood centres.
      radius: Gaussian radius in units of the RMS radius.
      out_dim: output width.
    """

    features: Sequence[int]
    num_anchors: int
    radius: float
    out_dim: int

    @nn.compact
    def __call__(self, local: jax.Array) -> jax.Array:
        """Maps normalised local coordinates [..., P, 3] to a shape feature [..., out_dim]."""
        num_points = local.shape[-2]
        stride = max(num_points // self.num_anchors, 1)
        anchors = local[..., ::stride, :][..., : self.num_anchors, :]  # [..., M, 3]

        point_features = local
        for width in self.features:
            point_features = nn.gelu(nn.Dense(width)(point_features))  # [..., P, C]

        offsets = local[..., None, :, :] - anchors[..., :, None, :]  # [..., M, P, 3]
        logits = -jnp.sum(offsets**2, axis=-1) / (2.0 * self.radius**2)
        weights = jax.nn.softmax(logits, axis=-1)  # [..., M, P], each row sums to 1
        grouped, mean_offset, second_moment = _weighted_moments(weights, point_features,
                                                                local, anchors)
        anchor_input = jnp.concatenate([grouped, mean_offset, second_moment, anchors], axis=-1)

        hidden = nn.gelu(nn.Dense(self.out_dim)(anchor_input))
        hidden = nn.Dense(self.out_dim)(hidden)  # [..., M, out_dim]
        # Mean and a log-sum-exp soft maximum over anchors (smooth, unlike a hard max).
        soft_max = jax.nn.logsumexp(hidden, axis=-2) - jnp.log(hidden.shape[-2])
        pooled = jnp.concatenate([jnp.mean(hidden, axis=-2), soft_max], axis=-1)
        return nn.Dense(self.out_dim)(nn.gelu(pooled))


class ObjectTokenizer(nn.Module):
    """Turns per-object points (+ kind, half extents) into object latents [..., K, latent_dim].

    Attributes:
      point_features, num_anchors, radius, shape_dim: the PointEncoder's sizes.
      latent_dim: latent width.
      coord_scale: metres per model unit.
      soft_extent_temperature: metres, temperature of the smooth per-axis min/max.
      num_kinds: number of object kinds (one-hot input).
      use_half_extents: whether half extents are a token feature.
    """

    point_features: Sequence[int]
    num_anchors: int
    radius: float
    shape_dim: int
    latent_dim: int
    coord_scale: float
    soft_extent_temperature: float
    num_kinds: int
    use_half_extents: bool

    @nn.compact
    def __call__(self, points, kind, half_extents=None) -> jax.Array:
        """Encodes points [..., K, P, 3] (metres), kind [..., K] and half extents [..., K, 3]."""
        centroid = jnp.mean(points, axis=-2)  # [..., K, 3]
        centred = points - centroid[..., None, :]
        rms_radius = jnp.sqrt(jnp.mean(jnp.sum(centred**2, axis=-1), axis=-1) + _EPS_SQ)
        local = centred / rms_radius[..., None, None]
        shape = PointEncoder(self.point_features, self.num_anchors, self.radius,
                             self.shape_dim)(local)
        low, high = soft_min_max(centred, self.soft_extent_temperature, axis=-2)  # [..., K, 3]
        features = [
            shape,
            centroid / self.coord_scale,
            low / self.coord_scale,
            high / self.coord_scale,
            rms_radius[..., None] / self.coord_scale,
            jax.nn.one_hot(kind, self.num_kinds),
        ]
        if self.use_half_extents:
            features.append(half_extents / self.coord_scale)
        hidden = nn.gelu(nn.Dense(self.latent_dim)(jnp.concatenate(features, axis=-1)))
        hidden = nn.gelu(nn.Dense(self.latent_dim)(hidden))
        return nn.Dense(self.latent_dim)(hidden)
