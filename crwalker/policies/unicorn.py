"""UNICORN (Deng et al., SIGIR 2021): graph-based RL policy unifying ask / recommend / when.

Pipeline per dialogue state ``s_t = (u, P_u, P_rej, V_rej)``:

* :func:`preference_scores` -- Eq. 5/11: ``w_v = σ(e_u·e_v + Σ_{p∈P_u} e_v·e_p)`` for every candidate item.
* :func:`weighted_entropy` -- Eq. 12: ``w_p = −prob(p) log2 prob(p)`` with
  ``prob(p) = Σ_{v∈V_cand∩V_p} w_v / Σ_{v∈V_cand} w_v``.
* Embeddings of Eq. 11/12 and the Eq. 6 edge weights: by default the frozen pretrained vectors
  (``UnicornQNet.pref_emb``, as the reference implementation's environment scores items with the fixed TransE
  vectors); ``preference="current"`` uses the Q-network's trained table instead.
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
* :class:`UnicornPolicy` -- §4.4.3 inference: take ``argmax_a Q`` (plus the reference implementation's rule:
  recommend when at most K candidates remain or at the last turn, :meth:`UnicornPolicy.must_recommend`); an
  item action recommends the top-K items of the action space ranked by Q, an attribute action asks it.

Node ids: users ``[0, U)``, items ``[U, U+I)``, attributes ``[U+I, U+I+A)``.
"""

from __future__ import annotations

import copy
import dataclasses
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch_geometric.nn import GCNConv
from tqdm import tqdm

from crwalker.policies.baselines import Policy
from crwalker.policies.env import MCREnv, SessionResult, State
from crwalker.policies.rl import PrioritizedReplay, Transition, double_dqn_targets, soft_update


@dataclass
class GraphState:
    """A dialogue state encoded as its dynamic graph (numpy, int32 to keep the replay small).

    ``nodes`` are global node ids; ``edge_index`` [2, E] local ids (one direction; reversed on use);
    ``edge_weight`` [E]; ``accepted`` local ids of ``P_u`` in order; ``actions`` local ids of the action
    space (items first); ``n_item_actions`` how many of them are items. ``norm_adj`` optionally caches the
    graph's Eq. 7 matrix ``D^-1/2 (A + I) D^-1/2`` as local COO ``(rows, cols, values)`` (set by
    :func:`build_graph`; a replayed state is collated many times, the matrix is computed once).
    """

    nodes: np.ndarray
    edge_index: np.ndarray
    edge_weight: np.ndarray
    accepted: np.ndarray
    actions: np.ndarray
    n_item_actions: int
    norm_adj: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def normalized(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The graph's Eq. 7 matrix as local COO (the cached one if present)."""
        if self.norm_adj is not None:
            return self.norm_adj
        ei = self.edge_index.astype(np.int64)
        n = len(self.nodes)
        return normalized_adjacency(ei[0], ei[1], self.edge_weight.astype(np.float32), np.arange(n), n)


DENSE_MAX_NODES = 512  # batches whose largest graph is bigger use a block-diagonal sparse propagation matrix


@dataclass
class GraphBatch:
    """A batch of :class:`GraphState` in a padded layout (input of :class:`UnicornQNet`).

    Graph ``b`` occupies slots ``[0, len(nodes_b))`` of row ``b``; padding slots have no edges and are never read.
    """

    nodes: torch.Tensor  # [B, n] global node ids (padding 0)
    uniq: torch.Tensor  # distinct node ids of the batch
    inverse: torch.Tensor  # [B, n]: nodes = uniq[inverse]
    adj: torch.Tensor  # [B, n, n] dense propagation matrix, or sparse CSR [B*n, B*n] for very large graphs
    accepted: torch.Tensor  # [B, La] local node slots of P_u
    accepted_mask: torch.Tensor  # [B, La]
    actions: torch.Tensor  # [B, Lq] local node slots of the action space
    action_mask: torch.Tensor  # [B, Lq]

    @classmethod
    def collate(cls, states: list[GraphState], device: str | torch.device = "cpu") -> GraphBatch:
        """Merge ``states``; the Eq. 7 propagation matrix is built here with vectorised numpy (no Python loop)."""
        n_b = len(states)
        lens = np.fromiter((len(s.nodes) for s in states), np.int64, n_b)
        n = int(lens.max())
        base = np.arange(n_b, dtype=np.int64) * n
        pos = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens) + np.repeat(base, lens)
        nodes = np.zeros(n_b * n, np.int64)
        nodes[pos] = np.concatenate([s.nodes for s in states])
        # block-diagonal Eq. 7 matrix from each graph's own (cached) matrix: same values as normalising the union
        coo = [s.normalized() for s in states]
        nnz = np.fromiter((len(c[0]) for c in coo), np.int64, n_b)
        shift = np.repeat(base, nnz)
        rows = np.concatenate([c[0] for c in coo]).astype(np.int64) + shift
        cols = np.concatenate([c[1] for c in coo]).astype(np.int64) + shift
        val = np.concatenate([c[2] for c in coo])
        t = lambda x: torch.from_numpy(np.ascontiguousarray(x)).to(device)  # noqa: E731
        if n <= DENSE_MAX_NODES:
            flat = rows * n + cols - (rows // n) * n  # = b n^2 + i n + j; bincount sums duplicate edges
            adj = t(np.bincount(flat, weights=val, minlength=n_b * n * n).astype(np.float32).reshape(n_b, n, n))
        else:
            order = np.lexsort((cols, rows))
            crow = np.concatenate(([0], np.cumsum(np.bincount(rows, minlength=n_b * n))))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "Sparse CSR tensor support is in beta state"
                adj = torch.sparse_csr_tensor(t(crow), t(cols[order]), t(val[order]), (n_b * n, n_b * n))
        la = max(1, max(len(s.accepted) for s in states))
        lq = max(1, max(len(s.actions) for s in states))
        acc, accm = _pad([s.accepted for s in states], la)
        act, actm = _pad([s.actions for s in states], lq)
        uniq, inverse = np.unique(nodes, return_inverse=True)
        return cls(t(nodes.reshape(n_b, n)), t(uniq), t(inverse.reshape(n_b, n)), adj, t(acc), t(accm), t(act), t(actm))

    def with_actions(self, slots: torch.Tensor) -> GraphBatch:
        """The same graphs with the action space reduced to one action per graph: ``slots`` [B] indexes
        ``actions``. A forward pass then computes exactly ``Q(s, a_slot)`` (Eq. 13 is evaluated per action, so
        the other actions' GCN rows and advantage heads are skipped) -- used where only one action's value is
        needed: ``Q(s_t, a_t)`` in the loss and the target network's ``Q'(s', argmax_a Q(s', a))`` (Eq. 17)."""
        act = self.actions.gather(1, slots[:, None])
        return dataclasses.replace(self, actions=act, action_mask=torch.ones_like(act, dtype=torch.bool))

    @property
    def read(self) -> torch.Tensor:
        """Local slots whose final GCN state is used: ``[accepted | actions]`` [B, La + Lq] (computed once)."""
        if "_read" not in self.__dict__:
            self.__dict__["_read"] = torch.cat([self.accepted, self.actions], 1)
        return self.__dict__["_read"]

    @property
    def adj_read(self) -> torch.Tensor:
        """Rows ``read`` of the dense propagation matrix [B, La + Lq, n] (gathered once per batch, reused by the
        online and target networks)."""
        if "_adj_read" not in self.__dict__:
            rows_all = torch.arange(self.adj.shape[0], device=self.adj.device)[:, None]
            self.__dict__["_adj_read"] = self.adj[rows_all, self.read]
        return self.__dict__["_adj_read"]

    def propagate(self, x: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """``Â x`` for node features ``x`` [B, n, d] (Eq. 7 message passing); ``rows`` [B, k] keeps only those rows."""
        b, n, d = x.shape
        rows_all = torch.arange(b, device=x.device)[:, None]
        if self.adj.layout == torch.strided:
            a = self.adj if rows is None else (self.adj_read if rows is self.read else self.adj[rows_all, rows])
            return torch.bmm(a, x)
        out = (self.adj @ x.reshape(b * n, d)).reshape(b, n, d)
        return out if rows is None else out[rows_all, rows]

    def gcn_layer(self, x: torch.Tensor, bias: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """One Eq. 7 layer on pre-transformed features: ``ReLU(Â x + b)`` for every node, or, with ``weight``,
        ``ReLU((Â_read x) W^T + b)`` for the ``read`` rows only (bias add fused into the matmul)."""
        if self.adj.layout != torch.strided:
            if weight is None:
                return torch.relu(self.propagate(x) + bias)
            return torch.relu(nn.functional.linear(self.propagate(x, self.read), weight, bias))
        if weight is None:
            return torch.relu(torch.baddbmm(bias, self.adj, x))
        return torch.relu(nn.functional.linear(torch.bmm(self.adj_read, x), weight, bias))


def _pad(seqs: list[np.ndarray], width: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad integer sequences to ``width`` -> (values [B, width] int64, mask [B, width])."""
    lens = np.fromiter((len(x) for x in seqs), np.int64, len(seqs))
    mask = np.arange(width)[None, :] < lens[:, None]
    out = np.zeros((len(seqs), width), np.int64)
    if lens.sum():
        out[mask] = np.concatenate(seqs)
    return out, mask


def normalized_adjacency(
    src: np.ndarray, dst: np.ndarray, weight: np.ndarray, self_loops: np.ndarray, n_nodes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eq. 7 propagation matrix ``Â = D^-1/2 (A + I) D^-1/2`` of an undirected weighted graph as COO.

    ``src``/``dst``/``weight`` list each edge once (it is used in both directions); ``self_loops`` are the
    nodes that get a weight-1 self loop (every real node). Same values as PyG's ``gcn_norm`` with
    ``add_self_loops=True`` on the symmetrised edge list (tested).
    """
    rows = np.concatenate([src, dst, self_loops])
    cols = np.concatenate([dst, src, self_loops])
    w = np.concatenate([weight, weight, np.ones(len(self_loops), np.float32)])
    deg = np.bincount(cols, weights=w, minlength=n_nodes)
    with np.errstate(divide="ignore"):
        dinv = np.where(deg > 0, deg, np.inf) ** -0.5
    return rows, cols, (dinv[rows] * w * dinv[cols]).astype(np.float32)


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
    accepted = np.asarray(state.accepted, np.int64)
    attrs_in = np.unique(np.concatenate([accepted, ga]))  # sorted: local slot = 1 + len(gi) + searchsorted
    nodes = np.concatenate([[state.user], n_users + gi, n_users + n_items + attrs_in]).astype(np.int64)
    a0 = 1 + len(gi)
    acc_local = a0 + np.searchsorted(attrs_in, accepted)
    # item – attribute edges (weight 1) among graph nodes, vectorised over the item->attribute CSR
    starts, ends = env.ia_ptr[gi], env.ia_ptr[gi + 1]
    lens = ends - starts
    flat = env.ia_idx[np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens) + np.repeat(starts, lens)]
    owner = np.repeat(np.arange(1, 1 + len(gi)), lens)
    j = np.searchsorted(attrs_in, flat)
    keep = (j < len(attrs_in)) & (attrs_in[np.minimum(j, len(attrs_in) - 1)] == flat)
    src = np.concatenate([np.zeros(len(accepted) + len(gi), np.int64), owner[keep]])
    dst = np.concatenate([acc_local, np.arange(1, 1 + len(gi)), a0 + j[keep]])
    wt = np.concatenate([np.ones(len(accepted)), wv, np.ones(int(keep.sum()))])  # user–P_u 1, user–item w_v
    item_slot = np.empty(0, np.int64) if len(gi) == 0 else 1 + np.arange(len(act_i))  # act_i = gi[:k_v]
    actions = np.concatenate([item_slot, a0 + np.searchsorted(attrs_in, act_p)])
    wt = wt.astype(np.float32)
    rows, cols, vals = normalized_adjacency(src, dst, wt, np.arange(len(nodes)), len(nodes))
    return GraphState(
        nodes=nodes.astype(np.int32),
        edge_index=np.stack([src, dst]).astype(np.int32),
        edge_weight=wt,
        accepted=acc_local.astype(np.int64),
        actions=actions.astype(np.int64),
        n_item_actions=len(act_i),
        norm_adj=(rows.astype(np.int32), cols.astype(np.int32), vals),
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
        # frozen copy of the initial (pretrained) vectors for Eq. 11 / 12 and the Eq. 6 edge weights: the trainable
        # table drifts, and Adam's L2 term shrinks rows that are rarely in a batch towards 0 (measured: LastFM user
        # norms 0.76 -> 0.12 in 1,000 episodes), which destroys the preference ranking the action space is built from
        self.register_buffer("pref_emb", self.emb.weight.detach().clone())
        self.gcn = nn.ModuleList(GCNConv(dim, dim, normalize=False) for _ in range(gcn_layers))
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=hidden, dropout=0.0, batch_first=True)
        self.seq = nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)
        self.fc = nn.Linear(dim, hidden)
        self.value = nn.Linear(hidden, 1)
        self.adv = nn.Sequential(nn.Linear(hidden + dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def encode(self, b: GraphBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 7 GCN over the batched graphs, Eq. 8-10 Transformer + mean pooling -> (state [B, d], action nodes [B, Lq, d]).

        Each layer is ``ReLU(Â (H W) + b)`` with the parameters of a PyG ``GCNConv`` (``lin``, ``bias``); the
        propagation is a batched dense matmul (or a sparse one for very large graphs), see :class:`GraphBatch`.
        """
        # H W of the first layer depends only on the node, so it is computed once per distinct node of the batch
        h = self.gcn[0].lin(self.emb(b.uniq))[b.inverse]
        for i, conv in enumerate(self.gcn):
            if i == len(self.gcn) - 1 and i > 0:
                # last layer: only the rows read afterwards (accepted attributes, then actions), as (Â_rows H) W
                h = b.gcn_layer(h, conv.bias, conv.lin.weight)
            elif i == len(self.gcn) - 1:
                h = torch.relu(b.propagate(h, b.read) + conv.bias)
            else:
                h = b.gcn_layer(h if i == 0 else conv.lin(h), conv.bias)
        la = b.accepted.shape[1]
        out = self.sequence(h[:, :la], b.accepted_mask)
        m = b.accepted_mask.unsqueeze(-1).to(out.dtype)
        return (out * m).sum(1) / m.sum(1).clamp(min=1), h[:, la:]

    def sequence(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Eq. 8-9: the Transformer encoder layer over the accepted attributes ``x`` [B, La, d] (``mask`` True = real).

        With one head (the default) the layer is evaluated directly from ``self.seq``'s parameters -- post-norm,
        ReLU FFN, no dropout, exactly ``nn.TransformerEncoderLayer``'s computation -- without the generic
        ``nn.MultiheadAttention`` dispatch, which dominates the cost for these tiny sequences
        (``test_sequence_matches_torch_encoder``). Other settings call the module.
        """
        layer = self.seq.layers[0]
        attn = layer.self_attn
        plain = layer.activation is nn.functional.relu and not layer.norm_first and self.seq.norm is None
        if len(self.seq.layers) != 1 or attn.num_heads != 1 or not plain or layer.dropout.p > 0:
            return self.seq(x, src_key_padding_mask=~mask)
        d = x.shape[-1]
        q, k, v = nn.functional.linear(x, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
        bias = torch.zeros(mask.shape, dtype=x.dtype, device=x.device).masked_fill_(~mask, float("-inf"))
        scores = torch.baddbmm(bias.unsqueeze(1), q, k.transpose(1, 2), alpha=d**-0.5)
        a = attn.out_proj(torch.bmm(torch.softmax(scores, -1), v))
        x = layer.norm1(x + a)
        return layer.norm2(x + layer.linear2(torch.relu(layer.linear1(x))))

    def forward(self, b: GraphBatch) -> torch.Tensor:
        """Eq. 13: ``Q(s, a) = f_V(s) + f_A(s, h_a)`` for each action slot; invalid slots are -inf.

        ``f_A``'s first layer on ``[x_s; h_a]`` is evaluated as ``W_s x_s + W_a h_a`` (same value; the state
        part is computed once per state instead of once per action).
        """
        s, ha = self.encode(b)
        x = torch.relu(self.fc(s))
        lin1 = self.adv[0]
        nh = x.shape[1]
        z = nn.functional.linear(x, lin1.weight[:, :nh], lin1.bias).unsqueeze(1)
        z = z + nn.functional.linear(ha, lin1.weight[:, nh:])
        q = self.value(x) + self.adv[2](torch.relu(z)).squeeze(-1)
        return q.masked_fill(~b.action_mask, float("-inf"))


PREFERENCE_SOURCES = ("pretrained", "current")


def upgrade_state_dict(state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """Checkpoints written before ``pref_emb`` existed used the current table for Eq. 11: give them that."""
    if prefix + "emb.weight" in state and prefix + "pref_emb" not in state:
        state = {**state, prefix + "pref_emb": state[prefix + "emb.weight"]}
    return state


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
        preference: str = "pretrained",
        inference_rule: bool = True,
    ):
        if preference not in PREFERENCE_SOURCES:
            raise ValueError(f"preference must be one of {PREFERENCE_SOURCES}, got {preference!r}")
        self.net, self.n_users, self.topk = net, n_users, topk
        self.k_v, self.k_p, self.graph_items, self.graph_attrs, self.device = k_v, k_p, graph_items, graph_attrs, device
        self.preference = preference
        self.inference_rule = inference_rule
        self.epsilon, self.rng = 0.0, np.random.default_rng(0)
        self._emb = None

    def emb(self) -> np.ndarray:
        """Node embeddings of the preference score (Eq. 11), the weighted entropy (Eq. 12) and the Eq. 6 edge
        weights: the frozen pretrained vectors (``preference="pretrained"``, as the reference implementation's
        environment) or the Q-network's current table (``"current"``; cached, call :meth:`refresh` after updates)."""
        if self._emb is None:
            src = self.net.pref_emb if self.preference == "pretrained" else self.net.emb.weight
            self._emb = src.detach().cpu().numpy()
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

    def must_recommend(self, env: MCREnv, state: State, g: GraphState) -> bool:
        """Inference rule of the reference implementation (its ``select_action`` with ``is_test``), applied when
        ``self.inference_rule``: recommend when at most K candidate items remain (the list then holds the target
        for sure) or at the last turn (a question there can no longer lead to a success)."""
        if not self.inference_rule or self.epsilon > 0 or g.n_item_actions == 0:
            return False
        return int(state.cand_items.sum()) <= self.topk or state.turn >= env.max_turn - 1

    def item_slot(self, g: GraphState, q: np.ndarray) -> int:
        """The best item action by Q (its recommendation lists the item actions in Q order)."""
        return int(np.argmax(q[: g.n_item_actions]))

    def act(self, env, state):
        self._n_items = env.n_items
        g = self.graph(env, state)
        slot, q = self.choose(g)
        if self.must_recommend(env, state, g):
            slot = self.item_slot(g, q)
        return self.to_action(g, slot, q)


def make_optimizer(net: nn.Module, lr: float = 1e-4, l2: float = 1e-6) -> torch.optim.Optimizer:
    """Adam with L2 (weight decay) as in UNICORN §5.2.3; the fused kernel on CPU/CUDA (same update rule)."""
    return torch.optim.Adam(net.parameters(), lr=lr, weight_decay=l2, fused=True)


def dqn_loss(
    net: UnicornQNet,
    target: UnicornQNet,
    batch: list[Transition],
    weights: np.ndarray,
    gamma: float,
    device: str | torch.device = "cpu",
) -> tuple[torch.Tensor, np.ndarray]:
    """Eq. 17 + Eq. 19: importance-weighted squared double-DQN TD error of a replay batch -> (loss, TD per item)."""
    b1 = GraphBatch.collate([b.state for b in batch], device)
    a = torch.from_numpy(np.fromiter((b.action for b in batch), np.int64, len(batch))).to(b1.actions.device)
    q_sa = net(b1.with_actions(a)).squeeze(1)  # = net(b1).gather(1, a), only the taken action's head is computed
    y = torch.from_numpy(np.fromiter((b.reward for b in batch), np.float32, len(batch))).to(q_sa.device)
    keep = np.fromiter((b.next_state is not None and not b.done for b in batch), bool, len(batch))
    if keep.any():
        with torch.inference_mode():
            b2 = GraphBatch.collate([b.next_state for b, k in zip(batch, keep, strict=True) if k], device)
            kt = torch.from_numpy(keep).to(q_sa.device)
            q_on = net(b2)
            # the target network is only read at the online argmax (Eq. 17): evaluate that action alone and place
            # it in an otherwise-zero matrix, so double_dqn_targets selects exactly Q'(s', argmax_a Q(s', a))
            best = q_on.masked_fill(~b2.action_mask, float("-inf")).argmax(1)
            q_tgt = torch.zeros_like(q_on).scatter_(1, best[:, None], target(b2.with_actions(best)))
            y_next = double_dqn_targets(y[kt], ~kt[kt], q_on, q_tgt, b2.action_mask, gamma)
        y = y.clone()
        y[torch.from_numpy(keep).to(q_sa.device)] = y_next.clone()
    td = y - q_sa
    loss = (torch.from_numpy(weights).to(td.device) * td.pow(2)).mean()
    return loss, td.detach().cpu().numpy()


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
    opt = optimizer or make_optimizer(net, lr, l2)
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
                loss, td = dqn_loss(net, target, batch, w, gamma, policy.device)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                mem.update(idx, td)
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


def run_sessions_batched(
    env: MCREnv,
    policy: UnicornPolicy,
    pairs: np.ndarray,
    batch: int = 64,
    offset: int = 0,
    progress: bool = True,
    desc: str = "eval",
) -> list[SessionResult]:
    """§4.4.3 inference on many sessions in lockstep: one batched Q-network forward per turn for up to ``batch``
    concurrent sessions. Same sessions, seeds and greedy decisions as :func:`baselines.run_sessions`.
    """
    envs = [MCREnv(env.data, env.max_turn, env.topk, env.seed, env.rewards) for _ in range(min(batch, len(pairs)))]
    policy._n_items = env.n_items
    out: list[SessionResult | None] = [None] * len(pairs)
    slots: list[int] = []  # session index running in envs[j]
    nxt = 0
    for e in envs:
        e.reset(int(pairs[nxt][0]), int(pairs[nxt][1]), session_id=offset + nxt)
        slots.append(nxt)
        nxt += 1
    live = list(range(len(envs)))
    bar = tqdm(total=len(pairs), desc=desc, disable=not progress, mininterval=5)
    while live:
        graphs = [policy.graph(envs[j], envs[j].state) for j in live]
        with torch.inference_mode():
            q = policy.net(GraphBatch.collate(graphs, policy.device)).cpu().numpy()
        still = []
        for k, j in enumerate(live):
            g, qk = graphs[k], q[k, : len(graphs[k].actions)]
            slot = policy.item_slot(g, qk) if policy.must_recommend(envs[j], envs[j].state, g) else int(np.argmax(qk))
            envs[j].step(policy.to_action(g, slot, qk))
            if not envs[j].done:
                still.append(j)
                continue
            out[slots[j]] = envs[j].result
            bar.update(1)
            if nxt < len(pairs):
                envs[j].reset(int(pairs[nxt][0]), int(pairs[nxt][1]), session_id=offset + nxt)
                slots[j] = nxt
                nxt += 1
                still.append(j)
        live = still
    bar.close()
    return out  # type: ignore[return-value]
