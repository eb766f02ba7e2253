"""SR@t, AT and hDCG (UNICORN Eq. 20) against hand-computed values."""

from __future__ import annotations

import math

import pytest

from crwalker.policies.env import SessionResult
from crwalker.policies.metrics import average_turns, hdcg, hdcg_gain, success_rate_curve, summarize


def _sessions():
    return [
        SessionResult(0, 0, success=True, turn=1, rank=1),
        SessionResult(0, 1, success=True, turn=3, rank=2),
        SessionResult(0, 2, success=False, turn=15, rank=0),
    ]


def test_sr_curve():
    curve = success_rate_curve(_sessions(), 15)
    assert len(curve) == 15
    assert curve[0] == pytest.approx(1 / 3) and curve[1] == pytest.approx(1 / 3)
    assert all(c == pytest.approx(2 / 3) for c in curve[2:])


def test_average_turns_counts_failures_as_T():
    assert average_turns(_sessions(), 15) == pytest.approx((1 + 3 + 15) / 3)
    # a failed session recorded with an earlier turn still counts T
    assert average_turns([SessionResult(0, 0, success=False, turn=4)], 15) == 15


def test_hdcg_gain_hand_values():
    assert hdcg_gain(1, 1) == pytest.approx(1.0)
    # t=3, k=2: 1/log2(5) + (1/log2(4) - 1/log2(5)) / log2(3) = 0.430677 + 0.069323/1.584963
    assert hdcg_gain(3, 2) == pytest.approx(0.474415, abs=1e-6)
    # rank K=10 at turn 1: 1/log2 3 + (1 - 1/log2 3)/log2 11
    assert hdcg_gain(1, 10) == pytest.approx(1 / math.log2(3) + (1 - 1 / math.log2(3)) / math.log2(11))


def test_hdcg_mean_and_summary():
    assert hdcg(_sessions()) == pytest.approx((1 + 0.474415) / 3, abs=1e-6)
    s = summarize(_sessions())
    assert s["SR@15"] == pytest.approx(2 / 3) and s["AT"] == pytest.approx(19 / 3)
    assert s["n_sessions"] == 3 and len(s["SR_curve"]) == 15


def test_empty():
    assert summarize([])["SR@15"] == 0.0 and hdcg([]) == 0.0
