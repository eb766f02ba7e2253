"""MCR evaluation metrics (UNICORN §5.2.3): SR@t, AT and hDCG@(T, K) (Eq. 20).

A session is summarised by ``(success, turn, rank)``: ``turn`` in 1..T is the turn of the successful
recommendation (failures have ``turn = T``) and ``rank`` in 1..K the 1-based position of the target in
the accepted list.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from crwalker.policies.env import SessionResult


def success_rate_curve(results: Sequence[SessionResult], max_turn: int = 15) -> list[float]:
    """``SR@t`` for ``t = 1..max_turn``: fraction of sessions that succeeded at a turn ``<= t``."""
    n = len(results)
    if n == 0:
        return [0.0] * max_turn
    turns = np.array([r.turn for r in results if r.success], dtype=np.int64)
    return [float((turns <= t).sum() / n) for t in range(1, max_turn + 1)]


def average_turns(results: Sequence[SessionResult], max_turn: int = 15) -> float:
    """AT: mean number of turns; a failed session counts ``max_turn``."""
    if not results:
        return 0.0
    return float(np.mean([r.turn if r.success else max_turn for r in results]))


def hdcg_gain(turn: int, rank: int) -> float:
    """Eq. 20 gain of a success at turn ``t`` (1-based) with the target at rank ``k`` (1-based).

    ``1/log2(t+2) + (1/log2(t+1) - 1/log2(t+2)) / log2(k+1)``: turn-level DCG interpolated by the
    rank inside the list, so a hit at (t=1, k=1) scores 1.
    """
    a, b = 1.0 / math.log2(turn + 2), 1.0 / math.log2(turn + 1)
    return a + (b - a) / math.log2(rank + 1)


def hdcg(results: Sequence[SessionResult], max_turn: int = 15, topk: int = 10) -> float:
    """hDCG@(T, K): mean Eq. 20 gain over sessions (0 for failures and hits beyond T or K)."""
    if not results:
        return 0.0
    total = sum(hdcg_gain(r.turn, r.rank) for r in results if r.success and r.turn <= max_turn and 1 <= r.rank <= topk)
    return float(total / len(results))


def summarize(results: Sequence[SessionResult], max_turn: int = 15, topk: int = 10) -> dict:
    """``{"SR@15", "AT", "hDCG", "SR_curve", "n_sessions"}`` (keys as in ``results/mcr.json``)."""
    curve = success_rate_curve(results, max_turn)
    return {
        f"SR@{max_turn}": curve[-1],
        "AT": average_turns(results, max_turn),
        "hDCG": hdcg(results, max_turn, topk),
        "SR_curve": curve,
        "n_sessions": len(results),
    }
