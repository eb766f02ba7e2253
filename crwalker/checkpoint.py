"""Checkpoints: one atomic safetensors file per checkpoint plus a readable JSON twin.

``<run>/<stem>.safetensors`` holds ``model.<name>`` tensors, optimizer tensors ``optim.<param>.<key>``
and, in its metadata under ``"state"``, a JSON document ``{"config", "train_state", "param_groups"}``.
Because everything needed to resume lives in one file written with :func:`os.replace`, a crash never
leaves a model and a state that disagree. ``<run>/<stem>.json`` repeats the JSON part for humans.
No pickle anywhere (safetensors + JSON only).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save

from data_scripts.utils.io import atomic_write, write_json


def save_checkpoint(
    path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, config: dict, train_state: dict
) -> Path:
    """Write ``path`` (``.safetensors``) and its ``.json`` twin atomically."""
    path = Path(path)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    groups: list[dict[str, Any]] = []
    if optimizer is not None:
        sd = optimizer.state_dict()
        for pid, st in sd["state"].items():
            for k, v in st.items():
                t = v if isinstance(v, torch.Tensor) else torch.tensor(v)
                tensors[f"optim.{pid}.{k}"] = t.detach().cpu().contiguous()
        groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    doc = {"config": config, "train_state": train_state, "param_groups": groups}
    blob = save(tensors, metadata={"state": json.dumps(doc, sort_keys=True)})
    with atomic_write(path, "wb") as fh:
        fh.write(blob)
    write_json(path.with_suffix(".json"), doc)
    return path


def load_checkpoint(
    path: str | Path,
    model: torch.nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    map_location: str = "cpu",
) -> dict:
    """Load weights (and optimizer state) in place; returns the JSON document.

    Raises:
        FileNotFoundError: with the expected path when the checkpoint is missing.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: checkpoint not found (train first with `python -m crwalker.train`)")
    model_sd: dict[str, torch.Tensor] = {}
    optim_st: dict[int, dict[str, torch.Tensor]] = {}
    with safe_open(str(path), framework="pt", device=map_location) as f:
        doc = json.loads(f.metadata()["state"])
        for k in f.keys():  # noqa: SIM118 (safe_open is not iterable)
            if k.startswith("model."):
                model_sd[k[len("model.") :]] = f.get_tensor(k)
            elif k.startswith("optim."):
                _, pid, key = k.split(".", 2)
                optim_st.setdefault(int(pid), {})[key] = f.get_tensor(k)
    if model is not None:
        model.load_state_dict(model_sd, strict=True)
    if optimizer is not None and doc.get("param_groups"):
        groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in doc["param_groups"]]
        optimizer.load_state_dict({"state": optim_st, "param_groups": groups})
    return doc


def read_checkpoint_doc(path: str | Path) -> dict:
    """Only the JSON document of a checkpoint (config + train state)."""
    with safe_open(str(path), framework="pt", device="cpu") as f:
        return json.loads(f.metadata()["state"])
