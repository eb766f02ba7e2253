"""Device selection and seeding helpers (no hard-coded devices anywhere else in :mod:`crwalker`)."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def resolve_device(spec: str = "auto") -> torch.device:
    """Map ``"auto"`` to CUDA when available (else CPU); pass any other torch device string through.

    Under ``torchrun`` with CUDA, ``"auto"`` picks ``cuda:$LOCAL_RANK``.
    """
    if spec != "auto":
        return torch.device(spec)
    if torch.cuda.is_available():
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def derived_seed(*parts: int) -> int:
    """A deterministic 63-bit seed from integers (e.g. ``(seed, epoch, step)``); order matters."""
    h = 1469598103934665603
    for p in parts:
        h = ((h ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) * 1099511628211) & 0x7FFFFFFFFFFFFFFF
    return h
