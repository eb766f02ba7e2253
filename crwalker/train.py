"""Train the CR-Walker reasoning model: ``python -m crwalker.train [--config x.yaml] [--option value ...]``.

Outputs under ``<runs>/<name>/``:

* ``config.json`` - the full :class:`~crwalker.config.TrainConfig`.
* ``last.safetensors`` / ``best.safetensors`` (+ ``.json`` twins) - see :mod:`crwalker.checkpoint`;
  ``best`` has the highest validation ``select_metric``.
* ``metrics.csv`` - one row per epoch (losses, validation metrics, seconds); ``tb/`` - TensorBoard.
* ``features.json`` - feature-extraction statistics (pairs, unique, newly encoded, seconds).

Determinism and resume: data order, negative samples and dropout are functions of
``(seed, epoch, step)`` only, so ``--resume`` after a kill continues from the last finished epoch and
reaches bit-identical weights to an uninterrupted run (on the same device/thread count).
Multi-process training: launch with ``torchrun --nproc_per_node N -m crwalker.train``; each rank takes
every N-th batch and gradients are averaged by ``DistributedDataParallel``.
"""

from __future__ import annotations

import csv
import io
import math
import os
import sys
import time
from pathlib import Path

import torch

from crwalker.candidates import CandidateSets
from crwalker.checkpoint import load_checkpoint, save_checkpoint
from crwalker.config import TrainConfig, model_config_of
from crwalker.data import batch_order, build_examples, collate, load_dialogues, structured_examples
from crwalker.device import derived_seed, resolve_device, seed_everything
from crwalker.features import attach_features
from crwalker.inference import predict_examples, prediction_metrics
from crwalker.walker import CRWalker
from data_scripts.utils.config import parse_config, to_dict
from data_scripts.utils.io import atomic_write, write_json
from kg_build.labels import check_labels_match_kg
from kg_build.schema import KnowledgeGraph


def _dist_setup() -> tuple[int, int]:
    """Initialise torch.distributed under torchrun (``WORLD_SIZE`` > 1); returns ``(rank, world)``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and torch.distributed.is_available():
        if not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    cols = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    w.writerows(rows)
    with atomic_write(path) as fh:
        fh.write(buf.getvalue())


def load_split(cfg, split: str, cands: CandidateSets, limit: int = 0):
    """Examples of one label split (joined with its dialogues)."""
    dlg = load_dialogues(Path(cfg.dialogues) / f"{split}.jsonl")
    return build_examples(Path(cfg.labels) / f"{split}.jsonl", dlg, cands, cfg.history, limit)


def train(cfg: TrainConfig, encoder=None, log=print) -> dict:
    """Run training; returns ``{"best", "best_epoch", "epochs_run", "minutes", "run_dir"}``.

    Args:
        cfg: the configuration.
        encoder: optional preloaded ``(tokenizer, bert)`` (tests pass a tiny random BERT).
        log: message sink (rank 0 only).
    """
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    rank, world = _dist_setup()
    is_main = rank == 0
    device = resolve_device(cfg.device)
    if device.type == "cpu" and cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    run_dir = Path(cfg.runs) / cfg.name
    t_start = time.perf_counter()

    kg = KnowledgeGraph.load(cfg.kg)
    check_labels_match_kg(cfg.labels, cfg.kg)
    cands = CandidateSets(kg)
    train_ex = load_split(cfg, "train", cands, cfg.max_train_examples)
    valid_ex = load_split(cfg, "valid", cands, cfg.max_valid_examples)
    if cfg.use_structured:
        extra = structured_examples(Path(cfg.dialogues) / "structured_train.jsonl", kg, cands)
        log(f"structured: +{len(extra)} text-free recommend examples")
        train_ex = train_ex + extra

    def features():  # the main process encodes missing pairs first; the others then read the cache
        return attach_features(
            train_ex + valid_ex, cfg.cache, cfg.bert, cfg.bert_max_length, cfg.encode_batch, device, encoder, log,
            pooling=cfg.bert_pooling, intent_pairs=cfg.intent_utterance,
        )  # fmt: skip

    if is_main:
        feats, fstats = features()
        write_json(run_dir / "features.json", fstats)
    if world > 1:
        torch.distributed.barrier()
    if not is_main:
        feats, fstats = features()
    log(f"{kg.describe()}\ntrain {len(train_ex)} / valid {len(valid_ex)} examples; features {fstats}")
    if cfg.refit:  # refit on train + valid with the epochs chosen before; nothing is held out
        train_ex, valid_ex = train_ex + valid_ex, []
        log(f"--refit: training on train + valid ({len(train_ex)} examples) for {cfg.epochs} epochs, no validation")

    model = CRWalker(model_config_of(cfg), kg, feats.shape[1]).to(device)
    opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    opt = opt_cls(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    state = {
        "epoch": 0,
        "best": -math.inf,
        "best_epoch": 0,
        "bad_epochs": 0,
        "history": [],
        "step": 0,
        "train_seconds": 0.0,
    }
    last = run_dir / "last.safetensors"
    if cfg.resume and last.exists():
        doc = load_checkpoint(last, model, opt, map_location=str(device))
        state = doc["train_state"]
        log(f"resumed from {last} after epoch {state['epoch']}")
    elif is_main and last.exists() and not cfg.resume:
        log(f"warning: {last} exists; starting over (use --resume to continue)")
    conf = to_dict(cfg)
    if is_main:
        write_json(run_dir / "config.json", conf)
    ddp = model
    if world > 1:
        ddp = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
        )
    writer = SummaryWriter(str(run_dir / "tb")) if is_main else None
    feats_dev = feats  # collate indexes on CPU, the batch is moved afterwards

    for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
        if state["bad_epochs"] >= cfg.patience:
            break
        t0 = time.perf_counter()
        torch.manual_seed(derived_seed(cfg.seed, epoch, 1))  # dropout stream of this epoch
        model.train()
        batches = batch_order(len(train_ex), cfg.batch_size, cfg.seed, epoch, True, rank, world)
        sums = {"loss": 0.0, "loss_intent": 0.0, "loss_hop1": 0.0, "loss_hop2": 0.0}
        bar = tqdm(batches, desc=f"epoch {epoch}", unit="batch", disable=not is_main, file=sys.stderr)
        for step, idx in enumerate(bar):
            gen = torch.Generator().manual_seed(derived_seed(cfg.seed, epoch, step, 2))
            batch = collate(
                [train_ex[i] for i in idx],
                feats_dev,
                cands,
                cfg.neg_ratio,
                gen,
                cfg.variant,
                max_hop2=cfg.max_hop2_candidates,
            ).to(device)
            out = ddp(batch, cfg.lambda1, cfg.lambda2)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()
            state["step"] += 1
            for k in sums:
                sums[k] += float(getattr(out, k).detach())
            if writer and state["step"] % cfg.log_every == 0:
                writer.add_scalar("train/loss", float(out.loss.detach()), state["step"])
            bar.set_postfix(loss=f"{sums['loss'] / (step + 1):.4f}")
        n = max(1, len(batches))
        row = {"epoch": epoch, **{f"train_{k}": v / n for k, v in sums.items()}}
        if is_main:
            if valid_ex:
                preds = predict_examples(model, valid_ex, feats, cands, device, batch_size=64)
                val = prediction_metrics(valid_ex, preds)
                row.update({f"valid_{k}": v for k, v in val.items()})
                score = float(val[cfg.select_metric])
            else:  # --refit: the last epoch is the model
                val, score = {"intent_acc": float("nan")}, float(epoch)
            row["seconds"] = round(time.perf_counter() - t0, 1)
            state["train_seconds"] = state.get("train_seconds", 0.0) + row["seconds"]
            improved = score > state["best"]
            if improved:
                state.update(best=score, best_epoch=epoch, bad_epochs=0)
            else:
                state["bad_epochs"] += 1
            state["epoch"] = epoch
            state["history"].append(row)
            if improved:
                save_checkpoint(run_dir / "best.safetensors", model, None, conf, dict(state))
            save_checkpoint(last, model, opt, conf, state)
            _write_csv(run_dir / "metrics.csv", state["history"])
            for k, v in row.items():
                if k != "epoch" and isinstance(v, float):
                    writer.add_scalar(k.replace("_", "/", 1), v, epoch)
            writer.flush()
            shown = f"valid {cfg.select_metric} {score:.4f} intent {val['intent_acc']:.3f}" if valid_ex else "refit"
            log(f"epoch {epoch}: loss {row['train_loss']:.4f} {shown} ({row['seconds']}s){' *' if improved else ''}")
        if world > 1:
            obj = [state]
            torch.distributed.broadcast_object_list(obj, src=0)
            state = obj[0]
        if cfg.stop_after_epoch and epoch >= cfg.stop_after_epoch:
            log(f"stopping after epoch {epoch} (--stop-after-epoch)")
            break
    if writer:
        writer.close()
    minutes = (time.perf_counter() - t_start) / 60
    summary = {
        "best": state["best"],
        "best_epoch": state["best_epoch"],
        "epochs_run": state["epoch"],
        "minutes_this_process": round(minutes, 2),
        "train_minutes": round(state.get("train_seconds", 0.0) / 60, 2),
        "run_dir": str(run_dir),
    }
    if is_main:
        write_json(run_dir / "summary.json", summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(TrainConfig, argv)
    summary = train(cfg)
    print(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
