"""Prompt formatting, placeholders, title finding and example building on fixtures."""

import json
from pathlib import Path

import pytest

from crwalker.generation import data as D
from crwalker.generation import placeholders as P
from crwalker.generation.linking import ClassLinker
from data_scripts.utils.io import DataFormatError
from kg_build.acts import DialogAct
from kg_build.schema import tiny_kg_for_tests

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "generation"


@pytest.fixture(scope="module")
def kg():
    return tiny_kg_for_tests()


@pytest.fixture(scope="module")
def examples(kg):
    dlg = D.load_dialogues(FIXTURES / "dialogues.jsonl")
    return D.build_examples(dlg, FIXTURES / "labels.jsonl", kg)


def test_build_prompt():
    assert D.build_prompt("hi  there", "[ Query ( Genre ) ]") == "hi there @ [ Query ( Genre ) ] &"
    assert D.build_prompt("hi", None) == "hi &"
    assert D.build_prompt("  ", None) == "hello &"


def test_act_movies_preorder_and_name_resolution(kg):
    act = DialogAct.parse(
        "[ Recommend ( Aliens (1986) ( James Cameron ) ) ( The Terminator (1984) ) ( Alien (1979) ) ]"
    )
    assert P.act_movies(act, kg) == [7, 4, 6]  # ids -1 resolved by name, preorder
    act2 = D.parse_act("[ Query ( Actor ( Sigourney Weaver ) ) ( Genre ( Horror ) ) ]", kg)
    assert P.act_movies(act2, kg) == []
    assert act2.nodes[0].children[0].entity == 11


def test_delexicalise_aligns_to_act_order(kg):
    text = "Try @1004 or @1001 , not @1005 or @424242"
    assert P.delexicalise(text, [4, 7], kg) == "Try [MOVIE_2] or [MOVIE_1] , not [MOVIE] or [MOVIE]"


def test_fill_placeholders_and_completion():
    titles = ["Aliens (1986)", "The Terminator (1984)"]
    assert P.fill_placeholders("Try [MOVIE_2] and [MOVIE_1].", titles) == "Try The Terminator (1984) and Aliens (1986)."
    # unaligned / out-of-range placeholders take the next unused act movie, then the fallback
    assert P.fill_placeholders("[MOVIE_1], [MOVIE_7], [MOVIE]", titles) == (
        "Aliens (1986), The Terminator (1984), that movie"
    )
    assert P.fill_placeholders("You'll love [MOVIE_1]!", titles, intent="recommend", complete=True) == (
        "You'll love Aliens (1986)! Have you seen The Terminator (1984)?"
    )
    assert P.fill_placeholders("ok", titles, intent="chat", complete=True) == "ok"
    assert P.fill_placeholders("hmm", titles + ["Alien (1979)"], intent="recommend", complete=True) == (
        "hmm Have you seen Aliens (1986), The Terminator (1984) or Alien (1979)?"
    )


def test_placeholder_stream_matches_batch_fill():
    titles = ["Alien (1979)", "Superbad (2007)"]
    text = "Try [MOVIE_2] or [MOVIE_1] [ok] [MOVIE] end"
    for cut in range(1, 6):
        s = P.PlaceholderStream(titles)
        pieces = [s.push(text[i : i + cut]) for i in range(0, len(text), cut)] + [s.finish()]
        assert "".join(pieces) == P.fill_placeholders(text, titles)
        # nothing of a finished placeholder is ever emitted unfilled
        assert not any("MOVIE" in p for p in pieces)


def test_title_finder_and_strip(kg):
    f = P.TitleFinder(kg)
    text = "I loved The Terminator (1984) and Fake Movie Name (2020), also alien (1979) in (1999)"
    assert f.find(text) == [("The Terminator (1984)", True), ("Fake Movie Name (2020)", False), ("Alien (1979)", True)]
    assert f.movie_ids(text) == [4, 6]
    assert P.strip_unlisted_titles(text, [6], f) == ("I loved that movie and that movie, also alien (1979) in (1999)")


def test_class_linker(kg):
    link = ClassLinker(kg)
    assert link("A scary flick with Sigourney Weaver, like Alien (1979)") == {"Genre", "Actor", "Movie"}
    assert link("what actor do you like?") == set()
    assert link("James Cameron did Terminator 2") == {"Director", "Movie"}


def test_build_examples(examples):
    ex = {(e.conv_id, e.turn_idx): e for e in examples}
    assert len(examples) == 4
    e = ex[("c1", 3)]
    assert e.context == "Yes I loved Alien (1979) , something with action?"
    assert e.reply == "Then try [MOVIE_1] or [MOVIE_2] , both by James Cameron."
    assert e.titles == ["Aliens (1986)", "The Terminator (1984)"]
    assert e.context_movie_ids == [6]
    assert ex[("c2", 0)].context == "hello" and ex[("c2", 0)].intent == "query"
    assert ex[("c2", 2)].reply == "[MOVIE_1] is so funny! I also like [MOVIE] ."
    assert e.prompt() == (
        "Yes I loved Alien (1979) , something with action? @ [ Recommend ( Aliens (1986) "
        "( James Cameron ) ) ( The Terminator (1984) ( James Cameron ) ) ] &"
    )
    assert e.prompt(use_act=False) == "Yes I loved Alien (1979) , something with action? &"


def test_with_predicted_act(examples, kg):
    preds = D.load_predicted_acts(FIXTURES / "predicted_acts.jsonl")
    e = examples[1].with_act(preds[("c1", 3)], kg)
    assert e.titles == ["Terminator 2: Judgment Day (1991)"] and e.reply_text == examples[1].reply_text


def test_bad_label_row_names_file_and_line(tmp_path, kg):
    dlg = D.load_dialogues(FIXTURES / "dialogues.jsonl")
    bad = tmp_path / "labels.jsonl"
    bad.write_text(
        json.dumps({"conv_id": "c1", "turn_idx": 1, "act_text": "[ Chat ]"})
        + "\n"
        + json.dumps({"conv_id": "c1", "turn_idx": 99, "act_text": "[ Chat ]"})
        + "\n"
    )
    with pytest.raises(DataFormatError, match=r"labels.jsonl:2: conv c1 has no turn 99"):
        D.build_examples(dlg, bad, kg)


def test_encode_pair_masks_prompt(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    ids, labels = D.encode_pair(tok, "hi @ [ Chat ] &", "hello [MOVIE_1]", max_prompt_tokens=3, max_reply_tokens=2)
    assert len(ids) == len(labels) == 3 + 2 + 1
    assert labels[:3] == [-100] * 3 and labels[3:] == ids[3:] and ids[-1] == tok.eos_token_id
    batch = D.collate([(ids, labels), (ids[:4], labels[:4])], pad_id=tok.pad_token_id)
    assert batch.input_ids.shape == (2, 6) and batch.attention_mask[1].tolist() == [1, 1, 1, 1, 0, 0]
    assert batch.labels[1, 4:].tolist() == [-100, -100]


def test_act_movies_trusts_names_over_stale_ids(kg):
    # id 5 is "Terminator 2" in this KG, but the node says Alien: labels built against another KG build
    act = DialogAct.from_json({"intent": "recommend", "nodes": [{"entity": 5, "name": "Alien (1979)", "children": []}]})
    assert P.act_movies(act, kg) == [6]


def test_load_predicted_acts_nested_and_missing(tmp_path):
    p = tmp_path / "turns.jsonl"
    p.write_text(
        json.dumps({"conv_id": 7, "turn_idx": 2, "pred": {"act_text": "[ Chat ]", "intent": "chat"}})
        + "\n"
        + json.dumps({"conv_id": 7, "turn_idx": 4, "pred": {}})
        + "\n"
    )
    with pytest.raises(DataFormatError, match=r"turns.jsonl:2: missing field 'act_text'"):
        D.load_predicted_acts(p)
    p.write_text(p.read_text().splitlines()[0] + "\n")
    assert D.load_predicted_acts(p) == {("7", 2): "[ Chat ]"}


def test_title_finder_yearless_kg_movies():
    from kg_build.schema import Entity, KnowledgeGraph

    base = tiny_kg_for_tests()
    ents = list(base.entities) + [Entity(len(base.entities), "Hot Tub Time Machine", "movie", ("Movie",))]
    kg = KnowledgeGraph(ents, base.relations, base.edge_index, base.edge_type)
    f = P.TitleFinder(kg)
    assert f.find("Have you seen Hot Tub Time Machine, Alien (1979) or hot tub time machine?") == [
        ("Hot Tub Time Machine", True),
        ("Alien (1979)", True),
    ]
