"""Invariants of the real labels (``data/labels`` from ``python -m kg_build labels``); skipped when absent."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from kg_build.acts import INTENTS, DialogAct, name_resolver

ROOT = Path(__file__).resolve().parents[2]
LABELS = ROOT / "data" / "labels" / "test.jsonl"
DIALOGUES = ROOT / "data" / "redial" / "test.jsonl"
KG_DIR = ROOT / "data" / "kg"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not (LABELS.exists() and DIALOGUES.exists() and (KG_DIR / "manifest.json").exists()),
        reason="needs data/labels, data/redial and data/kg (run `python -m kg_build labels`)",
    ),
]
N_ROWS = 3000


@pytest.fixture(scope="module")
def kg():
    from kg_build.schema import KnowledgeGraph

    return KnowledgeGraph.load(KG_DIR)


@pytest.fixture(scope="module")
def rows():
    with open(LABELS, encoding="utf-8") as fh:
        return [json.loads(line) for line in itertools.islice(fh, N_ROWS)]


def test_rows_are_recommender_turns(rows):
    wanted = {r["conv_id"] for r in rows}
    turns = {}
    with open(DIALOGUES, encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            if d["conv_id"] in wanted:
                turns[d["conv_id"]] = d["turns"]
    for r in rows:
        assert turns[r["conv_id"]][r["turn_idx"]]["role"] == "recommender"
        assert r["split"] == "test" and r["intent"] in INTENTS


def test_acts_round_trip_and_follow_the_kg(rows, kg):
    resolve = name_resolver(kg)
    exact = 0
    for r in rows:
        act = DialogAct.from_json(r["act"])
        assert act.intent == r["intent"] and act.linearize() == r["act_text"]
        assert act.width <= 5
        exact += DialogAct.parse(r["act_text"], resolve) == act
        for node in act.nodes:
            for child in node.children:
                assert child.entity in kg.neighbors(node.entity), (r["conv_id"], r["turn_idx"], r["act_text"])
        if act.intent == "recommend":
            named = set(act.leaves)
            assert set(r["recommended_movies"][:5]) <= named
            assert all(kg.entities[e].type != "movie" for e in act.hop1 if act.nodes[act.hop1.index(e)].children)
        if act.intent == "query":
            assert all(kg.entities[e].type == "class" for e in act.hop1)
    # only names shared by two entities (duplicate ReDial movies, person/company twins) can resolve differently
    assert exact / len(rows) > 0.99


def test_context_fields(rows):
    for r in rows:
        ctx = set(r["context_entities"])
        assert set(r["context_entities_seeker"]) <= ctx
        assert set(r["negated_entities"]) <= set(r["context_entities_seeker"])
        assert len(ctx) == len(r["context_entities"])
        assert set(r["turn_movies"]) <= set(r["turn_entities"])
