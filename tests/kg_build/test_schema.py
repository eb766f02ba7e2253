"""Tests of kg_build.schema: entity JSON, save/load round trip and the helper lookups."""

from __future__ import annotations

import numpy as np
import pytest

from data_scripts.utils.io import write_jsonl
from kg_build.schema import (
    ENTITY_TYPE_DOCS,
    ENTITY_TYPES,
    MOVIE_INFO_FILE,
    RELATION_CLASS,
    RELATION_DOCS,
    RELATION_TARGET_TYPE,
    Entity,
    KnowledgeGraph,
    read_movie_info,
    reverse_relation,
    tiny_kg_for_tests,
)


def test_entity_json_round_trip():
    e = Entity(3, "Alien (1979)", "movie", ("Movie",), ("alien",), 1003, 1979)
    assert Entity.from_json(e.to_json()) == e
    p = Entity(4, "Ridley Scott", "person", ("Director",), ("ridley scott",))
    assert "redial_id" not in p.to_json() and Entity.from_json(p.to_json()) == p


def test_save_load_identical(tmp_path):
    kg = tiny_kg_for_tests()
    kg.save(tmp_path / "a")
    back = KnowledgeGraph.load(tmp_path / "a")
    assert back.entities == kg.entities and back.relations == kg.relations
    np.testing.assert_array_equal(back.edge_index, kg.edge_index)
    np.testing.assert_array_equal(back.edge_type, kg.edge_type)
    back.save(tmp_path / "b")
    for name in ("entities.jsonl", "kg.safetensors", "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="kg_build build"):
        KnowledgeGraph.load(tmp_path)
    with pytest.raises(ValueError, match="contiguous"):
        KnowledgeGraph([Entity(1, "x", "genre")], [], np.zeros((2, 0), np.int64), np.zeros(0, np.int64))
    with pytest.raises(ValueError, match="unknown entity type"):
        KnowledgeGraph([Entity(0, "x", "planet")], [], np.zeros((2, 0), np.int64), np.zeros(0, np.int64))


def test_helpers():
    kg = tiny_kg_for_tests()
    assert reverse_relation("actor_of") == "actor_of_rev" and reverse_relation("actor_of_rev") == "actor_of"
    assert kg.relation_ids["genre_of"] == kg.relations.index("genre_of")
    assert kg.forward_relations() == ["actor_of", "director_of", "genre_of", "time_of", "is_a"]
    counts = kg.edge_counts()
    assert sum(counts.values()) == len(kg.edge_type)
    assert counts["director_of"] == counts["director_of_rev"] == 3
    assert kg.entities[kg.by_name["James Cameron"]].type == "person"
    assert set(RELATION_TARGET_TYPE) == set(RELATION_CLASS) == set(RELATION_DOCS) - {"is_a"}
    assert set(ENTITY_TYPE_DOCS) == set(ENTITY_TYPES)


def test_read_movie_info(tmp_path):
    with pytest.raises(FileNotFoundError, match="kg_build build"):
        read_movie_info(tmp_path)
    write_jsonl(tmp_path / MOVIE_INFO_FILE, [{"entity": 4, "redial_id": 1001, "name": "The Terminator (1984)"}])
    assert read_movie_info(tmp_path)[4]["redial_id"] == 1001
