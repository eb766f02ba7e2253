"""Validated readers for the KG's raw sources (all under ``--datasets``, default ``../shared/datasets``).

Every reader checks the structure it relies on and raises
:class:`data_scripts.utils.io.DataFormatError` naming the file (and line/key) of bad input.

Sources (paths relative to the datasets root, see its README):

``redial/movies_with_mentions.csv``
    The 6,924 candidate items (read with :func:`data_scripts.titles.load_redial_movies`).
``kg/dbpedia/{entity2id,relation2id,dbpedia_subkg,redial_movie_to_dbpedia}.json``
    DBpedia subgraph. ``dbpedia_subkg.json`` is ``{head_id: [[relation_id, tail_id], ...]}``; for
    ReDial movies the movie is the *head* and the attribute (person, company, ...) the *tail*.
``kg/imdb/id2info.json``
    ``{redial_id: {name, genre[], director[], writer[], star[], plot, imdb_id}}`` (IMDb-style metadata).
``movielens/ml-latest-small/{movies,links}.csv`` and ``movielens/ml-100k/u.item``
    MovieLens titles, genres and IMDb ids, used to attach the 18 MovieLens genres to ReDial movies.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote

from data_scripts import movielens
from data_scripts.titles import normalize_text, split_title_year, unsuffix_article
from data_scripts.utils.io import DataFormatError, read_json

REDIAL_MOVIES = "redial/movies_with_mentions.csv"
DBPEDIA_ENTITY2ID = "kg/dbpedia/entity2id.json"
DBPEDIA_RELATION2ID = "kg/dbpedia/relation2id.json"
DBPEDIA_SUBKG = "kg/dbpedia/dbpedia_subkg.json"
DBPEDIA_REDIAL_MAP = "kg/dbpedia/redial_movie_to_dbpedia.json"
IMDB_ID2INFO = "kg/imdb/id2info.json"
ML_SMALL_MOVIES = "movielens/ml-latest-small/movies.csv"
ML_SMALL_LINKS = "movielens/ml-latest-small/links.csv"
ML_100K_ITEMS = "movielens/ml-100k/u.item"
#: Every input file, relative to the datasets root (hashed into the manifest).
ALL_SOURCES: tuple[str, ...] = (
    REDIAL_MOVIES,
    DBPEDIA_ENTITY2ID,
    DBPEDIA_RELATION2ID,
    DBPEDIA_SUBKG,
    DBPEDIA_REDIAL_MAP,
    IMDB_ID2INFO,
    ML_SMALL_MOVIES,
    ML_SMALL_LINKS,
    ML_100K_ITEMS,
)

_DISAMBIG_RE = re.compile(r"\s*\([^()]*\)\s*$")
_URI_YEAR_RE = re.compile(r"_\((\d{4})_(?:[A-Za-z]+_)*film\)>?$")
_ALT_TITLE_RE = re.compile(r"^(?P<main>.*?)\s*\((?:a\.k\.a\.\s*)?(?P<alt>[^()]+)\)\s*$", re.IGNORECASE)


# ---------------------------------------------------------------------------------------------- names
def strip_disambiguator(label: str) -> str:
    """``"James Cameron (director)"`` -> ``"James Cameron"`` (one trailing parenthetical removed)."""
    stripped = _DISAMBIG_RE.sub("", label).strip()
    return stripped or label.strip()


def dbpedia_label(uri: str) -> str:
    """``<http://dbpedia.org/resource/James_Cameron_(director)>`` -> ``"James Cameron"``.

    Percent-escapes are decoded, underscores become spaces and a trailing disambiguator is removed.
    """
    body = uri.strip().strip("<>")
    body = body.rsplit("/resource/", 1)[-1] if "/resource/" in body else body.rsplit("/", 1)[-1]
    return strip_disambiguator(unquote(body).replace("_", " ").strip())


@lru_cache(maxsize=1 << 17)
def name_key(name: str) -> str:
    """Matching key for a person/company name across sources (disambiguator, accents, case, punctuation)."""
    return normalize_text(strip_disambiguator(name))


#: Corporate words dropped from company names so that brand variants merge ("Pixar Animation Studios" ==
#: "Pixar", "Marvel Studios" == "Marvel Entertainment", "Walt Disney Pictures" == "Walt Disney Animation Studios").
COMPANY_SUFFIX_WORDS: frozenset[str] = frozenset({
    "animation", "co", "company", "corporation", "corp", "enterprises", "entertainment", "feature", "film",
    "films", "inc", "llc", "ltd", "partners", "pictures", "productions", "studio", "studios",
})  # fmt: skip


@lru_cache(maxsize=1 << 14)
def company_key(name: str) -> str:
    """Matching key for a company: :func:`name_key` without trailing corporate words (keeps >= 1 word)."""
    words = name_key(name).split()
    while len(words) > 1 and words[-1] in COMPANY_SUFFIX_WORDS:
        words.pop()
    return " ".join(words)


# ---------------------------------------------------------------------------------------------- DBpedia
@dataclass(frozen=True)
class DBpediaFacts:
    """DBpedia facts of ReDial movies: ``edges[redial_id] = [(relation_local_name, tail_label), ...]``."""

    edges: dict[int, list[tuple[str, str]]]
    n_movies_mapped: int  # ReDial movies whose URI has a node in the subgraph
    uris: dict[int, str] = dataclasses.field(default_factory=dict)  # ReDial id -> DBpedia URI (all mapped)

    def uri_year(self, redial_id: int) -> int | None:
        """Year in the movie's URI disambiguator (``.../Headhunter_(2009_film)>`` -> 2009), else None."""
        m = _URI_YEAR_RE.search(self.uris.get(redial_id, ""))
        return int(m.group(1)) if m else None


def _relation_local_name(uri: str) -> str:
    return uri.strip().strip("<>").rsplit("/", 1)[-1]


def load_dbpedia(root: Path, redial_ids: set[int]) -> DBpediaFacts:
    """Collect ``(relation, tail label)`` pairs of every ReDial movie from the DBpedia subgraph.

    Only edges whose head is a ReDial movie are used (the subgraph is built around movie heads);
    self loops and tails that are themselves ReDial movies are dropped.

    Raises:
        DataFormatError: if a file does not have the documented structure.
    """
    e2id_path, r2id_path = root / DBPEDIA_ENTITY2ID, root / DBPEDIA_RELATION2ID
    sub_path, map_path = root / DBPEDIA_SUBKG, root / DBPEDIA_REDIAL_MAP
    e2id = read_json(e2id_path)
    if not isinstance(e2id, dict):
        raise DataFormatError(e2id_path, None, "expected a JSON object {uri: id}")
    id2uri: dict[int, str] = {}
    for uri, i in e2id.items():
        if not isinstance(i, int):
            raise DataFormatError(e2id_path, None, f"entity {uri!r}: id must be an integer, got {i!r}")
        id2uri[i] = uri
    r2id = read_json(r2id_path)
    if not isinstance(r2id, dict) or not all(isinstance(v, int) for v in r2id.values()):
        raise DataFormatError(r2id_path, None, "expected a JSON object {relation_uri: integer id}")
    id2rel = {v: _relation_local_name(k) for k, v in r2id.items()}
    mapping = read_json(map_path)
    if not isinstance(mapping, dict):
        raise DataFormatError(map_path, None, "expected a JSON object {redial_movie_id: dbpedia_uri}")
    sub = read_json(sub_path)
    if not isinstance(sub, dict):
        raise DataFormatError(sub_path, None, "expected a JSON object {head_id: [[relation_id, tail_id], ...]}")

    uri2redial: dict[str, list[int]] = {}
    for key, uri in mapping.items():
        try:
            rid = int(key)
        except ValueError as exc:
            raise DataFormatError(map_path, None, f"key {key!r} is not a ReDial movie id") from exc
        if uri is None:
            continue
        if not isinstance(uri, str):
            raise DataFormatError(map_path, None, f"movie {key}: URI must be a string, got {uri!r}")
        if rid in redial_ids:
            uri2redial.setdefault(uri, []).append(rid)
    movie_eids = {e2id[u]: rids for u, rids in uri2redial.items() if u in e2id}

    edges: dict[int, list[tuple[str, str]]] = {}
    n_mapped = 0
    for eid, rids in movie_eids.items():
        pairs = sub.get(str(eid))
        if pairs is None:
            continue
        if not isinstance(pairs, list):
            raise DataFormatError(sub_path, None, f"head {eid}: expected a list of [relation_id, tail_id] pairs")
        facts: list[tuple[str, str]] = []
        for p in pairs:
            if not (isinstance(p, list) and len(p) == 2 and all(isinstance(x, int) for x in p)):
                raise DataFormatError(sub_path, None, f"head {eid}: bad edge {p!r}; expected [relation_id, tail_id]")
            rel_id, tail = p
            if rel_id not in id2rel:
                raise DataFormatError(sub_path, None, f"head {eid}: relation id {rel_id} not in {r2id_path.name}")
            if tail not in id2uri:
                raise DataFormatError(sub_path, None, f"head {eid}: tail id {tail} not in {e2id_path.name}")
            if tail == eid or tail in movie_eids or id2rel[rel_id] == "self_loop":
                continue
            facts.append((id2rel[rel_id], dbpedia_label(id2uri[tail])))
        n_mapped += len(rids)
        for rid in rids:
            edges[rid] = facts
    uris = {rid: u for u, rids in uri2redial.items() for rid in rids}
    return DBpediaFacts(edges=edges, n_movies_mapped=n_mapped, uris=uris)


# ---------------------------------------------------------------------------------------------- IMDb
@dataclass(frozen=True)
class ImdbInfo:
    """One ``id2info.json`` record."""

    name: str
    genres: tuple[str, ...]
    directors: tuple[str, ...]
    writers: tuple[str, ...]
    stars: tuple[str, ...]
    plot: str | None
    imdb_id: str | None


def load_id2info(path: Path) -> dict[int, ImdbInfo]:
    """Read ``kg/imdb/id2info.json`` into ``{redial_id: ImdbInfo}``.

    Raises:
        DataFormatError: naming the file and the movie key of a malformed record.
    """
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise DataFormatError(path, None, "expected a JSON object {redial_movie_id: {name, genre, ...}}")
    out: dict[int, ImdbInfo] = {}
    for key, rec in raw.items():
        try:
            rid = int(key)
        except ValueError as exc:
            raise DataFormatError(path, None, f"key {key!r} is not a ReDial movie id") from exc
        if not isinstance(rec, dict):
            raise DataFormatError(path, None, f"movie {key}: expected an object, got {type(rec).__name__}")

        def names(field: str, rec=rec, key=key) -> tuple[str, ...]:
            v = rec.get(field) or []
            if isinstance(v, str):
                v = [v]
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise DataFormatError(path, None, f"movie {key}: field {field!r} must be a list of strings")
            return tuple(x.strip() for x in v if x and x.strip())

        plot = rec.get("plot")
        out[rid] = ImdbInfo(
            name=str(rec.get("name") or ""),
            genres=names("genre"),
            directors=names("director"),
            writers=names("writer"),
            stars=names("star"),
            plot=plot.strip() if isinstance(plot, str) and plot.strip() else None,
            imdb_id=str(rec["imdb_id"]) if rec.get("imdb_id") else None,
        )
    return out


# ---------------------------------------------------------------------------------------------- MovieLens
@dataclass(frozen=True)
class MovieLensMovie:
    """One MovieLens movie: ``title`` with the article in front, optional alternative titles."""

    source: str  # "ml-latest-small" or "ml-100k"
    ml_id: int
    title: str
    alt_titles: tuple[str, ...]
    year: int | None
    genres: tuple[str, ...]  # MovieLens genre names as in the file
    imdb_id: str | None  # "tt0114709"


def split_movielens_title(raw: str) -> tuple[str, tuple[str, ...], int | None]:
    """``"City of Lost Children, The (Cité des enfants perdus, La) (1995)"`` ->
    ``("The City of Lost Children", ("La Cité des enfants perdus",), 1995)``."""
    title, year = split_title_year(raw)
    alts: list[str] = []
    m = _ALT_TITLE_RE.match(title)
    if m and m.group("main").strip():
        title = m.group("main").strip()
        alts.append(unsuffix_article(m.group("alt").strip()))
    return unsuffix_article(title), tuple(alts), year


def _from_movielens(source: str, movies) -> list[MovieLensMovie]:
    """Adapt :class:`data_scripts.movielens.Movie` records (alternative titles split off the title)."""
    out = []
    for m in movies:
        title, alts, year = split_movielens_title(m.title_raw)
        out.append(MovieLensMovie(source, m.item_id, title, alts, year, m.genres, m.imdb_id))
    return out


def load_movielens_small(folder: Path) -> list[MovieLensMovie]:
    """``ml-latest-small/movies.csv`` (+ ``links.csv`` for IMDb ids) via :mod:`data_scripts.movielens`."""
    return _from_movielens("ml-latest-small", movielens.load_latest_movies(folder))


def load_movielens_100k(folder: Path) -> list[MovieLensMovie]:
    """``ml-100k/u.item`` via :mod:`data_scripts.movielens` (year from the title, as ml-latest)."""
    return _from_movielens("ml-100k", movielens.load_ml100k_movies(folder))
