"""Nominal physics of the simulated worlds (the contracts they serve live in f2p.world)."""

from __future__ import annotations

from typing import NamedTuple


class PhysicsParams(NamedTuple):
    """Physical parameters of a simulated world; the defaults are the nominal simulator.

    A perturbed "real world" reuses a backend with other values (DESIGN section 5). Noise terms
    are drawn per item from the item's seed, so a batch stays deterministic.

    Attributes:
      friction: nominal sliding friction coefficient of every geom.
      friction_scale: multiplies `friction` (Sim2Real friction gap).
      density: kg/m^3 of every movable box (container walls included).
      mass_scale: multiplies `density`.
      size_noise: relative standard deviation of each movable object's half extents.
      pose_noise: standard deviation in metres added to each movable object's initial x and y.
      yaw_noise: standard deviation in radians added to each movable object's initial yaw.
      gravity: m/s^2, pointing down.
      timestep: physics step in seconds (stable for these boxes up to about 0.006).

    """

    friction: float = 0.6
    friction_scale: float = 1.0
    density: float = 800.0
    mass_scale: float = 1.0
    size_noise: float = 0.0
    pose_noise: float = 0.0
    yaw_noise: float = 0.0
    gravity: float = 9.81
    timestep: float = 0.005
