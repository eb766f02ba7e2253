"""Train the linker's same-title movie chooser: ``python -m kg_build.train_remakes``.

1. Builds benchmark-style typed turns (:func:`kg_build.bench_linking.build_typed_turns`) of the ReDial
   **train** split (typo seed ``--seed``, not the benchmark's) and links them in dialogue order with the
   deployed linker without a remake chooser (context = its own earlier predictions).
2. Every linked movie span whose title several dated KG movies share (:meth:`EntityLinker.remake_choices`)
   and that overlaps a gold typed title of that title is one choice; its positives are the candidates
   that are the gold film or a ReDial duplicate entry of it (the headline matching of
   :func:`kg_build.bench_linking.same_film`).
3. Fits a conditional logit (:func:`kg_build.remake_chooser.fit_conditional_logit`).
4. Selects the switching ``margin`` on the **valid** split (typo seed 0, as the benchmark): the margin
   with the most correct choices (ties: the larger margin, i.e. fewer changes to the rules). Test is
   never read.
5. Writes ``kg_build/resources/linker_remake_chooser.json``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_scripts.utils.config import field, parse_config, to_dict
from data_scripts.utils.results import format_table
from kg_build.bench_linking import _load_split, build_typed_turns, link_dialogues, same_film
from kg_build.linker import EntityLinker
from kg_build.remake_chooser import DEFAULT_PATH, FEATURES, RemakeChooser, fit_conditional_logit, remake_features
from kg_build.schema import KnowledgeGraph
from kg_build.train_linker import TypedTrainTurns


@dataclass
class TrainRemakesConfig(TypedTrainTurns):
    """Train the entity linker's same-title movie chooser on ReDial train, select its margin on valid."""

    out: str = field(str(DEFAULT_PATH), "Output JSON (the packaged resource by default).")
    l2: float = field(1.0, "Ridge penalty of the conditional logit.")
    margin_grid: list[float] = field([0.0, 0.25, 0.5, 1.0, 2.0], "Switching margins tried on valid.")


def collect_choices(kg: KnowledgeGraph, linker: EntityLinker, turns) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """``(features, positive mask, rule pick index)`` of every same-title choice the linker makes on
    ``turns`` (linked in dialogue order without a remake chooser)."""
    preds, contexts = link_dialogues(linker, [t.text for t in turns], [t.dialogue for t in turns])
    out = []
    for turn, spans, ctx in zip(turns, preds, contexts, strict=True):
        for k, group, facts in linker.remake_choices(turn.text, spans, ctx):
            sp = spans[k]
            gold = [
                g for gs, ge, g in turn.gold if sp.start < ge and gs < sp.end and same_film(kg, g, sp.entity, "title")
            ]
            if not gold:
                continue
            pos = np.array([same_film(kg, gold[0], g, "duplicate") for g in group])
            if not pos.any():
                continue
            x = np.asarray([remake_features(f) for f in facts], dtype=np.float64)
            out.append((x, pos, next(i for i, f in enumerate(facts) if f.rule_pick)))
    return out


def n_correct(chooser: RemakeChooser, choices) -> tuple[int, int]:
    """(choices the chooser gets right, choices the rule pick gets right)."""
    w = np.asarray(chooser.weights)
    ok = rule = 0
    for x, pos, pick in choices:
        s = x @ w
        best = int(np.argmax(s))
        got = best if s[best] > s[pick] + chooser.margin else pick
        ok += int(pos[got])
        rule += int(pos[pick])
    return ok, rule


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(TrainRemakesConfig, argv)
    t0 = time.perf_counter()
    kg = KnowledgeGraph.load(cfg.kg)
    data = Path(cfg.data)
    linker = EntityLinker.from_kg(
        kg, popularity_path=str(data / "movies.jsonl"), use_ner=cfg.use_ner, remake_chooser=""
    ).load()
    train = build_typed_turns(kg, _load_split(data, "train"), cfg.typo_share, cfg.typo_min_letters, cfg.seed)
    if cfg.max_train_turns:
        train = train[: cfg.max_train_turns]
    tr = collect_choices(kg, linker, train)
    print(f"train: {len(train)} turns, {len(tr)} same-title choices", flush=True)
    w = fit_conditional_logit([c[0] for c in tr], [c[1] for c in tr], l2=cfg.l2)
    print(
        format_table(
            [{"feature": n, "weight": f"{v:+.3f}"} for n, v in zip(FEATURES, w, strict=True)], ["feature", "weight"]
        )
    )
    chooser = RemakeChooser([float(v) for v in w])
    ok, rule = n_correct(chooser, tr)
    print(f"train correct: chooser {ok} / rules {rule} of {len(tr)}", flush=True)
    valid = build_typed_turns(kg, _load_split(data, "valid"), cfg.typo_share, cfg.typo_min_letters, 0)
    va = collect_choices(kg, linker, valid)
    grid = []
    for m in cfg.margin_grid:
        chooser.margin = m
        ok, rule = n_correct(chooser, va)
        grid.append({"margin": m, "valid_correct": ok, "rules_correct": rule, "n": len(va)})
    print(format_table(grid, ["margin", "valid_correct", "rules_correct", "n"]))
    best = max(grid, key=lambda r: (r["valid_correct"], r["margin"]))
    chooser.margin = best["margin"]
    chooser.training = {
        "command": "python -m kg_build.train_remakes " + " ".join(argv if argv is not None else sys.argv[1:]),
        "config": to_dict(cfg),
        "train_turns": len(train),
        "train_choices": len(tr),
        "train_correct": n_correct(RemakeChooser(chooser.weights, 0.0), tr)[0],
        "train_rules_correct": n_correct(chooser, tr)[1],
        "label": "gold typed title's film or a ReDial duplicate entry of it (train split)",
        "valid_grid": grid,
        "valid_selected": best,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    chooser.save(cfg.out)
    print(f"selected margin {chooser.margin} on valid; wrote {cfg.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
