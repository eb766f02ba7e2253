"""Build the movie knowledge graph (CR-Walker §3.1, Appendix C): ``python -m kg_build build``.

Inputs (under ``--datasets``, default ``../shared/datasets``; see :mod:`kg_build.sources`): the 6,924
ReDial movies, the DBpedia subgraph around them, IMDb-style metadata (``id2info.json``) and MovieLens.

Graph (schema in :mod:`kg_build.schema`):

* **movies** -- every ReDial movie is a candidate item, even without edges (ids sorted by ReDial id);
* **persons** -- actors, directors and writers from DBpedia (``dbo:starring``, ``dbo:director``,
  ``dbo:writer``/``dbo:author``; composers via ``dbo:musicComposer`` only with ``--relations ...
  composer_of``: no ReDial user names a composer, and they are high-degree hubs) and from
  ``id2info`` (``star``, ``director``, ``writer``). The same person from both sources is one node:
  names are matched on :func:`kg_build.sources.name_key` (disambiguator such as ``_(director)``
  stripped, accents/case/punctuation normalised);
* **genres** -- the 18 MovieLens genres (``IMAX`` and ``(no genres listed)`` excluded), from MovieLens
  movies linked to ReDial movies (:class:`MovieLensLinker`: IMDb id, else exact title within +-1 year,
  else same-year rapidfuzz title match) and from ``id2info`` genres that coincide with a MovieLens
  genre (``family`` -> Children);
* **times** -- decades (``"1980s"``) from the year in the ReDial title (else :func:`resolve_year`);
* **companies** -- production companies (``dbo:productionCompany``/``dbo:company``), brand variants
  merged by :func:`kg_build.sources.company_key` ("Pixar Animation Studios" == "Pixar"): users ask for
  "Disney" / "Marvel" / "Pixar" movies (95 / 137 / 17 of 60K ReDial messages);
* **generic classes** -- ``Actor``, ``Director``, ``Writer``, ``Genre``, ``Time``, ``Company``
  (+ ``Composer``), one per attribute relation in use.

Relations: ``<rel>_of`` from attribute to movie, ``is_a`` from attribute to class, each with a reverse
``<rel>_rev``. Outputs: ``entities.jsonl``, ``kg.safetensors``, ``manifest.json`` (via
:meth:`KnowledgeGraph.save`), ``movie_info.jsonl`` (:data:`kg_build.schema.MOVIE_INFO_FILE`) and the
Table-9-style stats in ``results/kg_stats.json``. The build is deterministic: same inputs, same bytes.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import numpy as np
from rapidfuzz import fuzz, process
from tqdm import tqdm

from data_scripts.movielens import ML100K_GENRES
from data_scripts.titles import RedialMovie, load_redial_movies, normalize_text, normalize_title, split_title_year
from data_scripts.utils.config import field, parse_config, to_dict
from data_scripts.utils.io import sha256_file, write_jsonl
from data_scripts.utils.results import write_results
from kg_build import sources as src
from kg_build.schema import (
    ENTITY_TYPES,
    MOVIE_INFO_FILE,
    RELATION_CLASS,
    RELATION_TARGET_TYPE,
    Entity,
    KnowledgeGraph,
)
from kg_build.stats import format_stats_table, kg_stats

#: The 18 MovieLens genres of the paper (ml-100k's list; ``Children's`` spelled ``Children`` as in ml-latest).
GENRES: tuple[str, ...] = tuple("Children" if g == "Children's" else g for g in ML100K_GENRES if g != "unknown")
#: MovieLens genre spellings -> canonical genre (``IMAX`` is a format, not one of the 18 genres).
MOVIELENS_GENRE_MAP: dict[str, str] = {g: g for g in GENRES} | {"Children's": "Children"}
#: IMDb-style ``id2info`` genres that coincide with a MovieLens genre (others, e.g. biography, are dropped).
IMDB_GENRE_MAP: dict[str, str] = {g.lower(): g for g in GENRES} | {"family": "Children"}
#: Everyday words for each genre, for the entity linker (all lower-case).
GENRE_ALIASES: dict[str, tuple[str, ...]] = {
    "Action": (
        "action",
        "action movie",
        "action movies",
        "action film",
        "action films",
        "action packed",
        "action-packed",
    ),
    "Adventure": ("adventure", "adventures", "adventure movie", "adventure movies", "adventurous"),
    "Animation": ("animation", "animated", "animations", "cartoon", "cartoons", "anime", "pixar style"),
    "Children": (
        "children",
        "children's",
        "childrens",
        "kids",
        "kid",
        "kids movie",
        "kids movies",
        "family",
        "family movie",
        "family movies",
        "family friendly",
        "family-friendly",
        "for kids",
    ),
    "Comedy": (
        "comedy",
        "comedies",
        "funny",
        "comedic",
        "hilarious",
        "humor",
        "humour",
        "laugh",
        "rom com",
        "romcom",
        "rom-com",
    ),
    "Crime": ("crime", "crimes", "gangster", "gangsters", "heist", "mafia", "mob movie"),
    "Documentary": ("documentary", "documentaries", "docs", "docu"),
    "Drama": ("drama", "dramas", "dramatic"),
    "Fantasy": ("fantasy", "fantasies", "fantastical", "magic", "magical"),
    "Film-Noir": ("film-noir", "film noir", "noir", "films noirs"),
    "Horror": (
        "horror",
        "horrors",
        "scary",
        "scare",
        "scares",
        "frightening",
        "creepy",
        "spooky",
        "slasher",
        "slashers",
        "horror movie",
        "horror movies",
        "horror film",
        "horror films",
    ),
    "Musical": ("musical", "musicals", "singing", "music movie"),
    "Mystery": ("mystery", "mysteries", "whodunit", "whodunnit", "mysterious"),
    "Romance": ("romance", "romantic", "romances", "love story", "love stories", "chick flick", "chick flicks"),
    "Sci-Fi": ("sci-fi", "scifi", "sci fi", "science fiction", "science-fiction", "sf", "futuristic", "space movie"),
    "Thriller": ("thriller", "thrillers", "thrilling", "suspense", "suspenseful", "psychological thriller"),
    "War": ("war", "war movie", "war movies", "war film", "war films", "military"),
    "Western": ("western", "westerns", "cowboy", "cowboys"),
}
#: Short names users say for studios (keyed by :func:`kg_build.sources.company_key`); one-word keys are only
#: aliases when listed here ("universal", "columbia" or "illumination" would be ambiguous words).
COMPANY_ALIASES: dict[str, tuple[str, ...]] = {
    "walt disney": ("disney", "walt disney", "disney movies"),
    "pixar": ("pixar", "pixar movies"),
    "marvel": ("marvel", "marvel movies", "mcu"),
    "dreamworks": ("dreamworks",),
    "studio ghibli": ("ghibli", "studio ghibli"),
    "lucasfilm": ("lucasfilm",),
    "blumhouse": ("blumhouse",),
    "aardman": ("aardman",),
    "laika": ("laika",),
    "a24": ("a24",),
    "amblin": ("amblin",),
    "lionsgate": ("lionsgate", "lions gate"),
    "warner bros": ("warner bros", "warner brothers"),
}
#: Surface forms of the generic classes (CR-Walker queries on them: "what genre do you like?").
CLASS_ALIASES: dict[str, tuple[str, ...]] = {
    "Actor": ("actor", "actors", "actress", "actresses", "cast", "star", "stars"),
    "Composer": ("composer", "composers", "soundtrack", "film score"),
    "Company": ("company", "companies", "studio", "studios", "production company"),
    "Director": ("director", "directors", "filmmaker", "filmmakers"),
    "Genre": ("genre", "genres", "kind of movie", "kind of movies", "type of movie", "type of movies"),
    "Time": ("decade", "decades", "era", "time period"),
    "Writer": ("writer", "writers", "screenwriter", "screenwriters", "author", "authors"),
}
#: Generic class entities, in id order.
CLASSES: tuple[str, ...] = ("Actor", "Composer", "Company", "Director", "Genre", "Time", "Writer")
#: Forward relations in id order (their reverses ``<rel>_rev`` follow in the same order).
FORWARD_RELATIONS: tuple[str, ...] = (
    "actor_of",
    "director_of",
    "writer_of",
    "composer_of",
    "genre_of",
    "time_of",
    "company_of",
    "is_a",
)
#: DBpedia relation (local name) -> KG relation; relations not listed are not used (see docs/kg.md).
DBPEDIA_RELATION_MAP: dict[str, str] = {
    "starring": "actor_of",
    "director": "director_of",
    "writer": "writer_of",
    "author": "writer_of",
    "musicComposer": "composer_of",
    "composer": "composer_of",
    "productionCompany": "company_of",
    "company": "company_of",
}
#: id2info field -> KG relation.
IMDB_RELATION_MAP: dict[str, str] = {"stars": "actor_of", "directors": "director_of", "writers": "writer_of"}
_NUMBER_WORDS = {
    1920: "twenties",
    1930: "thirties",
    1940: "forties",
    1950: "fifties",
    1960: "sixties",
    1970: "seventies",
    1980: "eighties",
    1990: "nineties",
}


@dataclass
class BuildConfig:
    """Build the movie knowledge graph (CR-Walker §3.1 / Appendix C)."""

    datasets: str = field("../shared/datasets", "Folder with redial/, kg/ and movielens/ (read-only).")
    out: str = field("data/kg", "Output KG folder (entities.jsonl, kg.safetensors, manifest.json, movie_info.jsonl).")
    stats_out: str = field("results/kg_stats.json", "Where to write the Table-9-style stats JSON ('' = skip).")
    relations: list[str] = field(
        [r for r in FORWARD_RELATIONS[:-1] if r != "composer_of"],
        "Attribute relations to include (is_a is always added): " + ", ".join(FORWARD_RELATIONS[:-1]),
    )
    fuzzy_threshold: float = field(
        95.0, "rapidfuzz ratio (0-100) to accept a same-year ReDial<->MovieLens title match."
    )
    fuzzy_year_window: int = field(1, "Max |year difference| allowed for an exact-title MovieLens match.")
    progress: bool = field(True, "Show tqdm progress bars.")
    stats_only: bool = field(False, "Do not rebuild: print the stats table of the existing KG in --out.")


# ---------------------------------------------------------------------------------------------- helpers
def decade_of(year: int) -> str:
    """``1984`` -> ``"1980s"``."""
    return f"{year // 10 * 10}s"


def decade_aliases(decade: str) -> tuple[str, ...]:
    """Surface forms of a decade: ``"1980s"`` -> ``1980s, 1980's, 80s, 80's, eighties, the 80s, ...``.

    Two-digit forms are only given for the 1920s-1990s (``"10s"`` or ``"00s"`` would be ambiguous).
    """
    start = int(decade[:-1])
    forms = {f"{start}s", f"{start}'s", f"the {start}s", f"the {start}'s"}
    if start in _NUMBER_WORDS:
        short = f"{start % 100:02d}"
        word = _NUMBER_WORDS[start]
        forms |= {f"{short}s", f"{short}'s", f"the {short}s", f"the {short}'s", word, f"the {word}"}
    if start == 2000:
        forms |= {"noughties", "the noughties", "two thousands", "the two thousands"}
    return tuple(sorted(forms))


def movie_aliases(title: str, year: int | None, extra_titles: list[str]) -> tuple[str, ...]:
    """Lower-cased surface forms of a movie: title, title with year, without a leading article,
    MovieLens titles/alternative titles, and the punctuation-free form of each."""
    forms: set[str] = set()
    for t in [title, *extra_titles]:
        t = unquote(t).strip().lower()  # ReDial writes "?" as "%3F"
        if not t:
            continue
        forms.add(t)
        for art in ("the ", "a ", "an "):
            if t.startswith(art) and len(t) > len(art) + 1:
                forms.add(t[len(art) :])
        if year is not None:
            forms.add(f"{t} ({year})")
    forms |= {normalize_text(f) for f in list(forms)}
    return tuple(sorted(f for f in forms if f))


def _pick_display(forms: Counter) -> str:
    """Most frequent surface form; ties prefer mixed case (not ``"ALL CAPS"``), then accented forms
    (``"Penélope"`` over ``"Penelope"``), then lexicographic order -- deterministic."""

    def rank(kv: tuple[str, int]) -> tuple:
        form, n = kv
        flat_case = form.isupper() or form.islower()
        return (-n, flat_case, -sum(ord(c) > 127 for c in form), form)

    return min(forms.items(), key=rank)[0]


@dataclass
class _Attr:
    """Accumulates one attribute entity while reading the sources."""

    type: str
    forms: Counter = dataclasses.field(default_factory=Counter)
    classes: set[str] = dataclasses.field(default_factory=set)
    sources: set[str] = dataclasses.field(default_factory=set)
    aliases: set[str] = dataclasses.field(default_factory=set)


def title_key(title: str) -> str:
    """Compact matching key: percent-escapes decoded, :func:`normalize_title`, leading article and spaces
    removed (``"The Creature from the Black Lagoon"`` == ``"Creature From the Black Lagoon"``)."""
    key = normalize_title(unquote(title))
    for art in ("the ", "a ", "an "):
        if key.startswith(art) and len(key) > len(art):
            key = key[len(art) :]
            break
    return key.replace(" ", "")


def titles_consistent(a: str, b: src.MovieLensMovie, min_score: float = 60.0) -> bool:
    """Whether title ``a`` plausibly names MovieLens movie ``b`` (used to veto wrong IMDb ids):
    rapidfuzz ``token_set_ratio`` of the normalised titles (so "Pets" ~ "The Secret Life of Pets") or
    ``ratio`` of the space-free keys (so "Slapshot" ~ "Slap Shot")."""
    na, ka = normalize_title(unquote(a)), title_key(a)
    return any(
        fuzz.token_set_ratio(na, normalize_title(t)) >= min_score or fuzz.ratio(ka, title_key(t)) >= 90
        for t in (b.title, *b.alt_titles)
    )


_DIGITS_RE = re.compile(r"\d+")


class MovieLensLinker:
    """Links ReDial movies to MovieLens movies (first rule that fires wins):

    1. ``imdb_id``: same IMDb id (``links.csv``), if the titles are consistent (:func:`titles_consistent`);
    2. ``exact``: same :func:`title_key`, year equal (or within ``year_window``, nearest first);
    3. ``fuzzy``: same year, rapidfuzz ``ratio`` of the keys >= ``threshold`` and the same numbers in
       both titles (so "A Haunted House" never matches "A Haunted House 2").

    Args:
        movies: MovieLens movies of one source (ml-latest-small or ml-100k).
        threshold: rapidfuzz ``ratio`` cut-off for fuzzy matches.
        year_window: Max year difference for exact-title matches.
    """

    def __init__(self, movies: list[src.MovieLensMovie], threshold: float, year_window: int):
        self.threshold = threshold
        self.year_window = year_window
        self.by_imdb = {m.imdb_id: m for m in movies if m.imdb_id}
        self.exact: dict[tuple[str, int | None], src.MovieLensMovie] = {}
        self.by_year: dict[int, list[tuple[str, src.MovieLensMovie]]] = defaultdict(list)
        for m in sorted(movies, key=lambda x: x.ml_id):
            for t in (m.title, *m.alt_titles):
                key = title_key(t)
                self.exact.setdefault((key, m.year), m)
                if m.year is not None:
                    self.by_year[m.year].append((key, m))

    def link_imdb(self, title: str, imdb_id: str | None) -> tuple[src.MovieLensMovie | None, str]:
        """``(movie, "imdb_id")``, ``(None, "imdb_id_mismatch")`` (id found, titles disagree) or ``(None, "none")``."""
        ml = self.by_imdb.get(imdb_id) if imdb_id else None
        if ml is None:
            return None, "none"
        return (ml, "imdb_id") if titles_consistent(title, ml) else (None, "imdb_id_mismatch")

    def link(self, title: str, year: int | None, imdb_id: str | None) -> tuple[src.MovieLensMovie | None, str]:
        """Return ``(movie or None, method)`` with method in ``imdb_id|exact|fuzzy|none``."""
        ml, method = self.link_imdb(title, imdb_id)
        if ml is not None:
            return ml, method
        key = title_key(title)
        if year is None:
            hit = self.exact.get((key, None))
            return (hit, "exact") if hit else (None, "none")
        for dy in sorted(range(-self.year_window, self.year_window + 1), key=lambda d: (abs(d), d)):
            if (key, year + dy) in self.exact:
                return self.exact[(key, year + dy)], "exact"
        bucket = self.by_year.get(year)
        if bucket:
            digits = _DIGITS_RE.findall(key)
            for _, _, i in process.extract(
                key, [k for k, _ in bucket], scorer=fuzz.ratio, score_cutoff=self.threshold, limit=5
            ):
                if _DIGITS_RE.findall(bucket[i][0]) == digits:
                    return bucket[i][1], "fuzzy"
        return None, "none"


def resolve_year(
    movie: RedialMovie, rec: src.ImdbInfo | None, dbp: src.DBpediaFacts, ml_small: MovieLensLinker
) -> tuple[int | None, str]:
    """Release year of a ReDial movie and where it came from.

    Order: the ReDial title, the ``id2info`` title, the MovieLens movie with the same IMDb id, the
    year in the DBpedia URI (``Headhunter_(2009_film)``). Returns ``(year, source)``, source in
    ``redial_title|id2info_title|movielens_imdb_id|dbpedia_uri|none``.
    """
    if movie.year is not None:
        return movie.year, "redial_title"
    if rec is not None:
        if (y := split_title_year(rec.name)[1]) is not None:
            return y, "id2info_title"
        ml, _ = ml_small.link_imdb(movie.title, rec.imdb_id)
        if ml is not None and ml.year is not None:
            return ml.year, "movielens_imdb_id"
    if (y := dbp.uri_year(movie.redial_id)) is not None:
        return y, "dbpedia_uri"
    return None, "none"


# ---------------------------------------------------------------------------------------------- build
@dataclass
class BuildResult:
    """Everything :func:`build_kg` produces (the KG plus side tables)."""

    kg: KnowledgeGraph
    movie_info: list[dict]
    report: dict  # linking / source coverage numbers (also merged into the stats)


def build_kg(cfg: BuildConfig) -> BuildResult:
    """Read the sources under ``cfg.datasets`` and assemble the KG (no files written).

    Raises:
        FileNotFoundError: if a source file is missing (message names it).
        DataFormatError: if a source file is malformed (message names file and line/key).
        ValueError: on an unknown relation in ``cfg.relations``.
    """
    root = Path(cfg.datasets)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: datasets folder not found (pass --datasets PATH)")
    bad = [r for r in cfg.relations if r not in FORWARD_RELATIONS[:-1]]
    if bad:
        raise ValueError(f"unknown relation(s) {bad}; choose from {list(FORWARD_RELATIONS[:-1])}")
    wanted = set(cfg.relations)
    pbar = not cfg.progress

    movies: list[RedialMovie] = load_redial_movies(root / src.REDIAL_MOVIES)
    redial_ids = {m.redial_id for m in movies}
    titles = {m.redial_id: m.title for m in movies}
    info = src.load_id2info(root / src.IMDB_ID2INFO)
    dbp = src.load_dbpedia(root, redial_ids)
    ml_linkers = {
        "ml-latest-small": MovieLensLinker(
            src.load_movielens_small((root / src.ML_SMALL_MOVIES).parent),
            cfg.fuzzy_threshold,
            cfg.fuzzy_year_window,
        ),
        "ml-100k": MovieLensLinker(
            src.load_movielens_100k((root / src.ML_100K_ITEMS).parent), cfg.fuzzy_threshold, cfg.fuzzy_year_window
        ),
    }

    # id2info was scraped by title search; a record whose IMDb id is a MovieLens movie with an
    # unrelated title (e.g. "The Mask (1988)" -> Halloween 4) describes another film: drop it.
    rejected = sorted(
        rid
        for rid, rec in info.items()
        if rid in redial_ids
        and rec.imdb_id
        and ml_linkers["ml-latest-small"].link_imdb(titles[rid], rec.imdb_id)[1] == "imdb_id_mismatch"
    )
    info = {rid: rec for rid, rec in info.items() if rid not in set(rejected)}

    attrs: dict[tuple[str, str], _Attr] = {}  # (type, key) -> accumulator
    facts: set[tuple[str, tuple[str, str], int]] = set()  # (relation, attr key, redial id)
    movie_year: dict[int, int | None] = {}
    movie_extra_titles: dict[int, list[str]] = {}
    link_counts: Counter = Counter()
    year_sources: Counter = Counter()
    genre_sources: Counter = Counter()

    def add(rel: str, name: str, rid: int, source: str) -> tuple[str, str] | None:
        if rel not in wanted:
            return None
        etype = RELATION_TARGET_TYPE[rel]
        if etype == "person":
            key = src.name_key(name)
        elif etype == "company":
            key = src.company_key(name)
        else:
            key = name
        if not key:
            return None
        akey = (etype, key)
        a = attrs.setdefault(akey, _Attr(etype))
        a.forms[src.strip_disambiguator(name) if etype in {"person", "company"} else name] += 1
        a.classes.add(RELATION_CLASS[rel])
        a.sources.add(source)
        facts.add((rel, akey, rid))
        return akey

    for m in tqdm(movies, desc="movies", unit="movie", disable=pbar, file=sys.stderr):
        rid = m.redial_id
        rec = info.get(rid)
        year, year_src = resolve_year(m, rec, dbp, ml_linkers["ml-latest-small"])
        year_sources[year_src] += 1
        movie_year[rid] = year
        extra: list[str] = []
        # --- persons from id2info
        if rec is not None:
            for fld, rel in IMDB_RELATION_MAP.items():
                for name in getattr(rec, fld):
                    add(rel, name, rid, "imdb")
        # --- DBpedia persons / companies
        for drel, label in dbp.edges.get(rid, ()):
            rel = DBPEDIA_RELATION_MAP.get(drel)
            if rel is not None:
                add(rel, label, rid, "dbpedia")
        # --- genres: MovieLens (linked) + id2info
        genres: set[str] = set()
        for ml_name, linker in ml_linkers.items():
            ml, method = linker.link(m.title, year, rec.imdb_id if rec else None)
            link_counts[f"{ml_name}:{method}"] += 1
            if ml is None:
                continue
            extra += [ml.title, *ml.alt_titles]
            for g in ml.genres:
                if g in MOVIELENS_GENRE_MAP:
                    genres.add(MOVIELENS_GENRE_MAP[g])
                    genre_sources["movielens"] += 1
        if rec is not None:
            for g in rec.genres:
                if g.lower() in IMDB_GENRE_MAP:
                    genres.add(IMDB_GENRE_MAP[g.lower()])
                    genre_sources["imdb"] += 1
        for g in sorted(genres):
            akey = add("genre_of", g, rid, "movielens/imdb")
            if akey is not None:
                attrs[akey].aliases |= set(GENRE_ALIASES.get(g, ()))
        # --- time
        if year is not None:
            d = decade_of(year)
            akey = add("time_of", d, rid, "title")
            if akey is not None:
                attrs[akey].aliases |= set(decade_aliases(d))
        movie_extra_titles[rid] = extra

    # ------------------------------------------------------------------ entity ids
    entities: list[Entity] = []
    used_classes = sorted({c for a in attrs.values() for c in a.classes})
    for c in CLASSES:
        if c in used_classes:
            entities.append(Entity(len(entities), c, "class", (), tuple(sorted(CLASS_ALIASES[c]))))
    for m in movies:
        year = movie_year[m.redial_id]
        entities.append(
            Entity(
                len(entities),
                m.name,
                "movie",
                ("Movie",),
                movie_aliases(m.title, year, movie_extra_titles[m.redial_id]),
                m.redial_id,
                year,
            )
        )
    type_rank = {t: i for i, t in enumerate(ENTITY_TYPES)}
    attr_order = sorted(attrs.items(), key=lambda kv: (type_rank[kv[1].type], _pick_display(kv[1].forms), kv[0][1]))
    attr_id: dict[tuple[str, str], int] = {}
    for akey, a in attr_order:
        name = _pick_display(a.forms)
        aliases = {f.lower() for f in a.forms} | {normalize_text(f) for f in a.forms} | a.aliases
        if a.type == "company":
            aliases |= set(COMPANY_ALIASES.get(akey[1], ()))
            if len(akey[1].split()) > 1:
                aliases.add(akey[1])
        attr_id[akey] = len(entities)
        entities.append(
            Entity(len(entities), name, a.type, tuple(sorted(a.classes)), tuple(sorted(x for x in aliases if x)))
        )
    class_id = {e.name: e.id for e in entities if e.type == "class"}
    movie_id = {e.redial_id: e.id for e in entities if e.type == "movie"}

    # ------------------------------------------------------------------ edges
    relations = [r for r in FORWARD_RELATIONS if r in wanted or r == "is_a"]
    relations = relations + [f"{r}_rev" for r in relations]
    rel_index = {r: i for i, r in enumerate(relations)}
    triples: set[tuple[int, int, int]] = set()
    for rel, akey, rid in facts:
        s, t = attr_id[akey], movie_id[rid]
        triples.add((rel_index[rel], s, t))
        triples.add((rel_index[rel + "_rev"], t, s))
    for e in entities:
        if e.type in {"class", "movie"}:
            continue
        for c in e.classes:
            triples.add((rel_index["is_a"], e.id, class_id[c]))
            triples.add((rel_index["is_a_rev"], class_id[c], e.id))
    arr = np.array(sorted(triples), dtype=np.int64).reshape(-1, 3)

    hashes = {p: sha256_file(root / p) for p in src.ALL_SOURCES if (root / p).exists()}
    kg = KnowledgeGraph(entities, relations, edge_index=arr[:, 1:].T.copy(), edge_type=arr[:, 0].copy(), sources=hashes)
    report = {
        "movies_with_dbpedia_node": dbp.n_movies_mapped,
        "movies_with_id2info": sum(1 for m in movies if m.redial_id in info),
        "id2info_records_rejected": len(rejected),
        "id2info_rejected_examples": [titles[r] for r in rejected[:10]],
        "movies_with_year": sum(1 for y in movie_year.values() if y is not None),
        "movie_year_sources": dict(sorted(year_sources.items())),
        "movielens_links": dict(sorted(link_counts.items())),
        "genre_assignments_from": dict(sorted(genre_sources.items())),
        "persons_by_source": dict(
            sorted(Counter("+".join(sorted(a.sources)) for a in attrs.values() if a.type == "person").items())
        ),
    }
    kg.stats = kg_stats(kg) | {"build_report": report}
    return BuildResult(kg=kg, movie_info=movie_info_rows(kg, movies, info, facts, attr_id), report=report)


def movie_info_rows(
    kg: KnowledgeGraph,
    movies: list[RedialMovie],
    info: dict[int, src.ImdbInfo],
    facts: set[tuple[str, tuple[str, str], int]],
    attr_id: dict[tuple[str, str], int],
) -> list[dict]:
    """Rows of ``movie_info.jsonl`` (schema: :data:`kg_build.schema.MOVIE_INFO_FILE`).

    People are KG display names: ``id2info`` order first (billing order), then DBpedia-only names sorted.
    """
    by_movie: dict[int, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
    for rel, akey, rid in facts:
        by_movie[rid][rel].add(attr_id[akey])
    names = [e.name for e in kg.entities]
    rows = []
    for m in movies:
        e = kg.entities[kg.by_redial_id[m.redial_id]]
        rec = info.get(m.redial_id)
        rels = by_movie.get(m.redial_id, {})

        def people(rel: str, field_: str, rels=rels, rec=rec) -> list[str]:
            ids = rels.get(rel, set())
            out: list[str] = []
            if rec is not None:
                for n in getattr(rec, field_):
                    aid = attr_id.get(("person", src.name_key(n)))
                    if aid in ids and names[aid] not in out:
                        out.append(names[aid])
            out += sorted({names[i] for i in ids} - set(out))
            return out

        rows.append(
            {
                "entity": e.id,
                "redial_id": m.redial_id,
                "name": e.name,
                "year": e.year,
                "genres": sorted(names[i] for i in rels.get("genre_of", ())),
                "directors": people("director_of", "directors"),
                "writers": people("writer_of", "writers"),
                "stars": people("actor_of", "stars"),
                "plot": rec.plot if rec else None,
                "imdb_id": rec.imdb_id if rec else None,
            }
        )
    return rows


def write_kg(result: BuildResult, out: str | Path) -> None:
    """Write the KG folder (atomic per file) plus ``movie_info.jsonl``."""
    out = Path(out)
    result.kg.save(out)
    write_jsonl(out / MOVIE_INFO_FILE, result.movie_info)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (``python -m kg_build build [--datasets D] [--out O] ...``)."""
    cfg = parse_config(BuildConfig, argv)
    if cfg.stats_only:
        kg = KnowledgeGraph.load(cfg.out)
        print(kg.describe())
        print(format_stats_table(kg.stats))
        return 0
    t0 = time.perf_counter()
    result = build_kg(cfg)
    write_kg(result, cfg.out)
    seconds = time.perf_counter() - t0
    stats = result.kg.stats
    print(result.kg.describe())
    print(format_stats_table(stats))
    print(f"wrote {cfg.out}/ in {seconds:.1f} s")
    if cfg.stats_out:
        payload = dict(stats) | {"build_seconds": round(seconds, 2)}
        root = Path(cfg.datasets)
        write_results(
            cfg.stats_out,
            payload,
            config=to_dict(cfg),
            data_files=[root / p for p in src.ALL_SOURCES if (root / p).exists()],
        )
        print(f"wrote {cfg.stats_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
