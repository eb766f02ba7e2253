"""Unit tests of :mod:`kg_build.remake_chooser` and its use by the linker (opt-in)."""

from __future__ import annotations

import numpy as np
import pytest

from kg_build.linker import EntityLinker
from kg_build.remake_chooser import (
    FEATURES,
    RemakeChooser,
    RemakeFacts,
    fit_conditional_logit,
    remake_features,
)
from kg_build.schema import tiny_kg_with_movies


def _facts(**kw) -> RemakeFacts:
    base = dict.fromkeys(RemakeFacts.__dataclass_fields__, 0)
    base["log_pop"] = 1.0
    base.update(kw)
    return RemakeFacts(**base)


def test_features_order():
    x = remake_features(_facts(persons=1, old_cue=True, oldest=True, rule_pick=True))
    v = dict(zip(FEATURES, x, strict=True))
    assert len(x) == len(FEATURES)
    assert v["persons"] == pytest.approx(np.log1p(1)) and v["old_cue"] == 1.0 and v["rule_pick"] == 1.0
    assert remake_features(_facts(old_cue=True))[FEATURES.index("old_cue")] == 0.0  # only for the oldest


def test_fit_conditional_logit_learns_the_signal():
    rng = np.random.default_rng(0)
    groups, pos = [], []
    for _ in range(200):
        x = np.zeros((3, len(FEATURES)))
        x[:, 0] = rng.normal(size=3)
        right = int(rng.integers(3))
        x[right, FEATURES.index("persons")] = 1.0  # the right film shares a person with the dialogue
        groups.append(x)
        pos.append(np.arange(3) == right)
    w = fit_conditional_logit(groups, pos, l2=0.1)
    assert w[FEATURES.index("persons")] > 2.0


def test_choose_margin_and_json(tmp_path):
    w = [0.0] * len(FEATURES)
    w[FEATURES.index("persons")] = 2.0
    facts = [_facts(rule_pick=True), _facts(persons=1)]
    assert RemakeChooser(w, margin=0.0).choose(facts) == 1
    assert RemakeChooser(w, margin=5.0).choose(facts) == 0  # not enough to overrule the rules
    path = tmp_path / "rc.json"
    RemakeChooser(w, 0.5, {"note": "x"}).save(path)
    back = RemakeChooser.load(path)
    assert back.weights == pytest.approx(w) and back.margin == 0.5
    bad = back.to_json() | {"features": ["x"]}
    with pytest.raises(ValueError, match="differ"):
        RemakeChooser.from_json(bad)


def test_linker_uses_a_chooser_with_the_dialogue_persons(tmp_path):
    kg = tiny_kg_with_movies([("Alien (2030)", ("alien",), 4001, 2030)])  # a remake; no edges, so no persons
    w = [0.0] * len(FEATURES)
    w[FEATURES.index("persons")] = 3.0
    w[FEATURES.index("log_pop")] = 0.1
    path = tmp_path / "rc.json"
    RemakeChooser(w).save(path)
    plain = EntityLinker.from_kg(kg, popularity_path="", span_classifier="", use_ner=False).load()
    chooser = EntityLinker.from_kg(kg, popularity_path="", span_classifier="", use_ner=False, remake_chooser=str(path))
    weaver = next(e.id for e in kg.entities if e.name == "Sigourney Weaver")
    text = "have you seen alien"
    choices = chooser.remake_choices(text, plain.link(text), [weaver])
    ((k, group, facts),) = choices
    assert sorted(kg.entities[g].name for g in group) == ["Alien (1979)", "Alien (2030)"]
    assert [f.persons for f in facts] == [int(kg.entities[g].name == "Alien (1979)") for g in group]
    got = chooser.link(text, context=[weaver])
    assert [kg.entities[s.entity].name for s in got] == ["Alien (1979)"]
    with pytest.raises(FileNotFoundError):
        EntityLinker.from_kg(
            kg, popularity_path="", span_classifier="", remake_chooser=str(tmp_path / "none.json")
        ).load()
