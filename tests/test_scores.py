import pytest

from f2p.io import scores


def test_cell_formats_a_rate_with_its_interval_and_trials():
    rate = scores.rate(6, 10)
    assert rate["rate"] == pytest.approx(0.6)
    assert scores.cell(rate) == f"0.60 [{rate['low']:.2f}, {rate['high']:.2f}] (10)"
    assert scores.cell(scores.rate(0, 0)) == "-"


def test_mean_and_median_skip_undefined_values():
    assert scores.mean([1.0, None, float("nan"), 3.0]) == pytest.approx(2.0)
    assert scores.median([None, 5.0]) == pytest.approx(5.0)
    assert scores.mean([None]) != scores.mean([None])  # NaN: nothing defined


def test_summarise_takes_a_random_repair_whose_diversity_is_null():
    repair = {"generation_seconds": 0.5, "labelling_seconds": 8.0, "finetune_seconds": 30.0,
              "compile_seconds": 0.0, "labels": 400, "dropped": 0, "reproduction": 0.0,
              "diversity": None, "attempts": 0, "accepted": 0}  # as read back from JSON
    unit = {"task": "tabletop", "method": "repair:random", "failure": "f0", "recovery": True,
            "retry": False, "repaired": True, "same_failure": True, "repair": repair,
            "future": [{"episode": "e0", "success": True, "detected": False}],
            "retention": [], "recoveries": [{"action": "replace", "classify_seconds": 0.1,
                                             "plan_seconds": 0.2}]}
    (row,) = scores.summarise([unit, {**unit, "failure": "f1", "recovery": False}])
    assert row["failures"] == 2 and row["recovery"]["successes"] == 1
    assert row["diversity"] != row["diversity"] and row["labels"] == 400
    assert row["total_seconds"] == pytest.approx(0.1 + 0.5 + 8.0 + 30.0 + 0.2)
