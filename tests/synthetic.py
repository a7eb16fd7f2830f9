"""Synthetic point clouds shared by the model and training tests."""

import numpy as np


def box_points(rng, half_extents, pos, yaw, num_points):
    """Uniform samples on a box surface (faces chosen by area), posed by (pos, yaw)."""
    hx, hy, hz = half_extents
    areas = np.array([hy * hz, hy * hz, hx * hz, hx * hz, hx * hy, hx * hy])
    faces = rng.choice(6, num_points, p=areas / areas.sum())
    local = rng.uniform(-1.0, 1.0, (num_points, 3)) * half_extents
    axis = faces // 2
    sign = np.where(faces % 2 == 0, 1.0, -1.0)
    local[np.arange(num_points), axis] = sign * np.asarray(half_extents)[axis]
    cos, sin = np.cos(yaw), np.sin(yaw)
    rotated = np.stack([cos * local[:, 0] - sin * local[:, 1],
                        sin * local[:, 0] + cos * local[:, 1], local[:, 2]], axis=-1)
    return (rotated + pos).astype(np.float32)
