"""Generic-class linker used by knowledge P/R/F1 (:func:`crwalker.generation.metrics.knowledge_prf`).

:class:`ClassLinker` finds KG entities in a text by exact, lower-cased, punctuation-insensitive match of
their names and aliases (longest match first, word boundaries) and returns the *generic classes* they
belong to -- ``"Movie"`` for movies, the entity's ``classes`` (``"Actor"``, ``"Director"``, ``"Genre"``,
...) for attributes, or the capitalised entity type when an entity has no class. Class entities
themselves (``"Actor"`` as a word) are not linked: a reply saying "actor" names no actor.

Any callable ``str -> set[str]`` can replace it (e.g. the project's spaCy linker once it exists).
"""

from __future__ import annotations

import re

from kg_build.schema import KnowledgeGraph

_TOKEN_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def _tokens(text: str) -> list[str]:
    return _TOKEN_RE.findall(text.lower())


class ClassLinker:
    """``ClassLinker(kg)(text) -> {"Movie", "Genre", ...}`` (see module docstring).

    Args:
        kg: The knowledge graph.
        min_chars: Surface forms shorter than this are ignored (avoids linking "it", "up", ...).
        max_words: Longest surface form considered, in words.
    """

    def __init__(self, kg: KnowledgeGraph, min_chars: int = 3, max_words: int = 12):
        self.forms: dict[tuple[str, ...], set[str]] = {}
        self.max_words = max_words
        for e in kg.entities:
            if e.type == "class":
                continue
            classes = {"Movie"} if e.type == "movie" else (set(e.classes) or {e.type.capitalize()})
            for form in {e.name, *e.aliases}:
                toks = tuple(_tokens(form))
                if toks and len(" ".join(toks)) >= min_chars and len(toks) <= max_words:
                    self.forms.setdefault(toks, set()).update(classes)

    def entities(self, text: str) -> list[tuple[str, ...]]:
        """The matched surface forms (as token tuples), left to right, longest match first."""
        toks = _tokens(text)
        out, i = [], 0
        while i < len(toks):
            for n in range(min(self.max_words, len(toks) - i), 0, -1):
                if tuple(toks[i : i + n]) in self.forms:
                    out.append(tuple(toks[i : i + n]))
                    i += n
                    break
            else:
                i += 1
        return out

    def __call__(self, text: str) -> set[str]:
        classes: set[str] = set()
        for form in self.entities(text):
            classes |= self.forms[form]
        return classes


def entity_classes(kg: KnowledgeGraph, eid: int) -> set[str]:
    """Generic classes of one entity (``Movie`` for movies; none for class entities)."""
    e = kg.entities[eid]
    if e.type == "class":
        return set()
    return {"Movie"} if e.type == "movie" else (set(e.classes) or {e.type.capitalize()})


class ProjectClassLinker:
    """Generic classes via the project's spaCy/rapidfuzz :class:`kg_build.linker.EntityLinker`.

    Texts are linked in batches with :meth:`prepare` (``link_many``); calling the object on a text that
    was not prepared links it on its own.
    """

    def __init__(self, kg: KnowledgeGraph):
        from kg_build.linker import EntityLinker

        self.kg = kg
        self.linker = EntityLinker.from_kg(kg)
        self.cache: dict[str, set[str]] = {}

    def prepare(self, texts: list[str]) -> None:
        todo = [t for t in dict.fromkeys(texts) if t not in self.cache]
        for text, spans in zip(todo, self.linker.link_many(todo), strict=True):
            self.cache[text] = set().union(*(entity_classes(self.kg, s.entity) for s in spans)) if spans else set()

    def __call__(self, text: str) -> set[str]:
        if text not in self.cache:
            self.prepare([text])
        return self.cache[text]
