"""Build the Movie MCR dataset from the movie KG (``data/kg``) and MovieLens ratings (``data/movielens``).

``python -m crwalker.policies.movie_data [--kg data/kg] [--movielens data/movielens/ml-latest-small]
[--out data/mcr/movie]`` writes the canonical MCR format of :mod:`data_scripts.mcr`
(``data.safetensors`` + ``meta.json``), read back by ``--dataset movie`` in the policy CLIs.

* Items: KG ``movie`` entities linked to MovieLens movies by normalised title + year (lower case,
  punctuation removed, a trailing ", The/A/An" moved to the front, leading article dropped).
* Attributes: KG entities with a forward attribute relation (``actor_of``, ``director_of``, ``writer_of``,
  ``genre_of``, ``time_of``, ``company_of``) into at least ``--min-attr-items`` linked items; items
  without any such attribute are dropped.
* Users / interactions: MovieLens ratings ``>= 4`` on linked items; users with at least
  ``--min-user-items`` interactions; each user's items are split 70/15/15 (train/valid/test) with a
  seeded permutation (every user keeps >= 1 train and >= 1 test item).
* ``friends`` / ``likes`` are empty (no such data).
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_scripts.mcr import MCRData, save_canonical
from data_scripts.utils.io import iter_jsonl, sha256_file
from kg_build.schema import KnowledgeGraph

ATTR_RELATIONS = ("actor_of", "director_of", "writer_of", "genre_of", "time_of", "company_of")
_ARTICLE = re.compile(r"^(.*), (the|a|an)$")


def norm_title(title: str) -> str:
    """Normalise a movie title for linking (see module docstring)."""
    t = re.sub(r"\s*\(\d{4}\)\s*$", "", title.strip().lower())
    m = _ARTICLE.match(t)
    if m:
        t = f"{m.group(2)} {m.group(1)}"
    t = re.sub(r"[^a-z0-9 ]+", " ", t)
    t = re.sub(r"^(the|a|an) ", "", " ".join(t.split()))
    return t


@dataclass(frozen=True)
class MovieIndex:
    """How the Movie MCR dataset maps onto the KG (the ids a chat policy needs).

    Attributes:
        items_kg: KG entity id of MCR item ``v`` (ascending KG ids).
        attrs_kg: KG entity id of MCR attribute ``p`` (ascending KG ids).
        item_attrs_kg: KG movie id -> its KG attribute ids (before the ``min_attr_items`` filter).
        kg_to_ml: KG movie id -> MovieLens item id (the title + year link).
    """

    items_kg: list[int]
    attrs_kg: list[int]
    item_attrs_kg: dict[int, set[int]]
    kg_to_ml: dict[int, int]

    def item_attrs(self) -> list[np.ndarray]:
        """``out[v]``: sorted MCR attribute ids of MCR item ``v`` (the dataset's ``item_attrs``)."""
        attr_index = {a: i for i, a in enumerate(self.attrs_kg)}
        return [
            np.array(sorted(attr_index[a] for a in self.item_attrs_kg[v] if a in attr_index)) for v in self.items_kg
        ]


def movie_index(kg: KnowledgeGraph, movielens_dir: str | Path, min_attr_items: int = 2) -> MovieIndex:
    """Link KG movies to MovieLens and choose the items and attributes (see module docstring)."""
    ml = Path(movielens_dir)
    movies = list(iter_jsonl(ml / "movies.jsonl"))
    key_to_ml: dict[tuple[str, int | None], list[int]] = defaultdict(list)
    for m in movies:
        key_to_ml[(norm_title(m.get("title_raw") or m["title"]), m.get("year"))].append(int(m["item_id"]))
    kg_to_ml: dict[int, int] = {}
    for e in kg.entities:
        if e.type == "movie":
            cands = key_to_ml.get((norm_title(e.name), e.year), [])
            if len(cands) == 1:
                kg_to_ml[e.id] = cands[0]
    rel_ids = {kg.relations.index(r) for r in ATTR_RELATIONS if r in kg.relations}
    src, dst = kg.edge_index
    item_attrs_kg: dict[int, set[int]] = defaultdict(set)
    for s, d, t in zip(src.tolist(), dst.tolist(), kg.edge_type.tolist(), strict=True):
        if t in rel_ids and d in kg_to_ml:
            item_attrs_kg[d].add(s)
    attr_count: dict[int, int] = defaultdict(int)
    for attrs in item_attrs_kg.values():
        for a in attrs:
            attr_count[a] += 1
    kept_attrs = sorted(a for a, c in attr_count.items() if c >= min_attr_items)
    kept = set(kept_attrs)
    items_kg = sorted(v for v, attrs in item_attrs_kg.items() if attrs & kept)
    return MovieIndex(items_kg, kept_attrs, dict(item_attrs_kg), kg_to_ml)


def build_movie_mcr(
    kg_dir: str | Path,
    movielens_dir: str | Path,
    min_attr_items: int = 2,
    min_user_items: int = 5,
    min_rating: float = 4.0,
    seed: int = 0,
) -> tuple[MCRData, dict]:
    """Return (dataset, link statistics)."""
    kg = KnowledgeGraph.load(kg_dir)
    ml = Path(movielens_dir)
    index = movie_index(kg, ml, min_attr_items)
    kg_to_ml, items_kg, kept_attrs = index.kg_to_ml, index.items_kg, index.attrs_kg
    ml_to_kg: dict[int, int] = {}
    for k, m in kg_to_ml.items():
        ml_to_kg.setdefault(m, k)
    item_index = {v: i for i, v in enumerate(items_kg)}
    user_items: dict[int, list[int]] = defaultdict(list)
    for r in iter_jsonl(ml / "ratings.jsonl"):
        if float(r["rating"]) >= min_rating:
            k = ml_to_kg.get(int(r["item_id"]))
            if k is not None and k in item_index:
                user_items[int(r["user_id"])].append(item_index[k])
    users = sorted(u for u, its in user_items.items() if len(set(its)) >= min_user_items)
    rng = np.random.default_rng(seed)
    splits: dict[str, list[tuple[int, int]]] = {"train": [], "valid": [], "test": []}
    for new_u, u in enumerate(users):
        its = np.array(sorted(set(user_items[u])))
        its = its[rng.permutation(len(its))]
        n = len(its)
        n_test = max(1, int(round(0.15 * n)))
        n_valid = int(round(0.15 * n))
        parts = {"test": its[:n_test], "valid": its[n_test : n_test + n_valid], "train": its[n_test + n_valid :]}
        for s, arr in parts.items():
            splits[s].extend((new_u, int(v)) for v in arr)
    data = MCRData(
        name="movie",
        n_users=len(users),
        n_items=len(items_kg),
        n_attrs=len(kept_attrs),
        item_attrs=index.item_attrs(),
        splits={s: np.asarray(p, dtype=np.int64).reshape(-1, 2) for s, p in splits.items()},
        friends=[np.zeros(0, np.int64) for _ in users],
        likes=[np.zeros(0, np.int64) for _ in users],
        attr_names=[kg.entities[a].name for a in kept_attrs],
        sources={
            str(p): sha256_file(p)
            for p in (
                Path(kg_dir) / "kg.safetensors",
                Path(kg_dir) / "entities.jsonl",
                ml / "movies.jsonl",
                ml / "ratings.jsonl",
            )
        },
    )
    stats = {
        "kg_movies": sum(e.type == "movie" for e in kg.entities),
        "linked_movies": len(kg_to_ml),
        "ml_users": len(user_items),
        "kept_users": len(users),
        **data.stats(),
    }
    return data, stats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Build data/mcr/movie from the movie KG and MovieLens ratings >= 4.")
    ap.add_argument("--kg", default="data/kg")
    ap.add_argument("--movielens", default="data/movielens/ml-latest-small")
    ap.add_argument("--out", default="data/mcr/movie")
    ap.add_argument("--min-attr-items", type=int, default=2)
    ap.add_argument("--min-user-items", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    data, stats = build_movie_mcr(a.kg, a.movielens, a.min_attr_items, a.min_user_items, seed=a.seed)
    save_canonical(data, a.out)
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
