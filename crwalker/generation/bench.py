"""Latency benchmark of reply generation on this machine: p95 total and first-streamed-piece time.

Each run streams one reply through :meth:`ActConditionedGenerator.stream` (the product path:
``TextIteratorStreamer`` + placeholder filling) with exactly ``tokens`` new tokens
(``min_new_tokens = max_new_tokens``, the worst case of a "reply of <= 40 tokens"), nucleus sampling
``top_p=0.9``. ``first_token_s`` is the time until the first non-empty streamed piece reaches the
caller; ``total_s`` until the stream ends. Variants (``--variants``):

* ``fp32`` -- float32, KV cache, ``torch.inference_mode`` (the default path);
* ``fp32-nocache`` -- ``use_cache=False`` (what the KV cache saves);
* ``bf16`` -- weights in bfloat16;
* ``int8`` -- ``torch.ao.quantization.quantize_dynamic`` on ``nn.Linear`` (int8 weights, fp32 activations);
* ``compile`` -- ``torch.compile`` of the model forward (slow first call; warm-up runs absorb it).

Targets: p95 total <= 1.2 s and first token <= 0.4 s. Output: a Markdown table on stdout and
``results/generation_bench.json`` (via ``write_results``)::

    {"runs": [{"backend", "variant", "threads", "n", "tokens", "total_p50_s", "total_p95_s",
               "first_token_p50_s", "first_token_p95_s", "tokens_per_s", "load_s"}], "targets": {...}, "complete",
     "git_commit", "config"}

Example::

    python -m crwalker.generation.bench --backends smollm2 --variants fp32 bf16 int8 --threads 1 2
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from data_scripts.utils.config import field, parse_config, to_dict
from data_scripts.utils.results import format_table, write_results

from .model import ActConditionedGenerator, BackendSpec

#: Representative (context, act) pairs written for the benchmark (not taken from the dataset).
BENCH_PROMPTS: list[tuple[str, str, list[str], str]] = [
    (
        "Hi! I am looking for a scary movie from the 80s.",
        "[ Recommend ( Alien (1979) ( Horror ) ( Sigourney Weaver ) ) ]",
        ["Alien (1979)"],
        "recommend",
    ),
    (
        "I loved Alien (1979), anything else with action?",
        "[ Recommend ( Aliens (1986) ( James Cameron ) ) ( The Terminator (1984) ( Action ) ) ]",
        ["Aliens (1986)", "The Terminator (1984)"],
        "recommend",
    ),
    ("hello", "[ Query ( Genre ) ]", [], "query"),
    ("I like comedies like Superbad (2007).", "[ Chat ( Superbad (2007) ( Comedy ) ) ]", ["Superbad (2007)"], "chat"),
]


TARGETS = {"total_p95_s": 1.2, "first_token_p95_s": 0.4}


@dataclass
class BenchConfig:
    """Reply-generation latency benchmark."""

    backends: list[str] = field(["smollm2"], "Backends (gpt2, gpt2-scratch, smollm2) or name=checkpoint_dir.")
    variants: list[str] = field(["fp32"], "Variants: fp32, fp32-nocache, bf16, int8, compile.")
    threads: list[int] = field([1], "torch.set_num_threads values to try.")
    runs: int = field(20, "Timed replies per (backend, variant, threads).")
    warmup: int = field(2, "Untimed replies first.")
    tokens: int = field(40, "New tokens per reply (min = max).")
    gpt2_model: str = field("gpt2", "Hub name or path for backend gpt2.")
    seed: int = field(0, "Random seed.")
    out: str = field("results/generation_bench.json", "Results JSON.")
    append: bool = field(
        False, "Keep the runs already in --out except those re-measured now (same backend, variant, threads)."
    )


def _load(backend: str, cfg: BenchConfig) -> tuple[str, ActConditionedGenerator]:
    if "=" in backend:
        name, path = backend.split("=", 1)
        return name, ActConditionedGenerator.load(path)
    spec = BackendSpec(backend=backend, model=cfg.gpt2_model)
    return backend, ActConditionedGenerator.create(spec)


def _variant(gen: ActConditionedGenerator, variant: str) -> tuple[ActConditionedGenerator, dict]:
    """A (possibly converted) copy of the generator plus extra generate kwargs."""
    import copy

    if variant == "fp32":
        return gen, {}
    if variant == "fp32-nocache":
        return gen, {"use_cache": False}
    g = copy.copy(gen)
    if variant == "bf16":
        g.model = copy.deepcopy(gen.model).to(torch.bfloat16)
    elif variant == "int8":
        g = gen.quantize_int8()
    elif variant == "compile":
        g.model = copy.deepcopy(gen.model)
        g.model.forward = torch.compile(g.model.forward, dynamic=True)
    else:
        raise ValueError(f"unknown variant {variant!r}")
    return g, {}


def time_reply(gen: ActConditionedGenerator, prompt: tuple, tokens: int, extra: dict) -> tuple[float, float]:
    """``(total seconds, seconds to first streamed piece)`` for one streamed reply."""
    context, act, titles, intent = prompt
    t0 = time.perf_counter()
    first = None
    for _piece in gen.stream(context, act, titles, intent, max_new_tokens=tokens, min_new_tokens=tokens, **extra):
        if first is None:
            first = time.perf_counter() - t0
    total = time.perf_counter() - t0
    return total, first if first is not None else total


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(BenchConfig, argv)
    torch.manual_seed(cfg.seed)
    kept = _previous_runs(cfg.out) if cfg.append else []
    rows: list[dict] = []

    def save(complete: bool) -> dict:
        new = {(r["backend"], r["variant"], r["threads"]) for r in rows}
        old = [r for r in kept if (r["backend"], r["variant"], r["threads"]) not in new]
        return write_results(
            cfg.out, {"runs": old + rows, "targets": TARGETS, "complete": complete}, config=to_dict(cfg)
        )

    for backend in cfg.backends:
        t0 = time.perf_counter()
        name, base = _load(backend, cfg)
        load_s = time.perf_counter() - t0
        base.model.eval()
        for variant in cfg.variants:
            try:
                gen, extra = _variant(base, variant)
            except Exception as exc:  # noqa: BLE001 - report and go on with the other variants
                print(f"{name}/{variant}: skipped ({type(exc).__name__}: {exc})")
                continue
            for threads in cfg.threads:
                torch.set_num_threads(threads)
                for i in range(cfg.warmup):
                    time_reply(gen, BENCH_PROMPTS[i % len(BENCH_PROMPTS)], cfg.tokens, extra)
                totals, firsts = [], []
                for i in range(cfg.runs):
                    tot, first = time_reply(gen, BENCH_PROMPTS[i % len(BENCH_PROMPTS)], cfg.tokens, extra)
                    totals.append(tot)
                    firsts.append(first)
                row = {
                    "backend": name,
                    "variant": variant,
                    "threads": threads,
                    "n": cfg.runs,
                    "tokens": cfg.tokens,
                    "total_p50_s": float(np.percentile(totals, 50)),
                    "total_p95_s": float(np.percentile(totals, 95)),
                    "first_token_p50_s": float(np.percentile(firsts, 50)),
                    "first_token_p95_s": float(np.percentile(firsts, 95)),
                    "tokens_per_s": cfg.tokens / float(np.median(totals)),
                    "load_s": load_s,
                    "measured_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                }
                rows.append(row)
                print(format_table([row], list(row)), flush=True)
                # rewrite after every row so an interrupted run still leaves its measurements
                save(complete=False)
    cols = [
        "backend",
        "variant",
        "threads",
        "total_p50_s",
        "total_p95_s",
        "first_token_p50_s",
        "first_token_p95_s",
        "tokens_per_s",
    ]
    print(format_table(rows, cols))
    return save(complete=True)


def _previous_runs(path: str) -> list[dict]:
    """Runs of an existing bench JSON (empty if there is none)."""
    from pathlib import Path

    from data_scripts.utils.io import read_json

    return list(read_json(path).get("runs", [])) if Path(path).exists() else []


if __name__ == "__main__":
    main()
