import jax
import numpy as np
import pytest

from f2p.agent import choose_plan
from f2p.planner import Plan
from f2p.scene import Skill


def plans(probabilities):
    scores = np.log(np.asarray(probabilities, np.float64))
    skills = Skill(np.zeros(1, np.int32), np.zeros(1, np.int32), np.zeros(1, np.int32),
                   np.zeros((1, 2), np.float32))
    return [Plan(i, skills, float(s), np.zeros((1, 2, 2, 9)), scores)
            for i, s in enumerate(scores)]


def test_a_confident_best_plan_is_executed():
    key = jax.random.PRNGKey(0)
    assert choose_plan(key, plans([0.2, 0.9, 0.1]), 0.5).skeleton_index == 1
    assert not choose_plan(key, plans([0.2, 0.9, 0.1]), 0.5).explored
    # Threshold 0 never explores, however low the best plan's goal probability.
    low = plans([1e-9, 1e-8, 1e-12])
    assert choose_plan(key, low, 0.0).skeleton_index == 1
    # A single skeleton has nothing else to explore.
    assert choose_plan(key, plans([1e-9]), 0.5).skeleton_index == 0


def test_a_hopeless_best_plan_is_swapped_for_another_skeleton_drawn_by_the_key():
    candidates = plans([1e-4, 1e-3, 1e-6])
    chosen = [choose_plan(jax.random.PRNGKey(seed), candidates, 0.01) for seed in range(40)]
    assert all(c.explored for c in chosen)
    drawn = [c.skeleton_index for c in chosen]
    assert set(drawn) == {0, 2}, "the best skeleton (1) is never drawn, both others are"
    again = [choose_plan(jax.random.PRNGKey(seed), candidates, 0.01).skeleton_index
             for seed in range(40)]
    assert again == drawn
    assert chosen[0].score == candidates[drawn[0]].score


@pytest.mark.parametrize("threshold", [-0.1, 1.0])
def test_a_bad_threshold_is_refused(threshold):
    with pytest.raises(ValueError, match="explore_below"):
        choose_plan(jax.random.PRNGKey(0), plans([0.5]), threshold)


def test_no_plans_is_refused():
    with pytest.raises(ValueError, match="plans"):
        choose_plan(jax.random.PRNGKey(0), [], 0.5)
