"""Evaluate reply generation (CR-Walker Table 3 style) and write ``results/generation.json``.

Rows (all on the same test turns):

* ``gold_act`` -- the act-conditioned generator fed the gold acts of ``{labels_dir}/{split}.jsonl``;
* ``end_to_end`` -- the same model fed the walker's predicted acts (``--predicted-acts``: JSONL with
  ``{"conv_id", "turn_idx", "act_text"}`` as written by the walker's evaluation); turns without a
  prediction are skipped and counted;
* ``gold_intent_walker_tree`` (optional, ``--end-to-end-row gold_intent_walker_tree`` with the trees of
  ``crwalker.evaluate --gold-intent-turns``) -- acts walked by the walker from the *gold* intent, the setting of
  the reference implementation's generation evaluation (its ``evaluate_redial`` defaults to ``golden_intent``);
* ``no_act`` -- the same model family trained without acts (``--noact-checkpoint``), the paper's
  "GPT-2" baseline.

Each row: ``BLEU`` (CR-Walker sentence BLEU averaged over turns, NLTK 3.5 smoothing as in the paper's
environment), ``BLEU_nltk_current`` (the same with the installed NLTK's method 7), ``sacreBLEU`` (corpus), ``Dist-2``,
``Dist-3`` (corpus-level as CR-Walker), ``Dist-2_sent``, ``Dist-3_sent`` (sentence-level), ``KF1``,
``KP``, ``KR`` (knowledge over generic classes, micro), ``PPL`` (of the gold target under the model;
with acts the target is the delexicalised reply, without acts the reply with titles -- so PPLs of
act and no-act rows are not directly comparable; in ``end_to_end`` the gold reply is delexicalised
against the *gold* act but conditioned on the predicted one), ``n``; ``end_to_end`` also has
``intent_acc`` (predicted act intent == gold intent). BLEU/Dist/K*/intent_acc are percentages.

Decoding and PPL use :meth:`ActConditionedGenerator.decode_and_score` (one prompt pass for both, finished
rows leave the batch), batches of similar prompt length. ``--rows`` computes a subset of the rows (e.g. one
process per row) into part files that ``--merge`` joins; ``--sample N`` evaluates a seeded random subset.

``results/generation.json``::

    {"rows": {"gold_act": {...}, "end_to_end": {...}, "no_act": {...}},
     "backends": {"<name>": {gold-act metrics..., "p95_s", "first_token_p95_s", "train_minutes"}},
     "default_backend": "<name>",
     "movie_consistency": {"gold_act": {...}, "end_to_end": {...}, "gold_act_model_only": {...}},
     "split", "n_turns", "skipped_no_prediction", "git_commit", "config", "data_sha256"}

Per-turn replies go to ``{replies_dir}/{row}__{backend}.jsonl``: ``{"conv_id", "turn_idx", "intent",
"act_text", "prompt", "raw", "reply", "gold"}``.

Example::

    python -m crwalker.generation.evaluate --backends smollm2_lora=runs/generation/smollm2_lora/best \\
        --noact-checkpoint runs/generation/smollm2_lora_noact/best \\
        --predicted-acts runs/walker/test_predictions.jsonl
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from data_scripts.utils.config import field, parse_config, to_dict
from data_scripts.utils.io import write_jsonl
from data_scripts.utils.results import format_table, write_results
from kg_build.schema import KnowledgeGraph

from . import metrics as M
from .bench import time_reply
from .data import GenExample, build_examples, collate, encode_pair, load_dialogues, load_predicted_acts
from .linking import ClassLinker, ProjectClassLinker
from .model import ActConditionedGenerator, postprocess, resolve_device
from .placeholders import TitleFinder, fill_placeholders


@dataclass
class EvalConfig:
    """Evaluate act-conditioned reply generation."""

    dialogues_dir: str = field("data/redial", "Folder with canonical {split}.jsonl dialogues.")
    labels_dir: str = field("data/labels", "Folder with {split}.jsonl act labels.")
    kg_dir: str = field("data/kg", "KG folder.")
    split: str = field("test", "Split to evaluate.")
    backends: list[str] = field([], "Act-conditioned checkpoints as name=folder (first = default backend).")
    noact_checkpoint: str = field("", "Checkpoint trained without acts (no_act row); '' = skip the row.")
    predicted_acts: str = field(
        "runs/walker/eval_test_turns.jsonl",
        "Walker per-turn predictions JSONL (conv_id, turn_idx, act_text or pred.act_text); '' or missing = skip.",
    )
    linker: str = field("project", "Class linker for KF1: project (kg_build.linker.EntityLinker) or simple.")
    int8: bool = field(False, "CPU: evaluate/time int8-quantised models (LoRA merged first).")
    limit: int = field(0, "Evaluate only the first N turns (0 = all).")
    sample: int = field(0, "Evaluate a random sample of N turns (seeded by --seed; 0 = all), the same for every row.")
    batch_size: int = field(16, "Generation / scoring batch size.")
    max_new_tokens: int = field(50, "Max new tokens per reply.")
    top_p: float = field(0.9, "Nucleus sampling p.")
    temperature: float = field(
        0.0, "Sampling temperature (before top-p, as transformers); 0 = the checkpoint's tuned value (generator.json)."
    )
    complete: bool = field(True, "Append recommend-act movies the reply did not name.")
    latency_runs: int = field(20, "Streamed replies timed per backend (0 = skip latency).")
    latency_tokens: int = field(40, "Tokens per timed reply.")
    seed: int = field(42, "Random seed.")
    device: str = field("auto", "auto | cpu | cuda | mps.")
    threads: int = field(0, "torch.set_num_threads (0 = leave).")
    end_to_end_row: str = field(
        "end_to_end",
        "Name of the row computed from --predicted-acts (e.g. gold_intent_walker_tree for the trees walked from the "
        "gold intent, crwalker.evaluate --gold-intent-turns: the reference implementation's generation setting).",
    )
    rows: list[str] = field(
        ["gold_act", "end_to_end", "no_act"],
        "Rows to compute (run rows in separate processes with --out part files, then --merge them); the pseudo-row "
        "'latency' only times each --backends checkpoint (run it alone on a quiet machine).",
    )
    merge: list[str] = field([], "Merge these partial results JSONs (from --rows runs) into --out; nothing is run.")
    bench_json: str = field(
        "", "Latency bench JSON (crwalker.generation.bench); its backends not evaluated here are listed unevaluated."
    )
    out: str = field("results/generation.json", "Results JSON.")
    replies_dir: str = field("runs/generation/eval", "Per-turn replies JSONL folder.")


def _pct(x: float) -> float:
    return 100.0 * x


@torch.inference_mode()
def score_ppl(gen: ActConditionedGenerator, examples: list[GenExample], batch_size: int) -> float:
    """Perplexity of the gold targets given the prompts (pooled over reply tokens, EOS included)."""
    gen.model.eval()
    nll, n = 0.0, 0
    for i in range(0, len(examples), batch_size):
        chunk = examples[i : i + batch_size]
        pairs = [encode_pair(gen.tokenizer, gen.prompt_for(e), e.target(gen.use_act)) for e in chunk]
        s, c = gen.nll(collate(pairs, gen.tokenizer.pad_token_id))
        nll += float(s)
        n += int(c)
    return M.perplexity(nll, n)


def run_row(
    gen: ActConditionedGenerator, examples: list[GenExample], cfg: EvalConfig, finder: TitleFinder, linker, desc: str
) -> tuple[dict, list[dict]]:
    """Generate replies for ``examples`` and compute the row's metrics; returns ``(metrics, per-turn rows)``."""
    # batches of similar prompt length (less left padding); outputs are put back in turn order
    lengths = [len(gen.tokenizer(gen.prompt_for(e), add_special_tokens=False)["input_ids"]) for e in examples]
    order = sorted(range(len(examples)), key=lambda i: lengths[i])
    by_pos: dict[int, tuple[str, str]] = {}
    nll, n_tok = 0.0, 0
    temperature = cfg.temperature or gen.decoding["temperature"]
    for i in tqdm(range(0, len(order), cfg.batch_size), desc=desc, dynamic_ncols=True):
        chunk = [examples[j] for j in order[i : i + cfg.batch_size]]
        raws, s, c = gen.decode_and_score(
            [gen.prompt_for(e) for e in chunk],
            [e.target(gen.use_act) for e in chunk],
            max_new_tokens=cfg.max_new_tokens,
            top_p=cfg.top_p,
            temperature=temperature,
        )
        nll, n_tok = nll + s, n_tok + c
        for j, e, raw in zip(order[i : i + cfg.batch_size], chunk, raws, strict=True):
            by_pos[j] = (raw, postprocess(raw, e, finder, cfg.complete, use_act=gen.use_act))
    outs = [by_pos[i] for i in range(len(examples))]
    hyps = [f for _, f in outs]
    refs = [e.reply_text for e in examples]
    if hasattr(linker, "prepare"):
        linker.prepare(hyps + refs)
    k = M.knowledge_prf(hyps, refs, linker)
    row = {
        "BLEU": _pct(M.bleu_crwalker(hyps, refs)),
        "BLEU_nltk_current": _pct(M.bleu_crwalker(hyps, refs, nltk_smoothing="current")),
        "sacreBLEU": _pct(M.corpus_sacrebleu(hyps, refs)),
        "Dist-2": _pct(M.distinct_corpus(hyps, 2)),
        "Dist-3": _pct(M.distinct_corpus(hyps, 3)),
        "Dist-2_sent": _pct(M.distinct_sentence(hyps, 2)),
        "Dist-3_sent": _pct(M.distinct_sentence(hyps, 3)),
        "KF1": _pct(k["f1"]),
        "KP": _pct(k["precision"]),
        "KR": _pct(k["recall"]),
        "PPL": M.perplexity(nll, n_tok),
        # tokenizer-independent: the same NLL per whitespace word of the target (+1 for its end), so
        # backends with different vocabularies (6k BPE vs SmolLM2's 49k) can be compared
        "PPL_word": M.perplexity(nll, sum(len(e.target(gen.use_act).split()) + 1 for e in examples)),
        "n": len(examples),
        "temperature": temperature,
    }
    turns = [
        {
            "conv_id": e.conv_id,
            "turn_idx": e.turn_idx,
            "intent": e.intent,
            "act_text": e.act_text,
            "prompt": gen.prompt_for(e),
            "raw": raw,
            "reply": fin,
            "gold": e.reply_text,
        }
        for e, (raw, fin) in zip(examples, outs, strict=True)
    ]
    return row, turns


def consistency(turns: list[dict], examples: list[GenExample], finder: TitleFinder, kg, model_only: bool) -> dict:
    """:func:`metrics.movie_consistency` of the final replies (or of the model's own fill, no completion)."""
    replies = [
        fill_placeholders(t["raw"], e.titles, e.intent, complete=False) if model_only else t["reply"]
        for t, e in zip(turns, examples, strict=True)
    ]
    return M.movie_consistency(
        replies,
        [e.titles for e in examples],
        [e.intent == "recommend" for e in examples],
        finder.find,
        allowed_movies=[[kg.entities[m].name for m in e.context_movie_ids] for e in examples],
    )


def latency(gen: ActConditionedGenerator, examples: list[GenExample], cfg: EvalConfig) -> dict:
    """p95 total / first-piece seconds of streamed replies of ``latency_tokens`` tokens (first 2 untimed)."""
    if cfg.latency_runs <= 0 or not examples:
        return {}
    totals, firsts = [], []
    for i in range(cfg.latency_runs + 2):
        e = examples[i % len(examples)]
        tot, first = time_reply(
            gen, (e.context, e.act_text if gen.use_act else None, e.titles, e.intent), cfg.latency_tokens, {}
        )
        if i >= 2:
            totals.append(tot)
            firsts.append(first)
    return {"p95_s": float(np.percentile(totals, 95)), "first_token_p95_s": float(np.percentile(firsts, 95))}


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(EvalConfig, argv)
    if cfg.merge:
        return merge_parts(cfg)
    if not cfg.backends:
        raise SystemExit("give at least one act-conditioned checkpoint: --backends name=folder")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    kg = KnowledgeGraph.load(cfg.kg_dir)
    dlg_path, lab_path = Path(cfg.dialogues_dir) / f"{cfg.split}.jsonl", Path(cfg.labels_dir) / f"{cfg.split}.jsonl"
    examples = build_examples(load_dialogues(dlg_path), lab_path, kg, limit=cfg.limit or None)
    if 0 < cfg.sample < len(examples):
        import random

        keep = sorted(random.Random(cfg.seed).sample(range(len(examples)), cfg.sample))
        examples = [examples[i] for i in keep]
    finder = TitleFinder(kg)
    linker = ProjectClassLinker(kg) if cfg.linker == "project" else ClassLinker(kg)
    replies_dir = Path(cfg.replies_dir)

    rows: dict[str, dict] = {}
    backends: dict[str, dict] = {}
    cons: dict[str, dict] = {}
    skipped = 0
    default = cfg.backends[0].split("=", 1)[0]
    for spec in cfg.backends:
        if "=" not in spec:
            raise SystemExit(f"--backends entries must be name=folder, got {spec!r}")
        name, path = spec.split("=", 1)
        if "latency" in cfg.rows:
            gen = ActConditionedGenerator.load(path, device)
            backends.setdefault(name, {}).update(latency(gen, examples, cfg))
        if "gold_act" not in cfg.rows and not ("end_to_end" in cfg.rows and name == default):
            continue
        torch.manual_seed(cfg.seed)
        gen = ActConditionedGenerator.load(path, device)
        if cfg.int8:
            gen = gen.quantize_int8()
        if not gen.use_act:
            raise SystemExit(f"{path} was trained without acts; pass it as --noact-checkpoint")
        if "gold_act" in cfg.rows:
            row, turns = run_row(gen, examples, cfg, finder, linker, f"gold_act/{name}")
            write_jsonl(replies_dir / f"gold_act__{name}.jsonl", turns)
            backends.setdefault(name, {}).update(
                {
                    **row,
                    **({} if "latency" in cfg.rows else latency(gen, examples, cfg)),
                    "train_minutes": gen.meta.get("train", {}).get("train_minutes"),
                }
            )
            if name == default:
                rows["gold_act"] = row
                cons["gold_act"] = consistency(turns, examples, finder, kg, model_only=False)
                cons["gold_act_model_only"] = consistency(turns, examples, finder, kg, model_only=True)
        if name == default and "end_to_end" in cfg.rows:
            if cfg.predicted_acts and not Path(cfg.predicted_acts).exists():
                print(f"{cfg.predicted_acts} not found: end_to_end row skipped (run crwalker.evaluate first)")
            elif cfg.predicted_acts:
                preds = load_predicted_acts(cfg.predicted_acts)
                e2e = [
                    e.with_act(preds[(e.conv_id, e.turn_idx)], kg) for e in examples if (e.conv_id, e.turn_idx) in preds
                ]
                skipped = len(examples) - len(e2e)
                if e2e:
                    gold_intent = {(e.conv_id, e.turn_idx): e.intent for e in examples}
                    torch.manual_seed(cfg.seed)
                    row_name = cfg.end_to_end_row
                    rows[row_name], turns = run_row(gen, e2e, cfg, finder, linker, row_name)
                    rows[row_name]["intent_acc"] = _pct(intent_accuracy(e2e, gold_intent))
                    write_jsonl(replies_dir / f"{row_name}__{name}.jsonl", turns)
                    cons[row_name] = consistency(turns, e2e, finder, kg, model_only=False)
        del gen
    if cfg.noact_checkpoint and "no_act" in cfg.rows:
        torch.manual_seed(cfg.seed)
        gen = ActConditionedGenerator.load(cfg.noact_checkpoint, device)
        if cfg.int8:
            gen = gen.quantize_int8()
        rows["no_act"], turns = run_row(gen, examples, cfg, finder, linker, "no_act")
        write_jsonl(replies_dir / f"no_act__{Path(cfg.noact_checkpoint).parent.name}.jsonl", turns)

    if cfg.bench_json:
        backends.update({k: v for k, v in bench_backends(cfg.bench_json).items() if k not in backends})
    cols = ["row", "BLEU", "sacreBLEU", "Dist-2", "Dist-3", "KF1", "PPL", "n"]
    print(format_table([{"row": k, **v} for k, v in rows.items()], cols))
    print(format_table([{"row": k, **v} for k, v in backends.items()], cols + ["p95_s", "first_token_p95_s"]))
    payload = {
        "rows": rows,
        "backends": backends,
        "default_backend": default,
        "movie_consistency": cons,
        "split": cfg.split,
        "n_turns": len(examples),
        "skipped_no_prediction": skipped,
    }
    data_files = [dlg_path, lab_path] + ([cfg.predicted_acts] if cfg.end_to_end_row in rows else [])
    return write_results(cfg.out, _finite(payload), config=to_dict(cfg), data_files=data_files)


def merge_parts(cfg: EvalConfig) -> dict:
    """Union of partial results files (rows, backends, consistency) written as one ``--out`` file.

    The first part fixes the split and the number of turns. A part evaluated on another number of turns
    (``--sample``: e.g. a backend too slow for the whole test set) contributes only its ``backends``
    entries, each keeping its own ``n``; its rows are left out.
    """
    from data_scripts.utils.io import read_json

    parts = [read_json(p) for p in cfg.merge]
    if len({p["split"] for p in parts}) != 1:
        raise SystemExit("--merge: the parts were computed on different splits")
    payload: dict = {"rows": {}, "backends": {}, "movie_consistency": {}, "skipped_no_prediction": 0}
    for part in parts:
        for name, values in part["backends"].items():  # a latency-only part adds keys to a backend
            payload["backends"].setdefault(name, {}).update(values)
        if part["n_turns"] != parts[0]["n_turns"]:
            continue  # a sample: backends only
        for key in ("rows", "movie_consistency"):
            payload[key].update(part[key])
        payload["skipped_no_prediction"] += part["skipped_no_prediction"] if "end_to_end" in part["rows"] else 0
        payload.setdefault("default_backend", part["default_backend"])
    payload.update(split=parts[0]["split"], n_turns=parts[0]["n_turns"])
    if cfg.bench_json:
        payload["backends"].update(
            {k: v for k, v in bench_backends(cfg.bench_json).items() if k not in payload["backends"]}
        )
    hashes = {k: v for p in parts for k, v in p.get("data_sha256", {}).items()}
    payload["data_sha256"] = hashes
    payload["parts"] = {
        str(f): {"git_commit": p.get("git_commit"), "config": p.get("config")}
        for f, p in zip(cfg.merge, parts, strict=True)
    }
    cols = ["row", "BLEU", "sacreBLEU", "Dist-2", "Dist-3", "KF1", "PPL", "n"]
    print(format_table([{"row": k, **v} for k, v in payload["rows"].items()], cols))
    return write_results(cfg.out, _finite(payload), config=to_dict(cfg))


def intent_accuracy(predicted: list[GenExample], gold_intent: dict[tuple[str, int], str]) -> float:
    """Fraction of turns whose predicted act's intent equals the gold label's intent."""
    if not predicted:
        return 0.0
    return sum(e.intent == gold_intent[(e.conv_id, e.turn_idx)] for e in predicted) / len(predicted)


def bench_backends(path: str | Path) -> dict[str, dict]:
    """Backends measured only by the latency bench (no full training / test evaluation here).

    One entry per bench backend: its fastest fp32 (else any) run; metric keys are ``None`` and
    ``"evaluated": False``.
    """
    from data_scripts.utils.io import read_json

    out: dict[str, dict] = {}
    runs = read_json(path).get("runs", [])
    for name in dict.fromkeys(r["backend"] for r in runs):
        mine = [r for r in runs if r["backend"] == name]
        best = min([r for r in mine if r["variant"] == "fp32"] or mine, key=lambda r: r["total_p95_s"])
        out[name] = {
            **dict.fromkeys(("BLEU", "sacreBLEU", "Dist-2", "Dist-3", "KF1", "PPL")),
            "p95_s": best["total_p95_s"],
            "first_token_p95_s": best["first_token_p95_s"],
            "train_minutes": None,
            "evaluated": False,
            "latency_source": f"{path}: variant {best['variant']}, {best['threads']} thread(s), {best['n']} runs",
        }
    return out


def _finite(obj):
    """Replace NaN/inf (not valid JSON) by None, recursively."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


if __name__ == "__main__":
    main()
