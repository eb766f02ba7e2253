"""Choose the inference-time knobs of a trained walker on the VALIDATION split: ``python -m crwalker.tune``.

Tuned (never on test):

* score fusion weights (:mod:`crwalker.fusion`): popularity, co-occurrence, KG-neighbour and
  re-mention priors added to the Eq. 7 recommend logits, by grid search on ``--select-metric``
  (default valid Recall@10 over all movies, the protocol of :mod:`crwalker.evaluate`); ties prefer
  the smaller total weight;
* the intent class-prior correction ``intent_log_prior`` (added to the Eq. 4 logits) by grid search on
  valid intent accuracy; ties prefer the smaller correction;
* with ``--intent-clf <artefact>`` (:mod:`crwalker.intent_clf`), jointly with the prior, the weight
  ``intent_clf_weight`` of the fine-tuned classifier's log-probabilities (``--grid-intent-clf``); ties prefer
  the smaller weight.

The statistics of the fusion (mention counts, ordered co-occurrence) come from the training dialogues
and, with ``--use-structured``, the structured ReDial rows allowed for training
(:func:`data_scripts.redial_structured.training_rows`: never the text valid/test conversations).

``--from-tuned <tuned checkpoint>`` searches nothing: it copies another run's chosen values and installs the
statistics, for a ``crwalker.train --refit`` run (trained on train + valid with the epochs chosen on valid,
so valid can no longer select anything).

Output: ``<run>/<out_stem>.safetensors`` (+ ``.json``): the same weights plus the statistics buffers, the
config with the chosen values, and ``train_state["tuning"]`` (grid, chosen values, valid metrics before
and after); ``<run>/<out_stem>_grid.json`` has every grid point. Evaluate it with
``python -m crwalker.evaluate --run <run> --checkpoint <out_stem>``.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from crwalker.candidates import INTENT_NAMES, CandidateSets
from crwalker.checkpoint import load_checkpoint, read_checkpoint_doc, save_checkpoint
from crwalker.config import model_config_of
from crwalker.data import build_examples, load_dialogues
from crwalker.device import resolve_device
from crwalker.features import attach_features
from crwalker.fusion import FUSION_OFF, movie_statistics
from crwalker.inference import predict_examples, ranking_metrics
from crwalker.walker import CRWalker
from data_scripts.utils.config import field, parse_config, to_dict
from data_scripts.utils.io import iter_jsonl, write_json
from kg_build.schema import KnowledgeGraph

FUSION_FIELDS = tuple(FUSION_OFF)


@dataclasses.dataclass
class TuneConfig:
    """Tune fusion weights and the intent prior of a trained run on valid (`python -m crwalker.tune`)."""

    run: str = field("runs/walker", "Run folder with the checkpoint to tune.")
    checkpoint: str = field("best", "Checkpoint stem inside the run folder.")
    out_stem: str = field("tuned", "Stem of the tuned checkpoint written into the run folder.")
    split: str = field("valid", "Split used for tuning (must not be test).")
    kg: str = field("data/kg", "Knowledge-graph folder.")
    labels: str = field("data/labels", "Label folder.")
    dialogues: str = field("data/redial", "Canonical dialogues folder (train.jsonl gives the statistics).")
    cache: str = field("cache/features", "Feature cache root.")
    use_structured: bool = field(True, "Also count the structured ReDial training rows in the fusion statistics.")
    cooc_scale: float = field(50.0, "s of the co-occurrence term (fixed, not tuned).")
    grid_popularity: list[float] = field([0.0, 0.25, 0.5, 1.0], "Grid of fusion_popularity.")
    grid_cooccurrence: list[float] = field([0.0, 0.5, 1.0, 2.0], "Grid of fusion_cooccurrence.")
    grid_kg: list[float] = field([0.0, 2.0, 4.0, 6.0, 8.0], "Grid of fusion_kg.")
    grid_mentioned: list[float] = field(
        [0.0, 4.0, 8.0, 16.0], "Grid of fusion_mentioned (0 only = no re-mention prior)."
    )
    grid_recency: list[float] = field(
        [0.0, 8.0, 16.0, 32.0, 64.0], "Grid of fusion_recency (0 only = no recency prior)."
    )
    intent_clf: str = field("", "Fine-tuned intent classifier artefact (crwalker.intent_clf) to late-fuse ('' = none).")
    grid_intent_clf: list[float] = field(
        [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0], "Grid of intent_clf_weight (with --intent-clf)."
    )
    intent_bias_range: float = field(1.0, "Intent prior grid: query/chat offsets in [-r, r] step 0.1 (0 = off).")
    select_metric: str = field(
        "R@1+R@10+R@50", "Valid ranking metric maximised by the fusion grid: one of R@1/R@10/R@50 or a '+' sum of them."
    )
    device: str = field("auto", "'auto', 'cpu', 'cuda:0', ...")
    threads: int = field(1, "torch.set_num_threads on CPU.")
    batch_size: int = field(64, "Examples per forward pass.")
    from_tuned: str = field(
        "",
        "Copy the chosen values (fusion weights, co-occurrence scale, intent prior) of this tuned checkpoint instead "
        "of searching: for a `train --refit` run, whose training data includes valid. Nothing is evaluated.",
    )


def gold_ranks(scores: np.ndarray, gold_cols: Sequence[int]) -> np.ndarray:
    """0-based ranks of ``gold_cols`` in ``scores`` (descending, ties by smaller column = smaller entity id).

    Equivalent to the positions in :func:`crwalker.metrics.rank_candidates` when the candidate ids are sorted.
    """
    g = np.asarray(gold_cols, dtype=np.int64)
    gs = scores[g]
    higher = (scores[None, :] > gs[:, None]).sum(1)
    ties = (scores[None, :] == gs[:, None]) & (np.arange(len(scores))[None, :] < g[:, None])
    return higher + ties.sum(1)


def fast_ranking(logits: np.ndarray, gold: list[np.ndarray], ks=(1, 10, 50)) -> dict[str, float]:
    """Recall@k and coverage (fractions) of ``logits`` ``[T, n]`` with per-turn gold columns (all movies ranked)."""
    hits = dict.fromkeys(ks, 0)
    total = 0
    top1 = set()
    for z, g in zip(logits, gold, strict=True):
        if not len(g):
            continue
        r = gold_ranks(z, g)
        total += len(g)
        for k in ks:
            hits[k] += int((r < k).sum())
        top1.add(int(np.argmax(z)))  # first maximum = smallest id
    out = {f"R@{k}": hits[k] / total if total else 0.0 for k in ks}
    out["coverage"] = len(top1) / logits.shape[1]
    return out


def select_value(metrics: dict[str, float], select_metric: str) -> float:
    """The grid's selection value: one metric (``"R@10"``) or the sum of ``'+'``-joined ones (``"R@1+R@10"``)."""
    names = select_metric.split("+")
    unknown = [n for n in names if n not in metrics]
    if unknown:
        raise ValueError(f"unknown select metric(s) {unknown}; choose among {sorted(metrics)}")
    return sum(metrics[n] for n in names)


def choose_intent_calibration(
    lp: np.ndarray, clf_lp: np.ndarray, gold: np.ndarray, weights: Sequence[float], bias_range: float
) -> tuple[float, tuple[float, float, float], float]:
    """Grid search of ``argmax(lp + w * clf_lp + b)`` accuracy over ``w`` in ``weights`` and the query/chat
    offsets ``b`` in ``[-r, r]`` (step 0.1, recommend fixed at 0). Ties prefer a smaller ``w``, then a smaller
    ``|b|``. Returns ``(w, b, accuracy)``."""
    steps = np.round(np.arange(-bias_range, bias_range + 1e-9, 0.1), 2) if bias_range > 0 else np.zeros(1)
    best = None
    for w in weights:
        z = lp + w * clf_lp
        for b1 in steps:
            for b2 in steps:
                acc = float(((z + np.array([0.0, b1, b2])).argmax(1) == gold).mean())
                key = (round(acc, 6), -w, -abs(b1) - abs(b2))
                if best is None or key > best[0]:
                    best = (key, float(w), (0.0, float(b1), float(b2)), acc)
    return best[1], best[2], best[3]


def statistics_from_data(cfg: TuneConfig, kg: KnowledgeGraph, movie_ids: np.ndarray):
    """:func:`crwalker.fusion.movie_statistics` over the training dialogues (+ structured training rows)."""
    by_rid = kg.by_redial_id

    def seqs(rows):
        for d in rows:
            yield [[by_rid[r] for r in t.get("movie_ids", []) if r in by_rid] for t in d.get("turns", [])]

    rows = list(iter_jsonl(Path(cfg.dialogues) / "train.jsonl"))
    if cfg.use_structured:
        from data_scripts.redial_structured import training_rows

        rows += training_rows(list(iter_jsonl(Path(cfg.dialogues) / "structured_train.jsonl")))
    return movie_statistics(seqs(rows), movie_ids)


def tune(cfg: TuneConfig, encoder=None, log=print) -> dict:
    """Run the search of the module docstring; returns the ``tuning`` record.

    Args:
        cfg: the configuration.
        encoder: optional preloaded ``(tokenizer, bert)`` for missing features (tests pass a tiny BERT).
        log: message sink.

    Raises:
        ValueError: when asked to tune on the test split.
    """
    if cfg.split == "test":
        raise ValueError("tuning on the test split is not allowed")
    if cfg.from_tuned:
        return copy_tuning(cfg)
    device = resolve_device(cfg.device)
    if device.type == "cpu" and cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    run, src, doc, kg, cands = _source(cfg)
    mcfg = model_config_of(doc["config"])
    dlg = load_dialogues(Path(cfg.dialogues) / f"{cfg.split}.jsonl")
    examples = build_examples(Path(cfg.labels) / f"{cfg.split}.jsonl", dlg, cands, mcfg.history)
    feats, _ = attach_features(
        examples, cfg.cache, mcfg.bert, mcfg.bert_max_length, 64, device, encoder, log, mcfg.bert_pooling,
        intent_pairs=mcfg.intent_utterance,
    )  # fmt: skip
    clf_lp = np.zeros((len(examples), 3))
    if cfg.intent_clf:
        from crwalker.intent_clf import attach_log_probs, load_classifier

        clf, _ = load_classifier(cfg.intent_clf, device)
        attach_log_probs(examples, clf)
        clf_lp = np.array([e.intent_clf_logp for e in examples], dtype=np.float64)
        del clf
    off = FUSION_OFF | {"intent_log_prior": [0.0, 0.0, 0.0], "intent_clf_weight": 0.0, "intent_clf": ""}
    model = CRWalker(dataclasses.replace(mcfg, **off), kg, feats.shape[1])
    load_checkpoint(src, model)
    model = model.to(device).eval()
    model.prior.set_statistics(*statistics_from_data(cfg, kg, cands.movie_ids))

    preds = predict_examples(model, examples, feats, cands, device, batch_size=cfg.batch_size)
    S = np.stack([p.movie_scores for p in preds]).astype(np.float64)
    L = np.log(np.clip(S, 1e-300, None)) - np.log(np.clip(1.0 - S, 1e-300, None))
    del S
    col = {int(m): i for i, m in enumerate(cands.movie_ids)}
    gold = [np.asarray(sorted({col[m] for m in e.gold_movies if m in col}), dtype=np.int64) for e in examples]
    scored = [i for i, g in enumerate(gold) if len(g)]
    L, gold = L[scored], [gold[i] for i in scored]
    terms = np.stack(
        [model.prior.terms(examples[i].context, cands.movie_ids, cands.is_movie, cands.neighbors) for i in scored]
    ).astype(np.float32)
    terms[:, 1] = np.log1p(cfg.cooc_scale * terms[:, 1])

    grid = []
    grids = (cfg.grid_popularity, cfg.grid_cooccurrence, cfg.grid_kg, cfg.grid_mentioned, cfg.grid_recency)
    for w in itertools.product(*grids):
        z = L + np.einsum("k,tkn->tn", np.asarray(w, dtype=np.float32), terms) if any(w) else L
        grid.append({"weights": dict(zip(FUSION_FIELDS, w, strict=True)), **fast_ranking(z, gold)})
    base = fast_ranking(L, gold)  # fusion off
    best = max(grid, key=lambda g: (round(select_value(g, cfg.select_metric), 6), -sum(g["weights"].values())))
    b0, b1 = select_value(base, cfg.select_metric), select_value(best, cfg.select_metric)
    log(f"valid {cfg.select_metric}: no fusion {b0:.4f} -> {b1:.4f} {best}")

    probs = np.array([p.intent_probs for p in preds], dtype=np.float64)
    gold_int = np.array([e.intent for e in examples])
    lp = np.log(np.clip(probs, 1e-12, None))
    weight, ib, acc1 = choose_intent_calibration(
        lp, clf_lp, gold_int, cfg.grid_intent_clf if cfg.intent_clf else [0.0], cfg.intent_bias_range
    )
    acc0 = float((lp.argmax(1) == gold_int).mean())
    log(f"valid intent accuracy {acc0:.4f} -> {acc1:.4f} with log-prior {ib}, classifier weight {weight}")
    intent_choice = {"intent_log_prior": list(ib)}
    if cfg.intent_clf:
        intent_choice |= {"intent_clf": str(cfg.intent_clf), "intent_clf_weight": weight}

    tuned_cfg = dataclasses.replace(mcfg, **best["weights"], fusion_cooc_scale=cfg.cooc_scale, **intent_choice)
    model.cfg = tuned_cfg
    check = predict_examples(model, examples, feats, cands, device, batch_size=cfg.batch_size)
    exact = ranking_metrics(examples, cands.movie_ids, [p.movie_scores for p in check], False)
    exact_new = ranking_metrics(examples, cands.movie_ids, [p.movie_scores for p in check], True)
    nofus_new = ranking_metrics(examples, cands.movie_ids, [p.movie_scores for p in preds], True)
    acc_check = float(np.mean([p.intent == INTENT_NAMES[e.intent] for p, e in zip(check, examples, strict=True)]))
    record = {
        "split": cfg.split,
        "source_checkpoint": str(src),
        "select_metric": cfg.select_metric,
        "chosen": {**best["weights"], "fusion_cooc_scale": cfg.cooc_scale, **intent_choice},
        "valid_before": {**{k: base[k] for k in ("R@1", "R@10", "R@50", "coverage")}, "intent_acc": acc0},
        "valid_after": {**{k: exact[k] for k in ("R@1", "R@10", "R@50", "coverage")}, "intent_acc": acc_check},
        "valid_before_new": {k: nofus_new[k] for k in ("R@1", "R@10", "R@50", "coverage")},
        "valid_after_new": {k: exact_new[k] for k in ("R@1", "R@10", "R@50", "coverage")},
        "grid_size": len(grid),
        "config": to_dict(cfg),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    log(f"valid after tuning (exact protocol): {record['valid_after']}")
    state = dict(doc.get("train_state", {}))
    state["tuning"] = record
    conf = {**doc["config"], **dataclasses.asdict(tuned_cfg)}
    save_checkpoint(run / f"{cfg.out_stem}.safetensors", model, None, conf, state)
    write_json(run / f"{cfg.out_stem}_grid.json", sorted(grid, key=lambda g: -select_value(g, cfg.select_metric)))
    return record


def _source(cfg: TuneConfig) -> tuple[Path, Path, dict, KnowledgeGraph, CandidateSets]:
    """``(run folder, checkpoint path, its JSON document, KG, Table-1 candidates)`` of the run to tune."""
    run = Path(cfg.run)
    src = run / f"{cfg.checkpoint}.safetensors"
    kg = KnowledgeGraph.load(cfg.kg)
    return run, src, read_checkpoint_doc(src), kg, CandidateSets(kg)


def checkpoint_bert_dim(path: Path) -> int:
    """Encoder width ``H`` a walker checkpoint was trained with (input size of its Eq. 1 LSTM)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as f:
        return int(f.get_slice("model.utterance.lstm.weight_ih_l0").get_shape()[1])


def copy_tuning(cfg: TuneConfig) -> dict:
    """``--from-tuned``: install the fusion statistics and the source's chosen values into ``cfg.run``'s
    checkpoint (a refit on train + valid keeps the choices made on valid by the model it replaces)."""
    t0 = time.perf_counter()
    source = read_checkpoint_doc(cfg.from_tuned).get("train_state", {}).get("tuning")
    if not source:
        raise ValueError(f"{cfg.from_tuned}: no tuning record (train_state.tuning); run crwalker.tune on it first")
    src_cfg = source.get("config", {})
    cfg = dataclasses.replace(
        cfg,
        cooc_scale=float(src_cfg.get("cooc_scale", cfg.cooc_scale)),
        use_structured=bool(src_cfg.get("use_structured", cfg.use_structured)),
    )
    run, src, doc, kg, cands = _source(cfg)
    chosen = dict(source["chosen"])
    tuned_cfg = dataclasses.replace(model_config_of(doc["config"]), **chosen)
    model = CRWalker(dataclasses.replace(tuned_cfg, **FUSION_OFF), kg, checkpoint_bert_dim(src))
    load_checkpoint(src, model)
    model.prior.set_statistics(*statistics_from_data(cfg, kg, cands.movie_ids))
    model.cfg = tuned_cfg
    record = {
        "split": None,
        "source_checkpoint": str(src),
        "copied_from": str(cfg.from_tuned),
        "chosen": chosen,
        "source_tuning": {k: source.get(k) for k in ("split", "select_metric", "valid_before", "valid_after")},
        "config": to_dict(cfg),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    state = dict(doc.get("train_state", {}))
    state["tuning"] = record
    save_checkpoint(
        run / f"{cfg.out_stem}.safetensors", model, None, {**doc["config"], **dataclasses.asdict(tuned_cfg)}, state
    )
    return record


def main(argv: list[str] | None = None) -> int:
    tune(parse_config(TuneConfig, argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
