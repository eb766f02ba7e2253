"""Typo windows whose "correct" words are themselves typos, one-letter-short titles, "the new it"."""

from __future__ import annotations

import pytest

from kg_build.linker import EntityLinker
from kg_build.schema import KnowledgeGraph, tiny_kg_with_movies


@pytest.fixture(scope="module")
def kg() -> KnowledgeGraph:
    extra = [
        ("Black Hawk Down (2001)", (), 3001, 2001),
        ("Friday the 13th (1980)", (), 3002, 1980),
        ("Logan (2017)", (), 3003, 2017),
        ("It (2017)", ("it",), 3004, 2017),
        ("It (1990)", ("it",), 3005, 1990),
        ("Train to Busan (2016)", (), 3006, 2016),
        ("Ace Ventura (1994)", ("ace ventura",), 3007, 1994),
        ("Return of the Jedi (1983)", (), 3008, 1983),
        ("Terms of Endearment (1983)", (), 3009, 1983),
        ("Killers (2010)", (), 3010, 2010),
    ]
    return tiny_kg_with_movies(extra)


@pytest.fixture(scope="module")
def linker(kg) -> EntityLinker:
    return EntityLinker.from_kg(kg, popularity_path="", span_classifier="", use_ner=False).load()


def _names(kg, spans) -> list[str]:
    return [kg.entities[s.entity].name for s in spans]


def test_window_whose_known_word_is_a_typo(kg, linker):
    # "lack" (for "black") is an English word that starts no 3-word alias: the window is still matched
    # through the other words' postings
    (span,) = linker.link("does lack hawk dowmn have a lot of violence?")
    assert kg.entities[span.entity].name == "Black Hawk Down (2001)" and span.text == "lack hawk dowmn"
    assert span.source == "fuzzy"
    # "he" for "the": pooled postings of "he" and "13th"
    assert _names(kg, linker.link("I like horror fridly he 13th yes?")) == ["Horror", "Friday the 13th (1980)"]


def test_one_letter_short_title(kg, linker):
    (span,) = linker.link("Oh yeah! ogan was fantastic!!")
    assert kg.entities[span.entity].name == "Logan (2017)" and span.text == "ogan" and span.score == 0.8
    assert linker.link("hmm that was ok") == []  # short real words are not typos


def test_pronoun_title_after_determiner_and_era_word(kg, linker):
    assert _names(kg, linker.link("have you seen the new it")) == ["It (2017)"]
    assert _names(kg, linker.link("it or the original it")) == ["It (1990)"]  # era cue picks the oldest
    assert linker.link("I liked it and the new one") == []
    assert linker.link("the new one was it") == []


def test_era_pronoun_span_bypasses_the_classifier(kg, linker):
    facts = linker.candidate_facts(["have you seen the new it", "have you seen it"])
    assert facts[0] == []  # rule-decided, not scored
    assert [f.key for _, f in facts[1]] == ["it"]  # gate-rejected "it" goes to the classifier


def test_era_pronoun_rule_skips_contractions_and_one(kg, linker):
    assert linker.link("the remake it's not even good") == []
    assert linker.link("there is a new one coming out") == []


def test_typo_that_makes_another_real_word(kg, linker):
    # "rain" is a real word: the window starts from the rare alias word "busan" outside every exact span
    (span,) = linker.link("it's called rain to busan and it is great")
    assert kg.entities[span.entity].name == "Train to Busan (2016)" and span.text == "rain to busan"
    assert linker.link("the rain to the coast") == []
    assert linker.link("I like Sigourney Weaver and ventura is nice")[1:] == []  # "and ventura": 2 edits
    off = EntityLinker.from_kg(
        kg, popularity_path="", span_classifier="", use_ner=False, rare_anchor_zipf=0.0, long_anchor_zipf=0.0
    )
    assert off.link("it's called rain to busan and it is great") == []


def test_typo_in_a_long_title_made_of_common_words(kg, linker):
    # "th" is an English word and "jedi" is not rare enough for a 2-word window: a window of >= 3 words
    # around any alias word below long_anchor_zipf (one edit) finds the title
    (span,) = linker.link("it continued with return of th jedi")
    assert kg.entities[span.entity].name == "Return of the Jedi (1983)" and span.text == "return of th jedi"
    assert span.source == "fuzzy"
    assert linker.link("the return of the king was long") == []  # 1 edit from no alias
    off = EntityLinker.from_kg(kg, popularity_path="", span_classifier="", use_ner=False, long_anchor_zipf=0.0)
    assert off.link("it continued with return of th jedi") == []


def test_long_title_after_a_determiner_is_still_a_title(kg, linker):
    # "a hitman" / "serial killers": a short lower-case title after a determiner is a noun ...
    assert linker.link("he is one of those serial killers") == []
    # ... a title of >= 3 words is not
    assert _names(kg, linker.link("I'm a terms of endearment kind of person")) == ["Terms of Endearment (1983)"]
