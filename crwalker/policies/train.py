"""``python -m crwalker.policies.train --policy unicorn --dataset lastfm [options]``.

Trains what the policy needs and checkpoints it under ``runs/mcr/<dataset>/<policy>/``
(see :mod:`crwalker.policies.checkpoint` for the files):

* ``abs_greedy`` / ``max_entropy``: the FM recommender only.
* ``ear`` / ``crm``: FM, then imitation of Max Entropy and REINFORCE.
* ``scpr``: FM, then double DQN for the ask/recommend decision.
* ``unicorn``: TransE pretraining (``--embeddings transe``) or the released LastFM embeddings, then
  double DQN with prioritized replay; ``--max-minutes`` bounds the wall time and ``--resume`` continues
  from the last checkpoint (the replay buffer restarts empty).

``--help`` lists every option (defaults < ``--config file.yaml`` < flags).
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

from crwalker.policies.baselines import train_ear, train_scpr
from crwalker.policies.checkpoint import (
    RunLogger,
    load_optimizer_tensors,
    load_policy_meta,
    load_tensors,
    optimizer_tensors,
    pick_device,
    save_policy,
    save_tensors,
)
from crwalker.policies.common import (
    MCRConfig,
    build_policy,
    check_supported,
    episode_pairs,
    kgensam_tensors,
    load_data,
    make_kgensam,
    make_unicorn,
    policy_module,
    unicorn_fm_path,
    unicorn_init,
)
from crwalker.policies.env import MCREnv
from crwalker.policies.fm import load_or_train_fm
from crwalker.policies.transe import link_auc, train_transe
from data_scripts.utils.config import parse_config, to_dict
from data_scripts.utils.io import read_json


def _net_tensors(mod: torch.nn.Module, prefix: str = "net.") -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in mod.state_dict().items()}


def train_unicorn_cli(cfg: MCRConfig, data, run, device, logger) -> dict:
    from safetensors.numpy import save as np_save

    from crwalker.policies.unicorn import make_optimizer, train_unicorn, upgrade_state_dict
    from data_scripts.utils.io import atomic_write

    info: dict = {}
    t0 = time.time()  # train_minutes includes TransE pretraining
    if cfg.embeddings == "transe" and not (run / "transe.safetensors").exists():
        emb, st = train_transe(data, cfg.dim, cfg.transe_epochs, seed=cfg.seed, device=device, p_norm=cfg.transe_p_norm)
        with atomic_write(run / "transe.safetensors", "wb") as fh:
            fh.write(np_save({"emb": emb}))
        info["transe"] = {**st, "link_auc_test": link_auc(emb, data)}
        print(
            f"TransE: {st['epochs_run']} epochs in {st['seconds']:.1f}s, test link AUC {info['transe']['link_auc_test']:.4f}"
        )
    policy = make_unicorn(cfg, data, unicorn_init(cfg, data, run), device)
    env = MCREnv(data, cfg.max_turn, cfg.topk, cfg.seed)
    start, opt, target, prev_minutes = 0, None, None, 0.0
    if cfg.resume and (run / "policy.json").exists():
        meta = load_policy_meta(run)
        t = load_tensors(run / "policy.safetensors", device)
        policy.net.load_state_dict(upgrade_state_dict({k[4:]: v for k, v in t.items() if k.startswith("net.")}))
        import copy

        target = copy.deepcopy(policy.net)
        target.load_state_dict(upgrade_state_dict({k[7:]: v for k, v in t.items() if k.startswith("target.")}))
        opt = make_optimizer(policy.net, cfg.lr, cfg.l2)
        load_optimizer_tensors(opt, t)
        start, prev_minutes = int(meta["episode"]), float(meta.get("train_minutes", 0.0))
        policy.refresh()
        print(f"resumed at episode {start}")
    elif cfg.embeddings == "fm":  # train_minutes counts the FM's recorded training time (it may come from the cache)
        t0 -= float(read_json(unicorn_fm_path(cfg) / "fm.json").get("train_seconds", 0.0))

    def checkpoint(ep: int, opt_: torch.optim.Optimizer, target_: torch.nn.Module) -> None:
        if cfg.snapshot_every > 0 and ep % cfg.snapshot_every == 0:
            save_tensors(run / "snapshots" / f"ep{ep:06d}.safetensors", _net_tensors(policy.net))
        tensors = {**_net_tensors(policy.net), **_net_tensors(target_, "target."), **optimizer_tensors(opt_)}
        save_policy(
            run,
            tensors,
            {
                "policy": "unicorn",
                "dataset": data.name,
                "config": to_dict(cfg),
                "episode": ep,
                "train_minutes": prev_minutes + (time.time() - t0) / 60,
                "stats": info,
            },
        )

    st = train_unicorn(
        policy,
        env,
        episode_pairs(cfg, data),
        cfg.episodes,
        lr=cfg.lr,
        l2=cfg.l2,
        gamma=cfg.gamma,
        batch_size=cfg.batch_size,
        buffer=cfg.buffer,
        tau=cfg.tau,
        eps_start=cfg.eps_start,
        eps_end=cfg.eps_end,
        eps_decay_episodes=cfg.eps_decay_episodes,
        seed=cfg.seed,
        start_episode=start,
        optimizer=opt,
        target=target,
        max_seconds=cfg.max_minutes * 60 if cfg.max_minutes > 0 else None,
        log=logger,
        checkpoint=checkpoint,
        checkpoint_every=cfg.checkpoint_every,
    )
    info["dqn"] = {k: v for k, v in st.items() if k not in ("optimizer", "target")}
    checkpoint(st["last_episode"], st["optimizer"], st["target"])
    return info


def train_kgensam_cli(cfg: MCRConfig, data, fm, env, logger) -> dict:
    """KGenSam: Negative Sampler + recommender jointly, then the Active Sampler, then the ask/recommend DQN."""
    from crwalker.policies.kgensam import kg_neighbors, train_active_sampler, train_negative_sampler

    t0 = time.time()
    adj, edges = kg_neighbors(data, cfg.ns_neighbors, cfg.seed)
    policy = make_kgensam(cfg, data, fm, adj, edges)
    fm2, ns = train_negative_sampler(
        policy.neg_sampler, fm, data, adj, edges, cfg.ns_steps, n_candidates=cfg.ns_candidates, seed=cfg.seed,
        log=lambda r: logger({"stage": "negative_sampler", **r}),
    )  # fmt: skip
    policy.fm = fm2
    asx = train_active_sampler(
        policy.active, fm2, data, cfg.as_episodes, max_turn=cfg.max_turn, seed=cfg.seed,
        log=lambda r: logger({"stage": "active_sampler", **r}),
    )  # fmt: skip
    policy.refresh()
    dqn = train_scpr(
        policy, env, data.splits["train"], cfg.episodes, cfg.lr, cfg.gamma, cfg.batch_size, cfg.buffer, cfg.tau,
        cfg.eps_start, cfg.eps_end, seed=cfg.seed, log=lambda r: logger({"stage": "dqn", **r}),
    )  # fmt: skip
    print(f"kgensam: NS {ns}, AS {asx}, DQN {dqn}, {(time.time() - t0) / 60:.2f} min")
    return {"policy": policy, "negative_sampler": ns, "active_sampler": asx, "dqn": dqn}


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(MCRConfig, argv)
    check_supported(cfg)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    device = pick_device(cfg.device)
    run = cfg.run_path()
    run.mkdir(parents=True, exist_ok=True)
    data = load_data(cfg)
    logger = RunLogger(run)
    t0 = time.time()
    if cfg.policy == "unicorn":
        info = train_unicorn_cli(cfg, data, run, device, logger)
        print(info)
        logger.close()
        return 0
    fm = load_or_train_fm(data, cfg.fm_path(), cfg.fm_config(), device)
    # the FM may come from the shared cache: count its recorded training time, not the load time
    fm_minutes = float(read_json(cfg.fm_path() / "fm.json").get("train_seconds", 0.0)) / 60
    # re-seed: training the FM in this process (no cache yet) consumes random numbers, loading it does not;
    # without this the policy's initialisation and exploration depended on whether the FM was cached
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    t0 = time.time()
    policy = build_policy(cfg, data, fm, device) if cfg.policy != "kgensam" else None
    env = MCREnv(data, cfg.max_turn, cfg.topk, cfg.seed)
    stats: dict = {"fm_minutes": fm_minutes}
    pairs = data.splits["train"]
    if cfg.policy in ("ear", "crm"):
        stats.update(
            train_ear(
                policy,
                env,
                pairs,
                cfg.pretrain_episodes,
                cfg.episodes,
                cfg.ear_lr,
                cfg.ear_gamma,
                seed=cfg.seed,
                log=logger,
            )
        )
    elif cfg.policy == "kgensam":
        stats.update(train_kgensam_cli(cfg, data, fm, env, logger))
        policy = stats.pop("policy")
    elif cfg.policy == "scpr":
        stats.update(
            train_scpr(
                policy,
                env,
                pairs,
                cfg.episodes,
                cfg.lr,
                cfg.gamma,
                cfg.batch_size,
                cfg.buffer,
                cfg.tau,
                cfg.eps_start,
                cfg.eps_end,
                seed=cfg.seed,
                log=logger,
            )
        )
    mod = policy_module(policy)
    tensors = _net_tensors(mod) if mod is not None else {}
    if cfg.policy == "kgensam":
        tensors = kgensam_tensors(policy)
    if not tensors:
        tensors = {"none": torch.zeros(1)}  # rule-based policy: nothing learned beyond the FM
    save_policy(
        run,
        tensors,
        {
            "policy": cfg.policy,
            "dataset": data.name,
            "config": to_dict(cfg),
            "episode": cfg.episodes if mod is not None else 0,
            "train_minutes": fm_minutes + (time.time() - t0) / 60,
            "stats": stats,
        },
    )
    logger.close()
    print(f"trained {cfg.policy} on {cfg.dataset} in {(time.time() - t0) / 60:.2f} min -> {run}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
