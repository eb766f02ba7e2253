"""Movie cards and text clean-up for the online engine."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from kg_build.schema import KnowledgeGraph, read_movie_info

from .types import MovieCard

#: user text longer than this is cut (at a word boundary) before linking/encoding/generation
MAX_INPUT_CHARS = 1000
_YEAR_SUFFIX = re.compile(r"\s*\((\d{4})\)\s*$")
_WS = re.compile(r"\s+")


def clean_user_text(text: object, max_chars: int = MAX_INPUT_CHARS) -> str:
    """Make any input safe for the linker, the encoder and the generator.

    ``None`` -> ``""``; other non-strings are ``str()``-ed; Unicode NFC; control and format characters
    (``\\x00``, zero-width joiners outside emoji sequences, bidi marks) become spaces, emoji and other
    scripts are kept; whitespace is squeezed; at most ``max_chars`` characters (cut at the last space
    when there is one in the final tenth).
    """
    if text is None:
        return ""
    if not isinstance(text, str):
        text = str(text)
    if len(text) > 8 * max_chars:  # do not normalise 100 KB we will throw away
        text = text[: 8 * max_chars]
    text = unicodedata.normalize("NFC", text)
    text = "".join(" " if unicodedata.category(ch) in ("Cc", "Cs", "Co", "Cn") else ch for ch in text)
    text = "".join(
        ch if unicodedata.category(ch) != "Cf" or ch == "\u200d" else " " for ch in text
    )  # keep ZWJ (emoji sequences)
    text = _WS.sub(" ", text).strip()
    if len(text) > max_chars:
        cut = text[:max_chars]
        sp = cut.rfind(" ")
        text = cut[:sp] if sp > int(0.9 * max_chars) else cut
    return text


class CardFactory:
    """Builds :class:`MovieCard` objects from the KG's ``movie_info.jsonl`` (falls back to the KG name)."""

    def __init__(self, kg: KnowledgeGraph, info: dict[int, dict] | None = None):
        self.kg = kg
        self.info = info or {}

    @classmethod
    def from_folder(cls, kg: KnowledgeGraph, folder: str | Path) -> CardFactory:
        """Read ``<folder>/movie_info.jsonl``; a KG without it gives name-only cards."""
        try:
            info = read_movie_info(folder)
        except FileNotFoundError:
            info = {}
        return cls(kg, info)

    def card(self, eid: int) -> MovieCard:
        e = self.kg.entities[eid]
        row = self.info.get(eid, {})
        name = row.get("name") or e.name
        year = row.get("year", e.year)
        title = _YEAR_SUFFIX.sub("", name) if year is not None else name
        return MovieCard(
            entity_id=int(eid),
            title=title or name,
            year=int(year) if year is not None else None,
            genres=list(row.get("genres") or []),
            directors=list(row.get("directors") or []),
            stars=list(row.get("stars") or []),
            plot=row.get("plot"),
        )
