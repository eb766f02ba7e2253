import pytest

from crwalker.generation.tune_decoding import choose


def _p(t, sacre):
    return {"temperature": t, "sacreBLEU": sacre, "Dist-3": 0.0}


def test_choose_keeps_the_largest_temperature_within_the_sacrebleu_budget():
    pts = [_p(1.0, 21.61), _p(1.1, 21.63), _p(1.2, 19.22), _p(1.3, 15.0)]
    assert choose(pts, 0.5)["temperature"] == 1.1
    assert choose(pts, 2.5)["temperature"] == 1.2
    assert choose([_p(1.0, 20.0), _p(1.1, 19.0)], 0.5)["temperature"] == 1.0  # nothing better: stay at 1
    with pytest.raises(ValueError, match="1.0"):
        choose([_p(1.1, 20.0)], 0.5)
