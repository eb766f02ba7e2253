"""TransE pretraining of the UNICORN graph embeddings (``torch_geometric.nn.kge.TransE``) on the training split.

Triples (node ids as in :mod:`crwalker.policies.unicorn`: users, then items, then attributes):
``(u, interact, v)`` for training interactions, ``(v, belong_to, p)`` for item attributes,
``(u, friend, u')`` and ``(u, like, p)`` from ``user_dict.json``. Validation/test interactions are
never used.

:func:`dot_auc` measures what UNICORN's Eq. 11 needs from the vectors (dot products ranking a user's items);
:func:`link_auc` compares embedding sets (ours vs the released ``transe_embeddings.npz``) on held-out
``(u, interact, v)`` pairs: AUC of ``−‖e_u + r − e_v‖`` against random items, where ``r`` is the mean
training translation ``mean(e_v − e_u)`` (the released file has no relation vectors).

Output: ``transe.safetensors`` (``emb`` float32 [n_nodes, dim]) + ``transe.json`` (config, losses).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch_geometric.nn.kge import TransE

from data_scripts.mcr import MCRData

RELATIONS = ("interact", "belong_to", "friend", "like")


def triples(data: MCRData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(head, relation, tail) int64 arrays over the training graph."""
    U, n_i = data.n_users, data.n_items
    h, r, t = [], [], []
    tr = data.splits["train"]
    h.append(tr[:, 0]), r.append(np.zeros(len(tr), np.int64)), t.append(U + tr[:, 1])
    ptr, idx = data.item_attr_csr
    items = np.repeat(np.arange(n_i), np.diff(ptr))
    h.append(U + items), r.append(np.ones(len(idx), np.int64)), t.append(U + n_i + idx)
    for u, fr in enumerate(data.friends):
        h.append(np.full(len(fr), u)), r.append(np.full(len(fr), 2)), t.append(fr)
    for u, lk in enumerate(data.likes):
        h.append(np.full(len(lk), u)), r.append(np.full(len(lk), 3)), t.append(U + n_i + lk)
    return tuple(np.concatenate(x).astype(np.int64) for x in (h, r, t))


def train_transe(
    data: MCRData,
    dim: int = 64,
    epochs: int = 20,
    batch_size: int = 4096,
    lr: float = 0.01,
    seed: int = 0,
    device: str = "cpu",
    log=print,
    max_seconds: float | None = None,
    p_norm: float = 2.0,
) -> tuple[np.ndarray, dict]:
    """Train TransE; returns (node embeddings [n_nodes, dim], stats).

    The returned embeddings are the ones TransE scores with: PyG's ``TransE`` normalises every entity vector
    to unit ``p_norm`` length before the distance, so the raw table is normalised the same way here. With the
    default ``p_norm = 2``, ``‖h + r − t‖² = const + 2 r·(h − t) − 2 h·t`` for unit vectors, so the dot products
    UNICORN's preference score (Eq. 11) takes are meaningful; with ``p_norm = 1`` they are not (measured in
    ``results/mcr_transe.json``: the dot-product rank of held-out items is worse than random).
    """
    torch.manual_seed(seed)
    h, r, t = (torch.from_numpy(x).to(device) for x in triples(data))
    n_nodes = data.n_users + data.n_items + data.n_attrs
    model = TransE(n_nodes, len(RELATIONS), dim, margin=1.0, p_norm=p_norm).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loader = model.loader(head_index=h, rel_type=r, tail_index=t, batch_size=batch_size, shuffle=True)
    t0, losses = time.time(), []
    for ep in range(epochs):
        tot, n = 0.0, 0
        for hb, rb, tb in loader:
            opt.zero_grad()
            loss = model.loss(hb, rb, tb)
            loss.backward()
            opt.step()
            tot, n = tot + float(loss.detach()) * len(hb), n + len(hb)
        losses.append(tot / n)
        log(f"transe epoch {ep + 1}/{epochs} loss {losses[-1]:.4f} ({time.time() - t0:.1f}s)")
        if max_seconds is not None and time.time() - t0 > max_seconds:
            break
    emb = torch.nn.functional.normalize(model.node_emb.weight.detach(), p=p_norm, dim=-1)
    emb = emb.cpu().numpy().astype(np.float32)
    return emb, {"losses": losses, "seconds": time.time() - t0, "epochs_run": len(losses), "n_triples": int(len(h))}


def link_auc(emb: np.ndarray, data: MCRData, split: str = "test", n_neg: int = 20, seed: int = 0) -> float:
    """AUC of held-out user->item links under a TransE translation (see module docstring)."""
    U = data.n_users
    tr = data.splits["train"]
    rel = (emb[U + tr[:, 1]] - emb[tr[:, 0]]).mean(0)
    pairs = data.splits[split]
    rng = np.random.default_rng(seed)
    q = emb[pairs[:, 0]] + rel
    pos = -np.abs(q - emb[U + pairs[:, 1]]).sum(1)
    neg_items = rng.integers(data.n_items, size=(len(pairs), n_neg))
    neg = -np.abs(q[:, None, :] - emb[U + neg_items]).sum(2)
    return float((pos[:, None] > neg).mean() + 0.5 * (pos[:, None] == neg).mean())


def dot_auc(emb: np.ndarray, data: MCRData, split: str = "test", n_neg: int = 20, seed: int = 0) -> float:
    """AUC of held-out user->item links under the dot product ``e_u·e_v`` that UNICORN's preference score
    (Eq. 11, without accepted attributes) ranks items by: each ``(u, v)`` pair of ``split`` against ``n_neg``
    random items, ties counted half."""
    U = data.n_users
    pairs = data.splits[split]
    rng = np.random.default_rng(seed)
    q = emb[pairs[:, 0]]
    pos = (q * emb[U + pairs[:, 1]]).sum(1)
    neg = np.einsum("bd,bkd->bk", q, emb[U + rng.integers(data.n_items, size=(len(pairs), n_neg))])
    return float((pos[:, None] > neg).mean() + 0.5 * (pos[:, None] == neg).mean())
