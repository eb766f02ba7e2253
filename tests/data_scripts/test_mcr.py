"""Tests of the LastFM/LastFM* MCR loader (data_scripts/mcr.py) on the hand-written toy fixture."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from data_scripts import mcr
from data_scripts.utils.io import DataFormatError

TOY = Path(__file__).resolve().parents[1] / "fixtures" / "mcr" / "toy"
REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets" / "mcr"


def test_load_toy_counts_and_lists():
    d = mcr.load_raw(TOY)
    assert (d.n_users, d.n_items, d.n_attrs) == (3, 6, 4)
    assert d.item_attrs[3].tolist() == [0, 1, 3]
    assert d.splits["train"].tolist() == [[0, 0], [0, 1], [1, 2], [1, 3], [2, 4]]
    assert d.splits["test"].tolist() == [[0, 3], [1, 0], [2, 1]]
    assert d.friends[0].tolist() == [1] and d.likes[1].tolist() == [2]
    assert d.attr_names == ["chillout", "electronic", "rock", "alternative"]
    assert [x.tolist() for x in d.user_items("train")] == [[0, 1], [2, 3], [4]]


def test_item_attr_views_agree():
    d = mcr.load_raw(TOY)
    m = d.item_attr_matrix()
    assert m.shape == (6, 4) and m.sum() == 12
    ptr, idx = d.attr_item_csr
    for p in range(4):
        assert idx[ptr[p] : ptr[p + 1]].tolist() == np.flatnonzero(m[:, p]).tolist()


def test_canonical_roundtrip(tmp_path):
    d = mcr.load_raw(TOY)
    mcr.save_canonical(d, tmp_path)
    e = mcr.load_canonical(tmp_path)
    assert (e.n_users, e.n_items, e.n_attrs, e.name) == (3, 6, 4, "toy")
    assert all((a == b).all() for a, b in zip(d.item_attrs, e.item_attrs, strict=True))
    assert all((d.splits[s] == e.splits[s]).all() for s in mcr.SPLITS)
    assert [x.tolist() for x in e.friends] == [[1], [0], []]


def test_prepare_cli_writes_outputs(tmp_path):
    root = tmp_path / "raw"
    shutil.copytree(TOY, root / "toy")
    assert mcr.main(["--root", str(root), "--out", str(tmp_path / "out"), "--datasets", "toy"]) == 0
    meta = json.loads((tmp_path / "out" / "toy" / "meta.json").read_text())
    assert meta["stats"]["test_interactions"] == 3 and meta["n_attrs"] == 4


def _copy(tmp_path: Path) -> Path:
    dst = tmp_path / "toy"
    shutil.copytree(TOY, dst)
    return dst


def test_missing_file_is_named(tmp_path):
    root = _copy(tmp_path)
    (root / "UI_Interaction_data" / "review_dict_valid.json").unlink()
    with pytest.raises(FileNotFoundError, match="review_dict_valid.json"):
        mcr.load_raw(root)


def test_out_of_range_attribute_names_file_and_item(tmp_path):
    root = _copy(tmp_path)
    p = root / "Graph_generate_data" / "item_dict.json"
    data = json.loads(p.read_text())
    data["2"]["feature_index"] = [1, 9]
    p.write_text(json.dumps(data))
    with pytest.raises(DataFormatError, match=r"item_dict.json.*item 2.*attribute id 9"):
        mcr.load_raw(root)


def test_item_without_attributes_rejected(tmp_path):
    root = _copy(tmp_path)
    p = root / "Graph_generate_data" / "item_dict.json"
    data = json.loads(p.read_text())
    data["5"]["feature_index"] = []
    p.write_text(json.dumps(data))
    with pytest.raises(DataFormatError, match="item 5: has no attributes"):
        mcr.load_raw(root)


def test_truncated_json_reports_line(tmp_path):
    root = _copy(tmp_path)
    p = root / "UI_Interaction_data" / "review_dict_test.json"
    p.write_text('{"0": [3],\n "1": [0')
    with pytest.raises(DataFormatError, match=r"review_dict_test.json:2"):
        mcr.load_raw(root)


def test_train_test_leak_detected(tmp_path):
    root = _copy(tmp_path)
    (root / "UI_Interaction_data" / "review_dict_test.json").write_text('{"0": [0]}')
    with pytest.raises(DataFormatError, match="also in train"):
        mcr.load_raw(root)


def test_transe_npz_loaded_without_pickle_and_shape_checked(tmp_path):
    d = mcr.load_raw(TOY)
    good = tmp_path / "good.npz"
    np.savez(good, ui_emb=np.ones((9, 8), np.float32), feature_emb=np.zeros((4, 8), np.float32))
    e = mcr.load_transe(good, d)
    assert e["user"].shape == (3, 8) and e["item"].shape == (6, 8) and e["attr"].shape == (4, 8)
    bad = tmp_path / "bad.npz"
    np.savez(bad, ui_emb=np.ones((8, 8), np.float32), feature_emb=np.zeros((4, 8), np.float32))
    with pytest.raises(DataFormatError, match="bad.npz"):
        mcr.load_transe(bad, d)
    obj = tmp_path / "obj.npz"
    np.savez(obj, ui_emb=np.array([{"a": 1}], dtype=object), feature_emb=np.zeros((4, 8)))
    with pytest.raises(ValueError):
        mcr.load_transe(obj, d)


@pytest.mark.integration
@pytest.mark.skipif(not REAL.exists(), reason="../shared/datasets absent")
@pytest.mark.parametrize("name,n_attrs", [("lastfm", 33), ("lastfm_star", 8438)])
def test_real_lastfm_counts(name, n_attrs):
    d = mcr.load(name, REAL)
    assert (d.n_users, d.n_items, d.n_attrs) == (1801, 7432, n_attrs)
    assert [len(d.splits[s]) for s in mcr.SPLITS] == [52910, 11891, 11892]
    if name == "lastfm":
        e = mcr.load_transe(REAL / name / "transe_embeddings.npz", d)
        assert e["user"].shape == (1801, 64) and e["attr"].shape == (33, 64)
