"""Chat latency benchmark: replay ReDial test seeker turns through fresh sessions.

``python -m crwalker.engine.bench --bundle release/bundle --turns 100 --out results/chat_benchmark.json``

Dialogues of ``data/redial/test.jsonl`` are taken in file order; each gets a fresh
:class:`~crwalker.engine.Session` and its seeker turns (``text``, titles rendered as a person would
type them) are sent one by one (at most ``--max-turns-per-session``), the system side being the
engine's own replies. Measured per turn: reasoning (link + encode + walk) in ms, the first streamed
reply piece and the whole turn in s. ``--warmup`` turns (another dialogue) run first and are not
counted. ``clone_to_first_reply_s`` (fresh clone to first reply in the browser) is measured by hand and
only recorded when passed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from data_scripts.utils.config import field, parse_config, to_dict
from data_scripts.utils.io import iter_jsonl
from data_scripts.utils.results import format_table, write_results

TARGETS = {"reasoning_p95_ms": 100.0, "turn_p95_s": 1.5, "first_token_p95_s": 0.4}


@dataclasses.dataclass
class BenchConfig:
    """Replay ReDial test seeker turns through the online engine and measure latency."""

    bundle: str = field("", "Release bundle folder (or give --walker and --generator).")
    walker: str = field("", "Walker checkpoint when no bundle is given.")
    generator: str = field("", "Generator folder when no bundle is given.")
    kg: str = field("data/kg", "KG folder.")
    dialogues: str = field("data/redial/test.jsonl", "Canonical ReDial dialogues (the TEST split).")
    turns: int = field(100, "Measured turns.")
    max_turns_per_session: int = field(8, "Seeker turns replayed per dialogue (multi-turn sessions).")
    warmup: int = field(2, "Unmeasured warm-up turns first.")
    threshold: float = field(0.5, "tau.")
    width: int = field(5, "m.")
    max_leaves: int = field(10, "Leaf cap.")
    max_new_tokens: int = field(50, "Reply length cap (tokens).")
    threads: int = field(1, "torch CPU threads (the machine is shared).")
    device: str = field("cpu", "Device.")
    seed: int = field(0, "Sampling seed.")
    linker_options: str = field("", 'JSON object of kg_build.linker.LinkerOptions overrides, e.g. {"use_ner": false}.')
    out: str = field("runs/chat_benchmark.json", "Output JSON (results/chat_benchmark.json for the release run).")
    clone_to_first_reply_s: float = field(-1.0, "Measured clone-to-first-reply seconds (< 0 = not measured).")


def seeker_sessions(path: str | Path, max_turns: int) -> list[list[str]]:
    """Per dialogue, its first ``max_turns`` non-empty seeker texts."""
    out = []
    for d in iter_jsonl(path):
        texts = [str(t.get("text", "")) for t in d.get("turns", []) if t.get("role") == "seeker"]
        texts = [t for t in texts if t.strip()][:max_turns]
        if texts:
            out.append(texts)
    return out


def pct(xs: list[float], q: float) -> float | None:
    return float(np.percentile(xs, q)) if xs else None


def run(cfg: BenchConfig, argv: list[str] | None = None) -> dict:
    """Load the engine, replay turns, write ``cfg.out``; returns the payload."""
    from crwalker.engine import Engine, WalkControls

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    kw = {"gen_kwargs": {"max_new_tokens": cfg.max_new_tokens}, "kg": cfg.kg, "device": cfg.device}
    kw["linker_options"] = json.loads(cfg.linker_options) if cfg.linker_options else None
    if cfg.bundle:
        eng = Engine.load(bundle=cfg.bundle, **kw)
    else:
        eng = Engine.load(walker=cfg.walker, generator=cfg.generator, **kw)
    load_s = time.perf_counter() - t0
    controls = WalkControls(cfg.threshold, cfg.width, cfg.max_leaves)
    sessions = seeker_sessions(cfg.dialogues, cfg.max_turns_per_session)
    warm = eng.new_session()
    for text in sessions[-1][: cfg.warmup]:
        warm.say(text, controls)
    rows: list[dict] = []
    n_sessions = 0
    for texts in sessions:
        if len(rows) >= cfg.turns:
            break
        s = eng.new_session()
        n_sessions += 1
        for text in texts:
            if len(rows) >= cfg.turns:
                break
            r = s.say(text, controls)
            rows.append(
                {**r.timings, "intent": r.intent, "n_recs": len(r.recommendations), "reply_chars": len(r.reply)}
            )
            if len(rows) % 10 == 0:
                print(f"{len(rows)} turns, last: {r.timings}", flush=True)
    reasoning = [r["reasoning_ms"] for r in rows]
    turn = [r["total_s"] for r in rows]
    first = [r["first_token_s"] for r in rows]
    payload = {
        "turns": len(rows),
        "sessions": n_sessions,
        "reasoning_p50_ms": pct(reasoning, 50),
        "reasoning_p95_ms": pct(reasoning, 95),
        "reasoning_cpu_p95_ms": pct([r["reasoning_cpu_ms"] for r in rows], 95),
        "link_p95_ms": pct([r["link_ms"] for r in rows], 95),
        "encode_p95_ms": pct([r["encode_ms"] for r in rows], 95),
        "walk_p95_ms": pct([r["walk_ms"] for r in rows], 95),
        "turn_p50_s": pct(turn, 50),
        "turn_p95_s": pct(turn, 95),
        "first_token_p50_s": pct(first, 50),
        "first_token_p95_s": pct(first, 95),
        "clone_to_first_reply_s": cfg.clone_to_first_reply_s if cfg.clone_to_first_reply_s >= 0 else None,
        "engine_load_s": round(load_s, 2),
        "rgcn_once_s": round(eng.h_seconds, 3),
        "intents": {k: sum(r["intent"] == k for r in rows) for k in ("recommend", "query", "chat")},
        "targets": TARGETS,
        "targets_met": {},
        "load_average_1m": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
        "generator": (eng.manifest.get("generator") or {}).get("spec") or eng.manifest.get("generator"),
    }
    payload["targets_met"] = {k: (payload[k] is not None and payload[k] <= v) for k, v in TARGETS.items()}
    write_results(cfg.out, payload, config=to_dict(cfg), data_files=[cfg.dialogues])
    cols = ["metric", "p50", "p95", "target (p95)"]
    table = [
        {"metric": "reasoning ms", "p50": payload["reasoning_p50_ms"], "p95": payload["reasoning_p95_ms"],
         "target (p95)": TARGETS["reasoning_p95_ms"]},
        {"metric": "first token s", "p50": payload["first_token_p50_s"], "p95": payload["first_token_p95_s"],
         "target (p95)": TARGETS["first_token_p95_s"]},
        {"metric": "whole turn s", "p50": payload["turn_p50_s"], "p95": payload["turn_p95_s"],
         "target (p95)": TARGETS["turn_p95_s"]},
    ]  # fmt: skip
    print(
        f"{len(rows)} turns in {n_sessions} sessions (load {load_s:.1f} s, load average {payload['load_average_1m']})"
    )
    print(format_table(table, cols))
    return payload


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(BenchConfig, argv)
    if not cfg.bundle and not (cfg.walker and cfg.generator):
        print("error: give --bundle or both --walker and --generator")
        return 2
    run(cfg, argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
