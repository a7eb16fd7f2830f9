"""Per-skill transformer dynamics over object tokens and two action tokens."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from f2p.scene import REL

CARRY_GAIN = 30.0
"""Factor on the carry gate's linear output. Adam moves a weight by about the learning rate per
step, so a unit share from a unit relation probability would take 1 / lr steps (1000 at 1e-3)
without it; with it, a 200-step fine-tune can learn a full carry."""



def held_probability(pair_features: jax.Array) -> jax.Array:
    """[B, K, 4R] action relations -> [B, K] probability that the moved object holds each one.

    An object is held when it is inside the moved object, or above it and touching it. The
    first R columns of SkillEffectNet.action_relations are r(i, moved); "above and touching"
    is taken as independent events (a product), "inside or that" as the larger of the two.
    """
    to_moved = pair_features[..., :len(REL)]
    lying_on = to_moved[..., REL["above"]] * to_moved[..., REL["contact"]]
    return jnp.maximum(to_moved[..., REL["inside"]], lying_on)


# Role of an object token: why role embeddings instead of per-slot embeddings (see SkillDynamics).
ROLE_OTHER, ROLE_MOVED, ROLE_SUPPORT = 0, 1, 2


class TransformerBlock(nn.Module):
    """Pre-LayerNorm self-attention block with a boolean attention mask."""

    width: int
    num_heads: int
    mlp_ratio: int

    @nn.compact
    def __call__(self, tokens: jax.Array, attention_mask: jax.Array) -> jax.Array:
        """Maps tokens [B, T, W] with a mask [B, 1, T, T] (True = may attend) to [B, T, W]."""
        hidden = nn.LayerNorm()(tokens)
        hidden = nn.MultiHeadDotProductAttention(
            num_heads=self.num_heads, qkv_features=self.width, out_features=self.width,
            deterministic=True)(hidden, hidden, mask=attention_mask)
        tokens = tokens + hidden
        hidden = nn.LayerNorm()(tokens)
        hidden = nn.gelu(nn.Dense(self.width * self.mlp_ratio)(hidden))
        return tokens + nn.Dense(self.width)(hidden)


class SkillDynamics(nn.Module):
    """One skill's transformer: object latents + action -> latent change and displacement.

    Slots are identified only through roles, never through a learned per-index embedding, so
    the model is permutation-equivariant in object slots: permuting slots (and the skill's
    obj/support indices with them) permutes every output. The DESIGN's "slot embedding" of the
    moved object and the support is realised as (a) a learned role embedding (other / moved /
    support) added to every object token and (b) two action tokens built from the moved
    object's and the support's own latents, each plus its learned role embedding plus the same
    MLP(dx, dy). For push the support token is masked out of attention.

    Attributes:
      width, num_layers, num_heads, mlp_ratio: transformer sizes.
      latent_dim: width of the latent change.
      displacement_dims: 2 (x, y) or 3 (x, y, z).
      coord_scale: metres per model unit, used to scale (dx, dy).
      has_support: False for push: no support role, support token masked.
      carry_gate: add to each other object's displacement a share of the moved object's,
        linear in its pair_features (zero-initialised; see __call__).
      carry_held_only: with carry_gate, make each share a learnt fraction (one per skill)
        times the probability that the moved object holds that object (held_probability).
    """

    width: int
    num_layers: int
    num_heads: int
    mlp_ratio: int
    latent_dim: int
    displacement_dims: int
    coord_scale: float
    has_support: bool
    carry_gate: bool = False
    carry_held_only: bool = False

    @nn.compact
    def __call__(self, latents, mask, obj, support, params, pair_features=None):
        """Predicts the latent change [B, K, D], displacement [B, K, dims] (model units), share.

        Args:
          latents: [B, K, D] object latents.
          mask: [B, K] bool valid slots.
          obj: [B] int slot of the moved object.
          support: [B] int slot of the support (ignored when has_support is False).
          params: [B, 2] (dx, dy) in metres.
          pair_features: optional [B, K, F] per-object features of its relations to the moved
            object and the support (SkillEffectNet.action_relations), added to the object
            tokens through a zero-initialised projection, so that enabling them leaves a
            trained model's outputs unchanged until it is trained further.

        With carry_gate, object i's displacement gains share_i [B, K, 1] times the moved
        object's predicted displacement (no gradient into the latter), share_i a
        zero-initialised linear function of pair_features and 0 for the moved object itself. A
        fine-tune can then learn "what is inside or on the moved object moves with it" as a
        rule of those relations, the same in every scene, instead of from absolute positions.
        Without it share is zero. With carry_held_only share_i is instead held_i (the
        probability that the moved object holds object i, held_probability) times one
        zero-initialised fraction: an object the moved one does not hold (a container whose
        contents are lifted out, a neighbour in contact) cannot be carried, which the linear
        gate, fitted to repair data where holding and touching always occur together, got
        wrong.
        """
        num_objects = latents.shape[1]
        slots = jnp.arange(num_objects)
        is_moved = slots[None, :] == obj[:, None]
        is_support = (slots[None, :] == support[:, None]) & self.has_support
        roles = jnp.where(is_moved, ROLE_MOVED, jnp.where(is_support, ROLE_SUPPORT, ROLE_OTHER))
        object_tokens = nn.Dense(self.width)(latents) + nn.Embed(3, self.width)(roles)
        if pair_features is not None:
            # Named explicitly: an auto-named Dense would renumber the layers after it and no
            # longer match a checkpoint trained without it.
            object_tokens = object_tokens + nn.Dense(
                self.width, kernel_init=nn.initializers.zeros,
                name="pair_features")(pair_features)

        param_embedding = nn.Dense(self.width)(
            nn.gelu(nn.Dense(self.width)(params / self.coord_scale)))  # [B, W]
        action_projection = nn.Dense(self.width)
        action_roles = self.param("action_roles", nn.initializers.normal(0.02), (2, self.width))
        safe_support = jnp.clip(support, 0, num_objects - 1)  # push passes -1
        moved_latent = jnp.take_along_axis(latents, obj[:, None, None], axis=1)[:, 0]
        support_latent = jnp.take_along_axis(latents, safe_support[:, None, None], axis=1)[:, 0]
        moved_token = action_projection(moved_latent) + action_roles[0] + param_embedding
        support_token = action_projection(support_latent) + action_roles[1] + param_embedding

        tokens = jnp.concatenate(
            [object_tokens, moved_token[:, None], support_token[:, None]], axis=1)
        batch = latents.shape[0]
        valid = jnp.concatenate([
            mask,
            jnp.ones((batch, 1), bool),
            jnp.full((batch, 1), self.has_support),
        ], axis=1)  # [B, T]
        attention_mask = valid[:, None, :, None] & valid[:, None, None, :]
        for _ in range(self.num_layers):
            tokens = TransformerBlock(self.width, self.num_heads, self.mlp_ratio)(
                tokens, attention_mask)
        hidden = nn.LayerNorm()(tokens[:, :num_objects])
        # Zero-initialised heads: an untrained model predicts "nothing changes".
        latent_change = nn.Dense(self.latent_dim, kernel_init=nn.initializers.zeros)(hidden)
        displacement = nn.Dense(self.displacement_dims, kernel_init=nn.initializers.zeros)(hidden)
        if not self.carry_gate:
            return latent_change, displacement, jnp.zeros(displacement.shape[:2] + (1,))
        if pair_features is None:
            raise ValueError("carry_gate needs pair_features (model.relation_features)")
        if self.carry_held_only:
            # One learnt fraction per skill, not a function of the relations: repair data
            # shows held objects only, all in alike scenes, so a linear function fitted to them
            # picks up whatever is constant there (left of, behind the cup) and flips sign on
            # other scenes; a held-only gate has no non-held rows to rule that out.
            fraction = self.param("carry_fraction", nn.initializers.zeros, (1,))
            share = CARRY_GAIN * fraction * held_probability(pair_features)[..., None]
        else:
            share = CARRY_GAIN * nn.Dense(1, kernel_init=nn.initializers.zeros,
                                          name="carry")(pair_features)
        share = jnp.where(is_moved[..., None], 0.0, share)  # [B, K, 1]
        moved = jnp.take_along_axis(displacement, obj[:, None, None], axis=1)  # [B, 1, dims]
        return latent_change, displacement + share * jax.lax.stop_gradient(moved), share
