"""The held-out "real" world: hidden perturbed physics and sizes, seen through noisy perception."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from f2p.scene import FIXTURE, Scene, Skill, stack_rows, take_row, validate_skill
from f2p.world import DIVERGED, INVALID_INPUT, SIM_ERROR, STATUS_NAMES, Outcome, WorldSnapshot
from isaac_bridge import protocol
from isaac_bridge.mujoco_backend import MujocoSimulator
from isaac_bridge.perception import (
    DEFAULT_CAMERAS,
    DEFAULT_IMAGE_SIZE,
    Observation,
    render_observation,
)


class PhysicsRanges(NamedTuple):
    """Uniform ranges (low, high) from which a real world draws its hidden physics once.

    Attributes:
      friction_scale: multiplies the nominal friction of every geom.
      mass_scale: multiplies the nominal density of every movable object.
      size_scale: multiplies each movable object's half extents, per object and axis.

    """

    friction_scale: tuple[float, float] = (0.7, 1.3)
    mass_scale: tuple[float, float] = (0.6, 1.6)
    size_scale: tuple[float, float] = (0.95, 1.05)


NOMINAL_RANGES = PhysicsRanges((1.0, 1.0), (1.0, 1.0), (1.0, 1.0))
"""No perturbation: the real world's physics equal the simulator's."""


def _check_ranges(ranges: PhysicsRanges) -> None:
    for name, (low, high) in ranges._asdict().items():
        if not 0.0 < low <= high:
            raise ValueError(f"ranges.{name}: expected 0 < low <= high, got ({low}, {high})")


def _json_copy(value):
    """A deep copy of nested dicts, lists and scalars (NumPy scalars become Python ones)."""
    if isinstance(value, dict):
        return {str(key): _json_copy(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_copy(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


class RealWorld:
    """A held-out world the agent acts in one skill at a time and sees only through a camera.

    Its true state starts from the task scene with perturbed sizes (drawn once from the seed,
    bottoms kept on their supports) settled under perturbed friction and mass; skills run on
    the MuJoCo backend with those hidden physics. The agent-facing methods are `observe()` and
    `step()`, which return Observations rendered with perception noise, plus the public `kind`
    and `fixtures` the robot knows anyway. Everything named `true_*` is for scoring an episode
    and must never reach the agent.
    """

    def __init__(self, task_scene: Scene, ranges: PhysicsRanges = PhysicsRanges(),
                 noise_level: float = 0.0, seed: int = 0, *,
                 nominal: protocol.PhysicsParams = protocol.PhysicsParams(),
                 num_points: int = 128, cameras=DEFAULT_CAMERAS,
                 image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE):
        """Build the world and settle its hidden initial state.

        Args:
          task_scene: one unbatched NumPy Scene, the nominal task layout.
          ranges: ranges of the hidden physics and size perturbations.
          noise_level: perception Sim2Real gap in [0, 1] (see perception.render_observation).
          seed: seeds the hidden physics, the simulator and the perception noise.
          nominal: the simulator's nominal physics, which the perturbations scale.
          num_points: points per object in every observation.
          cameras: CameraViews of the observations.
          image_size: depth image (height, width).

        """
        _check_ranges(ranges)
        if not 0.0 <= noise_level <= 1.0:
            raise ValueError(f"noise_level: must be in [0, 1], got {noise_level}")
        scene = Scene(*(np.array(field) for field in task_scene))
        if scene.kind.ndim != 1:
            raise ValueError(f"task_scene: expected one unbatched scene, kind {scene.kind.shape}")
        movable = scene.mask.astype(bool) & (scene.kind != FIXTURE)
        if not movable.any():
            raise ValueError("task_scene: needs at least one movable (non-fixture) object")
        physics_seed, self._sim_seeds, perception_seed = np.random.SeedSequence(seed).spawn(3)
        physics_rng = np.random.default_rng(physics_seed)
        self.noise_level = float(noise_level)
        self._render = dict(num_points=num_points, cameras=cameras, image_size=image_size)
        self._perception_rng = np.random.default_rng(perception_seed)
        self._true_physics = nominal._replace(
            friction_scale=float(physics_rng.uniform(*ranges.friction_scale)),
            mass_scale=float(physics_rng.uniform(*ranges.mass_scale)),
            size_noise=0.0, pose_noise=0.0, yaw_noise=0.0)  # sizes are perturbed once, below
        scale = physics_rng.uniform(*ranges.size_scale, size=scene.half_extents.shape)
        half_extents = np.where(movable[:, None], scene.half_extents * scale, scene.half_extents)
        # Keep every bottom where it was, so objects still rest on their supports.
        pos = scene.pos.copy()
        pos[:, 2] += half_extents[:, 2] - scene.half_extents[:, 2]
        perturbed = scene._replace(half_extents=half_extents.astype(np.float32),
                                   pos=pos.astype(np.float32))
        self._simulator = MujocoSimulator(num_workers=1, physics=self._true_physics)
        self._kind = scene.kind.copy()
        self._fixtures = scene
        self._steps = 0
        outcome = self._checked(self._simulator.settle(stack_rows([perturbed]),
                                                       seed=self._next_seed()))
        self._state = take_row(outcome.post, 0)
        self._relations = np.asarray(outcome.relations_post[0]).copy()
        self._status = int(outcome.status[0])

    def _next_seed(self) -> int:
        return int(self._sim_seeds.spawn(1)[0].generate_state(1)[0])

    @staticmethod
    def _checked(outcome: Outcome) -> Outcome:
        """Return the outcome of one item, or raise when its state is unusable."""
        status = int(outcome.status[0])
        if status in (INVALID_INPUT, DIVERGED, SIM_ERROR):
            raise RuntimeError(f"real world: the simulator returned status "
                               f"{STATUS_NAMES[status]!r}; the state is unusable")
        return outcome

    # Agent-facing interface ----------------------------------------------------------------

    @property
    def kind(self) -> np.ndarray:
        """[K] object kinds per slot (the robot knows what each segment is)."""
        return self._kind.copy()

    @property
    def fixtures(self) -> Scene:
        """The nominal task scene; its fixture slots are the known, unperturbed fixtures."""
        return Scene(*(np.array(field) for field in self._fixtures))

    @property
    def steps(self) -> int:
        """Number of skills executed so far."""
        return self._steps

    def observe(self) -> Observation:
        """Render the current true state with fresh perception noise."""
        return render_observation(self._state, noise_level=self.noise_level,
                                  rng=self._perception_rng, **self._render)

    def step(self, skill: Skill) -> Observation:
        """Execute one skill under the hidden physics and return the next observation.

        Args:
          skill: one unbatched Skill; its slots index the task scene's slots.

        Returns:
          The Observation of the state after the skill.

        """
        skill = Skill(*(np.asarray(field) for field in skill))
        if skill.skill.ndim != 0:
            raise ValueError(f"skill: expected one unbatched skill, got skill.skill of shape "
                             f"{skill.skill.shape}")
        validate_skill(skill, self._state)
        outcome = self._checked(self._simulator.execute(
            stack_rows([self._state]), stack_rows([skill]), seed=self._next_seed()))
        self._state = take_row(outcome.post, 0)
        self._relations = np.asarray(outcome.relations_post[0]).copy()
        self._status = int(outcome.status[0])
        self._steps += 1
        return self.observe()

    def snapshot(self) -> WorldSnapshot:
        """Capture everything that decides what happens next: a restore() continues bit-identically.

        That is the true state and its relations and status, the step count, the position in
        the simulator's seed stream and the perception RNG's state, plus the hidden physics
        (checked on restore, so a snapshot never silently lands in another world).
        """
        arrays = {f"state_{name}": np.array(value) for name, value in self._state._asdict().items()}
        arrays["relations"] = self._relations.copy()
        metadata = {"status": self._status, "steps": self._steps,
                    "sim_seeds_spawned": int(self._sim_seeds.n_children_spawned),
                    "perception_rng": self._perception_rng.bit_generator.state,
                    "physics": self._true_physics._asdict(),
                    "noise_level": self.noise_level}
        return WorldSnapshot(arrays, _json_copy(metadata))

    def restore(self, snapshot: WorldSnapshot) -> None:
        """Return to a snapshot of this world (or of a world built with the same arguments).

        Raises:
          ValueError: the snapshot's hidden physics or noise level differ from this world's, or
            its arrays do not fit this world's slots.
        """
        metadata = snapshot.metadata
        physics = protocol.PhysicsParams(**metadata["physics"])
        if physics != self._true_physics or metadata["noise_level"] != self.noise_level:
            raise ValueError("snapshot: taken in a world with other hidden physics or noise "
                             f"({physics}, noise {metadata['noise_level']}); this world has "
                             f"{self._true_physics}, noise {self.noise_level}")
        state = Scene(*(np.array(snapshot.arrays[f"state_{name}"]) for name in Scene._fields))
        if state.kind.shape != self._kind.shape or not np.array_equal(state.kind, self._kind):
            raise ValueError(f"snapshot: object kinds {state.kind.tolist()} differ from this "
                             f"world's {self._kind.tolist()}")
        self._state = state
        self._relations = np.array(snapshot.arrays["relations"])
        self._status = int(metadata["status"])
        self._steps = int(metadata["steps"])
        seeds = self._sim_seeds
        self._sim_seeds = np.random.SeedSequence(
            seeds.entropy, spawn_key=seeds.spawn_key, pool_size=seeds.pool_size,
            n_children_spawned=int(metadata["sim_seeds_spawned"]))
        self._perception_rng.bit_generator.state = _json_copy(metadata["perception_rng"])

    # Scoring interface (never give these to the agent) ---------------------------------------

    def true_scene(self) -> Scene:
        """Return the hidden true state (perturbed sizes, simulated poses); for scoring only."""
        return Scene(*(np.array(field) for field in self._state))

    def true_relations(self) -> np.ndarray:
        """Return [K, K, 9] bool relations of the true state (simulator contacts); scoring only."""
        return self._relations.copy()

    def true_status(self) -> str:
        """Return the simulator status of the last settling or skill ("ok", "fell", "tipped"...)."""
        return STATUS_NAMES[self._status]

    def true_physics(self) -> protocol.PhysicsParams:
        """Return the hidden physics the world was drawn with; for scoring and analysis only."""
        return self._true_physics
