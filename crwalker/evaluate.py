"""Evaluate a trained CR-Walker run: ``python -m crwalker.evaluate --run runs/walker [--split test]``.

Protocol (also in ``docs/walker.md``):

* Scored turns: recommender turns (label rows) that mention at least one movie; gold = the movies
  the recommender mentions in that turn (``turn_movies``); every (turn, gold movie) pair is a sample.
* Ranking: all candidate movies of the KG (6,924 for ReDial), by score, ties broken by smaller
  entity id. Two variants: *all* (nothing excluded) and *new* (movies mentioned before the turn are
  removed from the ranking and from the gold set).
* Leakage guard: the model input is built from turns before the gold turn only; this is asserted for
  every example (:func:`crwalker.data.assert_no_leak`).
* Metrics: Recall@1/10/50, coverage (share of candidate movies that are top-1 for some scored turn),
  intent accuracy and hop-1 precision/recall of the predicted trees (all turns).
* Baselines in the same run: ``popularity`` (train mention counts), ``depth1`` (walk from the intent
  root straight to movies, no hop 1) and ``rgcn_portrait`` (R-GCN + user portrait, no walking,
  KBRD-like). Unless ``--depth1-run`` / ``--portrait-run`` point to models trained with that
  ``--variant``, these two are inference-time ablations of the evaluated model.
* Width sweep: the full model with ``m`` in ``--widths``.
* Score fusion (:mod:`crwalker.fusion`, weights chosen on valid by :mod:`crwalker.tune`): when the
  evaluated checkpoint has non-zero fusion weights, two extra rows show its parts in the same run:
  ``cr_walker_no_fusion`` (same model, fusion off) and ``fusion_prior_only`` (the priors alone, no walker).
  The valid-split tuning record is copied to the results JSON (``tuning``).

Outputs: ``--out`` results JSON (percentages, via ``write_results``), ``--plot`` PNG, a Markdown
table next to the JSON, and per-turn JSONL (``<run>/eval_<split>_turns.jsonl``; not committed; with
``--gold-intent-turns`` also ``<run>/eval_<split>_turns_gold_intent.jsonl``, the trees walked from the gold intent,
for the generation evaluation in the reference implementation's setting):
``{"conv_id", "turn_idx", "context": {"pairs", "entities"}, "gold": {"intent", "act", "movies"},
"pred": {"intent", "intent_probs", "act", "act_text"}, "top50": [[entity, name, score], ...]}``.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from crwalker.candidates import INTENT_NAMES, CandidateSets
from crwalker.checkpoint import load_checkpoint, read_checkpoint_doc
from crwalker.config import EvalConfig, model_config_of
from crwalker.data import build_examples, load_dialogues
from crwalker.device import resolve_device
from crwalker.features import attach_features
from crwalker.fusion import FUSION_OFF, fusion_active
from crwalker.inference import predict_examples, prediction_metrics, ranking_metrics
from crwalker.metrics import rank_candidates
from crwalker.walker import CRWalker
from data_scripts.utils.config import parse_config, to_dict
from data_scripts.utils.io import atomic_write, iter_jsonl, write_jsonl
from data_scripts.utils.results import format_table, write_results
from kg_build.labels import check_labels_match_kg
from kg_build.schema import KnowledgeGraph

PROTOCOL = (
    "scored turns = recommender turns mentioning >=1 movie; gold = movies mentioned in the turn; "
    "Recall@k over (turn, gold movie) pairs; ranking over all KG candidate movies, ties by smaller entity id; "
    "'rows' excludes nothing, 'rows_new' removes movies mentioned before the turn from ranking and gold; "
    "inputs use only turns before the gold turn (asserted)."
)
ROW_KEYS = ("R@1", "R@10", "R@50", "coverage", "intent_acc")


def popularity_scores(dialogues_path: str | Path, kg: KnowledgeGraph) -> np.ndarray:
    """Mention counts of each candidate movie in the training dialogues (aligned with ``kg.movie_ids``)."""
    counts: Counter[int] = Counter()
    by_rid = kg.by_redial_id
    for d in iter_jsonl(dialogues_path):
        for t in d.get("turns", []):
            for rid in t.get("movie_ids", []):
                if rid in by_rid:
                    counts[by_rid[rid]] += 1
    return np.array([counts.get(int(m), 0) for m in kg.movie_ids], dtype=np.float64)


def _pct(d: dict, keys=ROW_KEYS) -> dict:
    return {k: (None if d.get(k) is None else round(100.0 * float(d[k]), 2)) for k in keys}


def _load_model(run: Path, stem: str, kg: KnowledgeGraph, bert_dim: int, device) -> CRWalker:
    doc = read_checkpoint_doc(run / f"{stem}.safetensors")
    model = CRWalker(model_config_of(doc["config"]), kg, bert_dim)
    load_checkpoint(run / f"{stem}.safetensors", model)
    return model.to(device).eval()


def evaluate(cfg: EvalConfig, encoder=None, log=print) -> dict:
    """Run the protocol of the module docstring; returns the results payload (also written to ``cfg.out``)."""
    device = resolve_device(cfg.device)
    if device.type == "cpu" and cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    run = Path(cfg.run)
    doc = read_checkpoint_doc(run / f"{cfg.checkpoint}.safetensors")
    mcfg = model_config_of(doc["config"])
    kg = KnowledgeGraph.load(cfg.kg)
    check_labels_match_kg(cfg.labels, cfg.kg)
    cands = CandidateSets(kg)
    dlg = load_dialogues(Path(cfg.dialogues) / f"{cfg.split}.jsonl")
    examples = build_examples(Path(cfg.labels) / f"{cfg.split}.jsonl", dlg, cands, mcfg.history, cfg.max_examples)
    feats, fstats = attach_features(
        examples,
        cfg.cache,
        mcfg.bert,
        mcfg.bert_max_length,
        cfg.encode_batch,
        device,
        encoder,
        log,
        pooling=mcfg.bert_pooling,
        intent_pairs=any(
            model_config_of(read_checkpoint_doc(Path(r) / f"{stem}.safetensors")["config"]).intent_utterance
            for r, stem in ((run, cfg.checkpoint), (cfg.depth1_run, "best"), (cfg.portrait_run, "best"))
            if r
        ),
    )
    model = _load_model(run, cfg.checkpoint, kg, feats.shape[1], device)
    t0 = time.perf_counter()
    clf_record = None
    if mcfg.intent_clf_weight:  # late-fused fine-tuned intent classifier (crwalker.intent_clf)
        from crwalker.intent_clf import attach_log_probs, load_classifier

        clf, cdoc = load_classifier(mcfg.intent_clf, device)
        attach_log_probs(examples, clf)
        del clf
        clf_record = {"artefact": mcfg.intent_clf, "weight": mcfg.intent_clf_weight, **cdoc["train_state"]}

    def run_preds(m=model, **kw):
        return predict_examples(m, examples, feats, cands, device, batch_size=cfg.batch_size, **kw)

    preds = run_preds()
    infer_s = time.perf_counter() - t0
    rows, rows_new, extra = {}, {}, {}
    full = prediction_metrics(examples, preds)
    rows["cr_walker"] = _pct(full)
    rows_new["cr_walker"] = _pct(prediction_metrics(examples, preds, exclude_mentioned=True))
    extra["cr_walker"] = {
        "hop1_precision": round(100 * full["hop1_precision"], 2),
        "hop1_recall": round(100 * full["hop1_recall"], 2),
        "scored_turns": full["scored_turns"],
        "scored_pairs": full["scored_pairs"],
    }

    if fusion_active(model.cfg):
        nf = run_preds(overrides=FUSION_OFF)
        rows["cr_walker_no_fusion"] = _pct(prediction_metrics(examples, nf))
        rows_new["cr_walker_no_fusion"] = _pct(prediction_metrics(examples, nf, exclude_mentioned=True))
        del nf
        prior_scores = [
            model.prior.bonus(model.cfg, ex.context, cands.movie_ids, cands.is_movie, cands.neighbors)
            for ex in examples
        ]
        for excl, target in ((False, rows), (True, rows_new)):
            target["fusion_prior_only"] = _pct(ranking_metrics(examples, kg.movie_ids, prior_scores, excl))
        del prior_scores
        extra["fusion"] = {k: getattr(model.cfg, k) for k in FUSION_OFF}
    pop = popularity_scores(Path(cfg.dialogues) / "train.jsonl", kg)
    for excl, target in ((False, rows), (True, rows_new)):
        target["popularity"] = _pct(ranking_metrics(examples, kg.movie_ids, [pop] * len(examples), excl))
    for name, variant, other in (("depth1", "depth1", cfg.depth1_run), ("rgcn_portrait", "portrait", cfg.portrait_run)):
        if other:
            p = predict_examples(
                _load_model(Path(other), "best", kg, feats.shape[1], device),
                examples,
                feats,
                cands,
                device,
                batch_size=cfg.batch_size,
            )
            extra[name] = {"source": f"trained run {other}"}
        else:
            p = run_preds(variant=variant)
            extra[name] = {"source": "inference-time ablation of the evaluated model"}
        rows[name] = _pct(prediction_metrics(examples, p))
        rows_new[name] = _pct(prediction_metrics(examples, p, exclude_mentioned=True))
        if name == "rgcn_portrait":  # no intent prediction involved in this baseline's ranking
            rows[name]["intent_acc"] = rows_new[name]["intent_acc"] = None
    sweep = {}
    for m in cfg.widths:
        pm = preds if m == mcfg.width else run_preds(width=m)
        met = prediction_metrics(examples, pm)
        sweep[str(m)] = {
            **_pct(met),
            "hop1_precision": round(100 * met["hop1_precision"], 2),
            "hop1_recall": round(100 * met["hop1_recall"], 2),
            "mean_tree_width": round(float(np.mean([p.act.width for p in pm])), 3),
        }

    turns_out = Path(cfg.turns_out) if cfg.turns_out else run / f"eval_{cfg.split}_turns.jsonl"
    names = [e.name for e in kg.entities]
    write_jsonl(turns_out, (_turn_row(ex, pr, names) for ex, pr in zip(examples, preds, strict=True)))
    if cfg.gold_intent_turns:  # the reference implementation's generation setting: gold intent, walker tree
        gi = run_preds(gold_intent=True)
        gold_turns = turns_out.with_name(turns_out.stem + "_gold_intent.jsonl")
        write_jsonl(gold_turns, (_turn_row(ex, pr, names) for ex, pr in zip(examples, gi, strict=True)))
        del gi
    train_state = doc.get("train_state", {})
    payload = {
        "split": cfg.split,
        "protocol": PROTOCOL,
        "rows": rows,
        "rows_new": rows_new,
        "details": extra,
        "width_sweep": sweep,
        "train_minutes": round(train_state.get("train_seconds", 0.0) / 60 + (clf_record or {}).get("minutes", 0.0), 2),
        "train_minutes_parts": {
            "walker": round(train_state.get("train_seconds", 0.0) / 60, 2),
            "intent_clf": (clf_record or {}).get("minutes"),
        },
        "epochs": train_state.get("epoch"),
        "best_epoch": train_state.get("best_epoch"),
        "n_examples": len(examples),
        "n_candidates": int(len(kg.movie_ids)),
        "inference_seconds": round(infer_s, 1),
        "features": fstats,
        "checkpoint": str(run / f"{cfg.checkpoint}.safetensors"),
    }
    if "tuning" in train_state:
        payload["tuning"] = train_state["tuning"]
    if clf_record is not None:  # the late-fused intent classifier: its training minutes, epochs, valid accuracy
        payload["intent_clf"] = clf_record
    out = write_results(
        cfg.out,
        payload,
        config={"eval": to_dict(cfg), "train": doc.get("config")},
        data_files=[Path(cfg.labels) / f"{cfg.split}.jsonl", Path(cfg.kg) / "manifest.json"],
    )
    table = _tables(rows, rows_new, sweep)
    with atomic_write(Path(cfg.out).with_suffix(".md")) as fh:
        fh.write(table + "\n")
    if cfg.plot:
        _plot(sweep, cfg.plot)
    log(table)
    return out


def _turn_row(ex, pr, names: list[str]) -> dict:
    top = rank_candidates(pr.movie_scores, pr.movie_ids, top_k=50)
    score_of = dict(zip(pr.movie_ids.tolist(), pr.movie_scores.tolist(), strict=True))
    return {
        "conv_id": ex.conv_id,
        "turn_idx": ex.turn_idx,
        "context": {"pairs": [list(p) for p in ex.pairs], "entities": [[e, names[e]] for e in ex.context]},
        "gold": {"intent": INTENT_NAMES[ex.intent], "act": ex.act, "movies": ex.gold_movies},
        "pred": {
            "intent": pr.intent,
            "intent_probs": [round(x, 4) for x in pr.intent_probs],
            "act": pr.act.to_json(),
            "act_text": pr.act.linearize(),
        },
        "top50": [[int(m), names[m], round(float(score_of[int(m)]), 5)] for m in top],
    }


def _tables(rows: dict, rows_new: dict, sweep: dict) -> str:
    cols = ["model", *ROW_KEYS]
    t1 = format_table([{"model": k, **v} for k, v in rows.items()], cols)
    t2 = format_table([{"model": k, **v} for k, v in rows_new.items()], cols)
    t3 = format_table(
        [{"m": k, **v} for k, v in sweep.items()],
        ["m", "R@1", "R@10", "R@50", "coverage", "hop1_precision", "hop1_recall", "mean_tree_width"],
    )
    return f"All movies ranked (%):\n\n{t1}\n\nPreviously mentioned movies excluded (%):\n\n{t2}\n\nWidth sweep (%):\n\n{t3}"


def _plot(sweep: dict, path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ms = [int(k) for k in sweep]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for key in ("R@1", "R@10", "R@50", "hop1_precision", "hop1_recall"):
        ax.plot(ms, [sweep[str(m)][key] for m in ms], marker="o", label=key)
    ax.set_xlabel("max entities per hop (m)")
    ax.set_ylabel("%")
    ax.set_xticks(ms)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    evaluate(parse_config(EvalConfig, argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
