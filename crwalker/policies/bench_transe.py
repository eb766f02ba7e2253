"""Compare our TransE embeddings with the released LastFM ``transe_embeddings.npz``.

``python -m crwalker.policies.bench_transe [--ours runs/mcr/lastfm/unicorn/transe.safetensors]``
prints a table and writes ``results/mcr_transe.json``: held-out link AUC (valid and test user->item
pairs against 20 random items, :func:`crwalker.policies.transe.link_auc`) and the mean cosine similarity
between the two embedding sets after an orthogonal Procrustes alignment (0 = unrelated spaces).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from crwalker.policies.transe import link_auc
from data_scripts.mcr import load, load_transe
from data_scripts.utils.results import format_table, write_results


def procrustes_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean row cosine between ``a @ R`` and ``b`` for the best orthogonal ``R`` (centred, unit-normalised)."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    u, _, vt = np.linalg.svd(a.T @ b)
    ar = a @ (u @ vt)
    num = (ar * b).sum(1)
    den = np.linalg.norm(ar, axis=1) * np.linalg.norm(b, axis=1) + 1e-12
    return float((num / den).mean())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default="../shared/datasets/mcr")
    ap.add_argument("--ours", default="runs/mcr/lastfm/unicorn/transe.safetensors")
    ap.add_argument("--out", default="results/mcr_transe.json")
    a = ap.parse_args(argv)
    data = load("lastfm", a.data_root)
    rel = load_transe(Path(a.data_root) / "lastfm" / "transe_embeddings.npz", data)
    released = np.concatenate([rel["user"], rel["item"], rel["attr"]])
    ours = load_file(a.ours)["emb"]
    rows = []
    for name, emb in (("released", released), ("ours", ours)):
        rows.append(
            {"embeddings": name, "AUC_valid": link_auc(emb, data, "valid"), "AUC_test": link_auc(emb, data, "test")}
        )
    cos = procrustes_cosine(ours, released)
    print(format_table(rows, ["embeddings", "AUC_valid", "AUC_test"]))
    print(f"Procrustes-aligned mean cosine(ours, released) = {cos:.3f}")
    write_results(a.out, {"link_auc": rows, "procrustes_cosine": cos}, config=vars(a), data_files=[a.ours])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
