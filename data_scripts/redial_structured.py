"""Structured ReDial (full official split without text) -> canonical JSONL aligned to ReDial movie ids.

Source: ``<redial>/structured/{train,valid,test}.csv`` (petruzzellialessandro/UMAP2024), the full official
split (8,104 / 901 / 1,342 conversations) with columns ``,conversationId,movie_sent,sequence``:

* ``sequence``: tokens ``[SKR]``/``[REC]`` (speaker change; turns without any mention are absent, so
  consecutive turns of one speaker appear merged), ``[POS]``/``[NEG]`` (polarity of the next mention),
  ``[I<n>]`` (item in this source's own numbering), ``[EG<n>]`` / ``[EA<n>]`` / ``[ED<n>]`` (genre /
  actor / director; ``<n>`` is a Wikidata Q-number).
* ``movie_sent``: a Python-literal list with one ``('<n>', 1 | ['NEG'], 'S' | 'N')`` per item occurrence
  in sequence order (parsed with :func:`ast.literal_eval`, never ``eval``).

Alignment ``I<n>`` -> ReDial ``movieId`` (:func:`align_items`) uses conversations that also exist with
text (``data/redial/{train,valid,test}.jsonl``) and is recovered by mention order:

1. Per conversation take the distinct items in first-occurrence order and the distinct ``@<id>``
   mentions of the text in first-occurrence order. If both lists have the same length, pair them
   position by position (one vote per pair).
2. For the other conversations (the structured source dropped some mentions, mostly movies whose
   name has no year), items already aligned are used as anchors; between consecutive anchors, if the
   number of unaligned items equals the number of text movies not yet aligned to any item (after
   removing year-less movies when there are more movies than items), they are paired in order.
   Repeated until no new votes (at most ``rounds`` times).
3. Each item takes the ReDial id with most votes; an item whose votes disagree counts as
   *conflicting* (the majority wins; a tie leaves it unaligned).

Outputs (``write`` into the ReDial output folder):

``structured_{train,valid,test}.jsonl``
    ``{"conv_id": str, "split": str, "text_split": "train"|"valid"|"test"|null,
    "turns": [{"idx": int, "role": "seeker"|"recommender",
               "mentions": [{"kind": "item"|"genre"|"actor"|"director", "id": "I14102"|"Q200092",
                             "polarity": "pos"|"neg", "redial_id": int|null (items only)}],
               "movie_ids": [int], "entity_ids": ["Q..."]}],
    "movie_sent": [{"item": "I14102", "redial_id": int|null, "sentiment": "pos"|"neg", "flag": "S"|"N"}]}``

    ``split`` is the structured file's split; the test file is the official test split and stays ``test``.
    ``text_split`` is the canonical split of the same conversation in ``{train,valid,test}.jsonl`` when it
    exists with text. **Leakage rule**: a model trained on structured conversations must use only rows
    with ``split != "test"`` and ``text_split not in {"valid", "test"}`` -- :func:`training_rows` does
    exactly that. ``movie_ids`` lists the aligned ReDial ids of the turn's items (unaligned items are
    dropped there but kept in ``mentions`` with ``redial_id: null``); ``entity_ids`` the Q-ids of genres,
    actors and directors.

``structured_items.jsonl``
    ``{"item": "I14102", "redial_id": int|null, "votes": int, "agreeing_votes": int, "n_mentions": int}``
    for every item id of the three files, sorted by number.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import re
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from data_scripts.utils.io import DataFormatError, read_jsonl, sha256_file, write_jsonl

SPLITS: tuple[str, ...] = ("train", "valid", "test")
TOKEN_RE = re.compile(r"\[(SKR|REC|POS|NEG|I\d+|EG\d+|EA\d+|ED\d+)\]")
ENTITY_KINDS = {"EG": "genre", "EA": "actor", "ED": "director"}
ROLE_OF = {"SKR": "seeker", "REC": "recommender"}

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


# ----------------------------------------------------------------------------------------------- parse
def parse_sequence(seq: str, path: Path | str = "<string>", line: int | None = None) -> list[dict]:
    """A ``sequence`` string -> turns ``[{"idx", "role", "mentions": [...]}]`` (no alignment yet).

    Raises:
        DataFormatError: unknown token, a mention before the first speaker tag or a polarity not followed
            by a mention.
    """
    tokens = seq.split()
    turns: list[dict] = []
    polarity = "pos"
    pending = False
    for tok in tokens:
        m = TOKEN_RE.fullmatch(tok)
        if not m:
            raise DataFormatError(path, line, f"unknown token {tok!r} in sequence")
        t = m.group(1)
        if t in ROLE_OF:
            if pending:
                raise DataFormatError(path, line, f"polarity tag not followed by a mention before {tok}")
            role = ROLE_OF[t]
            if not turns or turns[-1]["role"] != role:
                turns.append({"idx": len(turns), "role": role, "mentions": []})
            continue
        if t in ("POS", "NEG"):
            polarity, pending = t.lower(), True
            continue
        if not turns:
            raise DataFormatError(path, line, f"mention {tok} before the first [SKR]/[REC] tag")
        if t.startswith("I"):
            mention = {"kind": "item", "id": t, "polarity": polarity, "redial_id": None}
        else:
            kind = ENTITY_KINDS[t[:2]]
            mention = {"kind": kind, "id": "Q" + t[2:], "polarity": polarity}
        turns[-1]["mentions"].append(mention)
        polarity, pending = "pos", False
    return turns


def parse_movie_sent(text: str, path: Path | str = "<string>", line: int | None = None) -> list[dict]:
    """``"[('14102', 1, 'N'), ('43389', ['NEG'], 'S')]"`` -> ``[{"item", "redial_id", "sentiment", "flag"}]``."""
    try:
        raw = ast.literal_eval(text) if text.strip() else []
    except (ValueError, SyntaxError) as exc:
        raise DataFormatError(path, line, f"movie_sent is not a Python literal list ({exc})") from exc
    out = []
    for entry in raw:
        if not (isinstance(entry, tuple) and len(entry) == 3):
            raise DataFormatError(path, line, f"movie_sent entry {entry!r} is not a (item, sentiment, flag) triple")
        item, sent, flag = entry
        sentiment = "neg" if sent == ["NEG"] or sent == "NEG" else "pos"
        out.append({"item": f"I{item}", "redial_id": None, "sentiment": sentiment, "flag": str(flag)})
    return out


def _csv_rows(reader, path: Path):
    """Rows of a ``csv.reader``; a :class:`csv.Error` becomes a :class:`DataFormatError` with the line."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DataFormatError(path, reader.line_num, f"malformed CSV ({exc}); is the file truncated?") from exc
        yield row


def read_structured_csv(path: str | Path, split: str, progress: bool = False) -> list[dict]:
    """Read one structured CSV into records (``redial_id`` still ``null``).

    Raises:
        DataFormatError: wrong header, missing columns (e.g. a truncated last row), a bad token, or
            ``movie_sent`` not matching the items of ``sequence`` (file + line).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: structured ReDial file not found")
    rows = []
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or header[1:4] != ["conversationId", "movie_sent", "sequence"]:
            raise DataFormatError(path, 1, f"expected header ',conversationId,movie_sent,sequence', got {header}")
        seen: set[str] = set()
        for row in tqdm(_csv_rows(reader, path), desc=path.name, unit="conv", disable=not progress, leave=False):
            line = reader.line_num
            if not row:
                continue
            if len(row) != 4:
                raise DataFormatError(path, line, f"expected 4 columns, got {len(row)}; is the file truncated?")
            conv_id = row[1].strip()
            if not conv_id.isdigit():
                raise DataFormatError(path, line, f"conversationId {conv_id!r} is not a number")
            if conv_id in seen:
                raise DataFormatError(path, line, f"duplicate conversationId {conv_id}")
            seen.add(conv_id)
            turns = parse_sequence(row[3], path, line)
            sent = parse_movie_sent(row[2], path, line)
            items = [m["id"] for t in turns for m in t["mentions"] if m["kind"] == "item"]
            if items != [s["item"] for s in sent]:
                raise DataFormatError(path, line, "movie_sent items do not match the items of sequence")
            rows.append({"conv_id": conv_id, "split": split, "text_split": None, "turns": turns, "movie_sent": sent})
    return rows


# ----------------------------------------------------------------------------------------------- align
def _distinct(seq: list) -> list:
    return list(dict.fromkeys(seq))


def _text_movies(dialogue: dict) -> list[int]:
    return _distinct([m for t in dialogue["turns"] for m in t["movie_ids"]])


def _items(record: dict) -> list[str]:
    return _distinct([m["id"] for t in record["turns"] for m in t["mentions"] if m["kind"] == "item"])


@dataclass
class Alignment:
    """Result of :func:`align_items`."""

    mapping: dict[str, int]  # item id -> ReDial id
    votes: dict[str, Counter] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)


def _decide(votes: dict[str, Counter]) -> dict[str, int]:
    out = {}
    for item, c in votes.items():
        top = c.most_common(2)
        if len(top) == 1 or top[0][1] > top[1][1]:
            out[item] = top[0][0]
    return out


def align_items(
    pairs: list[tuple[list[str], list[int]]], rounds: int = 5, droppable: frozenset[int] = frozenset()
) -> Alignment:
    """Align structured item ids to ReDial ids from conversations known in both forms (see module docstring).

    Args:
        pairs: Per shared conversation, ``(distinct items in order, distinct ReDial ids in order)``.
        rounds: Maximum anchor-gap passes after the equal-length pass.
        droppable: ReDial ids the structured source tends to omit (names without a year); when a gap's
            sizes differ, they are removed from the gap's text side and the sizes compared again.

    Returns:
        The :class:`Alignment` (``mapping`` only holds decided items).
    """
    votes: dict[str, Counter] = defaultdict(Counter)
    voted: list[set[str]] = [set() for _ in pairs]  # items of each conversation that already voted
    for k, (items, movies) in enumerate(pairs):
        if items and len(items) == len(movies):
            for it, mv in zip(items, movies, strict=True):
                votes[it][mv] += 1
            voted[k].update(items)
    mapping = _decide(votes)
    for _ in range(rounds):
        new = 0
        rev = {v: k for k, v in mapping.items()}
        for k, (items, movies) in enumerate(pairs):
            if not items or voted[k].issuperset(items):
                continue
            pos = {mv: i for i, mv in enumerate(movies)}
            # split the items at anchors (aligned items found in the text, text positions increasing)
            segments: list[tuple[list[str], int, int]] = []
            gap: list[str] = []
            last = -1
            ok = True
            for it in items:
                mv = mapping.get(it)
                if mv is not None and mv in pos:
                    if pos[mv] <= last:
                        ok = False
                        break
                    segments.append((gap, last, pos[mv]))
                    gap, last = [], pos[mv]
                elif mv is None:
                    gap.append(it)
            if not ok:
                continue
            segments.append((gap, last, len(movies)))
            for g, lo, hi in segments:
                free = [mv for mv in movies[lo + 1 : hi] if mv not in rev]
                g = [it for it in g if it not in voted[k]]
                if g and len(g) < len(free):
                    free = [mv for mv in free if mv not in droppable]
                if g and len(g) == len(free):
                    for it, mv in zip(g, free, strict=True):
                        votes[it][mv] += 1
                    voted[k].update(g)
                    new += 1
        mapping = _decide(votes)
        if not new:
            break
    conflicting = sum(1 for c in votes.values() if len(c) > 1)
    return Alignment(mapping, dict(votes), {"items_with_votes": len(votes), "conflicting": conflicting})


def split_half_agreement(
    pairs: dict[str, tuple[list[str], list[int]]], droppable: frozenset[int] = frozenset()
) -> dict[str, int]:
    """Consistency check of :func:`align_items`: align two halves of the shared conversations independently.

    Conversations are halved by ``md5(conv_id)``; returns how many items were aligned in both halves and
    how many of those got the same ReDial id (an agreement rate, not a precision measurement).
    """
    halves: list[list[tuple[list[str], list[int]]]] = [[], []]
    for conv_id, pair in pairs.items():
        halves[hashlib.md5(conv_id.encode()).digest()[0] % 2].append(pair)
    a, b = (align_items(h, droppable=droppable).mapping for h in halves)
    both = set(a) & set(b)
    return {"items_in_both_halves": len(both), "agreeing": sum(a[i] == b[i] for i in both)}


# ----------------------------------------------------------------------------------------------- build
@dataclass
class StructuredResult:
    """Parsed + aligned structured data, ready to be written (see :meth:`write`)."""

    records: dict[str, list[dict]]
    alignment: Alignment
    stats: dict[str, Any]
    sources: dict[str, str]

    def write(self, out: str | Path) -> dict[str, Any]:
        """Write ``structured_{split}.jsonl`` and ``structured_items.jsonl`` atomically; returns manifest stats."""
        out = Path(out)
        for s in SPLITS:
            write_jsonl(out / f"structured_{s}.jsonl", self.records[s])
        n_mentions: Counter = Counter(
            m["id"]
            for rs in self.records.values()
            for r in rs
            for t in r["turns"]
            for m in t["mentions"]
            if m["kind"] == "item"
        )
        rows = []
        for item in sorted(n_mentions, key=lambda x: int(x[1:])):
            c = self.alignment.votes.get(item, Counter())
            rid = self.alignment.mapping.get(item)
            rows.append(
                {
                    "item": item,
                    "redial_id": rid,
                    "votes": sum(c.values()),
                    "agreeing_votes": c.get(rid, 0) if rid is not None else 0,
                    "n_mentions": n_mentions[item],
                }
            )
        write_jsonl(out / "structured_items.jsonl", rows)
        return self.stats


def build_structured(
    folder: str | Path,
    dialogues: dict[str, list[dict]],
    progress: bool = False,
    year_less: set[int] | None = None,
) -> StructuredResult:
    """Read ``folder/{train,valid,test}.csv``, align items with the text ``dialogues`` (split -> list).

    ``year_less``: ReDial ids whose name has no year (see ``droppable`` of :func:`align_items`).

    Nothing is written here, so the caller can validate everything before writing.

    Raises:
        DataFormatError: bad structured file (file + line), or a conversation in the structured test
            file that has text in a non-test split (or vice versa), which would leak test data.
    """
    folder = Path(folder)
    files = {s: folder / f"{s}.csv" for s in SPLITS}
    records = {s: read_structured_csv(p, s, progress) for s, p in files.items()}
    text_split = {d["conv_id"]: s for s, ds in dialogues.items() for d in ds}
    text_by_id = {d["conv_id"]: d for ds in dialogues.values() for d in ds}
    pairs: dict[str, tuple[list[str], list[int]]] = {}
    for s in SPLITS:
        for r in records[s]:
            ts = text_split.get(r["conv_id"])
            r["text_split"] = ts
            if ts is not None and (ts == "test") != (s == "test"):
                raise DataFormatError(
                    files[s],
                    None,
                    f"conversation {r['conv_id']} is {s} here but {ts} in the "
                    "text files; refusing to mix test and training data",
                )
            if ts is not None:
                pairs[r["conv_id"]] = (_items(r), _text_movies(text_by_id[r["conv_id"]]))
    droppable = frozenset(year_less or ())
    alignment = align_items(list(pairs.values()), droppable=droppable)
    mapping = alignment.mapping
    total = covered = 0
    for rs in records.values():
        for r in rs:
            for t in r["turns"]:
                for m in t["mentions"]:
                    if m["kind"] == "item":
                        m["redial_id"] = mapping.get(m["id"])
                        total += 1
                        covered += m["redial_id"] is not None
                t["movie_ids"] = _distinct(
                    [m["redial_id"] for m in t["mentions"] if m["kind"] == "item" and m["redial_id"] is not None]
                )
                t["entity_ids"] = _distinct([m["id"] for m in t["mentions"] if m["kind"] != "item"])
            for s in r["movie_sent"]:
                s["redial_id"] = mapping.get(s["item"])
    all_items = {
        m["id"] for rs in records.values() for r in rs for t in r["turns"] for m in t["mentions"] if m["kind"] == "item"
    }
    targets = Counter(mapping.values())
    stats = {
        "counts": {s: len(records[s]) for s in SPLITS},
        "with_text": {s: sum(r["text_split"] is not None for r in records[s]) for s in SPLITS},
        "alignment": {
            "items_total": len(all_items),
            "items_aligned": len(mapping),
            "items_conflicting": alignment.stats["conflicting"],
            "redial_ids_with_several_items": sum(1 for v in targets.values() if v > 1),
            "mentions_total": total,
            "mentions_aligned": covered,
            "mention_coverage": round(covered / total, 4) if total else 0.0,
            "shared_conversations": len(pairs),
            "split_half": split_half_agreement(pairs, droppable),
        },
    }
    sources = {str(p): sha256_file(p) for p in files.values()}
    return StructuredResult(records, alignment, stats, sources)


# ----------------------------------------------------------------------------------------------- library
def load_structured(path: str | Path) -> list[dict]:
    """Load ``data/redial/structured_<split>.jsonl``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `python -m data_scripts.prepare redial --out {path.parent}`")
    return read_jsonl(path)


def training_rows(rows: list[dict], include_official_valid: bool = True) -> list[dict]:
    """Structured rows safe for training.

    Drops the official test split and every conversation that is ``valid`` or ``test`` in the canonical
    text splits; with ``include_official_valid=False`` also the structured (official) valid file.
    """
    keep = {"train", "valid"} if include_official_valid else {"train"}
    return [r for r in rows if r["split"] in keep and r.get("text_split") not in ("valid", "test")]
