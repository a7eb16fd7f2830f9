"""Seeded episodes in the "real" world: specs, worlds, the agent's Real2Sim, the oracle's plans.

Shared by the experiments that play episodes (experiments.evaluate, experiments.fail2progress).
"""

from __future__ import annotations

import zlib
from typing import NamedTuple

import numpy as np

from f2p import oracle, tasks
from f2p.agent import PlanFn
from f2p.io.config import parse_list
from f2p.scene import Scene
from isaac_bridge.real2sim import fit_scene
from isaac_bridge.real_world import PhysicsRanges, RealWorld

BELIEFS = ("real2sim", "nominal")


class EpisodeSpec(NamedTuple):
    """One seeded episode: task, object count, split, index and the seeds derived from them."""
    task: str
    count: int
    split: str
    episode: int
    scene_seed: int
    world_seed: int

    @property
    def name(self) -> str:
        """File-name stem of the episode, e.g. tabletop-n3-ood-e007."""
        return f"{self.task}-n{self.count}-{self.split}-e{self.episode:03d}"


def episode_specs(config) -> list[EpisodeSpec]:
    """The fixed list of seeded episodes: every task x object count x split x episode index.

    Seeds depend on (config.seed, task name, count, split, episode) only, so adding a task or
    a count to the config leaves every other episode unchanged.
    """
    names = parse_list(config.tasks, tasks.task_names(), "tasks")
    counts = parse_list(config.object_counts, tasks.OBJECT_COUNTS, "object_counts", int)
    splits = parse_list(config.splits, tasks.SPLITS, "splits")
    return make_specs(int(config.seed), names, counts, splits, int(config.num_episodes))


def make_specs(seed: int, names, counts, splits, num_episodes: int,
               first: int = 0) -> list[EpisodeSpec]:
    """Episodes first..first + num_episodes - 1 of every task x count x split, from `seed`."""
    if int(num_episodes) < 1:
        raise ValueError(f"config.num_episodes: must be >= 1, got {num_episodes}")
    specs = []
    for name in names:
        for count in counts:
            for split in splits:
                for index in range(int(first), int(first) + int(num_episodes)):
                    entropy = [int(seed), zlib.crc32(name.encode()), int(count),
                               tasks.SPLITS.index(split), index]
                    scene_seed, world_seed = np.random.SeedSequence(entropy).generate_state(2)
                    specs.append(EpisodeSpec(name, int(count), split, index, int(scene_seed),
                                             int(world_seed)))
    return specs


def make_perceive(world: RealWorld, nominal: Scene, belief: str):
    """The agent's Real2Sim: observation (and the previous belief) -> the believed scene.

    "real2sim" fits boxes to the observation (fixtures known; the previous belief, or the
    nominal task scene at the start, only for objects seen by too few points). "nominal"
    always believes the sampled task scene before the world's hidden size perturbation (an
    oracle on poses, for ablation). Only the world's public kind and fixtures are read.
    """
    if belief == "nominal":
        return lambda observation, prior: nominal
    if belief == "real2sim":
        kind, fixtures = world.kind, world.fixtures
        return lambda observation, prior: fit_scene(
            observation, kind, fixtures=fixtures, prior=nominal if prior is None else prior)
    raise ValueError(f"config.belief: {belief!r} is not one of {', '.join(BELIEFS)}")


def make_world(spec: EpisodeSpec, config, num_points: int) -> tuple[RealWorld, Scene]:
    """The episode's real world (hidden physics from the world seed) and its nominal scene."""
    task = tasks.get_task(spec.task)
    nominal = task.sample_scene(np.random.default_rng(spec.scene_seed), spec.count, spec.split)
    ranges = PhysicsRanges(tuple(config.friction_scale), tuple(config.mass_scale),
                           tuple(config.size_scale))
    world = RealWorld(nominal, ranges, float(config.noise_level), spec.world_seed,
                      num_points=num_points)
    return world, nominal


def oracle_plan_fn(world: RealWorld, simulator, config) -> PlanFn:
    """A PlanFn that simulates candidate plans from the world's TRUE scene (evaluation only)."""
    def plan(key, params, observation, task, belief, goal):
        del params, observation
        return oracle.plan(key, simulator, world.true_scene(), task, belief, goal,
                           config.oracle)

    return plan


def load_model(config):
    """Returns (model, params, num_points, checkpoint config) from config.checkpoint.

    Raises:
      ValueError: config.checkpoint is empty, or the checkpoint does not fit the model code.
      FileNotFoundError: no exported checkpoint there.
    """
    from f2p.io.pretrained import load_base_model

    if not config.checkpoint:
        raise ValueError("config.checkpoint: empty; give the folder of an exported model "
                         "(default checkpoints/base)")
    model, params, saved = load_base_model(config.checkpoint)
    data = saved.get("data", {})
    return model, params, int(data.get("num_points", 128)), saved
