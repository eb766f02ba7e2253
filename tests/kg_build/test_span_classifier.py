"""Unit tests of :mod:`kg_build.span_classifier` and its use in :class:`kg_build.linker.EntityLinker`."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from kg_build.linker import EntityLinker
from kg_build.schema import KnowledgeGraph, tiny_kg_with_movies
from kg_build.span_classifier import (
    FEATURES,
    SCHEMA,
    SpanClassifier,
    SpanFacts,
    fit_logistic,
    probability,
    sigmoid,
    span_features,
)
from kg_build.train_linker import label_candidates, train_mention_counts


def _facts(**kw) -> SpanFacts:
    base = {
        "key": "fear",
        "source": "ruler",
        "score": 1.0,
        "rule_accepted": False,
        "common": True,
        "very_common": False,
        "key_zipf": 4.9,
        "min_word_zipf": 4.9,
        "n_words": 1,
        "prev": "",
        "next": "is",
        "prev_cue": False,
        "prev_stop": False,
        "next_pronoun": False,
        "next_stop": True,
        "n_other_movies": 0,
        "list_adjacent": False,
        "in_context": False,
        "train_mentions": 10,
        "n_text_words": 3,
        "text_movie_word": False,
    }
    base.update(kw)
    return SpanFacts(**base)


def test_features_order_and_values():
    x = span_features(_facts())
    assert len(x) == len(FEATURES)
    v = dict(zip(FEATURES, x, strict=True))
    assert v["bias"] == 1.0 and v["rule_accepted"] == 0.0 and v["common"] == 1.0
    assert v["next_copula"] == 1.0 and v["next_stop"] == 0.0  # "is" counts as a copula, not a stop word
    assert v["at_sentence_start"] == 1.0 and v["at_clause_end"] == 0.0 and v["whole_clause"] == 0.0
    assert v["log_train_mentions"] == pytest.approx(math.log1p(10) / 7)
    assert v["short_text"] == 1.0 and v["key_zipf"] == pytest.approx(4.9 / 8)
    fz = dict(zip(FEATURES, span_features(_facts(source="fuzzy", score=0.9, key="the others")), strict=True))
    assert fz["src_fuzzy"] == 1.0 and fz["edit_fraction"] == pytest.approx(0.1) and fz["starts_article"] == 1.0


def test_sigmoid_and_probability():
    assert sigmoid(0.0) == 0.5 and sigmoid(-800) == 0.0 and sigmoid(800) == 1.0
    assert probability([1.0, 2.0], [1.0, 0.5]) == pytest.approx(1 / (1 + math.exp(-2.0)))
    with pytest.raises(ValueError):
        probability([1.0], [1.0, 2.0])


def test_fit_logistic_recovers_a_separating_direction():
    rng = np.random.default_rng(0)
    x1 = rng.normal(size=400)
    x2 = rng.normal(size=400) * 5 + 3  # scale/offset: weights must come back for the raw inputs
    y = (2 * x1 - 0.5 * (x2 - 3) + rng.normal(scale=0.3, size=400) > 0).astype(float)
    x = np.column_stack([np.ones(400), x1, x2])
    w = fit_logistic(x, y, l2=0.1)
    p = 1 / (1 + np.exp(-(x @ w)))
    assert ((p >= 0.5) == (y == 1)).mean() > 0.95
    assert w[1] > 0 and w[2] < 0


def test_json_round_trip_and_validation(tmp_path):
    clf = SpanClassifier([0.1] * len(FEATURES), 0.2, 0.7, {123: 4}, {"note": "x"})
    path = tmp_path / "clf.json"
    clf.save(path)
    obj = json.loads(path.read_text())
    assert obj["schema"] == SCHEMA and obj["features"] == list(FEATURES) and obj["train_mentions"] == {"123": 4}
    back = SpanClassifier.load(path)
    assert back.weights == clf.weights and back.train_mentions == {123: 4} and back.threshold_add == 0.7
    with pytest.raises(ValueError, match="schema"):
        SpanClassifier.from_json({**obj, "schema": "other"})
    with pytest.raises(ValueError, match="feature list"):
        SpanClassifier.from_json({**obj, "features": obj["features"][:-1]})
    with pytest.raises(ValueError, match="weights"):
        SpanClassifier.from_json({**obj, "weights": [0.0]})


def test_keeps_uses_the_threshold_of_the_rule_decision():
    w = [0.0] * len(FEATURES)  # p = 0.5 everywhere
    clf = SpanClassifier(w, threshold_keep=0.4, threshold_add=0.6, train_mentions={})
    assert clf.keeps(_facts(rule_accepted=True)) and not clf.keeps(_facts(rule_accepted=False))


def test_train_mention_counts():
    dialogues = [{"turns": [{"text_raw": "@5 and @7 or @5"}, {"text_raw": "no"}]}, {"turns": [{"text_raw": "@7"}]}]
    assert train_mention_counts(dialogues) == {5: 2, 7: 2}


# ------------------------------------------------------------------------------- linker integration
def _kg() -> KnowledgeGraph:
    extra = [("Fear (1996)", ("fear",), 4001, 1996), ("Saw (2004)", ("saw",), 4002, 2004)]
    return tiny_kg_with_movies(extra)


@pytest.fixture(scope="module")
def kg() -> KnowledgeGraph:
    return _kg()


def _write(tmp_path, weights: dict[str, float], keep: float, add: float) -> str:
    w = [weights.get(n, 0.0) for n in FEATURES]
    path = tmp_path / "clf.json"
    SpanClassifier(w, keep, add, {4001: 50}).save(path)
    return str(path)


def _names(kg, spans) -> list[str]:
    return [kg.entities[s.entity].name for s in spans]


def test_candidate_facts_lists_accepted_and_gated_lower_case_spans(kg):
    lk = EntityLinker.from_kg(kg, popularity_path="", span_classifier="", use_ner=False).load()
    lk.set_train_mentions({4001: 50})
    (facts,) = lk.candidate_facts(["fear is good and the termnator too"])
    by_key = {f.key: (c, f) for c, f in facts}
    assert set(by_key) == {"fear", "the terminator"}
    fear = by_key["fear"][1]
    assert not fear.rule_accepted and fear.common and fear.next == "is" and fear.prev == ""
    assert fear.train_mentions == 50 and fear.n_text_words == 7
    term_c, term = by_key["the terminator"]
    assert term.rule_accepted and term.source == "fuzzy" and term_c[3] < 1.0 and term.min_word_zipf == 0.0
    # capitalised, quoted or year-typed spans keep the rule decision and are not scored
    (none,) = lk.candidate_facts(['Fear is good, "fear" too, and the terminator 1984'])
    assert none == []


def test_classifier_adds_and_drops(kg, tmp_path):
    text = "fear is good and the terminator too"
    off = EntityLinker.from_kg(kg, popularity_path="", span_classifier="", use_ner=False).load()
    assert _names(kg, off.link(text)) == ["The Terminator (1984)"]
    # a model that trusts "X is ..." and distrusts everything else
    add = _write(tmp_path, {"bias": -2.0, "next_copula": 4.0}, keep=0.5, add=0.5)
    lk = EntityLinker.from_kg(kg, popularity_path="", span_classifier=add, use_ner=False).load()
    assert _names(kg, lk.link(text)) == ["Fear (1996)"]
    # thresholds from the options override the file's
    lk2 = EntityLinker.from_kg(
        kg, popularity_path="", span_classifier=add, use_ner=False, classifier_keep=0.0, classifier_add=1.01
    ).load()
    assert _names(kg, lk2.link(text)) == ["The Terminator (1984)"]
    # capitalised text is never touched by the classifier
    assert _names(kg, lk.link("The Terminator is good")) == ["The Terminator (1984)"]


def test_missing_classifier_file(kg, tmp_path):
    with pytest.raises(FileNotFoundError, match="train-linker"):
        EntityLinker.from_kg(kg, popularity_path="", span_classifier=str(tmp_path / "none.json")).load()


def test_label_candidates(kg):
    lk = EntityLinker.from_kg(kg, popularity_path="", span_classifier="", use_ner=False).load()

    @dataclasses.dataclass
    class Turn:
        text: str
        gold: tuple

    text = "fear is good and the terminator too"
    fear = next(e.id for e in kg.entities if e.name == "Fear (1996)")
    turns = [Turn(text, ((0, 4, fear),))]
    x, y, rows = label_candidates(kg, turns, lk.candidate_facts([text]))
    assert x.shape == (len(rows), len(FEATURES)) and len(rows) >= 2
    labels = {r.key: int(v) for r, v in zip(rows, y, strict=True)}
    assert labels["fear"] == 1 and labels["the terminator"] == 0


def test_selection_score():
    from kg_build.train_linker import selection_score

    a, b = {"P": 0.90, "R": 0.88, "F1": 0.8899}, {"P": 0.895, "R": 0.893, "F1": 0.8940}
    assert max([a, b], key=lambda r: selection_score(r, "min_pr")) is b
    assert max([a, b], key=lambda r: selection_score(r, "f1")) is b
    c = {"P": 0.95, "R": 0.85, "F1": 0.8972}
    assert max([b, c], key=lambda r: selection_score(r, "min_pr")) is b
    assert max([b, c], key=lambda r: selection_score(r, "f1")) is c
    with pytest.raises(ValueError, match="select"):
        selection_score(a, "auc")


def test_set_span_classifier_matches_loading_the_file(kg, tmp_path):
    path = _write(tmp_path, {"bias": -2.0, "next_copula": 4.0}, keep=0.5, add=0.5)
    texts = ["fear is good and the terminator too", "i saw brigt and fear", "the termnator is fun"]
    from_file = EntityLinker.from_kg(kg, popularity_path="", span_classifier=path, use_ner=False).load()
    swapped = EntityLinker.from_kg(kg, popularity_path="", span_classifier="", use_ner=False)
    swapped.set_span_classifier(SpanClassifier.load(path))
    assert swapped.link_many(texts) == from_file.link_many(texts)
    swapped.set_span_classifier(None)
    assert _names(kg, swapped.link(texts[0])) == ["The Terminator (1984)"]


def test_round4_context_word_features():
    def v(**kw):
        return dict(zip(FEATURES, span_features(_facts(**kw)), strict=True))

    alien = v(key="alien", prev="an", next="abduction", prev_stop=True, next_stop=False)
    assert alien["next_content"] == 1.0 and alien["prev_content"] == 0.0 and alien["common_x_next_content"] == 1.0
    flick = v(key="flick", prev="zombie", next="", next_stop=False)
    assert flick["prev_content"] == 1.0 and flick["key_movie_word"] == 1.0 and flick["next_content"] == 0.0
    epic = v(key="epic", prev="more", prev_stop=True, next="", next_stop=False)
    assert epic["prev_degree"] == 1.0 and epic["prev_content"] == 0.0
    assert v(prev="on", prev_stop=True)["prev_prep"] == 1.0
    assert v(next="is")["next_content"] == 0.0  # a copula is not a content word
