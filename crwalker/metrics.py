"""Recommendation and reasoning metrics (named, each unit-tested against hand-computed values).

Definitions (all return fractions in ``[0, 1]``; reports multiply by 100):

* :func:`rank_candidates` - the ranking every metric uses: higher score first, ties broken by the
  smaller entity id, optionally excluding given ids (e.g. movies already mentioned).
* :func:`recall_at_k` - Recall@k as in KBRD/KGSF/CR-Walker on ReDial: every (turn, gold movie) pair
  is one sample; it is a hit when the gold movie is in the turn's top-k list.
* :func:`coverage` - share of candidate movies that are the top-1 prediction of at least one
  scored turn (diversity of recommendations over the test set).
* :func:`intent_accuracy` - share of turns whose predicted intent equals the gold intent.
* :func:`hop_precision_recall` - micro-averaged precision/recall of predicted hop-1 entities
  against gold hop-1 entities (sums of overlaps over sums of set sizes).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def rank_candidates(
    scores: np.ndarray, candidate_ids: np.ndarray, exclude: Iterable[int] = (), top_k: int | None = None
) -> np.ndarray:
    """Candidate ids sorted by descending score, ties broken by ascending id.

    Args:
        scores: ``[C]`` scores aligned with ``candidate_ids``.
        candidate_ids: ``[C]`` entity ids.
        exclude: ids removed from the ranking.
        top_k: keep only the first ``top_k`` ids (all when ``None``).

    Returns:
        int64 array of ranked entity ids.
    """
    scores = np.asarray(scores, dtype=np.float64)
    ids = np.asarray(candidate_ids, dtype=np.int64)
    if scores.shape != ids.shape:
        raise ValueError(f"scores {scores.shape} and candidate_ids {ids.shape} must have the same shape")
    excl = np.fromiter(exclude, dtype=np.int64) if not isinstance(exclude, np.ndarray) else exclude
    if excl.size:
        keep = ~np.isin(ids, excl)
        scores, ids = scores[keep], ids[keep]
    order = np.lexsort((ids, -scores))  # last key is primary: -score, then id
    ranked = ids[order]
    return ranked if top_k is None else ranked[:top_k]


def recall_at_k(ranked_lists: Sequence[Sequence[int]], gold_sets: Sequence[Iterable[int]], k: int) -> float:
    """Recall@k over (turn, gold item) pairs.

    Args:
        ranked_lists: per turn, item ids best first (at least ``k`` long when available).
        gold_sets: per turn, the gold items.
        k: cut-off.

    Returns:
        hits / number of (turn, gold item) pairs; 0.0 when there are no pairs.
    """
    if len(ranked_lists) != len(gold_sets):
        raise ValueError("ranked_lists and gold_sets must have the same length")
    hits = total = 0
    for ranked, gold in zip(ranked_lists, gold_sets, strict=True):
        top = set(list(ranked)[:k])
        for g in gold:
            total += 1
            hits += int(g in top)
    return hits / total if total else 0.0


def coverage(top1: Iterable[int], num_candidates: int) -> float:
    """Distinct top-1 items over the number of candidate items."""
    if num_candidates <= 0:
        raise ValueError("num_candidates must be positive")
    return len(set(top1)) / num_candidates


def intent_accuracy(pred: Sequence[str], gold: Sequence[str]) -> float:
    """Share of exactly matching intents (0.0 for no turns)."""
    if len(pred) != len(gold):
        raise ValueError("pred and gold must have the same length")
    return sum(p == g for p, g in zip(pred, gold, strict=True)) / len(gold) if gold else 0.0


def hop_precision_recall(pred_sets: Sequence[Iterable[int]], gold_sets: Sequence[Iterable[int]]) -> tuple[float, float]:
    """Micro precision and recall of predicted vs. gold entity sets (e.g. hop-1 nodes).

    Returns:
        ``(precision, recall)``; a ratio with an empty denominator is 0.0.
    """
    if len(pred_sets) != len(gold_sets):
        raise ValueError("pred_sets and gold_sets must have the same length")
    inter = n_pred = n_gold = 0
    for p, g in zip(pred_sets, gold_sets, strict=True):
        p, g = set(p), set(g)
        inter += len(p & g)
        n_pred += len(p)
        n_gold += len(g)
    return (inter / n_pred if n_pred else 0.0), (inter / n_gold if n_gold else 0.0)
