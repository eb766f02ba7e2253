"""A trained Movie-domain MCR policy as a chat guide: from the chat's attribute state to Ask / Recommend.

The chat (``crwalker.engine``, guided mode) keeps, per conversation, the attributes the user accepted
(named or answered "yes"), the attributes the user rejected, the movies that may not be recommended
and the outcome history of the guided turns. :meth:`MovieGuide.decide` turns that into the multi-round
CRS state the policy was trained on (``crwalker.policies.env.State``: Eq. 3 candidate sets over the
Movie dataset built by :mod:`crwalker.policies.movie_data`) and returns the trained policy's action:

* :class:`Ask` -- the attribute (a KG entity id) the policy asks about, or
* :class:`Recommend` -- its top-K candidate movies (KG entity ids).

Policy: ``scpr`` (SCPR, the best learned Movie policy of ``results/mcr.json``): its trained double-DQN
chooses ask vs recommend from ``[15-turn history, |V_cand| bucket]``; the attribute is SCPR's path-reasoning
choice ``argmax_p Σ_{v ∈ V_cand ∩ V_p} σ(y(u, v, P_u))`` and the list is the FM's top-K of ``V_cand``
(both exactly :class:`~crwalker.policies.baselines.SCPRPolicy`, reused here, not re-implemented).

Chat-specific choices (the simulator never meets these cases):

* The chat user is not a MovieLens user: the FM user vector ``u`` is the mean of the trained user vectors.
* Attributes the user named that no movie combines: the oldest accepted attributes are dropped from
  ``P_u`` until ``V_cand`` is non-empty (reported in :attr:`Ask.relaxed` / :attr:`Recommend.relaxed`).
* ``V_cand`` also excludes the movies the chat may not recommend (rejected / disliked / seen /
  already recommended movies and movies of rejected attributes: the engine's negative-feedback rules).
* History: the last ``max_turn`` outcomes (+1 accepted ask, -1 rejected ask, -2 rejected list).

Storage: :func:`guide_tensors` packs the policy, the FM tables it needs and the KG id mapping into plain
tensors + a JSON-able dict (the release bundle stores them, :mod:`crwalker.engine.bundle`);
:meth:`MovieGuide.from_tensors` rebuilds the guide.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from crwalker.policies.baselines import SCPRPolicy
from crwalker.policies.env import MCREnv, State
from crwalker.policies.fm import FM
from data_scripts.mcr import MCRData
from data_scripts.utils.config import field
from data_scripts.utils.io import read_json

GUIDE_POLICIES = ("scpr",)


@dataclasses.dataclass
class GuideConfig:
    """Which trained Movie-domain policy guides the chat, and where its checkpoint is."""

    policy: Literal["scpr"] = field("scpr", "Policy that guides the chat (scpr: trained ask/recommend DQN).")
    run_dir: str = field("runs/mcr/movie/scpr", "Run folder of the trained policy (policy.safetensors + .json).")
    fm_dir: str = field("", "FM folder the policy was trained with; default <run_dir>/../fm.")
    kg: str = field("data/kg", "KG folder the Movie dataset was built from.")
    movielens: str = field("data/movielens/ml-latest-small", "MovieLens folder the Movie dataset was built from.")
    min_attr_items: int = field(2, "The Movie dataset's --min-attr-items (attributes with >= this many movies).")
    results: str = field("results/mcr.json", "Results file whose Movie row of the policy is copied into the meta.")

    def fm_path(self) -> Path:
        return Path(self.fm_dir) if self.fm_dir else Path(self.run_dir).parent / "fm"


@dataclass(frozen=True)
class Ask:
    """The policy asks whether the user likes ``attribute`` (a KG entity id)."""

    attribute: int
    q_values: tuple[float, float]  # (ask, recommend) of the DQN
    n_candidates: int  # |V_cand|
    relaxed: tuple[int, ...] = ()  # accepted attributes dropped because no movie has them all

    kind: Literal["ask"] = "ask"


@dataclass(frozen=True)
class Recommend:
    """The policy recommends ``items`` (KG movie ids, best first; at most K; empty when every movie is excluded)."""

    items: tuple[int, ...]
    scores: tuple[float, ...]  # FM scores y(u, v, P_u)
    q_values: tuple[float, float]
    n_candidates: int
    relaxed: tuple[int, ...] = ()

    kind: Literal["recommend"] = "recommend"


Decision = Ask | Recommend


@dataclass
class GuideState:
    """What the chat knows (KG ids): the policy's inputs.

    Attributes:
        accepted: ``P_u``: accepted attributes, oldest first (ids outside the Movie domain are ignored).
        rejected_attrs: Attributes the user said no to.
        excluded_items: Movies that may not be recommended.
        history: Outcome per guided turn: +1 accepted ask, -1 rejected ask, -2 rejected recommendation.
    """

    accepted: list[int] = dataclasses.field(default_factory=list)
    rejected_attrs: list[int] = dataclasses.field(default_factory=list)
    excluded_items: set[int] = dataclasses.field(default_factory=set)
    history: list[int] = dataclasses.field(default_factory=list)


class MovieGuide:
    """A trained Movie-domain policy over KG ids (see module docstring). Read-only after construction:
    :meth:`decide` may run concurrently for different chat sessions.

    Args:
        items_kg: KG id of each Movie-dataset item.
        attrs_kg: KG id of each Movie-dataset attribute.
        item_attrs: ``item_attrs[v]``: Movie-dataset attribute ids of item ``v``.
        fm: The FM (``user`` holds the one user vector the chat uses).
        q_state: ``SCPRPolicy.q`` state dict.
        meta: Provenance (policy, sources, training episodes, metrics, ``max_turn``, ``topk``).
    """

    def __init__(
        self,
        items_kg: np.ndarray,
        attrs_kg: np.ndarray,
        item_attrs: list[np.ndarray],
        fm: FM,
        q_state: dict[str, torch.Tensor],
        meta: dict,
    ):
        self.policy_name = meta.get("policy", "scpr")
        if self.policy_name not in GUIDE_POLICIES:
            raise ValueError(f"guide policy must be one of {GUIDE_POLICIES}, got {self.policy_name!r}")
        self.items_kg = np.asarray(items_kg, dtype=np.int64)
        self.attrs_kg = np.asarray(attrs_kg, dtype=np.int64)
        self.item_of = {int(e): i for i, e in enumerate(self.items_kg)}
        self.attr_of = {int(e): i for i, e in enumerate(self.attrs_kg)}
        self.meta = dict(meta)
        self.max_turn, self.topk = int(meta.get("max_turn", 15)), int(meta.get("topk", 10))
        data = MCRData(
            name="movie-guide",
            n_users=1,
            n_items=len(self.items_kg),
            n_attrs=len(self.attrs_kg),
            item_attrs=[np.asarray(a, dtype=np.int64) for a in item_attrs],
            splits={},
        )
        self.data = data
        self.env = MCREnv(data, self.max_turn, self.topk)  # read-only helper; decide() uses its own env
        hidden = int(q_state["0.weight"].shape[0])
        self.policy = SCPRPolicy(fm, self.max_turn, self.topk, hidden)
        self.policy.q.load_state_dict({k: v.float() for k, v in q_state.items()})
        self.policy.q.eval()
        self.policy.epsilon = 0.0

    # ------------------------------------------------------------------------------------------ ids
    def is_attribute(self, eid: int) -> bool:
        """Whether KG entity ``eid`` is an attribute of the Movie domain."""
        return int(eid) in self.attr_of

    def is_item(self, eid: int) -> bool:
        """Whether KG entity ``eid`` is a movie of the Movie domain."""
        return int(eid) in self.item_of

    # ------------------------------------------------------------------------------------------ decide
    def candidates(self, state: GuideState) -> tuple[np.ndarray, list[int], list[int]]:
        """Eq. 3 over the chat state: ``(V_cand mask, P_u used, accepted attributes dropped)``."""
        acc = list(dict.fromkeys(self.attr_of[e] for e in state.accepted if e in self.attr_of))
        excluded = [self.item_of[e] for e in state.excluded_items if e in self.item_of]
        allowed = np.ones(self.env.n_items, dtype=bool)
        allowed[excluded] = False
        dropped: list[int] = []
        while True:
            mask = allowed.copy()
            for p in acc:
                keep = np.zeros_like(mask)
                keep[self.env.items_with(p)] = True
                mask &= keep
            if mask.any() or not acc:  # (empty only when every movie is excluded: Recommend(()) then)
                break
            dropped.append(acc.pop(0))
        return mask, acc, [int(self.attrs_kg[p]) for p in dropped]

    @torch.inference_mode()
    def decide(self, state: GuideState) -> Decision:
        """The trained policy's action for the chat state (KG ids in, KG ids out)."""
        mask, acc, dropped = self.candidates(state)
        rej = [self.attr_of[e] for e in dict.fromkeys(state.rejected_attrs) if e in self.attr_of and e not in acc]
        st = State(
            user=0,
            turn=len(state.history),
            accepted=acc,
            rejected_attrs=rej,
            rejected_items=[],
            cand_items=mask,
            history=[int(h) for h in state.history[-self.max_turn :]],
        )
        env = MCREnv(self.data, self.max_turn, self.topk)  # per call (cheap): concurrent sessions share the guide
        env.state = st
        q = self.policy.q(torch.from_numpy(self.policy.state_vec(env, st))[None])[0]
        qv = (round(float(q[0]), 6), round(float(q[1]), 6))
        a = int(torch.argmax(q))
        n = int(mask.sum())
        kind, arg = self.policy.to_action(a, env, st)
        if kind == "ask":
            return Ask(int(self.attrs_kg[int(arg)]), qv, n, tuple(dropped))
        items = list(arg)
        scores = self.policy.fm.item_scores(0, acc, np.asarray(items, dtype=np.int64)) if items else []
        return Recommend(
            tuple(int(self.items_kg[v]) for v in items),
            tuple(round(float(s), 6) for s in scores),
            qv,
            n,
            tuple(dropped),
        )

    # ------------------------------------------------------------------------------------------ storage
    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor], meta: dict, n_entities: int | None = None) -> MovieGuide:
        """Rebuild from :func:`guide_tensors` output (fp16 or fp32 floats).

        Raises:
            ValueError: missing tensors or ids outside the KG.
        """
        need = ("items_kg", "attrs_kg", "item_attr_ptr", "item_attr_idx", "fm.item", "fm.attr", "fm.user")
        missing = [k for k in need if k not in t]
        if missing:
            raise ValueError(f"guide tensors missing {missing}")
        items_kg, attrs_kg = t["items_kg"].long().numpy(), t["attrs_kg"].long().numpy()
        if n_entities is not None:
            for name, ids in (("items_kg", items_kg), ("attrs_kg", attrs_kg)):
                if len(ids) and (ids.min() < 0 or ids.max() >= n_entities):
                    raise ValueError(f"guide {name} has ids outside the KG's 0..{n_entities - 1}")
        ptr, idx = t["item_attr_ptr"].long().numpy(), t["item_attr_idx"].long().numpy()
        item_attrs = [idx[ptr[v] : ptr[v + 1]] for v in range(len(items_kg))]
        fm = FM(*(t[f"fm.{k}"].float().numpy() for k in ("user", "item", "attr")))
        q_state = {k[len("net.") :]: v for k, v in t.items() if k.startswith("net.")}
        return cls(items_kg, attrs_kg, item_attrs, fm, q_state, meta)

    @classmethod
    def from_run(cls, cfg: GuideConfig, n_entities: int | None = None) -> MovieGuide:
        """Build straight from a training run folder (no bundle)."""
        t, meta = guide_tensors(cfg)
        return cls.from_tensors(t, meta, n_entities)


def pack_guide(
    items_kg: list[int] | np.ndarray,
    attrs_kg: list[int] | np.ndarray,
    item_attrs: list[np.ndarray],
    fm: FM,
    q_state: dict[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """Tensors of a guide: ids, the item->attribute CSR, FM item/attribute tables, mean user, Q-network."""
    lens = np.array([len(a) for a in item_attrs], dtype=np.int64)
    ptr = np.concatenate(([0], np.cumsum(lens))).astype(np.int64)
    idx = np.concatenate([np.asarray(a, dtype=np.int64) for a in item_attrs]) if item_attrs else np.zeros(0, np.int64)
    out = {
        "items_kg": torch.as_tensor(np.asarray(items_kg, dtype=np.int64)),
        "attrs_kg": torch.as_tensor(np.asarray(attrs_kg, dtype=np.int64)),
        "item_attr_ptr": torch.from_numpy(ptr),
        "item_attr_idx": torch.from_numpy(idx),
        "fm.item": torch.from_numpy(np.ascontiguousarray(fm.item, dtype=np.float32)),
        "fm.attr": torch.from_numpy(np.ascontiguousarray(fm.attr, dtype=np.float32)),
        "fm.user": torch.from_numpy(np.ascontiguousarray(fm.user.mean(0, keepdims=True), dtype=np.float32)),
    }
    out.update({f"net.{k}": v.detach().cpu().float() for k, v in q_state.items()})
    return out


def guide_tensors(cfg: GuideConfig) -> tuple[dict[str, torch.Tensor], dict]:
    """Load a trained Movie policy + its FM, link the Movie dataset to the KG and pack both.

    Raises:
        FileNotFoundError: the run folder, FM or data are missing.
        ValueError: not a Movie-domain policy of a supported kind, or the mapping does not match the
            tables the policy was trained with (another KG / MovieLens build).
    """
    from crwalker.policies.checkpoint import load_tensors
    from crwalker.policies.movie_data import movie_index
    from kg_build.schema import KnowledgeGraph

    run = Path(cfg.run_dir)
    if cfg.policy not in GUIDE_POLICIES:
        raise ValueError(f"guide policy must be one of {GUIDE_POLICIES}, got {cfg.policy!r}")
    if not (run / "policy.json").exists():
        raise FileNotFoundError(
            f"{run}/policy.json not found: train it with `python -m crwalker.policies.train --policy {cfg.policy} "
            "--dataset movie` (or pass another run folder)"
        )
    pmeta = read_json(run / "policy.json")
    if pmeta.get("policy") != cfg.policy or pmeta.get("dataset") != "movie":
        raise ValueError(
            f"{run} holds policy {pmeta.get('policy')!r} on {pmeta.get('dataset')!r}, expected {cfg.policy!r} on 'movie'"
        )
    fm_dir = cfg.fm_path()
    if not (fm_dir / "fm.safetensors").exists():
        raise FileNotFoundError(f"{fm_dir}/fm.safetensors not found (the FM the policy was trained with)")
    fm = FM.load(fm_dir)
    net = {k[len("net.") :]: v for k, v in load_tensors(run / "policy.safetensors").items() if k.startswith("net.")}
    kg = KnowledgeGraph.load(cfg.kg)
    index = movie_index(kg, cfg.movielens, cfg.min_attr_items)
    if (len(index.items_kg), len(index.attrs_kg)) != (fm.item.shape[0], fm.attr.shape[0]):
        raise ValueError(
            f"Movie dataset rebuilt from {cfg.kg} + {cfg.movielens} has {len(index.items_kg)} items / "
            f"{len(index.attrs_kg)} attributes, the FM of {fm_dir} {fm.item.shape[0]} / {fm.attr.shape[0]}: "
            "not the data the policy was trained on"
        )
    names = [kg.entities[a].name for a in index.attrs_kg]
    movie_dir = Path(pmeta.get("config", {}).get("movie_dir") or "/nonexistent")  # the run's --movie-dir
    if (movie_dir / "meta.json").exists() and read_json(movie_dir / "meta.json").get("attr_names") not in (None, names):
        raise ValueError(f"attribute names of {movie_dir} differ from the Movie dataset rebuilt from {cfg.kg}")
    tensors = pack_guide(index.items_kg, index.attrs_kg, index.item_attrs(), fm, net)
    metrics = {}
    if cfg.results and Path(cfg.results).is_file():
        metrics = read_json(cfg.results).get("movie", {}).get(cfg.policy, {})
    meta = {
        "policy": cfg.policy,
        "source": str(run),
        "fm_source": str(fm_dir),
        "dataset": "movie",
        "episode": int(pmeta.get("episode", 0)),
        "train_minutes": pmeta.get("train_minutes"),
        "max_turn": int(pmeta.get("config", {}).get("max_turn", 15)),
        "topk": int(pmeta.get("config", {}).get("topk", 10)),
        "min_attr_items": cfg.min_attr_items,
        "n_items": len(index.items_kg),
        "n_attrs": len(index.attrs_kg),
        "user_vector": "mean of the FM's trained user vectors",
        "metrics": {k: metrics[k] for k in ("SR@15", "AT", "hDCG", "n_sessions") if k in metrics},
    }
    return tensors, meta


def evaluate_anonymous(cfg: GuideConfig, limit: int = 0, seed: int = 0) -> dict:
    """SR@15 / AT / hDCG of the guide's policy on the simulated Movie test sessions, with the trained per-user
    FM vectors (as in ``results/mcr.json``) and with the chat's anonymous mean user vector.

    Args:
        cfg: The guide (``run_dir`` / ``fm_dir``; the Movie dataset is read from the run's ``--movie-dir``).
        limit: Seeded random subset of this many test sessions (0 = all).
        seed: Simulator seed.
    """
    import time

    from crwalker.policies.baselines import run_sessions
    from crwalker.policies.common import MCRConfig, load_data, load_trained
    from crwalker.policies.env import sessions
    from crwalker.policies.metrics import summarize

    pconf = read_json(Path(cfg.run_dir) / "policy.json").get("config", {})
    mcfg = MCRConfig(
        policy=cfg.policy, dataset="movie", movie_dir=pconf.get("movie_dir", "data/mcr/movie"), run_dir=cfg.run_dir,
        fm_dir=str(cfg.fm_path()), seed=seed, limit=limit,
    )  # fmt: skip
    data = load_data(mcfg)
    env = MCREnv(data, mcfg.max_turn, mcfg.topk, seed)
    pairs = sessions(data, "test", limit or None, seed)
    out = {}
    for name in ("per_user", "mean_user"):
        policy, _ = load_trained(mcfg, data, "cpu")
        if name == "mean_user":
            fm = policy.fm
            policy.fm = FM(np.repeat(fm.user.mean(0, keepdims=True), fm.user.shape[0], 0), fm.item, fm.attr)
        t0 = time.time()
        m = summarize(run_sessions(env, policy, pairs, desc=name), mcfg.max_turn, mcfg.topk)
        out[name] = {k: m[k] for k in ("SR@15", "AT", "hDCG", "n_sessions")} | {"seconds": round(time.time() - t0, 1)}
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m crwalker.policies.guide [--run-dir ...] [--limit N]``: :func:`evaluate_anonymous`, printed."""
    import json

    from data_scripts.utils.config import parse_config

    @dataclasses.dataclass
    class EvalConfig(GuideConfig):
        """Evaluate the guide's policy on the simulator with per-user and with the chat's mean user vector."""

        limit: int = field(0, "Seeded random subset of the Movie test sessions (0 = all).")
        seed: int = field(0, "Simulator seed.")
        threads: int = field(1, "torch.set_num_threads.")

    cfg = parse_config(EvalConfig, argv)
    torch.set_num_threads(cfg.threads)
    print(json.dumps(evaluate_anonymous(cfg, cfg.limit, cfg.seed)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
