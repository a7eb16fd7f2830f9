"""Real2Sim: upright oriented boxes fitted to observed point segments, rebuilt into a Scene."""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np

from f2p.geometry import rotate_z, yaw_rotation
from f2p.scene import CONTAINER, FIXTURE, ITEM, Scene, validate_scene
from f2p.world import Observation
from isaac_bridge.mjcf import support_surface_z

MIN_HALF_EXTENT = 0.004
"""Fitted half sizes never go below this (metres): a flat or single-point segment is still a box."""
SUPPORT_TOLERANCE = 0.02
"""A surface counts as an object's support when its top lies at most this far above the object's
lowest seen point (metres): noise and thin visible rims put that point slightly below the top."""


XY_MARGIN = 0.005
"""An object rests on a surface when its xy centre lies within the surface's footprint grown by
this margin (metres)."""


class UprightBox(NamedTuple):
    """An upright (yaw-only) box fitted to one segment.

    Attributes:
      centre_xy: [2] centre of the min-area rectangle around the points' xy.
      yaw: rotation about z in [-pi/4, pi/4).
      half_xy: [2] half sizes along the box's own x and y axes.
      z_low: lowest seen point (the true bottom may be hidden below it).
      z_high: highest seen point (the top).

    """

    centre_xy: np.ndarray
    yaw: float
    half_xy: np.ndarray
    z_low: float
    z_high: float


def _cross(a: np.ndarray, b: np.ndarray) -> float:
    return float(a[0] * b[1] - a[1] * b[0])


def _convex_hull_2d(points: np.ndarray) -> np.ndarray:
    """Return the counter-clockwise convex hull [H, 2] of 2D points (Andrew's monotone chain)."""
    unique = np.unique(points, axis=0)
    if unique.shape[0] <= 2:
        return unique

    def half(sequence):
        chain = []
        for point in sequence:
            # Pop while the last turn is clockwise or straight (cross product <= 0).
            while len(chain) >= 2 and _cross(chain[-1] - chain[-2], point - chain[-2]) <= 0:
                chain.pop()
            chain.append(point)
        return chain

    lower, upper = half(unique), half(unique[::-1])
    return np.array(lower[:-1] + upper[:-1])


def min_area_rectangle(points_xy: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Fit the minimum-area rectangle around 2D points (rotating calipers over the hull edges).

    Args:
      points_xy: [N, 2] points, N >= 1.

    Returns:
      centre [2], yaw in [-pi/4, pi/4) (a rectangle is symmetric under quarter turns, given
      swapped extents), half sizes [2] along the rectangle's own x and y axes.

    """
    hull = _convex_hull_2d(np.asarray(points_xy, np.float64))
    if hull.shape[0] == 1:
        return hull[0], 0.0, np.zeros(2)
    edges = np.roll(hull, -1, axis=0) - hull
    # Every edge direction modulo a quarter turn; the optimal rectangle has a side on a hull edge.
    angles = np.unique(np.mod(np.arctan2(edges[:, 1], edges[:, 0]) + np.pi / 4, np.pi / 2)
                       - np.pi / 4)
    # Coordinates of every hull point in every candidate frame: [A, H, 2].
    local = rotate_z(hull[None], angles[:, None], inverse=True)
    low, high = local.min(axis=1), local.max(axis=1)
    area = np.prod(high - low, axis=-1)
    best = int(np.argmin(area))
    yaw = float(angles[best])
    mid = (low[best] + high[best]) / 2.0
    centre = rotate_z(mid, yaw)
    return centre, yaw, (high[best] - low[best]) / 2.0


def largest_cluster(points: np.ndarray, scale: float = 3.0) -> np.ndarray:
    """Keep the largest spatially connected group of a segment's points (drops bled outliers).

    Two points are linked when closer than `scale` times the median nearest-neighbour distance,
    so the threshold follows the sampling density; segmentation bleed across a depth
    discontinuity (background labelled as the object) forms a separate group and is dropped.

    Args:
      points: [N, 3] points of one segment.
      scale: link distance in units of the median nearest-neighbour distance.

    Returns:
      [M, 3] points of the largest connected group (all points when N <= 2).

    """
    if points.shape[0] <= 2:
        return points
    distance = np.linalg.norm(points[:, None] - points[None], axis=-1)
    np.fill_diagonal(distance, np.inf)
    linked = distance <= scale * np.median(distance.min(axis=1))
    label = np.full(points.shape[0], -1)
    for seed in range(points.shape[0]):
        if label[seed] >= 0:
            continue
        label[seed] = seed
        frontier = np.array([seed])
        while frontier.size:  # breadth-first flood fill over the link graph
            reached = np.flatnonzero(linked[frontier].any(axis=0) & (label < 0))
            label[reached] = seed
            frontier = reached
    return points[label == np.bincount(label).argmax()]


def fit_upright_box(points: np.ndarray, trim: float = 0.0) -> UprightBox:
    """Fit an upright box to one segment's points: a min-area xy rectangle plus the z range.

    Args:
      points: [N, 3] points of one object, N >= 1.
      trim: fraction in [0, 0.25) of points ignored at each end of every axis when measuring
        extents (robust to bleed and jitter outliers; 0 keeps the exact min/max).

    Returns:
      The fitted UprightBox.

    """
    points = np.asarray(points, np.float64).reshape(-1, 3)
    if points.shape[0] == 0 or not np.all(np.isfinite(points)):
        raise ValueError(f"points: need >= 1 finite point, got shape {points.shape}")
    if not 0.0 <= trim < 0.25:
        raise ValueError(f"trim: must be in [0, 0.25), got {trim}")
    centre, yaw, half = min_area_rectangle(points[:, :2])
    z_low, z_high = np.min(points[:, 2]), np.max(points[:, 2])
    if trim > 0.0:
        rotation = yaw_rotation(yaw)[:2, :2]
        local = (points[:, :2] - centre) @ rotation
        low, high = np.quantile(local, [trim, 1.0 - trim], axis=0)
        centre = centre + rotation @ ((low + high) / 2.0)
        half = (high - low) / 2.0
        z_low, z_high = np.quantile(points[:, 2], [trim, 1.0 - trim])
    return UprightBox(centre_xy=centre, yaw=yaw, half_xy=np.maximum(half, MIN_HALF_EXTENT),
                      z_low=float(z_low), z_high=float(z_high))


def _support_height(box: UprightBox, placed: list[tuple[int, np.ndarray, np.ndarray, float]]):
    """Return the top of the highest surface below the box (None when nothing supports it).

    Args:
      box: the fitted box.
      placed: (kind, half_extents [3], pos [3], yaw) of boxes already rebuilt.

    """
    support = None
    for kind, half, pos, yaw in placed:
        local = rotate_z(box.centre_xy - pos[:2], yaw, inverse=True)
        if np.any(np.abs(local) > half[:2] + XY_MARGIN):
            continue
        bottom, top = pos[2] - half[2], pos[2] + half[2]
        if kind == CONTAINER and bottom - SUPPORT_TOLERANCE <= box.z_low < top:
            height = support_surface_z(kind, pos[2], half)  # on the container's floor
        elif top <= box.z_low + SUPPORT_TOLERANCE:
            height = top
        else:
            continue
        support = height if support is None else max(support, height)
    return support


def fit_scene(observation: Observation, kind, fixtures: Scene | None = None,
              prior: Scene | None = None, min_points: int = 4, trim: float = 0.0,
              cluster_scale: float | None = 3.0) -> Scene:
    """Rebuild a Scene from an observation (Real2Sim): one upright box per observed segment.

    The camera sees only the tops and sides facing it, so each box's hidden bottom is extended
    down to its support (the highest fixture or object top under its centre, or a container's
    floor). Objects are rebuilt from the lowest up so that supports come first.

    Args:
      observation: one Observation (points [K, P, 3], mask [K], num_visible [K]).
      kind: [K] object kinds (the agent knows what each segment is).
      fixtures: optional Scene whose fixture slots hold the known fixture boxes (tables, shelf);
        without it fixtures are fitted from their points like the other objects.
      prior: optional Scene giving the boxes of objects seen by too few points (e.g. the last
        estimate); without it such objects are masked out of the result, with a warning.
      min_points: fewest visible points an object needs to be fitted.
      trim: robust extent trimming passed to fit_upright_box.
      cluster_scale: keep only each segment's largest connected group of points (see
        largest_cluster); None fits all points.

    Returns:
      A validated NumPy Scene with the observation's slots.

    """
    points = np.asarray(observation.points, np.float64)
    mask = np.asarray(observation.mask, bool)
    num_visible = np.asarray(observation.num_visible)
    kind = np.asarray(kind, np.int32)
    if points.ndim != 3 or points.shape[-1] != 3:
        raise ValueError(f"observation.points: expected [K, P, 3], got {points.shape}")
    num_slots, num_points, _ = points.shape
    for name, array in (("observation.mask", mask), ("observation.num_visible", num_visible),
                        ("kind", kind)):
        if array.shape != (num_slots,):
            raise ValueError(f"{name}: expected shape ({num_slots},), got {array.shape}")
    if np.any(~np.isin(kind[mask], (ITEM, CONTAINER, FIXTURE))):
        raise ValueError("kind: values must be in {0, 1, 2} (item, container, fixture)")
    if min_points < 1:
        raise ValueError(f"min_points: must be >= 1, got {min_points}")
    for name, given in (("fixtures", fixtures), ("prior", prior)):
        if given is not None and np.shape(given.mask) != (num_slots,):
            raise ValueError(f"{name}: expected an unbatched Scene with {num_slots} slots")
    fixed = mask & (kind == FIXTURE) if fixtures is not None else np.zeros(num_slots, bool)
    if fixtures is not None and np.any(fixed & ~(np.asarray(fixtures.mask, bool)
                                                 & (np.asarray(fixtures.kind) == FIXTURE))):
        raise ValueError("fixtures: every fixture slot of kind must be a valid fixture there")

    half_extents = np.full((num_slots, 3), MIN_HALF_EXTENT, np.float32)
    pos = np.zeros((num_slots, 3), np.float32)
    yaw = np.zeros(num_slots, np.float32)
    out_mask = mask.copy()
    placed = []
    for slot in np.flatnonzero(fixed):
        half_extents[slot], pos[slot] = fixtures.half_extents[slot], fixtures.pos[slot]
        yaw[slot] = fixtures.yaw[slot]
        placed.append((FIXTURE, half_extents[slot], pos[slot], float(yaw[slot])))
    boxes = {}
    for slot in np.flatnonzero(mask & ~fixed):
        if num_visible[slot] >= min_points:
            seen = points[slot, :min(num_points, int(num_visible[slot]))]
            if cluster_scale is not None:
                seen = largest_cluster(seen, cluster_scale)
            boxes[slot] = fit_upright_box(seen, trim)
        elif prior is not None and bool(np.asarray(prior.mask)[slot]):
            half_extents[slot], pos[slot] = prior.half_extents[slot], prior.pos[slot]
            yaw[slot] = prior.yaw[slot]
            placed.append((int(kind[slot]), half_extents[slot], pos[slot], float(yaw[slot])))
        else:
            logging.warning("fit_scene: slot %d seen by %d points (< %d) and no prior: masked out",
                            slot, num_visible[slot], min_points)
            out_mask[slot] = False
    for slot in sorted(boxes, key=lambda slot: boxes[slot].z_low):
        box = boxes[slot]
        support = _support_height(box, placed) if kind[slot] != FIXTURE else None
        bottom = box.z_low if support is None else min(support, box.z_low + SUPPORT_TOLERANCE)
        half_z = max((box.z_high - bottom) / 2.0, MIN_HALF_EXTENT)
        half_extents[slot] = (*box.half_xy, half_z)
        pos[slot] = (*box.centre_xy, box.z_high - half_z)
        yaw[slot] = box.yaw
        placed.append((int(kind[slot]), half_extents[slot], pos[slot], float(yaw[slot])))
    scene = Scene(kind=np.where(out_mask, kind, 0).astype(np.int32), half_extents=half_extents,
                  pos=pos, yaw=yaw, mask=out_mask)
    validate_scene(scene)
    return scene
