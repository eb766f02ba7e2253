"""Movie placeholders: how the generator is kept from inventing or dropping movie names.

CR-Walker's GPT-2 writes movie titles itself, so it can name a movie that is not in the KG or not the
one the walker selected. We instead train on *delexicalised* replies:

1. **Act movie order.** :func:`act_movies` lists the distinct movie entities of the dialog act in
   preorder (hop-1 then their hop-2 children, left to right). Movie ``k`` (1-based) of that list is
   written ``[MOVIE_k]``.
2. **Training targets.** :func:`delexicalise` replaces every ``@<movieId>`` of the gold reply
   (``text_raw``) by ``[MOVIE_k]`` when the movie is the act's ``k``-th movie, otherwise by the unaligned
   placeholder ``[MOVIE]`` (movie not in the act, or not in the KG). The model therefore never learns to
   spell a title.
3. **Filling.** :func:`fill_placeholders` maps ``[MOVIE_k]`` back to the act's ``k``-th title (KG name,
   e.g. ``"The Terminator (1984)"``). ``[MOVIE]`` and out-of-range ``[MOVIE_k]`` take the next act movie
   not yet named, else :data:`FALLBACK` (``"that movie"``). With ``complete=True`` a recommend act whose
   movies were not all named gets ``" Have you seen X?"`` / ``"... X or Y?"`` appended, so every movie the
   walker selected is named.
4. **Stripping.** :func:`strip_unlisted_titles` removes titles the model still spelled out literally
   (``"Name (Year)"`` patterns found by :class:`TitleFinder`) that are not KG movies or are neither in the
   act nor in the user utterance, replacing them by :data:`FALLBACK`.
5. **Streaming.** :class:`PlaceholderStream` does step 3 on a stream of text chunks, holding back only a
   possibly unfinished ``[MOVIE...`` suffix.

Consistency is measured by :func:`crwalker.generation.metrics.movie_consistency` with
:meth:`TitleFinder.find`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence

from kg_build.acts import ActNode, DialogAct, display_name
from kg_build.schema import KnowledgeGraph

PLACEHOLDER_RE = re.compile(r"\[MOVIE(?:_(\d+))?\]")
MENTION_RE = re.compile(r"@(\d+)")
FALLBACK = "that movie"
_YEAR_RE = re.compile(r"\((\d{4})\)")
_YEAR_END_RE = re.compile(r"\(\d{4}\)\s*$")
_PARTIAL_TAIL = "[MOVIE_"


def placeholder(k: int | None) -> str:
    """``[MOVIE_k]`` (1-based) or the unaligned ``[MOVIE]`` when ``k`` is None."""
    return "[MOVIE]" if k is None else f"[MOVIE_{k}]"


def _preorder(nodes: Iterable[ActNode]) -> Iterator[ActNode]:
    for n in nodes:
        yield n
        yield from _preorder(n.children)


def act_movies(act: DialogAct, kg: KnowledgeGraph) -> list[int]:
    """Distinct movie entity ids of ``act`` in preorder.

    Nodes with unresolved ids (-1), or whose id names another entity in ``kg`` (labels made against a
    different KG build), are resolved by their name.
    """
    by_name = _movie_names(kg)
    out: dict[int, None] = {}
    for node in _preorder(act.nodes):
        eid = node.entity
        # ids can be stale (labels made with another KG build): trust the name when they disagree
        if not 0 <= eid < len(kg) or _norm_title(display_name(kg.entities[eid].name)) != _norm_title(node.name):
            eid = by_name.get(_norm_title(node.name), -1)
        if eid >= 0 and kg.entities[eid].type == "movie":
            out.setdefault(eid, None)
    return list(out)


def _movie_names(kg: KnowledgeGraph) -> dict[str, int]:
    cache = getattr(kg, "_gen_movie_names", None)
    if cache is None:
        cache = {}
        for e in kg.entities:
            if e.type == "movie":
                cache.setdefault(_norm_title(e.name), e.id)
                cache.setdefault(_norm_title(display_name(e.name)), e.id)
        kg._gen_movie_names = cache  # cached on the instance, like the KG's own cached_property lookups
    return cache


def _norm_title(name: str) -> str:
    return " ".join(name.lower().split())


def delexicalise(text_raw: str, movies: Sequence[int], kg: KnowledgeGraph) -> str:
    """Replace ``@<redial movieId>`` mentions by ``[MOVIE_k]`` (k = 1-based position in ``movies``) or ``[MOVIE]``.

    Args:
        text_raw: Reply with ReDial ``@<movieId>`` mentions.
        movies: The act's movie entity ids (:func:`act_movies`).
        kg: Maps ReDial ids to entity ids.
    """
    pos = {eid: k for k, eid in enumerate(movies, start=1)}

    def sub(m: re.Match) -> str:
        eid = kg.by_redial_id.get(int(m.group(1)))
        return placeholder(pos.get(eid)) if eid is not None else placeholder(None)

    return MENTION_RE.sub(sub, text_raw)


def lexicalise_mentions(text_raw: str, kg: KnowledgeGraph) -> str:
    """Render ``@<movieId>`` as the KG movie name (``[MOVIE]`` placeholder text if the id is unknown)."""

    def sub(m: re.Match) -> str:
        eid = kg.by_redial_id.get(int(m.group(1)))
        return kg.entities[eid].name if eid is not None else FALLBACK

    return MENTION_RE.sub(sub, text_raw)


class _Filler:
    """Stateful placeholder -> title mapping shared by batch and streaming filling."""

    def __init__(self, titles: Sequence[str]):
        self.titles = list(titles)
        self.used: set[int] = set()

    def __call__(self, m: re.Match) -> str:
        k = int(m.group(1)) - 1 if m.group(1) else -1
        if not 0 <= k < len(self.titles):
            k = next((i for i in range(len(self.titles)) if i not in self.used), -1)
        if k < 0:
            return FALLBACK
        self.used.add(k)
        return self.titles[k]

    def completion(self, intent: str) -> str:
        missing = [t for i, t in enumerate(self.titles) if i not in self.used]
        if intent != "recommend" or not missing:
            return ""
        self.used.update(range(len(self.titles)))
        listed = missing[0] if len(missing) == 1 else ", ".join(missing[:-1]) + " or " + missing[-1]
        return f" Have you seen {listed}?"


def fill_placeholders(text: str, titles: Sequence[str], intent: str = "chat", complete: bool = False) -> str:
    """Replace placeholders by act titles (see module docstring, step 3).

    Args:
        text: Generated reply with ``[MOVIE_k]`` / ``[MOVIE]``.
        titles: KG names of the act's movies in :func:`act_movies` order.
        intent: The act's intent (completion only applies to ``"recommend"``).
        complete: Append the recommend-act movies the reply did not name.
    """
    filler = _Filler(titles)
    out = PLACEHOLDER_RE.sub(filler, text)
    if complete:
        out = out.rstrip() + filler.completion(intent)
    return out


class PlaceholderStream:
    """Fill placeholders on a stream of text chunks (e.g. from ``TextIteratorStreamer``).

    Example:
        >>> s = PlaceholderStream(["Alien (1979)"], intent="recommend")
        >>> "".join([s.push("try [MOV"), s.push("IE_1] !"), s.finish()])
        'try Alien (1979) !'
    """

    def __init__(self, titles: Sequence[str], intent: str = "chat", complete: bool = False):
        self.filler = _Filler(titles)
        self.intent = intent
        self.complete = complete
        self.buf = ""

    def _split(self) -> tuple[str, str]:
        """Longest prefix of the buffer that cannot be part of an unfinished placeholder."""
        i = self.buf.rfind("[")
        if i < 0:
            return self.buf, ""
        tail = self.buf[i:]
        if "]" in tail:
            return self.buf, ""
        # keep the tail only while it can still grow into a placeholder
        if _PARTIAL_TAIL.startswith(tail) or (tail.startswith(_PARTIAL_TAIL) and tail[len(_PARTIAL_TAIL) :].isdigit()):
            return self.buf[:i], tail
        return self.buf, ""

    def push(self, chunk: str) -> str:
        """Add a chunk; return the text that is final so far (placeholders filled)."""
        self.buf += chunk
        ready, self.buf = self._split()
        return PLACEHOLDER_RE.sub(self.filler, ready)

    def finish(self) -> str:
        """Flush what is left (and the recommend completion when enabled)."""
        out = PLACEHOLDER_RE.sub(self.filler, self.buf)
        self.buf = ""
        if self.complete:
            out += self.filler.completion(self.intent)
        return out


class TitleFinder:
    """Finds movie titles written as ``"Name (Year)"`` in free text and looks them up in the KG.

    Every ``(YYYY)`` is a title end; the longest run of up to ``max_words`` preceding words whose
    lower-cased form plus the year is a KG movie name gives a KG title. Otherwise the title is taken to
    be the run of capitalised words just before the year (a non-KG, i.e. invented, title). KG movies
    whose name carries no year are found by verbatim (case-sensitive) match of the name.
    """

    def __init__(self, kg: KnowledgeGraph, max_words: int = 15):
        self.names = _movie_names(kg)
        self.kg = kg
        self.max_words = max_words
        # KG movies whose name has no "(YYYY)" are matched verbatim (case-sensitive, word boundaries)
        yearless = sorted(
            {e.name: e.id for e in kg.entities if e.type == "movie" and not _YEAR_END_RE.search(e.name)}.items(),
            key=lambda kv: -len(kv[0]),
        )
        self._yearless_ids = dict(yearless)
        self._yearless_re = (
            re.compile(r"(?<!\w)(?:" + "|".join(re.escape(n) for n, _ in yearless) + r")(?!\w)") if yearless else None
        )

    def spans(self, text: str) -> list[tuple[int, int, int | None]]:
        """``[(start, end, entity_id or None), ...]`` of the titles in ``text``, left to right."""
        out: list[tuple[int, int, int | None]] = []
        last_end = 0
        for m in _YEAR_RE.finditer(text):
            if m.start() < last_end:
                continue
            words = list(re.finditer(r"\S+", text[last_end : m.start()]))[-self.max_words :]
            hit = None
            for w in words:  # earliest start first = longest candidate
                start = last_end + w.start()
                if _norm_title(text[start : m.end()]) in self.names:
                    hit = (start, m.end(), self.names[_norm_title(text[start : m.end()])])
                    break
            if hit is None:
                start = m.start()
                for w in reversed(words):
                    if not w.group()[:1].isupper() and not w.group()[:1].isdigit():
                        break
                    start = last_end + w.start()
                if start == m.start():
                    continue  # a bare "(1999)" is not a title
                hit = (start, m.end(), None)
            out.append(hit)
            last_end = hit[1]
        if self._yearless_re is not None:
            for m in self._yearless_re.finditer(text):
                if not any(s < m.end() and m.start() < t for s, t, _ in out):
                    out.append((m.start(), m.end(), self._yearless_ids[m.group()]))
            out.sort()
        return out

    def find(self, text: str) -> list[tuple[str, bool]]:
        """``[(name, in_kg), ...]``; KG titles are returned under their KG name."""
        return [
            (self.kg.entities[e].name, True) if e is not None else (text[s:t], False) for s, t, e in self.spans(text)
        ]

    def movie_ids(self, text: str) -> list[int]:
        """Entity ids of the KG titles named in ``text``."""
        return [e for _, _, e in self.spans(text) if e is not None]


def strip_unlisted_titles(text: str, allowed: Iterable[int] | None, finder: TitleFinder) -> str:
    """Replace literal titles that are not KG movies, or not in ``allowed`` entity ids, by :data:`FALLBACK`.

    ``allowed=None`` allows every KG movie (used for the no-act baseline, which spells titles itself).
    """
    allowed = None if allowed is None else set(allowed)
    out, pos = [], 0
    for s, t, e in finder.spans(text):
        if e is not None and (allowed is None or e in allowed):
            continue
        out.append(text[pos:s])
        out.append(FALLBACK)
        pos = t
    out.append(text[pos:])
    return "".join(out)
