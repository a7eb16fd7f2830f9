import pytest

from f2p.io.config import parse_list
from f2p.tasks import OBJECT_COUNTS, SPLITS, task_names


def test_parse_list_splits_strips_and_casts_in_order():
    assert parse_list(" transport ,tabletop,", task_names(), "tasks") == ["transport", "tabletop"]
    assert parse_list("5,3", OBJECT_COUNTS, "object_counts", int) == [5, 3]
    assert parse_list("7", OBJECT_COUNTS, "object_counts", int) == [7]
    assert parse_list(("train", "ood"), SPLITS, "splits") == ["train", "ood"]
    assert parse_list(3, OBJECT_COUNTS, "object_counts", int) == [3]
    assert parse_list("0.5,0.25", (0.25, 0.5), "levels", float) == [0.5, 0.25]


@pytest.mark.parametrize("value, cast, message", [
    ("tabletop,juggling", str, r"config.data.tasks: 'juggling' is not one of tabletop, "),
    ("3,4", int, "config.data.tasks: 4 is not one of 3, 5, 7"),
    ("3,five", int, "config.data.tasks: 'five' is not one of 3, 5, 7"),
    (" , ", str, "config.data.tasks: empty; allowed: "),
    ("", int, "config.data.tasks: empty; allowed: 3, 5, 7"),
    ("3,5,3", int, "config.data.tasks: 3 is listed twice in '3,5,3'"),
])
def test_parse_list_names_the_field_and_the_allowed_values(value, cast, message):
    allowed = OBJECT_COUNTS if cast is int else task_names()
    with pytest.raises(ValueError, match=message):
        parse_list(value, allowed, "data.tasks", cast)


def test_parse_list_compares_after_the_cast():
    # "3" (text) is not the int 3: without a cast an int list accepts nothing.
    with pytest.raises(ValueError, match="'3' is not one of 3, 5, 7"):
        parse_list("3", OBJECT_COUNTS, "object_counts")


def test_as_named_tuple_fills_defaults_and_names_unknown_fields():
    from typing import NamedTuple

    from f2p.io.config import as_named_tuple

    class Settings(NamedTuple):
        population: int = 8
        seed: int = 0

    assert as_named_tuple({"seed": 3}, Settings, "demo") == Settings(8, 3)
    same = Settings(2, 1)
    assert as_named_tuple(same, Settings, "demo") is same
    with pytest.raises(ValueError, match="config.popsize: unknown demo field; allowed: "
                                         "population, seed"):
        as_named_tuple({"popsize": 4}, Settings, "demo")
    with pytest.raises(ValueError, match="expected Settings, ConfigDict or mapping, got int"):
        as_named_tuple(3, Settings, "demo")
