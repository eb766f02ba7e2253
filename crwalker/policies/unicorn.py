"""UNICORN (Deng et al., SIGIR 2021): graph-based RL policy unifying ask / recommend / when.

Pipeline per dialogue state ``s_t = (u, P_u, P_rej, V_rej)``:

* :func:`preference_scores` -- Eq. 5/11: ``w_v = σ(e_u·e_v + Σ_{p∈P_u} e_v·e_p)`` for every candidate item.
* :func:`weighted_entropy` -- Eq. 12: ``w_p = −prob(p) log2 prob(p)`` with
  ``prob(p) = Σ_{v∈V_cand∩V_p} w_v / Σ_{v∈V_cand} w_v``.
* :func:`select_actions` -- §4.3: the action space is the top ``K_v`` items by ``w_v`` plus the top ``K_p``
  attributes of ``P_cand`` by ``w_p`` (K_v = K_p = 10).
* :func:`build_graph` -- Eq. 4/6, the dynamic weighted graph: nodes ``{u} ∪ P_u ∪ V_cand ∪ P_cand``;
  edges user–accepted attribute (weight 1), user–candidate item (weight ``w_v``), item–attribute
  (weight 1), both directions. CPU deviation (documented): ``V_cand`` / ``P_cand`` nodes are capped
  at the ``graph_items`` / ``graph_attrs`` best by ``w_v`` / ``w_p`` (0 = no cap); the action nodes are
  always included.
* :class:`UnicornQNet` -- Eq. 7 (``L_g = 2`` ``GCNConv`` layers on the weighted graph), Eq. 8-10 (one
  Transformer encoder layer over the GCN states of ``P_u`` in order, mean pooled), Eq. 13 (dueling
  ``Q(s, a) = f_V(s) + f_A(s, h_a)``).
* :func:`train_unicorn` -- double DQN (Eq. 17) with soft target update (Eq. 18, τ = 0.01),
  prioritized replay (Eq. 19), buffer 50,000, batch 128, Adam lr 1e-4, L2 1e-6, γ = 0.999,
  ε-greedy exploration.
* :class:`UnicornPolicy` -- §4.4.3 inference: take ``argmax_a Q``; an item action recommends the top-K
  items of the action space ranked by Q, an attribute action asks it.

Node ids: users ``[0, U)``, items ``[U, U+I)``, attributes ``[U+I, U+I+A)``.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch_geometric.nn import GCNConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from tqdm import tqdm

from crwalker.policies.baselines import Policy
from crwalker.policies.env import MCREnv, State
from crwalker.policies.rl import PrioritizedReplay, Transition, double_dqn_targets, soft_update


@dataclass
class GraphState:
    """A dialogue state encoded as its dynamic graph (numpy, int32 to keep the replay small).

    ``nodes`` are global node ids; ``edge_index`` [2, E] local ids (one direction; reversed on use);
    ``edge_weight`` [E]; ``accepted`` local ids of ``P_u`` in order; ``actions`` local ids of the action
    space (items first); ``n_item_actions`` how many of them are items.
    """

    nodes: np.ndarray
    edge_index: np.ndarray
    edge_weight: np.ndarray
    accepted: np.ndarray
    actions: np.ndarray
    n_item_actions: int


@dataclass
class GraphBatch:
    """A batch of :class:`GraphState` merged into one disjoint graph (input of :class:`UnicornQNet`)."""

    nodes: torch.Tensor  # [N] global ids
    edge_index: torch.Tensor  # [2, 2E]
    edge_weight: torch.Tensor  # [2E]
    accepted: torch.Tensor  # [B, La] global positions in the merged graph
    accepted_mask: torch.Tensor  # [B, La]
    actions: torch.Tensor  # [B, Lq]
    action_mask: torch.Tensor  # [B, Lq]

    @classmethod
    def collate(cls, states: list[GraphState], device: str | torch.device = "cpu") -> GraphBatch:
        offs = np.concatenate(([0], np.cumsum([len(s.nodes) for s in states])[:-1]))
        ei = np.concatenate([s.edge_index.astype(np.int64) + o for s, o in zip(states, offs, strict=True)], axis=1)
        ew = np.concatenate([s.edge_weight for s in states]).astype(np.float32)
        la = max(1, max(len(s.accepted) for s in states))
        lq = max(1, max(len(s.actions) for s in states))
        acc = np.zeros((len(states), la), np.int64)
        accm = np.zeros((len(states), la), bool)
        act = np.zeros((len(states), lq), np.int64)
        actm = np.zeros((len(states), lq), bool)
        for i, (s, o) in enumerate(zip(states, offs, strict=True)):
            acc[i, : len(s.accepted)], accm[i, : len(s.accepted)] = s.accepted + o, True
            act[i, : len(s.actions)], actm[i, : len(s.actions)] = s.actions + o, True
        ei2 = np.concatenate([ei, ei[::-1]], axis=1)
        t = lambda x: torch.from_numpy(np.ascontiguousarray(x)).to(device)  # noqa: E731
        nodes = t(np.concatenate([s.nodes for s in states]).astype(np.int64))
        return cls(nodes, t(ei2), t(np.concatenate([ew, ew])), t(acc), t(accm), t(act), t(actm))

    def adjacency(self) -> torch.Tensor:
        """Eq. 7 propagation matrix ``D^-1/2 (A + I) D^-1/2`` of the weighted graph as a sparse CSR tensor.

        Computed once per batch with PyG's ``gcn_norm`` and fed to ``GCNConv(normalize=False)``, which then
        uses one sparse matmul per layer (several times faster on CPU than edge-wise message passing).
        """
        n = self.nodes.shape[0]
        ei, ew = gcn_norm(self.edge_index, self.edge_weight, n, add_self_loops=True)
        # adj_t[target, source]: messages flow source -> target
        coo = torch.sparse_coo_tensor(ei.flip(0), ew, (n, n), check_invariants=False).coalesce()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "Sparse CSR tensor support is in beta state"
            return coo.to_sparse_csr()


def preference_scores(emb: np.ndarray, user_node: int, accepted_nodes: list[int], item_nodes: np.ndarray) -> np.ndarray:
    """Eq. 5 / 11: ``w_v = σ(e_u·e_v + Σ_{p∈P_u} e_v·e_p)``."""
    q = emb[user_node] + emb[accepted_nodes].sum(0)
    return 1.0 / (1.0 + np.exp(-(emb[item_nodes] @ q)))


def weighted_entropy(env: MCREnv, cand_items: np.ndarray, w_items: np.ndarray) -> np.ndarray:
    """Eq. 12: ``w_p = −prob(p) log2 prob(p)``, ``prob(p) = Σ_{v∈V_cand∩V_p} w_v / Σ_{v∈V_cand} w_v``."""
    prob = env.attr_sums(cand_items, w_items) / max(float(w_items.sum()), 1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.nan_to_num(-prob * np.log2(prob))


def select_actions(
    env: MCREnv,
    state: State,
    emb: np.ndarray,
    n_users: int,
    k_v: int = 10,
    k_p: int = 10,
    graph_items: int = 50,
    graph_attrs: int = 50,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """§4.3 action selection. Returns (graph items, their w_v, graph attrs, item actions, attr actions).

    Item/attribute arrays are item/attribute ids (not node ids), sorted by score descending.
    """
    n_items = env.n_items
    items = np.flatnonzero(state.cand_items)
    acc_nodes = [n_users + n_items + p for p in state.accepted]
    w = preference_scores(emb, state.user, acc_nodes, n_users + items) if items.size else np.zeros(0)
    order = np.lexsort((items, -w))
    items, w = items[order], w[order]
    went = weighted_entropy(env, items, w) if items.size else np.zeros(env.n_attrs)
    pmask = went > 0
    pmask[state.accepted] = False
    pmask[state.rejected_attrs] = False
    attrs = np.flatnonzero(pmask)
    attrs = attrs[np.lexsort((attrs, -went[attrs]))]
    gi = items if graph_items <= 0 else items[: max(graph_items, k_v)]
    ga = attrs if graph_attrs <= 0 else attrs[: max(graph_attrs, k_p)]
    return gi, w[: len(gi)], ga, items[:k_v], attrs[:k_p]


def build_graph(
    env: MCREnv,
    state: State,
    emb: np.ndarray,
    n_users: int,
    k_v: int = 10,
    k_p: int = 10,
    graph_items: int = 50,
    graph_attrs: int = 50,
) -> GraphState:
    """Eq. 4/6: the dynamic weighted graph of ``state`` plus its action space."""
    n_items = env.n_items
    gi, wv, ga, act_i, act_p = select_actions(env, state, emb, n_users, k_v, k_p, graph_items, graph_attrs)
    attrs_in = np.unique(np.concatenate([np.asarray(state.accepted, np.int64), ga]))
    nodes = np.concatenate([[state.user], n_users + gi, n_users + n_items + attrs_in]).astype(np.int64)
    item_local = {int(v): 1 + i for i, v in enumerate(gi)}
    attr_local = {int(p): 1 + len(gi) + j for j, p in enumerate(attrs_in)}
    src, dst, wt = [], [], []
    for p in state.accepted:  # user – accepted attribute
        src.append(0), dst.append(attr_local[p]), wt.append(1.0)
    src.extend([0] * len(gi)), dst.extend(range(1, 1 + len(gi))), wt.extend(wv.tolist())  # user – item (w_v)
    attr_set = set(attr_local)
    for v in gi:  # item – attribute
        for p in env.ia_idx[env.ia_ptr[v] : env.ia_ptr[v + 1]]:
            if int(p) in attr_set:
                src.append(item_local[int(v)]), dst.append(attr_local[int(p)]), wt.append(1.0)
    actions = [item_local[int(v)] for v in act_i] + [attr_local[int(p)] for p in act_p]
    return GraphState(
        nodes=nodes.astype(np.int32),
        edge_index=np.asarray([src, dst], dtype=np.int32).reshape(2, -1),
        edge_weight=np.asarray(wt, dtype=np.float32),
        accepted=np.asarray([attr_local[p] for p in state.accepted], dtype=np.int64),
        actions=np.asarray(actions, dtype=np.int64),
        n_item_actions=len(act_i),
    )


class UnicornQNet(nn.Module):
    """Graph-based state encoder (Eq. 7-10) and dueling Q head (Eq. 13)."""

    def __init__(
        self,
        n_nodes: int,
        dim: int = 64,
        hidden: int = 100,
        gcn_layers: int = 2,
        heads: int = 1,
        init: np.ndarray | None = None,
    ):
        super().__init__()
        self.emb = nn.Embedding(n_nodes, dim)
        if init is not None:
            self.emb.weight.data.copy_(torch.from_numpy(init))
        self.gcn = nn.ModuleList(GCNConv(dim, dim, normalize=False) for _ in range(gcn_layers))
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=hidden, dropout=0.0, batch_first=True)
        self.seq = nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)
        self.fc = nn.Linear(dim, hidden)
        self.value = nn.Linear(hidden, 1)
        self.adv = nn.Sequential(nn.Linear(hidden + dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def encode(self, b: GraphBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 7 GCN over the merged graph, Eq. 8-10 Transformer + mean pooling -> (state [B, d], nodes [N, d])."""
        h = self.emb(b.nodes)
        adj = b.adjacency()
        for conv in self.gcn:
            h = torch.relu(conv(h, adj))
        seq = h[b.accepted]
        out = self.seq(seq, src_key_padding_mask=~b.accepted_mask)
        m = b.accepted_mask.unsqueeze(-1).float()
        return (out * m).sum(1) / m.sum(1).clamp(min=1), h

    def forward(self, b: GraphBatch) -> torch.Tensor:
        """Eq. 13: ``Q(s, a) = f_V(s) + f_A(s, h_a)`` for each action slot; invalid slots are -inf."""
        s, h = self.encode(b)
        x = torch.relu(self.fc(s))
        ha = h[b.actions]
        xa = x.unsqueeze(1).expand(-1, ha.shape[1], -1)
        q = self.value(x) + self.adv(torch.cat([xa, ha], -1)).squeeze(-1)
        return q.masked_fill(~b.action_mask, float("-inf"))


class UnicornPolicy(Policy):
    """§4.4.3 inference with a trained :class:`UnicornQNet`."""

    name = "unicorn"

    def __init__(
        self,
        net: UnicornQNet,
        n_users: int,
        topk: int = 10,
        k_v: int = 10,
        k_p: int = 10,
        graph_items: int = 50,
        graph_attrs: int = 50,
        device: str = "cpu",
    ):
        self.net, self.n_users, self.topk = net, n_users, topk
        self.k_v, self.k_p, self.graph_items, self.graph_attrs, self.device = k_v, k_p, graph_items, graph_attrs, device
        self.epsilon, self.rng = 0.0, np.random.default_rng(0)
        self._emb = None

    def emb(self) -> np.ndarray:
        """Current node embeddings (cached; call :meth:`refresh` after parameter updates)."""
        if self._emb is None:
            self._emb = self.net.emb.weight.detach().cpu().numpy()
        return self._emb

    def refresh(self) -> None:
        self._emb = None

    def graph(self, env: MCREnv, state: State) -> GraphState:
        return build_graph(env, state, self.emb(), self.n_users, self.k_v, self.k_p, self.graph_items, self.graph_attrs)

    def choose(self, g: GraphState) -> tuple[int, np.ndarray]:
        """Return (action slot, Q values of all slots)."""
        with torch.inference_mode():
            q = self.net(GraphBatch.collate([g], self.device))[0].cpu().numpy()
        if self.epsilon > 0 and self.rng.random() < self.epsilon:
            return int(self.rng.integers(len(g.actions))), q
        return int(np.argmax(q)), q

    def to_action(self, g: GraphState, slot: int, q: np.ndarray) -> tuple[str, object]:
        ni = g.n_item_actions
        if slot < ni:
            order = np.argsort(-q[:ni], kind="stable")[: self.topk]
            items = g.nodes[g.actions[order]].astype(np.int64) - self.n_users
            return ("rec", items.tolist())
        return ("ask", int(g.nodes[g.actions[slot]]) - self.n_users - self._n_items)

    def begin(self, env, state, session_id):
        self._n_items = env.n_items

    def act(self, env, state):
        self._n_items = env.n_items
        g = self.graph(env, state)
        slot, q = self.choose(g)
        return self.to_action(g, slot, q)


def train_unicorn(
    policy: UnicornPolicy,
    env: MCREnv,
    pairs: np.ndarray,
    episodes: int,
    *,
    lr: float = 1e-4,
    l2: float = 1e-6,
    gamma: float = 0.999,
    batch_size: int = 128,
    buffer: int = 50_000,
    tau: float = 0.01,
    eps_start: float = 0.5,
    eps_end: float = 0.05,
    eps_decay_episodes: int = 5000,
    seed: int = 0,
    start_episode: int = 0,
    optimizer: torch.optim.Optimizer | None = None,
    target: UnicornQNet | None = None,
    max_seconds: float | None = None,
    log: Callable[[dict], None] | None = None,
    checkpoint: Callable[[int, torch.optim.Optimizer, UnicornQNet], None] | None = None,
    checkpoint_every: int = 100,
) -> dict:
    """Double DQN + prioritized replay training loop (UNICORN §4.4.2). Returns timing stats."""
    rng = np.random.default_rng([seed, start_episode])
    net = policy.net
    target = target or copy.deepcopy(net)
    opt = optimizer or torch.optim.Adam(net.parameters(), lr=lr, weight_decay=l2)
    mem = PrioritizedReplay(buffer, seed=seed + start_episode)
    policy.rng = np.random.default_rng([seed, 1, start_episode])
    policy._n_items = env.n_items
    t0, steps, updates, rets = time.time(), 0, 0, []
    ep = start_episode
    for ep in tqdm(range(start_episode, episodes), desc="unicorn DQN", mininterval=5):
        policy.epsilon = eps_end + (eps_start - eps_end) * max(0.0, 1 - ep / max(eps_decay_episodes, 1))
        i = int(rng.integers(len(pairs)))
        st = env.reset(*pairs[i], session_id=40_000_000 + ep)
        g = policy.graph(env, st)
        done, ret = False, 0.0
        while not done:
            slot, q = policy.choose(g)
            r, done = env.step(policy.to_action(g, slot, q))
            ret += r
            g2 = None if done else policy.graph(env, st)
            mem.push(Transition(g, slot, r, g2, done))
            g, steps = g2, steps + 1
            if len(mem) >= batch_size:
                batch, idx, w = mem.sample(batch_size)
                B = GraphBatch.collate([b.state for b in batch], policy.device)
                q_all = net(B)
                A = torch.tensor([b.action for b in batch], device=q_all.device)
                q_sa = q_all.gather(1, A[:, None]).squeeze(1)
                R = torch.tensor([b.reward for b in batch], dtype=torch.float32, device=q_all.device)
                D = torch.tensor([b.done for b in batch], device=q_all.device)
                nxt = [b.next_state for b in batch if b.next_state is not None]
                y = R.clone()
                if nxt:
                    with torch.no_grad():
                        B2 = GraphBatch.collate(nxt, policy.device)
                        keep = ~D
                        y[keep] = double_dqn_targets(R[keep], D[keep], net(B2), target(B2), B2.action_mask, gamma)
                td = y - q_sa
                loss = (torch.from_numpy(w).to(td.device) * td.pow(2)).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                mem.update(idx, td.detach().cpu().numpy())
                soft_update(target, net, tau)
                policy.refresh()
                updates += 1
        rets.append(ret)
        if log and (ep + 1) % 10 == 0:
            log(
                {
                    "episode": ep + 1,
                    "return": float(np.mean(rets[-10:])),
                    "epsilon": policy.epsilon,
                    "steps": steps,
                    "updates": updates,
                    "seconds": time.time() - t0,
                }
            )
        if checkpoint and (ep + 1) % checkpoint_every == 0:
            checkpoint(ep + 1, opt, target)
        if max_seconds is not None and time.time() - t0 > max_seconds:
            break
    policy.epsilon = 0.0
    done_eps = ep + 1 - start_episode
    secs = time.time() - t0
    return {
        "episodes_run": done_eps,
        "last_episode": ep + 1,
        "steps": steps,
        "updates": updates,
        "seconds": secs,
        "episodes_per_second": done_eps / max(secs, 1e-9),
        "optimizer": opt,
        "target": target,
    }
