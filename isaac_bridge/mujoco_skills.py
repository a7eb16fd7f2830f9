"""Skills in MuJoCo: settling, tool paths, and pick_place with a kinematic gripper."""

from __future__ import annotations

from typing import NamedTuple

import mujoco
import numpy as np

from f2p.scene import FIXTURE, Scene, Skill
from isaac_bridge.mjcf import PARKED_TOOL_POS, support_surface_z

# Min-jerk profile p(tau) = 10 tau^3 - 15 tau^4 + 6 tau^5 has peak acceleration 5.774 d / T^2.
_MIN_JERK_PEAK_ACCEL = 5.774


class ExecutionSettings(NamedTuple):
    """How skills are executed and outcomes judged (times in s, lengths in m, forces in N).

    Attributes:
      settle_time: longest settling phase; settling stops early once everything is at rest.
      settle_check_time: how often settling checks for rest.
      rest_speed: every generalised velocity below this (m/s, rad/s) means at rest.
      max_accel: peak acceleration of the gripper and paddle paths (riders stay put below
        friction * g).
      min_segment_time: shortest duration of one straight path segment.
      lift_clearance: height of the carried object's bottom above everything it passes over.
      place_clearance: height above the support surface at which the object is released.
      place_block_lag: the gripper releases early when the object lags this far above the
        lowering gripper and something other than its riders holds up half its weight (the
        spot is occupied: a compliant gripper feels the resistance).
      push_gap: the paddle starts this far behind the pushed object's face.
      paddle_thickness: full thickness of the paddle plate.
      push_speed: peak paddle speed while pushing (slow enough that nothing is kicked away).
      push_force_limit: the most the paddle's servo along the push exerts; an object that
        needs more to slide (or a blocked one) is pressed with this and no more.
      push_block_time: the paddle stops advancing once its servo has pressed at the force limit
        while moving slower than push_stall_speed for this long (a blocked object; a heavy one
        that still slides is followed, and a short impact does not count).
      push_stall_speed: paddle speed below which a fully pressing paddle counts as stalled.
      overlap_tolerance: initial overlap deeper than this is inseparable (INTERPENETRATION).
      penetration_tolerance: overlap left after settling deeper than this is INTERPENETRATION.
      tilt_tolerance: radians of tilt above which an object counts as TIPPED.
      fall_drop: an object FELL when its lowest point ends more than this below where it was
        expected: its starting bottom, or for a pick_place the support surface (the carried
        object) or its starting bottom shifted with the carried object (its riders). Objects
        resting on the ground plane (table A) where they started are fine.
      max_linear_speed: a free body's linear speed (m/s, any axis) above this means DIVERGED.
      max_angular_speed: a body's angular speed (rad/s, any axis) above this means DIVERGED;
        small items tumbling out of a falling bag legitimately spin at tens of rad/s.
      sleep: let MuJoCo put bodies at rest to sleep (skips them: about 10x faster settling).

    """

    settle_time: float = 1.0
    settle_check_time: float = 0.05
    rest_speed: float = 0.01
    max_accel: float = 4.0
    min_segment_time: float = 0.1
    lift_clearance: float = 0.02
    place_clearance: float = 0.003
    place_block_lag: float = 0.003
    push_gap: float = 0.01
    paddle_thickness: float = 0.01
    push_speed: float = 0.3
    push_force_limit: float = 10.0
    push_block_time: float = 0.03
    push_stall_speed: float = 0.01
    overlap_tolerance: float = 0.01
    penetration_tolerance: float = 0.005
    tilt_tolerance: float = 0.35
    fall_drop: float = 0.03
    max_linear_speed: float = 20.0
    max_angular_speed: float = 200.0
    sleep: bool = True


class Diverged(Exception):
    """Raised inside a skill when the state stops being finite or plausible."""


def _yaw_quat(yaw: float) -> np.ndarray:
    return np.array([np.cos(0.5 * yaw), 0.0, 0.0, np.sin(0.5 * yaw)])


def angular_dofs(model: mujoco.MjModel) -> np.ndarray:
    """Return [nv] bool, True for rotational dofs (a free joint's last 3, hinges, balls)."""
    joint = model.dof_jntid
    joint_type = model.jnt_type[joint]
    offset = np.arange(model.nv) - model.jnt_dofadr[joint]
    linear = (joint_type == mujoco.mjtJoint.mjJNT_SLIDE) | (
        (joint_type == mujoco.mjtJoint.mjJNT_FREE) & (offset < 3))
    return ~linear


def check_finite(model: mujoco.MjModel, data: mujoco.MjData, settings: ExecutionSettings):
    """Raise Diverged on non-finite or huge velocities, or when MuJoCo reset an unstable state.

    Linear and angular speeds have separate limits: a small box legitimately spins far faster
    (in rad/s) than anything moves (in m/s).
    """
    bad_qacc = data.warning[mujoco.mjtWarning.mjWARN_BADQACC].number > 0
    if bad_qacc or not np.all(np.isfinite(data.qpos)):
        raise Diverged()
    speeds = np.abs(data.qvel)
    limits = np.where(angular_dofs(model), settings.max_angular_speed, settings.max_linear_speed)
    if not np.all(speeds < limits):  # also catches NaN velocities
        raise Diverged()


def settle(model, data, settings: ExecutionSettings) -> None:
    """Step until every velocity is below rest_speed, for at most settle_time seconds."""
    chunk = max(1, round(settings.settle_check_time / model.opt.timestep))
    for _ in range(max(1, int(np.ceil(settings.settle_time / (chunk * model.opt.timestep))))):
        mujoco.mj_step(model, data, nstep=chunk)
        check_finite(model, data, settings)
        if model.nv == 0 or np.abs(data.qvel).max() < settings.rest_speed:
            return


def follow(model, data, command, waypoints, settings, stop=None, max_speed=np.inf) -> bool:
    """Move a tool through straight min-jerk segments, one physics step at a time.

    Args:
      model: the MuJoCo model.
      data: the MuJoCo state, stepped in place.
      command: callable(position [3], velocity [3]) that sets the tool's target for the next
        step (world frame, m and m/s).
      waypoints: [N, 3] positions; the tool starts at waypoints[0].
      settings: speeds and accelerations.
      stop: optional callable() -> bool checked each step of the last segment; True ends the
        motion with the last target commanded (the caller decides what the tool does next).
      max_speed: peak speed of the tool in m/s (min-jerk peak speed is 1.875 d / T).

    Returns:
      True when `stop` fired.

    """
    dt = model.opt.timestep
    waypoints = np.asarray(waypoints, np.float64)
    for index in range(1, len(waypoints)):
        start, end = waypoints[index - 1], waypoints[index]
        distance = float(np.linalg.norm(end - start))
        duration = max(settings.min_segment_time,
                       np.sqrt(_MIN_JERK_PEAK_ACCEL * distance / settings.max_accel),
                       1.875 * distance / max_speed)
        steps = int(np.ceil(duration / dt))
        tau = np.arange(1, steps + 1) / steps
        profile = tau**3 * (10.0 - 15.0 * tau + 6.0 * tau**2)
        rate = 30.0 * tau**2 * (1.0 - tau) ** 2 / (steps * dt)  # d profile / dt
        path = start + profile[:, None] * (end - start)
        velocity = rate[:, None] * (end - start)
        watch = stop is not None and index == len(waypoints) - 1
        for point, speed in zip(path, velocity, strict=True):
            command(point, speed)
            mujoco.mj_step(model, data)
            if watch and stop():
                return True
        check_finite(model, data, settings)
    return False


def riders_of(scene: Scene, obj: int) -> np.ndarray:
    """Return [K] bool: movable objects whose centre lies over `obj`'s footprint, above its bottom.

    These (whatever sits in or on the object) ride along when it is carried. A rider's bottom is
    above the object's bottom, so a cup holding the object is no rider.
    """
    half = scene.half_extents[obj]
    yaw = float(scene.yaw[obj])
    offset = scene.pos[:, :2] - scene.pos[obj, :2]
    local_x = np.cos(yaw) * offset[:, 0] + np.sin(yaw) * offset[:, 1]
    local_y = -np.sin(yaw) * offset[:, 0] + np.cos(yaw) * offset[:, 1]
    bottoms = scene.pos[:, 2] - scene.half_extents[:, 2]
    riders = ((np.abs(local_x) < half[0]) & (np.abs(local_y) < half[1])
              & (bottoms > scene.pos[obj, 2] - half[2] + 0.002) & (scene.kind != FIXTURE)
              & np.asarray(scene.mask, bool))
    riders[obj] = False
    return riders


def place_surface(scene: Scene, skill: Skill) -> float:
    """Height of the surface a pick_place puts its object on (a container's floor top)."""
    support = int(skill.support)
    return support_surface_z(int(scene.kind[support]), float(scene.pos[support, 2]),
                             scene.half_extents[support])


def pick_place(model, data, layout, scene: Scene, skill: Skill, settings) -> None:
    """Weld the gripper to the object, lifts, carries, lowers onto the support and releases."""
    obj = int(skill.obj)
    body = layout.body_of_slot[obj]
    half = scene.half_extents[obj]
    start = data.xpos[body].copy()
    yaw = float(scene.yaw[obj])
    # Riders go up with the object: exclude them from the clearance.
    riders = riders_of(scene, obj)
    obstacles = np.asarray(scene.mask, bool) & ~riders
    obstacles[obj] = False
    tops = scene.pos[obstacles, 2] + scene.half_extents[obstacles, 2]
    surface = place_surface(scene, skill)
    target_xy = scene.pos[int(skill.support), :2] + np.asarray(skill.params, np.float64)
    carry_z = max(float(tops.max(initial=surface)), surface) + settings.lift_clearance + half[2]
    carry_z = max(carry_z, float(start[2]))
    place_z = surface + half[2] + settings.place_clearance
    gripper = layout.gripper_mocap
    data.mocap_pos[gripper] = start
    data.mocap_quat[gripper] = _yaw_quat(yaw)
    data.eq_active[layout.weld_of_slot[obj]] = 1
    waypoints = [start, [start[0], start[1], carry_z], [target_xy[0], target_xy[1], carry_z],
                 [target_xy[0], target_xy[1], place_z]]

    rider_bodies = layout.body_of_slot[riders]
    carried_mass = model.body_mass[body] + model.body_mass[rider_bodies].sum()
    threshold = 0.5 * carried_mass * abs(float(model.opt.gravity[2]))

    def blocked() -> bool:
        # Cheap test first: the compliant weld lets a held-up object lag above the gripper.
        if data.xpos[body, 2] - data.mocap_pos[gripper, 2] < settings.place_block_lag:
            return False
        return _support_force(model, data, body, rider_bodies) > threshold

    def move(point, _velocity):
        data.mocap_pos[gripper] = point

    follow(model, data, move, waypoints, settings, stop=blocked)
    data.eq_active[layout.weld_of_slot[obj]] = 0
    data.mocap_pos[gripper] = PARKED_TOOL_POS


def _support_force(model, data, body: int, ignored: np.ndarray) -> float:
    """Return the upward contact force (N) on `body` from bodies other than `ignored` ones."""
    count = data.ncon
    if count == 0:
        return 0.0
    pairs = model.geom_bodyid[np.asarray(data.contact.geom[:count])]
    other = np.where(pairs[:, 0] == body, pairs[:, 1], pairs[:, 0])
    chosen = np.flatnonzero((pairs == body).any(axis=1) & ~np.isin(other, ignored))
    wrench = np.zeros(6)
    upward = 0.0
    for index in chosen:
        mujoco.mj_contactForce(model, data, int(index), wrench)
        # The contact normal (first frame row) points from geom1 to geom2; a positive normal
        # force pushes geom2 along it, so its sign flips when `body` owns geom1.
        sign = 1.0 if pairs[index, 1] == body else -1.0
        upward += sign * wrench[0] * data.contact.frame[index][2]
    return upward
