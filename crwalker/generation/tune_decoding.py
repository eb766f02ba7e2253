"""Choose the sampling temperature of a generator checkpoint on the VALIDATION split.

``python -m crwalker.generation.tune_decoding --checkpoint runs/generation/release``

The paper fixes nucleus sampling at top-p 0.9 and leaves the temperature at 1. A small model trained from
scratch is sharper than the paper's pretrained GPT-2 and repeats itself across replies (low corpus-level
Distinct-n), so the temperature is treated as a hyper-parameter: every value of ``--temperatures`` decodes
the gold-act replies of the validation split (:func:`crwalker.generation.evaluate.run_row`, same seed), and
the **largest temperature whose corpus sacreBLEU is at most ``--max-sacrebleu-drop`` points below that of
temperature 1** is kept ("diversity that costs no overlap with the references"). The choice is written into
the checkpoint's ``generator.json`` (``"decoding": {"top_p", "temperature"}``, read by
:attr:`ActConditionedGenerator.decoding`, the evaluation and the chat engine) together with
``"decoding_tuning"`` (every grid point's valid metrics). It refuses ``--split test``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from data_scripts.utils.config import field, parse_config
from data_scripts.utils.io import read_json, write_json
from data_scripts.utils.results import format_table
from kg_build.schema import KnowledgeGraph

from .data import build_examples, load_dialogues
from .evaluate import EvalConfig, run_row
from .linking import ProjectClassLinker
from .model import ActConditionedGenerator
from .placeholders import TitleFinder

KEYS = ("BLEU", "sacreBLEU", "Dist-2", "Dist-3", "KF1")


@dataclass
class TuneDecodingConfig:
    """Grid-search the sampling temperature of a generator checkpoint on valid."""

    checkpoint: str = field("runs/generation/release", "Act-conditioned generator checkpoint folder (updated).")
    temperatures: list[float] = field([1.0, 1.1, 1.2, 1.3], "Temperatures tried (1.0 must be among them).")
    max_sacrebleu_drop: float = field(0.5, "Keep the largest temperature within this many sacreBLEU points of T=1.")
    split: str = field("valid", "Tuning split (never test).")
    dialogues_dir: str = field("data/redial", "Canonical dialogues folder.")
    labels_dir: str = field("data/labels", "Dialog-act labels folder.")
    kg_dir: str = field("data/kg", "KG folder.")
    batch_size: int = field(64, "Decoding batch size.")
    seed: int = field(42, "Random seed (the same for every temperature).")
    threads: int = field(1, "torch.set_num_threads.")
    dry_run: bool = field(False, "Print the choice without writing generator.json.")


def choose(points: list[dict], max_drop: float) -> dict:
    """The grid point chosen by the rule of the module docstring (``points``: ``temperature`` + metrics)."""
    base = [p for p in points if p["temperature"] == 1.0]
    if not base:
        raise ValueError("the temperature grid must contain 1.0 (the reference point)")
    ok = [p for p in points if p["sacreBLEU"] >= base[0]["sacreBLEU"] - max_drop]
    return max(ok, key=lambda p: p["temperature"])


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(TuneDecodingConfig, argv)
    if cfg.split == "test":
        raise SystemExit("tuning on the test split is not allowed")
    torch.set_num_threads(cfg.threads)
    kg = KnowledgeGraph.load(cfg.kg_dir)
    dlg = load_dialogues(Path(cfg.dialogues_dir) / f"{cfg.split}.jsonl")
    examples = build_examples(dlg, Path(cfg.labels_dir) / f"{cfg.split}.jsonl", kg)
    finder, linker = TitleFinder(kg), ProjectClassLinker(kg)
    gen = ActConditionedGenerator.load(cfg.checkpoint)
    points = []
    for t in cfg.temperatures:
        ecfg = EvalConfig(batch_size=cfg.batch_size, temperature=float(t), seed=cfg.seed)
        torch.manual_seed(cfg.seed)
        row, _ = run_row(gen, examples, ecfg, finder, linker, f"{cfg.split} T={t}")
        points.append({"temperature": float(t), **{k: round(row[k], 3) for k in KEYS}})
    best = choose(points, cfg.max_sacrebleu_drop)
    print(format_table(points, ["temperature", *KEYS]))
    record = {
        "split": cfg.split,
        "n_turns": len(examples),
        "rule": f"largest temperature with sacreBLEU >= sacreBLEU(T=1) - {cfg.max_sacrebleu_drop}",
        "grid": points,
        "chosen": best["temperature"],
    }
    print(f"chosen temperature {best['temperature']} (valid Dist-3 {best['Dist-3']}, sacreBLEU {best['sacreBLEU']})")
    if not cfg.dry_run:
        path = Path(cfg.checkpoint) / "generator.json"
        meta = read_json(path)
        meta["decoding"] = {"top_p": gen.decoding["top_p"], "temperature": best["temperature"]}
        meta["decoding_tuning"] = record
        write_json(path, meta)
    return record


if __name__ == "__main__":
    main()
