"""Entity-linking benchmark: ``python -m kg_build bench-linking [--kg data/kg --data data/redial ...]``.

Two evaluations of :class:`kg_build.linker.EntityLinker`, written to ``results/linking.json``:

1. **Typed ReDial mentions** (``--split test``). In every turn of the split, each ``@<movieId>``
   of ``text_raw`` whose movie is in the KG is replaced by the movie title *as a person would type
   it*: the KG title without the year, lower-cased, and -- for a seeded ``--typo-share`` of the
   mentions whose title has >= ``--typo-min-letters`` letters -- one typo (titles of >= 10 letters:
   one or two, 50/50), each typo being a random substitution, deletion, insertion or transposition of
   adjacent letters (:func:`make_typo`). The other words of the turn are unchanged. Each inserted
   title is a gold mention with its character span and KG entity. A predicted span whose entity is a
   movie is a true positive when it overlaps a not-yet-matched gold span of the same entity
   (one-to-one, in order). Micro over mentions::

       movie_precision = TP / #predicted movie spans      movie_recall = TP / #gold mentions

   Three matching levels (:func:`same_film`): ``strict`` (same entity: ``movie_precision_strict`` /
   ``movie_recall_strict``), ``duplicate`` (the headline ``movie_precision`` / ``movie_recall``: same
   entity or a ReDial *duplicate entry* of the same film -- identical normalised title and the same
   year or one year missing, e.g. "American Pie" vs "American Pie (1999)"; a remake with another year
   is *not* accepted) and ``title`` (``*_title_level``: any movie with the same normalised title,
   remakes included).

   ReDial users sometimes typed a title without ``@``, so the gold lacks it. A predicted movie span
   that overlaps no gold span and links one of the dialogue's **known ids** (a film ``@``-mentioned in
   some turn of the same dialogue, at the same matching level) is such an *unlabelled mention of a known
   id* ("psycho is good" in a dialogue that ``@``-mentions Psycho): the headline counts it neither as
   correct nor as wrong -- it leaves the precision denominator (``n_unlabelled_known_mentions``), recall
   is unchanged. A hand audit of all 64 such spans on valid found 56 real mentions of the film and 8
   other uses (character names "Hannibal was a great villain", "alien contact", the book "didn't he
   write the Da Vinci Code", the battle "about dunkirk", a remake): counting the 56 as correct and the 8
   as wrong gives valid precision 0.919, excluding all 64 gives 0.921 -- the exclusion is not a
   loophole, it agrees with a manual judgement (on test, 38 of 40 sampled ones are real mentions). ``movie_precision_all_predictions``
   keeps every prediction in the denominator (the definition of earlier rounds). Any other prediction
   outside the gold spans is a false positive. ``n_unlabelled_plain_mentions`` counts the
   false positives of :func:`unlabelled_plain_mentions` (outside the replaced text, linked identically
   on the original message with ``@id`` -> :data:`PLACEHOLDER`, linked title written verbatim in the
   original message) and ``movie_precision_excl_unlabelled`` drops them from the denominator. This
   extra is an *upper bound*, not the headline: a manual audit of 30 of them on valid found about half
   to be real titles the user typed ("I loved Black Panther") and half ordinary words that happen to
   be a title ("enough", "killers", "The Rock is one of my favorite actors").
   Turns are linked in dialogue order (:func:`link_dialogues`), each with ``context`` = the entity ids
   the linker itself predicted on the earlier turns of its dialogue (never gold ids); ``--context
   false`` links every turn alone.
2. **Hand-labelled utterances** (``kg_build/resources/linking_handlabelled.jsonl``, written for this
   project): per entity type, precision/recall of the *set* of linked entities of that type per
   utterance (micro over utterances), ``n`` = number of gold entities of the type; negation accuracy
   over correctly linked entities. Gold names must exist in the KG (checked, file:line errors).

Speed: ``ms_per_utterance`` is wall time of :meth:`EntityLinker.link_many` over all benchmark turns
divided by their number (after :meth:`EntityLinker.load`, whose time is ``load_s``);
``ms_per_utterance_single`` times :meth:`EntityLinker.link` one call at a time on the first
``--single-sample`` turns; ``handlabelled_ms_per_utterance[_single]`` time the same on the hand-labelled
utterances (normal chat-like text); ``load_average_1min`` is the machine's load average after the
timings (wall times grow with it on a shared machine).

``ablation_no_ner`` repeats the typed-mention benchmark with ``use_ner=False`` (quality and speed).

``--calibrate`` instead runs a coordinate search of the linker's thresholds on the ReDial **train
and valid** splits (never test) with the same protocol and prints the table (the chosen values are
the :class:`~kg_build.linker.LinkerOptions` defaults).
"""

from __future__ import annotations

import dataclasses
import os
import random
import re
import string
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from data_scripts.titles import normalize_title, split_title_year
from data_scripts.utils.config import field, parse_config, to_dict
from data_scripts.utils.io import DataFormatError, iter_jsonl, write_jsonl
from data_scripts.utils.results import format_table, write_results
from kg_build.linker import MENTION_RE, EntityLinker, LinkedSpan
from kg_build.schema import KnowledgeGraph

HANDLABELLED_PATH = Path(__file__).parent / "resources" / "linking_handlabelled.jsonl"
HANDLABELLED_TYPES: tuple[str, ...] = ("movie", "person", "genre", "time")


@dataclass
class BenchConfig:
    """Entity-linking benchmark (typed ReDial mentions + hand-labelled utterances)."""

    kg: str = field("data/kg", "KG folder (python -m kg_build build).")
    data: str = field("data/redial", "Canonical ReDial folder with {train,valid,test}.jsonl and movies.jsonl.")
    out: str = field("results/linking.json", "Results JSON ('' = do not write).")
    split: str = field("test", "Split for the typed-mention benchmark.")
    typo_share: float = field(0.2, "Share of eligible mentions that get a typo.")
    typo_min_letters: int = field(5, "Titles with fewer letters never get a typo.")
    seed: int = field(0, "Seed of the typo generator.")
    max_turns: int = field(0, "Use only the first N turns (0 = all).")
    single_sample: int = field(1000, "Turns timed one link() call at a time.")
    handlabelled: str = field(
        "kg_build/resources/linking_handlabelled.jsonl", "Hand-labelled JSONL ('' = skip; default: the packaged file)."
    )
    calibrate: bool = field(False, "Sweep linker thresholds on train+valid instead (prints a table).")
    calibration_turns: int = field(4000, "Turns (train+valid) used by --calibrate.")
    use_ner: bool = field(True, "Run spaCy NER as a fallback.")
    context: bool = field(
        True, "Pass the linker's own predictions on earlier turns of the dialogue as `context` (never gold ids)."
    )
    ablate_ner: bool = field(True, "Also run the typed-mention benchmark without NER (ablation_no_ner).")
    show_errors: int = field(15, "Print this many example errors.")
    dump_errors: str = field("", "Write every typed-mention error as JSONL here (error analysis; '' = no).")


# ---------------------------------------------------------------------------------------- typos
def make_typo(text: str, rng: random.Random, n_edits: int = 1) -> str:
    """Apply ``n_edits`` random one-letter edits (substitute, delete, insert, swap adjacent) to letters.

    Only positions of ASCII letters are edited, so spaces and digits stay; the result differs from
    ``text`` (an edit that would reproduce it or the previous string is retried).
    """
    out = text
    for _ in range(n_edits):
        for _attempt in range(20):
            pos = [i for i, c in enumerate(out) if c.isascii() and c.isalpha()]
            if not pos:
                return out
            i = rng.choice(pos)
            op = rng.choice(("sub", "del", "ins", "swap"))
            letter = rng.choice(string.ascii_lowercase)
            if op == "sub":
                cand = out[:i] + letter + out[i + 1 :]
            elif op == "del":
                cand = out[:i] + out[i + 1 :]
            elif op == "ins":
                cand = out[:i] + letter + out[i:]
            else:
                if i + 1 >= len(out) or not out[i + 1].isalpha():
                    continue
                cand = out[:i] + out[i + 1] + out[i] + out[i + 2 :]
            if cand not in (out, text):
                out = cand
                break
    return out


#: Neutral text put in place of each ``@id`` for the baseline run on the original message (not an alias).
PLACEHOLDER = "that film"
#: Matching levels of :func:`score_movies` (see module docstring).
MATCH_LEVELS: tuple[str, ...] = ("strict", "duplicate", "title")


@dataclass(frozen=True)
class TypedTurn:
    """A benchmark utterance: text with typed titles and the gold ``(start, end, entity)`` spans.

    ``baseline`` is the original message with every replaced ``@id`` turned into :data:`PLACEHOLDER`,
    ``raw`` the original message, and ``pieces`` the ``(typed_start, baseline_start, length)`` of the
    text both share (everything but the replaced mentions). ``known`` holds the dialogue's *known ids*:
    every KG movie ``@``-mentioned in any of its turns (used by the scoring only, never given to the linker).
    """

    text: str
    gold: tuple[tuple[int, int, int], ...]
    n_typos: int
    raw: str = ""
    baseline: str = ""
    pieces: tuple[tuple[int, int, int], ...] = ()
    dialogue: int = -1  # index of the dialogue in the split (-1: unknown -> no dialogue context)
    known: frozenset[int] = frozenset()  # the dialogue's known ids: KG movies @-mentioned in any of its turns


def typed_title(kg: KnowledgeGraph, eid: int) -> str:
    """The KG movie title without year, lower-cased ("The Terminator (1984)" -> "the terminator")."""
    return split_title_year(kg.entities[eid].name)[0].lower()


def build_typed_turns(
    kg: KnowledgeGraph, dialogues: list[dict], typo_share: float, typo_min_letters: int, seed: int
) -> list[TypedTurn]:
    """Replace every ``@id`` of every turn by the typed title (see module docstring)."""
    rng = random.Random(seed)
    turns = []
    for di, d in enumerate(dialogues):
        known = frozenset(
            eid
            for t in d["turns"]
            for m in MENTION_RE.finditer(t["text_raw"])
            if (eid := kg.by_redial_id.get(int(m.group(1)))) is not None
        )
        for t in d["turns"]:
            raw = t["text_raw"]
            pieces, gold, pos, n_typos = [], [], 0, 0
            base, shared, bpos = [], [], 0
            last = 0
            for m in MENTION_RE.finditer(raw):
                eid = kg.by_redial_id.get(int(m.group(1)))
                if eid is None:
                    continue
                pieces.append(raw[last : m.start()])
                base.append(raw[last : m.start()])
                shared.append((pos, bpos, m.start() - last))
                bpos += m.start() - last + len(PLACEHOLDER)
                base.append(PLACEHOLDER)
                pos += m.start() - last
                title = typed_title(kg, eid)
                if sum(c.isalpha() for c in title) >= typo_min_letters and rng.random() < typo_share:
                    n = 1 if sum(c.isalpha() for c in title) < 10 else rng.choice((1, 2))
                    title = make_typo(title, rng, n)
                    n_typos += 1
                pieces.append(title)
                gold.append((pos, pos + len(title), eid))
                pos += len(title)
                last = m.end()
            pieces.append(raw[last:])
            base.append(raw[last:])
            shared.append((pos, bpos, len(raw) - last))
            turns.append(TypedTurn("".join(pieces), tuple(gold), n_typos, raw, "".join(base), tuple(shared), di, known))
    return turns


def same_film(kg: KnowledgeGraph, gold: int, pred: int, level: str = "strict") -> bool:
    """Does a predicted movie count for a gold one at matching ``level`` (module docstring)?

    ``strict``: same entity. ``duplicate``: same entity, or a ReDial duplicate entry of the same film --
    identical normalised title and the same year or one year missing ("American Pie" vs "American Pie
    (1999)"), never a remake with another year. ``title``: identical normalised title (any year).
    """
    if gold == pred:
        return True
    if level == "strict":
        return False
    (t1, y1), (t2, y2) = split_title_year(kg.entities[gold].name), split_title_year(kg.entities[pred].name)
    if normalize_title(t1) != normalize_title(t2):
        return False
    return level == "title" or y1 is None or y2 is None or y1 == y2


def score_movies(
    kg: KnowledgeGraph,
    turns: list[TypedTurn],
    preds: list[list[LinkedSpan]],
    title_level: bool = False,
    level: str | None = None,
    known_ids: bool = False,
):
    """Micro precision/recall of movie links (module docstring). Returns (tp, n_pred, n_gold, errors).

    ``level`` is one of :data:`MATCH_LEVELS` (default ``strict``; ``title_level=True`` is the old
    spelling of ``level="title"``). Errors are ``(kind, text, span text, entity name, turn index, span)``
    tuples, ``kind`` ``FP`` or ``FN``.

    With ``known_ids``, a predicted movie span that overlaps no gold span of its turn and whose entity
    matches (at ``level``) one of the dialogue's known ids (``TypedTurn.known``) is an *unlabelled mention
    of a known id* -- the user typed that film's title without ``@`` ("psycho is good" in a dialogue that
    ``@``-mentions Psycho): it is neither correct nor wrong, so it leaves ``n_pred`` and is reported with
    kind ``KNOWN``. Recall is unaffected (its denominator is the gold mentions).
    """
    level = level or ("title" if title_level else "strict")
    if level not in MATCH_LEVELS:
        raise ValueError(f"level must be one of {MATCH_LEVELS}, got {level!r}")
    tp = n_pred = n_gold = 0
    errors = []
    for ti, (turn, spans) in enumerate(zip(turns, preds, strict=True)):
        movies = [s for s in spans if kg.entities[s.entity].type == "movie"]
        n_pred += len(movies)
        n_gold += len(turn.gold)
        used: set[int] = set()
        for s in movies:
            hit = None
            for gi, (gs, ge, geid) in enumerate(turn.gold):
                if gi in used or not (s.start < ge and gs < s.end):
                    continue
                if same_film(kg, geid, s.entity, level):
                    hit = gi
                    break
            if hit is None:
                outside = not any(s.start < ge and gs < s.end for gs, ge, _ in turn.gold)
                if known_ids and outside and any(same_film(kg, k, s.entity, level) for k in turn.known):
                    n_pred -= 1
                    errors.append(("KNOWN", turn.text, s.text, kg.entities[s.entity].name, ti, s))
                    continue
                errors.append(("FP", turn.text, s.text, kg.entities[s.entity].name, ti, s))
            else:
                used.add(hit)
                tp += 1
        for gi, (gs, ge, geid) in enumerate(turn.gold):
            if gi not in used:
                errors.append(("FN", turn.text, turn.text[gs:ge], kg.entities[geid].name, ti, None))
    return tp, n_pred, n_gold, errors


def unlabelled_plain_mentions(
    kg: KnowledgeGraph, turns: list[TypedTurn], preds: list[list[LinkedSpan]], baseline: list[list[LinkedSpan]], errors
) -> list[tuple[int, LinkedSpan]]:
    """False positives that are titles the user typed without ``@`` in the original message.

    A false positive ``(turn, span)`` of :func:`score_movies` is such an unlabelled plain-text mention when
    (a) it overlaps no gold span (it lies in text the benchmark did not change), (b) the linker links the
    very same characters to the very same entity in the baseline run on the original message (``@id``
    replaced by :data:`PLACEHOLDER`), so the prediction does not depend on the inserted titles, and (c)
    the linked movie's title without year occurs verbatim (case-insensitive, whole words) in the original
    message -- the user wrote the title, not a typo or an abbreviation the linker expanded.
    """
    out = []
    for e in errors:
        if e[0] != "FP":
            continue
        ti, s = e[4], e[5]
        turn = turns[ti]
        if any(s.start < ge and gs < s.end for gs, ge, _ in turn.gold):
            continue
        piece = next((p for p in turn.pieces if p[0] <= s.start and s.end <= p[0] + p[2]), None)
        if piece is None:
            continue
        bs = s.start - piece[0] + piece[1]
        if not any(b.start == bs and b.end == bs + (s.end - s.start) and b.entity == s.entity for b in baseline[ti]):
            continue
        title = re.escape(typed_title(kg, s.entity))
        if re.search(rf"(?<!\w){title}(?!\w)", turn.raw.lower()):
            out.append((ti, s))
    return out


def _ratio(a: int, b: int) -> float:
    return a / b if b else 0.0


# ---------------------------------------------------------------------------------- hand-labelled
def load_handlabelled(path: str | Path, kg: KnowledgeGraph) -> list[tuple[str, list[tuple[int, str, bool]]]]:
    """Read the hand-labelled set; each gold ``name`` must be a KG entity of the given ``type``.

    Returns:
        ``[(text, [(entity id, type, negated), ...]), ...]``.

    Raises:
        DataFormatError: naming file and line for a missing field or a name not in the KG.
    """
    by_name: dict[tuple[str, str], int] = {}
    for e in kg.entities:
        by_name.setdefault((e.type, e.name), e.id)
    out = []
    for lineno, row in enumerate(iter_jsonl(path), start=1):
        if not isinstance(row.get("text"), str) or not isinstance(row.get("entities"), list):
            raise DataFormatError(path, lineno, 'expected {"text": str, "entities": [...]}')
        gold = []
        for g in row["entities"]:
            typ, name = g.get("type"), g.get("name")
            if typ not in HANDLABELLED_TYPES:
                raise DataFormatError(path, lineno, f"entity type {typ!r} not in {HANDLABELLED_TYPES}")
            if (typ, name) not in by_name:
                raise DataFormatError(path, lineno, f"{typ} {name!r} is not a KG entity name (see {kg.describe()})")
            gold.append((by_name[(typ, name)], typ, bool(g.get("negated", False))))
        out.append((row["text"], gold))
    return out


def score_handlabelled(kg: KnowledgeGraph, data, preds: list[list[LinkedSpan]]) -> dict:
    """Per-type P/R over entity sets per utterance, plus negation accuracy (module docstring)."""
    stats = {t: {"tp": 0, "pred": 0, "gold": 0} for t in HANDLABELLED_TYPES}
    neg_ok = neg_n = other = 0
    clean = n_empty = 0
    errors = []
    for (text, gold), spans in zip(data, preds, strict=True):
        gold_map = {eid: (typ, neg) for eid, typ, neg in gold}
        pred_map: dict[int, bool] = {}
        for s in spans:
            pred_map[s.entity] = pred_map.get(s.entity, False) or s.negated
        if not gold:
            n_empty += 1
            clean += not any(kg.entities[e].type in HANDLABELLED_TYPES for e in pred_map)
        for _eid, typ, _ in gold:
            stats[typ]["gold"] += 1
        for eid, neg in pred_map.items():
            typ = kg.entities[eid].type
            if typ not in stats:
                other += 1
                continue
            stats[typ]["pred"] += 1
            if eid in gold_map:
                stats[typ]["tp"] += 1
                neg_n += 1
                neg_ok += neg == gold_map[eid][1]
                if neg != gold_map[eid][1]:
                    errors.append(("NEG", text, kg.entities[eid].name, f"pred negated={neg}"))
            else:
                errors.append(("FP", text, kg.entities[eid].name, ""))
        for eid in gold_map:
            if eid not in pred_map:
                errors.append(("FN", text, kg.entities[eid].name, ""))
    out = {
        t: {"precision": _ratio(v["tp"], v["pred"]), "recall": _ratio(v["tp"], v["gold"]), "n": v["gold"]}
        for t, v in stats.items()
    }
    tp = sum(v["tp"] for v in stats.values())
    micro = {
        "precision": _ratio(tp, sum(v["pred"] for v in stats.values())),
        "recall": _ratio(tp, sum(v["gold"] for v in stats.values())),
        "n": sum(v["gold"] for v in stats.values()),
    }
    return {
        "per_type": out,
        "micro_all_types": micro,
        "negation_accuracy": _ratio(neg_ok, neg_n),
        "negation_n": neg_n,
        "n_utterances": len(data),
        "no_entity_utterances": n_empty,
        "no_entity_clean_share": _ratio(clean, n_empty),
        "other_type_predictions": other,
        "errors": errors,
    }


# ---------------------------------------------------------------------------------------- driver
def _load_split(folder: Path, split: str) -> list[dict]:
    path = folder / f"{split}.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `python -m data_scripts.prepare redial` first")
    return list(iter_jsonl(path))


def link_dialogues(
    linker: EntityLinker, texts: list[str], dialogues: list[int], use_context: bool = True
) -> tuple[list[list[LinkedSpan]], list[list[int] | None]]:
    """Link ``texts`` (turns in dialogue order) with ``link_many``, giving each turn as ``context`` the
    entity ids the linker itself predicted on the *earlier* turns of its dialogue (``dialogues[i]``;
    -1 = no dialogue, no context). Turns are batched by their position in the dialogue (all first
    turns, then all second turns, ...). Returns (predictions, contexts used)."""
    if not use_context:
        return linker.link_many(texts), [None] * len(texts)
    position: list[int] = []
    seen_count: dict[int, int] = {}
    for d in dialogues:
        position.append(seen_count.get(d, 0) if d >= 0 else 0)
        if d >= 0:
            seen_count[d] = position[-1] + 1
    preds: list[list[LinkedSpan]] = [[] for _ in texts]
    contexts: list[list[int] | None] = [None] * len(texts)
    history: dict[int, list[int]] = {}
    for p in range(max(position, default=-1) + 1):
        idx = [i for i, q in enumerate(position) if q == p]
        for i in idx:
            contexts[i] = list(history.get(dialogues[i], ())) if dialogues[i] >= 0 else None
        for i, spans in zip(idx, linker.link_many([texts[i] for i in idx], [contexts[i] for i in idx]), strict=True):
            preds[i] = spans
            if dialogues[i] >= 0:
                hist = history.setdefault(dialogues[i], [])
                hist.extend(s.entity for s in spans if s.entity not in hist)
    return preds, contexts


def link_one_by_one(linker: EntityLinker, turns: list[TypedTurn], use_context: bool = True) -> None:
    """``link`` each turn in order, as a chat would (context: own predictions on earlier turns)."""
    history: dict[int, list[int]] = {}
    for t in turns:
        ctx = history.setdefault(t.dialogue, []) if use_context and t.dialogue >= 0 else None
        spans = linker.link(t.text, ctx)
        if ctx is not None:
            ctx.extend(s.entity for s in spans if s.entity not in ctx)


def run_movie_benchmark(
    linker: EntityLinker, turns: list[TypedTurn], unlabelled: bool = False, use_context: bool = True
) -> tuple[dict, list, float]:
    """Link ``turns`` with ``link_many`` and score them at every :data:`MATCH_LEVELS` level.

    Headline ``movie_precision`` / ``movie_recall`` use the ``duplicate`` level; ``*_strict`` and
    ``*_title_level`` are kept beside them. With ``unlabelled``, the original messages are linked too
    and :func:`unlabelled_plain_mentions` are reported (``n_unlabelled_plain_mentions``) and removed from
    the precision denominator in ``movie_precision_excl_unlabelled``. Returns (results, headline errors,
    ms per utterance of the timed ``link_many``).
    """
    t0 = time.perf_counter()
    dialogues = [t.dialogue for t in turns]
    preds, _ = link_dialogues(linker, [t.text for t in turns], dialogues, use_context)
    ms = (time.perf_counter() - t0) * 1000 / max(len(turns), 1)
    kg = linker.kg
    res: dict = {}
    by_level = {lv: score_movies(kg, turns, preds, level=lv, known_ids=True) for lv in MATCH_LEVELS}
    tp, n_pred, n_gold, errors = by_level["duplicate"]
    res["movie_precision"] = _ratio(tp, n_pred)
    res["movie_recall"] = _ratio(tp, n_gold)
    n_known = sum(e[0] == "KNOWN" for e in errors)
    res["movie_precision_all_predictions"] = _ratio(tp, n_pred + n_known)
    res["n_unlabelled_known_mentions"] = n_known
    for lv, suffix in (("strict", "_strict"), ("title", "_title_level")):
        tpl, n_pred_l, _, _ = by_level[lv]
        res[f"movie_precision{suffix}"] = _ratio(tpl, n_pred_l)
        res[f"movie_recall{suffix}"] = _ratio(tpl, n_gold)
    res.update({"n_mentions": n_gold, "n_predicted": n_pred, "n_utterances": len(turns)})
    if unlabelled:
        base, _ = link_dialogues(linker, [t.baseline for t in turns], dialogues, use_context)
        plain = unlabelled_plain_mentions(kg, turns, preds, base, errors)
        res["n_unlabelled_plain_mentions"] = len(plain)
        res["movie_precision_excl_unlabelled"] = _ratio(tp, n_pred - len(plain))
        plain_ids = {(ti, s) for ti, s in plain}
        errors = [e for e in errors if (e[4], e[5]) not in plain_ids] + [
            ("UNLABELLED", *e[1:]) for e in errors if (e[4], e[5]) in plain_ids
        ]
    typo_turns = [i for i, t in enumerate(turns) if t.n_typos]
    if typo_turns:
        tp2, p2, g2, _ = score_movies(
            kg, [turns[i] for i in typo_turns], [preds[i] for i in typo_turns], level="duplicate"
        )
        res["recall_in_turns_with_typos"] = _ratio(tp2, g2)
    return res, errors, ms


def calibrate(cfg: BenchConfig, kg: KnowledgeGraph) -> int:
    """Coordinate search of linker thresholds on train+valid typed mentions (never test)."""
    data = Path(cfg.data)
    dialogues = _load_split(data, "train") + _load_split(data, "valid")
    turns = build_typed_turns(kg, dialogues, cfg.typo_share, cfg.typo_min_letters, cfg.seed + 1)
    turns = [t for t in turns if t.gold][: cfg.calibration_turns // 2] + [t for t in turns if not t.gold][
        : cfg.calibration_turns // 2
    ]
    grid = {
        "common_phrase_zipf": [5.0, 5.5, 6.0],
        "common_zipf": [4.0, 4.5, 5.0],
        "cap_zipf": [4.5, 5.0, 5.5],
        "start_zipf": [3.5, 4.0, 4.5],
        "stripped_zipf": [3.0, 3.5, 4.0],
        "fuzzy_min_chars": [4, 5, 6],
        "fuzzy_two_edit_chars": [8, 10, 12],
    }
    best = {k: dataclasses.asdict(EntityLinker(kg).options)[k] for k in grid}
    rows = []
    for name, values in grid.items():
        scores = []
        for v in values:
            opts = {**best, name: v}
            lk = EntityLinker.from_kg(kg, popularity_path=str(data / "movies.jsonl"), use_ner=cfg.use_ner, **opts)
            res, _, _ = run_movie_benchmark(lk.load(), turns, use_context=cfg.context)
            f1 = _ratio(2 * res["movie_precision"] * res["movie_recall"], res["movie_precision"] + res["movie_recall"])
            p, r = res["movie_precision"], res["movie_recall"]
            rows.append({"param": name, "value": v, "P": f"{p:.4f}", "R": f"{r:.4f}", "F1": f"{f1:.4f}"})
            print(format_table(rows[-1:], ["param", "value", "P", "R", "F1"]).splitlines()[-1], flush=True)
            scores.append((f1, v))
        best[name] = max(scores, key=lambda x: (round(x[0], 4), x[1] == best[name]))[1]
    print(format_table(rows, ["param", "value", "P", "R", "F1"]))
    print(f"calibrated on {len(turns)} train+valid turns: {best}")
    return 0


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(BenchConfig, argv)
    kg = KnowledgeGraph.load(cfg.kg)
    if cfg.calibrate:
        return calibrate(cfg, kg)
    data = Path(cfg.data)
    linker = EntityLinker.from_kg(kg, popularity_path=str(data / "movies.jsonl"), use_ner=cfg.use_ner)
    hand_path = Path(cfg.handlabelled)
    if cfg.handlabelled and not hand_path.exists() and cfg.handlabelled == BenchConfig.handlabelled:
        hand_path = HANDLABELLED_PATH  # run from outside the project root
    hand = load_handlabelled(hand_path, kg) if cfg.handlabelled else None  # validate before heavy work
    linker.load()
    print(f"{kg.describe()}\nlinker loaded in {linker.load_seconds:.1f} s", flush=True)

    turns = build_typed_turns(kg, _load_split(data, cfg.split), cfg.typo_share, cfg.typo_min_letters, cfg.seed)
    if cfg.max_turns:
        turns = turns[: cfg.max_turns]
    res, errors, ms = run_movie_benchmark(linker, turns, unlabelled=True, use_context=cfg.context)
    if cfg.dump_errors:
        rows = [{"kind": e[0], "text": e[1], "span": e[2], "entity": e[3]} for e in errors]
        write_jsonl(cfg.dump_errors, rows)
        print(f"wrote {len(rows)} errors to {cfg.dump_errors}")
    sample = turns[: cfg.single_sample]
    t0 = time.perf_counter()
    link_one_by_one(linker, sample, cfg.context)
    ms_single = (time.perf_counter() - t0) * 1000 / max(len(sample), 1)
    n_typo_mentions = sum(t.n_typos for t in turns)
    payload = {
        **res,
        "ms_per_utterance": ms,
        "ms_per_utterance_single": ms_single,
        "load_s": linker.load_seconds,
        "load_average_1min": os.getloadavg()[0],  # other jobs on the shared machine inflate wall times
        "typo_share": cfg.typo_share,
        "n_typo_mentions": n_typo_mentions,
        "split": cfg.split,
    }
    if cfg.use_ner and cfg.ablate_ner:
        fast = EntityLinker.from_kg(kg, popularity_path=str(data / "movies.jsonl"), use_ner=False).load()
        res_fast, _, ms_fast = run_movie_benchmark(fast, turns, use_context=cfg.context)
        t0 = time.perf_counter()
        link_one_by_one(fast, sample, cfg.context)
        payload["ablation_no_ner"] = {
            "movie_precision": res_fast["movie_precision"],
            "movie_recall": res_fast["movie_recall"],
            "ms_per_utterance": ms_fast,
            "ms_per_utterance_single": (time.perf_counter() - t0) * 1000 / max(len(sample), 1),
        }
    print(format_table([{"metric": k, "value": v} for k, v in payload.items()], ["metric", "value"]))
    for e in errors[: cfg.show_errors]:
        print("  ", e[:4])
    if hand is not None:
        hand_texts = [t for t, _ in hand]
        t0 = time.perf_counter()
        hand_preds = linker.link_many(hand_texts)
        payload["handlabelled_ms_per_utterance"] = (time.perf_counter() - t0) * 1000 / len(hand_texts)
        t0 = time.perf_counter()
        for t in hand_texts:
            linker.link(t)
        payload["handlabelled_ms_per_utterance_single"] = (time.perf_counter() - t0) * 1000 / len(hand_texts)
        hres = score_handlabelled(kg, hand, hand_preds)
        payload["handlabelled"] = hres.pop("per_type")
        micro = hres.pop("micro_all_types")
        hand_errors = hres.pop("errors")
        payload["handlabelled_summary"] = {**hres, "micro_all_types": micro}
        rows = [{"type": t, **v} for t, v in payload["handlabelled"].items()] + [{"type": "all (micro)", **micro}]
        print(format_table(rows, ["type", "precision", "recall", "n"]))
        print(format_table([{"metric": k, "value": v} for k, v in hres.items()], ["metric", "value"]))
        for e in hand_errors[: cfg.show_errors * 2]:
            print("  ", e)
    if cfg.out:
        files = [data / f"{cfg.split}.jsonl", data / "movies.jsonl", Path(cfg.kg) / "entities.jsonl"]
        if cfg.handlabelled:
            files.append(hand_path)
        write_results(
            cfg.out, payload, config={**to_dict(cfg), "linker": dataclasses.asdict(linker.options)}, data_files=files
        )
        print(f"wrote {cfg.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
