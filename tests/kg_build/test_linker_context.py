"""Context cues, duplicate preference, title punctuation and NER gating of :mod:`kg_build.linker`."""

from __future__ import annotations

import pytest

from kg_build.linker import EntityLinker
from kg_build.schema import KnowledgeGraph, tiny_kg_with_movies


def _kg() -> KnowledgeGraph:
    extra = [
        ("Taken (2008)", ("taken",), 3001, 2008),
        ("Saw (2004)", ("saw",), 3002, 2004),
        ("Fun (1994)", ("fun",), 3003, 1994),
        ("Heat (1995)", ("heat",), 3004, 1995),
        ("The Heat (2013)", ("the heat", "heat"), 3005, 2013),
        ("Hot Shots! Part Deux (1993)", ("hot shots! part deux",), 3006, 1993),
    ]
    return tiny_kg_with_movies(extra)


@pytest.fixture(scope="module")
def kg() -> KnowledgeGraph:
    return _kg()


@pytest.fixture(scope="module")
def linker(kg) -> EntityLinker:
    # the rules alone: the packaged span classifier would also weigh train-split popularity, which the
    # tiny KG's movies lack (tested with its own weights in test_span_classifier.py)
    return EntityLinker.from_kg(kg, popularity_path="", span_classifier="").load()


def names(kg, text, lk) -> list[str]:
    return [kg.entities[s.entity].name for s in lk.link(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I liked superbad and taken", ["Superbad (2007)", "Taken (2008)"]),  # list next to a linked movie
        ("taken, or the terminator?", ["Taken (2008)", "The Terminator (1984)"]),
        ("I was taken aback", []),  # no cue
        ("Serious like taken", ["Taken (2008)"]),  # "like X" at the end
        ("sounds like fun.", []),  # "sounds like": a comparison
        ("what about saw?", ["Saw (2004)"]),
        ("how about heat with Pacino", ["Heat (1995)"]),
        ("I saw superbad and saw it again", ["Superbad (2007)"]),  # a cue word is no list item
    ],
)
def test_context_cues(kg, linker, text, expected):
    assert names(kg, text, linker) == expected


def test_context_cues_can_be_disabled(kg):
    lk = EntityLinker.from_kg(kg, popularity_path="", context_cues=False).load()
    assert names(kg, "what about saw?", lk) == []
    assert names(kg, "I liked superbad and taken", lk) == ["Superbad (2007)"]


def test_full_title_beats_other_movies_alias(kg, linker):
    assert names(kg, "have you seen heat?", linker) == ["Heat (1995)"]
    assert names(kg, "have you seen the heat?", linker) == ["The Heat (2013)"]


def test_title_with_inner_punctuation(kg, linker):
    spans = linker.link("have you seen hot shots! part deux ?")
    assert [(s.text, kg.entities[s.entity].name) for s in spans] == [
        ("hot shots! part deux", "Hot Shots! Part Deux (1993)")
    ]
    assert names(kg, "I saw it! Part of it was fun", linker) == []  # no alias holds "!" here


def test_ner_runs_only_when_useful(linker):
    def need(text):
        return linker._first_pass(text, linker._nlp.make_doc(text))[-1]

    assert not need("i liked the terminator and superbad")
    assert not need("Hi! I liked The Terminator.")  # sentence starts and linked words only
    assert need("I liked it with Keanu Reeves")  # capitalised words no alias covers
    assert need('I liked "the thing"')


def test_link_and_link_many_agree(linker):
    texts = ["Hi! I liked The Terminator.", "I liked superbad and taken", "Tom Hanks in What about saw?", ""]
    assert linker.link_many(texts) == [linker.link(t) for t in texts]


def test_era_cues_pick_the_oldest_or_newest_version(tmp_path):
    kg = tiny_kg_with_movies(
        [
            ("Jumanji (1995)", ("jumanji",), 3101, 1995),
            ("Jumanji (2017)", ("jumanji",), 3102, 2017),
            ("Jumanji (1934)", ("jumanji",), 3103, 1934),  # obscure: under a tenth of the top popularity
        ]
    )
    pop = tmp_path / "movies.jsonl"
    pop.write_text(
        "\n".join(
            f'{{"redial_id": {r}, "n_mentions": {n}, "n_mentions_train": {n}}}'
            for r, n in ((3101, 170), (3102, 731), (3103, 3))
        )
    )
    lk = EntityLinker.from_kg(kg, popularity_path=str(pop), span_classifier="", use_ner=False).load()
    assert names(kg, "have you seen jumanji?", lk) == ["Jumanji (2017)"]  # popularity
    assert names(kg, "I prefer the original jumanji", lk) == ["Jumanji (1995)"]
    assert names(kg, "the older jumanji was better than the new jumanji", lk) == ["Jumanji (1995)", "Jumanji (2017)"]
    assert names(kg, "the original jumanji 2017", lk) == ["Jumanji (2017)"]  # a typed year wins
    assert names(kg, "the original. jumanji", lk) == ["Jumanji (2017)"]  # not across a sentence break
    off = EntityLinker.from_kg(kg, popularity_path=str(pop), span_classifier="", use_ner=False, era_cues=False)
    assert names(kg, "I prefer the original jumanji", off.load()) == ["Jumanji (2017)"]
