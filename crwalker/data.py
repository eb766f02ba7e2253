"""Label rows + dialogues -> training examples -> :class:`WalkerBatch` tensors.

Inputs (see the producing modules for full schemas):

* ``data/labels/{split}.jsonl`` - one row per recommender turn with ``conv_id``, ``turn_idx``,
  ``intent``, ``act`` (:meth:`kg_build.acts.DialogAct.to_json`), ``turn_movies`` and
  ``context_entities`` (entities mentioned *before* the turn, first-mention order).
* ``data/redial/{split}.jsonl`` - canonical dialogues; ``turns[i].text`` (movie ids rendered as
  titles) is what the utterance encoder reads.

An :class:`Example` keeps, per system turn, the (previous system utterance, user utterance)
pairs of Eq. 1, the portrait entities, Table-1 candidates and the gold reasoning tree restricted
to legal candidates. :func:`collate` builds the flat index tensors the walker consumes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from crwalker.candidates import INTENT_INDEX, CandidateSets
from crwalker.state import STATE_DIM, dialogue_state
from data_scripts.utils.io import DataFormatError, iter_jsonl
from kg_build.acts import DialogAct

ROOT = -1  #: parent id of the intent root in hop-2 index tensors


@dataclasses.dataclass
class Example:
    """One scored system turn."""

    conv_id: str
    turn_idx: int
    intent: int
    pairs: list[tuple[str, str]]  # last l_max (y_{t-1}, x_t) pairs, oldest first
    context: list[int]  # entities mentioned before the turn (portrait input, Eq. 3)
    hop1_candidates: list[int]  # Table 1 for the gold intent
    hop1_gold: list[int]  # gold hop-1 entities that are legal candidates
    hop1_gold_all: list[int]  # all gold hop-1 entities (for evaluation)
    hop2_gold: dict[int, list[int]]  # parent (ROOT for none) -> gold children (legal ones)
    gold_movies: list[int]  # movies the system mentions in this turn (evaluation target, ``turn_movies``)
    act: dict  # gold DialogAct JSON
    feat_rows: list[int] = dataclasses.field(default_factory=list)
    state: list[float] = dataclasses.field(default_factory=lambda: [0.0] * STATE_DIM)  # s_t (crwalker.state)
    source: str = "labels"  # "labels" or "structured" (text-free extra recommend signal)
    #: ``("", x_t)``: the user utterance alone, encoded for the intent MLP (``ModelConfig.intent_utterance``)
    intent_pair: tuple[str, str] = ("", "")
    intent_row: int = -1  # row of ``intent_pair`` in the feature matrix (-1: zeros)
    #: log-probabilities of the fine-tuned intent classifier (crwalker.intent_clf); None = not computed
    intent_clf_logp: list[float] | None = None


@dataclasses.dataclass
class WalkerBatch:
    """Tensors for one training/inference step (all index tensors are int64).

    Shapes: ``B`` examples, ``L`` history length, ``H`` BERT size, ``M`` max mentions,
    ``K1``/``K2`` hop-1/hop-2 candidate slots, ``G`` hop-2 parents, ``I`` (slot, parent) incidences.
    """

    utt: torch.Tensor  # [B, L, H] cached BERT [CLS] of each (y_{t-1}, x_t) pair, left-aligned
    utt_len: torch.Tensor  # [B]
    state: torch.Tensor  # [B, STATE_DIM] dialogue-state features s_t (crwalker.state)
    utt_x: torch.Tensor  # [B, H] frozen-encoder vector of the user utterance x_t alone (zeros if absent)
    intent_clf: torch.Tensor  # [B, 3] intent classifier log-probabilities (zeros if absent)
    mentions: torch.Tensor  # [B, M] entity ids (0 where masked)
    mention_mask: torch.Tensor  # [B, M] bool
    intent: torch.Tensor  # [B] gold intent index (INTENT_INDEX)
    hop1_entity: torch.Tensor  # [K1]
    hop1_example: torch.Tensor  # [K1]
    hop1_label: torch.Tensor  # [K1] float
    hop2_parent: torch.Tensor  # [G] entity id or ROOT
    hop2_parent_example: torch.Tensor  # [G]
    hop2_entity: torch.Tensor  # [K2]
    hop2_example: torch.Tensor  # [K2]
    hop2_label: torch.Tensor  # [K2] float
    hop2_inc_slot: torch.Tensor  # [I] index into K2
    hop2_inc_group: torch.Tensor  # [I] index into G
    examples: list[Example]

    def to(self, device: torch.device) -> WalkerBatch:
        kw = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return WalkerBatch(**{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in kw.items()})


# ------------------------------------------------------------------------------------------ reading
def load_dialogues(path: str | Path) -> dict[str, dict]:
    """``conv_id`` -> dialogue from a canonical dialogues JSONL file."""
    out: dict[str, dict] = {}
    for i, d in enumerate(iter_jsonl(path), start=1):
        if "conv_id" not in d or not isinstance(d.get("turns"), list):
            raise DataFormatError(path, i, "dialogue needs 'conv_id' and a 'turns' list")
        out[str(d["conv_id"])] = d
    return out


def exchange_pairs(turns: Sequence[dict], turn_idx: int, history: int) -> list[tuple[str, str]]:
    """The last ``history`` (system, user) pairs ``[y_{t-1}; x_t]`` before turn ``turn_idx`` (Eq. 1).

    Each seeker turn closes one pair whose system side is the recommender text since the previous
    pair (``""`` if none). Recommender text not yet followed by a seeker turn forms a last pair
    with an empty user side. A dialogue opened by the system yields one empty pair.
    """
    pairs: list[tuple[str, str]] = []
    sys_buf: list[str] = []
    for t in turns[:turn_idx]:
        text = str(t.get("text", ""))
        if t.get("role") == "seeker":
            pairs.append((" ".join(sys_buf), text))
            sys_buf = []
        else:
            sys_buf.append(text)
    if sys_buf:
        pairs.append((" ".join(sys_buf), ""))
    return pairs[-history:] if pairs else [("", "")]


def gold_tree(act: DialogAct, types: list[str]) -> tuple[list[int], dict[int, list[int]], list[int]]:
    """Split a gold act into (hop-1 ids, parent -> children, movies in the act).

    For ``recommend``, movie nodes placed directly at hop 1 (no supporting attribute) become
    children of the intent root (:data:`ROOT`), which is how the walker scores them.
    """
    hop1: list[int] = []
    children: dict[int, list[int]] = {}
    movies: list[int] = []
    n = len(types)
    for node in act.nodes:
        if not 0 <= node.entity < n:
            continue
        if act.intent == "recommend" and types[node.entity] == "movie":
            children.setdefault(ROOT, []).append(node.entity)
            movies.append(node.entity)
            continue
        hop1.append(node.entity)
        kids = [c.entity for c in node.children if 0 <= c.entity < n]
        children[node.entity] = kids
        movies.extend(k for k in kids if types[k] == "movie")
    return hop1, children, list(dict.fromkeys(movies))


def build_examples(
    label_path: str | Path,
    dialogues: dict[str, dict],
    cands: CandidateSets,
    history: int,
    limit: int = 0,
) -> list[Example]:
    """Read label rows and build :class:`Example` objects (file order; deterministic).

    ``Example.state`` (:func:`crwalker.state.dialogue_state`) counts the intents of the conversation's
    label rows with a smaller ``turn_idx`` (the earlier system turns).
    """
    types = cands.types
    n = len(types)
    out: list[Example] = []
    rows = list(iter_jsonl(label_path))
    intents_of: dict[str, list[tuple[int, str]]] = {}
    for row in rows:
        if isinstance(row, dict) and "conv_id" in row and "turn_idx" in row:
            intents_of.setdefault(str(row["conv_id"]), []).append((int(row["turn_idx"]), str(row.get("intent"))))
    for line, row in enumerate(rows, start=1):
        try:
            conv_id, turn_idx, intent = str(row["conv_id"]), int(row["turn_idx"]), row["intent"]
            act = DialogAct.from_json(row["act"])
            context = [int(e) for e in row.get("context_entities", [])]
            turn_movies = [int(e) for e in row.get("turn_movies", [])]
            rec_movies = [int(e) for e in row.get("recommended_movies", turn_movies)]
        except (KeyError, TypeError, ValueError) as exc:
            raise DataFormatError(label_path, line, f"bad label row ({exc!r})") from exc
        if intent not in INTENT_INDEX:
            raise DataFormatError(label_path, line, f"unknown intent {intent!r}")
        if any(not 0 <= e < n for e in context + turn_movies + rec_movies):
            raise DataFormatError(
                label_path, line, f"entity id out of range 0..{n - 1}: is the KG the one used for labels?"
            )
        dlg = dialogues.get(conv_id)
        if dlg is None:
            raise DataFormatError(label_path, line, f"conv_id {conv_id} not in the dialogues file")
        if not 0 <= turn_idx < len(dlg["turns"]) or dlg["turns"][turn_idx].get("role") != "recommender":
            raise DataFormatError(label_path, line, f"turn_idx {turn_idx} is not a recommender turn of {conv_id}")
        pairs = exchange_pairs(dlg["turns"], turn_idx, history)
        assert_no_leak(pairs, dlg["turns"], turn_idx)
        earlier = [it for ti, it in intents_of[conv_id] if ti < turn_idx and it in INTENT_INDEX]
        n_sys = sum(1 for t in dlg["turns"][:turn_idx] if t.get("role") == "recommender")
        state = dialogue_state(n_sys, turn_idx, earlier, pairs[-1][1], len(context))
        hop1_all, children, act_movies = gold_tree(act, types)
        legal1 = cands.hop1(intent, context)
        legal1_set = set(legal1)
        hop1_gold = [e for e in hop1_all if e in legal1_set]
        hop2_gold: dict[int, list[int]] = {}
        if intent == "recommend":
            movies = list(children.get(ROOT, [])) + [
                k for p in hop1_all for k in children.get(p, []) if types[k] == "movie"
            ]
            movies = list(dict.fromkeys(movies + rec_movies))
            for p in hop1_gold or [ROOT]:
                hop2_gold[p] = movies
        else:
            for p in hop1_gold:
                legal2 = set(cands.hop2(intent, p) or [])
                hop2_gold[p] = [k for k in children.get(p, []) if k in legal2]
        gold_movies = list(dict.fromkeys(turn_movies + act_movies))
        out.append(
            Example(
                conv_id,
                turn_idx,
                INTENT_INDEX[intent],
                pairs,
                context,
                legal1,
                hop1_gold,
                hop1_all,
                hop2_gold,
                gold_movies,
                row["act"],
                state=state,
                intent_pair=("", pairs[-1][1]),
            )
        )
        if limit and len(out) >= limit:
            break
    return out


def assert_no_leak(pairs: list[tuple[str, str]], turns: Sequence[dict], turn_idx: int) -> None:
    """Leakage guard: the gold turn's own text must never be part of the model input.

    Raises:
        AssertionError: if the text of ``turns[turn_idx]`` occurs in an input pair although no earlier
            turn contains it (i.e. it could only come from the gold turn).
    """
    gold = str(turns[turn_idx].get("text", "")).strip()
    if not gold:
        return
    earlier = any(gold in str(t.get("text", "")) for t in turns[:turn_idx])
    leaked = any(gold in y or gold in x for y, x in pairs)
    if leaked and not earlier:  # explicit raise: must also hold under `python -O`
        raise AssertionError(f"leak: text of gold turn {turn_idx} is in the model input")


def structured_examples(path: str | Path, kg, cands: CandidateSets, limit: int = 0) -> list[Example]:
    """Text-free recommend examples from ``structured_train.jsonl`` (see :mod:`data_scripts.redial_structured`).

    Only rows allowed by ``training_rows`` (never official test, never text valid/test) are used. Each
    recommender turn with aligned movies the seeker has not mentioned before becomes one example with an
    empty utterance pair, the earlier aligned movies as portrait context, no hop-1 target and the new
    movies as hop-2 targets below the root (so it trains R-GCN, portrait and the recommend walk).
    """
    from data_scripts.redial_structured import training_rows
    from data_scripts.utils.io import read_jsonl

    rows = training_rows(read_jsonl(path))
    by_rid = kg.by_redial_id
    out: list[Example] = []
    for row in rows:
        context: list[int] = []
        seeker: set[int] = set()
        for t in row.get("turns", []):
            ids = [by_rid[m] for m in t.get("movie_ids", []) if m in by_rid]
            if t.get("role") == "recommender" and context:
                new = [m for m in dict.fromkeys(ids) if m not in seeker]
                if new:
                    out.append(
                        Example(
                            str(row["conv_id"]),
                            int(t["idx"]),
                            INTENT_INDEX["recommend"],
                            [("", "")],
                            list(context),
                            [],
                            [],
                            [],
                            {ROOT: new},
                            list(dict.fromkeys(ids)),
                            {},
                            source="structured",
                        )
                    )
            if t.get("role") == "seeker":
                seeker.update(ids)
            for m in ids:
                if m not in context:
                    context.append(m)
        if limit and len(out) >= limit:
            break
    return out


# ------------------------------------------------------------------------------------------ batching
def _pad_utt(examples: Sequence[Example], feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    lens = [max(1, len(e.feat_rows)) for e in examples]
    L = max(lens)
    utt = feats.new_zeros((len(examples), L, feats.shape[1]))
    for i, e in enumerate(examples):
        if e.feat_rows:
            utt[i, : len(e.feat_rows)] = feats[torch.as_tensor(e.feat_rows, dtype=torch.long)]
    return utt, torch.as_tensor(lens, dtype=torch.long)


def _intent_utt(examples: Sequence[Example], feats: torch.Tensor) -> torch.Tensor:
    rows = torch.as_tensor([e.intent_row for e in examples], dtype=torch.long)
    out = feats.new_zeros((len(examples), feats.shape[1]))
    have = rows >= 0
    if bool(have.any()):
        out[have] = feats[rows[have]]
    return out


def _pad_mentions(examples: Sequence[Example]) -> tuple[torch.Tensor, torch.Tensor]:
    M = max([len(e.context) for e in examples] + [1])
    ids = torch.zeros((len(examples), M), dtype=torch.long)
    mask = torch.zeros((len(examples), M), dtype=torch.bool)
    for i, e in enumerate(examples):
        if e.context:
            ids[i, : len(e.context)] = torch.as_tensor(e.context)
            mask[i, : len(e.context)] = True
    return ids, mask


def sample_negatives(movie_ids: np.ndarray, positives: set[int], k: int, gen: torch.Generator) -> list[int]:
    """``k`` distinct random movies not in ``positives`` (fewer if the pool is too small)."""
    pool = len(movie_ids)
    k = min(k, pool - len(positives))
    out: dict[int, None] = {}
    while len(out) < k:
        draw = torch.randint(pool, (2 * (k - len(out)) + 4,), generator=gen).tolist()
        for j in draw:
            m = int(movie_ids[j])
            if m not in positives and m not in out:
                out[m] = None
                if len(out) == k:
                    break
    return list(out)


def collate(
    examples: Sequence[Example],
    feats: torch.Tensor,
    cands: CandidateSets,
    neg_ratio: int,
    gen: torch.Generator,
    variant: str = "full",
    targets: bool = True,
    max_hop2: int = 0,
) -> WalkerBatch:
    """Teacher-forced training batch: hop-1 over Table-1 candidates of the gold intent; hop 2
    below the gold hop-1 nodes (recommend: gold movies + ``neg_ratio`` sampled negatives each).

    Variants: ``depth1``/``portrait`` walk to movies from the root only (no hop-1 targets).
    With ``targets=False`` only the model inputs are filled (inference). ``max_hop2`` > 0 caps the
    query/chat hop-2 candidates of a parent to its gold children plus random others (CPU budget).
    """
    utt, utt_len = _pad_utt(examples, feats)
    mentions, mask = _pad_mentions(examples)
    h1e, h1x, h1y = [], [], []
    gp, gx = [], []
    se, sx, sy = [], [], []
    inc_s, inc_g = [], []
    root_only = variant in ("depth1", "portrait")
    for b, ex in enumerate(examples if targets else ()):
        if not root_only:
            gold1 = set(ex.hop1_gold)
            for e in ex.hop1_candidates:
                h1e.append(e)
                h1x.append(b)
                h1y.append(1.0 if e in gold1 else 0.0)
        if ex.intent == INTENT_INDEX["recommend"]:
            positives = list(dict.fromkeys(m for kids in ex.hop2_gold.values() for m in kids))
            if not positives:
                continue
            parents = [ROOT] if root_only else list(ex.hop2_gold)
            groups = []
            for p in parents:
                groups.append(len(gp))
                gp.append(p)
                gx.append(b)
            negs = sample_negatives(cands.movie_ids, set(positives), neg_ratio * len(positives), gen)
            for m, y in [(m, 1.0) for m in positives] + [(m, 0.0) for m in negs]:
                slot = len(se)
                se.append(m)
                sx.append(b)
                sy.append(y)
                for g in groups:
                    inc_s.append(slot)
                    inc_g.append(g)
        elif not root_only:
            intent = "query" if ex.intent == INTENT_INDEX["query"] else "chat"
            slot_of: dict[int, int] = {}
            gold2 = {k for kids in ex.hop2_gold.values() for k in kids}
            for p in ex.hop2_gold:
                g = len(gp)
                gp.append(p)
                gx.append(b)
                legal = cands.hop2(intent, p) or []
                if max_hop2 and len(legal) > max_hop2:
                    gold_p = [c for c in legal if c in gold2]
                    others = [c for c in legal if c not in gold2]
                    pick = torch.randperm(len(others), generator=gen)[: max(0, max_hop2 - len(gold_p))].tolist()
                    legal = gold_p + sorted(others[i] for i in pick)
                for c in legal:
                    if c not in slot_of:
                        slot_of[c] = len(se)
                        se.append(c)
                        sx.append(b)
                        sy.append(1.0 if c in gold2 else 0.0)
                    inc_s.append(slot_of[c])
                    inc_g.append(g)

    def lt(x):
        return torch.as_tensor(x, dtype=torch.long)

    return WalkerBatch(
        utt=utt,
        utt_len=utt_len,
        state=torch.tensor([e.state for e in examples], dtype=torch.float32).reshape(len(examples), STATE_DIM),
        utt_x=_intent_utt(examples, feats),
        intent_clf=torch.tensor(
            [e.intent_clf_logp if e.intent_clf_logp is not None else [0.0] * 3 for e in examples], dtype=torch.float32
        ).reshape(len(examples), 3),
        mentions=mentions,
        mention_mask=mask,
        intent=lt([e.intent for e in examples]),
        hop1_entity=lt(h1e),
        hop1_example=lt(h1x),
        hop1_label=torch.as_tensor(h1y, dtype=torch.float32),
        hop2_parent=lt(gp),
        hop2_parent_example=lt(gx),
        hop2_entity=lt(se),
        hop2_example=lt(sx),
        hop2_label=torch.as_tensor(sy, dtype=torch.float32),
        hop2_inc_slot=lt(inc_s),
        hop2_inc_group=lt(inc_g),
        examples=list(examples),
    )


def batch_order(
    n: int, batch_size: int, seed: int, epoch: int, shuffle: bool = True, rank: int = 0, world: int = 1
) -> list[list[int]]:
    """Deterministic batches of example indices for ``epoch`` (a function of the seed only).

    Under DDP each rank takes every ``world``-th batch so ranks see disjoint data and the same
    number of steps.
    """
    from crwalker.device import derived_seed

    if shuffle:
        g = torch.Generator().manual_seed(derived_seed(seed, epoch))
        idx = torch.randperm(n, generator=g).tolist()
    else:
        idx = list(range(n))
    batches = [idx[i : i + batch_size] for i in range(0, n, batch_size)]
    if world > 1:  # equal step counts on every rank (DDP all-reduces each step); drops < world batches
        batches = batches[: len(batches) // world * world]
    return batches[rank::world]
