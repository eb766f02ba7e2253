"""Train the linker's span classifier: ``python -m kg_build train-linker [--kg data/kg --data data/redial]``.

1. Builds benchmark-style typed turns (:func:`kg_build.bench_linking.build_typed_turns`: every ``@id`` typed
   as its lower-case title, some with typos) from the ReDial **train** split (seed ``--seed``, not the
   benchmark's).
2. Links them in dialogue order with the rule-based linker (classifier off; context = its own earlier
   predictions) and collects every lower-case movie candidate with its
   :class:`~kg_build.span_classifier.SpanFacts` (:meth:`EntityLinker.candidate_facts`).
3. Label: 1 when the candidate overlaps a gold typed title of the same film (title level: any entry with
   the same normalised title -- choosing among remakes is not the classifier's job), else 0.
4. Fits an L2 logistic regression (:func:`~kg_build.span_classifier.fit_logistic`, numpy Newton steps).
5. Selects ``threshold_keep`` / ``threshold_add`` by a coordinate search on the typed-mention benchmark
   of the **valid** split (test is never read), maximising ``min(P, R)`` of the headline metrics (both
   have a 0.90 target; ``--select f1`` maximises F1 instead).
6. Writes ``kg_build/resources/linker_span_classifier.json`` (schema in :mod:`kg_build.span_classifier`),
   including the train-split ``@``-mention counts per movie and the valid grid as provenance.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_scripts.utils.config import field, parse_config, to_dict
from data_scripts.utils.results import format_table
from kg_build.bench_linking import _load_split, build_typed_turns, link_dialogues, run_movie_benchmark, same_film
from kg_build.linker import MENTION_RE, EntityLinker
from kg_build.schema import KnowledgeGraph
from kg_build.span_classifier import DEFAULT_PATH, FEATURES, SpanClassifier, fit_logistic, span_features


@dataclass
class TypedTrainTurns:
    """Where the linker's learned parts get their data: ReDial train turns with titles typed as the benchmark."""

    kg: str = field("data/kg", "KG folder (python -m kg_build build).")
    data: str = field("data/redial", "Canonical ReDial folder with train/valid.jsonl and movies.jsonl.")
    typo_share: float = field(0.2, "Share of eligible typed train titles that get a typo (as the benchmark).")
    typo_min_letters: int = field(5, "Titles with fewer letters never get a typo.")
    seed: int = field(1, "Seed of the train typos (the benchmark uses 0 on valid/test).")
    max_train_turns: int = field(0, "Use only the first N train turns (0 = all).")
    use_ner: bool = field(True, "Run spaCy NER in the linker (as the benchmark).")


@dataclass
class TrainLinkerConfig(TypedTrainTurns):
    """Train the entity linker's span classifier on ReDial train, select thresholds on valid."""

    out: str = field(str(DEFAULT_PATH), "Output JSON (the packaged resource by default).")
    l2: float = field(1.0, "Ridge penalty of the logistic regression (standardised features).")
    keep_grid: list[float] = field([0.05, 0.1, 0.15, 0.2, 0.25], "threshold_keep values tried on valid.")
    add_grid: list[float] = field([0.4, 0.5, 0.6, 0.7], "threshold_add values tried on valid (1.01 = never add).")
    select: str = field("min_pr", "Threshold criterion on valid: 'min_pr' (max of min(P, R): both targets) or 'f1'.")


def train_mention_counts(dialogues: list[dict]) -> dict[int, int]:
    """``@<movieId>`` occurrences per ReDial id in the turns' ``text_raw``."""
    counts: Counter = Counter()
    for d in dialogues:
        for t in d["turns"]:
            counts.update(int(m.group(1)) for m in MENTION_RE.finditer(t["text_raw"]))
    return dict(counts)


def label_candidates(kg: KnowledgeGraph, turns, facts_per_turn) -> tuple[np.ndarray, np.ndarray, list]:
    """Feature matrix, labels (overlap with a gold title of the same film, title level) and facts."""
    xs, ys, rows = [], [], []
    for turn, facts in zip(turns, facts_per_turn, strict=True):
        for cand, f in facts:
            s, e, eid = cand[0], cand[1], cand[2]
            hit = any(s < ge and gs < e and same_film(kg, geid, eid, "title") for gs, ge, geid in turn.gold)
            xs.append(span_features(f))
            ys.append(int(hit))
            rows.append(f)
    return np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64), rows


def _f1(res: dict) -> float:
    p, r = res["movie_precision"], res["movie_recall"]
    return 2 * p * r / (p + r) if p + r else 0.0


def selection_score(row: dict, criterion: str) -> tuple[float, float]:
    """Sort key of a valid-grid row: ``min_pr`` = (min(P, R), F1), ``f1`` = (F1, min(P, R))."""
    lo = min(row["P"], row["R"])
    if criterion == "min_pr":
        return lo, row["F1"]
    if criterion == "f1":
        return row["F1"], lo
    raise ValueError(f"select must be 'min_pr' or 'f1', got {criterion!r}")


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(TrainLinkerConfig, argv)
    selection_score({"P": 0.0, "R": 0.0, "F1": 0.0}, cfg.select)  # validate before the heavy work
    t_start = time.perf_counter()
    kg = KnowledgeGraph.load(cfg.kg)
    data = Path(cfg.data)
    train = _load_split(data, "train")
    counts = train_mention_counts(train)
    turns = build_typed_turns(kg, train, cfg.typo_share, cfg.typo_min_letters, cfg.seed)
    if cfg.max_train_turns:
        turns = turns[: cfg.max_train_turns]
    pop = str(data / "movies.jsonl")
    base = EntityLinker.from_kg(kg, popularity_path=pop, use_ner=cfg.use_ner, span_classifier="").load()
    base.set_train_mentions(counts)
    texts = [t.text for t in turns]
    _, contexts = link_dialogues(base, texts, [t.dialogue for t in turns])
    facts = base.candidate_facts(texts, contexts)
    x, y, _ = label_candidates(kg, turns, facts)
    print(f"train: {len(turns)} turns, {len(y)} lower-case movie candidates, {int(y.sum())} positive", flush=True)
    w = fit_logistic(x, y, l2=cfg.l2)
    p = 1.0 / (1.0 + np.exp(-(x @ w)))
    acc = float(((p >= 0.5) == (y == 1)).mean())
    print(
        format_table(
            [{"feature": n, "weight": f"{v:+.3f}"} for n, v in zip(FEATURES, w, strict=True)], ["feature", "weight"]
        )
    )
    print(f"train accuracy at 0.5: {acc:.4f} (positives {y.mean():.3f})", flush=True)

    clf = SpanClassifier(weights=[float(v) for v in w], threshold_keep=0.0, threshold_add=1.01, train_mentions=counts)
    linker = EntityLinker.from_kg(kg, popularity_path=pop, use_ner=cfg.use_ner, span_classifier="")
    linker.set_span_classifier(clf)  # the deployed configuration; thresholds are swept on ``clf``
    valid = build_typed_turns(kg, _load_split(data, "valid"), cfg.typo_share, cfg.typo_min_letters, 0)
    grid: list[dict] = []
    cache: dict[tuple[float, float], dict] = {}

    def evaluate(keep: float, add: float) -> tuple[float, float]:
        if (keep, add) not in cache:
            clf.threshold_keep, clf.threshold_add = keep, add
            res, _, _ = run_movie_benchmark(linker, valid)
            row = {"keep": keep, "add": add, "P": round(res["movie_precision"], 4), "R": round(res["movie_recall"], 4)}
            row["F1"] = round(_f1(res), 4)
            cache[(keep, add)] = row
            grid.append(row)
            print(format_table([row], ["keep", "add", "P", "R", "F1"]).splitlines()[-1], flush=True)
        return selection_score(cache[(keep, add)], cfg.select)

    keep, add = 0.0, 1.01
    for _round in range(2):
        keep = max(cfg.keep_grid, key=lambda k: (evaluate(k, add), -k))
        add = max(cfg.add_grid, key=lambda a: (evaluate(keep, a), a))
    clf.threshold_keep, clf.threshold_add = keep, add
    best = cache[(keep, add)]
    print(format_table(grid, ["keep", "add", "P", "R", "F1"]))
    print(f"selected on valid: threshold_keep={keep} threshold_add={add} -> P {best['P']} R {best['R']}")
    clf.training = {
        "command": "python -m kg_build train-linker " + " ".join(argv if argv is not None else sys.argv[1:]),
        "config": to_dict(cfg),
        "train_turns": len(turns),
        "train_candidates": len(y),
        "train_positive": int(y.sum()),
        "train_accuracy_at_0.5": round(acc, 4),
        "label": "overlaps a gold typed title of the same film (title level), train split",
        "valid_grid": grid,
        "valid_selected": best,
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    clf.save(cfg.out)
    print(f"wrote {cfg.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
