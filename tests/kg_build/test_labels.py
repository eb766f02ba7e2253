"""Dialog-act label rules (CR-Walker Table 1) on hand-written dialogues and the tiny KG."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import NamedTuple

import pytest

from data_scripts.utils.io import DataFormatError, read_json, read_jsonl
from kg_build.acts import DialogAct, name_resolver
from kg_build.intent import analyse, mask_movies, split_sentences
from kg_build.labels import (
    ActBuilder,
    LabelsConfig,
    label_dialogue,
    load_dialogues,
    run,
    select_hop1,
    turn_entities,
)
from kg_build.schema import tiny_kg_for_tests

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "kg_build" / "labels"


class Span(NamedTuple):
    start: int
    end: int
    text: str
    entity: int
    score: float
    source: str
    negated: bool


class FakeLinker:
    """Alias matcher with the EntityLinker interface: ``@<id>`` exact, aliases by word match, naive negation."""

    NEG = re.compile(r"\b(?:not|don't|dont|hate|dislike|no)\b[\w\s']{0,20}$", re.IGNORECASE)

    def __init__(self, kg):
        self.kg = kg
        forms = []
        for e in kg.entities:
            if e.type in {"class"}:
                continue
            for a in {e.name.lower(), *e.aliases}:
                forms.append((a, e.id))
        forms.sort(key=lambda x: -len(x[0]))
        self.forms = forms
        self.calls = 0

    def link(self, text: str) -> list[Span]:
        spans: list[Span] = []
        taken = [False] * len(text)
        for m in re.finditer(r"@(\d+)", text):
            e = self.kg.by_redial_id.get(int(m.group(1)))
            if e is not None:
                spans.append(Span(m.start(), m.end(), m.group(), e, 1.0, "redial_id", False))
            for i in range(m.start(), m.end()):
                taken[i] = True
        low = text.lower()
        for form, e in self.forms:
            for m in re.finditer(r"\b" + re.escape(form) + r"(?:s|es)?\b", low):
                if any(taken[m.start() : m.end()]):
                    continue
                for i in range(m.start(), m.end()):
                    taken[i] = True
                neg = bool(self.NEG.search(low[max(0, m.start() - 30) : m.start()]))
                spans.append(Span(m.start(), m.end(), text[m.start() : m.end()], e, 1.0, "alias", neg))
        return sorted(spans)

    def link_many(self, texts):
        self.calls += 1
        return [self.link(t) for t in texts]


@pytest.fixture(scope="module")
def kg():
    return tiny_kg_for_tests()


@pytest.fixture(scope="module")
def ids(kg):
    return {e.name: e.id for e in kg.entities}


@pytest.fixture(scope="module")
def builder(kg):
    return ActBuilder(kg, max_hop1=5)


@pytest.fixture(scope="module")
def labelled(kg, builder):
    """Rows of the fixture dialogues, keyed by (conv_id, turn_idx)."""
    linker = FakeLinker(kg)
    rows = {}
    for d in load_dialogues(FIXTURES / "dialogues.jsonl"):
        spans = linker.link_many([t["text_raw"] for t in d["turns"]])
        links = [turn_entities(kg, t, s) for t, s in zip(d["turns"], spans, strict=True)]
        for r in label_dialogue(d, links, builder, "test"):
            rows[(r["conv_id"], r["turn_idx"])] = r
    return rows


def _adjacent(kg, act: DialogAct) -> bool:
    return all(c.entity in kg.neighbors(n.entity) for n in act.nodes for c in n.children)


# ---------------------------------------------------------------- intent regexes


def test_mask_movies_keeps_offsets():
    text = "Try @12345, or @7!"
    masked = mask_movies(text)
    assert len(masked) == len(text) and "@MMMMM" in masked and "12345" not in masked


def test_split_sentences():
    text = "Hi! What kind of movies do you like? I love comedies"
    assert [text[s:e].strip() for s, e in split_sentences(text)] == [
        "Hi!",
        "What kind of movies do you like?",
        "I love comedies",
    ]


@pytest.mark.parametrize(
    "text,pref,classes",
    [
        ("What kind of movies do you like?", True, ["Genre"]),
        ("Who is your favourite actor?", True, ["Actor"]),
        ("what type of actor do you like", True, ["Actor"]),
        ("Are you looking for something recent?", True, ["Time"]),
        ("Do you prefer older movies", True, ["Time"]),
        ("Hi What is your favorite type of movie or actor?", True, ["Genre", "Actor"]),
        ("What can I help you find today?", True, []),
        ("Hello. What's your movie taste?", True, []),
        ("I think you will like it.", False, []),
        ("Have you seen @1001?", False, []),
        ("Have You Seen @1001? is great", False, []),
    ],
)
def test_preference_question_and_class_cues(text, pref, classes):
    sents = analyse(text)
    assert any(s.is_preference_question() for s in sents) is pref
    assert [c for s in sents if s.is_preference_question() for _, c in s.class_cues] == classes


def test_how_about_needs_an_attribute():
    (s,) = analyse("How about something from the 80s?")
    assert not s.is_preference_question() and s.is_preference_question(has_attribute=True)


# ---------------------------------------------------------------- width bound


def test_select_hop1_prefix_and_orphans():
    covers = {10: [1], 11: [1], 12: [1], 13: [2]}
    assert select_hop1([10, 11, 12, 13], covers, [1, 2], 5) == ([10, 11, 12, 13], [])
    # prefix of 3 parents covers only movie 1 -> 3 + orphan 2 = 4 > 3, so 2 parents + 1 orphan
    assert select_hop1([10, 11, 12, 13], covers, [1, 2], 3) == ([10, 11], [2])
    assert select_hop1([], {}, [1, 2, 3], 2) == ([], [1, 2])


# ---------------------------------------------------------------- Table-1 rules on hand-written dialogues


def test_recommend_through_mentioned_attribute(labelled, ids):
    r = labelled[("t1", 1)]
    assert r["intent"] == "recommend"
    assert r["act_text"] == "[ Recommend ( James Cameron ( The Terminator (1984) ) ) ]"
    assert r["turn_movies"] == [ids["The Terminator (1984)"]]
    assert r["context_entities"] == [ids["James Cameron"], ids["Horror"]]
    assert r["context_entities_seeker"] == r["context_entities"]
    assert r["negated_entities"] == [ids["Horror"]]


def test_recommend_hop1_ranking(labelled, kg):
    # tier 0 named in turn (Sigourney Weaver), tier 1 named by seeker (James Cameron), tier 3 attributes of
    # mentioned items ordered by KG degree (1980s: 3 edges < Action: 4); negated Horror never used.
    r = labelled[("t1", 3)]
    act = DialogAct.from_json(r["act"])
    assert [n.name for n in act.nodes] == ["Sigourney Weaver", "James Cameron", "1980s", "Action"]
    assert all([c.name for c in n.children] == ["Aliens (1986)"] for n in act.nodes)
    assert _adjacent(kg, act)


def test_repeated_recommendation_counts(labelled):
    # seeker-named James Cameron (tier 1) before recommender-named Sigourney Weaver (tier 2)
    assert labelled[("t1", 5)]["act_text"] == (
        "[ Recommend ( James Cameron ( Aliens (1986) ) ) ( Sigourney Weaver ( Aliens (1986) ) ) "
        "( 1980s ( Aliens (1986) ) ) ( Action ( Aliens (1986) ) ) ]"
    )


def test_recommend_prefers_attributes_of_seeker_items(kg, ids, builder):
    # seeker named The Terminator (tier 3 items), only the recommender named Alien (tier 4 item)
    act = builder.build_recommend(
        [ids["Aliens (1986)"]], [], [ids["The Terminator (1984)"], ids["Alien (1979)"]], [ids["The Terminator (1984)"]]
    )
    assert [n.name for n in act.nodes] == ["1980s", "James Cameron", "Action", "Sigourney Weaver"]


def _label(kg, builder, turns, questionnaire=None):
    d = {"conv_id": "x", "turns": turns, "questionnaire": questionnaire or {}}
    linker = FakeLinker(kg)
    spans = linker.link_many([t["text_raw"] for t in turns])
    known = [int(k) for k in d["questionnaire"]]
    links = [turn_entities(kg, t, sp, known) for t, sp in zip(turns, spans, strict=True)]
    return label_dialogue(d, links, builder, "test")


def test_only_exact_movie_mentions_are_recommended(kg, builder, ids):
    turns = [
        {"role": "seeker", "text_raw": "I like action", "movie_ids": []},
        {"role": "recommender", "text_raw": "terminator is great", "movie_ids": []},
        {"role": "recommender", "text_raw": "Try @1001", "movie_ids": []},  # @id in text only
    ]
    rows = _label(kg, builder, turns)
    assert rows[0]["intent"] == "chat" and rows[0]["turn_movies"] == []
    assert rows[0]["turn_entities"] == [ids["The Terminator (1984)"]]
    assert rows[0]["act_text"] == "[ Chat ( Action ( The Terminator (1984) ) ) ]"
    assert rows[1]["intent"] == "recommend" and rows[1]["recommended_movies"] == [ids["The Terminator (1984)"]]


def test_typed_titles_with_year_or_in_questionnaire_are_recommended(kg, builder, ids):
    turns = [
        {"role": "seeker", "text_raw": "hi", "movie_ids": []},
        {"role": "recommender", "text_raw": "Have you seen Terminator (1984)?", "movie_ids": []},
        {"role": "recommender", "text_raw": "or superbad", "movie_ids": []},
        {"role": "recommender", "text_raw": "or alien", "movie_ids": []},
    ]
    rows = _label(kg, builder, turns, questionnaire={"1005": {"name": "Superbad (2007)", "seeker": None}})
    assert [r["recommended_movies"] for r in rows] == [[ids["The Terminator (1984)"]], [ids["Superbad (2007)"]], []]
    assert [r["intent"] for r in rows] == ["recommend", "recommend", "chat"]


def test_recommend_width_bound(kg, ids):
    act = ActBuilder(kg, max_hop1=2).build_recommend(
        [ids["Aliens (1986)"], ids["Superbad (2007)"]], [], [ids["James Cameron"], ids["Action"]], []
    )
    # 2 slots: the orphan Superbad takes one, the best attribute (James Cameron, lower id at equal degree) the other
    assert act.linearize() == "[ Recommend ( James Cameron ( Aliens (1986) ) ) ( Superbad (2007) ) ]"


def test_recommend_without_parent_is_leaf(kg, ids):
    act = ActBuilder(kg).build_recommend([ids["Superbad (2007)"]], [], [ids["Horror"]], [ids["Horror"]])
    assert act.linearize() == "[ Recommend ( Superbad (2007) ) ]"
    assert act.leaves == [ids["Superbad (2007)"]]


def test_query_generic_class(labelled):
    assert labelled[("t2", 0)]["act_text"] == "[ Query ( Genre ) ]"
    assert labelled[("t3", 3)]["act_text"] == "[ Query ( Actor ) ]"


def test_query_with_attributes_of_the_class(labelled, kg):
    # the seeker's own movie is echoed (not a recommendation); the question names two genres
    r = labelled[("t2", 2)]
    assert r["intent"] == "query" and r["recommended_movies"] == []
    assert r["act_text"] == "[ Query ( Genre ( Action ) ( Horror ) ) ]"
    assert _adjacent(kg, DialogAct.from_json(r["act"]))


def test_query_from_attribute_question(kg, builder):
    text = "Comedy or something else?"
    spans = [(st, en, e) for st, en, _, e, *_ in FakeLinker(kg).link(text)]
    assert builder.build_query(analyse(text), spans).linearize() == "[ Query ( Genre ( Comedy ) ) ]"
    assert builder.build_query(analyse("Something else?"), []) is None


def test_negation_tracks_latest_seeker_mention(labelled, ids):
    assert labelled[("t2", 4)]["negated_entities"] == [ids["Horror"]]


def test_chat_new_entity_without_parent_is_leaf(labelled):
    assert labelled[("t2", 4)]["act_text"] == "[ Chat ( Action ) ( Arnold Schwarzenegger ) ]"


def test_chat_mentioned_entity_with_adjacent_child(labelled, kg):
    r = labelled[("t2", 6)]
    assert r["act_text"] == "[ Chat ( Aliens (1986) ( James Cameron ) ) ]"
    assert _adjacent(kg, DialogAct.from_json(r["act"]))


def test_questionnaire_not_suggested_is_chat(labelled):
    r = labelled[("t3", 1)]
    assert r["intent"] == "chat"
    assert r["act_text"] == "[ Chat ( Horror ( Alien (1979) ) ) ]"


def test_rows_round_trip_and_only_recommender_turns(labelled, kg):
    resolve = name_resolver(kg)
    assert sorted(labelled) == [
        ("t1", 1),
        ("t1", 3),
        ("t1", 5),
        ("t2", 0),
        ("t2", 2),
        ("t2", 4),
        ("t2", 6),
        ("t3", 1),
        ("t3", 3),
    ]
    for r in labelled.values():
        act = DialogAct.from_json(r["act"])
        assert DialogAct.parse(r["act_text"], resolve) == act
        assert act.width <= 5


# ---------------------------------------------------------------- end to end


def test_run_writes_splits_and_stats(tmp_path, kg):
    kg.save(tmp_path / "kg")
    data = tmp_path / "redial"
    data.mkdir()
    for split in ("train", "test"):
        shutil.copy(FIXTURES / "dialogues.jsonl", data / f"{split}.jsonl")
    cfg = LabelsConfig(
        data=str(data),
        kg=str(tmp_path / "kg"),
        out=str(tmp_path / "labels"),
        splits=["train", "test"],
        results=str(tmp_path / "results.json"),
        link_cache=str(tmp_path / "cache" / "links.jsonl"),
    )
    linkers = []
    stats = run(cfg, linker_factory=lambda k: linkers.append(FakeLinker(k)) or linkers[-1])
    rows = read_jsonl(tmp_path / "labels" / "test.jsonl")
    assert len(rows) == 9 and stats["test"]["rows"] == 9
    assert set(rows[0]) >= {
        "conv_id",
        "split",
        "turn_idx",
        "intent",
        "act",
        "act_text",
        "turn_movies",
        "turn_entities",
        "context_entities",
        "context_entities_seeker",
        "negated_entities",
    }
    s = stats["test"]
    assert s["intent_counts"] == {"recommend": 3, "query": 3, "chat": 3}
    # every recommend row of the fixture has a hop-1 parent for its movie
    assert s["rec_with_parent_share"] == 1.0 and s["rec_movie_parent_share"] == 1.0
    assert s["timing"]["unmapped_movies"] == 1
    assert s["round_trip_exact_share"] == 1.0
    # widths: recommend 1+4+4, query 1+1+1, chat 2+1+1 -> 16 / 9; depth 2 except the three childless queries
    assert s["mean_width"] == pytest.approx(16 / 9)
    assert s["mean_depth"] == pytest.approx((6 * 2 + 3 * 1) / 9)
    assert read_json(tmp_path / "labels" / "stats.json")["splits"]["test"]["rows"] == 9
    res = read_json(tmp_path / "results.json")
    assert "git_commit" in res and res["splits"]["train"]["rows"] == 9
    assert linkers[0].calls == 1  # one batched call for the first split; the second is fully cached
    assert s["timing"]["cached_texts"] == s["timing"]["unique_texts"]
    first = (tmp_path / "labels" / "test.jsonl").read_bytes()
    run(cfg, linker_factory=lambda k: linkers.append(FakeLinker(k)) or linkers[-1])
    assert linkers[1].calls == 0  # rerun: everything from the link cache, same output
    assert (tmp_path / "labels" / "test.jsonl").read_bytes() == first


def test_bad_dialogue_names_file_and_line(tmp_path):
    bad = tmp_path / "test.jsonl"
    bad.write_text('{"conv_id": "x", "turns": []}\n{"conv_id": "y", "turns": [{"role": "bot", "text": "hi"}]}\n')
    with pytest.raises(DataFormatError, match=r"test.jsonl:2: turn 0: 'role'"):
        load_dialogues(bad)


def test_check_labels_match_kg(tmp_path):
    import json

    import pytest

    from kg_build.labels import KG_HASH_KEY, check_labels_match_kg, kg_entities_sha256
    from kg_build.schema import tiny_kg_for_tests

    kg_dir, labels_dir = tmp_path / "kg", tmp_path / "labels"
    tiny_kg_for_tests().save(kg_dir)
    labels_dir.mkdir()
    (labels_dir / "stats.json").write_text(json.dumps({"timing": {KG_HASH_KEY: kg_entities_sha256(kg_dir)}}))
    check_labels_match_kg(labels_dir, kg_dir)  # same KG: fine
    (labels_dir / "stats.json").write_text(json.dumps({"timing": {KG_HASH_KEY: "0" * 64}}))
    with pytest.raises(ValueError, match="different KG"):
        check_labels_match_kg(labels_dir, kg_dir)
