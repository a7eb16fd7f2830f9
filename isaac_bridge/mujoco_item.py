"""One item in MuJoCo: perturb, build, settle, execute the skill, settle, read and judge."""

from __future__ import annotations

import logging
import time
from typing import NamedTuple

import mujoco
import numpy as np

from f2p.scene import CONTAINER, FIXTURE, PICK_PLACE, PUSH, Scene, Skill
from f2p.world import DIVERGED, FELL, INTERPENETRATION, OK, TIPPED
from isaac_bridge import protocol
from isaac_bridge.mjcf import CONTACT_TOLERANCE, ModelLayout, build_model
from isaac_bridge.mujoco_push import paddle_for, push
from isaac_bridge.mujoco_skills import (
    Diverged,
    ExecutionSettings,
    pick_place,
    place_surface,
    riders_of,
    settle,
)

_LOG = logging.getLogger(__name__)


class ItemResult(NamedTuple):
    """Per-item simulation result (unbatched NumPy).

    Attributes:
      half_extents: [K, 3] simulated half sizes (perturbed when PhysicsParams.size_noise > 0).
      pre_pos, post_pos: [K, 3] box centres before and after (see simulate_item).
      pre_yaw, post_yaw: [K] yaws before and after.
      contact_pre, contact_post: [K, K] bool symmetric contact matrices.
      fell: [K] bool objects that ended clearly lower than expected (ExecutionSettings.fall_drop).
      status: protocol status code.
      cpu_seconds: CPU time this item took in its worker (for benchmarks).

    """

    half_extents: np.ndarray
    pre_pos: np.ndarray
    pre_yaw: np.ndarray
    post_pos: np.ndarray
    post_yaw: np.ndarray
    contact_pre: np.ndarray
    contact_post: np.ndarray
    fell: np.ndarray
    status: int
    cpu_seconds: float = 0.0


class BodyState(NamedTuple):
    """Poses and contacts read back from MuJoCo, per scene slot.

    Attributes:
      pos: [K, 3] body centres.
      yaw: [K] heading of each body's x axis, so a box turned upside down about a horizontal
        axis (the same shape when it is solid) keeps a meaningful yaw.
      z_row: [K, 3] world z components of the body's x, y, z axes (third row of the rotation);
        z_row[:, 2] is the cosine of the tilt (-1 upside down) and |z_row| @ half_extents is
        the posed box's vertical half height.
      contact: [K, K] bool symmetric contacts within the labelling tolerance.
      penetration: deepest overlap in metres involving a free body.

    """

    pos: np.ndarray
    yaw: np.ndarray
    z_row: np.ndarray
    contact: np.ndarray
    penetration: float


def read_state(model, data, layout: ModelLayout, tolerance: float) -> BodyState:
    """Read every slot's pose and the contacts (surfaces within `tolerance` count)."""
    # Labelling contacts: a temporary margin reports surfaces up to `tolerance` apart (MuJoCo
    # adds both geoms' margins, so pairs up to twice that come back; `dist` decides below).
    # The mid-phase (a multi-geom body's BVH, e.g. a container's floor and walls) tests its
    # inner nodes with body_margin, which MuJoCo derives from geom_margin at compile time
    # only: it would cull a container within `tolerance` of anything. Without the mid-phase,
    # the geom pairs of two bodies that pass the broad phase (which reads geom_margin at run
    # time) are all tested, so a label never depends on how many geoms a body has.
    # Sleeping bodies are skipped by collision, so sleep is switched off for this one pass.
    # Besides waking sleeping bodies, the pass changes nothing the next mj_step reads.
    saved = model.geom_margin.copy(), model.opt.enableflags, model.opt.disableflags
    model.geom_margin[:] = tolerance
    model.opt.enableflags &= ~int(mujoco.mjtEnableBit.mjENBL_SLEEP)
    model.opt.disableflags |= int(mujoco.mjtDisableBit.mjDSBL_MIDPHASE)
    mujoco.mj_fwdPosition(model, data)
    model.geom_margin[:], model.opt.enableflags, model.opt.disableflags = saved
    k = layout.body_of_slot.shape[0]
    valid = layout.body_of_slot >= 0
    bodies = layout.body_of_slot[valid]
    pos = np.zeros((k, 3))
    yaw = np.zeros(k)
    z_row = np.tile([0.0, 0.0, 1.0], (k, 1))
    pos[valid] = data.xpos[bodies]
    rotation = data.xmat[bodies]  # row-major 3x3: entries 0, 3 are the x axis's world x, y
    yaw[valid] = np.arctan2(rotation[:, 3], rotation[:, 0])
    z_row[valid] = rotation[:, 6:9]
    contact = np.zeros((k, k), bool)
    penetration = 0.0
    if data.ncon:
        geoms = np.asarray(data.contact.geom[: data.ncon])
        dist = np.asarray(data.contact.dist[: data.ncon])
        body_pairs = model.geom_bodyid[geoms]
        slots = layout.slot_of_body[body_pairs]
        near = (slots >= 0).all(axis=1) & (slots[:, 0] != slots[:, 1]) & (dist <= tolerance)
        contact[slots[near, 0], slots[near, 1]] = True
        contact[slots[near, 1], slots[near, 0]] = True
        # Penetration involving a free body (fixture pairs never collide; tools, the bodies
        # that are neither the world nor a scene slot, are excluded).
        free = (model.body_jntnum[body_pairs] > 0).any(axis=1)
        tools = ((layout.slot_of_body[body_pairs] < 0) & (body_pairs != 0)).any(axis=1)
        judged = free & ~tools
        if judged.any():
            penetration = float(max(0.0, -dist[judged].min()))
    return BodyState(pos, yaw, z_row, contact, penetration)


def _perturb(scene: Scene, physics: protocol.PhysicsParams, seed: int) -> Scene:
    """Apply the PhysicsParams noise to movable objects (a Sim2Real world); no-op at nominal."""
    if physics.size_noise == 0 and physics.pose_noise == 0 and physics.yaw_noise == 0:
        return scene
    rng = np.random.default_rng(seed)
    k = scene.kind.shape[0]
    movable = (np.asarray(scene.kind) != FIXTURE) & np.asarray(scene.mask, bool)
    scale = np.clip(1.0 + physics.size_noise * rng.standard_normal((k, 3)), 0.5, 1.5)
    shift = physics.pose_noise * rng.standard_normal((k, 2))
    turn = physics.yaw_noise * rng.standard_normal(k)
    half_extents = np.where(movable[:, None], scene.half_extents * scale, scene.half_extents)
    pos = np.array(scene.pos, np.float64)
    pos[movable, :2] += shift[movable]
    # Keep every bottom where it was, so perturbed objects still rest on their supports.
    pos[:, 2] += half_extents[:, 2] - scene.half_extents[:, 2]
    return scene._replace(
        half_extents=half_extents,
        pos=pos,
        yaw=np.where(movable, scene.yaw + turn, scene.yaw),
    )


def expected_bottoms(start: Scene, settled: Scene, skill: Skill | None) -> np.ndarray:
    """[K] heights where each object's lowest point should end if nothing fell.

    Every object should stay at least as high as it started (in `start`, the scene as given).
    A pick_place moves its object onto the support surface and its riders (whatever sits in or
    on it, judged in the `settled` pre-skill state) by the same vertical shift, so carrying a
    loaded cup down is no fall. The ground plane (table A, z = 0) holds up everything, so an
    object resting on it where it started never falls.
    """
    bottoms = start.pos[:, 2] - start.half_extents[:, 2]
    if skill is None or int(skill.skill) != PICK_PLACE:
        return bottoms
    obj = int(skill.obj)
    settled_bottoms = settled.pos[:, 2] - settled.half_extents[:, 2]
    surface = place_surface(settled, skill)
    riders = riders_of(settled, obj)
    bottoms = bottoms.copy()
    bottoms[riders] = settled_bottoms[riders] + (surface - settled_bottoms[obj])
    bottoms[obj] = surface
    return bottoms


def judge(start: Scene, settled: Scene, skill: Skill | None, final: BodyState,
          settings: ExecutionSettings) -> tuple[np.ndarray, int]:
    """Return (fell [K] bool, status) of a finished simulation.

    Args:
      start: the scene as simulated (perturbed, before settling).
      settled: the settled state the skill started from.
      skill: the executed skill, or None when the scene was only settled.
      final: the state read after the last settling.
      settings: tolerances.

    """
    valid = np.asarray(start.mask, bool)
    movable = valid & (start.kind != FIXTURE)
    # Lowest point of each posed box: its vertical half height depends on how it is tilted.
    lowest = final.pos[:, 2] - np.einsum("kj,kj->k", np.abs(final.z_row), start.half_extents)
    fell = movable & (lowest < expected_bottoms(start, settled, skill) - settings.fall_drop)
    # A solid box upside down is the same box; an upside-down container is not.
    cos_tilt = final.z_row[:, 2]
    upright = np.where(start.kind == CONTAINER, cos_tilt, np.abs(cos_tilt))
    tipped = movable & ~fell & (upright < np.cos(settings.tilt_tolerance))
    status = OK
    if final.penetration > settings.penetration_tolerance:
        status = INTERPENETRATION
    elif tipped.any():
        status = TIPPED
    elif fell.any():
        status = FELL
    return fell, status


def simulate_item(scene: Scene, skill: Skill | None, seed: int,
                  physics: protocol.PhysicsParams, settings: ExecutionSettings) -> ItemResult:
    """Settle one validated scene, execute its skill, settle again and judge the outcome.

    With `skill` None the scene is only settled: pre is then the scene as simulated (perturbed,
    unsettled) and post the settled state. Otherwise pre is the settled state the skill started
    from and post the state after the skill and a second settling.
    """
    scene = _perturb(scene, physics, seed)
    scene = scene._replace(half_extents=np.asarray(scene.half_extents, np.float64),
                           pos=np.asarray(scene.pos, np.float64),
                           yaw=np.asarray(scene.yaw, np.float64))
    k = scene.kind.shape[0]
    # Only a push model gets the paddle, so settling and pick_place simulate no extra body.
    paddle = (paddle_for(scene, skill, settings)
              if skill is not None and int(skill.skill) == PUSH else None)
    model, layout = build_model(scene, physics, paddle)
    if settings.sleep:
        model.opt.enableflags |= mujoco.mjtEnableBit.mjENBL_SLEEP
    data = mujoco.MjData(model)
    empty = np.zeros((k, k), bool)
    result = ItemResult(scene.half_extents, scene.pos, scene.yaw, scene.pos, scene.yaw, empty,
                        empty, np.zeros(k, bool), OK)
    initial = read_state(model, data, layout, CONTACT_TOLERANCE)
    if initial.penetration > settings.overlap_tolerance:
        return result._replace(status=INTERPENETRATION)
    if skill is None:
        result = result._replace(contact_pre=initial.contact)
    settled = scene
    try:
        settle(model, data, settings)
        if skill is not None:
            pre = read_state(model, data, layout, CONTACT_TOLERANCE)
            result = result._replace(pre_pos=pre.pos, pre_yaw=pre.yaw, contact_pre=pre.contact)
            settled = scene._replace(pos=pre.pos, yaw=pre.yaw)
            if int(skill.skill) == PICK_PLACE:
                pick_place(model, data, layout, settled, skill, settings)
            elif int(skill.skill) == PUSH:
                push(model, data, layout, settled, skill, paddle, settings)
            settle(model, data, settings)
    except Diverged:
        return result._replace(status=DIVERGED)
    final = read_state(model, data, layout, CONTACT_TOLERANCE)
    fell, status = judge(scene, settled, skill, final, settings)
    return result._replace(post_pos=final.pos, post_yaw=final.yaw, contact_post=final.contact,
                           fell=fell, status=status)


def simulate_chunk(items, physics: protocol.PhysicsParams,
                   settings: ExecutionSettings) -> list[ItemResult | None]:
    """Run simulate_item on (scene, skill or None, seed) triples; an item that raises gives None."""
    results = []
    for scene, skill, seed in items:
        start = time.process_time()
        try:
            result = simulate_item(scene, skill, seed, physics, settings)
        except Exception:  # noqa: BLE001 - one bad item must never sink the batch
            _LOG.exception("simulating an item raised; it is flagged SIM_ERROR")
            results.append(None)
            continue
        results.append(result._replace(cpu_seconds=time.process_time() - start))
    return results
