import pytest

from f2p.io import scores


def test_cell_formats_a_rate_with_its_interval_and_trials():
    rate = scores.rate(6, 10)
    assert rate["rate"] == pytest.approx(0.6)
    assert scores.cell(rate) == f"0.60 [{rate['low']:.2f}, {rate['high']:.2f}] (10)"
    assert scores.cell(scores.rate(0, 0)) == "-"
