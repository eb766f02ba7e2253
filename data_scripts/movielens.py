"""MovieLens (GroupLens) ``ml-latest-small`` / ``ml-100k`` -> typed records and canonical JSONL.

Command::

    python -m data_scripts.prepare movielens --source ../shared/datasets/movielens --variant all --out data/movielens

Inputs (``--source`` folder, one sub-folder per variant):

* ``ml-latest-small/``: ``movies.csv`` (``movieId,title,genres``; genres ``|``-separated,
  ``(no genres listed)`` = none), ``ratings.csv`` (``userId,movieId,rating,timestamp``), optional
  ``links.csv`` (``movieId,imdbId,tmdbId``). UTF-8.
* ``ml-100k/``: ``u.item`` (latin-1, ``|``-separated: id, title, release date, video date, IMDb URL and
  19 genre flags in the order of ``u.genre``), ``u.data`` (tab-separated user, item, rating, timestamp),
  optional ``u.genre``.

Outputs (``--out``/``<variant>/``, written atomically after both files of the variant parsed):

``movies.jsonl``
    ``{"item_id": int, "title_raw": "Matrix, The (1999)", "title": "The Matrix", "year": int | null,
    "genres": ["Action", "Sci-Fi"], "imdb_id": "tt0133093" | null, "tmdb_id": int | null}`` sorted by
    ``item_id``. ``title`` has the year removed and a trailing article moved to the front
    (:func:`data_scripts.titles.split_title_year`, :func:`~data_scripts.titles.unsuffix_article`);
    ``year`` falls back to the release date for ml-100k.
``ratings.jsonl``
    ``{"user_id": int, "item_id": int, "rating": float, "timestamp": int}`` in file order.
``manifest.json``
    ``{"variant", "n_movies", "n_ratings", "n_users", "sources": {path: sha256}, "config"}``.
"""

from __future__ import annotations

import csv
import dataclasses
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tqdm import tqdm

from data_scripts.titles import split_title_year, unsuffix_article
from data_scripts.utils.config import field, parse_config, to_dict
from data_scripts.utils.io import DataFormatError, read_jsonl, sha256_file, write_json, write_jsonl
from data_scripts.utils.results import format_table

VARIANTS: tuple[str, ...] = ("ml-latest-small", "ml-100k")
#: ml-100k genre names in flag order (as in its ``u.genre``).
ML100K_GENRES: tuple[str, ...] = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
_DATE_YEAR_RE = re.compile(r"(\d{4})\s*$")


@dataclass(frozen=True)
class Movie:
    """One MovieLens movie (see ``movies.jsonl`` in the module docstring)."""

    item_id: int
    title_raw: str
    title: str
    year: int | None
    genres: tuple[str, ...]
    imdb_id: str | None = None
    tmdb_id: int | None = None

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["genres"] = list(self.genres)
        return d


@dataclass(frozen=True)
class Rating:
    """One explicit rating."""

    user_id: int
    item_id: int
    rating: float
    timestamp: int

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class MovieLensConfig:
    """Convert MovieLens ml-latest-small / ml-100k into canonical JSONL."""

    source: str = field("../shared/datasets/movielens", "Folder holding ml-latest-small/ and/or ml-100k/.")
    variant: Literal["ml-latest-small", "ml-100k", "all"] = field("all", "Which variant(s) to convert.")
    out: str = field("data/movielens", "Output folder (one sub-folder per variant).")
    progress: bool = field(True, "Show tqdm progress bars.")


def _movie(item_id: int, title_raw: str, genres: tuple[str, ...], year_hint: int | None = None, **kw) -> Movie:
    title_raw = " ".join(title_raw.split())
    title, year = split_title_year(title_raw)
    return Movie(item_id, title_raw, unsuffix_article(title), year if year is not None else year_hint, genres, **kw)


def _check_file(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path}: MovieLens file not found; check --source / --variant")
    return path


# ----------------------------------------------------------------------------------------------- ml-latest-small
def load_links(path: str | Path) -> dict[int, tuple[str | None, int | None]]:
    """``links.csv`` -> ``{movieId: (imdb "tt…" id, tmdb id)}`` (empty fields -> ``None``)."""
    path = _check_file(Path(path))
    out = {}
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header != ["movieId", "imdbId", "tmdbId"]:
            raise DataFormatError(path, 1, f"expected header movieId,imdbId,tmdbId, got {header}")
        for row in reader:
            if not row:
                continue
            if len(row) != 3:
                raise DataFormatError(path, reader.line_num, f"expected 3 columns, got {len(row)}")
            try:
                out[int(row[0])] = (f"tt{row[1]}" if row[1] else None, int(row[2]) if row[2] else None)
            except ValueError as exc:
                raise DataFormatError(path, reader.line_num, f"non-integer id in {row}") from exc
    return out


def load_latest_movies(folder: str | Path) -> list[Movie]:
    """``ml-latest-small/movies.csv`` (+ ``links.csv`` if present) -> movies sorted by id.

    Raises:
        DataFormatError: bad header, column count, id or duplicate id (file + line).
    """
    folder = Path(folder)
    path = _check_file(folder / "movies.csv")
    links = load_links(folder / "links.csv") if (folder / "links.csv").exists() else {}
    out: dict[int, Movie] = {}
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header != ["movieId", "title", "genres"]:
            raise DataFormatError(path, 1, f"expected header movieId,title,genres, got {header}")
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            if len(row) != 3:
                raise DataFormatError(path, line, f"expected 3 columns, got {len(row)}; is the file truncated?")
            try:
                mid = int(row[0])
            except ValueError as exc:
                raise DataFormatError(path, line, f"non-integer movieId {row[0]!r}") from exc
            if mid in out:
                raise DataFormatError(path, line, f"duplicate movieId {mid}")
            genres = tuple(g for g in row[2].split("|") if g and g != "(no genres listed)")
            imdb, tmdb = links.get(mid, (None, None))
            out[mid] = _movie(mid, row[1], genres, imdb_id=imdb, tmdb_id=tmdb)
    return [out[k] for k in sorted(out)]


def load_latest_ratings(folder: str | Path, progress: bool = False) -> list[Rating]:
    """``ml-latest-small/ratings.csv`` -> ratings in file order."""
    path = _check_file(Path(folder) / "ratings.csv")
    out = []
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header != ["userId", "movieId", "rating", "timestamp"]:
            raise DataFormatError(path, 1, f"expected header userId,movieId,rating,timestamp, got {header}")
        for row in tqdm(reader, desc=path.name, unit="r", disable=not progress, leave=False):
            if not row:
                continue
            out.append(_rating(row, path, reader.line_num))
    return out


def _rating(row: list[str], path: Path, line: int) -> Rating:
    if len(row) != 4:
        raise DataFormatError(path, line, f"expected 4 fields (user, item, rating, timestamp), got {len(row)}")
    try:
        return Rating(int(row[0]), int(row[1]), float(row[2]), int(row[3]))
    except ValueError as exc:
        raise DataFormatError(path, line, f"bad rating row {row}") from exc


# ----------------------------------------------------------------------------------------------- ml-100k
def load_ml100k_genres(folder: str | Path) -> tuple[str, ...]:
    """Genre names in flag order from ``u.genre`` (latin-1, ``name|index``), else :data:`ML100K_GENRES`."""
    path = Path(folder) / "u.genre"
    if not path.exists():
        return ML100K_GENRES
    pairs = []
    with open(path, encoding="latin-1") as fh:
        for line, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            parts = text.strip().split("|")
            if len(parts) != 2 or not parts[1].isdigit():
                raise DataFormatError(path, line, f"expected 'name|index', got {text.strip()!r}")
            pairs.append((int(parts[1]), parts[0]))
    return tuple(name for _, name in sorted(pairs))


def load_ml100k_movies(folder: str | Path) -> list[Movie]:
    """``ml-100k/u.item`` (latin-1, pipe-separated, 5 fields + one flag per genre) -> movies sorted by id.

    Raises:
        DataFormatError: wrong field count, non-0/1 flag or bad id (file + line).
    """
    folder = Path(folder)
    path = _check_file(folder / "u.item")
    genres = load_ml100k_genres(folder)
    out: dict[int, Movie] = {}
    with open(path, encoding="latin-1") as fh:
        for line, text in enumerate(fh, start=1):
            text = text.rstrip("\r\n")
            if not text.strip():
                continue
            parts = text.split("|")
            if len(parts) != 5 + len(genres):
                raise DataFormatError(
                    path, line, f"expected {5 + len(genres)} '|'-separated fields, got {len(parts)}; truncated?"
                )
            flags = parts[5:]
            if any(f not in ("0", "1") for f in flags) or not parts[0].isdigit():
                raise DataFormatError(path, line, "genre flags must be 0/1 and the id an integer")
            mid = int(parts[0])
            if mid in out:
                raise DataFormatError(path, line, f"duplicate movie id {mid}")
            m = _DATE_YEAR_RE.search(parts[2])
            names = tuple(g for g, f in zip(genres, flags, strict=True) if f == "1" and g != "unknown")
            out[mid] = _movie(mid, parts[1], names, year_hint=int(m.group(1)) if m else None)
    return [out[k] for k in sorted(out)]


def load_ml100k_ratings(folder: str | Path, progress: bool = False) -> list[Rating]:
    """``ml-100k/u.data`` (tab-separated user, item, rating, timestamp) -> ratings in file order."""
    path = _check_file(Path(folder) / "u.data")
    out = []
    with open(path, encoding="latin-1") as fh:
        for line, text in enumerate(tqdm(fh, desc=path.name, unit="r", disable=not progress, leave=False), start=1):
            if text.strip():
                out.append(_rating(text.split(), path, line))
    return out


# ----------------------------------------------------------------------------------------------- library
def load_movielens(source: str | Path, variant: str, progress: bool = False) -> tuple[list[Movie], list[Rating]]:
    """Raw MovieLens folder -> ``(movies, ratings)`` for ``variant`` (``"ml-latest-small"`` or ``"ml-100k"``)."""
    folder = Path(source) / variant
    if variant == "ml-latest-small":
        return load_latest_movies(folder), load_latest_ratings(folder, progress)
    if variant == "ml-100k":
        return load_ml100k_movies(folder), load_ml100k_ratings(folder, progress)
    raise ValueError(f"unknown MovieLens variant {variant!r}; expected one of {VARIANTS}")


def load_canonical_movies(path: str | Path) -> list[Movie]:
    """Read a ``movies.jsonl`` written by this module back into :class:`Movie` records."""
    return [Movie(**{**d, "genres": tuple(d["genres"])}) for d in read_jsonl(path)]


def load_canonical_ratings(path: str | Path) -> list[Rating]:
    """Read a ``ratings.jsonl`` written by this module back into :class:`Rating` records."""
    return [Rating(**d) for d in read_jsonl(path)]


# ----------------------------------------------------------------------------------------------- CLI
def prepare(cfg: MovieLensConfig) -> dict[str, dict]:
    """Convert the chosen variant(s); every variant is parsed completely before any file is written."""
    variants = VARIANTS if cfg.variant == "all" else (cfg.variant,)
    parsed = {v: load_movielens(cfg.source, v, cfg.progress) for v in variants}
    manifests = {}
    for v, (movies, ratings) in parsed.items():
        t0 = time.perf_counter()
        known = {m.item_id for m in movies}
        unknown = sum(1 for r in ratings if r.item_id not in known)
        out = Path(cfg.out) / v
        write_jsonl(out / "movies.jsonl", (m.to_json() for m in movies))
        write_jsonl(out / "ratings.jsonl", (r.to_json() for r in ratings))
        src = Path(cfg.source) / v
        manifests[v] = {
            "variant": v,
            "n_movies": len(movies),
            "n_ratings": len(ratings),
            "n_users": len({r.user_id for r in ratings}),
            "n_ratings_unknown_item": unknown,
            "n_movies_without_year": sum(m.year is None for m in movies),
            "sources": {str(p): sha256_file(p) for p in sorted(src.iterdir()) if p.is_file()},
            "config": to_dict(cfg),
            "write_seconds": round(time.perf_counter() - t0, 2),
        }
        write_json(out / "manifest.json", manifests[v])
    return manifests


def main(argv: list[str] | None = None) -> int:
    """CLI entry point used by ``python -m data_scripts.prepare movielens``."""
    cfg = parse_config(MovieLensConfig, argv)
    t0 = time.perf_counter()
    try:
        manifests = prepare(cfg)
    except (DataFormatError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        format_table(list(manifests.values()), ["variant", "n_movies", "n_ratings", "n_users", "n_movies_without_year"])
    )
    print(f"wrote {cfg.out} in {time.perf_counter() - t0:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
