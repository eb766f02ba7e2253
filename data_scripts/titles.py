"""Movie-title helpers shared by the ReDial, MovieLens and KG code.

ReDial names look like ``"Police Academy  (1984)"`` (sometimes a double space, sometimes no
year); MovieLens titles like ``"Matrix, The (1999)"``. These helpers split and normalise them.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from data_scripts.utils.io import DataFormatError

_YEAR_RE = re.compile(r"^(?P<title>.*?)\s*\((?P<year>\d{4})(?:[-–]\d{0,4})?\)\s*$")
_ARTICLE_SUFFIX_RE = re.compile(r"^(?P<body>.*), (?P<art>The|A|An|Les|La|Le|Il|El|Das|Der|Die)$", re.IGNORECASE)
_SPACES_RE = re.compile(r"\s+")


def split_title_year(name: str) -> tuple[str, int | None]:
    """``"Police Academy  (1984)"`` -> ``("Police Academy", 1984)``; no year -> ``(name, None)``."""
    name = _SPACES_RE.sub(" ", name).strip()
    m = _YEAR_RE.match(name)
    if not m:
        return name, None
    return m.group("title").strip(), int(m.group("year"))


def unsuffix_article(title: str) -> str:
    """MovieLens style ``"Matrix, The"`` -> ``"The Matrix"`` (other titles unchanged)."""
    m = _ARTICLE_SUFFIX_RE.match(title.strip())
    return f"{m.group('art')} {m.group('body')}" if m else title.strip()


def normalize_text(text: str) -> str:
    """Lower-case, strip accents, turn punctuation into spaces, squeeze whitespace."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower().replace("&", " and ")
    text = re.sub(r"[^\w\s]", " ", text)
    return _SPACES_RE.sub(" ", text).strip()


def normalize_title(title: str) -> str:
    """Key for matching titles across sources: article moved to front, then :func:`normalize_text`."""
    return normalize_text(unsuffix_article(title))


@dataclass(frozen=True)
class RedialMovie:
    """One row of ReDial's ``movies_with_mentions.csv``."""

    redial_id: int
    name: str  # as in the file, whitespace squeezed, e.g. "Police Academy (1984)"
    title: str  # without the year
    year: int | None
    n_mentions: int


def load_redial_movies(path: str | Path) -> list[RedialMovie]:
    """Parse ``movies_with_mentions.csv`` (``movieId,movieName,nbMentions``), sorted by id.

    Raises:
        DataFormatError: on a missing header, a malformed row or a duplicate id (file + line).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: ReDial movie list not found (expected movies_with_mentions.csv)")
    out: dict[int, RedialMovie] = {}
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:3]] != ["movieId", "movieName", "nbMentions"]:
            raise DataFormatError(path, 1, f"expected header movieId,movieName,nbMentions, got {header}")
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            if len(row) < 3:
                raise DataFormatError(path, line, f"expected 3 columns, got {len(row)}; is the file truncated?")
            try:
                mid, n = int(row[0]), int(row[2])
            except ValueError as exc:
                raise DataFormatError(path, line, f"non-integer id or count: {row}") from exc
            if mid in out:
                raise DataFormatError(path, line, f"duplicate movieId {mid}")
            name = _SPACES_RE.sub(" ", row[1]).strip()
            title, year = split_title_year(name)
            out[mid] = RedialMovie(mid, name, title, year, n)
    return [out[k] for k in sorted(out)]
