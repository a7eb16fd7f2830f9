"""Tests of the dynamics' relation inputs and of extending a trained model with them."""

import jax
import ml_collections
import numpy as np
import pytest
from flax import traverse_util
from test_model import K, P, perturb, random_scene

from f2p import train
from f2p.io import pretrained
from f2p.models import SkillEffectModel, get_config
from f2p.models import model as model_lib
from f2p.models.dynamics import CARRY_GAIN, held_probability
from f2p.scene import FIXTURE, PICK_PLACE, PUSH, REL, Skill, Transition


@pytest.fixture(scope="module")
def trained():
    """A tiny model with randomised weights, a batch of two scenes and their skills."""
    model = SkillEffectModel(get_config("tiny").model)
    params = perturb(model.init(jax.random.PRNGKey(0), K, P), 1)
    rng = np.random.default_rng(0)
    points, mask, kind, half = (np.stack(x) for x in zip(*[random_scene(rng, n)
                                                           for n in (4, 5)], strict=True))
    skill = Skill(np.array([PICK_PLACE, PUSH]), np.array([1, 2]), np.array([3, -1]),
                  np.array([[0.05, -0.02], [0.1, 0.03]], np.float32))
    return model, params, (points, mask, kind, half), skill


def test_extension_adds_zero_weights_and_keeps_every_output(trained):
    model, params, (points, mask, kind, half), skill = trained
    extended, extended_params = pretrained.with_relation_features(model, params, P)
    assert extended.config.relation_features and not model.config.relation_features
    old = traverse_util.flatten_dict(params, sep="/")
    new = traverse_util.flatten_dict(extended_params, sep="/")
    added = sorted(set(new) - set(old))
    assert added == [f"params/dynamics_{skill}/pair_features/{leaf}"
                     for skill in ("pick_place", "push") for leaf in ("bias", "kernel")]
    assert all(not np.any(np.asarray(new[key])) for key in added)
    before = model.apply(params, points, mask, kind, skill, half)
    after = extended.apply(extended_params, points, mask, kind, skill, half)
    for field in before._fields:
        # Equal up to float rounding: the extended model compiles to a different program.
        np.testing.assert_allclose(getattr(before, field), getattr(after, field), atol=1e-5)
    with pytest.raises(ValueError, match="params do not fit"):
        pretrained.with_relation_features(model, {"params": {"unknown": np.zeros(2)}}, P)


def test_action_relations_read_the_moved_object_and_support(trained):
    model, params, (points, mask, kind, half), skill = trained
    extended, extended_params = pretrained.with_relation_features(model, params, P)
    net = extended.net
    latents = net.apply(extended_params, points, mask, kind, half, method=net.encode)
    logits = np.asarray(net.apply(extended_params, latents, mask, method=net.decode_relations))
    features = np.asarray(net.apply(extended_params, latents, mask, skill.obj, skill.support,
                                    method=net.action_relations))
    relations = logits.shape[-1]
    assert features.shape == (2, K, 4 * relations)
    probability = 1 / (1 + np.exp(-logits))
    # Row 0 picks slot 1 onto slot 3: "i r 1", "1 r i", "i r 3", "3 r i" for every slot i.
    for block, expected in enumerate((probability[0, :, 1], probability[0, 1, :],
                                      probability[0, :, 3], probability[0, 3, :])):
        got = features[0, :, block * relations:(block + 1) * relations]
        np.testing.assert_allclose(got[mask[0]], expected[mask[0]], atol=1e-6)
    assert not np.any(features[1, :, 2 * relations:])  # a push has no support
    assert not np.any(features[~mask])  # padded slots read nothing
    assert 0 < REL["inside"] < relations


def _finetuned(trained, config, extended_params):
    """The TrainState after 3 fine-tune steps on random transitions of the trained fixture."""
    _, _, (points, mask, kind, half), skill = trained
    state = train.create_train_state(config, K, P).replace(params=extended_params)
    rng = np.random.default_rng(3)
    relations = rng.random((2, K, K, 9)) < 0.3
    pos = rng.uniform(0, 0.5, (2, K, 3)).astype(np.float32)
    data = Transition(points_t=points, mask=mask, kind=kind, half_extents=half,
                      skill=skill.skill, obj=skill.obj, support=skill.support,
                      params=skill.params, relations_t=relations, relations_t1=relations,
                      pos_t=pos, pos_t1=pos + 0.05, yaw_t=np.zeros((2, K), np.float32),
                      yaw_t1=np.zeros((2, K), np.float32))
    return train.finetune(state, data, steps=3)


def test_finetuning_learns_the_added_weights(trained):
    model, params, _, _ = trained
    config = ml_collections.ConfigDict(get_config("tiny").to_dict())
    config.model.relation_features = True
    tuned = _finetuned(trained, config, pretrained.with_relation_features(model, params, P)[1])
    kernel = tuned.params["params"]["dynamics_pick_place"]["pair_features"]["kernel"]
    assert np.any(np.asarray(kernel) != 0)


def test_checkpoints_without_the_key_load_with_it_off(tmp_path):
    config = get_config("tiny")
    del config.model["relation_features"]
    model = SkillEffectModel(get_config("tiny").model)
    params = model.init(jax.random.PRNGKey(0), K, P)
    pretrained.export_params(str(tmp_path), params, config)
    loaded, _, saved = pretrained.load_base_model(str(tmp_path))
    assert loaded.config.relation_features is False
    assert saved.model.relation_features is False


def test_carry_gate_extension_starts_at_zero_and_carries_by_relation(trained):
    model, params, (points, mask, kind, half), skill = trained
    extended, extended_params = pretrained.with_relation_features(model, params, P,
                                                                  carry_gate=True)
    assert extended.config.carry_gate
    new = traverse_util.flatten_dict(extended_params, sep="/")
    carry = [key for key in new if "/carry/" in key]
    assert sorted(carry) == [f"params/dynamics_{skill}/carry/{leaf}"
                             for skill in ("pick_place", "push") for leaf in ("bias", "kernel")]
    assert all(not np.any(np.asarray(new[key])) for key in carry)
    before = model.apply(params, points, mask, kind, skill, half)
    after = extended.apply(extended_params, points, mask, kind, skill, half)
    np.testing.assert_allclose(before.displacement, after.displacement, atol=1e-5)
    # Share = p(i inside moved): the first feature block is "i r moved", column REL["inside"].
    for name in ("pick_place", "push"):
        kernel = np.zeros_like(new[f"params/dynamics_{name}/carry/kernel"])
        kernel[REL["inside"], 0] = 1.0 / CARRY_GAIN
        new[f"params/dynamics_{name}/carry/kernel"] = kernel
    gated = extended.apply(traverse_util.unflatten_dict(new, sep="/"), points, mask, kind,
                           skill, half)
    net = extended.net
    latents = net.apply(extended_params, points, mask, kind, half, method=net.encode)
    share = np.asarray(net.apply(extended_params, latents, mask, skill.obj, skill.support,
                                 method=net.action_relations))[..., REL["inside"]]
    movable = mask & (kind != FIXTURE)
    for row in range(2):
        moved = int(skill.obj[row])
        expected = np.asarray(after.displacement[row]) + (
            share[row, :, None] * np.asarray(after.displacement[row, moved]))
        expected[moved] = after.displacement[row, moved]
        expected[~movable[row]] = 0.0
        np.testing.assert_allclose(gated.displacement[row], expected, atol=1e-5)
    # The next latents move towards the encoding of the moved points by the clipped share.
    gated_params = traverse_util.unflatten_dict(new, sep="/")
    own, _ = net.apply(gated_params, latents, mask, kind, *skill, method=net.predict)
    moved = net.apply(gated_params, model_lib.move_points(points, gated.displacement, mask),
                      mask, kind, half, method=net.encode)
    weight = np.clip(np.where(movable, share, 0.0), 0, 1)[..., None]
    for row in range(2):
        weight[row, int(skill.obj[row])] = 0.0
    np.testing.assert_allclose(gated.next_latents, own + weight * (moved - own), atol=1e-5)
    assert np.any((weight > 0.05) & (weight < 0.95))  # the blend, not an all-or-nothing case


def test_carry_gate_needs_relation_features_and_is_learnt(trained):
    model, params, _, _ = trained
    config = ml_collections.ConfigDict(get_config("tiny").to_dict())
    config.model.carry_gate = True
    with pytest.raises(ValueError, match="model.carry_gate.*relation_features"):
        SkillEffectModel(config.model)
    config.model.relation_features = True
    extended_params = pretrained.with_relation_features(model, params, P, carry_gate=True)[1]
    tuned = _finetuned(trained, config, extended_params)
    kernel = tuned.params["params"]["dynamics_pick_place"]["carry"]["kernel"]
    assert np.any(np.asarray(kernel) != 0)


def test_held_probability_is_inside_or_lying_on_the_moved_object():
    num = len(REL)
    features = np.zeros((1, 4, 4 * num), np.float32)
    features[0, 0, REL["inside"]] = 0.9  # inside the moved object
    features[0, 1, REL["above"]], features[0, 1, REL["contact"]] = 0.8, 0.5  # lying on it
    features[0, 2, REL["contact"]] = 1.0  # touching it from the side
    features[0, 3, num + REL["inside"]] = 1.0  # the moved object is inside this one
    held = np.asarray(held_probability(features))
    np.testing.assert_allclose(held, [[0.9, 0.4, 0.0, 0.0]], atol=1e-6)


def test_held_only_gate_carries_only_what_the_moved_object_holds(trained):
    model, params, (points, mask, kind, half), skill = trained
    with pytest.raises(ValueError, match="model.carry_held_only.*carry_gate"):
        SkillEffectModel(ml_collections.FrozenConfigDict(
            {**get_config("tiny").model.to_dict(), "relation_features": True,
             "carry_held_only": True}))
    extended, extended_params = pretrained.with_relation_features(
        model, params, P, carry_gate=True, carry_held_only=True)
    assert extended.config.carry_held_only
    new = traverse_util.flatten_dict(extended_params, sep="/")
    fractions = [f"params/dynamics_{name}/carry_fraction" for name in ("pick_place", "push")]
    assert sorted(key for key in new if "carry" in key) == fractions  # no relation kernel
    assert all(not np.any(np.asarray(new[key])) for key in fractions)
    for key in fractions:
        new[key] = np.full((1,), 0.5 / CARRY_GAIN, np.float32)  # half the moved displacement
    gated_params = traverse_util.unflatten_dict(new, sep="/")
    net = extended.net
    latents = net.apply(extended_params, points, mask, kind, half, method=net.encode)
    features = np.asarray(net.apply(extended_params, latents, mask, skill.obj, skill.support,
                                    method=net.action_relations))
    _, displacement, share = net.apply(gated_params, latents, mask, kind, *skill,
                                       method=net._predict)
    movable = mask & (kind != FIXTURE)
    expected = np.where(movable, 0.5 * np.asarray(held_probability(features)), 0.0)
    for row in range(2):
        expected[row, int(skill.obj[row])] = 0.0
    np.testing.assert_allclose(np.asarray(share)[..., 0], expected, atol=1e-5)
    assert np.any(expected > 1e-3) and np.any(movable & (expected < 0.1))  # held and not held


def test_finetune_state_names_the_option_a_gate_needs(trained):
    from isaac_bridge import loop

    model, params, _, _ = trained
    saved = get_config("tiny")
    with pytest.raises(ValueError, match="config.carry_gate: True needs config.relation_features"):
        loop.finetune_state(model, params, saved, P, False, None, carry_gate=True)
    with pytest.raises(ValueError, match="config.carry_held_only: True needs config.carry_gate"):
        loop.finetune_state(model, params, saved, P, True, None, carry_held_only=True)
    held = loop.finetune_state(model, params, saved, P, True, 1e-3, True, True)
    assert held[0].config.carry_held_only and held[2].model.carry_held_only
    assert held[2].finetune.learning_rate == 1e-3 and not saved.model.carry_gate
