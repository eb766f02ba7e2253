"""KGenSam (Zhao et al., "Knowledge Graph-enhanced Sampling for Conversational Recommender System", TKDE).

Four learned parts on the user–item–attribute knowledge graph (KG):

* **Recommender**: the FM of :mod:`crwalker.policies.fm` (EAR Eq. 1/4), pretrained with BPR on items and
  attributes, then trained jointly with the Negative Sampler (BPR with the sampler's negatives).
* **Active Sampler** (what to ask, "fuzzy samples"): a 2-layer GCN (hidden 8, 8) over the attribute graph whose
  node feature is the recommender's uncertainty about the attribute, :func:`attr_uncertainty`; trained with
  REINFORCE where the reward of a question is the **AUC gain** of the recommender's attribute prediction on
  held-out sessions after the recommender learned the answer (:func:`attr_auc`, :func:`shape_rewards`).
* **Negative Sampler** (reliable negatives, KGPolicy-style): 2 SAGEConv layers (64→32→64) over a neighbour-sampled
  KG; from a positive item it walks 2 hops (1-hop: attention ``softmax_j(LeakyReLU(e_pos ⊙ e_j)·e_u)``, argmax;
  2-hop: top-``n`` by the same attention, kept to items, then the candidate the recommender scores highest);
  reward **Eq. 14** :func:`negative_reward` ``r = f(u, n) + f(n, i)`` (prediction + similarity reward), REINFORCE
  with the previous epoch's mean reward as baseline.
* **Conversational policy**: double DQN over {ask, recommend} (prioritized replay, soft target update) on the
  dialogue-history + candidate-size state; *ask* takes the Active Sampler's best candidate attribute, *recommend*
  the top-K candidate items of the session's recommender; after a rejected list the session's recommender is
  updated online with BPR on the Negative Sampler's negatives and on the rejected items.

Reference settings taken from the authors' code (ORZisemoji/KGenSam, ``configuration/base_config.py``): active
sampler GCN hidden ``[8, 8]``, recommender-update lr 1e-2 inside the reward, reward shaping "234" (final-reward
weight 1e-3, running mean baseline and running second-moment scaling, rate 0.05), 15 turns per sampler episode;
negative sampler SAGE channels 64→32→64, lr 1e-3 (sampler and recommender), reward discount irrelevant for
``k_step = 1``. CPU deviations (documented in ``docs/policies.md``): 16 sampled neighbours per KG node (64 in
the reference), 16 two-hop candidates (64), a fixed sampled KG at inference, far fewer training steps.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from crwalker.policies.baselines import SCPRPolicy, top_items
from crwalker.policies.env import MCREnv, State
from crwalker.policies.fm import FM
from data_scripts.mcr import MCRData

# ----------------------------------------------------------------------------------------------------------------
# Active Sampler
# ----------------------------------------------------------------------------------------------------------------


def attr_uncertainty(fm_user: np.ndarray, fm_attr: np.ndarray, accepted: list[int]) -> np.ndarray:
    """Recommender uncertainty per attribute: binary entropy of ``σ(g(p | u, P_u))`` (EAR Eq. 4 score), in nats."""
    q = fm_user + fm_attr[accepted].sum(0)
    p = 1.0 / (1.0 + np.exp(-(fm_attr @ q)))
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return -(p * np.log(p) + (1 - p) * np.log(1 - p))


def attribute_graph(data: MCRData, max_neighbors: int = 16) -> torch.Tensor:
    """Normalised attribute co-occurrence graph ``D^-1/2 (A + I) D^-1/2`` (sparse COO).

    ``A[p, p'] = 1`` when ``p'`` is among the ``max_neighbors`` attributes sharing most items with ``p`` (the
    attribute–item–attribute paths of the KG), symmetrised.
    """
    import scipy.sparse as sp

    ptr, idx = data.item_attr_csr
    x = sp.csr_matrix((np.ones(len(idx), np.float32), idx, ptr), shape=(data.n_items, data.n_attrs))
    co = (x.T @ x).tocsr()
    co.setdiag(0)
    co.eliminate_zeros()
    rows, cols = [], []
    for p in range(data.n_attrs):
        s, e = co.indptr[p], co.indptr[p + 1]
        if e > s:
            top = np.argsort(-co.data[s:e], kind="stable")[:max_neighbors]
            rows.append(np.full(len(top), p))
            cols.append(co.indices[s:e][top])
    r = np.concatenate(rows + [np.arange(data.n_attrs)]) if rows else np.arange(data.n_attrs)
    c = np.concatenate(cols + [np.arange(data.n_attrs)]) if cols else np.arange(data.n_attrs)
    a = sp.coo_matrix((np.ones(len(r), np.float32), (r, c)), shape=(data.n_attrs,) * 2).tocsr()
    a = ((a + a.T) > 0).astype(np.float32).tocoo()
    deg = np.asarray(a.sum(1)).ravel()
    w = a.data / np.sqrt(deg[a.row] * deg[a.col])
    i = torch.from_numpy(np.stack([a.row, a.col]).astype(np.int64))
    return torch.sparse_coo_tensor(i, torch.from_numpy(w.astype(np.float32)), a.shape, check_invariants=True).coalesce()


class ActiveSampler(nn.Module):
    """GCN policy over the attribute graph: logits per attribute from the uncertainty feature."""

    def __init__(self, adj: torch.Tensor, hidden: tuple[int, ...] = (8, 8), in_dim: int = 1):
        super().__init__()
        self.register_buffer("adj", adj, persistent=False)
        dims = (in_dim, *hidden)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True))
        self.out = nn.Linear(dims[-1], 1, bias=False)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        """``feat`` [A, in_dim] -> logits [A]; each layer ``ReLU(Â H W + b)``."""
        h = feat
        for lin in self.layers:
            h = torch.relu(torch.sparse.mm(self.adj, lin(h)))
        return self.out(h).squeeze(-1)

    def logits(self, uncertainty: np.ndarray) -> torch.Tensor:
        return self(torch.from_numpy(uncertainty.astype(np.float32))[:, None])

    def pick(self, uncertainty: np.ndarray, pool: np.ndarray) -> int:
        """Greedy action: the pool attribute with the largest logit (-1 if the pool is empty)."""
        if pool.size == 0:
            return -1
        with torch.inference_mode():
            lg = self.logits(uncertainty).numpy()
        return int(pool[np.argmax(lg[pool])])


def attr_auc(fm_user: np.ndarray, fm_attr: np.ndarray, data: MCRData, pairs: np.ndarray, known: np.ndarray) -> float:
    """Mean AUC of the recommender's attribute ranking on held-out sessions (the Active Sampler's reward signal).

    For session ``(u, v)`` with one known attribute ``known[i]`` of ``v``, the scores ``g(p | u, {known})`` should
    rank ``v``'s other attributes above the attributes ``v`` lacks; AUC = P(score(pos) > score(neg)).
    """
    q = fm_user[pairs[:, 0]] + fm_attr[known]  # [S, d]
    s = q @ fm_attr.T  # [S, A]
    aucs = []
    for i, (_, v) in enumerate(pairs):
        pos = np.zeros(fm_attr.shape[0], bool)
        pos[data.item_attrs[v]] = True
        pos[known[i]] = False
        neg = ~pos
        neg[known[i]] = False
        n_pos, n_neg = int(pos.sum()), int(neg.sum())
        if n_pos == 0 or n_neg == 0:
            continue
        both = pos | neg
        sc, lab = s[i][both], pos[both]
        ranks = np.empty(len(sc))
        ranks[np.argsort(sc, kind="stable")] = np.arange(1, len(sc) + 1)  # 1 = lowest (Mann-Whitney U)
        aucs.append((ranks[lab].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    return float(np.mean(aucs)) if aucs else 0.5


class RewardShaper:
    """KGenSam reward shaping "234": per-turn AUC gains + weighted final AUC, running baseline and scale."""

    def __init__(self, final_weight: float = 1e-3, rate: float = 0.05, max_turn: int = 15):
        self.final_weight, self.rate = final_weight, rate
        self.mean = np.zeros(max_turn)
        self.sq = np.zeros(max_turn)
        self.started = False

    def __call__(self, aucs: np.ndarray) -> np.ndarray:
        return shape_rewards(aucs, self)


def shape_rewards(aucs: np.ndarray, shaper: RewardShaper) -> np.ndarray:
    """AUC gains ``r_t = AUC_t − AUC_{t−1}`` + ``w·AUC_T``, minus a running mean, divided by a running RMS."""
    r = np.diff(aucs) + shaper.final_weight * aucs[-1]
    t = len(r)
    if not shaper.started:
        shaper.mean[:t], shaper.sq[:t], shaper.started = r, r**2, True
    else:
        shaper.mean[:t] = (1 - shaper.rate) * shaper.mean[:t] + shaper.rate * r
        shaper.sq[:t] = (1 - shaper.rate) * shaper.sq[:t] + shaper.rate * r**2
    return (r - shaper.mean[:t]) / np.sqrt(np.maximum(shaper.sq[:t], 1e-12))


def train_active_sampler(
    sampler: ActiveSampler,
    fm: FM,
    data: MCRData,
    episodes: int,
    *,
    max_turn: int = 15,
    lr: float = 3e-2,
    fm_lr: float = 1e-2,
    n_valid: int = 32,
    seed: int = 0,
    log: Callable[[dict], None] | None = None,
) -> dict:
    """REINFORCE for the Active Sampler; reward = AUC gain of the recommender after learning each answer.

    An episode is a training (user, item) pair: each turn the sampler asks an attribute of the pool (all
    attributes not asked yet; sampled from its softmax during training), the item's attributes among the
    answers become the known preferences, and a copy of the recommender's attribute embeddings takes one BPR
    step (lr ``fm_lr``) ranking the item's remaining attributes above random ones given the known ones.
    """
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(sampler.parameters(), lr=lr)
    vp = data.splits["valid"]
    vp = vp[rng.choice(len(vp), size=min(n_valid, len(vp)), replace=False)]
    vknown = np.array([data.item_attrs[v][rng.integers(len(data.item_attrs[v]))] for v in vp[:, 1]])
    shaper = RewardShaper(max_turn=max_turn)
    pairs = data.splits["train"]
    t0, hist = time.time(), []
    for ep in tqdm(range(episodes), desc="kgensam active sampler", mininterval=5):
        u, v = pairs[rng.integers(len(pairs))]
        attr = torch.tensor(fm.attr, requires_grad=True)
        user = torch.from_numpy(fm.user[u])
        fopt = torch.optim.Adam([attr], lr=fm_lr)
        truth = {int(p) for p in data.item_attrs[v]}
        asked: list[int] = []
        given: list[int] = []
        aucs = [attr_auc(fm.user, fm.attr, data, vp, vknown)]
        logps = []
        for _ in range(max_turn):
            a_np = attr.detach().numpy()
            unc = attr_uncertainty(fm.user[u], a_np, given)
            pool = np.setdiff1d(np.arange(data.n_attrs), asked)
            if pool.size == 0:
                break
            lg = sampler.logits(unc)[torch.from_numpy(pool)]
            dist = torch.distributions.Categorical(logits=lg)
            k = dist.sample()
            p = int(pool[int(k)])
            logps.append(dist.log_prob(k))
            asked.append(p)
            if p in truth:
                given.append(p)
            residual = [x for x in truth if x not in given]
            if residual:
                neg = rng.integers(data.n_attrs, size=len(residual))
                q = user + attr[given].sum(0) if given else user
                loss = -F.logsigmoid((attr[residual] @ q).sum() - (attr[torch.from_numpy(neg)] @ q).sum())
                fopt.zero_grad()
                loss.backward()
                fopt.step()
            aucs.append(attr_auc(fm.user, attr.detach().numpy(), data, vp, vknown))
        if not logps:
            continue
        adv = torch.from_numpy(shaper(np.array(aucs)).astype(np.float32))
        pg = -(torch.stack(logps) * adv).sum()
        opt.zero_grad()
        pg.backward()
        opt.step()
        hist.append(aucs[-1] - aucs[0])
        if log and (ep + 1) % 10 == 0:
            log({"episode": ep + 1, "auc_gain": float(np.mean(hist[-10:])), "seconds": time.time() - t0})
    return {"episodes": episodes, "seconds": time.time() - t0, "mean_auc_gain": float(np.mean(hist)) if hist else 0.0}


# ----------------------------------------------------------------------------------------------------------------
# Negative Sampler
# ----------------------------------------------------------------------------------------------------------------


def kg_neighbors(data: MCRData, k: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Neighbour-sampled KG over nodes ``[users | items | attributes]`` (user–item, item–attribute edges).

    Returns ``(adj [N, 2k], edges [N, k])``: ``edges[n]`` are ``k`` sampled neighbours of ``n`` (padded with
    ``n`` itself) used by the GCN; ``adj[n]`` the same neighbours padded with random items, followed by ``k``
    random items (the exploration candidates of the KGPolicy walk).
    """
    rng = np.random.default_rng(seed)
    nu, ni = data.n_users, data.n_items
    n = nu + ni + data.n_attrs
    tr = data.splits["train"]
    ptr, idx = data.item_attr_csr
    src = np.concatenate([tr[:, 0], nu + tr[:, 1], nu + np.repeat(np.arange(ni), np.diff(ptr)), nu + ni + idx])
    dst = np.concatenate([nu + tr[:, 1], tr[:, 0], nu + ni + idx, nu + np.repeat(np.arange(ni), np.diff(ptr))])
    order = np.argsort(src, kind="stable")
    src, dst = src[order], dst[order]
    starts = np.searchsorted(src, np.arange(n))
    counts = np.bincount(src, minlength=n)
    adj = np.empty((n, 2 * k), np.int64)
    edges = np.empty((n, k), np.int64)
    for node in range(n):
        nb = dst[starts[node] : starts[node] + counts[node]]
        if len(nb) >= k:
            nb = rng.choice(nb, size=k, replace=False)
            edges[node], adj[node, :k] = nb, nb
        else:
            edges[node] = np.concatenate([nb, np.full(k - len(nb), node)])
            adj[node, :k] = np.concatenate([nb, nu + rng.integers(ni, size=k - len(nb))])
        adj[node, k:] = nu + rng.integers(ni, size=k)
    return adj, edges


class NegativeSampler(nn.Module):
    """KGPolicy-style negative sampler: 2 SAGEConv layers over the sampled KG and a 2-hop attentive walk."""

    def __init__(self, n_nodes: int, n_users: int, n_items: int, channels: tuple[int, int, int] = (64, 32, 64)):
        super().__init__()
        from torch_geometric.nn import SAGEConv

        self.n_users, self.n_items = n_users, n_items
        self.emb = nn.Parameter(torch.empty(n_nodes, channels[0]))
        nn.init.xavier_uniform_(self.emb)
        self.conv1 = SAGEConv(channels[0], channels[1])
        self.conv2 = SAGEConv(channels[1], channels[2])

    def encode(self, edges: torch.Tensor) -> torch.Tensor:
        """GCN embeddings of all KG nodes; ``edges`` [N, k] sampled neighbours."""
        n, k = edges.shape
        ei = torch.stack([edges.reshape(-1), torch.arange(n).repeat_interleave(k)])  # neighbour -> node
        x = F.dropout(F.leaky_relu(self.conv1(self.emb, ei)), 0.5, self.training)
        x = F.dropout(self.conv2(x, ei), 0.5, self.training)
        return F.normalize(x, dim=-1)

    def walk(
        self,
        g: torch.Tensor,
        adj: torch.Tensor,
        users: torch.Tensor,
        pos: torch.Tensor,
        rec_scores: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        n_candidates: int = 16,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """2-hop walk from ``pos`` (KG node ids) -> (negative item node ids [B], log-probability [B]).

        Hop 1 takes the neighbour with the largest attention ``softmax_j(LeakyReLU(g_pos ⊙ g_j) · g_u)``; hop 2
        keeps the ``n_candidates`` best neighbours of that node by the same attention, replaces non-items by
        random items, and picks the one the recommender scores highest (``rec_scores(users, cands)``).
        """
        lo, hi = self.n_users, self.n_users + self.n_items
        gu = g[users]

        def attend(center: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            nb = adj[center]  # [B, 2k]
            logit = (F.leaky_relu(g[center].unsqueeze(1) * g[nb]) * gu.unsqueeze(1)).sum(-1)
            return nb, F.log_softmax(logit, dim=1)

        nb1, lp1 = attend(pos)
        j1 = lp1.argmax(1)
        hop1 = nb1.gather(1, j1[:, None]).squeeze(1)
        nb2, lp2 = attend(hop1)
        top = lp2.topk(min(n_candidates, nb2.shape[1]), dim=1).indices
        cands = nb2.gather(1, top)
        bad = (cands < lo) | (cands >= hi)
        rand = torch.randint(lo, hi, cands.shape, generator=generator)
        cands = torch.where(bad, rand, cands)
        with torch.no_grad():
            best = rec_scores(users, cands).argmax(1)
        neg = cands.gather(1, best[:, None]).squeeze(1)
        logp = lp1.gather(1, j1[:, None]).squeeze(1) + lp2.gather(1, top.gather(1, best[:, None])).squeeze(1)
        return neg, logp


def negative_reward(user: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """KGenSam Eq. 14 (KGPolicy's reward): ``r = f(u, n) + f(n, i)`` = prediction + similarity reward (FM pairs)."""
    return (user * neg).sum(-1) + (neg * pos).sum(-1)


def train_negative_sampler(
    sampler: NegativeSampler,
    fm: FM,
    data: MCRData,
    adj: np.ndarray,
    edges: np.ndarray,
    steps: int,
    *,
    batch_size: int = 256,
    lr: float = 1e-3,
    rec_lr: float = 1e-3,
    reg: float = 1e-3,
    n_candidates: int = 16,
    seed: int = 0,
    log: Callable[[dict], None] | None = None,
) -> tuple[FM, dict]:
    """Joint training: recommender BPR with the sampler's negatives, sampler REINFORCE on Eq. 14 rewards.

    Only the recommender's user/item embeddings are updated here (as in the reference); returns the updated FM.
    """
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    nu = data.n_users
    user = nn.Parameter(torch.from_numpy(fm.user.copy()))
    item = nn.Parameter(torch.from_numpy(fm.item.copy()))
    ropt = torch.optim.Adam([user, item], lr=rec_lr)
    sopt = torch.optim.Adam(sampler.parameters(), lr=lr)
    adj_t, edges_t = torch.from_numpy(adj), torch.from_numpy(edges)
    train = data.splits["train"]
    seen = {(int(u), int(v)) for u, v in train}

    def rec_scores(users: torch.Tensor, cand_nodes: torch.Tensor) -> torch.Tensor:
        return (user[users].unsqueeze(1) * item[cand_nodes - nu]).sum(-1)

    t0, avg_reward, rewards = time.time(), 0.0, []
    for step in tqdm(range(steps), desc="kgensam negative sampler", mininterval=5):
        b = train[rng.integers(len(train), size=batch_size)]
        u = torch.from_numpy(b[:, 0])
        pos = torch.from_numpy(b[:, 1])
        # recommender step with the sampler's negatives (interacted ones replaced by random items)
        sampler.train()
        g = sampler.encode(edges_t)
        neg_node, logp = sampler.walk(g, adj_t, u, pos + nu, rec_scores, n_candidates, gen)
        neg = neg_node - nu
        rand = torch.from_numpy(rng.integers(data.n_items, size=batch_size))
        hit = torch.tensor([(int(a), int(n)) in seen for a, n in zip(b[:, 0], neg.tolist(), strict=True)])
        neg_r = torch.where(hit, rand, neg.detach())
        ue, pe, ne = user[u], item[pos], item[neg_r]
        bpr = -F.logsigmoid((ue * pe).sum(-1) - (ue * ne).sum(-1)).mean()
        loss = bpr + reg * (ue.pow(2).sum() + pe.pow(2).sum() + ne.pow(2).sum()) / batch_size
        ropt.zero_grad()
        loss.backward()
        ropt.step()
        # sampler step: REINFORCE with Eq. 14 rewards of the recommender, baseline = previous mean reward
        with torch.no_grad():
            r = negative_reward(user[u], item[pos], item[neg.detach()])
        pg = -((r - avg_reward) * logp).sum() / batch_size
        sopt.zero_grad()
        pg.backward()
        sopt.step()
        rewards.append(float(r.mean()))
        if (step + 1) % 50 == 0:
            avg_reward = float(np.mean(rewards[-50:]))
            if log:
                log({"episode": step + 1, "ns_reward": avg_reward, "bpr": float(bpr), "seconds": time.time() - t0})
    new_fm = FM(user.detach().numpy().copy(), item.detach().numpy().copy(), fm.attr.copy())
    return new_fm, {"steps": steps, "seconds": time.time() - t0, "mean_reward": float(np.mean(rewards[-50:]))}


# ----------------------------------------------------------------------------------------------------------------
# Conversational policy
# ----------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class OnlineUpdate:
    """Online recommender update after a rejected list (KGenSam ``update_FM_model``)."""

    lr: float = 1e-2
    max_pos: int = 32


class KGenSamPolicy(SCPRPolicy):
    """Ask/recommend DQN (``SCPRPolicy``'s network and state) with KGenSam's samplers and online recommender.

    Per session the recommender (user vector and item table) is a copy that is updated after each rejected
    recommendation: one BPR step ranking the user's training items above (a) the Negative Sampler's negatives
    and (b) the rejected items.
    """

    name = "kgensam"

    def __init__(
        self,
        fm: FM,
        data: MCRData,
        active: ActiveSampler,
        neg_sampler: NegativeSampler,
        adj: np.ndarray,
        edges: np.ndarray,
        max_turn: int = 15,
        topk: int = 10,
        online: OnlineUpdate | None = None,
        n_candidates: int = 16,
        seed: int = 0,
    ):
        super().__init__(fm, max_turn, topk)
        self.name = "kgensam"
        self.data, self.active, self.neg_sampler = data, active, neg_sampler
        self.adj, self.edges = adj, edges
        self.online = online or OnlineUpdate()
        self.n_candidates, self.seed = n_candidates, seed
        ptr = np.zeros(data.n_users + 1, np.int64)
        tr = data.splits["train"]
        order = np.argsort(tr[:, 0], kind="stable")
        np.add.at(ptr, tr[:, 0] + 1, 1)
        self.user_ptr, self.user_items = np.cumsum(ptr), tr[order, 1]
        self._g: np.ndarray | None = None
        self._user = -1

    def refresh(self) -> None:
        """Recompute the Negative Sampler's KG embeddings (fixed at inference)."""
        self.neg_sampler.eval()
        with torch.inference_mode():
            self._g = self.neg_sampler.encode(torch.from_numpy(self.edges)).numpy()

    # --- session recommender -------------------------------------------------------------------------------
    def begin(self, env, state, session_id):
        if self._g is None:
            self.refresh()
        self._user = state.user
        self.s_user = self.fm.user[state.user].copy()
        self.s_item: dict[int, np.ndarray] = {}  # item rows changed in this session
        self.rng_s = np.random.default_rng([self.seed, 11, session_id])

    def _items(self, ids: np.ndarray) -> np.ndarray:
        out = self.fm.item[ids]
        if self.s_item:
            for j, v in enumerate(ids):
                row = self.s_item.get(int(v))
                if row is not None:
                    out[j] = row
        return out

    def session_fm(self) -> FM:
        item = self.fm.item
        if self.s_item:
            item = item.copy()
            item[list(self.s_item)] = np.stack(list(self.s_item.values()))
        user = self.fm.user.copy()
        user[self._user] = self.s_user
        return FM(user, item, self.fm.attr)

    def best_attr(self, env: MCREnv, state: State) -> int:
        """Active Sampler: the candidate attribute (``P_cand``) with the largest policy logit."""
        pool = np.flatnonzero(env.cand_attr_mask())
        unc = attr_uncertainty(self.s_user, self.fm.attr, state.accepted)
        return self.active.pick(unc, pool)

    def to_action(self, a: int, env, state):
        p = self.best_attr(env, state) if a == 0 else -1
        if p >= 0:
            return ("ask", p)
        q = self.s_user + self.fm.attr[state.accepted].sum(0)
        if not self.s_item:
            return ("rec", top_items(self.fm, env, state, self.topk, q))
        return ("rec", top_items(self.session_fm(), env, state, self.topk, q))

    def negatives(self, user: int, pos: np.ndarray) -> np.ndarray:
        """Negative Sampler at inference: 2-hop walk on the fixed KG embeddings, pruned by the session recommender."""
        g, nu, ni = self._g, self.data.n_users, self.data.n_items
        k2 = self.adj.shape[1]
        gu = g[user]

        def attend(center: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            nb = self.adj[center]
            z = g[center][:, None, :] * g[nb]
            return nb, (np.where(z > 0, z, 0.01 * z) * gu).sum(-1)

        nb1, l1 = attend(nu + pos)
        hop1 = nb1[np.arange(len(pos)), l1.argmax(1)]
        nb2, l2 = attend(hop1)
        top = np.argsort(-l2, axis=1, kind="stable")[:, : min(self.n_candidates, k2)]
        cands = np.take_along_axis(nb2, top, 1)
        bad = (cands < nu) | (cands >= nu + ni)
        cands = np.where(bad, nu + self.rng_s.integers(ni, size=cands.shape), cands) - nu
        scores = (self._items(cands.ravel()).reshape(*cands.shape, -1) * self.s_user).sum(-1)
        neg = cands[np.arange(len(pos)), scores.argmax(1)]
        mine = set(self.user_items[self.user_ptr[user] : self.user_ptr[user + 1]].tolist())
        rand = self.rng_s.integers(ni, size=len(neg))
        return np.where([int(n) in mine for n in neg], rand, neg)

    def feedback(self, env, action, reward, done):
        """After a rejected list: one BPR step on the session recommender (sampler negatives + rejected items)."""
        if action[0] != "rec" or done:
            return
        user = env.state.user
        pos = self.user_items[self.user_ptr[user] : self.user_ptr[user + 1]]
        pos = pos[pos != env.target][: self.online.max_pos]
        rejected = np.asarray(list(action[1]), np.int64)
        if pos.size == 0 or rejected.size == 0:
            return
        neg = np.concatenate([self.negatives(user, pos), self.rng_s.choice(rejected, size=len(pos))])
        pos2 = np.concatenate([pos, pos])
        ids = np.unique(np.concatenate([pos2, neg]))
        u = torch.tensor(self.s_user, requires_grad=True)
        it = torch.tensor(self._items(ids), requires_grad=True)
        pi, ni_ = torch.from_numpy(np.searchsorted(ids, pos2)), torch.from_numpy(np.searchsorted(ids, neg))
        loss = -F.logsigmoid(it[pi] @ u - it[ni_] @ u).mean()
        loss.backward()
        with torch.no_grad():
            self.s_user = (u - self.online.lr * u.grad).numpy()
            new = (it - self.online.lr * it.grad).numpy()
        for j, v in enumerate(ids):
            self.s_item[int(v)] = new[j]
