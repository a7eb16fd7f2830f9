"""The one labeller: execute (scene, skill) batches, keep the usable items, render Transitions.

The dataset generator (isaac_bridge.datagen) labels random task skills with it, and
Fail2Progress labels its generated states and actions with it, so both produce the same rows.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from f2p.scene import Scene, Skill, Transition, take_row
from f2p.world import USABLE_STATUSES, Simulator
from isaac_bridge.perception import (
    DEFAULT_CAMERAS,
    DEFAULT_IMAGE_SIZE,
    NoiseModel,
    render_observation,
)


class RenderSettings(NamedTuple):
    """How the pre-skill observation of every kept item is rendered (perception.render_observation).

    Attributes:
      num_points: P, points per object.
      noise_level: perception noise in [0, 1] (0 renders exactly, without drawing from the RNG).
      cameras: sequence of perception.CameraView.
      image_size: (height, width) of every depth image.
      noise: the noise model at level 1.
    """

    num_points: int = 128
    noise_level: float = 0.0
    cameras: tuple = DEFAULT_CAMERAS
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE
    noise: NoiseModel = NoiseModel()


class Labelled(NamedTuple):
    """What label_batch returns (unpacks as (transitions, counts, kept)).

    Attributes:
      transitions: Transition batch of the kept items, in batch order ([N] leading axis, N =
        kept.sum(); N = 0 gives zero-length arrays of the right trailing shapes and dtypes).
      counts: {"attempted": B, "kept": N, "dropped": B - N, "status": {name: items}}, every
        status name of the simulator listed (0 when absent); "dropped" is the sum of the
        statuses outside f2p.world.USABLE_STATUSES.
      kept: [B] bool, the items whose rows are in `transitions`.
    """

    transitions: Transition
    counts: dict
    kept: np.ndarray


def _state_key(scene: Scene) -> bytes:
    """The exact bytes of one scene's fields (equal keys: bit-identical states)."""
    return b"".join(np.ascontiguousarray(field).tobytes() for field in scene)


def label_batch(simulator: Simulator, scenes: Scene, skills: Skill, seed: int,
                render: RenderSettings = RenderSettings(),
                rng: np.random.Generator | None = None) -> Labelled:
    """Execute skills[b] in scenes[b], keep the usable items and render their pre-skill states.

    An item is kept when its status is in f2p.world.USABLE_STATUSES (ok, fell): items that
    tipped, interpenetrated, diverged, were invalid or crashed the simulator are dropped and
    counted by status, never raised. The kept item's row holds the settled pre-skill state the
    skill started from (Outcome.pre), its points rendered from that state, the skill as given,
    the post state, and the simulator's relations before and after. Without perception noise,
    items whose settled pre-skill states are bit-identical are rendered once.

    Args:
      simulator: an f2p.world.Simulator (NumPy in, NumPy out).
      scenes: Scene batch [B] (NumPy or JAX; copied to NumPy here).
      skills: Skill batch [B].
      seed: the simulator's base seed (item b uses a seed derived from (seed, b)).
      render: the RenderSettings of the observations.
      rng: the perception-noise stream, drawn from item by item in batch order; None starts
        np.random.default_rng(seed). The result is a fixed function of the inputs, the seed
        and the state of rng.

    Returns:
      Labelled(transitions, counts, kept).
    """
    scenes = Scene(*(np.asarray(field) for field in scenes))
    skills = Skill(*(np.asarray(field) for field in skills))
    rng = np.random.default_rng(seed) if rng is None else rng
    outcome = simulator.execute(scenes, skills, seed=seed)
    status = np.asarray(outcome.status)
    kept = np.isin(status, USABLE_STATUSES)
    pre, post = take_row(outcome.pre, kept), take_row(outcome.post, kept)
    num_slots = scenes.mask.shape[-1]
    points = np.zeros((int(kept.sum()), num_slots, render.num_points, 3), np.float32)
    # Without noise a render is a pure function of the state: items that start from the same
    # settled state (a generated state labelled with M actions) share one render. Noisy renders
    # are keyed by row, so each draws from rng in batch order.
    rendered: dict[bytes | int, np.ndarray] = {}
    for row in range(points.shape[0]):
        state = take_row(pre, row)
        key = _state_key(state) if render.noise_level == 0.0 else row
        if key not in rendered:
            rendered[key] = render_observation(
                state, render.num_points, render.noise_level, rng, render.cameras,
                render.image_size, render.noise).points
        points[row] = rendered[key]
    chosen = take_row(skills, kept)
    transitions = Transition(
        points_t=points, mask=pre.mask.astype(bool), kind=pre.kind.astype(np.int32),
        half_extents=pre.half_extents.astype(np.float32),
        skill=chosen.skill.astype(np.int32), obj=chosen.obj.astype(np.int32),
        support=chosen.support.astype(np.int32), params=chosen.params.astype(np.float32),
        relations_t=np.asarray(outcome.relations_pre, bool)[kept],
        relations_t1=np.asarray(outcome.relations_post, bool)[kept],
        pos_t=pre.pos.astype(np.float32), pos_t1=post.pos.astype(np.float32),
        yaw_t=pre.yaw.astype(np.float32), yaw_t1=post.yaw.astype(np.float32))
    by_status = np.bincount(status, minlength=len(outcome.status_names))
    counts = {"attempted": int(status.size), "kept": int(kept.sum()),
              "dropped": int(status.size - kept.sum()),
              "status": {name: int(n) for name, n in zip(outcome.status_names, by_status,
                                                         strict=True)}}
    return Labelled(transitions, counts, kept)
