"""Scene -> MuJoCo MJCF: free boxes, open-top containers, static fixtures and the robot's tools."""

from __future__ import annotations

from typing import NamedTuple

import mujoco
import numpy as np

from f2p.scene import CONTAINER, FIXTURE, Scene
from isaac_bridge.protocol import PhysicsParams

CONTACT_TOLERANCE = 0.002
"""Surfaces closer than 2 mm count as in contact when labelling (the physics uses margin 0)."""

PARKED_TOOL_POS = (0.0, 0.0, -5.0)
"""Where the gripper and paddle wait: below the ground plane, far from every object."""

PADDLE_MASS = 0.3
"""kg. Light enough that its momentum adds little to a blocked push's force limit."""

PADDLE_KP = 2000.0
"""N/m of the paddle's position servos: at 2 mm of lag a servo pushes with 4 N, more than any
task item needs to slide; sqrt(kp / mass) * timestep stays below 0.5, which is stable."""

PADDLE_KV = 2.0 * (PADDLE_KP * PADDLE_MASS) ** 0.5
"""N s/m: critical damping of the servos (MuJoCo integrates it implicitly)."""


class Paddle(NamedTuple):
    """The push paddle of one model: a dynamic plate on three force-controlled slides.

    Attributes:
      half_extents: (thickness, width, height) halves; its local +x is the push direction.
      yaw: radians of the push direction about z; the slides run along it, across it and up.
      force_limit: newtons the servo along the push can exert at most (the across and
        vertical servos are unlimited: the robot holds its tool rigidly off the push axis).

    """

    half_extents: tuple
    yaw: float
    force_limit: float

# Collision bits: fixtures and the ground collide with movables; the paddle collides with
# movables only (a paddle against static geometry would only add useless contacts).
_STATIC_BITS = (1, 1)  # (contype, conaffinity)
_MOVABLE_BITS = (1, 3)
_PADDLE_BITS = (2, 2)


class ModelLayout(NamedTuple):
    """How MuJoCo ids map to scene slots.

    Attributes:
      body_of_slot: [K] body id per slot (-1 for padded slots).
      slot_of_body: [nbody] slot per body (-1 for the world, gripper and paddle).
      qpos_of_slot: [K] first qpos index of the slot's free joint (-1 for fixtures, padding).
      dof_of_slot: [K] first dof index of the free joint (qvel[dof:dof+3] is the linear
        velocity in the world frame; -1 for fixtures and padding).
      weld_of_slot: [K] weld equality id joining the gripper to the slot (-1 if not movable).
      gripper_mocap: mocap index of the gripper.
      paddle_qpos: first qpos index of the paddle's slides (along, across, up in the paddle's
        frame; all zero when parked), or -1 when the model has no paddle.
      paddle_dof: first dof index of the slides (-1 without a paddle).
      paddle_actuator: first actuator id of the slides' servos, in the same order (-1 without
        a paddle); the first one is force limited.

    """

    body_of_slot: np.ndarray
    slot_of_body: np.ndarray
    qpos_of_slot: np.ndarray
    dof_of_slot: np.ndarray
    weld_of_slot: np.ndarray
    gripper_mocap: int
    paddle_qpos: int
    paddle_dof: int
    paddle_actuator: int


def wall_thickness(half_extents: np.ndarray) -> float:
    """Container wall and floor thickness in metres: about a quarter of the smaller half width."""
    return float(np.clip(0.12 * min(half_extents[0], half_extents[1]), 0.004, 0.012))


def container_parts(half_extents: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Split an open-top container's outer box into a floor and four walls.

    Args:
      half_extents: [3] outer half sizes (hx, hy, hz).

    Returns:
      (centre, half_size) pairs in the container's frame; together they fill the outer box's
      outline (the floor spans the full footprint).

    """
    hx, hy, hz = (float(v) for v in half_extents)
    t = wall_thickness(half_extents)
    half_t = 0.5 * t
    # The walls stop 1 mm above the outer bottom, so only the floor touches what the container
    # stands on: 4 contacts instead of 20 (box-box contacts dominate the step time).
    wall_z, wall_hz = 0.0005, hz - 0.0005
    return [
        (np.array([0.0, 0.0, -hz + half_t]), np.array([hx, hy, half_t])),  # floor
        (np.array([hx - half_t, 0.0, wall_z]), np.array([half_t, hy, wall_hz])),  # +x wall
        (np.array([-hx + half_t, 0.0, wall_z]), np.array([half_t, hy, wall_hz])),  # -x wall
        (np.array([0.0, hy - half_t, wall_z]), np.array([hx - t, half_t, wall_hz])),  # +y wall
        (np.array([0.0, -hy + half_t, wall_z]), np.array([hx - t, half_t, wall_hz])),  # -y wall
    ]


def support_surface_z(kind: int, pos_z: float, half_extents: np.ndarray) -> float:
    """Height of the surface an object placed onto this one rests on (a container's floor top)."""
    if kind == CONTAINER:
        return float(pos_z - half_extents[2] + wall_thickness(half_extents))
    return float(pos_z + half_extents[2])


def _vec(values) -> str:
    return " ".join(f"{float(v):.6g}" for v in values)


def _yaw_quat(yaw: float) -> str:
    # Quaternion (w, x, y, z) of a rotation by `yaw` about z.
    return _vec((np.cos(0.5 * yaw), 0.0, 0.0, np.sin(0.5 * yaw)))


def _paddle_xml(paddle: Paddle) -> tuple[list[str], list[str]]:
    """Return the paddle's (worldbody, actuator) MJCF lines.

    A kinematic (mocap) paddle would be wrong here: MuJoCo gives a mocap body no velocity in
    the contact dynamics, so a pushed object lags it by about 2 * timeconst * speed (7.6 mm at
    0.2 m/s) of overlap that springs out as a 50 to 150 N kick when the object meets a blocked
    neighbour. A dynamic plate on servoed slides has a real velocity and a real force limit.
    """
    half = np.asarray(paddle.half_extents, np.float64)
    slides = "".join(f'<joint name="paddle_{name}" type="slide" axis="{axis}"/>'
                     for name, axis in (("along", "1 0 0"), ("across", "0 1 0"), ("up", "0 0 1")))
    body = [
        # gravcomp: the vertical servo holds the plate without a steady sag.
        f'    <body name="paddle" pos="{_vec(PARKED_TOOL_POS)}" quat="{_yaw_quat(paddle.yaw)}" '
        f'gravcomp="1"><inertial pos="0 0 0" mass="{PADDLE_MASS:.6g}" '
        f'diaginertia="1e-4 1e-4 1e-4"/>{slides}<geom type="box" size="{_vec(half)}" '
        f'contype="{_PADDLE_BITS[0]}" conaffinity="{_PADDLE_BITS[1]}"/></body>',
    ]
    gains = f'kp="{PADDLE_KP:.6g}" kv="{PADDLE_KV:.6g}"'
    limit = float(paddle.force_limit)
    actuators = [
        f'    <position name="paddle_along" joint="paddle_along" {gains} forcelimited="true" '
        f'forcerange="{-limit:.6g} {limit:.6g}"/>',
        f'    <position name="paddle_across" joint="paddle_across" {gains}/>',
        f'    <position name="paddle_up" joint="paddle_up" {gains}/>',
    ]
    return body, actuators


def scene_to_xml(
    scene: Scene,
    physics: PhysicsParams = PhysicsParams(),
    paddle: Paddle | None = None,
) -> str:
    """Write the MJCF of one unbatched NumPy scene.

    Args:
      scene: one Scene ([K] leading shapes); only masked-in slots are built.
      physics: friction, density, gravity and timestep.
      paddle: the push paddle, for a model that executes a push; None builds none.

    Returns:
      The XML string. Bodies are named obj<slot>; the gripper and paddle wait at PARKED_TOOL_POS.

    """
    friction = physics.friction * physics.friction_scale
    density = physics.density * physics.mass_scale
    geom_defaults = (
        f'friction="{friction:.6g} 0.005 0.0001" solref="0.02 1" solimp="0.9 0.95 0.001"'
    )
    parts = [
        '<mujoco model="f2p_scene">',
        f'  <option timestep="{physics.timestep:.6g}" gravity="0 0 {-physics.gravity:.6g}" '
        'integrator="implicitfast" cone="pyramidal"/>',
        '  <size memory="4M"/>',
        f"  <default><geom {geom_defaults}/></default>",
        "  <worldbody>",
        f'    <geom name="ground" type="plane" size="20 20 0.1" contype="{_STATIC_BITS[0]}" '
        f'conaffinity="{_STATIC_BITS[1]}"/>',
    ]
    movable_slots = []
    for slot in np.flatnonzero(np.asarray(scene.mask)):
        kind = int(scene.kind[slot])
        half = np.asarray(scene.half_extents[slot], np.float64)
        frame = f'pos="{_vec(scene.pos[slot])}" quat="{_yaw_quat(float(scene.yaw[slot]))}"'
        if kind == FIXTURE:
            # A static body (no joint): MuJoCo never collides it with other static geometry.
            parts.append(
                f'    <body name="obj{slot}" {frame}><geom type="box" size="{_vec(half)}" '
                f'contype="{_STATIC_BITS[0]}" conaffinity="{_STATIC_BITS[1]}"/></body>'
            )
            continue
        movable_slots.append(slot)
        bits = f'contype="{_MOVABLE_BITS[0]}" conaffinity="{_MOVABLE_BITS[1]}"'
        boxes = container_parts(half) if kind == CONTAINER else [(np.zeros(3), half)]
        geoms = "".join(
            f'<geom type="box" pos="{_vec(centre)}" size="{_vec(size)}" density="{density:.6g}" '
            f"{bits}/>"
            for centre, size in boxes
        )
        parts.append(f'    <body name="obj{slot}" {frame}><freejoint/>{geoms}</body>')
    paddle_body, paddle_actuators = ([], []) if paddle is None else _paddle_xml(paddle)
    parts += [
        f'    <body name="gripper" mocap="true" pos="{_vec(PARKED_TOOL_POS)}"/>',
        *paddle_body,
        "  </worldbody>",
        "  <equality>",
    ]
    # One inactive weld per movable object; relpose = identity, so activating a weld pulls the
    # object onto the gripper's pose (the gripper is first moved onto the object: no jump).
    parts += [
        f'    <weld name="grasp{slot}" body1="gripper" body2="obj{slot}" active="false" '
        'relpose="0 0 0 1 0 0 0" solref="0.01 1"/>'
        for slot in movable_slots
    ]
    parts.append("  </equality>")
    if paddle_actuators:
        parts += ["  <actuator>", *paddle_actuators, "  </actuator>"]
    parts.append("</mujoco>")
    return "\n".join(parts)


def build_model(
    scene: Scene,
    physics: PhysicsParams = PhysicsParams(),
    paddle: Paddle | None = None,
) -> tuple[mujoco.MjModel, ModelLayout]:
    """Compiles one unbatched scene, with the push paddle if given, and its slot <-> id layout."""
    model = mujoco.MjModel.from_xml_string(scene_to_xml(scene, physics, paddle))
    k = np.shape(scene.mask)[0]
    body_of_slot = np.full(k, -1, np.int64)
    qpos_of_slot = np.full(k, -1, np.int64)
    dof_of_slot = np.full(k, -1, np.int64)
    weld_of_slot = np.full(k, -1, np.int64)
    slot_of_body = np.full(model.nbody, -1, np.int64)
    for slot in np.flatnonzero(np.asarray(scene.mask)):
        body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, f"obj{slot}")
        body_of_slot[slot] = body
        slot_of_body[body] = slot
        if model.body_jntnum[body] > 0:
            qpos_of_slot[slot] = model.jnt_qposadr[model.body_jntadr[body]]
            dof_of_slot[slot] = model.jnt_dofadr[model.body_jntadr[body]]
            weld_of_slot[slot] = mujoco.mj_name2id(
                model, mujoco.mjtObj.mjOBJ_EQUALITY, f"grasp{slot}"
            )
    gripper = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "gripper")
    paddle_qpos = paddle_dof = paddle_actuator = -1
    if paddle is not None:
        joint = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, "paddle_along")
        paddle_qpos, paddle_dof = int(model.jnt_qposadr[joint]), int(model.jnt_dofadr[joint])
        paddle_actuator = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, "paddle_along")
    layout = ModelLayout(
        body_of_slot=body_of_slot,
        slot_of_body=slot_of_body,
        qpos_of_slot=qpos_of_slot,
        dof_of_slot=dof_of_slot,
        weld_of_slot=weld_of_slot,
        gripper_mocap=int(model.body_mocapid[gripper]),
        paddle_qpos=paddle_qpos,
        paddle_dof=paddle_dof,
        paddle_actuator=paddle_actuator,
    )
    return model, layout
