"""The push skill in MuJoCo: a force-limited paddle approaches, pushes, eases off and retreats."""

from __future__ import annotations

import numpy as np

from f2p.scene import CONTAINER, Scene, Skill
from isaac_bridge.mjcf import PADDLE_KP, PADDLE_KV, PARKED_TOOL_POS, Paddle, wall_thickness
from isaac_bridge.mujoco_skills import ExecutionSettings, follow

_SATURATED = 0.98
"""Fraction of the force limit at which the paddle's servo counts as pressing at the limit."""


def push_direction(skill: Skill) -> np.ndarray:
    """Unit [2] direction of a push's displacement (+x for a zero displacement)."""
    displacement = np.asarray(skill.params, np.float64)
    length = np.linalg.norm(displacement)
    return displacement / length if length > 1e-6 else np.array([1.0, 0.0])


def _object_axes(scene: Scene, obj: int) -> np.ndarray:
    yaw = float(scene.yaw[obj])
    return np.array([[np.cos(yaw), np.sin(yaw)], [-np.sin(yaw), np.cos(yaw)]])


def paddle_lift(scene: Scene, obj: int) -> float:
    """Height of the paddle's bottom above the pushed object's bottom.

    A paddle overlapping a container's floor slab vertically would, once it penetrates the
    slab's side deeper than it overlaps it vertically, get a vertical contact normal and press
    the container into the table; so it stays above the floor slab.
    """
    if int(scene.kind[obj]) == CONTAINER:
        return wall_thickness(scene.half_extents[obj]) + 0.004
    return 0.004


def paddle_for(scene: Scene, skill: Skill, settings: ExecutionSettings) -> Paddle:
    """Return the paddle a push builds into its model.

    The paddle is as wide as the object across the push and reaches from just above the
    object's bottom (or floor) to about its mid-height (pushing low avoids tipping); its
    slides run along the push, so the servo along it is the one that is force limited.
    """
    obj = int(skill.obj)
    half = scene.half_extents[obj]
    direction = push_direction(skill)
    across = np.array([-direction[1], direction[0]])
    axes = _object_axes(scene, obj)
    width = half[0] * abs(axes[0] @ across) + half[1] * abs(axes[1] @ across)
    height = max(0.006, 0.5 * (half[2] - paddle_lift(scene, obj)))
    return Paddle(half_extents=(0.5 * settings.paddle_thickness, float(width), float(height)),
                  yaw=float(np.arctan2(direction[1], direction[0])),
                  force_limit=float(settings.push_force_limit))


def push(model, data, layout, scene: Scene, skill: Skill, paddle: Paddle,
         settings: ExecutionSettings) -> None:
    """Push `skill.obj` by (dx, dy) with the model's paddle, then take the paddle away.

    The paddle starts push_gap behind the object and its target runs push_gap past the
    commanded displacement along a min-jerk path. Its servo along the push never exceeds the
    force limit, so a blocked object (or one too heavy to slide) is pressed with at most that
    force; once the paddle stalls at the limit the target stops. Then the target eases off and
    retreats push_gap behind the paddle, so the pressed contacts relax while the object still
    touches what blocked it, and the paddle is parked.
    """
    displacement = np.asarray(skill.params, np.float64)
    distance = float(np.linalg.norm(displacement))
    if distance <= 1e-6:
        return
    obj = int(skill.obj)
    direction = push_direction(skill)
    half = scene.half_extents[obj]
    axes = _object_axes(scene, obj)
    reach = half[0] * abs(axes[0] @ direction) + half[1] * abs(axes[1] @ direction)
    bottom = scene.pos[obj, 2] - half[2]
    back = reach + paddle.half_extents[0] + settings.push_gap
    start = np.array([*(scene.pos[obj, :2] - back * direction),
                      bottom + paddle_lift(scene, obj) + paddle.half_extents[2]])
    end = start + np.array([*(direction * (distance + settings.push_gap)), 0.0])

    # World <-> paddle slides (along, across, up); slide positions are offsets from parking.
    cos, sin = np.cos(paddle.yaw), np.sin(paddle.yaw)
    to_slides = np.array([[cos, sin, 0.0], [-sin, cos, 0.0], [0.0, 0.0, 1.0]])
    parked = np.asarray(PARKED_TOOL_POS, np.float64)
    qpos = slice(layout.paddle_qpos, layout.paddle_qpos + 3)
    dofs = slice(layout.paddle_dof, layout.paddle_dof + 3)
    servos = slice(layout.paddle_actuator, layout.paddle_actuator + 3)
    along = layout.paddle_actuator
    commanded = [start]

    def command(point, velocity):
        # Velocity feed-forward: the servo force is kp (target - q) + kv (target rate - qdot).
        data.ctrl[servos] = to_slides @ (point - parked) + (PADDLE_KV / PADDLE_KP) * (
            to_slides @ velocity)
        commanded[0] = point

    def paddle_position() -> np.ndarray:
        return parked + to_slides.T @ data.qpos[qpos]

    # The parked paddle touches nothing, so it jumps to the start in one go (as the old mocap
    # paddle did; an object standing exactly there would be overlapped and pushed out).
    data.qpos[qpos] = to_slides @ (start - parked)
    data.qvel[dofs] = 0.0
    command(start, np.zeros(3))

    stalled_steps = [0]
    patience = max(1, round(settings.push_block_time / model.opt.timestep))

    def blocked() -> bool:
        pressing = abs(data.actuator_force[along]) >= _SATURATED * paddle.force_limit
        stalled = abs(data.qvel[layout.paddle_dof]) < settings.push_stall_speed
        stalled_steps[0] = stalled_steps[0] + 1 if pressing and stalled else 0
        return stalled_steps[0] >= patience

    follow(model, data, command, [start, end], settings, stop=blocked,
           max_speed=settings.push_speed)
    # Ease off and retreat in one min-jerk segment from where the target presses (a target
    # further ahead than force_limit / kp gives the same limited force) to push_gap behind
    # the paddle. Its slow start lowers the force over about three contact time constants, so
    # the object and what it presses against relax together instead of springing apart; a
    # paddle that jumped back left the object up to 0.3 mm off its blocker.
    here = paddle_position()
    heading = np.array([*direction, 0.0])
    lead = float((commanded[0] - here) @ heading)
    pressing = commanded[0] - heading * max(0.0, lead - paddle.force_limit / PADDLE_KP)
    follow(model, data, command, [pressing, here - heading * settings.push_gap], settings)
    data.qpos[qpos] = 0.0
    data.qvel[dofs] = 0.0
    data.ctrl[servos] = 0.0
