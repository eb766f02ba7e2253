"""Integration tests of the entity linker on the real KG (``data/kg``; skipped when it is absent)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
KG_DIR = ROOT / "data" / "kg"
MOVIES = ROOT / "data" / "redial" / "movies.jsonl"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (KG_DIR / "manifest.json").exists(), reason="data/kg not built (python -m kg_build build)"),
]


@pytest.fixture(scope="module")
def kg():
    from kg_build.schema import KnowledgeGraph

    return KnowledgeGraph.load(KG_DIR)


@pytest.fixture(scope="module")
def linker(kg):
    from kg_build.linker import EntityLinker

    return EntityLinker.from_kg(kg, popularity_path=str(MOVIES)).load()


def test_handlabelled_set_is_valid_on_real_kg(kg):
    from kg_build.bench_linking import HANDLABELLED_PATH, load_handlabelled

    data = load_handlabelled(HANDLABELLED_PATH, kg)
    assert len(data) >= 150
    types = Counter(t for _, gold in data for _, t, _ in gold)
    assert all(types[t] >= 15 for t in ("movie", "person", "genre", "time")), types
    assert sum(1 for _, gold in data if not gold) >= 25
    assert sum(1 for _, gold in data for *_, neg in gold if neg) >= 15


def test_real_kg_examples(kg, linker):
    def link(text):
        return [(kg.entities[s.entity].name, s.negated) for s in linker.link(text)]

    assert link("I loved The Terminator and Tom Hanks") == [("The Terminator (1984)", False), ("Tom Hanks", False)]
    assert link("something scary from the 80s, but no Tom Cruise") == [
        ("Horror", False),
        ("1980s", False),
        ("Tom Cruise", True),
    ]
    assert link("have you seen the shawshank redemtion?") == [("The Shawshank Redemption (1994)", False)]
    assert link("It was big and I saw it up close") == []
    assert link("Have you seen It?")[0][0].startswith("It (")
    assert link("Beauty and the Beast (1991) is my favorite") == [("Beauty and the Beast (1991)", False)]
    assert link("I liked @111776") == [("Super Troopers (2001)", False)]
