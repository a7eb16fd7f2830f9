"""Flax skill-effect model: point encoder, per-skill transformer dynamics, pair relation head."""

from f2p.models.config import get_config
from f2p.models.heads import MASKED_LOGIT, pair_mask
from f2p.models.model import (
    ModelOutput,
    RolloutOutput,
    SkillEffectModel,
    SkillEffectNet,
    move_points,
)

__all__ = [
    "MASKED_LOGIT",
    "ModelOutput",
    "RolloutOutput",
    "SkillEffectModel",
    "SkillEffectNet",
    "get_config",
    "move_points",
    "pair_mask",
]
