"""ReDial raw -> canonical conversion on tiny hand-written fixtures (tests/fixtures/data_scripts/redial)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from data_scripts import redial
from data_scripts.redial import (
    RedialConfig,
    load_dialogues,
    load_split,
    mention_ids,
    prepare,
    render_mentions,
    split_of,
)
from data_scripts.utils.io import DataFormatError

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "data_scripts" / "redial"
CANON_KEYS = {"conv_id", "split", "seeker_id", "recommender_id", "turns", "questionnaire"}
TURN_KEYS = {"idx", "role", "text_raw", "text", "movie_ids", "message_ids"}


def _run(tmp_path: Path, source: Path = FIX, **kw) -> tuple[Path, dict]:
    out = tmp_path / "out"
    cfg = RedialConfig(source=str(source), out=str(out), progress=False, **kw)
    return out, prepare(cfg)


def _by_id(out: Path) -> dict[str, dict]:
    return {d["conv_id"]: d for s in ("train", "valid", "test") for d in load_split(out, s)}


def test_canonical_schema_and_splits(tmp_path):
    out, manifest = _run(tmp_path, structured=False)
    dlg = _by_id(out)
    assert {d["split"] for d in dlg.values()} == {"train", "valid", "test"}
    assert dlg["9001"]["split"] == dlg["9002"]["split"] == "test"
    assert dlg["25"]["split"] == "valid" and dlg["21"]["split"] == "train"
    for d in dlg.values():
        assert set(d) == CANON_KEYS
        for i, t in enumerate(d["turns"]):
            assert set(t) == TURN_KEYS and t["idx"] == i
    assert manifest["counts"]["test"]["dialogues"] == 2
    assert manifest["counts"]["train"]["dialogues"] + manifest["counts"]["valid"]["dialogues"] == 4
    assert manifest["n_movies"] == 5
    assert set(manifest["sources"]) == {
        str(FIX / n) for n in ("test_data.jsonl", "train_data_partial.jsonl", "movies_with_mentions.csv")
    }
    movies = redial.load_movies(out / "movies.jsonl")
    assert movies[1] == {
        "redial_id": 222,
        "name": "Police Academy (1984)",
        "title": "Police Academy",
        "year": 1984,
        "n_mentions": 3,
        "n_mentions_train": 0,
    }
    assert movies[2]["year"] is None


def test_train_mention_counts_ignore_valid_and_test(tmp_path):
    out, _ = _run(tmp_path, structured=False)
    train = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    expected = {}
    for d in train:
        for rid in {m for t in d["turns"] for m in t["movie_ids"]}:
            expected[rid] = expected.get(rid, 0) + 1
    assert expected, "fixture train split should mention movies"
    got = {m["redial_id"]: m["n_mentions_train"] for m in redial.load_movies(out / "movies.jsonl")}
    assert {k: v for k, v in got.items() if v} == expected


def test_merging_roles_rendering_and_mentions(tmp_path):
    out, _ = _run(tmp_path, structured=False)
    d = _by_id(out)["9001"]
    assert (d["seeker_id"], d["recommender_id"]) == (10, 20)
    assert [t["role"] for t in d["turns"]] == ["seeker", "recommender", "seeker"]
    first, second = d["turns"][0], d["turns"][1]
    assert first["text_raw"] == "Hi I like @111 and @222 and @111 too"
    assert first["text"] == "Hi I like Super Troopers (2001) and Police Academy (1984) and Super Troopers (2001) too"
    assert first["movie_ids"] == [111, 222]  # order kept, duplicate removed
    assert first["message_ids"] == [1, 2]
    # 666 is not in movies_with_mentions.csv: falls back to the dialogue's movieMentions name (squeezed)
    assert second["text"] == "Try Lethal Weapon (1987) or The Matrix (1999). Also Unknown Film (2010)"
    assert second["movie_ids"] == [444, 555, 666]
    # the recommender speaks first in 9002: roles come from worker ids, not from position
    d2 = _by_id(out)["9002"]
    assert [t["role"] for t in d2["turns"]] == ["recommender", "seeker", "recommender"]
    assert d2["turns"][2]["text"] == "American Pie is fun"


def test_missing_message_ids_are_null(tmp_path):
    out, _ = _run(tmp_path, structured=False)
    d = _by_id(out)["22"]
    assert [t["message_ids"] for t in d["turns"]] == [[100], [None], [102]]


def test_questionnaire(tmp_path):
    out, _ = _run(tmp_path, structured=False)
    q = _by_id(out)["9001"]["questionnaire"]
    assert set(q) == {"111", "222", "444", "555", "666"}
    assert q["111"] == {
        "name": "Super Troopers (2001)",
        "seeker": {"suggested": 0, "seen": 1, "liked": 1},
        "recommender": None,
    }  # respondentQuestions is [] in the raw file
    assert q["666"]["name"] == "Unknown Film (2010)"
    q2 = _by_id(out)["9002"]["questionnaire"]["333"]
    assert q2["seeker"] == {"suggested": 1, "seen": 0, "liked": 2}
    assert q2["recommender"] == {"suggested": 1, "seen": 1, "liked": 1}


def test_split_is_deterministic_and_balanced():
    ids = [str(i) for i in range(20000)]
    a = [split_of(i) for i in ids]
    assert a == [split_of(i) for i in ids]
    share = a.count("valid") / len(a)
    assert 0.09 < share < 0.11
    assert split_of("25") == "valid" and split_of("21") == "train"
    assert [split_of(i, salt="other") for i in ids[:200]] != a[:200]


def test_render_helpers():
    assert mention_ids("@1 x @2 @1 @3.") == [1, 2, 3]
    assert render_mentions("see @1 or @9", {1: "A (2000)"}) == "see A (2000) or @9"


def test_truncated_file_names_file_and_line_and_writes_nothing(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(FIX, src)
    lines = (src / "train_data_partial.jsonl").read_text().splitlines()
    lines[2] = lines[2][: len(lines[2]) // 2]  # truncated JSON on line 3
    (src / "train_data_partial.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError) as exc:
        _run(tmp_path, source=src)
    assert exc.value.path.endswith("train_data_partial.jsonl") and exc.value.line == 3
    assert not (tmp_path / "out").exists()


def test_bad_test_file_leaves_existing_outputs_untouched(tmp_path):
    out, _ = _run(tmp_path, structured=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    src = tmp_path / "src"
    shutil.copytree(FIX, src)
    with open(src / "test_data.jsonl", "a") as fh:
        fh.write('{"conversationId": "9003", "messages": [')
    with pytest.raises(DataFormatError, match=r"test_data.jsonl:3"):
        _run(tmp_path, source=src, structured=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_unknown_sender_is_an_error(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(FIX, src)
    rows = [json.loads(x) for x in (src / "test_data.jsonl").read_text().splitlines()]
    rows[1]["messages"][1]["senderWorkerId"] = 999
    (src / "test_data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataFormatError, match=r"test_data.jsonl:2: message 1 sender 999"):
        _run(tmp_path, source=src)
    assert not (tmp_path / "out").exists()


def test_main_cli_and_load_errors(tmp_path, capsys):
    out = tmp_path / "cli"
    rc = redial.main(["--source", str(FIX), "--out", str(out), "--no-structured", "--progress", "false"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "| test | 2 |" in text
    assert not (out / "structured_train.jsonl").exists()
    assert redial.main(["--source", str(tmp_path / "nope"), "--out", str(out)]) == 1
    with pytest.raises(FileNotFoundError, match="prepare redial"):
        load_dialogues(tmp_path / "missing.jsonl")
    (tmp_path / "bad.jsonl").write_text('{"conv_id": "1"}\n')
    with pytest.raises(DataFormatError, match="bad.jsonl:1"):
        load_dialogues(tmp_path / "bad.jsonl")


def test_full_train_file_preferred(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(FIX, src)
    (src / "train_data_partial.jsonl").rename(src / "train_data.jsonl")
    out, manifest = _run(tmp_path, source=src, structured=False)
    assert manifest["train_file"] == "train_data.jsonl"
    assert _by_id(out)["25"]["split"] == "valid"
