import ml_collections
import pytest

from f2p.io.sweep import apply_point, parse_spec, parse_sweep, point_fields, point_name


def make_config():
    config = ml_collections.ConfigDict()
    config.generation = ml_collections.ConfigDict({"num_states": 20, "num_actions": 20})
    config.objective = ml_collections.ConfigDict({"entropy_weight": 1.0, "relation_term": "model"})
    config.finetune = ml_collections.ConfigDict({"steps": 200})
    config.oracle = True
    return config


def test_one_field_values_take_the_fields_type():
    config = make_config()
    assert parse_spec("generation.num_states=5, 10,20", config) == [
        (("generation.num_states", 5),), (("generation.num_states", 10),),
        (("generation.num_states", 20),)]
    points = parse_spec("objective.entropy_weight=0,0.5", config)
    assert [type(value) for (_, value), in points] == [float, float]
    assert parse_spec("oracle=false,true", config) == [(("oracle", False),), (("oracle", True),)]


def test_zipped_fields_and_grids():
    config = make_config()
    zipped = parse_spec("generation.num_states=5,10;generation.num_actions=4,10", config)
    assert zipped == [(("generation.num_states", 5), ("generation.num_actions", 4)),
                      (("generation.num_states", 10), ("generation.num_actions", 10))]
    grid = parse_sweep(["generation.num_states=5,10", "finetune.steps=100,200,400"], config)
    assert len(grid) == 6
    assert grid[1] == (("generation.num_states", 5), ("finetune.steps", 200))
    assert point_fields(grid) == ["generation.num_states", "finetune.steps"]
    assert point_name(grid[1]) == "generation.num_states=5,finetune.steps=200"


def test_apply_point_copies_the_config():
    config = make_config()
    point = (("generation.num_states", 5), ("objective.relation_term", "geometric"))
    updated = apply_point(config, point)
    assert updated.generation.num_states == 5 and updated.objective.relation_term == "geometric"
    assert config.generation.num_states == 20 and config.objective.relation_term == "model"


@pytest.mark.parametrize("specs, message", [
    (["generation.nope=1,2"], "unknown field 'generation.nope'"),
    (["nope.steps=1"], "unknown field 'nope.steps'"),
    (["generation=1,2"], "is a section"),
    (["generation.num_states="], "generation.num_states: empty value list"),
    (["generation.num_states=5,ten"], "generation.num_states='ten' is not a valid int"),
    (["objective.entropy_weight=high"], "objective.entropy_weight='high' is not a valid float"),
    (["oracle=maybe"], "oracle='maybe' is not a valid bool"),
    (["generation.num_states=5,5"], "listed twice"),
    (["generation.num_states"], "not of the form field=v1,v2"),
    (["generation.num_states=5;generation.num_actions=4,5"], "equal lengths"),
    (["finetune.steps=1", "finetune.steps=2"], "appears in two specifications"),
    ([], "no specification"),
])
def test_bad_specifications_name_the_field(specs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        parse_sweep(specs, make_config())
