"""On-disk schema of the movie knowledge graph and its in-memory view.

A KG folder (default ``data/kg``) holds:

``entities.jsonl``
    One entity per line, ordered by ``id`` (0..N-1, contiguous)::

        {"id": 12, "name": "The Terminator (1984)", "type": "movie", "classes": ["Movie"],
         "aliases": ["the terminator", "terminator"], "redial_id": 78418, "year": 1984}

    ``type`` is one of :data:`ENTITY_TYPES`; ``classes`` names the generic-class entities the
    entity ``is_a`` (a person can be both ``Actor`` and ``Director``); ``aliases`` are extra
    surface forms for the entity linker (lower-cased); ``redial_id`` only for movies; ``year``
    only for movies with a year. Generic classes come first, then movies (sorted by ReDial id),
    then attributes sorted by (type, name), so ids are deterministic.

``kg.safetensors``
    ``edge_index`` int64 ``[2, E]`` (source, target), ``edge_type`` int64 ``[E]`` (index into
    ``manifest.json["relations"]``), ``entity_type`` int64 ``[N]`` (index into
    ``manifest.json["entity_types"]``). Edges include reverse relations, sorted by
    (type, source, target), no duplicates. Ready for ``torch_geometric.nn.RGCNConv``.

``manifest.json``
    ``{"schema_version", "entity_types", "relations", "n_entities", "n_edges", "stats", "sources"}``
    where ``relations[k]`` names relation ``k`` (a forward relation ``X`` pointing attribute ->
    movie or attribute -> class, and its reverse ``X_rev``), ``stats`` is the Table-9-style
    count table and ``sources`` maps input files to their SHA-256.

``movie_info.jsonl`` (:data:`MOVIE_INFO_FILE`, written by ``python -m kg_build build``)
    One row per movie, ordered by entity id, for UI cards and generation::

        {"entity": 12, "redial_id": 78418, "name": "The Terminator (1984)", "year": 1984,
         "genres": ["Action", "Sci-Fi"], "directors": ["James Cameron"], "writers": [...],
         "stars": ["Arnold Schwarzenegger", ...], "plot": "..." | null, "imdb_id": "tt0088247" | null}

    People are KG entity names (billing order from IMDb first); ``genres`` are KG genre names.
    Read it with :func:`read_movie_info`.

Relations (:data:`RELATION_DOCS`) follow CR-Walker Appendix C: ``actor_of``, ``director_of``,
``writer_of``, ``composer_of``, ``genre_of``, ``time_of``, ``company_of`` point attribute -> movie,
``is_a`` points attribute -> generic class; ``<rel>_rev`` is the reverse of each.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

SCHEMA_VERSION = 1
#: Entity types, in the order used by ``entity_type`` ids.
ENTITY_TYPES: tuple[str, ...] = ("class", "movie", "person", "genre", "time", "subject", "company", "other")
#: Entity types that count as attributes (hop-1 entities of a recommend act).
ATTRIBUTE_TYPES: frozenset[str] = frozenset(t for t in ENTITY_TYPES if t not in {"class", "movie"})
#: What each entity type holds.
ENTITY_TYPE_DOCS: dict[str, str] = {
    "class": "generic class (Actor, Director, Writer, Composer, Genre, Time, Company); target of is_a",
    "movie": "candidate item: one ReDial movie (all 6,924, even without edges)",
    "person": "actor / director / writer (+ composer if built with it); DBpedia + IMDb merged by normalised name",
    "genre": "one of the 18 MovieLens genres",
    "time": "decade of release, e.g. '1980s'",
    "subject": "DBpedia subject category (not in the available data; unused)",
    "company": "production company (DBpedia productionCompany/company)",
    "other": "anything else (unused)",
}
#: Forward relations and their meaning (each has a reverse ``<rel>_rev``).
RELATION_DOCS: dict[str, str] = {
    "actor_of": "person -> movie: the person acts in the movie",
    "director_of": "person -> movie: the person directed the movie",
    "writer_of": "person -> movie: the person wrote the screenplay or the source work",
    "composer_of": "person -> movie: the person composed the film music",
    "genre_of": "genre -> movie: the movie has the genre",
    "time_of": "time -> movie: the movie was released in that decade",
    "company_of": "company -> movie: the company produced the movie",
    "is_a": "attribute -> generic class (e.g. person -> Actor, genre -> Genre)",
}
#: Forward attribute relation -> entity type of its source (attribute) end.
RELATION_TARGET_TYPE: dict[str, str] = {
    "actor_of": "person",
    "director_of": "person",
    "writer_of": "person",
    "composer_of": "person",
    "genre_of": "genre",
    "time_of": "time",
    "company_of": "company",
}
#: Forward attribute relation -> generic class its source entity ``is_a``.
RELATION_CLASS: dict[str, str] = {
    "actor_of": "Actor",
    "director_of": "Director",
    "writer_of": "Writer",
    "composer_of": "Composer",
    "genre_of": "Genre",
    "time_of": "Time",
    "company_of": "Company",
}
#: Movie metadata table written next to the KG (see module docstring).
MOVIE_INFO_FILE = "movie_info.jsonl"
REVERSE_SUFFIX = "_rev"


def reverse_relation(name: str) -> str:
    """``"actor_of"`` <-> ``"actor_of_rev"``."""
    return name[: -len(REVERSE_SUFFIX)] if name.endswith(REVERSE_SUFFIX) else name + REVERSE_SUFFIX


def read_movie_info(folder: str | Path) -> dict[int, dict]:
    """Read ``<folder>/movie_info.jsonl`` as ``{entity_id: row}`` (schema in the module docstring)."""
    from data_scripts.utils.io import read_jsonl

    path = Path(folder) / MOVIE_INFO_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: build the KG first with `python -m kg_build build --out {folder}`")
    return {int(r["entity"]): r for r in read_jsonl(path)}


@dataclass(frozen=True)
class Entity:
    """One KG node (see module docstring for the JSON form)."""

    id: int
    name: str
    type: str
    classes: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    redial_id: int | None = None
    year: int | None = None

    def to_json(self) -> dict:
        d = {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "classes": list(self.classes),
            "aliases": list(self.aliases),
        }
        if self.redial_id is not None:
            d["redial_id"] = self.redial_id
        if self.year is not None:
            d["year"] = self.year
        return d

    @classmethod
    def from_json(cls, d: dict) -> Entity:
        return cls(
            id=int(d["id"]),
            name=d["name"],
            type=d["type"],
            classes=tuple(d.get("classes", ())),
            aliases=tuple(d.get("aliases", ())),
            redial_id=d.get("redial_id"),
            year=d.get("year"),
        )


@dataclass
class KnowledgeGraph:
    """In-memory KG: entities plus typed edges (numpy arrays; torch tensors via :meth:`tensors`)."""

    entities: list[Entity]
    relations: list[str]
    edge_index: np.ndarray  # int64 [2, E]
    edge_type: np.ndarray  # int64 [E]
    stats: dict = field(default_factory=dict)
    sources: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for i, e in enumerate(self.entities):
            if e.id != i:
                raise ValueError(f"entity ids must be contiguous from 0; position {i} has id {e.id}")
        if e_bad := [t for t in {e.type for e in self.entities} if t not in ENTITY_TYPES]:
            raise ValueError(f"unknown entity type(s) {e_bad}; allowed: {ENTITY_TYPES}")

    # ------------------------------------------------------------------ lookups
    def __len__(self) -> int:
        return len(self.entities)

    @property
    def num_relations(self) -> int:
        return len(self.relations)

    @cached_property
    def entity_type_ids(self) -> np.ndarray:
        return np.array([ENTITY_TYPES.index(e.type) for e in self.entities], dtype=np.int64)

    @cached_property
    def by_redial_id(self) -> dict[int, int]:
        """ReDial ``movieId`` -> entity id."""
        return {e.redial_id: e.id for e in self.entities if e.redial_id is not None}

    @cached_property
    def movie_ids(self) -> np.ndarray:
        """Entity ids of all candidate items (movies), ascending."""
        return np.array([e.id for e in self.entities if e.type == "movie"], dtype=np.int64)

    @cached_property
    def class_ids(self) -> dict[str, int]:
        """Generic class name (``"Actor"``) -> entity id."""
        return {e.name: e.id for e in self.entities if e.type == "class"}

    @cached_property
    def relation_ids(self) -> dict[str, int]:
        """Relation name -> relation id (index into :attr:`relations`)."""
        return {r: i for i, r in enumerate(self.relations)}

    @cached_property
    def by_name(self) -> dict[str, int]:
        """Entity name -> entity id (first entity of that name; names are unique per type)."""
        out: dict[str, int] = {}
        for e in self.entities:
            out.setdefault(e.name, e.id)
        return out

    def forward_relations(self) -> list[str]:
        """Relation names without the reverses (``is_a`` included)."""
        return [r for r in self.relations if not r.endswith(REVERSE_SUFFIX)]

    def edge_counts(self) -> dict[str, int]:
        """Number of edges per relation name (reverses included)."""
        counts = np.bincount(self.edge_type, minlength=len(self.relations)) if self.edge_type.size else []
        return {r: int(counts[i]) if len(counts) else 0 for i, r in enumerate(self.relations)}

    def ids_of_type(self, type_: str) -> np.ndarray:
        return np.array([e.id for e in self.entities if e.type == type_], dtype=np.int64)

    @cached_property
    def _adjacency(self) -> dict[int, list[tuple[int, int]]]:
        adj: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for s, t, r in zip(
            self.edge_index[0].tolist(), self.edge_index[1].tolist(), self.edge_type.tolist(), strict=True
        ):
            adj[s].append((r, t))
        return adj

    def out_edges(self, eid: int) -> list[tuple[int, int]]:
        """``[(relation_id, target_id), ...]`` leaving ``eid`` (reverse relations included)."""
        return self._adjacency.get(eid, [])

    def neighbors(self, eid: int) -> set[int]:
        """All entities one edge away from ``eid`` (either direction, as reverses are stored)."""
        return {t for _, t in self.out_edges(eid)}

    def tensors(self):
        """``(edge_index, edge_type)`` as torch int64 tensors."""
        import torch

        return torch.from_numpy(self.edge_index.copy()), torch.from_numpy(self.edge_type.copy())

    # ------------------------------------------------------------------ IO
    def save(self, folder: str | Path) -> None:
        """Write ``entities.jsonl``, ``kg.safetensors`` and ``manifest.json`` atomically."""
        from safetensors.numpy import save as st_save

        from data_scripts.utils.io import atomic_write, write_json, write_jsonl

        folder = Path(folder)
        write_jsonl(folder / "entities.jsonl", (e.to_json() for e in self.entities))
        blob = st_save(
            {
                "edge_index": np.ascontiguousarray(self.edge_index, dtype=np.int64),
                "edge_type": np.ascontiguousarray(self.edge_type, dtype=np.int64),
                "entity_type": self.entity_type_ids,
            }
        )
        with atomic_write(folder / "kg.safetensors", "wb") as fh:
            fh.write(blob)
        write_json(
            folder / "manifest.json",
            {
                "schema_version": SCHEMA_VERSION,
                "entity_types": list(ENTITY_TYPES),
                "relations": self.relations,
                "n_entities": len(self.entities),
                "n_edges": int(self.edge_type.shape[0]),
                "stats": self.stats,
                "sources": self.sources,
            },
        )

    @classmethod
    def load(cls, folder: str | Path) -> KnowledgeGraph:
        """Load a KG folder written by :meth:`save` (safetensors + JSON only; no pickle)."""
        from safetensors.numpy import load_file

        from data_scripts.utils.io import read_json, read_jsonl

        folder = Path(folder)
        if not (folder / "manifest.json").exists():
            raise FileNotFoundError(
                f"{folder}/manifest.json not found: build the KG first with `python -m kg_build build --out {folder}`"
            )
        manifest = read_json(folder / "manifest.json")
        if manifest.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(
                f"{folder}: KG schema version {manifest.get('schema_version')} != {SCHEMA_VERSION}; rebuild it"
            )
        ents = [Entity.from_json(d) for d in read_jsonl(folder / "entities.jsonl")]
        arrays = load_file(str(folder / "kg.safetensors"))
        kg = cls(
            entities=ents,
            relations=list(manifest["relations"]),
            edge_index=arrays["edge_index"],
            edge_type=arrays["edge_type"],
            stats=manifest.get("stats", {}),
            sources=manifest.get("sources", {}),
        )
        if len(ents) != manifest["n_entities"]:
            raise ValueError(f"{folder}: entities.jsonl has {len(ents)} rows, manifest says {manifest['n_entities']}")
        return kg

    def describe(self) -> str:
        """One line summary, e.g. for logs."""
        counts: dict[str, int] = defaultdict(int)
        for e in self.entities:
            counts[e.type] += 1
        return f"KG: {len(self)} entities ({dict(counts)}), {self.edge_type.shape[0]} edges, {self.num_relations} relations"


def tiny_kg_for_tests() -> KnowledgeGraph:
    """A 16-entity KG used by unit tests across the package (no dataset needed).

    Movies: The Terminator (1984), Terminator 2 (1991), Alien (1979), Aliens (1986),
    Superbad (2007); persons James Cameron (director), Arnold Schwarzenegger (actor),
    Sigourney Weaver (actor); genres Action, Horror, Comedy; times 1980s; classes.
    """
    names = [
        ("Actor", "class", (), (), None, None),
        ("Director", "class", (), (), None, None),
        ("Genre", "class", (), (), None, None),
        ("Time", "class", (), (), None, None),
        ("The Terminator (1984)", "movie", ("Movie",), ("the terminator", "terminator"), 1001, 1984),
        ("Terminator 2: Judgment Day (1991)", "movie", ("Movie",), ("terminator 2", "t2"), 1002, 1991),
        ("Alien (1979)", "movie", ("Movie",), ("alien",), 1003, 1979),
        ("Aliens (1986)", "movie", ("Movie",), ("aliens",), 1004, 1986),
        ("Superbad (2007)", "movie", ("Movie",), ("superbad",), 1005, 2007),
        ("Arnold Schwarzenegger", "person", ("Actor",), ("arnold schwarzenegger",), None, None),
        ("James Cameron", "person", ("Director",), ("james cameron",), None, None),
        ("Sigourney Weaver", "person", ("Actor",), ("sigourney weaver",), None, None),
        ("Action", "genre", ("Genre",), ("action",), None, None),
        ("Horror", "genre", ("Genre",), ("horror", "scary"), None, None),
        ("Comedy", "genre", ("Genre",), ("comedy", "funny"), None, None),
        ("1980s", "time", ("Time",), ("1980s", "eighties", "80s"), None, None),
    ]
    ents = [Entity(i, n, t, c, a, r, y) for i, (n, t, c, a, r, y) in enumerate(names)]
    idx = {e.name: e.id for e in ents}
    relations = [
        "actor_of",
        "director_of",
        "genre_of",
        "time_of",
        "is_a",
        "actor_of_rev",
        "director_of_rev",
        "genre_of_rev",
        "time_of_rev",
        "is_a_rev",
    ]
    fwd = [
        ("Arnold Schwarzenegger", "actor_of", "The Terminator (1984)"),
        ("Arnold Schwarzenegger", "actor_of", "Terminator 2: Judgment Day (1991)"),
        ("James Cameron", "director_of", "The Terminator (1984)"),
        ("James Cameron", "director_of", "Terminator 2: Judgment Day (1991)"),
        ("James Cameron", "director_of", "Aliens (1986)"),
        ("Sigourney Weaver", "actor_of", "Alien (1979)"),
        ("Sigourney Weaver", "actor_of", "Aliens (1986)"),
        ("Action", "genre_of", "The Terminator (1984)"),
        ("Action", "genre_of", "Terminator 2: Judgment Day (1991)"),
        ("Action", "genre_of", "Aliens (1986)"),
        ("Horror", "genre_of", "Alien (1979)"),
        ("Comedy", "genre_of", "Superbad (2007)"),
        ("1980s", "time_of", "The Terminator (1984)"),
        ("1980s", "time_of", "Aliens (1986)"),
    ] + [(e.name, "is_a", c) for e in ents for c in e.classes if c in idx]
    triples = sorted(
        {(relations.index(r), idx[s], idx[t]) for s, r, t in fwd}
        | {(relations.index(r + "_rev"), idx[t], idx[s]) for s, r, t in fwd}
    )
    arr = np.array(triples, dtype=np.int64).reshape(-1, 3)
    return KnowledgeGraph(ents, relations, edge_index=arr[:, 1:].T.copy(), edge_type=arr[:, 0].copy())


def tiny_kg_with_movies(extra: list[tuple[str, tuple[str, ...], int, int | None]]) -> KnowledgeGraph:
    """:func:`tiny_kg_for_tests` plus edge-less movies given as ``(name, aliases, redial_id, year)``."""
    tiny = tiny_kg_for_tests()
    ents = list(tiny.entities)
    for name, aliases, rid, year in extra:
        ents.append(Entity(len(ents), name, "movie", ("Movie",), tuple(aliases), rid, year))
    return KnowledgeGraph(ents, tiny.relations, tiny.edge_index.copy(), tiny.edge_type.copy())
