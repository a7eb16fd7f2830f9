"""Depth-camera perception of box scenes: Open3D raycasting, segmentation, sampling, noise."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import open3d as o3d

from f2p.geometry import yaw_rotation
from f2p.scene import CONTAINER, Scene, validate_scene
from f2p.world import Observation
from isaac_bridge import mjcf

# Unit-cube corners and the 12 outward-facing triangles of a box (counter-clockwise from outside).
_CUBE_CORNERS = np.array(
    [[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], np.float32)
_CUBE_TRIANGLES = np.array([
    [0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5],  # -x, +x
    [0, 4, 5], [0, 5, 1], [2, 3, 7], [2, 7, 6],  # -y, +y
    [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3],  # -z, +z
], np.uint32)


class CameraView(NamedTuple):
    """A virtual depth camera framing the whole scene (fixtures and movable objects).

    The camera looks at the centre of the world bounding box of all valid objects from the
    given direction and backs off until that box, widened by `margin`, fits in the image (see
    camera_pose), so that every object stays in view wherever it is, tables included.

    Attributes:
      azimuth_deg: direction of the eye seen from the target, about z; 180 = robot side (-x).
      elevation_deg: angle of the eye above the horizontal plane, in (0, 90).
      fov_deg: horizontal field of view; the vertical one follows from the image's aspect.
      margin: framing margin around the projected bounding box (>= 1).

    """

    azimuth_deg: float = 180.0
    elevation_deg: float = 40.0
    fov_deg: float = 50.0
    margin: float = 1.05


ROBOT_SIDE_CAMERA = CameraView(azimuth_deg=180.0, elevation_deg=40.0)
ABOVE_FRONT_CAMERA = CameraView(azimuth_deg=180.0, elevation_deg=72.0)
DEFAULT_CAMERAS = (ROBOT_SIDE_CAMERA, ABOVE_FRONT_CAMERA)
DEFAULT_IMAGE_SIZE = (128, 256)
"""(height, width) of every depth image: wide, since the task scenes (tables A and B side by
side along y) are about three times wider than high as seen from the robot."""


class NoiseModel(NamedTuple):
    """Perception noise at level 1; a level in [0, 1] scales every term linearly.

    Attributes:
      jitter_std: std (metres) of isotropic Gaussian jitter on the sampled points.
      dropout: probability that a depth-image cell (a square patch of pixels) returns no depth.
      dropout_cell_fraction: cell side as a fraction of the image width.
      bleed_prob: probability that a pixel near a segmentation boundary takes its neighbour's label.
      bleed_px: width in pixels (at the default 256 px image width; scaled with the width) of
        the band near boundaries that may bleed.

    """

    jitter_std: float = 0.01
    dropout: float = 0.6
    dropout_cell_fraction: float = 1.0 / 64.0
    bleed_prob: float = 0.6
    bleed_px: float = 4.0


class RenderedImages(NamedTuple):
    """Raw depth renders: world points and slot labels per camera pixel.

    Attributes:
      points: [C, H, W, 3] float32 world-frame hit points (NaN where the ray hits nothing).
      labels: [C, H, W] int32 object slot hit by each ray, -1 for no hit.

    """

    points: np.ndarray
    labels: np.ndarray


def _local_boxes(kind: int, half_extents: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Return (centre, half_extents) of the solid boxes making one object, in its own frame."""
    if kind == CONTAINER:
        # The same floor and walls as the simulated container, so renders match the physics.
        return mjcf.container_parts(half_extents)
    return [(np.zeros(3, np.float32), half_extents)]


def object_mesh(kind: int, half_extents, pos, yaw: float) -> tuple[np.ndarray, np.ndarray]:
    """Build the triangle mesh of one posed object: a closed box, or a container's floor + walls.

    Args:
      kind: object kind (ITEM, CONTAINER or FIXTURE).
      half_extents: [3] outer half sizes in metres.
      pos: [3] box centre in the world frame.
      yaw: rotation about z in radians.

    Returns:
      vertices [V, 3] float32 and triangles [T, 3] uint32.

    """
    rotation = yaw_rotation(float(yaw)).astype(np.float32)
    vertices, triangles = [], []
    for index, (centre, half) in enumerate(_local_boxes(int(kind), np.asarray(half_extents))):
        local = centre[None] + _CUBE_CORNERS * np.asarray(half, np.float32)[None]
        vertices.append(local @ rotation.T + np.asarray(pos, np.float32)[None])
        triangles.append(_CUBE_TRIANGLES + 8 * index)
    return (np.concatenate(vertices).astype(np.float32),
            np.concatenate(triangles).astype(np.uint32))


def _box_corners(scene: Scene, slots: np.ndarray) -> np.ndarray:
    """Return [len(slots) * 8, 3] world corners of the outer boxes of the given slots."""
    corners = []
    for slot in slots:
        local = _CUBE_CORNERS * scene.half_extents[slot][None]
        rotation = yaw_rotation(float(scene.yaw[slot])).astype(np.float32)
        corners.append(local @ rotation.T + scene.pos[slot][None])
    return np.concatenate(corners)


def camera_pose(scene: Scene, camera: CameraView,
                image_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Return the (eye, target) world positions of a camera framing every valid object.

    The target is the centre of the world bounding box of all valid objects' outer boxes,
    fixtures included, so that tables and shelves are in view as well as the movable objects.
    The eye backs off along the camera's direction until the projection of every corner of that
    box, widened by `camera.margin`, lies inside the image: an exact pinhole fit, tighter than a
    bounding sphere for the wide, flat scenes of the tasks.

    Args:
      scene: one unbatched NumPy Scene (validated).
      camera: the CameraView.
      image_size: (height, width) in pixels; Open3D's fov is horizontal, so the vertical half-
        angle's tangent is the horizontal one times height / width.

    Returns:
      eye [3] and target [3] float64.

    """
    if not 0.0 < camera.elevation_deg < 90.0 or not 0.0 < camera.fov_deg < 180.0:
        raise ValueError(f"cameras: elevation_deg must be in (0, 90) and fov_deg in (0, 180), "
                         f"got {camera}")
    if camera.margin < 1.0:
        raise ValueError(f"cameras: margin must be >= 1, got {camera}")
    height, width = image_size
    corners = _box_corners(scene, np.flatnonzero(scene.mask)).astype(np.float64)
    low, high = corners.min(axis=0), corners.max(axis=0)
    target = (low + high) / 2.0
    # At least 10 cm across, so a lone tiny object is not rendered from millimetres away.
    half = np.maximum((high - low) / 2.0, 0.05)
    box = target + half * _CUBE_CORNERS.astype(np.float64)
    azimuth, elevation = np.deg2rad(camera.azimuth_deg), np.deg2rad(camera.elevation_deg)
    backward = np.array([np.cos(elevation) * np.cos(azimuth),
                         np.cos(elevation) * np.sin(azimuth), np.sin(elevation)])
    # Camera axes: right is horizontal (elevation < 90 deg keeps it defined), up completes them.
    right = np.cross(-backward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, -backward)
    offsets = box - target
    tan_x = np.tan(np.deg2rad(camera.fov_deg) / 2.0) / camera.margin
    tan_y = tan_x * height / width
    # A corner at lateral offsets (a, b) and depth d - (offset . backward) is in view when
    # |a| <= tan_x * depth and |b| <= tan_y * depth: solve each for the smallest d.
    along = offsets @ backward
    needed = np.maximum(np.abs(offsets @ right) / tan_x, np.abs(offsets @ up) / tan_y) + along
    # Keep the eye at least 5 cm in front of (above) the nearest corner.
    distance = max(float(needed.max()), float(along.max()) + 0.05)
    return target + distance * backward, target


def camera_rays(scene: Scene, cameras, image_size: tuple[int, int]) -> np.ndarray:
    """Return [C, H, W, 6] float32 world-frame rays (origin, direction) of the framed cameras."""
    height, width = image_size
    rays = []
    for camera in cameras:
        eye, target = camera_pose(scene, camera, image_size)
        rays.append(o3d.t.geometry.RaycastingScene.create_rays_pinhole(
            fov_deg=float(camera.fov_deg),
            center=o3d.core.Tensor(target.astype(np.float32)),
            eye=o3d.core.Tensor(eye.astype(np.float32)),
            up=o3d.core.Tensor(np.array([0.0, 0.0, 1.0], np.float32)),
            width_px=width, height_px=height).numpy())
    return np.stack(rays).astype(np.float32)


def render_images(scene: Scene, cameras=DEFAULT_CAMERAS,
                  image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE) -> RenderedImages:
    """Raycast the scene's box meshes from every camera (visible surfaces only, with occlusion).

    Args:
      scene: one unbatched NumPy Scene.
      cameras: sequence of CameraView.
      image_size: (height, width) in pixels of every camera.

    Returns:
      RenderedImages with world points and slot labels per pixel.

    """
    scene = _check_single_scene(scene)
    if len(cameras) == 0:
        raise ValueError("cameras: need at least one CameraView")
    if len(image_size) != 2 or min(image_size) < 4:
        raise ValueError(f"image_size: expected (height, width) >= 4 pixels, got {image_size}")
    raycaster = o3d.t.geometry.RaycastingScene()
    valid = np.flatnonzero(scene.mask)
    slot_of_geometry = np.full(valid.size, -1, np.int32)
    for slot in valid:
        vertices, triangles = object_mesh(scene.kind[slot], scene.half_extents[slot],
                                          scene.pos[slot], scene.yaw[slot])
        geometry = raycaster.add_triangles(o3d.core.Tensor(vertices), o3d.core.Tensor(triangles))
        slot_of_geometry[geometry] = slot
    rays = camera_rays(scene, cameras, image_size)
    hits = raycaster.cast_rays(o3d.core.Tensor(rays))
    distance = hits["t_hit"].numpy()
    geometry_ids = hits["geometry_ids"].numpy()
    hit = np.isfinite(distance)
    # Directions are not unit vectors; t_hit is measured in their length, so o + t d is exact.
    points = rays[..., :3] + np.where(hit, distance, np.nan)[..., None] * rays[..., 3:]
    labels = np.where(hit, slot_of_geometry[np.where(hit, geometry_ids, 0)], -1)
    return RenderedImages(points=points.astype(np.float32), labels=labels.astype(np.int32))


def _check_single_scene(scene: Scene) -> Scene:
    scene = Scene(*(np.asarray(field) for field in scene))
    if scene.kind.ndim != 1:
        raise ValueError(f"scene: expected one unbatched scene (kind [K]), got kind shape "
                         f"{scene.kind.shape}")
    validate_scene(scene)
    return scene


def apply_image_noise(images: RenderedImages, level: float, rng: np.random.Generator,
                      noise: NoiseModel = NoiseModel()) -> RenderedImages:
    """Apply patchy depth dropout and segmentation bleed, both growing with `level`."""
    labels = images.labels.copy()
    num_cameras, height, width = labels.shape
    cell = max(1, round(width * noise.dropout_cell_fraction))
    cells = rng.random((num_cameras, -(-height // cell), -(-width // cell)))
    dropped = np.repeat(np.repeat(cells < level * noise.dropout, cell, 1), cell, 2)
    dropped = dropped[:, :height, :width]
    # Bleed: a pixel within `band` pixels of another object's pixel may take that object's label;
    # offsets are visited in random order so no direction is preferred.
    band = int(np.ceil(level * noise.bleed_px * width / DEFAULT_IMAGE_SIZE[1]))
    offsets = [(dy * step, dx * step) for step in range(1, band + 1)
               for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0))]
    neighbour = np.full_like(labels, -1)
    for index in rng.permutation(len(offsets)):
        dy, dx = offsets[index]
        shifted = np.full_like(labels, -1)
        shifted[:, max(dy, 0):height + min(dy, 0), max(dx, 0):width + min(dx, 0)] = \
            images.labels[:, max(-dy, 0):height + min(-dy, 0), max(-dx, 0):width + min(-dx, 0)]
        fresh = (neighbour < 0) & (shifted >= 0) & (shifted != images.labels)
        neighbour = np.where(fresh, shifted, neighbour)
    bleed = (labels >= 0) & (neighbour >= 0) & (rng.random(labels.shape) < level * noise.bleed_prob)
    labels = np.where(bleed, neighbour, labels)
    labels = np.where(dropped, -1, labels)
    return RenderedImages(points=images.points, labels=labels.astype(np.int32))


def farthest_point_sample(points: np.ndarray, num_points: int) -> np.ndarray:
    """Farthest-point sample one object's points (Open3D), padding small sets by repetition.

    Args:
      points: [N, 3] points of one object.
      num_points: P, points to return.

    Returns:
      [P, 3] float32 samples; all N points repeated cyclically when N <= P; zeros when N = 0.

    """
    points = np.asarray(points, np.float64).reshape(-1, 3)
    if points.shape[0] == 0:
        return np.zeros((num_points, 3), np.float32)
    if points.shape[0] <= num_points:
        return np.resize(points, (num_points, 3)).astype(np.float32)
    # Start from the point farthest from the centroid: deterministic and on the object's rim.
    start = int(np.argmax(np.linalg.norm(points - points.mean(axis=0), axis=1)))
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    sampled = cloud.farthest_point_down_sample(num_points, start_index=start)
    return np.asarray(sampled.points, np.float32)


def render_observation(scene: Scene, num_points: int = 128, noise_level: float = 0.0,
                       rng: np.random.Generator | None = None, cameras=DEFAULT_CAMERAS,
                       image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE,
                       noise: NoiseModel = NoiseModel(),
                       max_candidates: int = 4096) -> Observation:
    """Render per-object segmented point clouds of one scene, as a depth camera would see them.

    Args:
      scene: one unbatched NumPy Scene.
      num_points: P, points per object after farthest-point sampling.
      noise_level: Sim2Real perception gap in [0, 1]; 0 renders exactly.
      rng: random generator, required when noise_level > 0.
      cameras: sequence of CameraView.
      image_size: (height, width) of every depth image.
      noise: the noise model at level 1.
      max_candidates: objects with more hits are evenly thinned to this many before sampling.

    Returns:
      Observation with points [K, P, 3], mask [K] and num_visible [K].

    """
    if not 0.0 <= noise_level <= 1.0:
        raise ValueError(f"noise_level: must be in [0, 1], got {noise_level}")
    if num_points < 1:
        raise ValueError(f"num_points: must be >= 1, got {num_points}")
    if noise_level > 0.0 and rng is None:
        raise ValueError("rng: a np.random.Generator is required when noise_level > 0")
    images = render_images(scene, cameras, image_size)
    if noise_level > 0.0:
        images = apply_image_noise(images, noise_level, rng, noise)
    flat_points = images.points.reshape(-1, 3)
    flat_labels = images.labels.reshape(-1)
    num_slots = np.shape(scene.mask)[0]
    num_visible = np.bincount(flat_labels[flat_labels >= 0], minlength=num_slots)[:num_slots]
    points = np.zeros((num_slots, num_points, 3), np.float32)
    for slot in np.flatnonzero(num_visible):
        own = flat_points[flat_labels == slot]
        if own.shape[0] > max_candidates:
            # Even thinning (not random) keeps noise-free renders deterministic.
            own = own[np.linspace(0, own.shape[0] - 1, max_candidates).round().astype(np.int64)]
        points[slot] = farthest_point_sample(own, num_points)
    if noise_level > 0.0:
        jitter = rng.normal(0.0, noise_level * noise.jitter_std, points.shape)
        points = np.where((num_visible > 0)[:, None, None], points + jitter, points)
    return Observation(points=points.astype(np.float32), mask=np.asarray(scene.mask, bool),
                       num_visible=num_visible.astype(np.int32),
                       kind=np.asarray(scene.kind, np.int32))
