"""Batched inference and the recommendation metrics of one set of predictions (shared by train/evaluate)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence

import numpy as np
import torch

from crwalker.candidates import INTENT_NAMES, CandidateSets
from crwalker.data import Example, collate
from crwalker.metrics import coverage, hop_precision_recall, intent_accuracy, rank_candidates, recall_at_k
from crwalker.walker import CRWalker, TurnPrediction

KS = (1, 10, 50)


@contextlib.contextmanager
def config_override(model: CRWalker, **fields):
    """Temporarily replace ``fields`` of ``model.cfg`` (e.g. ``variant``, fusion weights)."""
    old = model.cfg
    model.cfg = dataclasses.replace(old, **fields)
    try:
        yield model
    finally:
        model.cfg = old


def variant_override(model: CRWalker, variant: str | None):
    """Temporarily run ``model`` as another variant (inference-time ablation)."""
    return config_override(model, **({} if variant is None else {"variant": variant}))


@torch.inference_mode()
def predict_examples(
    model: CRWalker,
    examples: Sequence[Example],
    feats: torch.Tensor,
    cands: CandidateSets,
    device: torch.device,
    width: int | None = None,
    threshold: float | None = None,
    batch_size: int = 64,
    variant: str | None = None,
    overrides: dict | None = None,
    gold_intent: bool = False,
) -> list[TurnPrediction]:
    """:meth:`CRWalker.predict` over ``examples`` in batches (model in eval mode, one R-GCN pass).

    ``variant`` / ``overrides`` temporarily replace config fields (inference-time ablations, fusion off);
    ``gold_intent`` walks each turn's gold intent instead of the predicted one (trees for the paper's generation
    setting: gold intent, walker-selected entities).
    """
    was_training = model.training
    model.eval()
    out: list[TurnPrediction] = []
    fields = dict(overrides or {}) | ({} if variant is None else {"variant": variant})
    with config_override(model, **fields):
        H = model.entity_embeddings()
        H_movies = H[model.movie_ids]
        gen = torch.Generator()
        from tqdm import tqdm

        starts = range(0, len(examples), batch_size)
        for i in tqdm(starts, desc="predict", unit="batch", disable=len(starts) < 20, mininterval=5):
            chunk = list(examples[i : i + batch_size])
            batch = collate(chunk, feats, cands, 0, gen, targets=False).to(device)
            intents = [ex.intent for ex in chunk] if gold_intent else None
            out.extend(
                model.predict(batch, cands, width=width, threshold=threshold, H=H, H_movies=H_movies, intents=intents)
            )
    model.train(was_training)
    return out


def ranking_metrics(
    examples: Sequence[Example], movie_ids: np.ndarray, scores: Sequence[np.ndarray], exclude_mentioned: bool
) -> dict[str, float]:
    """Recall@{1,10,50} and coverage (fractions) over scored turns (those with gold movies).

    With ``exclude_mentioned`` the movies mentioned before the turn are removed from the ranking and
    from the gold set (a turn whose gold movies were all mentioned before is not scored).
    """
    ranked, gold = [], []
    for ex, sc in zip(examples, scores, strict=True):
        g = [m for m in ex.gold_movies if not (exclude_mentioned and m in set(ex.context))]
        if not g:
            continue
        excl = np.asarray(list(ex.context), dtype=np.int64) if exclude_mentioned else np.empty(0, np.int64)
        ranked.append(rank_candidates(sc, movie_ids, exclude=excl, top_k=max(KS)).tolist())
        gold.append(g)
    res = {f"R@{k}": recall_at_k(ranked, gold, k) for k in KS}
    res["coverage"] = coverage([r[0] for r in ranked if r], len(movie_ids))
    res["scored_turns"] = len(ranked)
    res["scored_pairs"] = sum(len(g) for g in gold)
    return res


def prediction_metrics(
    examples: Sequence[Example], preds: Sequence[TurnPrediction], exclude_mentioned: bool = False
) -> dict[str, float]:
    """Ranking metrics plus intent accuracy and hop-1 precision/recall of the predicted trees."""
    res = ranking_metrics(
        examples, preds[0].movie_ids if preds else np.empty(0), [p.movie_scores for p in preds], exclude_mentioned
    )
    res["intent_acc"] = intent_accuracy([p.intent for p in preds], [INTENT_NAMES[e.intent] for e in examples])
    p, r = hop_precision_recall([p.act.hop1 for p in preds], [e.hop1_gold_all for e in examples])
    res["hop1_precision"], res["hop1_recall"] = p, r
    return res
