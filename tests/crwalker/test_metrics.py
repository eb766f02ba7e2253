import numpy as np
import pytest

from crwalker.metrics import coverage, hop_precision_recall, intent_accuracy, rank_candidates, recall_at_k


def test_rank_candidates_ties_by_id_and_exclusion():
    ids = np.array([7, 3, 5, 9])
    scores = np.array([0.5, 0.9, 0.5, 0.1])
    assert rank_candidates(scores, ids).tolist() == [3, 5, 7, 9]  # 5 before 7: tie broken by smaller id
    assert rank_candidates(scores, ids, exclude=[3]).tolist() == [5, 7, 9]
    assert rank_candidates(scores, ids, top_k=2).tolist() == [3, 5]
    with pytest.raises(ValueError):
        rank_candidates(scores, ids[:2])


def test_recall_at_k_counts_turn_item_pairs():
    ranked = [[1, 2, 3], [4, 5, 6]]
    gold = [{2, 9}, {4}]
    # pairs: (t1,2) hit@2, (t1,9) miss, (t2,4) hit@1
    assert recall_at_k(ranked, gold, 1) == pytest.approx(1 / 3)
    assert recall_at_k(ranked, gold, 2) == pytest.approx(2 / 3)
    assert recall_at_k([], [], 10) == 0.0


def test_coverage_and_intent_accuracy():
    assert coverage([1, 1, 2, 5], 10) == pytest.approx(0.3)
    assert intent_accuracy(["chat", "query", "recommend"], ["chat", "chat", "recommend"]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        coverage([1], 0)


def test_hop_precision_recall_micro():
    p, r = hop_precision_recall([{1, 2}, {3}, set()], [{1}, {3, 4}, {5}])
    # overlaps 1 + 1 = 2; predicted 3; gold 4
    assert p == pytest.approx(2 / 3)
    assert r == pytest.approx(2 / 4)
    assert hop_precision_recall([set()], [set()]) == (0.0, 0.0)
