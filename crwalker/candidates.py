"""Legal candidate entities per intent and hop (CR-Walker Table 1).

=========  ===============================================  ==========================================
intent     hop 1 candidates                                 hop 2 candidates (children of a hop-1 node)
=========  ===============================================  ==========================================
recommend  mentioned attributes + attributes of mentioned   all candidate items (movies)
           items
query      generic classes                                  attributes of that class
chat       mentioned entities                               neighbours of that entity
=========  ===============================================  ==========================================

"Mentioned" always means mentioned *before* the current system turn (the label row's
``context_entities``), so a turn's own entities never leak into its candidate sets.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from kg_build.schema import ATTRIBUTE_TYPES, KnowledgeGraph

INTENT_INDEX: dict[str, int] = {"recommend": 0, "query": 1, "chat": 2}
INTENT_NAMES: tuple[str, ...] = tuple(INTENT_INDEX)


class CandidateSets:
    """Table-1 candidate sets over one KG (ids come from the KG, never hard-coded)."""

    def __init__(self, kg: KnowledgeGraph):
        self.kg = kg
        self.types = [e.type for e in kg.entities]
        self.movie_ids = np.asarray(kg.movie_ids, dtype=np.int64)
        self.class_ids = sorted(kg.class_ids.values())
        self._neighbors: dict[int, list[int]] = {}

    @cached_property
    def is_movie(self) -> np.ndarray:
        return np.array([t == "movie" for t in self.types], dtype=bool)

    def is_attribute(self, eid: int) -> bool:
        return self.types[eid] in ATTRIBUTE_TYPES

    def neighbors(self, eid: int) -> list[int]:
        """Sorted KG neighbours of ``eid`` (cached)."""
        if eid not in self._neighbors:
            self._neighbors[eid] = sorted(self.kg.neighbors(eid))
        return self._neighbors[eid]

    # ---------------------------------------------------------------- hop 1
    def hop1(self, intent: str, context: list[int]) -> list[int]:
        """Hop-1 candidates for ``intent`` given the entities mentioned so far (sorted, unique)."""
        if intent == "recommend":
            out = {e for e in context if self.is_attribute(e)}
            for e in context:
                if self.types[e] == "movie":
                    out.update(n for n in self.neighbors(e) if self.is_attribute(n))
            return sorted(out)
        if intent == "query":
            return list(self.class_ids)
        if intent == "chat":
            return sorted({e for e in context if self.types[e] != "class"})
        raise ValueError(f"unknown intent {intent!r}")

    # ---------------------------------------------------------------- hop 2
    def hop2(self, intent: str, parent: int) -> list[int] | None:
        """Hop-2 candidates below ``parent``; ``None`` means "all movies" (recommend)."""
        if intent == "recommend":
            return None
        if intent == "query":
            return [n for n in self.neighbors(parent) if self.is_attribute(n)]
        if intent == "chat":
            return [n for n in self.neighbors(parent) if self.types[n] != "class"]
        raise ValueError(f"unknown intent {intent!r}")
