"""Scene -> MuJoCo MJCF: free boxes, open-top containers, static fixtures, kinematic tools."""

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

DEFAULT_PADDLE_HALF_EXTENTS = (0.005, 0.03, 0.02)
"""Paddle (thickness, width, height) halves when no push sizes it."""

# Collision bits: fixtures and the ground collide with movables; the paddle collides with
# movables only (a kinematic paddle against static geometry would only add useless contacts).
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
      paddle_mocap: mocap index of the paddle.
      paddle_touch: sensordata index of the paddle's touch sensor (total normal force, N).

    """

    body_of_slot: np.ndarray
    slot_of_body: np.ndarray
    qpos_of_slot: np.ndarray
    dof_of_slot: np.ndarray
    weld_of_slot: np.ndarray
    gripper_mocap: int
    paddle_mocap: int
    paddle_touch: int


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


def scene_to_xml(
    scene: Scene,
    physics: PhysicsParams = PhysicsParams(),
    paddle_half_extents=DEFAULT_PADDLE_HALF_EXTENTS,
) -> str:
    """Write the MJCF of one unbatched NumPy scene.

    Args:
      scene: one Scene ([K] leading shapes); only masked-in slots are built.
      physics: friction, density, gravity and timestep.
      paddle_half_extents: (thickness, width, height) halves of the push paddle; its local +x is
        the push direction.

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
    paddle = np.asarray(paddle_half_extents, np.float64)
    parts += [
        f'    <body name="gripper" mocap="true" pos="{_vec(PARKED_TOOL_POS)}"/>',
        f'    <body name="paddle" mocap="true" pos="{_vec(PARKED_TOOL_POS)}">'
        f'<geom type="box" size="{_vec(paddle)}" contype="{_PADDLE_BITS[0]}" '
        f'conaffinity="{_PADDLE_BITS[1]}"/>'
        # The touch site is slightly larger than the paddle so it encloses its contact points.
        f'<site name="paddle_touch" type="box" size="{_vec(paddle + 0.003)}"/></body>',
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
    parts += [
        "  </equality>",
        '  <sensor><touch name="paddle_force" site="paddle_touch"/></sensor>',
        "</mujoco>",
    ]
    return "\n".join(parts)


def build_model(
    scene: Scene,
    physics: PhysicsParams = PhysicsParams(),
    paddle_half_extents=DEFAULT_PADDLE_HALF_EXTENTS,
) -> tuple[mujoco.MjModel, ModelLayout]:
    """Compiles one unbatched scene and returns the model with its slot <-> id layout."""
    model = mujoco.MjModel.from_xml_string(scene_to_xml(scene, physics, paddle_half_extents))
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
    paddle = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "paddle")
    sensor = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SENSOR, "paddle_force")
    layout = ModelLayout(
        body_of_slot=body_of_slot,
        slot_of_body=slot_of_body,
        qpos_of_slot=qpos_of_slot,
        dof_of_slot=dof_of_slot,
        weld_of_slot=weld_of_slot,
        gripper_mocap=int(model.body_mocapid[gripper]),
        paddle_mocap=int(model.body_mocapid[paddle]),
        paddle_touch=int(model.sensor_adr[sensor]),
    )
    return model, layout
