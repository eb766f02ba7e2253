"""Shared configuration and policy construction for the train / evaluate CLIs."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from crwalker.policies.baselines import AbsGreedy, EARPolicy, MaxEntropy, Policy, SCPRPolicy
from crwalker.policies.checkpoint import load_policy_meta, load_tensors
from crwalker.policies.fm import FM, FMConfig
from crwalker.policies.kgensam import ActiveSampler, KGenSamPolicy, NegativeSampler, OnlineUpdate, attribute_graph
from crwalker.policies.unicorn import UnicornPolicy, UnicornQNet
from data_scripts.mcr import MCRData, load, load_canonical, load_transe
from data_scripts.utils.config import field

POLICIES = ("unicorn", "scpr", "ear", "crm", "max_entropy", "abs_greedy", "kgensam")
DATASETS = ("lastfm", "lastfm_star", "movie")
FM_POLICIES = {"scpr", "ear", "crm", "max_entropy", "abs_greedy"}
PolicyName = Literal["unicorn", "scpr", "ear", "crm", "max_entropy", "abs_greedy", "kgensam"]


@dataclasses.dataclass
class MCRConfig:
    """Train / evaluate a multi-round conversational recommendation policy."""

    policy: PolicyName = field("unicorn", "Policy: unicorn, kgensam, scpr, ear, crm, max_entropy, abs_greedy.")
    dataset: str = field("lastfm", "Dataset: lastfm, lastfm_star or movie (see --movie-dir).")
    data_root: str = field("../shared/datasets/mcr", "Folder holding <dataset>/ in the LastFM layout.")
    movie_dir: str = field("data/mcr/movie", "Canonical Movie MCR folder (python -m crwalker.policies.movie_data).")
    run_dir: str = field("", "Checkpoint/log folder; default runs/mcr/<dataset>/<policy>.")
    device: str = field("auto", "auto, cpu or cuda.")
    threads: int = field(1, "torch.set_num_threads (the machine is shared).")
    seed: int = field(0, "Seed for training sampling and the user simulator.")
    max_turn: int = field(15, "T: maximum number of turns.")
    topk: int = field(10, "K: length of a recommendation list.")
    # FM recommender (EAR/SCPR/CRM/Max Entropy/Abs Greedy)
    fm_dim: int = field(64, "FM embedding size.")
    fm_epochs: int = field(30, "FM BPR epochs.")
    fm_lr: float = field(1e-2, "FM Adam learning rate.")
    fm_dir: str = field("", "FM checkpoint folder shared by the FM policies; default runs/mcr/<dataset>/fm.")
    # RL training
    episodes: int = field(10000, "RL training episodes (UNICORN: 10,000).")
    max_minutes: float = field(0.0, "Stop RL training after this many minutes (0 = no limit); resume continues.")
    pretrain_episodes: int = field(500, "EAR/CRM: episodes imitating Max Entropy before REINFORCE.")
    lr: float = field(1e-4, "UNICORN/SCPR Adam learning rate.")
    l2: float = field(1e-6, "UNICORN/SCPR L2 (weight decay).")
    gamma: float = field(0.999, "UNICORN/SCPR discount.")
    ear_lr: float = field(1e-3, "EAR/CRM policy-gradient learning rate.")
    ear_gamma: float = field(0.7, "EAR/CRM discount.")
    batch_size: int = field(128, "DQN batch size.")
    buffer: int = field(50000, "Replay buffer size.")
    tau: float = field(0.01, "Soft target update rate.")
    eps_start: float = field(0.5, "ε-greedy start.")
    eps_end: float = field(0.05, "ε-greedy end.")
    eps_decay_episodes: int = field(5000, "Episodes over which ε decays linearly.")
    # UNICORN model
    dim: int = field(64, "Graph embedding size.")
    hidden: int = field(100, "Q-network hidden size.")
    k_v: int = field(10, "K_v: item actions.")
    k_p: int = field(10, "K_p: attribute actions.")
    graph_items: int = field(20, "Cap on candidate-item nodes in the dynamic graph (0 = all; CPU speed).")
    graph_attrs: int = field(20, "Cap on candidate-attribute nodes in the dynamic graph (0 = all).")
    embeddings: str = field(
        "transe",
        "UNICORN init: transe (pretrain on train split), fm (the baselines' BPR-trained FM tables, whose dot products "
        "are Eq. 11's score), released (lastfm npz), random.",
    )
    transe_epochs: int = field(50, "TransE pretraining epochs.")
    inference_rule: bool = field(
        True,
        "UNICORN inference: recommend when <= K candidates remain or at the last turn (the reference implementation's "
        "test-time rule); false = argmax Q only.",
    )
    preference_embeddings: str = field(
        "pretrained",
        "UNICORN Eq. 11/12 + graph edge weights from: pretrained (frozen initial vectors) or current (trained table).",
    )
    fm_holdout: float = field(
        0.0,
        "UNICORN --embeddings fm: train the FM on the other train pairs and draw RL episodes only from this seeded "
        "share of them (cross-fitting: the vectors have not memorised the episode targets). 0 = off.",
    )
    episode_split: str = field(
        "train",
        "UNICORN: split whose (user, item) pairs start the RL training episodes: train, or valid as the reference "
        "implementation does (the pretrained vectors have not seen those targets); valid excludes the --select-sessions "
        "subset that `evaluate --split valid --limit N` scores, so snapshot selection stays held out.",
    )
    select_sessions: int = field(
        3000, "With --episode-split valid: size of the seeded valid subset kept out of training for selection."
    )
    transe_p_norm: float = field(
        2.0, "TransE distance norm (2: unit-L2 embeddings whose dot products Eq. 11 can use; 1: the L1 variant)."
    )
    checkpoint_every: int = field(100, "Episodes between checkpoints.")
    snapshot_every: int = field(0, "UNICORN: also keep the Q-network every N episodes in run_dir/snapshots (0 = off).")
    checkpoint: str = field("", "evaluate: a snapshot file to evaluate instead of run_dir/policy.safetensors.")
    curve: str = field("", "evaluate --checkpoint: record the metrics by episode in this JSON (Fig. 4 data).")
    resume: bool = field(False, "Continue from run_dir/policy.safetensors if present.")
    # KGenSam
    ns_steps: int = field(300, "KGenSam: Negative Sampler joint-training batches (batch 256).")
    ns_neighbors: int = field(16, "KGenSam: sampled KG neighbours per node (reference 64; CPU).")
    ns_candidates: int = field(16, "KGenSam: 2-hop candidates pruned by the recommender (reference 64; CPU).")
    as_episodes: int = field(200, "KGenSam: Active Sampler REINFORCE episodes (15 questions each).")
    as_neighbors: int = field(16, "KGenSam: neighbours per attribute in the Active Sampler's attribute graph.")
    online_lr: float = field(1e-2, "KGenSam: SGD step of the per-session recommender update after a rejection.")
    # evaluation
    split: str = field("test", "Evaluation split.")
    limit: int = field(0, "Evaluate on a seeded random subset of this many sessions (0 = all).")
    results: str = field("results/mcr.json", "Results file updated by evaluate.")

    def run_path(self) -> Path:
        return Path(self.run_dir) if self.run_dir else Path("runs/mcr") / self.dataset / self.policy

    def fm_path(self) -> Path:
        return Path(self.fm_dir) if self.fm_dir else Path("runs/mcr") / self.dataset / "fm"

    def fm_config(self) -> FMConfig:
        return FMConfig(dim=self.fm_dim, epochs=self.fm_epochs, lr=self.fm_lr, seed=self.seed)


def check_supported(cfg: MCRConfig) -> None:
    if cfg.policy not in POLICIES:
        raise SystemExit(f"unknown --policy {cfg.policy!r}; choose from {', '.join(POLICIES)}")


def load_data(cfg: MCRConfig) -> MCRData:
    """LastFM/LastFM* from the raw folder; ``movie`` from ``--movie-dir`` (built by ``crwalker.policies.movie_data``)."""
    if cfg.dataset == "movie":
        folder = Path(cfg.movie_dir)
        if not (folder / "meta.json").exists():
            raise SystemExit(f"{folder}/meta.json not found: build it with `python -m crwalker.policies.movie_data`")
        return load_canonical(folder)
    return load(cfg.dataset, cfg.data_root)


def unicorn_init(cfg: MCRConfig, data: MCRData, run: Path) -> np.ndarray | None:
    """Initial node embeddings for UNICORN (users, items, attributes)."""
    if cfg.embeddings == "random":
        return None
    if cfg.embeddings == "released":
        e = load_transe(Path(cfg.data_root) / cfg.dataset / "transe_embeddings.npz", data)
        return np.concatenate([e["user"], e["item"], e["attr"]])
    if cfg.embeddings == "fm":
        # Eq. 11 (w_v = σ(e_u·e_v + Σ_p e_v·e_p)) is exactly the FM's score (EAR Eq. 1), so the BPR-trained FM
        # tables of the baselines (shared cache, train split only) are vectors whose dot products Eq. 11 can use
        from crwalker.policies.fm import load_or_train_fm

        if cfg.fm_dim != cfg.dim:
            raise SystemExit(f"--embeddings fm needs --fm-dim ({cfg.fm_dim}) == --dim ({cfg.dim})")
        fm_pairs, _ = fm_holdout_split(data.splits["train"], cfg.fm_holdout, cfg.seed)
        fm_data = dataclasses.replace(data, splits={**data.splits, "train": fm_pairs})
        fm = load_or_train_fm(fm_data, unicorn_fm_path(cfg), cfg.fm_config())
        return np.concatenate([fm.user, fm.item, fm.attr]).astype(np.float32)
    if cfg.embeddings == "transe":
        from safetensors.numpy import load_file

        path = run / "transe.safetensors"
        if path.exists():
            return load_file(str(path))["emb"]
        raise FileNotFoundError(f"{path}: TransE embeddings missing; run train (it pretrains them)")
    raise SystemExit(f"unknown --embeddings {cfg.embeddings!r}; use transe, fm, released or random")


def fm_holdout_split(pairs: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split train pairs into (FM pairs, RL episode pairs) for ``--fm-holdout``: a seeded random ``share`` of
    the rows goes to the RL episodes, the rest trains the FM. ``share <= 0``: both are all pairs."""
    if share <= 0:
        return pairs, pairs
    if share >= 1:
        raise ValueError(f"--fm-holdout must be in [0, 1), got {share}")
    rng = np.random.default_rng(seed + 7919)
    hold = np.zeros(len(pairs), dtype=bool)
    hold[rng.choice(len(pairs), size=max(1, int(round(share * len(pairs)))), replace=False)] = True
    return pairs[~hold], pairs[hold]


def episode_pairs(cfg: MCRConfig, data: MCRData) -> np.ndarray:
    """(user, item) pairs that start UNICORN's training episodes (``--episode-split``, ``--fm-holdout``)."""
    if cfg.episode_split == "train":
        holdout = cfg.fm_holdout if cfg.embeddings == "fm" else 0.0
        return fm_holdout_split(data.splits["train"], holdout, cfg.seed)[1]
    if cfg.episode_split != "valid":
        raise SystemExit(f"unknown --episode-split {cfg.episode_split!r}; use train or valid")
    pairs = data.splits["valid"]
    keep = np.ones(len(pairs), dtype=bool)
    if 0 < cfg.select_sessions < len(pairs):  # the same draw as env.sessions(data, "valid", limit, seed)
        keep[np.random.default_rng(cfg.seed).choice(len(pairs), size=cfg.select_sessions, replace=False)] = False
    return pairs[keep]


def unicorn_fm_path(cfg: MCRConfig) -> Path:
    """FM folder of ``--embeddings fm``: the shared baseline FM, or a cross-fitted one per holdout and seed."""
    if cfg.fm_holdout <= 0:
        return cfg.fm_path()
    return cfg.fm_path().parent / f"fm_holdout{cfg.fm_holdout:g}_seed{cfg.seed}"


def make_unicorn(cfg: MCRConfig, data: MCRData, init: np.ndarray | None, device: str) -> UnicornPolicy:
    n_nodes = data.n_users + data.n_items + data.n_attrs
    net = UnicornQNet(n_nodes, cfg.dim, cfg.hidden, init=init).to(device)
    return UnicornPolicy(
        net,
        data.n_users,
        cfg.topk,
        cfg.k_v,
        cfg.k_p,
        cfg.graph_items,
        cfg.graph_attrs,
        device,
        cfg.preference_embeddings,
        cfg.inference_rule,
    )


def build_policy(cfg: MCRConfig, data: MCRData, fm: FM | None, device: str) -> Policy:
    """A fresh (untrained) policy object."""
    if cfg.policy == "abs_greedy":
        return AbsGreedy(fm, cfg.topk)
    if cfg.policy == "max_entropy":
        return MaxEntropy(fm, cfg.topk, cfg.seed)
    if cfg.policy in ("ear", "crm"):
        return EARPolicy(fm, data.n_attrs, cfg.max_turn, cfg.topk, kind=cfg.policy)
    if cfg.policy == "scpr":
        return SCPRPolicy(fm, cfg.max_turn, cfg.topk)
    if cfg.policy == "unicorn":
        return make_unicorn(cfg, data, None, device)
    raise SystemExit(f"unsupported policy {cfg.policy!r}")


def make_kgensam(cfg: MCRConfig, data: MCRData, fm: FM, adj: np.ndarray, edges: np.ndarray) -> KGenSamPolicy:
    """An untrained KGenSam policy (samplers, DQN) around ``fm`` and the sampled KG ``adj``/``edges``."""
    torch.manual_seed(cfg.seed)
    active = ActiveSampler(attribute_graph(data, cfg.as_neighbors))
    neg = NegativeSampler(data.n_users + data.n_items + data.n_attrs, data.n_users, data.n_items)
    return KGenSamPolicy(
        fm, data, active, neg, adj, edges, cfg.max_turn, cfg.topk, OnlineUpdate(cfg.online_lr), cfg.ns_candidates,
        cfg.seed,
    )  # fmt: skip


def kgensam_tensors(policy: KGenSamPolicy) -> dict[str, torch.Tensor]:
    """Everything a trained KGenSam needs: DQN, samplers, its jointly trained FM and the sampled KG."""
    out = {f"net.{k}": v for k, v in policy.q.state_dict().items()}
    out.update({f"active.{k}": v for k, v in policy.active.state_dict().items()})
    out.update({f"neg.{k}": v for k, v in policy.neg_sampler.state_dict().items()})
    for k in ("user", "item", "attr"):
        out[f"fm.{k}"] = torch.from_numpy(getattr(policy.fm, k))
    out["kg.adj"], out["kg.edges"] = torch.from_numpy(policy.adj), torch.from_numpy(policy.edges)
    return out


def load_kgensam(cfg: MCRConfig, data: MCRData, t: dict[str, torch.Tensor]) -> KGenSamPolicy:
    fm = FM(*(t[f"fm.{k}"].cpu().numpy() for k in ("user", "item", "attr")))
    pol = make_kgensam(cfg, data, fm, t["kg.adj"].cpu().numpy(), t["kg.edges"].cpu().numpy())
    for prefix, mod in (("net.", pol.q), ("active.", pol.active), ("neg.", pol.neg_sampler)):
        mod.load_state_dict({k[len(prefix) :]: v for k, v in t.items() if k.startswith(prefix)})
        mod.eval()
    pol.refresh()
    return pol


def policy_module(policy: Policy) -> torch.nn.Module | None:
    if isinstance(policy, EARPolicy):
        return policy.net
    if isinstance(policy, SCPRPolicy):
        return policy.q
    if isinstance(policy, UnicornPolicy):
        return policy.net
    return None


def load_trained(cfg: MCRConfig, data: MCRData, device: str) -> tuple[Policy, dict]:
    """Rebuild a trained policy from its run folder; returns (policy, policy.json meta)."""
    run = cfg.run_path()
    meta = load_policy_meta(run) if (run / "policy.json").exists() else {}
    if cfg.policy == "kgensam":
        return load_kgensam(cfg, data, load_tensors(run / "policy.safetensors", device)), meta
    if cfg.policy in FM_POLICIES and not (cfg.fm_path() / "fm.safetensors").exists():
        raise FileNotFoundError(f"{cfg.fm_path()}/fm.safetensors missing: run crwalker.policies.train for {cfg.policy}")
    fm = FM.load(cfg.fm_path()) if cfg.policy in FM_POLICIES else None
    policy = build_policy(cfg, data, fm, device)
    mod = policy_module(policy)
    if mod is not None:
        t = load_tensors(Path(cfg.checkpoint) if cfg.checkpoint else run / "policy.safetensors", device)
        state = {k[len("net.") :]: v for k, v in t.items() if k.startswith("net.")}
        if cfg.policy == "unicorn":
            from crwalker.policies.unicorn import upgrade_state_dict

            state = upgrade_state_dict(state)
            # evaluate as trained: runs without the setting used the current table (== pref_emb after the upgrade)
            policy.preference = meta.get("config", {}).get("preference_embeddings", "current")
        mod.load_state_dict(state)
        mod.eval()
    return policy, meta
