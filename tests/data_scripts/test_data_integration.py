"""Integration: run the real ReDial / MovieLens preparation on ../shared/datasets into a tmp dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_scripts import movielens, redial
from data_scripts.redial_structured import load_structured, training_rows
from data_scripts.utils.io import read_json, read_jsonl

ROOT = Path(__file__).resolve().parents[2]
DATASETS = ROOT.parent / "shared" / "datasets"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (DATASETS / "redial").is_dir(), reason="../shared/datasets not available"),
]


@pytest.fixture(scope="module")
def redial_out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("redial")
    rc = redial.main(["--source", str(DATASETS / "redial"), "--out", str(out), "--progress", "false"])
    assert rc == 0
    return out


def test_redial_counts(redial_out):
    m = read_json(redial_out / "manifest.json")
    c = m["counts"]
    assert c["train"]["dialogues"] + c["valid"]["dialogues"] == 2270
    assert c["test"]["dialogues"] == 1342
    assert 0.07 < c["valid"]["dialogues"] / 2270 < 0.13
    assert m["n_movies"] == 6924
    assert len(read_jsonl(redial_out / "movies.jsonl")) == 6924
    test = redial.load_split(redial_out, "test")
    first = next(d for d in test if d["conv_id"] == "20001")
    assert first["turns"][0]["text"] == "Hi I am looking for a movie like Super Troopers (2001)"
    assert first["turns"][0]["role"] == "seeker" and first["seeker_id"] == 956
    # "I have seen @192131" + "I mean @134643" are merged into one seeker turn
    assert first["turns"][2]["movie_ids"] == [192131, 134643]


def test_redial_structured(redial_out):
    m = read_json(redial_out / "manifest.json")["structured"]
    assert m["counts"] == {"train": 8104, "valid": 901, "test": 1342}
    al = m["alignment"]
    assert al["items_aligned"] > 2000 and al["mention_coverage"] > 0.8
    assert al["items_conflicting"] < 0.01 * al["items_aligned"]
    sh = al["split_half"]
    assert sh["items_in_both_halves"] > 500 and sh["agreeing"] >= 0.99 * sh["items_in_both_halves"]
    test = load_structured(redial_out / "structured_test.jsonl")
    assert all(r["split"] == "test" for r in test)
    rows = load_structured(redial_out / "structured_train.jsonl") + load_structured(
        redial_out / "structured_valid.jsonl"
    )
    test_ids = {r["conv_id"] for r in test}
    assert not test_ids & {r["conv_id"] for r in training_rows(rows)}
    d = next(r for r in test if r["conv_id"] == "20001")
    assert d["turns"][0]["movie_ids"] == [111776]  # Super Troopers


def test_movielens(tmp_path):
    if not (DATASETS / "movielens").is_dir():
        pytest.skip("movielens not available")
    assert movielens.main(["--source", str(DATASETS / "movielens"), "--out", str(tmp_path), "--progress", "false"]) == 0
    small = read_json(tmp_path / "ml-latest-small" / "manifest.json")
    assert (small["n_movies"], small["n_ratings"], small["n_users"]) == (9742, 100836, 610)
    k100 = read_json(tmp_path / "ml-100k" / "manifest.json")
    assert (k100["n_movies"], k100["n_ratings"], k100["n_users"]) == (1682, 100000, 943)
