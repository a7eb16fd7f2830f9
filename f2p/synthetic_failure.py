"""A synthetic transport failure (a loaded bag carried to table B) for tests and benchmarks."""

from __future__ import annotations

import numpy as np

from f2p import fail2progress, tasks
from f2p.geometry import render_points
from f2p.io.failures import Failure
from f2p.objectives import FailureScene, ObjectiveConfig
from f2p.relations import hard_relations
from f2p.scene import K_MAX, PICK_PLACE, Skill, stack_rows
from f2p.world import Observation, WorldSnapshot

CAMERAS = np.array([[-1.0, 0.0, 1.0], [-0.5, 0.0, 1.5]], np.float32)
"""Camera positions that the observation and the densities' rendering face."""
BAG, TABLE_B = 1, 0
"""Slots of the transport scene: the bag that is carried, and the table it goes to."""


def make_failure(seed: int, num_points: int, num_objects: int = 3,
                 cameras: np.ndarray = CAMERAS) -> Failure:
    """A transport failure record: a loaded bag carried to table B, points rendered exactly.

    No simulator runs: the scene is the task's out-of-distribution sample for `seed`, the
    observation its exact rendering with `num_points` points per object (the model's count),
    and the predicted and observed relations are zeros (unused by generation).
    """
    task = tasks.get_task("transport")
    scene = task.sample_scene(np.random.default_rng(seed), num_objects, "ood")
    observation = Observation(np.asarray(render_points(scene, num_points, cameras)), scene.mask,
                              None, scene.kind, scene.half_extents)
    skill = Skill(np.int32(PICK_PLACE), np.int32(BAG), np.int32(TABLE_B),
                  np.array([0.0, -0.2], np.float32))
    relations = np.zeros((K_MAX, K_MAX, 9), np.float32)
    return Failure(task="transport", goal=task.goal(scene), detection_threshold=0.5, step=0,
                   plan=stack_rows([skill]), skill=skill, predicted_relations=relations,
                   observed_relations=relations, observation_before=observation,
                   observation_after=observation, belief_before=scene,
                   snapshot_before=WorldSnapshot({}, {}), seeds={}, metadata={}, truth=None)


def failure_data(failure: Failure, objective: ObjectiveConfig,
                 cameras: np.ndarray = CAMERAS) -> FailureScene:
    """The densities' FailureScene, R^F from the geometric rules on the believed scene."""
    target = hard_relations(failure.belief_before, np.zeros((K_MAX, K_MAX), bool))
    return fail2progress.failure_scene(failure, np.asarray(target, np.float32), cameras,
                                       objective)
