"""Structured ReDial parsing + item alignment on the toy fixture (tests/fixtures/data_scripts/redial/structured)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from data_scripts.redial import RedialConfig, prepare
from data_scripts.redial_structured import (
    align_items,
    load_structured,
    parse_movie_sent,
    parse_sequence,
    training_rows,
)
from data_scripts.utils.io import DataFormatError, read_jsonl

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "data_scripts" / "redial"


def _prepare(tmp_path: Path, source: Path = FIX) -> tuple[Path, dict]:
    out = tmp_path / "out"
    return out, prepare(RedialConfig(source=str(source), out=str(out), progress=False))


def test_parse_sequence_merges_speakers_and_reads_entities():
    turns = parse_sequence("[SKR] [POS] [EA42] [POS] [I7] [SKR] [NEG] [I8] [REC] [POS] [EG5] [POS] [ED9]")
    assert [t["role"] for t in turns] == ["seeker", "recommender"]
    assert turns[0]["mentions"] == [
        {"kind": "actor", "id": "Q42", "polarity": "pos"},
        {"kind": "item", "id": "I7", "polarity": "pos", "redial_id": None},
        {"kind": "item", "id": "I8", "polarity": "neg", "redial_id": None},
    ]
    assert [m["kind"] for m in turns[1]["mentions"]] == ["genre", "director"]
    with pytest.raises(DataFormatError, match="unknown token"):
        parse_sequence("[SKR] [X1]")
    with pytest.raises(DataFormatError, match="before the first"):
        parse_sequence("[POS] [I1]")


def test_parse_movie_sent():
    assert parse_movie_sent("[('7', 1, 'N'), ('8', ['NEG'], 'S')]") == [
        {"item": "I7", "redial_id": None, "sentiment": "pos", "flag": "N"},
        {"item": "I8", "redial_id": None, "sentiment": "neg", "flag": "S"},
    ]
    with pytest.raises(DataFormatError, match="literal"):
        parse_movie_sent("[('7', 1, 'N'")
    with pytest.raises(DataFormatError, match="literal"):
        parse_movie_sent("__import__('os')")


def test_align_equal_length_then_anchor_gaps():
    pairs = [
        (["I1", "I2"], [10, 20]),  # equal length: I1=10, I2=20
        (["I1", "I3", "I2", "I4"], [10, 30, 20, 40, 50]),  # I3 between anchors 10 and 20 -> 30; I4 ambiguous
        (["I5"], [60]),
        (["I5"], [70]),  # conflicting votes, tie -> unaligned
    ]
    a = align_items(pairs)
    assert a.mapping == {"I1": 10, "I2": 20, "I3": 30}
    assert a.stats["conflicting"] == 1


def test_structured_outputs_alignment_and_leakage_marks(tmp_path):
    out, manifest = _prepare(tmp_path)
    st = manifest["structured"]
    assert st["counts"] == {"train": 2, "valid": 2, "test": 1}
    al = st["alignment"]
    # I7=111, I9=444 from conv 21 (equal length); I8=222 from the anchor gap in test conv 9001; I10 ambiguous
    assert (al["items_total"], al["items_aligned"], al["items_conflicting"]) == (4, 3, 0)
    assert (al["mentions_total"], al["mentions_aligned"]) == (9, 7)
    items = {r["item"]: r for r in read_jsonl(out / "structured_items.jsonl")}
    assert {k: v["redial_id"] for k, v in items.items()} == {"I7": 111, "I8": 222, "I9": 444, "I10": None}
    test = load_structured(out / "structured_test.jsonl")[0]
    assert test["split"] == "test" and test["text_split"] == "test"
    assert [t["role"] for t in test["turns"]] == ["seeker", "recommender"]
    assert test["turns"][0]["movie_ids"] == [111, 222]
    assert test["turns"][1]["movie_ids"] == [444]  # unaligned I10 dropped here ...
    assert test["turns"][1]["mentions"][-1] == {"kind": "item", "id": "I10", "polarity": "neg", "redial_id": None}
    assert test["turns"][1]["entity_ids"] == ["Q123"]
    assert [s["redial_id"] for s in test["movie_sent"]] == [111, 222, 444, None]
    train = load_structured(out / "structured_train.jsonl")
    valid = load_structured(out / "structured_valid.jsonl")
    assert {r["conv_id"]: r["text_split"] for r in train + valid} == {
        "21": "train",
        "77": None,
        "25": "valid",
        "88": None,
    }
    # conversation 25 is valid in the text split: excluded from training rows, as is every test row
    assert [r["conv_id"] for r in training_rows(train + valid + [test])] == ["21", "77", "88"]
    assert [r["conv_id"] for r in training_rows(train + valid, include_official_valid=False)] == ["21", "77"]


def test_test_conversation_in_structured_train_is_refused(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(FIX, src)
    with open(src / "structured" / "train.csv", "a") as fh:
        fh.write("2,9002,\"[('7', 1, 'N')]\",[SKR] [POS] [I7]\n")
    with pytest.raises(DataFormatError, match="refusing to mix test and training"):
        _prepare(tmp_path, src)
    assert not (tmp_path / "out").exists()


def test_truncated_structured_csv(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(FIX, src)
    with open(src / "structured" / "train.csv", "a") as fh:
        fh.write("2,78,\"[('7', 1")
    with pytest.raises(DataFormatError, match=r"train.csv:4: expected 4 columns"):
        _prepare(tmp_path, src)
    assert not (tmp_path / "out").exists()


def test_align_drops_year_less_movies_from_gaps():
    pairs = [(["I1", "I2"], [10, 20]), (["I1", "I3", "I2"], [10, 99, 30, 20])]
    assert "I3" not in align_items(pairs).mapping  # gap holds 1 item but 2 movies
    assert align_items(pairs, droppable=frozenset({99})).mapping["I3"] == 30
