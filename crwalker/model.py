"""Encoders of CR-Walker §3.3-3.4: utterance (Eq. 1), entity (Eq. 2), user portrait (Eq. 3), intent (Eq. 4).

Each equation is one :class:`torch.nn.Module`:

* :class:`UtteranceEncoder` (Eq. 1): ``u_t = LSTM(u_{t-1}, BERT([y_{t-1}; x_t])_[CLS])`` over the last
  ``l_max`` exchanges. BERT is frozen and its [CLS] vectors are read from the feature cache
  (:mod:`crwalker.features`), so only the LSTM is trained.
* :class:`EntityEncoder` (Eq. 2): an ``L``-layer R-GCN over the whole KG with trainable input node
  embeddings (``x=None`` semantics: one learned vector per node), optional basis decomposition.
* :class:`UserPortrait` (Eq. 3): ``p_t = sum_j alpha_j h_{e_j}``, ``alpha = softmax(w^T tanh(W h_{e_j}))``
  over the entities mentioned so far (zero vector when nothing was mentioned).
* :class:`IntentSelector` (Eq. 4): ``P(i_t) = softmax(W_2 ReLU(W_1 u_t + b_1) + b_2)``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn import FastRGCNConv, RGCNConv


class UtteranceEncoder(nn.Module):
    """Eq. 1: turn-level LSTM over cached BERT [CLS] vectors of ``[y_{t-1}; x_t]`` pairs."""

    def __init__(self, bert_dim: int, dim: int, dropout: float = 0.0):
        super().__init__()
        self.lstm = nn.LSTM(bert_dim, dim, batch_first=True)
        self.dropout = nn.Dropout(dropout)

    def forward(self, utt: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``utt`` ``[B, L, H]`` (left-aligned), ``lengths`` ``[B]`` (>= 1) -> ``u_t`` ``[B, d]``."""
        packed = nn.utils.rnn.pack_padded_sequence(utt, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (h, _) = self.lstm(packed)
        return self.dropout(h[-1])


class EntityEncoder(nn.Module):
    """Eq. 2: R-GCN entity embeddings ``h_e`` for every KG node."""

    def __init__(
        self, num_nodes: int, num_relations: int, dim: int, layers: int = 1, bases: int = 0, impl: str = "rgcn"
    ):
        super().__init__()
        self.node_emb = nn.Embedding(num_nodes, dim)
        nn.init.normal_(self.node_emb.weight, std=dim**-0.5)
        conv = {"rgcn": RGCNConv, "fast": FastRGCNConv}[impl]
        self.convs = nn.ModuleList(conv(dim, dim, num_relations, num_bases=bases or None) for _ in range(layers))

    def forward(
        self, edge_index: torch.Tensor, edge_type: torch.Tensor, targets: torch.Tensor | None = None
    ) -> torch.Tensor:
        """-> ``[N, d]``: ``h^{(l+1)} = ReLU(RGCN(h^{(l)}))`` starting from the trainable embeddings.

        Args:
            edge_index: ``[2, E]`` KG edges (source, target).
            edge_type: ``[E]`` relation ids.
            targets: optional sorted unique node ids whose embeddings are needed (one layer only).
                Then only edges into ``targets`` are aggregated (bipartite ``RGCNConv`` call), which is
                exact for ``L = 1`` and ~N/|targets| times cheaper; other rows of the result are zero.
        """
        h = self.node_emb.weight
        if targets is not None and len(self.convs) == 1:
            keep = torch.isin(edge_index[1], targets)
            sub = edge_index[:, keep]
            pos = torch.searchsorted(targets, sub[1])
            out = torch.relu(self.convs[0]((h, h[targets]), torch.stack([sub[0], pos]), edge_type[keep]))
            return torch.zeros_like(h).index_copy(0, targets, out)
        for conv in self.convs:
            h = torch.relu(conv(h, edge_index, edge_type))
        return h


class UserPortrait(nn.Module):
    """Eq. 3: self-attention pooling of mentioned entities' embeddings."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.W = nn.Linear(dim, hidden, bias=False)
        self.w = nn.Linear(hidden, 1, bias=False)

    def forward(self, entity_emb: torch.Tensor, mentions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``entity_emb`` ``[N, d]``, ``mentions``/``mask`` ``[B, M]`` -> ``p_t`` ``[B, d]`` (zeros if no mention)."""
        h = entity_emb[mentions]  # [B, M, d]
        beta = self.w(torch.tanh(self.W(h))).squeeze(-1).masked_fill(~mask, float("-inf"))
        any_m = mask.any(dim=1, keepdim=True)
        alpha = torch.softmax(beta.masked_fill(~any_m, 0.0), dim=1) * mask
        return torch.einsum("bm,bmd->bd", alpha, h)


class IntentSelector(nn.Module):
    """Eq. 4: two-layer MLP from ``u_t`` to logits over (recommend, query, chat)."""

    def __init__(self, dim: int, hidden: int, n_intents: int = 3):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, n_intents))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.net(u)
