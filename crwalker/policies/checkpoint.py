"""Checkpoints (safetensors + JSON, written atomically), run logs and device selection.

A run folder (default ``runs/mcr/<dataset>/<policy>/``) holds:

* ``fm.safetensors`` / ``fm.json`` -- the FM recommender (:mod:`crwalker.policies.fm`).
* ``policy.safetensors`` -- the policy network ``state_dict`` (keys as in the module); for UNICORN
  also ``target.*`` (target network) and ``optim.*`` (Adam moments, see :func:`optimizer_tensors`).
* ``policy.json`` -- ``{"policy", "dataset", "config", "episode", "train_minutes", "stats"}``.
* ``train_log.csv`` and ``tb/`` (TensorBoard) -- training curves.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from data_scripts.utils.io import atomic_write, read_json, write_json


def pick_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` if available else ``cpu``."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor]) -> None:
    """Atomically write a safetensors file (tensors are made contiguous CPU copies)."""
    data = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    with atomic_write(path, "wb") as fh:
        fh.write(save(data))


def load_tensors(path: str | os.PathLike, device: str = "cpu") -> dict[str, torch.Tensor]:
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: checkpoint not found (run `python -m crwalker.policies.train` first)")
    return load_file(str(path), device=device)


def optimizer_tensors(opt: torch.optim.Optimizer, prefix: str = "optim.") -> dict[str, torch.Tensor]:
    """Adam state as flat tensors: ``optim.<param index>.<exp_avg|exp_avg_sq|step>``."""
    out = {}
    params = [p for g in opt.param_groups for p in g["params"]]
    for i, p in enumerate(params):
        for k, v in opt.state.get(p, {}).items():
            out[f"{prefix}{i}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    return out


def load_optimizer_tensors(
    opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], prefix: str = "optim."
) -> None:
    params = [p for g in opt.param_groups for p in g["params"]]
    for key, v in tensors.items():
        if not key.startswith(prefix):
            continue
        i, name = key[len(prefix) :].split(".", 1)
        opt.state[params[int(i)]][name] = v.to(params[int(i)].device) if name != "step" else v.cpu()


def save_policy(run_dir: Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Write ``policy.safetensors`` then ``policy.json`` (the JSON marks the checkpoint complete)."""
    save_tensors(run_dir / "policy.safetensors", tensors)
    write_json(run_dir / "policy.json", meta)


def load_policy_meta(run_dir: Path) -> dict:
    return read_json(run_dir / "policy.json")


class RunLogger:
    """Append rows to ``train_log.csv`` and scalars to TensorBoard (``tb/``)."""

    def __init__(self, run_dir: Path, tensorboard: bool = True):
        self.path = run_dir / "train_log.csv"
        run_dir.mkdir(parents=True, exist_ok=True)
        self.fields: list[str] | None = None
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tb"))
            except ImportError:  # pragma: no cover - tensorboard is a declared dependency
                self.tb = None

    def __call__(self, row: dict) -> None:
        new = not self.path.exists()
        if self.fields is None:
            self.fields = list(row)
        with open(self.path, "a", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=self.fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)
        if self.tb is not None:
            step = int(row.get("episode", 0))
            for k, v in row.items():
                if k != "episode" and isinstance(v, int | float):
                    self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
