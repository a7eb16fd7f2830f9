"""Fail2Progress: classify a failure by Real2Sim replay, generate, label, fine-tune, replan."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from f2p import objectives
from f2p.agent import goal_triples
from f2p.io.failures import Failure
from f2p.objectives import FailureScene, ObjectiveConfig
from f2p.scene import FIXTURE, Scene, Skill, stack_rows
from f2p.tasks import get_task
from f2p.world import USABLE_STATUSES, Simulator

CLASSES = ("wrong_prediction", "sim2real")
"""Real2Sim classes of a detected failure: repair the model, or record a Sim2Real gap."""

class Classification(NamedTuple):
    """The Real2Sim replay of a failure on the goal triples.

    Attributes:
      label: one of CLASSES.
      simulated: [G] bool goal triples after the skill replayed in the nominal simulator.
      observed: [G] bool the same triples as read from the observation after the step.
      mismatch: [G] bool the triples whose observation contradicted the prediction (the
        detection), on which the replay is judged.
      status: the simulator's status name of the replay.
    """

    label: str
    simulated: np.ndarray
    observed: np.ndarray
    mismatch: np.ndarray
    status: str


def check_failure(failure: Failure) -> Failure:
    """Returns the failure, or raises ValueError naming what a repair cannot do without."""
    for field in ("observation_before", "observation_after", "belief_before", "skill"):
        if getattr(failure, field) is None:
            raise ValueError(f"failure.{field}: missing; a repair needs the failure's pre-step "
                             f"observation, belief and skill (record failures with "
                             f"f2p.episode.run_episode)")
    try:
        goal_triples(failure.goal, failure.belief_before.mask)
    except ValueError as error:
        raise ValueError(f"failure.goal: names slots the believed scene lacks: {error}") from error
    return failure


def _replay(simulator: Simulator, scene: Scene, skill: Skill, seed: int):
    outcome = simulator.execute(stack_rows([scene]), stack_rows([skill]), seed=seed)
    return outcome, int(np.asarray(outcome.status)[0])


def classify(failure: Failure, simulator: Simulator, seed: int = 0) -> Classification:
    """Replays the failed skill from the believed pre-step scene in the nominal simulator.

    The replay reproduces what was observed on every goal triple that contradicted the
    prediction: the model's prediction was wrong (`wrong_prediction`, repair). It does not, or
    the simulator flags the replay: the world differs from the simulator (`sim2real`, recorded,
    not repaired). Triples on which prediction and observation agree are not judged: there the
    replay can only disagree with a reading the model shares (the relation head misreading a
    contact, say), which says nothing about a gap between world and simulator.
    """
    check_failure(failure)
    relation, first, second = goal_triples(failure.goal, failure.belief_before.mask)
    outcome, status = _replay(simulator, failure.belief_before, failure.skill, seed)
    simulated = np.asarray(outcome.relations_post)[0][first, second, relation]
    threshold = failure.detection_threshold
    observed = np.asarray(failure.observed_relations)[first, second, relation] > threshold
    predicted = np.asarray(failure.predicted_relations)[first, second, relation] > threshold
    mismatch = observed != predicted
    # No contradicted triple means nothing was detected: nothing the replay could reproduce.
    same = status in USABLE_STATUSES and bool(mismatch.any()) \
        and bool(np.all(simulated[mismatch] == observed[mismatch]))
    return Classification(CLASSES[0] if same else CLASSES[1], simulated, observed, mismatch,
                          outcome.status_names[status])


def true_class(failure: Failure, simulator: Simulator, seed: int = 0) -> str:
    """Scoring only (DESIGN section 5): the ground truth that classify is judged against.

    `wrong_prediction` when the nominal simulator run from the world's true pre-step state
    reproduces the true post-step relations on the goal triples and those differ from the
    plan's prediction; `sim2real` otherwise.
    """
    truth = failure.truth
    relation, first, second = goal_triples(failure.goal, truth.scene_before.mask)
    outcome, status = _replay(simulator, truth.scene_before, failure.skill, seed)
    simulated = np.asarray(outcome.relations_post)[0][first, second, relation]
    true_after = np.asarray(truth.relations_after)[first, second, relation]
    predicted = np.asarray(failure.predicted_relations)[first, second, relation] \
        > failure.detection_threshold
    reproduced = status in USABLE_STATUSES and bool(np.all(simulated == true_after))
    return CLASSES[0] if reproduced and bool(np.any(true_after != predicted)) else CLASSES[1]


def failure_scene(failure: Failure, target_relations, cameras, objective: ObjectiveConfig
                  ) -> FailureScene:
    """The densities' data from a failure: believed scene, R^F, O^F, a^F and its bounds.

    Args:
      failure: the Failure (checked with check_failure).
      target_relations: [K, K, R] probabilities of R^F (the relation head on O^F).
      cameras: [C, 3] camera positions of the rendering Psi(S).
      objective: the ObjectiveConfig (its relation_term chooses the scored entries).
    """
    check_failure(failure)
    scene = Scene(*(np.asarray(field) for field in failure.belief_before))
    movable = np.asarray(scene.mask, bool) & (np.asarray(scene.kind) != FIXTURE)
    observation = failure.observation_before
    seen = (np.asarray(observation.mask, bool) if observation.num_visible is None
            else np.asarray(observation.num_visible) > 0)
    low, high = objectives.skill_bounds(failure.skill, scene,
                                        get_task(failure.task).skeletons(scene))
    as_jax = lambda tree: jax.tree.map(jnp.asarray, tree)  # noqa: E731
    return FailureScene(
        scene=as_jax(scene._replace(pos=scene.pos.astype(np.float32),
                                    yaw=scene.yaw.astype(np.float32),
                                    half_extents=scene.half_extents.astype(np.float32))),
        movable=jnp.asarray(movable), parent=jnp.asarray(objectives.find_parents(scene)),
        target=jnp.asarray(np.asarray(target_relations) > 0.5, jnp.float32),
        weight=jnp.asarray(objectives.relation_weight(scene, movable, objective.relation_term)),
        observed_points=jnp.asarray(observation.points, jnp.float32),
        observed_mask=jnp.asarray(seen & np.asarray(scene.mask, bool)),
        cameras=jnp.asarray(cameras, jnp.float32), skill=as_jax(failure.skill),
        low=jnp.asarray(low), high=jnp.asarray(high))
