"""Table-9-style statistics of a KG (CR-Walker Appendix C) and the paper's reference numbers.

:func:`kg_stats` returns the integer keys required by ``results/kg_stats.json``::

    {"entities", "movies", "persons", "genres", "times", "generic_classes", "relation_types", "edges"}

where ``relation_types`` counts relation types including reverses (CR-Walker's ReDial KG has 12:
time, director, starring, genre, subject, belong and their reverses) and ``edges`` counts edges
including reverses and ``is_a`` edges. Further keys: ``companies``, ``edges_per_relation``,
``persons_per_class``, ``movies_isolated`` (movies without any edge), ``movies_without_person``,
``movies_without_genre`` and ``paper_reference``.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from data_scripts.utils.results import format_table
from kg_build.schema import KnowledgeGraph

#: CR-Walker's ReDial KG (paper §3.1/Appendix C, Table 9; approximate where the paper rounds).
PAPER_REFERENCE: dict[str, object] = {
    "entities": "~30K",
    "movies": 6924,
    "persons": "~12K",
    "genres": 18,
    "times": 12,
    "relation_types": 12,
    "edges": "~390K (incl. reverses)",
    "note": "reference code relations: time, director, starring, genre, subject, belong (+ reverses); "
    "entity types Movie, Actor, Director, Genre, Time, Subject + generic classes",
}


def kg_stats(kg: KnowledgeGraph) -> dict:
    """Count entities per type, edges per relation and coverage of movies (see module docstring)."""
    types = Counter(e.type for e in kg.entities)
    per_rel = kg.edge_counts()
    deg = np.zeros(len(kg), dtype=np.int64)
    if kg.edge_index.size:
        np.add.at(deg, kg.edge_index[0], 1)
    movie_ids = kg.movie_ids
    has: dict[str, set[int]] = {}
    for rel in ("actor_of", "director_of", "writer_of", "composer_of", "genre_of", "time_of"):
        if rel in kg.relation_ids:
            mask = kg.edge_type == kg.relation_ids[rel]
            has[rel] = set(kg.edge_index[1][mask].tolist())
    person_rels = [r for r in ("actor_of", "director_of", "writer_of", "composer_of") if r in has]
    with_person = set().union(*(has[r] for r in person_rels)) if person_rels else set()
    per_class = Counter(c for e in kg.entities if e.type == "person" for c in e.classes)
    return {
        "entities": len(kg),
        "movies": int(types["movie"]),
        "persons": int(types["person"]),
        "genres": int(types["genre"]),
        "times": int(types["time"]),
        "generic_classes": int(types["class"]),
        "companies": int(types["company"]),
        "relation_types": kg.num_relations,
        "edges": int(kg.edge_type.shape[0]),
        "edges_forward": int(sum(v for r, v in per_rel.items() if not r.endswith("_rev"))),
        "edges_per_relation": per_rel,
        "persons_per_class": dict(sorted(per_class.items())),
        "movies_isolated": int(sum(1 for m in movie_ids.tolist() if deg[m] == 0)),
        "movies_without_person": int(len(movie_ids) - len(with_person & set(movie_ids.tolist()))),
        "movies_without_genre": int(len(movie_ids) - len(has.get("genre_of", set()))),
        "movies_without_time": int(len(movie_ids) - len(has.get("time_of", set()))),
        "paper_reference": PAPER_REFERENCE,
    }


def format_stats_table(stats: dict) -> str:
    """Markdown table of ours vs. the paper (Table 9 form), then edges per relation."""
    rows = [
        {"statistic": k, "ours": stats.get(k, ""), "CR-Walker (paper)": PAPER_REFERENCE.get(k, "-")}
        for k in (
            "entities",
            "movies",
            "persons",
            "genres",
            "times",
            "generic_classes",
            "companies",
            "relation_types",
            "edges",
        )
    ]
    rows += [
        {
            "statistic": f"movies {k.removeprefix('movies_').replace('_', ' ')}",
            "ours": stats[k],
            "CR-Walker (paper)": "-",
        }
        for k in ("movies_isolated", "movies_without_person", "movies_without_genre", "movies_without_time")
        if k in stats
    ]
    table = format_table(rows, ["statistic", "ours", "CR-Walker (paper)"])
    rel_rows = [{"relation": r, "edges": n} for r, n in stats.get("edges_per_relation", {}).items()]
    return table + "\n\n" + format_table(rel_rows, ["relation", "edges"])
