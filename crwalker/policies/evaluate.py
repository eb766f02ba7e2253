"""``python -m crwalker.policies.evaluate --policy <name> --dataset <name> [--limit N]``.

Runs one simulated session per test interaction with the trained policy from ``--run-dir``
(default ``runs/mcr/<dataset>/<policy>``), prints SR@15 / AT / hDCG and updates ``results/mcr.json``.

``results/mcr.json`` schema::

    {"<dataset>": {"<policy>": {"SR@15": float, "AT": float, "hDCG": float, "SR_curve": [15 floats],
                                "train_minutes": float, "n_sessions": int, "split": str, "limit": int,
                                "eval_minutes": float, "git_commit": str, "config": {...}}
                   | {"status": "missing", "reason": str}},
     "git_commit": str}

Entries for policies/datasets that were not run are ``{"status": "missing", "reason": ...}`` --
never invented numbers. ``limit > 0`` marks a seeded random subset of the test sessions.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from pathlib import Path

import torch

from crwalker.policies.baselines import run_sessions
from crwalker.policies.checkpoint import pick_device
from crwalker.policies.common import DATASETS, POLICIES, MCRConfig, check_supported, load_data, load_trained
from crwalker.policies.env import MCREnv, sessions
from crwalker.policies.metrics import summarize
from data_scripts.utils.config import parse_config, to_dict
from data_scripts.utils.io import read_json
from data_scripts.utils.results import format_table, git_commit, write_results

MISSING = {
    "kgensam": "KGenSam not implemented yet (docs/policies.md, Plan)",
}


def update_results(path: str | Path, dataset: str, policy: str, entry: dict) -> dict:
    """Insert ``entry`` and fill every other (dataset, policy) cell that has no numbers with a 'missing' marker."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # several evaluations may finish together: serialise the read-modify-write by locking the folder
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return _update_locked(path, dataset, policy, entry)
    finally:
        os.close(fd)  # releases the lock


def _update_locked(path: Path, dataset: str, policy: str, entry: dict) -> dict:
    res = read_json(path) if path.exists() else {}
    res.setdefault(dataset, {})[policy] = entry
    for ds in DATASETS:
        for pol in POLICIES:
            cell = res.setdefault(ds, {}).get(pol)
            if cell is None or cell.get("status") == "missing":
                reason = MISSING.get(pol) or MISSING.get(ds) or "not evaluated yet"
                res[ds][pol] = {"status": "missing", "reason": reason}
    res["git_commit"] = git_commit()
    write_results(path, res)
    return res


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(MCRConfig, argv)
    check_supported(cfg)
    torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    data = load_data(cfg)
    policy, meta = load_trained(cfg, data, device)
    env = MCREnv(data, cfg.max_turn, cfg.topk, cfg.seed)
    pairs = sessions(data, cfg.split, cfg.limit or None, cfg.seed)
    t0 = time.time()
    results = run_sessions(env, policy, pairs, desc=f"{cfg.policy}/{cfg.dataset}")
    m = summarize(results, cfg.max_turn, cfg.topk)
    entry = {
        **m,
        "train_minutes": round(float(meta.get("train_minutes", 0.0)), 3),
        "trained_episodes": int(meta.get("episode", 0)),
        "split": cfg.split,
        "limit": cfg.limit,
        "eval_minutes": round((time.time() - t0) / 60, 3),
        "git_commit": git_commit(),
        "config": to_dict(cfg),
    }
    update_results(cfg.results, cfg.dataset, cfg.policy, entry)
    print(
        format_table(
            [{"dataset": cfg.dataset, "policy": cfg.policy, **m}],
            ["dataset", "policy", "SR@15", "AT", "hDCG", "n_sessions"],
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
