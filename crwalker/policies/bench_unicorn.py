"""UNICORN training speed: episodes/s and replay-update time, optionally paired against a reference implementation.

``python -m crwalker.policies.bench_unicorn --dataset lastfm [--reference path/to/old/unicorn.py]``

The machine is shared, so absolute timings drift with the load; a fair before/after comparison therefore runs
both implementations in one process and **interleaves** them (one episode / one update each in turn), so the
load hits both alike. Each implementation gets its own copy of the same Q-network (TransE init from
``--run-dir``), its own target network and Adam, and a replay buffer pre-filled with the same transitions, so
every environment step performs one batch-``--batch-size`` double-DQN update as in training
(:func:`crwalker.policies.unicorn.train_unicorn`): graph building, ε-greedy acting, simulator step, push,
prioritized sample, :func:`~crwalker.policies.unicorn.dqn_loss`, backward, Adam, soft update.

Writes a table and ``results/unicorn_speed.json``: per implementation, episodes/s, environment steps/s, median
ms per update (batch 128), and the largest parameter difference between the two networks at the end. The
latter is only a sanity check: both arms start identical and see the same sessions, but prioritized sampling
and ε-greedy ties react to rounding-level differences, so their batches can diverge after a while (on identical
batches the parameters agree to ~1e-6 after 60 updates; the exact equivalence is unit-tested in
``test_dqn_gradients_match_pyg_reference``). ``--reference`` is typically the previous ``unicorn.py`` extracted with
``git show <commit>:crwalker/policies/unicorn.py > /tmp/unicorn_ref.py``.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import os
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

import crwalker.policies.unicorn as current
from crwalker.policies.common import MCRConfig, load_data, make_unicorn, unicorn_init
from crwalker.policies.env import MCREnv
from crwalker.policies.rl import PrioritizedReplay, Transition, soft_update
from data_scripts.utils.config import field, parse_config, to_dict
from data_scripts.utils.results import format_table, write_results


@dataclasses.dataclass
class BenchConfig:
    """Benchmark UNICORN training speed (episodes/s) on a real dataset."""

    dataset: str = field("lastfm", "Dataset: lastfm, lastfm_star or movie.")
    data_root: str = field("../shared/datasets/mcr", "Folder holding <dataset>/ (LastFM layout).")
    movie_dir: str = field("data/mcr/movie", "Canonical Movie MCR folder.")
    run_dir: str = field("", "Folder with transe.safetensors (default runs/mcr/<dataset>/unicorn).")
    reference: str = field("", "A reference unicorn.py to compare against (paired, interleaved); empty = none.")
    episodes: int = field(20, "Training episodes timed per implementation.")
    warm: int = field(400, "Transitions pre-filled into the replay buffer (same for every implementation).")
    batch_size: int = field(128, "Replay batch size.")
    epsilon: float = field(0.5, "ε-greedy exploration during the timed episodes (training starts at 0.5).")
    dim: int = field(64, "Graph embedding size (must match the TransE file).")
    hidden: int = field(100, "Q-network hidden size.")
    seed: int = field(0, "Seed.")
    threads: int = field(1, "torch threads.")
    out: str = field("results/unicorn_speed.json", "Results JSON.")


def load_reference(path: str) -> ModuleType:
    """Import a ``unicorn.py`` file under a private module name."""
    spec = importlib.util.spec_from_file_location("unicorn_reference", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses need the module registered
    spec.loader.exec_module(mod)
    return mod


@dataclasses.dataclass
class _Arm:
    name: str
    mod: ModuleType
    policy: object
    target: torch.nn.Module
    opt: torch.optim.Optimizer
    mem: PrioritizedReplay
    env: MCREnv
    rng: np.random.Generator
    seconds: float = 0.0
    steps: int = 0
    episodes: int = 0
    update_ms: list = dataclasses.field(default_factory=list)


def _episode(arm: _Arm, pairs: np.ndarray, episode: int, batch_size: int) -> None:
    """One training episode with one replay update per environment step (as ``train_unicorn``)."""
    pol, t0 = arm.policy, time.perf_counter()
    i = int(arm.rng.integers(len(pairs)))
    st = arm.env.reset(*pairs[i], session_id=50_000_000 + episode)
    g, done = pol.graph(arm.env, st), False
    while not done:
        slot, q = pol.choose(g)
        r, done = arm.env.step(pol.to_action(g, slot, q))
        g2 = None if done else pol.graph(arm.env, st)
        arm.mem.push(Transition(g, slot, r, g2, done))
        g, arm.steps = g2, arm.steps + 1
        tu = time.perf_counter()
        batch, idx, w = arm.mem.sample(batch_size)
        loss, td = arm.mod.dqn_loss(pol.net, arm.target, batch, w, 0.999, "cpu")
        arm.opt.zero_grad(set_to_none=True)
        loss.backward()
        arm.opt.step()
        arm.mem.update(idx, td)
        soft_update(arm.target, pol.net, 0.01)
        pol.refresh()
        arm.update_ms.append((time.perf_counter() - tu) * 1000)
    arm.seconds += time.perf_counter() - t0
    arm.episodes += 1


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(BenchConfig, argv)
    torch.set_num_threads(cfg.threads)
    if hasattr(current, "tune_malloc"):
        current.tune_malloc()  # process-wide, so both arms run with it (as train_unicorn does)
    mcfg = MCRConfig(
        dataset=cfg.dataset, data_root=cfg.data_root, movie_dir=cfg.movie_dir, seed=cfg.seed, dim=cfg.dim,
        hidden=cfg.hidden, batch_size=cfg.batch_size,
    )  # fmt: skip
    data = load_data(mcfg)
    run = Path(cfg.run_dir) if cfg.run_dir else Path("runs/mcr") / cfg.dataset / "unicorn"
    init = unicorn_init(mcfg, data, run)
    mods = [("current", current)] + ([("reference", load_reference(cfg.reference))] if cfg.reference else [])
    # the same warm replay content for every arm, collected with the current code
    torch.manual_seed(cfg.seed)
    base = make_unicorn(mcfg, data, init, "cpu")
    env = MCREnv(data, mcfg.max_turn, mcfg.topk, cfg.seed)
    base.epsilon, base._n_items, base.rng = 0.5, env.n_items, np.random.default_rng(cfg.seed)
    rng, warm, sid = np.random.default_rng(cfg.seed), [], 0
    pairs = data.splits["train"]
    while len(warm) < cfg.warm:
        st = env.reset(*pairs[rng.integers(len(pairs))], session_id=60_000_000 + sid)
        sid, g, done = sid + 1, base.graph(env, st), False
        while not done:
            slot, q = base.choose(g)
            r, done = env.step(base.to_action(g, slot, q))
            g2 = None if done else base.graph(env, st)
            warm.append(Transition(g, slot, r, g2, done))
            g = g2
    arms = []
    for name, mod in mods:
        net = mod.UnicornQNet(base.net.emb.num_embeddings, mcfg.dim, mcfg.hidden)
        net.load_state_dict(base.net.state_dict(), strict=False)  # older references lack pref_emb
        pol = mod.UnicornPolicy(net, data.n_users, mcfg.topk, mcfg.k_v, mcfg.k_p, mcfg.graph_items, mcfg.graph_attrs)
        pol.epsilon, pol._n_items, pol.rng = cfg.epsilon, env.n_items, np.random.default_rng([cfg.seed, 1])
        mem = PrioritizedReplay(mcfg.buffer, seed=cfg.seed)
        for t in warm:
            mem.push(t)
        e = MCREnv(data, mcfg.max_turn, mcfg.topk, cfg.seed)
        arms.append(_Arm(name, mod, pol, copy.deepcopy(net), mod.make_optimizer(net, mcfg.lr, mcfg.l2), mem, e,
                         np.random.default_rng(cfg.seed)))  # fmt: skip
    load0 = os.getloadavg()[0]
    for ep in range(cfg.episodes):
        for arm in arms if ep % 2 == 0 else arms[::-1]:
            _episode(arm, pairs, ep, cfg.batch_size)
    rows = []
    for arm in arms:
        rows.append(
            {
                "impl": arm.name,
                "episodes": arm.episodes,
                "steps": arm.steps,
                "seconds": round(arm.seconds, 2),
                "episodes_per_s": arm.episodes / arm.seconds,
                "steps_per_s": arm.steps / arm.seconds,
                "update_ms_median": float(np.median(arm.update_ms)),
                "minutes_for_10k_episodes": 10_000 / (arm.episodes / arm.seconds) / 60,
            }
        )
    out = {"dataset": cfg.dataset, "rows": rows, "loadavg_start": load0, "loadavg_end": os.getloadavg()[0],
           "config": to_dict(cfg)}  # fmt: skip
    if len(arms) == 2:
        same_traj = arms[0].steps == arms[1].steps
        pa, pb = (list(a.policy.net.parameters()) for a in arms)
        out["max_param_diff"] = max(float((x - y).detach().abs().max()) for x, y in zip(pa, pb, strict=True))
        out["same_trajectory_steps"] = same_traj
        out["speedup_episodes_per_s"] = rows[0]["episodes_per_s"] / rows[1]["episodes_per_s"]
    print(format_table(rows, ["impl", "episodes", "steps", "seconds", "episodes_per_s", "steps_per_s",
                              "update_ms_median", "minutes_for_10k_episodes"]))  # fmt: skip
    extra = {k: v for k, v in out.items() if k not in ("rows", "dataset", "config")}
    print(extra)
    path = Path(cfg.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    prev = {}
    if path.exists():
        from data_scripts.utils.io import read_json

        prev = {k: v for k, v in read_json(path).items() if k not in ("git_commit", "config")}
    write_results(path, {**prev, cfg.dataset: out}, config=to_dict(cfg))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
