"""Unit tests of :mod:`kg_build.linker` on the tiny test KG (plus a few common-word titles)."""

from __future__ import annotations

import numpy as np
import pytest

from kg_build.linker import EntityLinker, LinkedSpan, alias_key, is_common_phrase, text_words
from kg_build.schema import KnowledgeGraph, tiny_kg_for_tests, tiny_kg_with_movies


def _kg_with_common_titles() -> KnowledgeGraph:
    """tiny_kg_for_tests + movies whose titles are ordinary words, and a remade title."""
    extra = [
        ("It (2017)", ("it",), 2001, 2017),
        ("Up (2009)", ("up",), 2002, 2009),
        ("Big (1988)", ("big",), 2003, 1988),
        ("Halloween (1978)", ("halloween",), 2004, 1978),
        ("Halloween (2007)", ("halloween",), 2005, 2007),
        ("The Lord of the Rings: The Fellowship of the Ring (2001)", (), 2006, 2001),
    ]
    return tiny_kg_with_movies(extra)


@pytest.fixture(scope="module")
def kg() -> KnowledgeGraph:
    return _kg_with_common_titles()


@pytest.fixture(scope="module")
def linker(kg) -> EntityLinker:
    return EntityLinker.from_kg(kg, popularity_path="").load()


def ids(kg: KnowledgeGraph) -> dict[str, int]:
    return {e.name: e.id for e in kg.entities}


def names(kg, spans: list[LinkedSpan]) -> list[str]:
    return [kg.entities[s.entity].name for s in spans]


def test_lazy_and_options(kg):
    lk = EntityLinker.from_kg(kg, popularity_path="")
    assert lk._nlp is None and lk.load_seconds is None
    with pytest.raises(TypeError, match="unknown EntityLinker option"):
        EntityLinker.from_kg(kg, not_an_option=1)


def test_mention_exact(kg, linker):
    text = "I liked @1001 and @999"
    spans = linker.link(text)
    assert spans == [LinkedSpan(8, 13, "@1001", ids(kg)["The Terminator (1984)"], 1.0, "mention", False)]


def test_case_insensitive_and_offsets(kg, linker):
    for text in ("i loved the terminator", "I loved The Terminator", "I LOVED THE TERMINATOR"):
        (span,) = linker.link(text)
        assert span.entity == ids(kg)["The Terminator (1984)"]
        assert (span.start, span.end, span.text) == (8, 22, text[8:22])
        assert span.source == "ruler" and span.score == 1.0


def test_possessive(kg, linker):
    (span,) = linker.link("The Terminator's ending is great")
    assert span.text == "The Terminator" and span.entity == ids(kg)["The Terminator (1984)"]


def test_longest_match_and_alias(kg, linker):
    assert names(kg, linker.link("terminator 2 was better")) == ["Terminator 2: Judgment Day (1991)"]
    assert names(kg, linker.link("T2 or Aliens?")) == ["Terminator 2: Judgment Day (1991)", "Aliens (1986)"]


def test_typo(kg, linker):
    (span,) = linker.link("I liked the termnator a lot")
    assert span.entity == ids(kg)["The Terminator (1984)"]
    assert span.source == "fuzzy" and span.text == "the termnator"
    assert 0.9 < span.score < 1.0
    (span,) = linker.link("anything with Sigourny Weaver")
    assert span.entity == ids(kg)["Sigourney Weaver"]


def test_genre_everyday_words_and_decade(kg, linker):
    assert names(kg, linker.link("something scary")) == ["Horror"]
    assert names(kg, linker.link("a funny one from the eighties")) == ["Comedy", "1980s"]
    assert names(kg, linker.link("80s action")) == ["1980s", "Action"]


def test_negation(kg, linker):
    def neg(text):
        return [(kg.entities[s.entity].name, s.negated) for s in linker.link(text)]

    assert neg("I hate horror") == [("Horror", True)]
    assert neg("I don't like horror") == [("Horror", True)]
    assert neg("I like comedy but not horror") == [("Comedy", False), ("Horror", True)]
    assert neg("no Arnold Schwarzenegger please") == [("Arnold Schwarzenegger", True)]
    assert neg("I've already seen Superbad") == [("Superbad (2007)", True)]
    assert neg("I haven't seen Superbad") == [("Superbad (2007)", False)]
    assert neg("Superbad? Seen it.") == [("Superbad (2007)", True)]
    assert neg("horror is not my thing, comedy is") == [("Horror", True), ("Comedy", False)]


def test_no_false_hits_on_common_words(kg, linker):
    for text in ("It was big, I saw it up there", "Her acting was great", "I'm up for it", "Big thanks!"):
        assert linker.link(text) == [], text
    assert names(kg, linker.link("Have you seen It?")) == ["It (2017)"]
    assert names(kg, linker.link('I loved "up" so much')) == ["Up (2009)"]
    assert names(kg, linker.link("I loved Big with Tom Hanks")) == ["Big (1988)"]
    assert names(kg, linker.link("Tom Hanks was great in Big (1988)")) == ["Big (1988)"]


def test_year_disambiguation_and_popularity(kg, linker):
    assert names(kg, linker.link("Halloween (2007) was fun")) == ["Halloween (2007)"]
    assert names(kg, linker.link("halloween 1978 is a classic")) == ["Halloween (1978)"]
    (span,) = linker.link("halloween 1978 is a classic")
    assert span.text == "halloween 1978"
    # no year: equal popularity -> deterministic (KG degree, then lowest id)
    assert names(kg, linker.link("I watched halloween")) == ["Halloween (1978)"]


def test_initials_in_capitals(kg, linker):
    assert names(kg, linker.link("LOTR is long")) == ["The Lord of the Rings: The Fellowship of the Ring (2001)"]


def test_spans_sorted_non_overlapping_and_deterministic(kg, linker):
    texts = [
        "I loved @1001 and the termnator, no horror from the 80s with Arnold Schwarzenegger's acting",
        "funny, scary, T2, Alien, Aliens, alien!",
    ]
    batched = linker.link_many(texts)
    single = [linker.link(t) for t in texts]
    assert batched == single
    other = EntityLinker.from_kg(kg, popularity_path="").link_many(texts)
    assert other == batched
    for text, spans in zip(texts, batched, strict=True):
        assert [s.start for s in spans] == sorted(s.start for s in spans)
        for a, b in zip(spans, spans[1:], strict=False):
            assert a.end <= b.start
        for s in spans:
            assert text[s.start : s.end] == s.text


def test_span_ruler_matcher_agrees(kg, linker):
    ruler = EntityLinker.from_kg(kg, popularity_path="", matcher="span_ruler")
    texts = ["I loved the terminator and Aliens", "something scary from the eighties", "T2 please"]
    assert ruler.link_many(texts) == linker.link_many(texts)


def test_helpers():
    assert alias_key("Schindler's List") == "schindler list"
    assert alias_key("Terminator 2: Judgment Day") == "terminator 2 judgment day"
    assert alias_key("Amélie & Co") == "amelie and co"
    words = text_words("Mr. Bean's day. Don't stop! @123 ok")
    assert [w.norm for w in words] == ["mr", "bean", "day", "don", "t", "stop", "ok"]
    assert [w.brk for w in words] == [0, 0, 0, 2, 0, 0, 2]
    assert words[4].cont and not words[3].cont
    assert is_common_phrase("it", 4.5, 5.0) and is_common_phrase("the other woman", 4.5, 5.0)
    assert not is_common_phrase("terminator", 4.5, 5.0) and not is_common_phrase("the lord of the rings", 4.5, 5.0)


def test_empty_and_type_errors(linker):
    assert linker.link("") == []
    assert linker.link_many([]) == []
    with pytest.raises(TypeError):
        linker.link(None)  # type: ignore[arg-type]


def test_kg_without_edges():
    kg = tiny_kg_for_tests()
    bare = KnowledgeGraph(kg.entities, kg.relations, np.zeros((2, 0), np.int64), np.zeros(0, np.int64))
    lk = EntityLinker.from_kg(bare, popularity_path="", use_ner=False)
    assert [bare.entities[s.entity].name for s in lk.link("alien")] == ["Alien (1979)"]
