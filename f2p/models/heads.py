"""Pair relation head: 9 relation logits for every ordered pair of object latents."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

MASKED_LOGIT = -30.0
"""Logit given to excluded pairs (diagonal, padding): probability ~1e-13, finite for products."""


def pair_mask(mask: jax.Array) -> jax.Array:
    """Returns [..., K, K] bool: both slots valid and i != j."""
    mask = jnp.asarray(mask, bool)
    num_objects = mask.shape[-1]
    off_diagonal = ~jnp.eye(num_objects, dtype=bool)
    return mask[..., :, None] & mask[..., None, :] & off_diagonal


class PairRelationHead(nn.Module):
    """Decodes relation logits [..., K, K, R] from latents [..., K, D].

    The first layer is Dense([z_i, z_j]) computed as A z_i + B z_j, which avoids materialising
    the [K, K, 2D] concatenation; the rest is an MLP per pair. Entry (i, j, r) is "i r j".

    Attributes:
      hidden: MLP width.
      num_relations: relations per pair.
    """

    hidden: int
    num_relations: int

    @nn.compact
    def __call__(self, latents: jax.Array, mask: jax.Array) -> jax.Array:
        """Returns logits with excluded pairs (diagonal, padding) set to MASKED_LOGIT."""
        subject = nn.Dense(self.hidden)(latents)
        reference = nn.Dense(self.hidden, use_bias=False)(latents)
        hidden = nn.gelu(subject[..., :, None, :] + reference[..., None, :, :])
        hidden = nn.gelu(nn.Dense(self.hidden)(hidden))
        logits = nn.Dense(self.num_relations)(hidden)
        return jnp.where(pair_mask(mask)[..., None], logits, MASKED_LOGIT)
