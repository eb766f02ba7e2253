"""Round trip of the linearised dialog act with KG name resolution (kg_build.acts)."""

from __future__ import annotations

import pytest

from kg_build.acts import ActNode, DialogAct, display_name, name_resolver
from kg_build.schema import Entity, KnowledgeGraph, tiny_kg_for_tests


@pytest.fixture(scope="module")
def kg():
    return tiny_kg_for_tests()


def _node(kg, name, children=()):
    eid = next(e.id for e in kg.entities if e.name == name)
    return ActNode(eid, display_name(name), tuple(_node(kg, c) for c in children))


def test_name_resolver_exact_casefold_unknown(kg):
    resolve = name_resolver(kg)
    assert resolve("Alien (1979)") == 6
    assert resolve("alien (1979)") == 6
    assert resolve("  James   Cameron ") == 10
    assert resolve("Genre") == 2
    assert resolve("Titanic (1997)") == -1


@pytest.mark.parametrize(
    "intent,tree",
    [
        ("recommend", [("Action", ["The Terminator (1984)", "Aliens (1986)"]), ("Superbad (2007)", [])]),
        ("query", [("Genre", ["Horror", "Comedy"]), ("Actor", [])]),
        ("chat", [("Alien (1979)", ["Sigourney Weaver"])]),
        ("chat", []),
    ],
)
def test_parse_linearize_round_trip(kg, intent, tree):
    act = DialogAct(intent, tuple(_node(kg, p, cs) for p, cs in tree))
    text = act.linearize()
    back = DialogAct.parse(text, name_resolver(kg))
    assert back == act
    assert back.to_json() == act.to_json()
    assert DialogAct.from_json(act.to_json()) == act


def test_round_trip_with_brackets_in_names():
    names = ["Genre", "(500) Days of Summer (2009)", "Romance", "Se7en ( 1995 )"]
    ents = [Entity(i, n, t) for i, (n, t) in enumerate(zip(names, ["class", "movie", "genre", "movie"], strict=True))]
    import numpy as np

    kg = KnowledgeGraph(ents, ["is_a"], np.zeros((2, 0), dtype=np.int64), np.zeros(0, dtype=np.int64))
    resolve = name_resolver(kg)
    act = DialogAct(
        "recommend",
        (ActNode(2, "Romance", (ActNode(1, display_name(names[1])),)), ActNode(3, display_name(names[3]))),
    )
    back = DialogAct.parse(act.linearize(), resolve)
    assert back == act
    assert [n.entity for n in back.nodes] == [2, 3]
    assert back.nodes[0].children[0].entity == 1


def test_parse_rejects_malformed(kg):
    with pytest.raises(ValueError):
        DialogAct.parse("[ Recommend ( Action ( Alien (1979) ) ]", name_resolver(kg))
    with pytest.raises(ValueError):
        DialogAct.parse("Recommend ( Action )")
