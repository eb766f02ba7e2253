"""Integration test: build the real KG from ../shared/datasets into a temporary folder (~10 s)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kg_build import build
from kg_build.schema import KnowledgeGraph, read_movie_info

DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not (DATASETS / "redial" / "movies_with_mentions.csv").exists(), reason=f"{DATASETS} not available"
    ),
]


def test_real_kg_counts(tmp_path):
    cfg = build.BuildConfig(datasets=str(DATASETS), out=str(tmp_path), stats_out="", progress=False)
    result = build.build_kg(cfg)
    build.write_kg(result, tmp_path)
    kg = KnowledgeGraph.load(tmp_path)
    s = kg.stats
    assert s["movies"] == 6924 and len(kg.by_redial_id) == 6924
    assert s["genres"] == 18 and s["times"] == 12
    assert 10_000 < s["persons"] < 40_000
    assert 25_000 < s["entities"] < 45_000
    assert 150_000 < s["edges"] < 500_000
    assert s["relation_types"] == 14
    assert s["movies_isolated"] < 100
    # well-known facts, each person one node, merged across sources
    facts = {
        (kg.entities[a].name, kg.relations[r], kg.entities[b].name)
        for r, a, b in zip(kg.edge_type.tolist(), kg.edge_index[0].tolist(), kg.edge_index[1].tolist(), strict=True)
        if kg.relations[r] in {"director_of", "actor_of", "genre_of", "time_of"}
    }
    cams = [e for e in kg.entities if e.type == "person" and e.name == "James Cameron"]
    assert len(cams) == 1
    cam_movies = {m for p, r, m in facts if p == "James Cameron" and r == "director_of"}
    assert any(m.startswith("Titanic") for m in cam_movies) and any(m.startswith("Avatar") for m in cam_movies)
    avengers = kg.entities[kg.by_redial_id[78418]]
    assert avengers.name == "The Avengers (2012)" and ("2010s", "time_of", avengers.name) in facts
    assert ("Action", "genre_of", avengers.name) in facts
    disney = kg.entities[kg.by_name["Walt Disney Pictures"]]
    assert disney.type == "company" and "disney" in disney.aliases
    assert len([e for e in kg.entities if e.type == "company" and "pixar" in e.aliases]) == 1
    info = read_movie_info(tmp_path)
    assert len(info) == 6924
    assert sum(1 for r in info.values() if r["plot"]) > 6000
