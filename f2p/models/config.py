"""ml_collections configs of the skill-effect model and its training (default and tiny)."""

from __future__ import annotations

import ml_collections

VARIANTS = ("default", "tiny")


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
    """Returns the model + loss + train + finetune config of one variant.

    Args:
      variant: "default" (trains on 2 CPU cores in minutes to tens of minutes) or "tiny"
        (a few seconds; for tests).

    Raises:
      ValueError: for an unknown variant.
    """
    if variant not in VARIANTS:
        raise ValueError(f"config variant {variant!r}; allowed: {', '.join(VARIANTS)}")
    config = ml_collections.ConfigDict()

    model = config.model = ml_collections.ConfigDict()
    model.latent_dim = 128
    model.width = 128  # transformer and token width
    model.num_layers = 2
    model.num_heads = 4
    model.mlp_ratio = 2
    model.point_features = (32, 64)  # per-point MLP widths of the encoder
    model.shape_dim = 128  # pooled shape feature per object
    model.num_anchors = 16  # soft neighbourhood centres per object (a fixed stride of points)
    model.neighbourhood_radius = 0.35  # Gaussian radius, in units of the object's RMS radius
    model.coord_scale = 0.1  # metres per model unit for positions, extents and (dx, dy)
    model.soft_extent_temperature = 0.005  # metres; smooth min/max of points per axis
    model.pair_hidden = 128
    model.displacement_dims = 3  # x, y (DESIGN) and z: pick_place changes heights
    model.use_half_extents = True
    model.num_kinds = 3
    model.num_skills = 2
    model.num_relations = 9
    # Feed each object's relations to the moved object and the support into the dynamics
    # (SkillEffectNet.action_relations). Off for the committed base model; turning it on for a
    # trained model adds zero-initialised weights (f2p.io.pretrained.with_relation_features).
    model.relation_features = False
    # Let each object's displacement take a learnt share of the moved object's, linear in those
    # relations, and its next latent follow its moved points by that share
    # (SkillDynamics.carry_gate, SkillEffectNet.step; needs relation_features). Off for the base.
    model.carry_gate = False
    # With carry_gate: an object's share is one learnt fraction times the probability that the
    # moved object holds it (inside it, or on it and touching; dynamics.held_probability).
    model.carry_held_only = False

    loss = config.loss = ml_collections.ConfigDict()
    loss.relation_t = 1.0  # BCE of relations at t decoded from the encoded points_t
    loss.relation_t1 = 1.0  # BCE of relations at t+1 decoded from the predicted latent
    loss.relation_t1_encoded = 0.5  # BCE at t+1 decoded from the encoded true next points
    loss.latent = 1.0  # squared error between predicted and encoded next latents
    loss.displacement = 1.0  # squared error of displacements, in model units
    loss.stop_gradient_target = True  # no gradient through the encoded next latent target

    train = config.train = ml_collections.ConfigDict()
    train.seed = 0
    train.batch_size = 32
    train.num_steps = 4000
    train.learning_rate = 1e-3
    train.warmup_steps = 100
    train.end_learning_rate_factor = 0.05
    train.weight_decay = 1e-4
    train.grad_clip_norm = 1.0
    train.log_every = 50
    train.eval_every = 500
    train.eval_batch_size = 64
    train.checkpoint_every = 500
    train.keep_checkpoints = 2

    finetune = config.finetune = ml_collections.ConfigDict()
    finetune.seed = 1
    finetune.batch_size = 32
    finetune.steps = 200
    finetune.learning_rate = 3e-4
    finetune.warmup_steps = 10
    finetune.replay_fraction = 0.5
    finetune.log_every = 50

    if variant == "tiny":
        model.latent_dim = 32
        model.width = 32
        model.num_layers = 1
        model.num_heads = 2
        model.point_features = (16, 32)
        model.shape_dim = 32
        model.num_anchors = 4
        model.pair_hidden = 32
        train.batch_size = 4
        train.num_steps = 6
        train.warmup_steps = 2
        train.log_every = 2
        train.eval_every = 3
        train.eval_batch_size = 4
        train.checkpoint_every = 3
        finetune.batch_size = 4
        finetune.steps = 3
        finetune.warmup_steps = 1
        finetune.log_every = 1
    return config
