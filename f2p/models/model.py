"""The skill-effect model: encode points, predict a skill's effect, decode relations, roll out."""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from f2p.models.dynamics import SkillDynamics
from f2p.models.encoder import ObjectTokenizer
from f2p.models.heads import PairRelationHead
from f2p.scene import FIXTURE, PICK_PLACE, PUSH, SKILL_NAMES, Skill


class ModelOutput(NamedTuple):
    """One-step outputs; all with the caller's batch axes.

    Attributes:
      latents: [B, K, D] encoded latents at t.
      relation_logits: [B, K, K, R] relations at t, decoded from `latents`.
      next_latents: [B, K, D] predicted latents at t+1.
      next_relation_logits: [B, K, K, R] relations at t+1, decoded from `next_latents`.
      displacement: [B, K, dims] predicted centre displacement in metres (0 for fixtures, padding).
    """

    latents: jax.Array
    relation_logits: jax.Array
    next_latents: jax.Array
    next_relation_logits: jax.Array
    displacement: jax.Array


class RolloutOutput(NamedTuple):
    """Multi-step latent-geometric rollout, time axis after the batch axis.

    Attributes:
      initial_relation_logits: [B, K, K, R] relations decoded from the initial points.
      relation_logits: [B, T, K, K, R] predicted relations after each step.
      displacement: [B, T, K, dims] predicted displacement of each step, metres.
      latents: [B, T, K, D] predicted latents after each step.
      points: [B, T, K, P, 3] points after each step (moved by the predicted displacements).
    """

    initial_relation_logits: jax.Array
    relation_logits: jax.Array
    displacement: jax.Array
    latents: jax.Array
    points: jax.Array


def move_points(points: jax.Array, displacement: jax.Array, mask: jax.Array) -> jax.Array:
    """Translates each valid object's points [..., K, P, 3] by its displacement [..., K, 2|3]."""
    pad = 3 - displacement.shape[-1]
    offset = jnp.pad(displacement, [(0, 0)] * (displacement.ndim - 1) + [(0, pad)])
    offset = jnp.where(mask[..., None], offset, 0.0)
    return points + offset[..., None, :]


class SkillEffectNet(nn.Module):
    """Flax module behind SkillEffectModel; every method takes a leading batch axis [B]."""

    config: ml_collections.FrozenConfigDict

    def setup(self):
        """Builds the tokenizer, one dynamics transformer per skill and the relation head."""
        cfg = self.config
        self.tokenizer = ObjectTokenizer(
            point_features=tuple(cfg.point_features), num_anchors=cfg.num_anchors,
            radius=cfg.neighbourhood_radius, shape_dim=cfg.shape_dim,
            latent_dim=cfg.latent_dim, coord_scale=cfg.coord_scale,
            soft_extent_temperature=cfg.soft_extent_temperature, num_kinds=cfg.num_kinds,
            use_half_extents=cfg.use_half_extents)
        self.dynamics = [
            SkillDynamics(
                width=cfg.width, num_layers=cfg.num_layers, num_heads=cfg.num_heads,
                mlp_ratio=cfg.mlp_ratio, latent_dim=cfg.latent_dim,
                displacement_dims=cfg.displacement_dims, coord_scale=cfg.coord_scale,
                has_support=(skill == PICK_PLACE), carry_gate=cfg.get("carry_gate", False),
                carry_held_only=cfg.get("carry_held_only", False), name=f"dynamics_{name}")
            for skill, name in enumerate(SKILL_NAMES)
        ]
        self.relation_head = PairRelationHead(cfg.pair_hidden, cfg.num_relations)

    def encode(self, points, mask, kind, half_extents=None):
        """Points [B, K, P, 3] -> latents [B, K, D], zero in padded slots."""
        # Padded slots may hold anything (even NaN): zero them before they enter any sum.
        points = jnp.where(mask[..., None, None], points, 0.0)
        latents = self.tokenizer(points, kind, half_extents)
        return jnp.where(mask[..., None], latents, 0.0)

    def predict(self, latents, mask, kind, skill, obj, support, params):
        """Latents [B, K, D] + skill [B] -> (next latents [B, K, D], displacement [B, K, dims]).

        Both skills' transformers run and each example keeps its own skill's result: with two
        skills this costs less than a gather over per-skill parameters and stays jit-friendly.
        The next latents are the dynamics' own; `step` also re-encodes what the carry gate moves.
        """
        return self._predict(latents, mask, kind, skill, obj, support, params)[:2]

    def _predict(self, latents, mask, kind, skill, obj, support, params):
        """predict() plus the carry gate's share [B, K, 1] (zero without the gate)."""
        features = (self.action_relations(latents, mask, obj, support)
                    if self.config.relation_features else None)
        outputs = [dynamics(latents, mask, obj, support, params, features)
                   for dynamics in self.dynamics]
        is_push = (skill == PUSH)[:, None, None]
        change, displacement, share = (jnp.where(is_push, push, pick) for pick, push in zip(
            outputs[PICK_PLACE], outputs[PUSH], strict=True))
        next_latents = jnp.where(mask[..., None], latents + change, 0.0)
        movable = mask & (kind != FIXTURE)  # fixtures are static by definition
        displacement = jnp.where(movable[..., None], displacement * self.config.coord_scale, 0.0)
        return next_latents, displacement, jnp.where(movable[..., None], share, 0.0)

    def step(self, points, mask, kind, half_extents, latents, skill, obj, support, params):
        """One skill from points [B, K, P, 3] and their latents: (next latents, displacement).

        With the carry gate, an object's next latent moves towards the encoding of its points
        translated by the predicted displacement, by its share clipped to [0, 1]: an object the
        gate carries keeps its shape and changes only its place, so its relations after the
        skill follow the displacement the gate learnt (the dynamics' own latent change for it
        would have to be learnt scene by scene, like its displacement without the gate).
        Without the gate this is predict().
        """
        next_latents, displacement, share = self._predict(latents, mask, kind, skill, obj,
                                                          support, params)
        if not self.config.get("carry_gate", False):
            return next_latents, displacement
        moved = self.encode(move_points(points, displacement, mask), mask, kind, half_extents)
        weight = jnp.clip(share, 0.0, 1.0)
        return next_latents + weight * (moved - next_latents), displacement

    def action_relations(self, latents, mask, obj, support):
        """[B, K, 4R] relations of each object to and from the moved object and the support.

        They are the relation head's probabilities, with no gradient flowing back through them
        into the head or the encoder. They tell the dynamics directly what lies inside or on
        the moved object, which its attention over absolute positions learns only from many
        configurations. A push (support -1) gets zeros in the support's columns; padded slots
        get zeros throughout.
        """
        probabilities = jax.nn.sigmoid(jax.lax.stop_gradient(self.relation_head(latents, mask)))
        batch = jnp.arange(latents.shape[0])
        has_support = (support >= 0)[:, None, None]
        safe_support = jnp.clip(support, 0, latents.shape[1] - 1)
        columns = []
        for slot, valid in ((obj, True), (safe_support, has_support)):
            columns.append(jnp.where(valid, probabilities[batch, :, slot], 0.0))  # i r slot
            columns.append(jnp.where(valid, probabilities[batch, slot, :], 0.0))  # slot r i
        return jnp.where(mask[..., None], jnp.concatenate(columns, axis=-1), 0.0)

    def decode_relations(self, latents, mask):
        """Latents [B, K, D] -> relation logits [B, K, K, R] (excluded pairs at MASKED_LOGIT)."""
        return self.relation_head(latents, mask)

    def __call__(self, points, mask, kind, half_extents, skill, obj, support, params):
        """Runs encode, predict and decode on one batch; returns a ModelOutput."""
        latents = self.encode(points, mask, kind, half_extents)
        next_latents, displacement = self.step(points, mask, kind, half_extents, latents, skill,
                                               obj, support, params)
        return ModelOutput(
            latents=latents,
            relation_logits=self.decode_relations(latents, mask),
            next_latents=next_latents,
            next_relation_logits=self.decode_relations(next_latents, mask),
            displacement=displacement,
        )


def _add_batch(unbatched: bool, *arrays):
    return tuple(None if a is None else (a[None] if unbatched else a) for a in arrays)


def _check_points(points) -> bool:
    """Returns True when points are unbatched [K, P, 3]; raises ValueError on a bad shape."""
    if points.ndim not in (3, 4) or points.shape[-1] != 3:
        raise ValueError(f"points: shape {points.shape}, expected [K, P, 3] or [B, K, P, 3]")
    return points.ndim == 3


@dataclasses.dataclass(frozen=True)
class SkillEffectModel:
    """Pure-function facade over SkillEffectNet: every method takes `params` first.

    Methods are jitted (the facade itself is the static argument), so eager calls from a
    notebook are fast and calls inside a caller's jit are simply inlined.

    Inputs are either one scene (leading [K]) or a batch (leading [B, K]); outputs follow.
    Hashable (config is frozen), so it can be a static field of a jitted state.

    Attributes:
      config: the `model` section of a config from f2p.models.config.get_config.
    """

    config: ml_collections.FrozenConfigDict

    def __post_init__(self):
        config = self.config
        if "model" in config:
            raise ValueError("config: pass the `model` section (config.model), not the full config")
        if not isinstance(config, ml_collections.FrozenConfigDict):
            config = ml_collections.FrozenConfigDict(config)
            object.__setattr__(self, "config", config)
        if config.displacement_dims not in (2, 3):
            raise ValueError(f"model.displacement_dims: {config.displacement_dims}, allowed 2, 3")
        if config.num_skills != len(SKILL_NAMES):
            raise ValueError(f"model.num_skills: {config.num_skills}, expected {len(SKILL_NAMES)}")
        if config.width % config.num_heads:
            raise ValueError(f"model.width {config.width} not divisible by num_heads "
                             f"{config.num_heads}")
        if config.get("carry_gate", False) and not config.get("relation_features", False):
            raise ValueError("model.carry_gate: True needs model.relation_features True "
                             "(the gate reads those relations)")
        if config.get("carry_held_only", False) and not config.get("carry_gate", False):
            raise ValueError("model.carry_held_only: True needs model.carry_gate True")
        object.__setattr__(self, "net", SkillEffectNet(config))

    def _half_extents(self, half_extents):
        if self.config.use_half_extents and half_extents is None:
            raise ValueError("half_extents: required because model.use_half_extents is True")
        return half_extents if self.config.use_half_extents else None

    @functools.partial(jax.jit, static_argnums=(0, 2, 3))
    def init(self, key: jax.Array, num_objects: int, num_points: int):
        """Returns freshly initialised parameters for scenes of K objects with P points each."""
        batch = 1
        return self.net.init(
            key,
            jnp.zeros((batch, num_objects, num_points, 3)),
            jnp.ones((batch, num_objects), bool),
            jnp.zeros((batch, num_objects), jnp.int32),
            jnp.full((batch, num_objects, 3), 0.05),
            jnp.zeros((batch,), jnp.int32),
            jnp.zeros((batch,), jnp.int32),
            jnp.ones((batch,), jnp.int32),
            jnp.zeros((batch, 2)),
        )

    @functools.partial(jax.jit, static_argnums=0)
    def encode(self, params, points, mask, kind, half_extents=None):
        """Points [(B,) K, P, 3] (metres) -> latents [(B,) K, D]."""
        points = jnp.asarray(points, jnp.float32)
        unbatched = _check_points(points)
        half_extents = self._half_extents(half_extents)
        args = _add_batch(unbatched, points, jnp.asarray(mask, bool), jnp.asarray(kind),
                          half_extents)
        latents = self.net.apply(params, *args, method=SkillEffectNet.encode)
        return latents[0] if unbatched else latents

    @functools.partial(jax.jit, static_argnums=0)
    def predict(self, params, latents, mask, kind, skill: Skill):
        """Latents [(B,) K, D] and a Skill -> (next latents, displacement [(B,) K, dims] metres)."""
        unbatched = latents.ndim == 2
        args = _add_batch(unbatched, latents, jnp.asarray(mask, bool), jnp.asarray(kind),
                          *(jnp.asarray(x) for x in skill))
        next_latents, displacement = self.net.apply(params, *args, method=SkillEffectNet.predict)
        if unbatched:
            return next_latents[0], displacement[0]
        return next_latents, displacement

    @functools.partial(jax.jit, static_argnums=0)
    def decode_relations(self, params, latents, mask):
        """Latents [(B,) K, D] -> relation logits [(B,) K, K, R]."""
        unbatched = latents.ndim == 2
        args = _add_batch(unbatched, latents, jnp.asarray(mask, bool))
        logits = self.net.apply(params, *args, method=SkillEffectNet.decode_relations)
        return logits[0] if unbatched else logits

    @functools.partial(jax.jit, static_argnums=0)
    def apply(self, params, points, mask, kind, skill: Skill, half_extents=None) -> ModelOutput:
        """One step from points: encode, predict, decode at t and t+1."""
        points = jnp.asarray(points, jnp.float32)
        unbatched = _check_points(points)
        half_extents = self._half_extents(half_extents)
        args = _add_batch(unbatched, points, jnp.asarray(mask, bool), jnp.asarray(kind),
                          half_extents, *(jnp.asarray(x) for x in skill))
        output = self.net.apply(params, *args)
        return jax.tree.map(lambda x: x[0], output) if unbatched else output

    @functools.partial(jax.jit, static_argnums=0)
    def rollout(self, params, points, mask, kind, skills: Skill,
                half_extents=None) -> RolloutOutput:
        """Latent-geometric rollout of T skills (Points2Plans).

        At every step the current points are encoded, the skill's effect is predicted, the
        relations after it are decoded from the predicted latent, and each object's points are
        translated by its predicted displacement to give the next step's points.

        Args:
          params: model parameters.
          points: [(B,) K, P, 3] points at the start, metres.
          mask: [(B,) K] bool valid slots.
          kind: [(B,) K] int kinds.
          skills: a Skill whose fields have a trailing time axis: [(B,) T] (params [(B,) T, 2]).
          half_extents: [(B,) K, 3], required when model.use_half_extents.

        Returns:
          A RolloutOutput (without B for unbatched inputs).
        """
        points = jnp.asarray(points, jnp.float32)
        unbatched = _check_points(points)
        half_extents = self._half_extents(half_extents)
        points, mask, kind, half_extents = _add_batch(
            unbatched, points, jnp.asarray(mask, bool), jnp.asarray(kind), half_extents)
        skills = Skill(*(jnp.asarray(x) for x in skills))
        if unbatched:
            skills = jax.tree.map(lambda x: x[None], skills)
        if skills.skill.ndim != 2 or skills.params.shape != skills.skill.shape + (2,):
            raise ValueError(f"skills: expected fields [(B,) T] and params [(B,) T, 2], got "
                             f"skill {skills.skill.shape}, params {skills.params.shape}")
        time_major = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), skills)

        def step(current_points, skill):
            latents = self.net.apply(params, current_points, mask, kind, half_extents,
                                     method=SkillEffectNet.encode)
            next_latents, displacement = self.net.apply(
                params, current_points, mask, kind, half_extents, latents, *skill,
                method=SkillEffectNet.step)
            logits = self.net.apply(params, next_latents, mask,
                                    method=SkillEffectNet.decode_relations)
            next_points = move_points(current_points, displacement, mask)
            return next_points, (logits, displacement, next_latents, next_points)

        initial_latents = self.net.apply(params, points, mask, kind, half_extents,
                                         method=SkillEffectNet.encode)
        initial_logits = self.net.apply(params, initial_latents, mask,
                                        method=SkillEffectNet.decode_relations)
        _, per_step = jax.lax.scan(step, points, time_major)
        per_step = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), per_step)
        output = RolloutOutput(initial_logits, *per_step)
        return jax.tree.map(lambda x: x[0], output) if unbatched else output
