"""Losses and relation metrics of the skill-effect model, per example so eval can weight them."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from f2p.models.heads import pair_mask
from f2p.models.model import SkillEffectModel
from f2p.scene import FIXTURE, RELATION_NAMES, Skill, Transition


class LossWeights(NamedTuple):
    """Weights of the loss terms (the `loss` config section)."""

    relation_t: float = 1.0
    relation_t1: float = 1.0
    relation_t1_encoded: float = 0.5
    latent: float = 1.0
    displacement: float = 1.0
    stop_gradient_target: bool = True

    @classmethod
    def from_config(cls, loss_config) -> LossWeights:
        """Builds weights from a `loss` ConfigDict (unknown keys raise a ValueError)."""
        unknown = set(loss_config.keys()) - set(cls._fields)
        if unknown:
            raise ValueError(f"loss config: unknown keys {sorted(unknown)}; "
                             f"allowed: {', '.join(cls._fields)}")
        return cls(**{key: loss_config[key] for key in loss_config.keys()})


def rotate_z(vectors: jax.Array, angle: jax.Array) -> jax.Array:
    """Rotates [..., 3] vectors about z by angle [...] (broadcast over the vectors' axes)."""
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    x, y = vectors[..., 0], vectors[..., 1]
    return jnp.stack([cos * x - sin * y, sin * x + cos * y, vectors[..., 2]], axis=-1)


def true_next_points(batch: Transition) -> jax.Array:
    """Points at t+1 from points_t and the true pose change: R(dyaw) (p - pos_t) + pos_t1.

    Only points_t are stored; each object is rigid, so its points follow its (pos, yaw) change.
    """
    centred = batch.points_t - batch.pos_t[..., None, :]
    delta_yaw = (batch.yaw_t1 - batch.yaw_t)[..., None]  # [..., K, 1] broadcasts over P
    return rotate_z(centred, delta_yaw) + batch.pos_t1[..., None, :]


def masked_bce(logits: jax.Array, labels: jax.Array, mask: jax.Array) -> jax.Array:
    """Per-example mean BCE over valid pairs: logits/labels [B, K, K, R], mask [B, K] -> [B]."""
    pairs = pair_mask(mask)[..., None].astype(logits.dtype)
    losses = optax.sigmoid_binary_cross_entropy(logits, labels.astype(logits.dtype))
    count = jnp.sum(pairs, axis=(1, 2, 3)) * logits.shape[-1]
    return jnp.sum(losses * pairs, axis=(1, 2, 3)) / jnp.maximum(count, 1.0)


def _masked_object_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean over valid objects of per-object values [B, K] -> [B]."""
    mask = mask.astype(values.dtype)
    return jnp.sum(values * mask, axis=-1) / jnp.maximum(jnp.sum(mask, axis=-1), 1.0)


def batch_skill(batch: Transition) -> Skill:
    """The Skill pytree of a Transition batch."""
    return Skill(batch.skill, batch.obj, batch.support, batch.params)


def per_example_losses(model: SkillEffectModel, params, batch: Transition,
                       weights: LossWeights) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Returns the weighted loss [B] and every term [B] (plus the model output's logits).

    Terms: relation BCE at t (current latent), at t+1 (predicted latent) and at t+1 (encoded
    true next points); latent consistency between the predicted latent and the encoding of the
    true next points; displacement squared error in model units. All masked by valid objects.
    """
    mask = batch.mask.astype(bool)
    half_extents = batch.half_extents if model.config.use_half_extents else None
    output = model.apply(params, batch.points_t, mask, batch.kind, batch_skill(batch),
                         half_extents)
    next_points = true_next_points(batch)
    target_latents = model.encode(params, next_points, mask, batch.kind, half_extents)
    encoded_next_logits = model.decode_relations(params, target_latents, mask)
    if weights.stop_gradient_target:
        target_latents = jax.lax.stop_gradient(target_latents)

    dims = model.config.displacement_dims
    true_displacement = (batch.pos_t1 - batch.pos_t)[..., :dims]
    # Fixtures never move and the model outputs exactly 0 for them: leave them out of the mean.
    movable = mask & (batch.kind != FIXTURE)
    displacement_error = jnp.sum(
        ((output.displacement - true_displacement) / model.config.coord_scale) ** 2, axis=-1)
    latent_error = jnp.mean((output.next_latents - target_latents) ** 2, axis=-1)
    terms = {
        "relation_t": masked_bce(output.relation_logits, batch.relations_t, mask),
        "relation_t1": masked_bce(output.next_relation_logits, batch.relations_t1, mask),
        "relation_t1_encoded": masked_bce(encoded_next_logits, batch.relations_t1, mask),
        "latent": _masked_object_mean(latent_error, mask),
        "displacement": _masked_object_mean(displacement_error, movable),
    }
    total = sum(getattr(weights, name) * value for name, value in terms.items())
    # Metres, for logs: mean Euclidean error of the moved object's displacement.
    moved = jax.nn.one_hot(batch.obj, mask.shape[-1], dtype=bool)
    moved_error = jnp.sqrt(jnp.sum((output.displacement - true_displacement) ** 2, axis=-1))
    terms["moved_displacement_error_m"] = _masked_object_mean(moved_error, moved & mask)
    terms["relation_logits_t"] = output.relation_logits
    terms["relation_logits_t1"] = output.next_relation_logits
    return total, terms


def relation_counts(logits: jax.Array, labels: jax.Array, mask: jax.Array,
                    example_weight: jax.Array | None = None) -> jax.Array:
    """True positives, false positives, false negatives per relation: [3, R].

    Args:
      logits: [B, K, K, R]; a relation is predicted when its logit > 0 (probability > 0.5).
      labels: [B, K, K, R] bool.
      mask: [B, K] valid slots; the diagonal and padded pairs are excluded.
      example_weight: optional [B] weights (e.g. 0 for padding rows of the last eval batch).
    """
    pairs = pair_mask(mask)[..., None]
    if example_weight is not None:
        pairs = pairs & (example_weight[:, None, None, None] > 0)
    predicted = (logits > 0) & pairs
    actual = labels.astype(bool) & pairs
    true_positive = jnp.sum(predicted & actual, axis=(0, 1, 2))
    false_positive = jnp.sum(predicted & ~actual, axis=(0, 1, 2))
    false_negative = jnp.sum(~predicted & actual, axis=(0, 1, 2))
    return jnp.stack([true_positive, false_positive, false_negative]).astype(jnp.float32)


def f1_from_counts(counts) -> dict[str, float]:
    """Precision, recall and F1 per relation (and macro F1) from summed [3, R] counts.

    A relation never predicted and never present gets precision = recall = F1 = 1 (nothing to
    get wrong); the macro F1 averages over relations present or predicted at least once.
    """
    counts = np.asarray(counts, np.float64)  # host arithmetic: no per-op compilation
    tp, fp, fn = counts
    precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1.0), 1.0)
    recall = np.where(tp + fn > 0, tp / np.maximum(tp + fn, 1.0), 1.0)
    f1 = np.where(tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1.0), 1.0)
    seen = (tp + fp + fn) > 0
    metrics = {}
    for index, name in enumerate(RELATION_NAMES[: counts.shape[-1]]):
        metrics[f"precision/{name}"] = float(precision[index])
        metrics[f"recall/{name}"] = float(recall[index])
        metrics[f"f1/{name}"] = float(f1[index])
    metrics["f1/macro"] = float(np.sum(np.where(seen, f1, 0.0)) / max(int(np.sum(seen)), 1))
    return metrics


def relation_f1(logits, labels, mask) -> dict[str, float]:
    """Per-relation precision/recall/F1 of logits [B, K, K, R] against labels (host helper)."""
    counts = jax.jit(relation_counts)(jnp.asarray(logits), jnp.asarray(labels),
                                      jnp.asarray(mask, bool))
    return f1_from_counts(jax.device_get(counts))
