"""Factorization-machine recommender with BPR training (EAR, Lei et al. WSDM 2020, §3.2; reused by SCPR).

Item score (EAR Eq. 1): ``y(u, v, P_u) = u·v + Σ_{p ∈ P_u} v·p``.
Attribute score (EAR Eq. 4): ``g(p | u, P_u) = u·p + Σ_{p' ∈ P_u} p·p'``.

Training (EAR Eq. 2-5, BPR): for a training interaction (u, v) a known-attribute set ``P_u`` is a random
non-empty subset of ``v``'s attributes. Two item pairs -- ``v`` against a random item (D1) and against
an item sharing an attribute of ``P_u`` (D2, the "hard" negatives of the candidate space) -- and one
attribute pair -- an unknown attribute of ``v`` against an attribute ``v`` lacks -- each add
``-ln σ(pos - neg)``; plus L2 on the used embeddings.

Checkpoint: ``fm.safetensors`` (``user``, ``item``, ``attr`` float32) + ``fm.json`` (config, losses).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from data_scripts.mcr import MCRData
from data_scripts.utils.config import field
from data_scripts.utils.io import atomic_write, read_json, write_json


@dataclasses.dataclass
class FMConfig:
    """FM + BPR training options."""

    dim: int = field(64, "Embedding size.")
    epochs: int = field(30, "Passes over the training interactions.")
    batch_size: int = field(1024, "Interactions per step.")
    lr: float = field(1e-2, "Adam learning rate.")
    l2: float = field(1e-5, "L2 weight on used embeddings.")
    seed: int = field(0, "Random seed.")


class FMModel(nn.Module):
    """Embedding tables of the FM; attribute index ``n_attrs`` is a zero padding row."""

    def __init__(self, n_users: int, n_items: int, n_attrs: int, dim: int):
        super().__init__()
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items, dim)
        self.attr = nn.Embedding(n_attrs + 1, dim, padding_idx=n_attrs)
        for e in (self.user, self.item, self.attr):
            nn.init.normal_(e.weight, std=0.01)
        with torch.no_grad():
            self.attr.weight[n_attrs].zero_()

    def query(self, users: torch.Tensor, known: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """``u + Σ_{p∈P_u} p``; ``known`` is the flat attribute list, ``offsets`` the start of each row."""
        return self.user(users) + nn.functional.embedding_bag(known, self.attr.weight, offsets, mode="sum")


class FM:
    """Inference-side FM (numpy). ``query(u, P_u) @ item`` gives EAR Eq. 1 scores."""

    def __init__(self, user: np.ndarray, item: np.ndarray, attr: np.ndarray):
        self.user, self.item, self.attr = user, item, attr

    def query(self, user: int, accepted: list[int]) -> np.ndarray:
        """The vector ``u + Σ_{p ∈ P_u} p``."""
        return self.user[user] + self.attr[accepted].sum(0)

    def item_scores(self, user: int, accepted: list[int], items: np.ndarray) -> np.ndarray:
        """EAR Eq. 1 for ``items``."""
        return self.item[items] @ self.query(user, accepted)

    def attr_scores(self, user: int, accepted: list[int]) -> np.ndarray:
        """EAR Eq. 4 for all attributes."""
        return self.attr @ self.query(user, accepted)

    def save(self, out_dir: str | Path, meta: dict) -> None:
        from safetensors.numpy import save

        out_dir = Path(out_dir)
        with atomic_write(out_dir / "fm.safetensors", "wb") as fh:
            fh.write(save({"user": self.user, "item": self.item, "attr": self.attr}))
        write_json(out_dir / "fm.json", meta)

    @classmethod
    def load(cls, out_dir: str | Path) -> FM:
        from safetensors.numpy import load_file

        t = load_file(str(Path(out_dir) / "fm.safetensors"))
        return cls(t["user"], t["item"], t["attr"])


def _bpr(pos: torch.Tensor, neg: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    loss = -nn.functional.logsigmoid(pos - neg)
    if mask is not None:
        return (loss * mask).sum() / mask.sum().clamp(min=1)
    return loss.mean()


def train_fm(data: MCRData, cfg: FMConfig, device: str = "cpu", log=print) -> tuple[FM, dict]:
    """Train the FM with BPR on ``data.splits["train"]``; returns (model, stats)."""
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    n_a = data.n_attrs
    lens = np.array([len(a) for a in data.item_attrs])
    pad = np.full((data.n_items, lens.max()), n_a, dtype=np.int64)
    for v, a in enumerate(data.item_attrs):
        pad[v, : len(a)] = a
    ai_ptr, ai_idx = data.attr_item_csr
    model = FMModel(data.n_users, data.n_items, n_a, cfg.dim).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    pairs = data.splits["train"]
    t0, losses = time.time(), []
    for ep in range(cfg.epochs):
        order = rng.permutation(len(pairs))
        tot, nb = 0.0, 0
        for s in range(0, len(order), cfg.batch_size):
            b = pairs[order[s : s + cfg.batch_size]]
            u, v = b[:, 0], b[:, 1]
            n = len(b)
            L = lens[v]
            valid = np.arange(pad.shape[1])[None, :] < L[:, None]
            known = (rng.random(valid.shape) < 0.5) & valid
            j0 = (rng.random(n) * L).astype(np.int64)
            known[np.arange(n), j0] = True
            a0 = pad[v, j0]
            neg_rand = rng.integers(data.n_items, size=n)
            cnt = ai_ptr[a0 + 1] - ai_ptr[a0]
            neg_hard = ai_idx[ai_ptr[a0] + (rng.random(n) * cnt).astype(np.int64)]
            unknown = valid & ~known
            has_unknown = unknown.any(1)
            pos_j = np.argmax(unknown * rng.random(unknown.shape), axis=1)
            pos_attr = np.where(has_unknown, pad[v, pos_j], n_a)
            neg_attr = rng.integers(n_a, size=n)
            attr_ok = has_unknown & ~(pad[v] == neg_attr[:, None]).any(1)

            ut = torch.from_numpy(u).to(device)
            vt = torch.from_numpy(v).to(device)
            flat = pad[v][known]
            offsets = np.concatenate(([0], np.cumsum(known.sum(1))[:-1]))
            q = model.query(ut, torch.from_numpy(flat).to(device), torch.from_numpy(offsets).to(device))
            s_pos = (q * model.item(vt)).sum(1)
            s_rand = (q * model.item(torch.from_numpy(neg_rand).to(device))).sum(1)
            s_hard = (q * model.item(torch.from_numpy(neg_hard).to(device))).sum(1)
            pa = model.attr(torch.from_numpy(pos_attr).to(device))
            na = model.attr(torch.from_numpy(neg_attr).to(device))
            mask = torch.from_numpy(attr_ok.astype(np.float32)).to(device)
            loss = _bpr(s_pos, s_rand) + _bpr(s_pos, s_hard, (torch.from_numpy(neg_hard != v)).float().to(device))
            loss = loss + _bpr((q * pa).sum(1), (q * na).sum(1), mask)
            reg = model.user(ut).pow(2).sum(1).mean() + model.item(vt).pow(2).sum(1).mean()
            loss = loss + cfg.l2 * reg
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot, nb = tot + float(loss.detach()), nb + 1
        losses.append(tot / max(nb, 1))
        log(f"fm epoch {ep + 1}/{cfg.epochs} loss {losses[-1]:.4f} ({time.time() - t0:.1f}s)")
    w = {k: getattr(model, k).weight.detach().cpu().numpy().astype(np.float32) for k in ("user", "item", "attr")}
    fm = FM(w["user"], w["item"], w["attr"][:n_a])
    return fm, {"losses": losses, "train_seconds": time.time() - t0, "config": dataclasses.asdict(cfg)}


def load_or_train_fm(data: MCRData, out_dir: str | Path, cfg: FMConfig, device: str = "cpu", log=print) -> FM:
    """Load ``out_dir/fm.safetensors`` if its config matches ``cfg``; else train and save it."""
    out_dir = Path(out_dir)
    meta_path = out_dir / "fm.json"
    if meta_path.exists() and read_json(meta_path).get("config") == json.loads(json.dumps(dataclasses.asdict(cfg))):
        return FM.load(out_dir)
    fm, stats = train_fm(data, cfg, device, log)
    fm.save(out_dir, {**stats, "dataset": data.name})
    return fm
