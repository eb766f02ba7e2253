"""Compare our TransE embeddings with the released LastFM ``transe_embeddings.npz``.

``python -m crwalker.policies.bench_transe [--ours name=path.safetensors ...]``
prints a table and writes ``results/mcr_transe.json``: per embedding set, held-out link AUC (valid and test
user->item pairs against 20 random items) under the TransE translation (:func:`crwalker.policies.transe.link_auc`)
and under the dot product UNICORN's Eq. 11 ranks items by (:func:`crwalker.policies.transe.dot_auc`), and the
mean cosine similarity to the released set after an orthogonal Procrustes alignment (0 = unrelated spaces).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from crwalker.policies.transe import dot_auc, link_auc
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
    ap.add_argument(
        "--ours",
        nargs="+",
        default=["ours=runs/mcr/lastfm/unicorn/transe.safetensors"],
        help="name=path of our TransE files (safetensors with 'emb').",
    )
    ap.add_argument("--out", default="results/mcr_transe.json")
    a = ap.parse_args(argv)
    data = load("lastfm", a.data_root)
    rel = load_transe(Path(a.data_root) / "lastfm" / "transe_embeddings.npz", data)
    released = np.concatenate([rel["user"], rel["item"], rel["attr"]])
    sets = [("released", released)]
    for spec in a.ours:
        name, _, path = spec.partition("=")
        if not path:
            raise SystemExit(f"--ours expects name=path, got {spec!r}")
        sets.append((name, load_file(path)["emb"]))
    rows = []
    for name, emb in sets:
        rows.append(
            {
                "embeddings": name,
                "AUC_valid": link_auc(emb, data, "valid"),
                "AUC_test": link_auc(emb, data, "test"),
                "dotAUC_valid": dot_auc(emb, data, "valid"),
                "dotAUC_test": dot_auc(emb, data, "test"),
                "procrustes_cosine_to_released": procrustes_cosine(emb, released),
            }
        )
    cols = ["embeddings", "AUC_valid", "AUC_test", "dotAUC_valid", "dotAUC_test", "procrustes_cosine_to_released"]
    print(format_table(rows, cols))
    files = [s.partition("=")[2] for s in a.ours]
    write_results(a.out, {"link_auc": rows}, config=vars(a), data_files=files)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
