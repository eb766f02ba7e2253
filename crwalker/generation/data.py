"""Generator data: (user utterance x_t, linearised act A_t) -> reply y_t (CR-Walker §3.5, Eq. 8 and 10).

**Prompt format** (the reference release's ``context + " @ " + DA + " &"``, case kept)::

    with act:    "{x_t} @ {A_t} &"          e.g. "any scary movies? @ [ Recommend ( Alien (1979) ) ] &"
    without act: "{x_t} &"                  (the paper's plain "GPT-2" baseline, ``use_act=False``)

The target is ``" " + y_t`` followed by the tokenizer's end-of-sequence token; the loss is taken on
target tokens only (prompt positions get label -100: teacher forcing with the gold act, Eq. 10).
``y_t`` is the delexicalised reply (movie mentions -> ``[MOVIE_k]``, see
:mod:`crwalker.generation.placeholders`). ``x_t`` is the turn right before the recommender turn (its
``text`` field, titles rendered), or ``"hello"`` for a dialogue-opening turn, as in the reference code.

**Inputs** (read-only):

* ``data/redial/{split}.jsonl`` canonical dialogues: ``{"conv_id", "turns": [{"idx", "role", "text_raw",
  "text", "movie_ids", ...}]}``;
* ``data/labels/{split}.jsonl``: one row per recommender turn ``{"conv_id", "turn_idx", "intent",
  "act" (``DialogAct.to_json()``), "act_text", ...}``;
* optionally a walker prediction JSONL ``{"conv_id", "turn_idx", "act_text"}`` for end-to-end evaluation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from data_scripts.utils.io import DataFormatError, iter_jsonl
from kg_build.acts import DialogAct, display_name
from kg_build.schema import KnowledgeGraph

from .placeholders import act_movies, delexicalise

OPENING_CONTEXT = "hello"
IGNORE_INDEX = -100


def build_prompt(context: str, act_text: str | None) -> str:
    """The generator's input string (see module docstring); ``act_text=None`` gives the no-act prompt."""
    context = " ".join(context.split()) or OPENING_CONTEXT
    if act_text is None:
        return f"{context} &"
    return f"{context} @ {' '.join(act_text.split())} &"


@dataclass
class GenExample:
    """One recommender turn for the generator.

    Attributes:
        conv_id, turn_idx: Position in the canonical dialogues.
        intent: The act's intent (``recommend`` / ``query`` / ``chat``).
        context: ``x_t``.
        act_text: Linearised act ``A_t``.
        reply: Delexicalised target reply (``[MOVIE_k]`` placeholders).
        reply_text: Gold reply with titles rendered (the BLEU reference).
        movie_ids: The act's movie entity ids in placeholder order.
        titles: KG names of ``movie_ids``.
        context_movie_ids: KG ids of movies mentioned in ``x_t`` (allowed to be echoed).
    """

    conv_id: str
    turn_idx: int
    intent: str
    context: str
    act_text: str
    reply: str
    reply_text: str
    movie_ids: list[int]
    titles: list[str]
    context_movie_ids: list[int]

    def prompt(self, use_act: bool = True) -> str:
        return build_prompt(self.context, self.act_text if use_act else None)

    def target(self, use_act: bool = True) -> str:
        """Training target: the delexicalised reply with acts; without acts there is nothing to align
        placeholders to, so the no-act baseline learns the reply with titles spelled out (as in the paper)."""
        return self.reply if use_act else self.reply_text

    def with_act(self, act_text: str, kg: KnowledgeGraph) -> GenExample:
        """The same turn with another (e.g. predicted) act: movies/titles follow the new act."""
        act = parse_act(act_text, kg)
        movies = act_movies(act, kg)
        return dataclasses.replace(
            self, intent=act.intent, act_text=act_text, movie_ids=movies, titles=[kg.entities[m].name for m in movies]
        )

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def name_resolver(kg: KnowledgeGraph):
    """``name -> entity id`` (-1 if unknown) over KG names in their act display form, case-insensitive."""
    table = getattr(kg, "_gen_display_names", None)
    if table is None:
        table = {}
        for e in kg.entities:
            table.setdefault(display_name(e.name).lower(), e.id)
        kg._gen_display_names = table  # cached on the instance, like the KG's own cached_property lookups
    return lambda name: table.get(display_name(name).lower(), -1)


def parse_act(act_text: str, kg: KnowledgeGraph) -> DialogAct:
    """Parse a linearised act, resolving entity names against the KG."""
    return DialogAct.parse(act_text, resolve=name_resolver(kg))


def _req(row: dict, key: str, path: Path, line: int):
    if key not in row:
        raise DataFormatError(path, line, f"missing field {key!r}")
    return row[key]


def load_dialogues(path: str | Path) -> dict[str, list[dict]]:
    """``conv_id -> turns`` (turns sorted by ``idx``) from a canonical dialogue JSONL."""
    path = Path(path)
    out: dict[str, list[dict]] = {}
    for line, row in enumerate(iter_jsonl(path), start=1):
        turns = _req(row, "turns", path, line)
        for t in turns:
            for key in ("idx", "role", "text_raw", "text"):
                if key not in t:
                    raise DataFormatError(path, line, f"turn without field {key!r} in conv {row.get('conv_id')}")
        out[str(_req(row, "conv_id", path, line))] = sorted(turns, key=lambda t: t["idx"])
    return out


def build_examples(
    dialogues: dict[str, list[dict]], labels_path: str | Path, kg: KnowledgeGraph, limit: int | None = None
) -> list[GenExample]:
    """Join label rows with their dialogue turns into :class:`GenExample` s (file order).

    Raises:
        DataFormatError: naming the label file and line when a row is malformed or points to a
            turn that does not exist.
    """
    labels_path = Path(labels_path)
    out: list[GenExample] = []
    for line, row in enumerate(iter_jsonl(labels_path), start=1):
        conv_id = str(_req(row, "conv_id", labels_path, line))
        turn_idx = int(_req(row, "turn_idx", labels_path, line))
        turns = dialogues.get(conv_id)
        if turns is None:
            raise DataFormatError(labels_path, line, f"conv_id {conv_id!r} not in the dialogue file")
        pos = next((i for i, t in enumerate(turns) if t["idx"] == turn_idx), None)
        if pos is None:
            raise DataFormatError(labels_path, line, f"conv {conv_id} has no turn {turn_idx}")
        try:
            act = DialogAct.from_json(row["act"]) if "act" in row else parse_act(row["act_text"], kg)
        except (KeyError, ValueError) as exc:
            raise DataFormatError(labels_path, line, f"bad act: {exc}") from exc
        act_text = row.get("act_text") or act.linearize()
        movies = act_movies(act, kg)
        turn = turns[pos]
        prev = turns[pos - 1] if pos > 0 else None
        ctx_movies = [kg.by_redial_id[m] for m in (prev or {}).get("movie_ids", []) if m in kg.by_redial_id]
        out.append(
            GenExample(
                conv_id=conv_id,
                turn_idx=turn_idx,
                intent=act.intent,
                context=prev["text"] if prev else OPENING_CONTEXT,
                act_text=act_text,
                reply=delexicalise(turn["text_raw"], movies, kg),
                reply_text=turn["text"],
                movie_ids=movies,
                titles=[kg.entities[m].name for m in movies],
                context_movie_ids=ctx_movies,
            )
        )
        if limit is not None and len(out) >= limit:
            break
    return out


def load_predicted_acts(path: str | Path) -> dict[tuple[str, int], str]:
    """``(conv_id, turn_idx) -> act_text`` from the walker's prediction JSONL.

    Accepts ``act_text`` at the top level or under ``pred`` (``crwalker.evaluate``'s per-turn file
    ``<run>/eval_<split>_turns.jsonl``: ``{"conv_id", "turn_idx", "pred": {"act_text", ...}, ...}``).
    """
    path = Path(path)
    out = {}
    for line, row in enumerate(iter_jsonl(path), start=1):
        key = (str(_req(row, "conv_id", path, line)), int(_req(row, "turn_idx", path, line)))
        act = row.get("act_text", (row.get("pred") or {}).get("act_text"))
        if not isinstance(act, str):
            raise DataFormatError(path, line, "missing field 'act_text' (top level or under 'pred')")
        out[key] = act
    return out


@dataclass
class GenBatch:
    """A padded training/scoring batch (right padding)."""

    input_ids: torch.Tensor  # long [B, T]
    attention_mask: torch.Tensor  # long [B, T]
    labels: torch.Tensor  # long [B, T], IGNORE_INDEX on prompt and padding

    def to(self, device: torch.device | str) -> GenBatch:
        return GenBatch(self.input_ids.to(device), self.attention_mask.to(device), self.labels.to(device))


def encode_pair(
    tokenizer, prompt: str, reply: str, max_prompt_tokens: int = 96, max_reply_tokens: int = 64
) -> tuple[list[int], list[int]]:
    """Token ids and labels for ``prompt + " " + reply + EOS``.

    The prompt keeps its *last* ``max_prompt_tokens`` tokens (the act is at the end and must survive);
    the reply keeps its first ``max_reply_tokens`` tokens, then EOS. Labels are -100 on the prompt.
    """
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"][-max_prompt_tokens:]
    r = tokenizer(" " + reply, add_special_tokens=False)["input_ids"][:max_reply_tokens] + [tokenizer.eos_token_id]
    return p + r, [IGNORE_INDEX] * len(p) + r


def collate(pairs: Sequence[tuple[list[int], list[int]]], pad_id: int) -> GenBatch:
    """Right-pad :func:`encode_pair` outputs into a :class:`GenBatch`."""
    width = max(len(ids) for ids, _ in pairs)
    ids = torch.full((len(pairs), width), pad_id, dtype=torch.long)
    lab = torch.full((len(pairs), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(pairs), width), dtype=torch.long)
    for i, (x, y) in enumerate(pairs):
        ids[i, : len(x)] = torch.tensor(x)
        lab[i, : len(y)] = torch.tensor(y)
        mask[i, : len(x)] = 1
    return GenBatch(ids, mask, lab)
