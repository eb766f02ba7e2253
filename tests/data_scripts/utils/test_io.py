import json

import pytest

from data_scripts.utils.io import (
    DataFormatError,
    atomic_write,
    iter_jsonl,
    read_json,
    sha256_file,
    write_json,
    write_jsonl,
)


def test_atomic_write_leaves_old_file_on_error(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target) as fh:
        fh.write("new partial")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temp file left behind


def test_write_jsonl_roundtrip_and_sorted_keys(tmp_path):
    p = tmp_path / "rows.jsonl"
    assert write_jsonl(p, [{"b": 1, "a": "é"}, {"a": 2}]) == 2
    assert p.read_text(encoding="utf-8").splitlines()[0] == '{"a": "é", "b": 1}'
    assert list(iter_jsonl(p)) == [{"a": "é", "b": 1}, {"a": 2}]


def test_truncated_jsonl_names_file_and_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"a": 1}\n\n{"a": 2\n')
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:3: invalid JSON"):
        list(iter_jsonl(p))


def test_non_object_line_rejected(tmp_path):
    p = tmp_path / "list.jsonl"
    p.write_text("[1, 2]\n")
    with pytest.raises(DataFormatError, match=":1: expected a JSON object"):
        list(iter_jsonl(p))


def test_read_json_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.json"):
        read_json(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{\n "a": [1,\n')
    with pytest.raises(DataFormatError, match=r"bad\.json:\d+"):
        read_json(bad)


def test_write_json_is_byte_stable(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    write_json(a, {"z": 1, "a": [1, 2]})
    write_json(b, json.loads(a.read_text()))
    assert a.read_bytes() == b.read_bytes()
    assert sha256_file(a) == sha256_file(b)
    # sha256 of a known string
    c = tmp_path / "c.txt"
    c.write_bytes(b"abc")
    assert sha256_file(c) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_atomic_write_uses_normal_permissions(tmp_path):
    import os
    import stat

    p = tmp_path / "perm.txt"
    with atomic_write(p) as fh:
        fh.write("x")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~mask
