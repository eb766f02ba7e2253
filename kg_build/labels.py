"""Dialog-act labels for every recommender turn of ReDial (CR-Walker Table 1 and Appendix C).

``python -m kg_build labels --data data/redial --kg data/kg --out data/labels`` reads the canonical
dialogues ``data/redial/{train,valid,test}.jsonl`` and the KG ``data/kg`` and writes:

``data/labels/{split}.jsonl``
    One row per **recommender** turn, in dialogue order::

        {"conv_id": "20001", "split": "test", "turn_idx": 3,
         "intent": "recommend",                      # "recommend" | "query" | "chat"
         "act": {"intent": "recommend", "nodes": [{"entity": 12, "name": "Action", "children": [...]}]},
         "act_text": "[ Recommend ( Action ( Aliens (1986) ) ) ]",
         "turn_movies": [7],            # KG ids of movies the recommender surely mentions in this turn, in order
                                        # (@<movieId>, or a title listed in the questionnaire / typed with its year)
         "turn_entities": [7, 12],      # every KG id linked in this turn, in order of first mention
         "context_entities": [4, 9],    # ids mentioned in turns < turn_idx by either speaker (first mention)
         "context_entities_seeker": [4],  # ... only by the seeker
         "negated_entities": [13],      # context entities the seeker rejected (latest seeker mention negated)
         "recommended_movies": [7]}     # the turn_movies it recommends (rule 1 below); [] unless recommend

    ``turn_idx`` indexes the dialogue's (merged) ``turns`` list. ``act`` is
    :meth:`kg_build.acts.DialogAct.to_json` and ``act_text`` its :meth:`~kg_build.acts.DialogAct.linearize`;
    node names are :func:`kg_build.acts.display_name` of the KG names, so
    ``DialogAct.parse(act_text, name_resolver(kg))`` gives back ``act``.

``data/labels/stats.json`` (and ``results/labels_stats.json`` with provenance)
    Per split: rows, intent distribution, mean tree width/depth, share of recommend turns whose
    recommended movies got a hop-1 parent, timings (see :func:`split_stats`).

Entities of a turn come from the entity linker (``EntityLinker.link_many`` on ``text_raw``, where
``@<movieId>`` resolves exactly) plus the turn's ``movie_ids``. The act of a recommender turn
follows CR-Walker's reasoning rules (Table 1); "mentioned" means linked in an earlier turn (for
recommend also in the turn itself):

========== ======================================================= ==============================
intent     hop-1                                                   hop-2 (children, KG-adjacent)
========== ======================================================= ==============================
recommend  mentioned attributes + attributes of mentioned items    the recommended movies
query      generic classes (``Genre``, ``Actor``, ...)             attributes of that class named
                                                                   in the question
chat       mentioned entities                                      entities of the turn
========== ======================================================= ==============================

Intent (first rule that fires, see :func:`recommended_movies` and :meth:`ActBuilder.build_query`):

1. **recommend** if the recommender mentions a movie it suggests: a sure movie mention of the turn
   (``@<movieId>``, or a linked title that the dialogue's questionnaire lists or that is followed by
   its year) that the seeker has not mentioned in an earlier turn and that the ReDial questionnaire
   does not mark as not-suggested (every available answer ``suggested == 0``).
2. **query** if a sentence is a preference question (:mod:`kg_build.intent` regular expressions) and
   it names a generic class (a class cue such as "genre"/"actor", or the class of an attribute
   linked in that sentence, or -- for a class-less "what movies do you like?" --
   ``default_query_class``).
3. **chat** otherwise.

Trees (:meth:`ActBuilder.build_recommend`, :meth:`~ActBuilder.build_query`,
:meth:`~ActBuilder.build_chat`) keep at most ``max_hop1``
hop-1 nodes (CR-Walker selects at most m=5): candidates are ranked (rules in each builder's
docstring) and the longest ranked prefix is kept such that prefix + uncovered children fit in
``max_hop1`` (:func:`select_hop1`). A child (recommended movie / new chat entity) with no kept
KG-adjacent parent becomes a **childless hop-1 leaf** after the parents, so the act still names it
(if the children alone exceed ``max_hop1``, only the first ``max_hop1`` are kept: 3 train turns).

Linking dominates the run time; linked texts are cached in ``cache/labels/links.jsonl`` (dropped
automatically when the KG or the linker's code/options change, :func:`linker_fingerprint`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np

from data_scripts.utils.config import field, parse_config, to_dict
from data_scripts.utils.io import DataFormatError, write_json, write_jsonl
from kg_build.acts import ActNode, DialogAct, display_name, name_resolver
from kg_build.intent import Sentence, analyse
from kg_build.schema import ATTRIBUTE_TYPES, KnowledgeGraph

ROLES = ("seeker", "recommender")
MOVIE_MENTION_ID = re.compile(r"@(\d+)")
_YEAR_AFTER = re.compile(r"\s*[(\[]?\s*(?:18|19|20)\d\d\b")  # "Mean Girls (2004)": year right after the span
_YEAR_END = re.compile(r"(?:18|19|20)\d\d\s*[)\]]?$")  # ... or inside the span
#: Preference questions without a class cue fall back to ``default_query_class`` only if they ask
#: about movies in general ("what movies do you like?", "what are you in the mood to watch?").
_GENERAL_MOVIE_WORDS = (
    "movie", "movies", "film", "films", "flick", "flicks", "something", "anything", "watch", "find",
    "recommend", "recommendation", "recommendations", "suggest", "suggestion", "suggestions",
)  # fmt: skip


@dataclasses.dataclass
class LabelsConfig:
    """Dialog-act labels for every ReDial split."""

    data: str = field("data/redial", "Folder with canonical {split}.jsonl dialogues.")
    kg: str = field("data/kg", "KG folder (entities.jsonl, kg.safetensors, manifest.json).")
    out: str = field("data/labels", "Output folder for {split}.jsonl and stats.json.")
    splits: list[str] = field(["train", "valid", "test"], "Splits to label.")
    max_hop1: int = field(5, "Maximum hop-1 nodes per act (CR-Walker's m).")
    default_query_class: str = field("Genre", "Class asked by a preference question without a class cue.")
    link_batch: int = field(2048, "Texts per EntityLinker.link_many call.")
    link_cache: str = field(
        "cache/labels/links.jsonl", "Cache of linked texts, reused while the linker is unchanged ('' = off)."
    )
    limit: int = field(0, "Label only the first N dialogues per split (0 = all; for debugging).")
    results: str = field("results/labels_stats.json", "Results JSON with provenance ('' to skip).")


class Linker(Protocol):
    """What the labeller needs from :class:`kg_build.linker.EntityLinker`."""

    def link_many(self, texts: list[str]) -> list[list[Any]]:  # spans with .start .end .entity .negated
        ...


# ---------------------------------------------------------------------------------------------- input


def load_dialogues(path: str | Path, limit: int = 0) -> list[dict]:
    """Read and validate canonical dialogues (see :mod:`data_scripts.redial`).

    Raises:
        DataFormatError: naming file and line of a malformed dialogue.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found; run `python -m data_scripts.prepare redial` first")
    out = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataFormatError(path, lineno, f"invalid JSON ({exc.msg})") from exc
            if not isinstance(d, dict) or "conv_id" not in d or not isinstance(d.get("turns"), list):
                raise DataFormatError(path, lineno, "expected a dialogue object with 'conv_id' and a 'turns' list")
            for i, t in enumerate(d["turns"]):
                if not isinstance(t, dict) or t.get("role") not in ROLES:
                    raise DataFormatError(path, lineno, f"turn {i}: 'role' must be one of {ROLES}")
                if not isinstance(t.get("text_raw", t.get("text")), str):
                    raise DataFormatError(path, lineno, f"turn {i}: missing 'text_raw'/'text' string")
                if not isinstance(t.get("movie_ids", []), list):
                    raise DataFormatError(path, lineno, f"turn {i}: 'movie_ids' must be a list")
            out.append(d)
            if limit and len(out) >= limit:
                break
    return out


def turn_text(turn: dict) -> str:
    """The text given to the linker: ``text_raw`` (``@<movieId>`` resolve exactly), else ``text``."""
    return turn.get("text_raw") if isinstance(turn.get("text_raw"), str) else turn.get("text", "")


class CachedSpan(NamedTuple):
    """A linked span read back from the link cache (same fields as ``kg_build.linker.LinkedSpan``)."""

    start: int
    end: int
    text: str
    entity: int
    score: float
    source: str
    negated: bool


def linker_fingerprint(linker: Any, kg_dir: str | Path) -> str:
    """SHA-256 over the KG manifest, the linker's options, its data files (popularity table, span
    classifier weights) and the source of the linker's module and of every project module it uses, so
    the link cache is dropped whenever any of them changes."""
    import inspect
    import types

    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    manifest = Path(kg_dir) / "manifest.json"
    h.update(manifest.read_bytes() if manifest.exists() else b"")
    h.update(repr(getattr(linker, "options", None)).encode())
    mod = sys.modules.get(type(linker).__module__)
    files: set[Path] = set()
    if mod is not None:
        for obj in [mod, *vars(mod).values()]:
            src_mod = obj if isinstance(obj, types.ModuleType) else sys.modules.get(getattr(obj, "__module__", ""))
            try:
                f = inspect.getsourcefile(src_mod) if src_mod is not None else None
            except TypeError:
                f = None
            if f and Path(f).resolve().is_relative_to(root):
                files.add(Path(f).resolve())
    opts = getattr(linker, "options", None)
    data_files = [Path(__file__).parent / "resources" / "linker_span_classifier.json"]
    for name in ("popularity_path", "span_classifier"):
        value = getattr(opts, name, "")
        if isinstance(value, str) and value and value != "default":
            data_files.append(Path(value))
    for f in sorted(files) + data_files:
        if f.is_file():
            h.update(f.read_bytes())
    return h.hexdigest()


class LinkCache:
    """``text -> spans`` of one linker version, kept in a JSON-lines file (default ``cache/labels/links.jsonl``).

    Line 1 is ``{"fingerprint": ...}`` (:func:`linker_fingerprint`), then one
    ``{"text": str, "spans": [[start, end, text, entity, score, source, negated], ...]}`` per text.
    A cache written by another linker version (fingerprint mismatch) is ignored and rewritten.
    """

    def __init__(self, path: str | Path, fingerprint: str):
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.data: dict[str, list[CachedSpan]] = {}
        self.dirty = False
        if self.path.exists():
            with open(self.path, encoding="utf-8") as fh:
                head = fh.readline()
                try:
                    ok = json.loads(head).get("fingerprint") == fingerprint
                except (json.JSONDecodeError, AttributeError):
                    ok = False
                if ok:
                    for line in fh:
                        d = json.loads(line)
                        self.data[d["text"]] = [CachedSpan(*x) for x in d["spans"]]

    def __contains__(self, text: str) -> bool:
        return text in self.data

    def get(self, text: str) -> list[CachedSpan]:
        return self.data[text]

    def put(self, text: str, spans: Iterable[Any]) -> None:
        self.data[text] = [
            CachedSpan(
                int(x.start), int(x.end), str(x.text), int(x.entity), float(x.score), str(x.source), bool(x.negated)
            )
            for x in spans
        ]
        self.dirty = True

    def save(self) -> None:
        if self.dirty:
            rows = [{"fingerprint": self.fingerprint}]
            rows += [{"text": t, "spans": [list(x) for x in sp]} for t, sp in self.data.items()]
            write_jsonl(self.path, rows)
            self.dirty = False


def link_texts(
    linker: Linker, texts: Sequence[str], batch: int = 2048, desc: str = "link", cache: LinkCache | None = None
) -> dict[str, list]:
    """Link each distinct text once (``link_many`` in batches, skipping cached texts); returns ``text -> spans``."""
    from tqdm import tqdm

    uniq = list(dict.fromkeys(texts))
    out: dict[str, list] = {t: cache.get(t) for t in uniq if cache is not None and t in cache}
    todo = [t for t in uniq if t not in out]
    with tqdm(total=len(todo), desc=desc, unit="text", disable=None, file=sys.stderr) as bar:
        for i in range(0, len(todo), batch):
            chunk = todo[i : i + batch]
            res = linker.link_many(chunk)
            if len(res) != len(chunk):
                raise RuntimeError(f"linker returned {len(res)} results for {len(chunk)} texts")
            for t, spans in zip(chunk, res, strict=True):
                out[t] = spans
                if cache is not None:
                    cache.put(t, spans)
            bar.update(len(chunk))
    return out


@dataclasses.dataclass
class TurnEntities:
    """Entities of one turn: ordered distinct ids, the movies among them, and negation flags."""

    entities: list[int]
    movies: list[int]
    exact_movies: list[int]  # sure movie mentions (see :func:`turn_entities`): recommendation candidates
    negated: list[tuple[int, bool]]  # (entity, negated) per mention, in text order
    spans: list[tuple[int, int, int]]  # (start, end, entity) per linked span
    unmapped_movies: int = 0


def turn_entities(
    kg: KnowledgeGraph, turn: dict, spans: Iterable[Any], dialogue_movies: Iterable[int] = ()
) -> TurnEntities:
    """Merge the linker's spans with the turn's exact ``movie_ids`` (appended if the linker missed them).

    Args:
        kg: The KG.
        turn: A canonical turn.
        spans: The linker's spans on :func:`turn_text`.
        dialogue_movies: ReDial ids of the movies the dialogue is known to mention (the questionnaire keys).

    A movie is *sure* (``exact_movies``, the only recommendation candidates) if it is given as
    ``@<movieId>``, or linked in free text and either one of ``dialogue_movies`` or typed with its year
    ("Mean Girls (2004)"). Other linked movies ("Yes", "The Actors") stay in ``movies``/``entities``.
    """
    text = turn_text(turn)
    known = {int(m) for m in dialogue_movies}
    sure: set[int] = set()
    ents: dict[int, None] = {}
    mentions: list[tuple[int, bool]] = []
    span_list: list[tuple[int, int, int]] = []
    n = len(kg)
    for s in sorted(spans, key=lambda s: (s.start, s.end)):
        e = int(s.entity)
        if not 0 <= e < n:
            continue
        ents.setdefault(e, None)
        mentions.append((e, bool(getattr(s, "negated", False))))
        span_list.append((int(s.start), int(s.end), e))
        ent = kg.entities[e]
        if ent.type == "movie" and (
            ent.redial_id in known
            or _YEAR_AFTER.match(text, int(s.end))
            or _YEAR_END.search(text, int(s.start), int(s.end))
        ):
            sure.add(e)
    unmapped = 0
    redial_ids = [int(m) for m in turn.get("movie_ids", [])]
    redial_ids += [int(m.group(1)) for m in MOVIE_MENTION_ID.finditer(text)]
    for mid in dict.fromkeys(redial_ids):
        e = kg.by_redial_id.get(mid)
        if e is None:
            unmapped += 1
            continue
        sure.add(e)
        if e not in ents:
            ents[e] = None
            mentions.append((e, False))
    order = list(ents)
    movies = [e for e in order if kg.entities[e].type == "movie"]
    return TurnEntities(order, movies, [e for e in movies if e in sure], mentions, span_list, unmapped)


# ---------------------------------------------------------------------------------------------- trees


def select_hop1(
    ranked: Sequence[int], covers: dict[int, Sequence[int]], children: Sequence[int], max_hop1: int
) -> tuple[list[int], list[int]]:
    """Choose hop-1 parents: the longest prefix of ``ranked`` that fits with the uncovered children.

    Args:
        ranked: Candidate hop-1 entities, best first.
        covers: ``parent -> children it is KG-adjacent to``.
        children: All children that the act must name (e.g. the recommended movies), in order.
        max_hop1: Width bound m; ``len(parents) + len(orphans) <= max_hop1`` unless the children
            alone exceed it, in which case the first ``max_hop1`` orphans are kept.

    Returns:
        ``(parents, orphans)``; orphans are children that no kept parent covers (they become
        childless hop-1 leaves).
    """
    for k in range(min(len(ranked), max_hop1), -1, -1):
        kept = list(ranked[:k])
        covered = {c for p in kept for c in covers.get(p, ())}
        orphans = [c for c in children if c not in covered]
        if k + len(orphans) <= max_hop1:
            return kept, orphans
    return [], list(children)[:max_hop1]


class ActBuilder:
    """Builds the reasoning tree of a recommender turn on a KG (CR-Walker Table 1)."""

    def __init__(self, kg: KnowledgeGraph, max_hop1: int = 5, default_query_class: str = "Genre"):
        if max_hop1 < 1:
            raise ValueError(f"max_hop1 must be >= 1, got {max_hop1}")
        self.kg = kg
        self.max_hop1 = max_hop1
        self.default_query_class = default_query_class
        self.degree = np.bincount(kg.edge_index[0], minlength=len(kg)) if kg.edge_index.size else np.zeros(len(kg))
        self.types = [e.type for e in kg.entities]
        self._nbrs: dict[int, frozenset[int]] = {}

    # ------------------------------------------------------------------ helpers
    def neighbors(self, e: int) -> frozenset[int]:
        got = self._nbrs.get(e)
        if got is None:
            got = self._nbrs[e] = frozenset(self.kg.neighbors(e))
        return got

    def node(self, e: int, children: Sequence[int] = ()) -> ActNode:
        return ActNode(e, display_name(self.kg.entities[e].name), tuple(self.node(c) for c in children))

    def is_attribute(self, e: int) -> bool:
        return self.types[e] in ATTRIBUTE_TYPES

    def _tree(
        self, parents: list[int], covers: dict[int, Sequence[int]], children: Sequence[int], orphans: list[int]
    ) -> tuple[ActNode, ...]:
        nodes = []
        for p in parents:
            mine = set(covers.get(p, ()))
            nodes.append(self.node(p, [c for c in children if c in mine]))
        nodes.extend(self.node(o) for o in orphans)
        return tuple(nodes)

    # ------------------------------------------------------------------ recommend
    def build_recommend(
        self,
        rec_movies: Sequence[int],
        turn: Sequence[int],
        context: Sequence[int],
        context_seeker: Sequence[int],
        negated: Iterable[int] = (),
    ) -> DialogAct:
        """Recommend: hop-1 = mentioned attributes + attributes of mentioned items, hop-2 = candidates.

        Hop-1 candidates are attributes (entity types in :data:`ATTRIBUTE_TYPES`) that are KG-adjacent
        to at least one recommended movie and are either *mentioned* (linked in this turn or in the
        context) or *attributes of a mentioned item* (adjacent to a movie linked in this turn or the
        context that is not itself recommended here). Attributes the seeker rejected are skipped.
        Ranking: tier (0 named in this turn, 1 named by the seeker earlier, 2 named by the
        recommender earlier, 3 attribute of an item the seeker mentioned, 4 attribute of an item only
        the recommender mentioned), then more recommended movies covered, then (tiers 3-4) more
        mentioned items shared, then lower KG degree (more specific: a director before the genre
        "Drama"), then entity id. Children are the recommended movies each hop-1
        attribute is adjacent to; uncovered movies become childless hop-1 leaves (:func:`select_hop1`).
        """
        rec = list(dict.fromkeys(rec_movies))
        recset = set(rec)
        bad = set(negated)
        turn_set, seeker_set = set(turn), set(context_seeker)
        mentioned = list(dict.fromkeys([*context, *turn]))
        tier: dict[int, int] = {}
        for e in mentioned:
            if e in recset or e in bad or not self.is_attribute(e):
                continue
            tier[e] = 0 if e in turn_set else 1 if e in seeker_set else 2
        shared: Counter[int] = Counter()
        for item in mentioned:
            if item in recset or self.types[item] != "movie":
                continue
            item_tier = 3 if item in seeker_set else 4
            for a in self.neighbors(item):
                if a not in bad and self.is_attribute(a):
                    shared[a] += 1
                    tier[a] = min(tier.get(a, item_tier), item_tier)
        covers = {a: [m for m in rec if m in self.neighbors(a)] for a in tier}
        cands = [a for a in tier if covers[a]]
        cands.sort(key=lambda a: (tier[a], -len(covers[a]), -shared[a], int(self.degree[a]), a))
        parents, orphans = select_hop1(cands, covers, rec, self.max_hop1)
        return DialogAct("recommend", self._tree(parents, covers, rec, orphans))

    # ------------------------------------------------------------------ query
    def build_query(self, sentences: Sequence[Sentence], spans: Sequence[tuple[int, int, int]]) -> DialogAct | None:
        """Query: hop-1 = generic classes asked about, hop-2 = attributes of that class in the question.

        Only preference-question sentences count (:meth:`kg_build.intent.Sentence.is_preference_question`).
        Classes, in text order: class cues of the sentence (:data:`kg_build.intent.CLASS_CUES`) and the
        classes of attributes linked in it (a person that is both Actor and Director goes under a cued
        class if there is one, else under its first class). Without any class, a question about movies
        in general asks about ``default_query_class``. Each attribute becomes the child of its class
        (``is_a``-adjacent on the KG). Classes not in the KG are dropped; at most ``max_hop1`` classes.

        Returns:
            The act, or ``None`` when no sentence is a preference question with a class.
        """
        class_ids = self.kg.class_ids
        found: list[tuple[int, int]] = []  # (position, class id)
        children: dict[int, list[int]] = {}
        for s in sentences:
            attrs = [(st, e) for st, _, e in spans if s.contains(st, st + 1) and self.is_attribute(e)]
            if not s.is_preference_question(has_attribute=bool(attrs)):
                continue
            cued = [(pos, class_ids[c]) for pos, c in s.class_cues if c in class_ids]
            cued += [(st, e) for st, _, e in spans if s.contains(st, st + 1) and self.types[e] == "class"]
            cued_ids = {c for _, c in cued}
            found.extend(cued)
            for pos, a in attrs:
                mine = [class_ids[c] for c in self.kg.entities[a].classes if c in class_ids]
                mine = [c for c in mine if c in self.neighbors(a)]  # the is_a edge must exist
                if not mine:
                    continue
                cls = next((c for c in mine if c in cued_ids), mine[0])
                found.append((pos, cls))
                children.setdefault(cls, [])
                if a not in children[cls]:
                    children[cls].append(a)
            if not cued and not attrs and self.default_query_class in class_ids:
                words = set(s.text.lower().replace("?", " ").split())
                if words & set(_GENERAL_MOVIE_WORDS):
                    found.append((s.start, class_ids[self.default_query_class]))
        if not found:
            return None
        classes = list(dict.fromkeys(c for _, c in sorted(found)))[: self.max_hop1]
        return DialogAct("query", tuple(self.node(c, children.get(c, ())) for c in classes))

    # ------------------------------------------------------------------ chat
    def build_chat(self, turn: Sequence[int], context: Sequence[int], context_seeker: Sequence[int]) -> DialogAct:
        """Chat: hop-1 = mentioned entities, hop-2 = entities of the turn adjacent to them.

        Let T be the turn's non-class entities and C the context's. Hop-1 candidates: (tier 0) entities
        of T that were mentioned before (T ∩ C), in text order; (tier 1) context entities KG-adjacent
        to a new entity of T (T \\ C), ranked by more new entities covered, seeker-mentioned first,
        lower KG degree, entity id. Children are the new entities adjacent to each parent; new entities
        with no kept parent become childless hop-1 leaves (:func:`select_hop1`). A turn without linked
        entities gives ``[ Chat ]``.
        """
        t_ents = [e for e in dict.fromkeys(turn) if self.types[e] != "class"]
        c_ents = [e for e in dict.fromkeys(context) if self.types[e] != "class"]
        cset, seeker_set = set(c_ents), set(context_seeker)
        new = [e for e in t_ents if e not in cset]
        again = [e for e in t_ents if e in cset]
        covers = {p: [n for n in new if n in self.neighbors(p)] for p in [*again, *c_ents]}
        again_set = set(again)
        parents = [c for c in c_ents if c not in again_set and covers[c]]
        parents.sort(key=lambda c: (-len(covers[c]), c not in seeker_set, int(self.degree[c]), c))
        kept, orphans = select_hop1([*again, *parents], covers, new, self.max_hop1)
        return DialogAct("chat", self._tree(kept, covers, new, orphans))


# ---------------------------------------------------------------------------------------------- dialogues


def _suggested_flags(dialogue: dict, redial_id: int | None) -> list[int]:
    q = (dialogue.get("questionnaire") or {}).get(str(redial_id)) if redial_id is not None else None
    if not isinstance(q, dict):
        return []
    return [
        int(a["suggested"])
        for who in ("seeker", "recommender")
        if isinstance(a := q.get(who), dict) and a.get("suggested") is not None
    ]


def recommended_movies(kg: KnowledgeGraph, dialogue: dict, movies: Sequence[int], seeker_movies: set[int]) -> list[int]:
    """Movies of a recommender turn that it recommends (rule 1 of the module docstring).

    Only sure mentions are candidates (``TurnEntities.exact_movies``: ``@<movieId>``, or a title in
    free text that the dialogue's questionnaire lists or that is typed with its year). Other free-text
    title matches ("Yes", "The Actors") are too often ordinary words; they stay turn entities. A movie
    counts unless the seeker mentioned it in an earlier turn, or every available
    questionnaire answer for it says ``suggested == 0``. Repeating an earlier recommendation counts.
    """
    out = []
    for m in movies:
        if m in seeker_movies:
            continue
        flags = _suggested_flags(dialogue, kg.entities[m].redial_id)
        if flags and not any(flags):
            continue
        out.append(m)
    return out


def label_dialogue(dialogue: dict, links: Sequence[TurnEntities], builder: ActBuilder, split: str) -> list[dict]:
    """Rows (module docstring schema) for the recommender turns of one dialogue.

    Args:
        dialogue: A canonical dialogue.
        links: The :class:`TurnEntities` of each of its turns.
        builder: The act builder on the KG.
        split: Split name written to each row.
    """
    kg = builder.kg
    context: dict[int, None] = {}
    context_seeker: dict[int, None] = {}
    negated: dict[int, None] = {}
    seeker_movies: set[int] = set()
    rows = []
    for idx, (turn, te) in enumerate(zip(dialogue["turns"], links, strict=True)):
        if turn["role"] == "recommender":
            text = turn_text(turn)
            rec = recommended_movies(kg, dialogue, te.exact_movies, seeker_movies)
            ctx, ctx_s, neg = list(context), list(context_seeker), list(negated)
            act = None
            if rec:
                act = builder.build_recommend(rec, te.entities, ctx, ctx_s, neg)
            if act is None:
                act = builder.build_query(analyse(text), te.spans)
            if act is None:
                act = builder.build_chat(te.entities, ctx, ctx_s)
            rows.append(
                {
                    "conv_id": str(dialogue["conv_id"]),
                    "split": split,
                    "turn_idx": idx,
                    "intent": act.intent,
                    "act": act.to_json(),
                    "act_text": act.linearize(),
                    "turn_movies": te.exact_movies,
                    "turn_entities": te.entities,
                    "context_entities": ctx,
                    "context_entities_seeker": ctx_s,
                    "negated_entities": neg,
                    "recommended_movies": rec,
                }
            )
        for e in te.entities:
            context.setdefault(e, None)
        if turn["role"] == "seeker":
            for e in te.entities:
                context_seeker.setdefault(e, None)
            seeker_movies.update(te.movies)
            for e, neg_flag in te.negated:  # the latest seeker mention decides
                if neg_flag:
                    negated.setdefault(e, None)
                else:
                    negated.pop(e, None)
    return rows


def label_split(
    dialogues: Sequence[dict],
    kg: KnowledgeGraph,
    linker: Linker,
    builder: ActBuilder,
    split: str,
    link_batch: int = 2048,
    cache: LinkCache | None = None,
) -> tuple[list[dict], dict]:
    """Link all turns of a split (batched) and label its recommender turns.

    Returns:
        ``(rows, timing)`` with ``timing = {"link_s", "label_s", "texts", "unique_texts", "cached_texts",
        "unmapped_movies"}`` (``cached_texts``: distinct texts found in ``cache``, not linked again).
    """
    texts = [turn_text(t) for d in dialogues for t in d["turns"]]
    t0 = time.perf_counter()
    cached = sum(1 for t in set(texts) if cache is not None and t in cache)
    linked = link_texts(linker, texts, link_batch, desc=f"link {split}", cache=cache)
    t1 = time.perf_counter()
    rows: list[dict] = []
    unmapped = 0
    for d in dialogues:
        known = [int(k) for k in (d.get("questionnaire") or {}) if str(k).isdigit()]
        links = [turn_entities(kg, t, linked[turn_text(t)], known) for t in d["turns"]]
        unmapped += sum(te.unmapped_movies for te in links)
        rows.extend(label_dialogue(d, links, builder, split))
    t2 = time.perf_counter()
    timing = {
        "link_s": round(t1 - t0, 2),
        "label_s": round(t2 - t1, 2),
        "texts": len(texts),
        "unique_texts": len(set(texts)),
        "cached_texts": cached,
        "unmapped_movies": unmapped,
    }
    return rows, timing


# ---------------------------------------------------------------------------------------------- stats


def split_stats(rows: Sequence[dict]) -> dict:
    """Label statistics of one split.

    * ``rows``; ``intent_counts`` / ``intent_share`` per intent;
    * ``mean_width`` (hop-1 nodes), ``mean_depth`` (0/1/2), ``mean_hop2`` (distinct hop-2 ids), overall
      and per intent in ``by_intent``;
    * ``rec_with_parent_share``: recommend rows where at least one recommended movie has a hop-1
      attribute parent; ``rec_all_parent_share``: ... where every recommended movie named in the act
      has one; ``rec_movie_parent_share``: over all recommended movies named in acts;
    * ``query_classes``: hop-1 class name counts of query acts; ``mean_turn_entities``,
      ``mean_context_entities``.
    """
    n = len(rows)
    acts = [DialogAct.from_json(r["act"]) for r in rows]
    counts = Counter(a.intent for a in acts)

    def means(sel: list[DialogAct]) -> dict:
        k = max(len(sel), 1)
        return {
            "n": len(sel),
            "mean_width": sum(a.width for a in sel) / k,
            "mean_depth": sum(a.depth for a in sel) / k,
            "mean_hop2": sum(len(a.hop2) for a in sel) / k,
        }

    rec_rows = [(a, r) for a, r in zip(acts, rows, strict=True) if a.intent == "recommend"]
    any_parent = all_parent = movies_total = movies_parent = 0
    for a, r in rec_rows:
        rec = set(r.get("recommended_movies") or r["turn_movies"])
        with_parent = {c.entity for nd in a.nodes for c in nd.children if c.entity in rec}
        named = {nd.entity for nd in a.nodes if not nd.children and nd.entity in rec} | with_parent
        any_parent += bool(with_parent)
        all_parent += bool(named) and with_parent == named
        movies_total += len(named)
        movies_parent += len(with_parent)
    q_classes = Counter(nd.name for a in acts if a.intent == "query" for nd in a.nodes)
    out = {
        "rows": n,
        "intent_counts": {i: counts.get(i, 0) for i in ("recommend", "query", "chat")},
        "intent_share": {i: counts.get(i, 0) / max(n, 1) for i in ("recommend", "query", "chat")},
        **{k: v for k, v in means(acts).items() if k != "n"},
        "by_intent": {i: means([a for a in acts if a.intent == i]) for i in ("recommend", "query", "chat")},
        "rec_with_parent_share": any_parent / max(len(rec_rows), 1),
        "rec_all_parent_share": all_parent / max(len(rec_rows), 1),
        "rec_movie_parent_share": movies_parent / max(movies_total, 1),
        "query_classes": dict(q_classes.most_common()),
        "mean_turn_entities": sum(len(r["turn_entities"]) for r in rows) / max(n, 1),
        "mean_context_entities": sum(len(r["context_entities"]) for r in rows) / max(n, 1),
    }
    return out


def round_trip_share(rows: Sequence[dict], resolve: Callable[[str], int]) -> float:
    """Share of rows whose ``act_text`` parses back (names resolved on the KG) to exactly ``act``.

    Below 1 only when an act names an entity whose display name is shared by another entity
    (duplicate ReDial movies, a person and a company with the same name): the resolver then
    returns the lowest id.
    """
    ok = sum(DialogAct.parse(r["act_text"], resolve) == DialogAct.from_json(r["act"]) for r in rows)
    return ok / max(len(rows), 1)


def stats_table(stats: dict[str, dict]) -> str:
    """A Markdown table of the headline numbers per split."""
    from data_scripts.utils.results import format_table

    rows = []
    for split, s in stats.items():
        rows.append(
            {
                "split": split,
                "rows": s["rows"],
                "recommend": s["intent_share"]["recommend"],
                "query": s["intent_share"]["query"],
                "chat": s["intent_share"]["chat"],
                "width": s["mean_width"],
                "depth": s["mean_depth"],
                "hop2": s["mean_hop2"],
                "rec w/ parent": s["rec_with_parent_share"],
                "rec movies w/ parent": s["rec_movie_parent_share"],
                "round trip": s["round_trip_exact_share"],
                "link s": s["timing"]["link_s"],
                "label s": s["timing"]["label_s"],
            }
        )
    cols = [
        "split",
        "rows",
        "recommend",
        "query",
        "chat",
        "width",
        "depth",
        "hop2",
        "rec w/ parent",
        "rec movies w/ parent",
        "round trip",
        "link s",
        "label s",
    ]
    return format_table(rows, cols)


# ---------------------------------------------------------------------------------------------- CLI


def make_linker(kg: KnowledgeGraph) -> Linker:
    """The project's :class:`kg_build.linker.EntityLinker` on ``kg``."""
    try:
        from kg_build.linker import EntityLinker
    except ImportError as exc:  # pragma: no cover - depends on the linker module being present
        raise RuntimeError(f"kg_build.linker.EntityLinker is needed for labels: {exc}") from exc
    return EntityLinker.from_kg(kg)


KG_HASH_KEY = "kg_entities_sha256"


def kg_entities_sha256(kg_dir: str | Path) -> str:
    """SHA-256 of ``entities.jsonl``: entity ids in labels are only valid for this exact KG."""
    from data_scripts.utils.io import sha256_file

    return sha256_file(Path(kg_dir) / "entities.jsonl")


def check_labels_match_kg(labels_dir: str | Path, kg_dir: str | Path) -> None:
    """Raise a clear error when ``labels_dir`` was built from another KG than ``kg_dir``.

    Label folders without ``stats.json`` or without the recorded hash (hand-made fixtures, older
    builds) cannot be checked and pass.

    Raises:
        ValueError: naming both folders and the command that rebuilds the labels.
    """
    from data_scripts.utils.io import read_json

    stats = Path(labels_dir) / "stats.json"
    if not stats.exists():
        return
    recorded = read_json(stats).get("timing", {}).get(KG_HASH_KEY)
    if recorded is not None and recorded != kg_entities_sha256(kg_dir):
        raise ValueError(
            f"{labels_dir} was built from a different KG than {kg_dir} (entity ids would not match); "
            f"rebuild them: python -m kg_build labels --kg {kg_dir} --out {labels_dir}"
        )


def run(cfg: LabelsConfig, linker_factory: Callable[[KnowledgeGraph], Linker] = make_linker) -> dict[str, dict]:
    """Label every split of ``cfg``; writes ``{out}/{split}.jsonl``, ``{out}/stats.json`` and ``cfg.results``."""
    kg = KnowledgeGraph.load(cfg.kg)
    print(kg.describe(), file=sys.stderr)
    t0 = time.perf_counter()
    linker = linker_factory(kg)
    init_s = time.perf_counter() - t0
    builder = ActBuilder(kg, cfg.max_hop1, cfg.default_query_class)
    resolve = name_resolver(kg)
    fingerprint = linker_fingerprint(linker, cfg.kg)
    cache = LinkCache(cfg.link_cache, fingerprint) if cfg.link_cache else None
    out = Path(cfg.out)
    stats: dict[str, dict] = {}
    inputs: list[Path] = []
    for split in cfg.splits:
        path = Path(cfg.data) / f"{split}.jsonl"
        inputs.append(path)
        dialogues = load_dialogues(path, cfg.limit)
        rows, timing = label_split(dialogues, kg, linker, builder, split, cfg.link_batch, cache)
        if cache is not None:
            cache.save()
        write_jsonl(out / f"{split}.jsonl", rows)
        stats[split] = {
            **split_stats(rows),
            "round_trip_exact_share": round_trip_share(rows, resolve),
            "dialogues": len(dialogues),
            "timing": timing,
        }
    total = {"linker_init_s": round(init_s, 2), "total_s": round(time.perf_counter() - t0, 2)}
    total["linker_fingerprint"] = fingerprint
    total[KG_HASH_KEY] = kg_entities_sha256(cfg.kg)
    payload = {"splits": stats, "timing": total, "config": to_dict(cfg)}
    write_json(out / "stats.json", payload)
    print(stats_table(stats))
    print(f"linker init {total['linker_init_s']}s, total {total['total_s']}s")
    if cfg.results:
        from data_scripts.utils.results import write_results

        write_results(
            cfg.results,
            {"splits": stats, "timing": total},
            config=to_dict(cfg),
            data_files=[*inputs, Path(cfg.kg)],
        )
    return stats


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(LabelsConfig, argv)
    run(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
