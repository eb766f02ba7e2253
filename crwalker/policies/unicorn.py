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
    graph's Eq. 7 matrix ``D^-1/2 (A + I) D^-1/2`` as local COO ``(rows, cols, values)`` sorted by row (set by
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


class _SpMM(torch.autograd.Function):
    """``y = S x`` for rows of the batch's Eq. 7 matrix ``Â`` given as embedding bags: output row ``r`` is
    ``Σ_e val[e] · x[idx[e]]`` over its entries ``offsets[r] <= e < offsets[r + 1]`` (one fused ``embedding_bag``
    call over the real entries; rows without entries are 0).

    ``Â`` is exactly symmetric (see :func:`normalized_adjacency`), so the backward ``S^T g`` is computed with the
    CSR of the whole matrix, ``back = (cols, offsets, val, rows, scatter)``: ``g`` is first placed at the matrix
    rows ``S`` holds (``rows = (matrix rows, output rows)`` of the non-empty rows of ``S``; None = ``S`` is the
    whole matrix), multiplied by ``Â``, and summed into ``x``'s rows with ``scatter`` when ``x`` is addressed
    through it (``idx = scatter[cols]``, e.g. one row per distinct node).
    """

    @staticmethod
    def forward(ctx, x, idx, offsets, val, back):
        ctx.back, ctx.n = back, x.shape[0]
        return nn.functional.embedding_bag(idx, x, offsets, mode="sum", per_sample_weights=val)

    @staticmethod
    def backward(ctx, g):
        cols, offsets, val, rows, scatter = ctx.back
        g = g.contiguous()
        if rows is not None:
            g = g.new_zeros(len(offsets), g.shape[1]).index_add_(0, rows[0], g.index_select(0, rows[1]))
        gx = nn.functional.embedding_bag(cols, g, offsets, mode="sum", per_sample_weights=val)
        if scatter is not None:
            gx = g.new_zeros(ctx.n, g.shape[1]).index_add_(0, scatter, gx)
        return gx, None, None, None, None


@dataclass
class GraphBatch:
    """A batch of :class:`GraphState` in a packed layout (input of :class:`UnicornQNet`).

    The ``N`` real nodes of all graphs are concatenated (graph ``b`` occupies the packed rows
    ``[node_offset[b], node_offset[b] + len(nodes_b))``, no padding), and the Eq. 7 matrix of the batch is the
    block-diagonal union of the graphs' own (cached) matrices, kept as CSR over the packed rows
    (``row_ptr``, ``cols``, ``val``). Message passing is then one ``embedding_bag`` (a weighted gather-sum) per
    layer over the real entries only. ``accepted`` / ``actions`` are the local node slots padded to
    ``[B, La]`` / ``[B, Lq]`` with masks.
    """

    n_graphs: int
    lens: np.ndarray  # [B] nodes per graph
    node_offset: np.ndarray  # [B] first packed row of each graph
    node_ids: torch.Tensor  # [N] global node ids of the packed rows
    uniq: torch.Tensor  # distinct node ids of the batch
    inverse: torch.Tensor  # [N]: node_ids = uniq[inverse]
    row_ptr: np.ndarray  # [N + 1] CSR row pointer of the Eq. 7 matrix (packed rows)
    cols: np.ndarray  # [nnz] packed column of every entry (rows sorted)
    val: np.ndarray  # [nnz] float32 values
    prop: tuple  # torch (cols in uniq coordinates, offsets, values, cols in packed coordinates, inverse) of Â
    acc_rows: np.ndarray  # [Nacc] packed rows of P_u (graph by graph, in order)
    acc_graph: torch.Tensor  # [Nacc] graph of each accepted row
    acc_slot: torch.Tensor  # [Nacc] flat position b * La + i in the padded [B, La] sequence layout
    accepted: torch.Tensor  # [B, La] local node slots of P_u
    accepted_mask: torch.Tensor  # [B, La]
    actions: torch.Tensor  # [B, Lq] local node slots of the action space
    action_mask: torch.Tensor  # [B, Lq]
    device: torch.device | str = "cpu"

    @classmethod
    def collate(cls, states: list[GraphState], device: str | torch.device = "cpu") -> GraphBatch:
        """Merge ``states`` (vectorised numpy over the concatenated per-graph arrays, no per-node Python loop)."""
        n_b = len(states)
        nodes_l = [s.nodes for s in states]
        rows_l, cols_l, val_l = zip(*[s.normalized() for s in states], strict=True)
        acc_l, act_l = [s.accepted for s in states], [s.actions for s in states]
        lens = np.fromiter(map(len, nodes_l), np.int64, n_b)
        nnz = np.fromiter(map(len, rows_l), np.int64, n_b)
        n_acc = np.fromiter(map(len, acc_l), np.int64, n_b)
        n_act = np.fromiter(map(len, act_l), np.int64, n_b)
        off = np.cumsum(lens) - lens
        n = int(lens.sum())
        nodes = np.concatenate(nodes_l).astype(np.int64)
        shift = np.repeat(off, nnz)
        rows = np.concatenate(rows_l) + shift  # sorted: graphs in order, rows sorted within a graph
        cols = np.concatenate(cols_l) + shift
        val = np.concatenate(val_l)
        row_ptr = np.zeros(n + 1, np.int64)
        np.cumsum(np.bincount(rows, minlength=n), out=row_ptr[1:])
        # distinct nodes (sorted) and the inverse map, by marking a table over the node ids (no sort)
        seen = np.zeros(int(nodes.max()) + 1, np.int64)
        seen[nodes] = 1
        uniq = np.flatnonzero(seen)
        inverse = (np.cumsum(seen) - 1)[nodes]
        acc, accm = _pad(acc_l, max(1, int(n_acc.max())), n_acc)
        act, actm = _pad(act_l, max(1, int(n_act.max())), n_act)
        acc_graph = np.repeat(np.arange(n_b), n_acc)
        acc_rows = acc[accm] + off[acc_graph]
        acc_slot = np.flatnonzero(accm.ravel())

        def t(x):
            return torch.from_numpy(np.ascontiguousarray(x)).to(device)

        inv_t, cols_t, offs_t, val_t = t(inverse), t(cols), t(row_ptr[:-1]), t(val)
        prop = (t(inverse[cols]), offs_t, val_t, cols_t, inv_t)
        return cls(n_b, lens, off, t(nodes), t(uniq), inv_t, row_ptr, cols, val, prop, acc_rows, t(acc_graph),
                   t(acc_slot), t(acc), t(accm), t(act), t(actm), device)  # fmt: skip

    def with_actions(self, slots: torch.Tensor) -> GraphBatch:
        """The same graphs with the action space reduced to one action per graph: ``slots`` [B] indexes
        ``actions``. A forward pass then computes exactly ``Q(s, a_slot)`` (Eq. 13 is evaluated per action, so
        the other actions' GCN rows and advantage heads are skipped) -- used where only one action's value is
        needed: ``Q(s_t, a_t)`` in the loss and the target network's ``Q'(s', argmax_a Q(s', a))`` (Eq. 17)."""
        act = self.actions.gather(1, slots[:, None].to(self.actions.device))
        return dataclasses.replace(self, actions=act, action_mask=torch.ones_like(act, dtype=torch.bool))

    @property
    def nodes(self) -> torch.Tensor:
        """[B, n] global node ids in the padded layout (padding 0)."""
        n = int(self.lens.max())
        out = np.zeros((self.n_graphs, n), np.int64)
        out[np.arange(n)[None, :] < self.lens[:, None]] = self.node_ids.cpu().numpy()
        return torch.from_numpy(out)

    @property
    def adj(self) -> torch.Tensor:
        """The Eq. 7 matrix as dense ``[B, n, n]`` blocks (for inspection and tests; the forward uses the CSR)."""
        n = int(self.lens.max())
        rows = np.repeat(np.arange(len(self.row_ptr) - 1), np.diff(self.row_ptr))
        g = np.searchsorted(self.node_offset, rows, side="right") - 1
        flat = g * n * n + (rows - self.node_offset[g]) * n + (self.cols - self.node_offset[g])
        dense = np.bincount(flat, weights=self.val, minlength=self.n_graphs * n * n).astype(np.float32)
        return torch.from_numpy(dense.reshape(self.n_graphs, n, n))

    @property
    def read(self) -> tuple:
        """The Eq. 7 rows whose last-layer GCN state is used, ``[P_u rows | action slots]`` (masked action slots
        have no entries) -> torch (packed cols, offsets, values of their entries, packed rows); computed once."""
        if "_read" not in self.__dict__:
            act = self.actions.cpu().numpy() + self.node_offset[:, None]
            amask = self.action_mask.cpu().numpy().ravel()
            r = np.concatenate([self.acc_rows, act.ravel()])
            cnt = self.row_ptr[r + 1] - self.row_ptr[r]
            cnt[len(self.acc_rows) :][~amask] = 0
            start = np.cumsum(cnt) - cnt
            e = np.arange(cnt.sum()) - np.repeat(start, cnt) + np.repeat(self.row_ptr[r], cnt)
            sel = np.flatnonzero(cnt)  # output rows with entries (masked action slots are constant 0)
            t = lambda x: torch.from_numpy(np.ascontiguousarray(x)).to(self.device)  # noqa: E731
            self.__dict__["_read"] = (t(self.cols[e]), t(start), t(self.val[e]), (t(r[sel]), t(sel)))
        return self.__dict__["_read"]

    def propagate_all(self, x: torch.Tensor, from_uniq: bool) -> torch.Tensor:
        """``Â x`` for every packed row; ``x`` is per distinct node (``from_uniq``) or per packed row."""
        idx_u, offs, val, cols, inv = self.prop
        if from_uniq:
            return _SpMM.apply(x, idx_u, offs, val, (cols, offs, val, None, inv))
        return _SpMM.apply(x, cols, offs, val, (cols, offs, val, None, None))

    def propagate_read(self, x: torch.Tensor, from_uniq: bool) -> torch.Tensor:
        """``Â_read x`` [Nacc + B * Lq, d] for the :attr:`read` rows; ``x`` per distinct node or per packed row."""
        idx_u, offs, val, cols, inv = self.prop
        r_cols, r_offs, r_val, r_rows = self.read
        back = (cols, offs, val, r_rows, inv if from_uniq else None)
        return _SpMM.apply(x, inv[r_cols] if from_uniq else r_cols, r_offs, r_val, back)


def _pad(seqs: list[np.ndarray], width: int, lens: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad integer sequences to ``width`` -> (values [B, width] int64, mask [B, width])."""
    if lens is None:
        lens = np.fromiter(map(len, seqs), np.int64, len(seqs))
    mask = np.arange(width)[None, :] < lens[:, None]
    out = np.zeros((len(seqs), width), np.int64)
    if lens.sum():
        out[mask] = np.concatenate(seqs)
    return out, mask


def normalized_adjacency(
    src: np.ndarray, dst: np.ndarray, weight: np.ndarray, self_loops: np.ndarray, n_nodes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eq. 7 propagation matrix ``Â = D^-1/2 (A + I) D^-1/2`` of an undirected weighted graph as COO sorted by row.

    ``src``/``dst``/``weight`` list each edge once (it is used in both directions); ``self_loops`` are the
    nodes that get a weight-1 self loop (every real node). Same values as PyG's ``gcn_norm`` with
    ``add_self_loops=True`` on the symmetrised edge list (tested). The values are computed as
    ``(d_i^-1/2 d_j^-1/2) w_ij``, which is exactly symmetric in ``i, j``, so ``Â^T = Â`` bit for bit (the GCN
    backward reuses the forward CSR).
    """
    rows = np.concatenate([src, dst, self_loops])
    cols = np.concatenate([dst, src, self_loops])
    w = np.concatenate([weight, weight, np.ones(len(self_loops), np.float32)])
    deg = np.bincount(cols, weights=w, minlength=n_nodes)
    with np.errstate(divide="ignore"):
        dinv = np.where(deg > 0, deg, np.inf) ** -0.5
    order = np.argsort(rows, kind="stable")
    rows, cols, w = rows[order], cols[order], w[order]
    return rows, cols, (dinv[rows] * dinv[cols] * w).astype(np.float32)


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
        propagation is a sparse weighted gather-sum over the packed batch, see :class:`GraphBatch`.
        """
        # H W of the first layer depends only on the node, so it is computed once per distinct node of the batch
        h = self.gcn[0].lin(self.emb(b.uniq))
        last = len(self.gcn) - 1
        for i, conv in enumerate(self.gcn):
            if i > 0 and i < last:
                h = conv.lin(h)
            if i < last:
                h = b.propagate_all(h, from_uniq=i == 0).add_(conv.bias).relu_()
            elif i > 0:
                # last layer: only the rows read afterwards (accepted attributes, then actions), as (Â_rows H) W
                h = nn.functional.linear(b.propagate_read(h, from_uniq=False), conv.lin.weight, conv.bias).relu_()
            else:
                h = b.propagate_read(h, from_uniq=True).add_(conv.bias).relu_()
        n_acc = len(b.acc_rows)
        out = self.sequence(h[:n_acc], b.acc_slot, b.accepted_mask)
        s = out.new_zeros(b.n_graphs, out.shape[1]).index_add_(0, b.acc_graph, out)
        s = s / b.accepted_mask.sum(1, keepdim=True).clamp(min=1).to(out.dtype)
        return s, h[n_acc:].view(b.n_graphs, b.actions.shape[1], -1)

    def sequence(self, x: torch.Tensor, slot: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Eq. 8-9: the Transformer encoder layer over the accepted attributes of every graph.

        ``x`` [Nacc, d] holds the accepted attributes of all graphs packed (no padding); ``slot`` [Nacc] their flat
        position ``b * La + i`` in the padded sequence layout ``mask`` [B, La] (True = real). Returns [Nacc, d].
        With one head (the default) the layer is evaluated directly from ``self.seq``'s parameters -- post-norm,
        ReLU FFN, no dropout, exactly ``nn.TransformerEncoderLayer``'s computation -- without the generic
        ``nn.MultiheadAttention`` dispatch; every position-wise part (projections, FFN, layer norms) runs on the
        real rows only, the attention itself on the padded layout (``test_sequence_matches_torch_encoder``).
        Other settings call the module on the padded layout.
        """
        n_b, la = mask.shape
        d = x.shape[-1]

        def pad(y: torch.Tensor) -> torch.Tensor:
            return y.new_zeros(n_b * la, y.shape[-1]).index_copy(0, slot, y).view(n_b, la, -1)

        layer = self.seq.layers[0]
        attn = layer.self_attn
        plain = layer.activation is nn.functional.relu and not layer.norm_first and self.seq.norm is None
        if len(self.seq.layers) != 1 or attn.num_heads != 1 or not plain or layer.dropout.p > 0:
            return self.seq(pad(x), src_key_padding_mask=~mask).reshape(n_b * la, d).index_select(0, slot)
        q, k, v = pad(nn.functional.linear(x, attn.in_proj_weight, attn.in_proj_bias)).chunk(3, dim=-1)
        bias = torch.zeros(mask.shape, dtype=x.dtype, device=x.device).masked_fill_(~mask, float("-inf"))
        scores = torch.baddbmm(bias.unsqueeze(1), q, k.transpose(1, 2), alpha=d**-0.5)
        # softmax written out (exp(s - max) / Σ): same formula, ~3x faster than torch.softmax's CPU kernel at La ≈ 8
        e = (scores - scores.amax(-1, keepdim=True)).exp_()
        a = torch.bmm(e / e.sum(-1, keepdim=True), v).reshape(n_b * la, d).index_select(0, slot)
        x = layer.norm1(x + attn.out_proj(a))
        return layer.norm2(x + layer.linear2(torch.relu(layer.linear1(x))))

    def forward(self, b: GraphBatch) -> torch.Tensor:
        """Eq. 13: ``Q(s, a) = f_V(s) + f_A(s, h_a)`` for each action slot; invalid slots are -inf.

        ``f_A``'s first layer on ``[x_s; h_a]`` is evaluated as ``W_s x_s + W_a h_a`` (same value; the state
        part is computed once per state instead of once per action).
        """
        s, ha = self.encode(b)
        x = self.fc(s).relu_()
        lin1 = self.adv[0]
        nh = x.shape[1]
        z = nn.functional.linear(x, lin1.weight[:, :nh], lin1.bias).unsqueeze(1)
        z = z + nn.functional.linear(ha, lin1.weight[:, nh:])
        q = self.value(x) + self.adv[2](z.relu_()).squeeze(-1)
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


def tune_malloc() -> bool:
    """Keep freed memory in the process (glibc): an update allocates and frees the same few-MB tensors (the dense
    embedding gradient, the GCN activations) every step, and glibc's defaults return them to the OS and fault them
    back in each time (measured ~700 page faults and ~15% of an update on LastFM). Raises ``M_TRIM_THRESHOLD``
    and fixes ``M_MMAP_THRESHOLD`` at 32 MB; no effect on results. Returns False where ``mallopt`` is unavailable."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_trim_threshold, 1 << 30)) & bool(libc.mallopt(m_mmap_threshold, 1 << 25))
    except (OSError, AttributeError):
        return False


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
    tune_malloc()
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
