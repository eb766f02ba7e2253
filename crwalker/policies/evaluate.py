"""``python -m crwalker.policies.evaluate --policy <name> --dataset <name> [--limit N]``.

Runs one simulated session per test interaction with the trained policy from ``--run-dir``
(default ``runs/mcr/<dataset>/<policy>``), prints SR@15 / AT / hDCG and updates ``results/mcr.json``.

``results/mcr.json`` schema::

    {"<dataset>": {"<policy>": {"SR@15": float, "AT": float, "hDCG": float, "SR_curve": [15 floats],
                                "train_minutes": float, "n_sessions": int, "split": str, "limit": int,
                                "eval_minutes": float, "git_commit": str, "config": {...} (evaluation),
                                "train_config": {...} (training, from policy.json)}
                   | {"status": "missing", "reason": str}},
     "git_commit": str}

Entries for policies/datasets that were not run are ``{"status": "missing", "reason": ...}`` --
never invented numbers. ``limit > 0`` marks a seeded random subset of the test sessions.
"""

from __future__ import annotations

import csv
import dataclasses
import fcntl
import os
import re
import sys
import time
from pathlib import Path

import torch

from crwalker.policies.baselines import run_sessions
from crwalker.policies.checkpoint import pick_device
from crwalker.policies.common import DATASETS, POLICIES, MCRConfig, check_supported, load_data, load_trained
from crwalker.policies.env import MCREnv, sessions
from crwalker.policies.metrics import summarize
from crwalker.policies.unicorn import UnicornPolicy, run_sessions_batched
from data_scripts.utils.config import parse_config, to_dict
from data_scripts.utils.io import read_json
from data_scripts.utils.results import format_table, git_commit, write_results

MISSING: dict[str, str] = {}


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


def update_curve(path: str | Path, dataset: str, policy: str, episode: int, metrics: dict) -> dict:
    """Record test metrics of a training snapshot: ``{dataset: {policy: {"<episode>": metrics}}}`` (Fig. 4 data)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        res = read_json(path) if path.exists() else {}
        res.setdefault(dataset, {}).setdefault(policy, {})[str(episode)] = metrics
        res["git_commit"] = git_commit()
        write_results(path, res)
        return res
    finally:
        os.close(fd)


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


def _run(cfg: MCRConfig, env: MCREnv, policy, pairs) -> dict:
    if isinstance(policy, UnicornPolicy):  # lockstep sessions, one batched Q forward per turn
        results = run_sessions_batched(env, policy, pairs, desc=f"{cfg.policy}/{cfg.dataset}")
    else:
        results = run_sessions(env, policy, pairs, desc=f"{cfg.policy}/{cfg.dataset}")
    return summarize(results, cfg.max_turn, cfg.topk)


def evaluate_snapshots(cfg: MCRConfig, data, env: MCREnv, pairs, device: str) -> None:
    """``--curve``: evaluate one snapshot file, or every ``*.safetensors`` of a snapshot folder, in one process."""
    ck = Path(cfg.checkpoint)
    files = sorted(ck.glob("*.safetensors")) if ck.is_dir() else [ck]
    if not files:
        raise SystemExit(f"no snapshots in {ck}")
    for f in files:
        policy, _ = load_trained(dataclasses.replace(cfg, checkpoint=str(f)), data, device)
        m = _run(cfg, env, policy, pairs)
        episode = int(re.sub(r"\D", "", f.stem) or 0)
        update_curve(cfg.curve, cfg.dataset, cfg.policy, episode, {**m, "limit": cfg.limit, "split": cfg.split})
        print(
            f"{cfg.policy}/{cfg.dataset} episode {episode}: SR@15 {m['SR@15']:.4f} AT {m['AT']:.2f} hDCG {m['hDCG']:.4f}"
        )


def snapshot_progress(snapshot: Path, run_dir: Path, episodes: int, minutes: float) -> tuple[int, float]:
    """(episodes, train minutes) of a ``snapshots/epNNNNNN.safetensors`` file: the episode from its name and
    the minutes from the run's ``train_log.csv`` (cumulative ``seconds`` of the RL loop at that episode, plus
    the pretraining minutes the final ``policy.json`` counts beyond its RL loop). Other files: unchanged."""
    m = re.fullmatch(r"ep(\d+)", snapshot.stem)
    log = run_dir / "train_log.csv"
    if m is None:
        return episodes, minutes
    ep = int(m.group(1))
    if not log.exists():
        return ep, 0.0
    rows = list(csv.DictReader(log.open()))
    at = [r for r in rows if int(r["episode"]) <= ep]
    if not at:
        return ep, 0.0
    pre = max(minutes - float(rows[-1]["seconds"]) / 60, 0.0) if int(rows[-1]["episode"]) == episodes else 0.0
    return ep, float(at[-1]["seconds"]) / 60 + pre


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(MCRConfig, argv)
    check_supported(cfg)
    torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    data = load_data(cfg)
    env = MCREnv(data, cfg.max_turn, cfg.topk, cfg.seed)
    pairs = sessions(data, cfg.split, cfg.limit or None, cfg.seed)
    if cfg.curve:
        if not cfg.checkpoint:
            raise SystemExit("--curve needs --checkpoint <snapshot file or folder> (train --snapshot-every N)")
        evaluate_snapshots(cfg, data, env, pairs, device)
        return 0
    policy, meta = load_trained(cfg, data, device)
    t0 = time.time()
    m = _run(cfg, env, policy, pairs)
    episodes, minutes = int(meta.get("episode", 0)), float(meta.get("train_minutes", 0.0))
    if cfg.checkpoint:  # a snapshot: its own episode count and the run's training time up to it
        episodes, minutes = snapshot_progress(Path(cfg.checkpoint), cfg.run_path(), episodes, minutes)
    entry = {
        **m,
        "train_minutes": round(minutes, 3),
        "trained_episodes": episodes,
        "split": cfg.split,
        "limit": cfg.limit,
        "eval_minutes": round((time.time() - t0) / 60, 3),
        "git_commit": git_commit(),
        "config": to_dict(cfg),  # evaluation settings
        "train_config": meta.get("config"),  # the settings the policy was trained with (policy.json)
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
