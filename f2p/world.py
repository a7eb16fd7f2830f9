"""The contracts the core acts through: Simulator, World, Outcome, Observation, status codes."""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

from f2p.scene import Scene, Skill

# Per-item status codes, most severe last. `ok` is True for OK and FELL: an object that left the
# table is a valid, labelled physical outcome (the transport task needs exactly those examples).
OK = 0
# An object ended clearly lower than expected: more than the backend's fall drop below its
# starting bottom or, for the object a pick_place moved, below the intended support surface.
# Objects resting on the ground plane (table A, z = 0) where they started are OK.
FELL = 1
TIPPED = 2  # an object still on a support is no longer upright, so its Scene pose is inexact
INTERPENETRATION = 3  # objects overlap beyond tolerance (before the skill, or unresolved after)
DIVERGED = 4  # non-finite state, huge velocities or a simulator instability warning
INVALID_INPUT = 5  # the item failed validate_scene / validate_skill: nothing was simulated
SIM_ERROR = 6  # the backend raised while simulating this item (the rest of the batch is fine)
STATUS_NAMES = (
    "ok", "fell", "tipped", "interpenetration", "diverged", "invalid_input", "sim_error",
)
USABLE_STATUSES = (OK, FELL)
"""Statuses whose (pre, post, relations) are trustworthy labels."""


class Observation(NamedTuple):
    """What the agent sees of one scene, and what the model plans from.

    A World fills points, mask, num_visible and kind (the robot knows what each segment is);
    the agent adds half_extents from its Real2Sim fit before planning. The model reads points,
    mask, kind and half_extents.

    Attributes:
      points: [K, P, 3] float32 per-object points in the world frame, metres (padded by
        repetition when fewer than P were seen; zeros when none were).
      mask: [K] bool valid object slots (an object seen by no camera keeps its slot).
      num_visible: [K] int32 raw points seen per object before sampling (0 flags an unseen
        object), or None for points rendered without a camera model.
      kind: [K] int object kinds (f2p.scene ITEM / CONTAINER / FIXTURE), or None.
      half_extents: [K, 3] box half sizes believed for each slot, or None.
    """

    points: Any
    mask: Any
    num_visible: Any = None
    kind: Any = None
    half_extents: Any = None


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


class WorldSnapshot(NamedTuple):
    """Everything a World needs to continue bit-identically from a point of an episode.

    The core treats it as opaque: it stores and hands back a snapshot, and only the World that
    took it interprets the fields. Both parts are plain data, so a snapshot saves to disk.

    Attributes:
      arrays: named NumPy arrays (true state, relations, ...).
      metadata: JSON-ready values (counters, RNG states, hidden physics, ...).
    """

    arrays: dict[str, np.ndarray]
    metadata: dict[str, Any]


@runtime_checkable
class World(Protocol):
    """The world an episode acts in, one skill at a time, seen only through observations.

    The agent-facing part is `kind`, `fixtures`, `observe`, `step`, and `snapshot`/`restore`
    (which let several recovery methods start from the very same failure). Everything named
    `true_*` is the scoring-only view: an episode reads it to judge success and to record the
    truth beside what the agent believed, and must never hand it to the agent.
    """

    @property
    def kind(self) -> np.ndarray:
        """[K] object kinds per slot."""
        ...

    @property
    def fixtures(self) -> Scene:
        """A scene whose fixture slots are the known fixtures (table B, the shelf)."""
        ...

    def observe(self) -> Observation:
        """Render the current state with fresh perception noise."""
        ...

    def step(self, skill: Skill) -> Observation:
        """Execute one unbatched skill and return the next observation.

        Raises:
          RuntimeError: the simulated state became unusable (diverged, simulator error).
        """
        ...

    def snapshot(self) -> WorldSnapshot:
        """Capture the full hidden state (true state, hidden physics, RNG streams)."""
        ...

    def restore(self, snapshot: WorldSnapshot) -> None:
        """Return to a snapshot taken by this world (or one built the same way)."""
        ...

    def true_scene(self) -> Scene:
        """Scoring only: the hidden true state."""
        ...

    def true_relations(self) -> np.ndarray:
        """Scoring only: [K, K, 9] bool relations of the true state."""
        ...

    def true_status(self) -> str:
        """Scoring only: the simulator status of the last settling or skill."""
        ...


__all__ = ["DIVERGED", "FELL", "INTERPENETRATION", "INVALID_INPUT", "OK", "SIM_ERROR",
           "STATUS_NAMES", "TIPPED", "USABLE_STATUSES", "Observation", "Outcome", "Simulator",
           "World", "WorldSnapshot"]
