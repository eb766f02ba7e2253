"""Tests of the entity-linking benchmark (:mod:`kg_build.bench_linking`) on tiny fixtures."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from rapidfuzz.distance import OSA

from data_scripts.utils.io import DataFormatError, read_jsonl
from kg_build import bench_linking as bl
from kg_build.linker import LinkedSpan
from kg_build.schema import tiny_kg_for_tests

FIX = Path(__file__).parents[1] / "fixtures" / "kg_build" / "linker"


@pytest.fixture(scope="module")
def kg():
    return tiny_kg_for_tests()


def test_make_typo_is_seeded_and_small():
    a = [bl.make_typo("the terminator", random.Random(3), 1) for _ in range(3)]
    assert len(set(a)) == 1
    rng = random.Random(0)
    for _ in range(200):
        t = bl.make_typo("guardians of the galaxy", rng, 1)
        assert t != "guardians of the galaxy" and OSA.distance(t, "guardians of the galaxy") == 1
        t2 = bl.make_typo("guardians of the galaxy", rng, 2)
        assert 1 <= OSA.distance(t2, "guardians of the galaxy") <= 2
    assert bl.make_typo("21", rng, 1) == "21"  # no letters: unchanged


def test_build_typed_turns_gold_spans(kg):
    dialogues = read_jsonl(FIX / "test.jsonl")
    turns = bl.build_typed_turns(kg, dialogues, typo_share=0.0, typo_min_letters=5, seed=0)
    assert [t.text for t in turns] == [
        "Hi! I loved the terminator and aliens.",
        "Then try terminator 2: judgment day, it is even better",
        "Something funny like superbad please",
        "Hello, how are you?",
    ]
    by_name = {e.name: e.id for e in kg.entities}
    assert turns[0].gold == ((12, 26, by_name["The Terminator (1984)"]), (31, 37, by_name["Aliens (1986)"]))
    for t in turns:
        for s, e, eid in t.gold:
            assert t.text[s:e] == bl.typed_title(kg, eid)
    typo = bl.build_typed_turns(kg, dialogues, typo_share=1.0, typo_min_letters=5, seed=0)
    assert sum(t.n_typos for t in typo) == 4  # "aliens", "the terminator", "terminator 2...", "superbad"


def test_score_movies_hand_computed(kg):
    by_name = {e.name: e.id for e in kg.entities}
    term, t2, alien = (
        by_name["The Terminator (1984)"],
        by_name["Terminator 2: Judgment Day (1991)"],
        by_name["Alien (1979)"],
    )
    turns = [
        bl.TypedTurn("the terminator and alien", ((0, 14, term), (19, 24, alien)), 0),
        bl.TypedTurn("terminator 2 rocks", ((0, 12, t2),), 0),
    ]
    preds = [
        [LinkedSpan(0, 14, "the terminator", term, 1.0, "ruler"), LinkedSpan(19, 24, "alien", t2, 1.0, "ruler")],
        [
            LinkedSpan(0, 12, "terminator 2", t2, 1.0, "ruler"),
            LinkedSpan(13, 18, "rocks", by_name["Action"], 1.0, "ruler"),
        ],
    ]
    tp, n_pred, n_gold, errors = bl.score_movies(kg, turns, preds)
    # genre prediction is ignored; 3 movie predictions, 2 correct; 3 gold mentions
    assert (tp, n_pred, n_gold) == (2, 3, 3)
    assert sorted(e[0] for e in errors) == ["FN", "FP"]


def test_score_movies_unlabelled_known_ids(kg):
    by_name = {e.name: e.id for e in kg.entities}
    term, alien, t2 = (
        by_name["The Terminator (1984)"],
        by_name["Alien (1979)"],
        by_name["Terminator 2: Judgment Day (1991)"],
    )
    # gold: "the terminator"; the user also typed "alien" without @, and Alien is @-mentioned elsewhere
    turn = bl.TypedTurn("the terminator and alien", ((0, 14, term),), 0, known=frozenset({term, alien}))
    preds = [
        [LinkedSpan(0, 14, "the terminator", term, 1.0, "ruler"), LinkedSpan(19, 24, "alien", alien, 1.0, "ruler")]
    ]
    assert bl.score_movies(kg, [turn], preds)[:3] == (1, 2, 1)  # without known ids: a false positive
    tp, n_pred, n_gold, errors = bl.score_movies(kg, [turn], preds, known_ids=True)
    assert (tp, n_pred, n_gold) == (1, 1, 1) and [e[0] for e in errors] == ["KNOWN"]
    # a film the dialogue never mentions stays a false positive; so does a wrong film on a gold span
    other = [[LinkedSpan(0, 14, "the terminator", t2, 1.0, "ruler"), LinkedSpan(19, 24, "alien", t2, 1.0, "ruler")]]
    turn2 = bl.TypedTurn("the terminator and alien", ((0, 14, term),), 0, known=frozenset({term, alien, t2}))
    tp, n_pred, n_gold, errors = bl.score_movies(kg, [turn2], other, known_ids=True)
    assert (tp, n_pred, n_gold) == (0, 1, 1)  # the wrong pick on the gold span counts, the outside one not
    assert sorted(e[0] for e in errors) == ["FN", "FP", "KNOWN"]
    tp, n_pred, _, _ = bl.score_movies(kg, [turn], [[LinkedSpan(19, 24, "alien", t2, 1.0, "ruler")]], known_ids=True)
    assert (tp, n_pred) == (0, 1)


def test_typed_turns_carry_the_dialogues_known_ids(kg):
    turns = bl.build_typed_turns(kg, read_jsonl(FIX / "test.jsonl"), typo_share=0.0, typo_min_letters=5, seed=0)
    for t in turns:
        same = [u for u in turns if u.dialogue == t.dialogue]
        assert t.known == frozenset(g[2] for u in same for g in u.gold)


def test_handlabelled_load_and_score(kg):
    data = bl.load_handlabelled(FIX / "handlabelled.jsonl", kg)
    assert len(data) == 4 and data[3][1] == []
    by_name = {e.name: e.id for e in kg.entities}
    preds = [
        [LinkedSpan(8, 22, "The Terminator", by_name["The Terminator (1984)"], 1.0, "ruler")],
        [LinkedSpan(44, 50, "horror", by_name["Horror"], 1.0, "ruler", negated=False)],
        [
            LinkedSpan(10, 15, "funny", by_name["Comedy"], 1.0, "ruler"),
            LinkedSpan(0, 9, "something", by_name["Action"], 1.0, "ruler"),
        ],
        [],
    ]
    res = bl.score_handlabelled(kg, data, preds)
    pt = res["per_type"]
    assert pt["movie"] == {"precision": 1.0, "recall": 1.0, "n": 1}
    assert pt["person"] == {"precision": 0.0, "recall": 0.0, "n": 1}
    assert pt["genre"] == {"precision": 2 / 3, "recall": 1.0, "n": 2}
    assert pt["time"] == {"precision": 0.0, "recall": 0.0, "n": 1}
    assert res["micro_all_types"] == {"precision": 3 / 4, "recall": 3 / 5, "n": 5}
    assert res["negation_accuracy"] == pytest.approx(2 / 3)  # horror predicted not negated
    assert res["no_entity_clean_share"] == 1.0


def test_handlabelled_bad_name_names_file_and_line(kg):
    with pytest.raises(DataFormatError, match=r"handlabelled_bad.jsonl:2: .*Titanic"):
        bl.load_handlabelled(FIX / "handlabelled_bad.jsonl", kg)


def test_main_end_to_end(tmp_path, kg):
    kg.save(tmp_path / "kg")
    out = tmp_path / "linking.json"
    rc = bl.main(
        [
            "--kg",
            str(tmp_path / "kg"),
            "--data",
            str(FIX),
            "--out",
            str(out),
            "--handlabelled",
            str(FIX / "handlabelled.jsonl"),
            "--typo-share",
            "0",
            "--show-errors",
            "0",
        ]
    )
    assert rc == 0
    res = json.loads(out.read_text())
    for key in ("movie_precision", "movie_recall", "n_mentions", "handlabelled", "ms_per_utterance", "git_commit"):
        assert key in res
    assert res["n_mentions"] == 4
    assert res["movie_precision"] == 1.0 and res["movie_recall"] == 1.0
    assert set(res["handlabelled"]) == {"movie", "person", "genre", "time"}
    assert res["handlabelled"]["person"]["recall"] == 1.0


def _kg_with_duplicates():
    from kg_build.schema import Entity, KnowledgeGraph

    tiny = tiny_kg_for_tests()
    ents = list(tiny.entities)
    for name, rid, year in [
        ("American Pie", 4001, None),
        ("American Pie (1999)", 4002, 1999),
        ("Halloween (1978)", 4003, 1978),
        ("Halloween (2007)", 4004, 2007),
    ]:
        ents.append(Entity(len(ents), name, "movie", ("Movie",), (), rid, year))
    return KnowledgeGraph(ents, tiny.relations, tiny.edge_index.copy(), tiny.edge_type.copy())


def test_same_film_levels():
    kg = _kg_with_duplicates()
    by_name = {e.name: e.id for e in kg.entities}
    pie, pie99 = by_name["American Pie"], by_name["American Pie (1999)"]
    h78, h07 = by_name["Halloween (1978)"], by_name["Halloween (2007)"]
    assert bl.same_film(kg, pie, pie, "strict") and not bl.same_film(kg, pie, pie99, "strict")
    assert bl.same_film(kg, pie, pie99, "duplicate") and bl.same_film(kg, pie99, pie, "duplicate")
    assert not bl.same_film(kg, h78, h07, "duplicate")  # a remake is another film
    assert bl.same_film(kg, h78, h07, "title")
    assert not bl.same_film(kg, h78, pie, "title")
    turns = [bl.TypedTurn("american pie and halloween", ((0, 12, pie99), (17, 26, h78)), 0)]
    preds = [[LinkedSpan(0, 12, "american pie", pie, 1.0, "ruler"), LinkedSpan(17, 26, "halloween", h07, 1.0, "ruler")]]
    assert bl.score_movies(kg, turns, preds, level="strict")[:3] == (0, 2, 2)
    assert bl.score_movies(kg, turns, preds, level="duplicate")[:3] == (1, 2, 2)
    assert bl.score_movies(kg, turns, preds, level="title")[:3] == (2, 2, 2)
    with pytest.raises(ValueError, match="level"):
        bl.score_movies(kg, turns, preds, level="loose")


def test_typed_turn_baseline_and_pieces(kg):
    turns = bl.build_typed_turns(kg, read_jsonl(FIX / "test.jsonl"), typo_share=0.0, typo_min_letters=5, seed=0)
    t = turns[0]
    assert t.raw == "Hi! I loved @1001 and @1004."
    assert t.baseline == f"Hi! I loved {bl.PLACEHOLDER} and {bl.PLACEHOLDER}."
    for ts, bs, n in t.pieces:  # the shared text is identical in both
        assert t.text[ts : ts + n] == t.baseline[bs : bs + n]
    assert "".join(t.text[ts : ts + n] for ts, _, n in t.pieces) == "Hi! I loved  and ."


def test_unlabelled_plain_mentions_hand_computed(kg):
    by_name = {e.name: e.id for e in kg.entities}
    term, alien = by_name["The Terminator (1984)"], by_name["Alien (1979)"]
    raw = "I loved Alien and @1001"
    text = "I loved Alien and the terminator"
    base_text = f"I loved Alien and {bl.PLACEHOLDER}"
    turn = bl.TypedTurn(text, ((18, 32, term),), 0, raw, base_text, ((0, 0, 18), (32, len(base_text), 0)))
    alien_span = LinkedSpan(8, 13, "Alien", alien, 1.0, "ruler")
    preds = [[alien_span, LinkedSpan(18, 32, "the terminator", term, 1.0, "ruler")]]
    errors = bl.score_movies(kg, [turn], preds)[3]
    assert [e[0] for e in errors] == ["FP"]
    # typed by the user (in the raw text) and linked identically without the inserted title -> excluded
    assert bl.unlabelled_plain_mentions(kg, [turn], preds, [[alien_span]], errors) == [(0, alien_span)]
    # not linked in the baseline run -> stays a false positive
    assert bl.unlabelled_plain_mentions(kg, [turn], preds, [[]], errors) == []
    # the linked title is not written in the original message (e.g. a fuzzy match) -> stays
    raw2 = bl.TypedTurn(text.replace("Alien", "Alein"), turn.gold, 0, raw.replace("Alien", "Alein"), "", turn.pieces)
    fuzzy = LinkedSpan(8, 13, "Alein", alien, 0.8, "fuzzy")
    err2 = bl.score_movies(kg, [raw2], [[fuzzy]])[3]
    assert bl.unlabelled_plain_mentions(kg, [raw2], [[fuzzy]], [[fuzzy]], err2) == []
