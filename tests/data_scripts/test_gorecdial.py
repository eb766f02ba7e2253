"""GoRecDial ParlAI-text loader on a hand-written fixture (GoRecDial itself is not available offline)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_scripts import gorecdial
from data_scripts.gorecdial import parse_line, read_gorecdial
from data_scripts.utils.io import DataFormatError, read_jsonl

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "data_scripts" / "gorecdial"


def test_episode_turns_context_and_reactions():
    (ep,) = read_gorecdial(FIX / "dialrec-Expert-all-train.txt", "train", titles={2571: "Matrix, The (1999)"})
    assert ep["conv_id"] == "train-000001"
    assert ep["context"] == ["I like action movies.", "I dislike musicals."]
    assert [t["role"] for t in ep["turns"]] == ["seeker", "recommender"] * 3
    assert ep["turns"][0]["text"] == "hi, any suggestions?"
    assert ep["turns"][1]["text"] == "Try Matrix, The (1999), it has great fights"
    assert ep["turns"][3]["movie_ids"] == [1] and ep["turns"][3]["text"] == "Great. Also MID1 and MID1 again"
    assert ep["reactions"] == [{"movie_id": 2571, "accepted": True}, {"movie_id": 1, "accepted": False}]


def test_errors_name_file_and_line(tmp_path):
    with pytest.raises(DataFormatError, match="not key:value"):
        parse_line("text:a\tbroken")
    bad = tmp_path / "dialrec-Expert-all-train.txt"
    bad.write_text((FIX / "dialrec-Expert-all-train.txt").read_text().splitlines()[0] + "\n")
    with pytest.raises(DataFormatError, match=r"train.txt:1: file ends inside an episode"):
        read_gorecdial(bad, "train")


def test_cli(tmp_path):
    titles = tmp_path / "movies.jsonl"
    titles.write_text(json.dumps({"item_id": 3, "title_raw": "Toy Story (1995)"}) + "\n")
    assert gorecdial.main(["--source", str(FIX), "--out", str(tmp_path / "out"), "--titles", str(titles)]) == 0
    (test,) = read_jsonl(tmp_path / "out" / "test.jsonl")
    assert test["turns"][1]["text"] == "watch Toy Story (1995)"
    assert gorecdial.main(["--source", str(tmp_path / "missing"), "--out", str(tmp_path / "o2")]) == 1
    assert not (tmp_path / "o2").exists()
