"""NumPy scene layout for task samplers: footprints, non-overlapping scatter, containment."""

from __future__ import annotations

import numpy as np

from f2p.geometry import aabb_half_extents, rotate_z
from f2p.scene import CONTAINER, FIXTURE, Scene

FLOOR_TOP = 0.0
"""The ground plane (z = 0) is table A of every task: movables start on it."""
MAX_CONTAINER_WALL = 0.012
"""Upper bound of a simulated container's wall and floor thickness (metres): items are laid
inside against this bound so they never start interpenetrating a floor or a wall."""
REST_GAP = 0.001
"""Objects are laid this far above their support; they settle in the simulator."""
INSIDE_RIM_DEPTH = 0.03
"""DESIGN section 3: an item is inside when its bottom is this far below the container's top."""


class LayoutError(RuntimeError):
    """Raised when objects cannot be laid out without overlap (the caller resamples)."""


def footprint(half_extents, yaw) -> np.ndarray:
    """Return the half sizes [..., 2] of the world xy bounding box of yawed boxes.

    The xy part of f2p.geometry.aabb_half_extents, in float64 like the rest of the layout.
    """
    return aabb_half_extents(np.asarray(half_extents, np.float64), yaw)[..., :2]


def overlaps(centre_a, half_a, centre_b, half_b, clearance: float = 0.0) -> bool:
    """Tell whether two xy boxes (centre, half size) come closer than `clearance` on both axes."""
    gap = np.abs(np.asarray(centre_a) - np.asarray(centre_b)) - np.asarray(half_a) - half_b
    return bool(np.all(gap < clearance))


def top_z(scene: Scene, slot: int) -> float:
    """Return the height of the top face of a slot's box."""
    return float(scene.pos[slot][2] + scene.half_extents[slot][2])


def support_surface(kind: int, pos_z: float, half_z: float) -> float:
    """Return the height an object placed on (or in) this one rests at (containers: floor top)."""
    if kind == CONTAINER:
        return pos_z - half_z + MAX_CONTAINER_WALL
    return pos_z + half_z


def scatter(rng: np.random.Generator, halves: np.ndarray, yaws: np.ndarray, low, high,
            occupied: list[tuple[np.ndarray, np.ndarray]], clearance: float = 0.02,
            tries: int = 200) -> np.ndarray:
    """Place boxes uniformly in an xy rectangle, apart from each other and from `occupied`.

    Args:
      rng: NumPy generator.
      halves: [n, 3] half extents.
      yaws: [n] yaws.
      low: (x, y) low corner of the rectangle the whole footprints must lie in.
      high: (x, y) high corner of that rectangle.
      occupied: (centre [2], footprint half [2]) of boxes already there; extended in place.
      clearance: minimum xy gap between footprints (metres).
      tries: rejection attempts per box.

    Returns:
      [n, 2] xy centres.

    Raises:
      LayoutError: when a box finds no free spot.

    """
    low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
    centres = np.zeros((len(halves), 2))
    for index, (half, yaw) in enumerate(zip(halves, yaws, strict=True)):
        foot = footprint(half, yaw)
        if np.any(high - low < 2 * foot):
            raise LayoutError(f"a box of footprint {foot} does not fit in {low}..{high}")
        for _ in range(tries):
            centre = rng.uniform(low + foot, high - foot)
            if not any(overlaps(centre, foot, c, h, clearance) for c, h in occupied):
                break
        else:
            raise LayoutError("no free spot left in the region")
        occupied.append((centre, foot))
        centres[index] = centre
    return centres


def inside_offset(rng: np.random.Generator, container_half, item_half, relative_yaw: float,
                  margin: float = 0.003) -> np.ndarray:
    """Return a random xy offset (container frame) that keeps an item's footprint off the walls."""
    room = (np.asarray(container_half[:2]) - MAX_CONTAINER_WALL - margin
            - footprint(item_half, relative_yaw))
    if np.any(room < 0):
        raise LayoutError("item does not fit inside the container")
    return rng.uniform(-room, room)


rotate = rotate_z
"""Rotate an xy offset by `yaw` about z: f2p.geometry.rotate_z, under the name samplers use."""


def is_inside(scene: Scene, i: int, j: int) -> bool:
    """Apply DESIGN section 3's `inside` to true poses: i's xy box within container j's."""
    if int(scene.kind[j]) != CONTAINER or i == j:
        return False
    foot_i = footprint(scene.half_extents[i], scene.yaw[i])
    foot_j = footprint(scene.half_extents[j], scene.yaw[j])
    within = np.all(np.abs(scene.pos[i][:2] - scene.pos[j][:2]) + foot_i < foot_j)
    bottom_i = scene.pos[i][2] - scene.half_extents[i][2]
    bottom_j = scene.pos[j][2] - scene.half_extents[j][2]
    below_rim = bottom_j - 0.03 < bottom_i < top_z(scene, j) - INSIDE_RIM_DEPTH
    return bool(within and below_rim)


def loaded_containers(scene: Scene) -> np.ndarray:
    """[K] bool: valid containers with at least one valid object inside."""
    mask = np.asarray(scene.mask, bool)
    slots = np.flatnonzero(mask)
    loaded = np.zeros(mask.shape[0], bool)
    for j in slots:
        loaded[j] = any(is_inside(scene, i, j) for i in slots)
    return loaded


def resting_on(scene: Scene, support: int, tolerance: float = 0.01) -> list[int]:
    """Return the valid movable slots whose bottom lies on `support`'s top face (to tolerance)."""
    top = top_z(scene, support)
    slots = []
    for slot in np.flatnonzero(np.asarray(scene.mask, bool)):
        if slot == support or int(scene.kind[slot]) == FIXTURE:
            continue
        bottom = scene.pos[slot][2] - scene.half_extents[slot][2]
        centre = scene.pos[slot][:2]
        on_top = np.all(np.abs(centre - scene.pos[support][:2])
                        <= footprint(scene.half_extents[support], scene.yaw[support]))
        if abs(bottom - top) < tolerance and on_top:
            slots.append(int(slot))
    return slots


def placement_blocked(scene: Scene, obj: int, support: int, offset,
                      min_gap: float = -0.002) -> bool:
    """Tell whether placing `obj` at `offset` on `support` hits an object already resting there.

    Blocked means coming closer than `min_gap` to such an object; the default, a negative gap,
    means the footprints intersect by more than 2 mm: the placement is physically blocked.
    """
    target = np.asarray(scene.pos[support][:2]) + np.asarray(offset)
    foot = footprint(scene.half_extents[obj], scene.yaw[obj])
    return any(
        overlaps(target, foot, scene.pos[other][:2],
                 footprint(scene.half_extents[other], scene.yaw[other]), min_gap)
        for other in resting_on(scene, support) if other != obj
    )


def free_table_offset(rng: np.random.Generator, scene: Scene, obj: int, support: int,
                      margin: float = 0.01, clearance: float = 0.01,
                      tries: int = 50) -> np.ndarray | None:
    """Return an offset on `support`'s top with room for `obj`, or None (the support is full).

    The offset keeps `obj`'s whole footprint on the support and `clearance` away from the
    objects already resting there.
    """
    foot = footprint(scene.half_extents[obj], scene.yaw[obj])
    room = footprint(scene.half_extents[support], scene.yaw[support]) - foot - margin
    if np.any(room <= 0):
        return None
    for _ in range(tries):
        offset = rng.uniform(-room, room)
        if not placement_blocked(scene, obj, support, offset, min_gap=clearance):
            return offset
    return None
