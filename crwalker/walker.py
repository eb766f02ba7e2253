"""CR-Walker reasoning model: walker cell (Eq. 5-7), training loss (Eq. 9, 11) and tree inference.

Walker cell for hop ``k`` with parent ``e_j`` (the intent root at hop 1):

* Eq. 5 (gate): ``gamma_j = sigmoid(w_k^{(i)} . [u_t; p_t; i_t; h_{e_j}] + b)``, one weight vector per
  (hop, intent); ``i_t`` is a learned intent embedding which is also the root's ``h_{e_j}``.
* Eq. 6 (context): ``c_t^{(j)} = gamma_j u_t + (1 - gamma_j) p_t``.
* Eq. 7 (score): ``s_{e'} = sigmoid(h_{e'} . sum_{j: e' in C(e_j)} c_t^{(j)})`` where ``C(e_j)`` are the
  legal children of ``e_j`` (Table 1), so an entity reachable on several paths sums their contexts.

Selection: entities with ``s > tau`` (0.5), at most ``m`` (5) per hop; the tree stops when a hop selects
nothing. For recommend, hop 2 is walked from the root when hop 1 selects nothing, so every turn yields
a full ranking of candidate movies.

Loss (Eq. 9/11): ``L = L_int + lambda_1 L_1 + lambda_2 L_2`` with cross-entropy for the intent and
mean binary cross-entropy over the candidate slots of each hop.

Not in the paper, off by default, tuned on valid by :mod:`crwalker.tune`: the recommend scores can add
train-only priors to the Eq. 7 logits (:mod:`crwalker.fusion`, :meth:`CRWalker.movie_scores`) and the
intent logits a class-prior correction at inference (``cfg.intent_log_prior``, :meth:`CRWalker.encode`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from crwalker.candidates import INTENT_INDEX, INTENT_NAMES, CandidateSets
from crwalker.config import ModelConfig
from crwalker.data import ROOT, WalkerBatch
from crwalker.fusion import MoviePrior, fusion_active
from crwalker.model import EntityEncoder, IntentSelector, UserPortrait, UtteranceEncoder
from crwalker.state import STATE_DIM
from kg_build.acts import ActNode, DialogAct
from kg_build.schema import KnowledgeGraph


class WalkerCell(nn.Module):
    """Eq. 5-7 for one hop: intent-specific gate, gated context and sigmoid entity scores."""

    def __init__(self, dim: int, with_parent: bool, n_intents: int = 3):
        super().__init__()
        self.with_parent = with_parent
        self.gate = nn.Linear((4 if with_parent else 3) * dim, n_intents)

    def context(
        self,
        u: torch.Tensor,
        p: torch.Tensor,
        i_emb: torch.Tensor,
        intent: torch.Tensor,
        parent_emb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Eq. 5-6 for ``G`` parents: all inputs ``[G, d]`` (``intent`` ``[G]``) -> ``c`` ``[G, d]``."""
        parts = [u, p, i_emb] + ([parent_emb] if self.with_parent else [])
        gamma = torch.sigmoid(self.gate(torch.cat(parts, dim=-1)).gather(1, intent[:, None]))  # [G, 1]
        return gamma * u + (1.0 - gamma) * p

    @staticmethod
    def score_logits(
        entity_emb: torch.Tensor,
        ctx: torch.Tensor,
        slot_entity: torch.Tensor,
        inc_slot: torch.Tensor,
        inc_group: torch.Tensor,
    ) -> torch.Tensor:
        """Eq. 7 logits ``h_{e'} . sum_j c^{(j)}`` for each candidate slot (sigmoid gives the score)."""
        summed = torch.zeros(slot_entity.shape[0], ctx.shape[1], dtype=ctx.dtype, device=ctx.device)
        summed.index_add_(0, inc_slot, ctx[inc_group])
        return (entity_emb[slot_entity] * summed).sum(-1)


@dataclasses.dataclass
class WalkerOutput:
    """Losses (Eq. 9) and logits of a teacher-forced forward pass."""

    loss: torch.Tensor
    loss_intent: torch.Tensor
    loss_hop1: torch.Tensor
    loss_hop2: torch.Tensor
    intent_logits: torch.Tensor


@dataclasses.dataclass
class TurnPrediction:
    """Inference result for one turn."""

    intent: str
    intent_probs: list[float]
    act: DialogAct
    hop1_scores: dict[int, float]
    movie_ids: np.ndarray  # all candidate movies
    movie_scores: np.ndarray  # aligned float64 scores of the recommend walk (sigmoid of Eq. 7 logit + fusion)


class CRWalker(nn.Module):
    """The full reasoning model. ``forward`` takes a :class:`~crwalker.data.WalkerBatch`."""

    def __init__(self, cfg: ModelConfig, kg: KnowledgeGraph, bert_dim: int):
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.utterance = UtteranceEncoder(bert_dim, d, cfg.dropout)
        self.entities = EntityEncoder(len(kg), kg.num_relations, d, cfg.rgcn_layers, cfg.rgcn_bases, cfg.rgcn_impl)
        self.portrait = UserPortrait(d, cfg.attn_hidden)
        extra = STATE_DIM if cfg.intent_state else 0  # s_t beside u_t (crwalker.state)
        extra += bert_dim if cfg.intent_utterance else 0  # the encoder vector of x_t alone
        self.bert_dim = bert_dim
        self.intent_selector = IntentSelector(d + extra, cfg.intent_hidden, len(INTENT_NAMES))
        self.intent_emb = nn.Embedding(len(INTENT_NAMES), d)
        self.hop1 = WalkerCell(d, with_parent=False)
        self.hop2 = WalkerCell(d, with_parent=True)
        self.prior = MoviePrior(len(kg.movie_ids))  # score fusion statistics (crwalker.fusion); empty = off
        edge_index, edge_type = kg.tensors()
        self.register_buffer("edge_index", edge_index, persistent=False)
        self.register_buffer("edge_type", edge_type, persistent=False)
        self.register_buffer("movie_ids", torch.as_tensor(kg.movie_ids, dtype=torch.long), persistent=False)

    # ------------------------------------------------------------------------ shared pieces
    def entity_embeddings(self, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Eq. 2 for all nodes, or (exactly, for L = 1) only for ``targets`` (other rows zero)."""
        return self.entities(self.edge_index, self.edge_type, targets)

    @staticmethod
    def needed_entities(batch: WalkerBatch) -> torch.Tensor:
        """Sorted unique entity ids a teacher-forced batch touches (portrait, candidates, parents)."""
        parts = [
            batch.mentions[batch.mention_mask],
            batch.hop1_entity,
            batch.hop2_entity,
            batch.hop2_parent[batch.hop2_parent >= 0],
        ]
        return torch.unique(torch.cat(parts))

    def encode(self, batch: WalkerBatch, H: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(u_t, p_t, intent_logits)`` for a batch.

        In eval mode the intent logits include ``cfg.intent_log_prior`` (class-prior correction tuned on
        valid by :mod:`crwalker.tune`; zeros by default), so every inference path uses the same decision.
        With ``cfg.intent_state`` the intent MLP reads ``[u_t; s_t]`` (``batch.state``, :mod:`crwalker.state`).
        With ``cfg.intent_clf_weight`` (eval mode) ``weight * batch.intent_clf`` is added: the log-probabilities
        of the fine-tuned classifier of :mod:`crwalker.intent_clf` (late fusion, tuned on valid).
        """
        u = self.utterance(batch.utt, batch.utt_len)
        p = self.portrait(H, batch.mentions, batch.mention_mask)
        logits = self.intent_selector(self.intent_input(u, batch.state, getattr(batch, "utt_x", None)))
        if not self.training and any(self.cfg.intent_log_prior):
            logits = logits + torch.as_tensor(self.cfg.intent_log_prior, dtype=logits.dtype, device=logits.device)
        clf = getattr(batch, "intent_clf", None)
        if not self.training and self.cfg.intent_clf_weight and clf is not None:
            logits = logits + self.cfg.intent_clf_weight * clf.to(logits.dtype)
        return u, p, logits

    def intent_input(self, u: torch.Tensor, state: torch.Tensor, utt_x: torch.Tensor | None = None) -> torch.Tensor:
        """Input of the Eq. 4 MLP: ``u_t``, plus ``s_t`` when ``cfg.intent_state`` and the encoder vector of
        ``x_t`` alone when ``cfg.intent_utterance`` (zeros when ``utt_x`` is not given)."""
        parts = [u]
        if self.cfg.intent_state:
            parts.append(state.to(u.dtype))
        if self.cfg.intent_utterance:
            parts.append(utt_x.to(u.dtype) if utt_x is not None else u.new_zeros(u.shape[0], self.bert_dim))
        return torch.cat(parts, -1) if len(parts) > 1 else u

    def _parent_emb(self, H: torch.Tensor, parents: torch.Tensor, intents: torch.Tensor) -> torch.Tensor:
        """``h_{e_j}`` for entity parents; the intent embedding for :data:`ROOT`."""
        root = parents == ROOT
        emb = H[parents.clamp(min=0)]
        return torch.where(root[:, None], self.intent_emb(intents), emb)

    def hop2_context(self, H, u, p, parents, parent_example, intents) -> torch.Tensor:
        """Eq. 5-6 at hop 2 for ``G`` parents (``portrait`` variant: ``c = p_t``)."""
        if self.cfg.variant == "portrait":
            return p[parent_example]
        it = intents[parent_example]
        return self.hop2.context(
            u[parent_example], p[parent_example], self.intent_emb(it), it, self._parent_emb(H, parents, it)
        )

    # ------------------------------------------------------------------------ training
    def forward(self, batch: WalkerBatch, lambda1: float = 1.0, lambda2: float = 1.0) -> WalkerOutput:
        """Teacher-forced losses (Eq. 9): gold intent and gold hop-1 nodes drive the walk."""
        H = self.entity_embeddings(self.needed_entities(batch))
        u, p, logits = self.encode(batch, H)
        loss_int = F.cross_entropy(logits, batch.intent)
        zero = logits.new_zeros(())
        loss1 = loss2 = zero
        if batch.hop1_entity.numel():
            ex = batch.hop1_example
            it = batch.intent[ex]
            c = self.hop1.context(u[ex], p[ex], self.intent_emb(it), it)
            logit1 = (H[batch.hop1_entity] * c).sum(-1)
            loss1 = F.binary_cross_entropy_with_logits(logit1, batch.hop1_label)
        if batch.hop2_entity.numel():
            ctx = self.hop2_context(H, u, p, batch.hop2_parent, batch.hop2_parent_example, batch.intent)
            logit2 = WalkerCell.score_logits(H, ctx, batch.hop2_entity, batch.hop2_inc_slot, batch.hop2_inc_group)
            loss2 = F.binary_cross_entropy_with_logits(logit2, batch.hop2_label)
        loss = loss_int + lambda1 * loss1 + lambda2 * loss2
        return WalkerOutput(loss, loss_int.detach(), loss1.detach(), loss2.detach(), logits.detach())

    # ------------------------------------------------------------------------ inference
    @torch.inference_mode()
    def predict(
        self,
        batch: WalkerBatch,
        cands: CandidateSets,
        width: int | None = None,
        threshold: float | None = None,
        H: torch.Tensor | None = None,
        exclude_mentioned_in_tree: bool = True,
        H_movies: torch.Tensor | None = None,
        exclude: set[int] | None = None,
        intents: Sequence[int] | None = None,
    ) -> list[TurnPrediction]:
        """Walk the KG for each turn: predicted intent -> reasoning tree, plus a recommend walk that
        scores every candidate movie.

        Args:
            batch: only ``utt``/``utt_len``/``mentions``/``mention_mask``/``examples`` are used.
            cands: Table-1 candidate sets.
            width: ``m`` (default from config).
            threshold: ``tau`` (default from config).
            H: precomputed entity embeddings (computed when ``None``).
            exclude_mentioned_in_tree: keep already-mentioned movies out of recommend trees.
            H_movies: ``H[movie_ids]`` (computed when ``None``; pass it to avoid re-gathering per batch).
            exclude: entity ids never selected at hop 1 or hop 2 (negative feedback of an online session,
                see :mod:`crwalker.engine.feedback`); ``movie_scores`` are unchanged.
            intents: per-turn intent indices to walk instead of the predicted ones (e.g. the gold intents, the
                setting of the reference implementation's generation evaluation); ``intent_probs`` stay the model's.
        """
        m = self.cfg.width if width is None else width
        tau = self.cfg.threshold if threshold is None else threshold
        H = self.entity_embeddings() if H is None else H
        H_movies = H[self.movie_ids] if H_movies is None else H_movies
        u, p, logits = self.encode(batch, H)
        probs = torch.softmax(logits, -1)
        kg_names = [e.name for e in cands.kg.entities]
        out = []
        for b, ex in enumerate(batch.examples):
            pred_intent = int(probs[b].argmax()) if intents is None else int(intents[b])
            walks = {}
            for intent in {pred_intent, INTENT_INDEX["recommend"]}:
                walks[intent] = self._walk(
                    H, H_movies, u[b], p[b], intent, ex.context, cands, m, tau, exclude_mentioned_in_tree, exclude
                )
            act_nodes, hop1_scores, _ = walks[pred_intent]
            _, _, movie_scores = walks[INTENT_INDEX["recommend"]]
            act = DialogAct(
                INTENT_NAMES[pred_intent],
                tuple(ActNode(e, kg_names[e], tuple(ActNode(c, kg_names[c]) for c in kids)) for e, kids in act_nodes),
            )
            out.append(
                TurnPrediction(
                    INTENT_NAMES[pred_intent], probs[b].tolist(), act, hop1_scores, cands.movie_ids, movie_scores
                )
            )
        return out

    def movie_scores(self, logits: torch.Tensor, context: list[int], cands: CandidateSets) -> np.ndarray:
        """Recommend scores ``sigmoid(Eq. 7 logit + fusion bonus)`` (float64; bonus 0 when fusion is off)."""
        z = logits.double().numpy(force=True)
        if fusion_active(self.cfg):
            z = z + self.prior.bonus(self.cfg, context, cands.movie_ids, cands.is_movie, cands.neighbors)
        return torch.sigmoid(torch.from_numpy(z)).numpy()

    def _walk(
        self,
        H,
        H_movies,
        u,
        p,
        intent: int,
        context: list[int],
        cands: CandidateSets,
        m: int,
        tau: float,
        exclude_mentioned: bool,
        exclude: set[int] | None = None,
    ):
        """One tree for one turn. Returns ``(nodes, hop1_scores, movie_scores|None)`` where ``nodes`` is a
        list of ``(entity, [children])``; entities in ``exclude`` are never selected."""
        banned = exclude or set()
        name = INTENT_NAMES[intent]
        dev = H.device
        it = torch.tensor([intent], device=dev)
        i_emb = self.intent_emb(it)
        selected1: list[int] = []
        hop1_scores: dict[int, float] = {}
        if self.cfg.variant == "full":
            c1 = [e for e in cands.hop1(name, context) if e not in banned]
            if c1:
                ctx = self.hop1.context(u[None], p[None], i_emb, it)[0]
                s = torch.sigmoid(H[torch.as_tensor(c1, device=dev)] @ ctx).cpu().numpy()
                hop1_scores = dict(zip(c1, s.tolist(), strict=True))
                selected1 = _select(np.asarray(c1), s, m, tau)
        movie_scores = None
        if name == "recommend":
            parents = selected1 or [ROOT]
            pt = torch.as_tensor(parents, device=dev)
            zeros = torch.zeros(len(parents), dtype=torch.long, device=dev)
            ctx = self.hop2_context(H, u[None], p[None], pt, zeros, it)
            movie_scores = self.movie_scores(H_movies @ ctx.sum(0), context, cands)
            mentioned = (set(context) if exclude_mentioned else set()) | banned
            chosen = _select(cands.movie_ids, movie_scores, m, tau, exclude=mentioned)
            if parents == [ROOT]:
                return [(c, []) for c in chosen], hop1_scores, movie_scores
            nodes = []
            placed: set[int] = set()
            for e in parents:
                nb = set(cands.neighbors(e))
                kids = [c for c in chosen if c in nb]
                placed.update(kids)
                nodes.append((e, kids))
            # movies not adjacent to any selected attribute hang below the most relevant parent
            rest = [c for c in chosen if c not in placed]
            if rest:
                nodes[0] = (nodes[0][0], nodes[0][1] + rest)
            return nodes, hop1_scores, movie_scores
        if not selected1:
            return [], hop1_scores, None
        # query / chat: children per parent, contexts summed over the parents that reach a candidate
        pt = torch.as_tensor(selected1, device=dev)
        zeros = torch.zeros(len(selected1), dtype=torch.long, device=dev)
        ctx = self.hop2_context(H, u[None], p[None], pt, zeros, it)
        slot_of: dict[int, int] = {}
        inc_s, inc_g = [], []
        for g, e in enumerate(selected1):
            for c in cands.hop2(name, e) or []:
                if c in banned:
                    continue
                slot_of.setdefault(c, len(slot_of))
                inc_s.append(slot_of[c])
                inc_g.append(g)
        if not slot_of:
            return [(e, []) for e in selected1], hop1_scores, None
        slots = torch.as_tensor(list(slot_of), device=dev)
        logit = WalkerCell.score_logits(
            H, ctx, slots, torch.as_tensor(inc_s, device=dev), torch.as_tensor(inc_g, device=dev)
        )
        chosen = set(_select(np.asarray(list(slot_of)), torch.sigmoid(logit).cpu().numpy(), m, tau))
        nodes = []
        for e in selected1:
            legal = cands.hop2(name, e) or []
            nodes.append((e, [c for c in legal if c in chosen]))
        return nodes, hop1_scores, None


def _select(ids: np.ndarray, scores: np.ndarray, m: int, tau: float, exclude: set[int] | None = None) -> list[int]:
    """Ids with score > ``tau``, best first (ties by smaller id), at most ``m``."""
    from crwalker.metrics import rank_candidates

    keep = scores > tau
    ranked = rank_candidates(scores[keep], ids[keep], exclude=np.fromiter(exclude or (), dtype=np.int64))
    return [int(x) for x in ranked[:m]]
