"""A 1-D device mesh over the particle axis, and the constraint that splits arrays along it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

PARTICLE_AXIS = "particles"
"""Name of the mesh axis that the state particles are split over."""


def particle_mesh(devices: Sequence[Any] | None = None,
                  axis_name: str = PARTICLE_AXIS) -> Mesh:
    """A 1-D Mesh over `devices` (default: all of jax.devices()), in their given order.

    Raises:
      ValueError: an empty device list.
    """
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("mesh: no devices given")
    return Mesh(np.asarray(devices), (axis_name,))


def check_mesh(mesh: Mesh | None, num_particles: int,
               what: str = "generation.num_states") -> Mesh | None:
    """Returns mesh (None stays None: unsharded), or raises ValueError.

    Args:
      mesh: a 1-D jax.sharding.Mesh, or None.
      num_particles: the length of the axis to split; it must be a multiple of mesh.size, so
        that every device holds the same number of particles (GSPMD would pad otherwise, and
        padded particles must never enter SVGD's kernel sums).
      what: the config field named in messages.
    """
    if mesh is None:
        return None
    if not isinstance(mesh, Mesh) or len(mesh.axis_names) != 1:
        raise ValueError(f"mesh: expected a 1-D jax.sharding.Mesh (or None), got {mesh!r}")
    if int(num_particles) % mesh.size:
        raise ValueError(f"{what}: {num_particles} particles do not split evenly over the "
                         f"mesh's {mesh.size} devices; use a multiple of {mesh.size}")
    return mesh


def leading_axis(mesh: Mesh, ndim: int) -> NamedSharding:
    """The sharding that splits an array's axis 0 over the mesh and replicates the others."""
    return NamedSharding(mesh, P(mesh.axis_names[0], *([None] * (ndim - 1))))


def split(tree: Any, mesh: Mesh | None) -> Any:
    """Constrains every array of `tree` to be split along axis 0 over `mesh` (inside jit).

    A no-op for mesh None, so that an unsharded program is exactly the one without the call.
    Scalars stay unconstrained (the compiler replicates them). Under vmap the constraint
    applies to the unbatched axes: the batch axis stays replicated.
    """
    if mesh is None:
        return tree

    def one(leaf):
        if np.ndim(leaf) == 0:
            return leaf
        return jax.lax.with_sharding_constraint(leaf, leading_axis(mesh, np.ndim(leaf)))

    return jax.tree.map(one, tree)


def num_devices_spanned(array: jax.Array) -> int:
    """How many devices hold a piece of `array` (1 for an unsharded array)."""
    return len(array.sharding.device_set)
