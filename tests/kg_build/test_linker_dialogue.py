"""Dialogue context (``link(text, context)``) and ordinary-word rules of :mod:`kg_build.linker`, and the
benchmark's dialogue-order linking (:func:`kg_build.bench_linking.link_dialogues`)."""

from __future__ import annotations

import pytest

from kg_build import bench_linking as bl
from kg_build.linker import DialogueContext, EntityLinker
from kg_build.schema import Entity, KnowledgeGraph, tiny_kg_for_tests

_MOVIES = [
    ("Halloween (1978)", ("halloween",), 4001, 1978),
    ("Halloween (2007)", ("halloween",), 4002, 2007),
    ("Fun (1994)", ("fun",), 4003, 1994),
    ("Hitman (2007)", ("hitman",), 4004, 2007),
    ("The Sure Thing (1985)", ("the sure thing", "sure thing"), 4005, 1985),
    ("Hancock (2008)", ("hancock",), 4006, 2008),
    ("Goldie (1931)", ("goldie",), 4007, 1931),
    ("The Conjuring (2013)", ("the conjuring", "conjuring"), 4008, 2013),
    ("Emma Stone (2017)", ("emma stone",), 4009, 2017),
    ("Epic (2013)", ("epic",), 4010, 2013),
]


def _kg() -> KnowledgeGraph:
    tiny = tiny_kg_for_tests()
    ents = list(tiny.entities)
    for name, aliases, rid, year in _MOVIES:
        ents.append(Entity(len(ents), name, "movie", ("Movie",), aliases, rid, year))
    ents.append(Entity(len(ents), "Emma Stone", "person", ("Actor",), ("emma stone",)))
    return KnowledgeGraph(ents, tiny.relations, tiny.edge_index.copy(), tiny.edge_type.copy())


@pytest.fixture(scope="module")
def kg() -> KnowledgeGraph:
    return _kg()


@pytest.fixture(scope="module")
def linker(kg) -> EntityLinker:
    return EntityLinker.from_kg(kg, popularity_path="").load()


def names(kg, spans) -> list[str]:
    return [kg.entities[s.entity].name for s in spans]


def test_context_picks_the_remake_already_mentioned(kg, linker):
    h78, h07 = kg.by_name["Halloween (1978)"], kg.by_name["Halloween (2007)"]
    default = names(kg, linker.link("I loved halloween"))
    assert default == ["Halloween (1978)"]  # equal popularity (KG degree 0): lower id
    assert names(kg, linker.link("I loved halloween", context=[h07])) == ["Halloween (2007)"]
    assert names(kg, linker.link("I loved halloween", context=[h78])) == ["Halloween (1978)"]
    assert names(kg, linker.link("I loved halloween 1978", context=[h07])) == ["Halloween (1978)"]  # typed year
    assert linker.link("I loved halloween", context=[]) == linker.link("I loved halloween")


def test_context_accepts_a_common_title_linked_before(kg, linker):
    fun = kg.by_name["Fun (1994)"]
    assert names(kg, linker.link("fun is great")) == []  # common word, no cue
    assert names(kg, linker.link("fun is great", context=[fun])) == ["Fun (1994)"]
    assert names(kg, linker.link("fun it was", context=[fun])) == []  # followed by a pronoun
    off = EntityLinker.from_kg(kg, popularity_path="", dialogue_context=False).load()
    assert names(kg, off.link("fun is great", context=[fun])) == []


def test_link_many_contexts_agree_with_link(linker, kg):
    h07 = kg.by_name["Halloween (2007)"]
    texts = ["I loved halloween", "halloween again", "fun is great"]
    contexts = [None, [h07], [kg.by_name["Fun (1994)"]]]
    assert linker.link_many(texts, contexts) == [linker.link(t, c) for t, c in zip(texts, contexts, strict=True)]
    with pytest.raises(ValueError, match="contexts"):
        linker.link_many(texts, [None])
    with pytest.raises(ValueError, match="not a KG entity id"):
        linker.link("halloween", context=[10**9])
    with pytest.raises(TypeError, match="KG entity ids"):
        linker.link("halloween", context=["Halloween"])


def test_dialogue_context_support(kg):
    h78 = kg.by_name["Halloween (1978)"]
    ctx = DialogueContext(kg, [h78])
    assert ctx.support(h78) == 1 and ctx.support(kg.by_name["Halloween (2007)"]) == 0
    assert ctx.adjacent(h78) and not ctx.adjacent(kg.by_name["Fun (1994)"], via_persons=True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I watched hitman", ["Hitman (2007)"]),
        ("he is a hitman who gets paid", []),  # determiner: an ordinary noun
        ("my hitman is late", []),
        ("it was pretty epic", []),  # intensifier: an adjective
        ("Sure thing, I like it", []),  # everyday formula
        ("have you seen the sure thing?", ["The Sure Thing (1985)"]),
        ("it has Martin Hancock too", []),  # capitalised word inside a name
        ("Hancock was great", ["Hancock (2008)"]),
        ("it's an oldie", []),  # one-word fuzzy window on an English word
        ("I liked goldei", ["Goldie (1931)"]),
        ("I liked te conjuring", ["The Conjuring (2013)"]),  # typo of "the"
        ("I like Emma Stone", ["Emma Stone"]),  # a person's full name beats a movie named after them
    ],
)
def test_ordinary_word_rules(kg, linker, text, expected):
    assert names(kg, linker.link(text)) == expected


def test_word_rules_can_be_disabled(kg):
    lk = EntityLinker.from_kg(kg, popularity_path="", word_rules=False).load()
    assert names(kg, lk.link("he is a hitman who gets paid")) == ["Hitman (2007)"]


def test_link_dialogues_passes_own_earlier_predictions(kg, linker):
    calls = []

    class Spy:
        def link_many(self, texts, contexts=None):
            calls.append((list(texts), contexts))
            return linker.link_many(texts, contexts)

    texts = ["I loved halloween", "fun is great", "fun is great", "I watched hitman"]
    dialogues = [0, 0, 1, -1]
    preds, contexts = bl.link_dialogues(Spy(), texts, dialogues)
    h78 = kg.by_name["Halloween (1978)"]
    assert contexts == [[], [h78], [], None]  # own prediction of turn 0; dialogue 1 starts empty; -1: none
    assert names(kg, preds[1]) == [] and names(kg, preds[3]) == ["Hitman (2007)"]
    assert [len(c[0]) for c in calls] == [3, 1]  # first turns batched, then second turns
    flat, none = bl.link_dialogues(linker, texts, dialogues, use_context=False)
    assert none == [None] * 4 and flat == linker.link_many(texts)
