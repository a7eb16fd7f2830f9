"""The Simulator protocol every backend serves: execute and settle batches, NumPy in and out."""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

from f2p.scene import Scene, Skill

# Per-item status codes, most severe last. `ok` is True for OK and FELL: an object that left the
# table is a valid, labelled physical outcome (the transport task needs exactly those examples).
OK = 0
# An object ended clearly lower than expected: more than ExecutionSettings.fall_drop below its
# starting bottom or, for the object a pick_place moved, below the intended support surface.
# Objects resting on the ground plane (table A, z = 0) where they started are OK.
FELL = 1
TIPPED = 2  # an object still on a support is no longer upright, so its Scene pose is inexact
INTERPENETRATION = 3  # objects overlap beyond tolerance (before the skill, or unresolved after)
DIVERGED = 4  # non-finite state, huge velocities or a MuJoCo instability warning
INVALID_INPUT = 5  # the item failed validate_scene / validate_skill: nothing was simulated
SIM_ERROR = 6  # the backend raised while simulating this item (the rest of the batch is fine)
STATUS_NAMES = (
    "ok", "fell", "tipped", "interpenetration", "diverged", "invalid_input", "sim_error",
)
USABLE_STATUSES = (OK, FELL)
"""Statuses whose (pre, post, relations) are trustworthy labels."""


class PhysicsParams(NamedTuple):
    """Physical parameters of a simulated world; the defaults are the nominal simulator.

    A perturbed "real world" reuses a backend with other values (DESIGN section 5). Noise terms
    are drawn per item from the item's seed, so a batch stays deterministic.

    Attributes:
      friction: nominal sliding friction coefficient of every geom.
      friction_scale: multiplies `friction` (Sim2Real friction gap).
      density: kg/m^3 of every movable box (container walls included).
      mass_scale: multiplies `density`.
      size_noise: relative standard deviation of each movable object's half extents.
      pose_noise: standard deviation in metres added to each movable object's initial x and y.
      yaw_noise: standard deviation in radians added to each movable object's initial yaw.
      gravity: m/s^2, pointing down.
      timestep: physics step in seconds (stable for these boxes up to about 0.006).

    """

    friction: float = 0.6
    friction_scale: float = 1.0
    density: float = 800.0
    mass_scale: float = 1.0
    size_noise: float = 0.0
    pose_noise: float = 0.0
    yaw_noise: float = 0.0
    gravity: float = 9.81
    timestep: float = 0.005


class Outcome(NamedTuple):
    """What executing a batch of skills produced; every field has a leading batch axis [B].

    Attributes:
      pre: Scene batch of the settled pre-skill states (what the skill actually started from);
        for Simulator.settle, the scenes as simulated before settling.
      post: Scene batch after the skill and settling (poses x, y, z, yaw; objects upright);
        for Simulator.settle, the settled scenes.
      contact_pre: [B, K, K] bool, symmetric, False on the diagonal and padded slots.
      contact_post: [B, K, K] bool, same for the post state.
      relations_pre: [B, K, K, 9] bool, f2p.relations.hard_relations of pre and contact_pre.
      relations_post: [B, K, K, 9] bool, same for the post state.
      fell: [B, K] bool, objects that ended clearly lower than expected (see FELL).
      ok: [B] bool, status in USABLE_STATUSES.
      status: [B] int32 codes indexing `status_names`.
      status_names: names of the status codes.
      observation: optional per-item observations (point clouds) when the backend renders them.

    """

    pre: Scene
    post: Scene
    contact_pre: np.ndarray
    contact_post: np.ndarray
    relations_pre: np.ndarray
    relations_post: np.ndarray
    fell: np.ndarray
    ok: np.ndarray
    status: np.ndarray
    status_names: tuple[str, ...] = STATUS_NAMES
    observation: Any = None


@runtime_checkable
class Simulator(Protocol):
    """A batched skill executor; NumPy in, NumPy out, never called inside jit."""

    def settle(self, scenes: Scene, seed: int = 0) -> Outcome:
        """Let every scene come to rest under gravity, executing no skill.

        Args:
          scenes: Scene batch with a leading [B] axis.
          seed: base seed; item b uses a seed derived from (seed, b).

        Returns:
          The Outcome batch: pre is each scene as simulated, post the settled state, and the
          statuses judge the settling (e.g. FELL when an object given in mid-air dropped).

        """
        ...

    def execute(self, scenes: Scene, skills: Skill, seed: int = 0) -> Outcome:
        """Execute skills[b] in scenes[b] for every b; bad items are flagged, never raised.

        Args:
          scenes: Scene batch with a leading [B] axis.
          skills: Skill batch with the same leading [B] axis.
          seed: base seed; item b uses a seed derived from (seed, b).

        Returns:
          The Outcome batch.

        """
        ...
