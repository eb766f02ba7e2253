"""Download/verify/extract helpers, exercised with file:// URLs and a hand-made zip (no network)."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from data_scripts.download import ChecksumError, download, extract_members, fetch_redial, verify

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "data_scripts" / "redial"
NAMES = ("train_data.jsonl", "test_data.jsonl", "movies_with_mentions.csv")


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _toy_zip(tmp_path: Path) -> Path:
    z = tmp_path / "toy.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(FIX / "train_data_partial.jsonl", "train_data.jsonl")
        zf.write(FIX / "test_data.jsonl", "test_data.jsonl")
        zf.write(FIX / "movies_with_mentions.csv", "movies_with_mentions.csv")
        zf.writestr("__MACOSX/._test_data.jsonl", "junk")
    return z


def test_download_verify_and_cache(tmp_path):
    src = _toy_zip(tmp_path)
    dest = download(src.as_uri(), tmp_path / "cache" / "a.zip", sha256=_sha(src), progress=False)
    assert dest.read_bytes() == src.read_bytes()
    assert verify(dest, _sha(src)) == _sha(src)
    with pytest.raises(ChecksumError, match="sha256 mismatch"):
        download(src.as_uri(), tmp_path / "cache" / "b.zip", sha256="0" * 64, progress=False)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["a.zip"]  # no partial file left


def test_offline_error_names_url(tmp_path):
    with pytest.raises(ConnectionError, match="nope.zip"):
        download((tmp_path / "nope.zip").as_uri(), tmp_path / "x.zip", progress=False)
    assert not (tmp_path / "x.zip").exists()


def test_extract_and_fetch_redial(tmp_path):
    z = _toy_zip(tmp_path)
    folder = extract_members(z, NAMES, tmp_path / "ex")
    assert sorted(p.name for p in folder.iterdir()) == sorted(NAMES)
    test_md5 = hashlib.md5((FIX / "test_data.jsonl").read_bytes()).hexdigest()
    got = fetch_redial(tmp_path / "cache", url=z.as_uri(), zip_sha256=_sha(z), test_md5=test_md5, progress=False)
    assert (got / "train_data.jsonl").read_bytes() == (FIX / "train_data_partial.jsonl").read_bytes()
    with pytest.raises(ChecksumError, match="md5 mismatch"):
        fetch_redial(tmp_path / "cache2", url=z.as_uri(), zip_sha256=None, test_md5="0" * 32, progress=False)
    assert not (tmp_path / "cache2" / "redial_dataset").exists()
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ChecksumError, match="not a valid zip"):
        extract_members(bad, NAMES, tmp_path / "ex2")


def test_prepare_redial_with_download(tmp_path):
    from data_scripts import redial

    z = _toy_zip(tmp_path)
    test_md5 = hashlib.md5((FIX / "test_data.jsonl").read_bytes()).hexdigest()
    argv = [
        "--download",
        "--url",
        z.as_uri(),
        "--zip-sha256",
        _sha(z),
        "--test-md5",
        test_md5,
        "--cache-dir",
        str(tmp_path / "cache"),
        "--out",
        str(tmp_path / "out"),
        "--progress",
        "false",
    ]
    assert redial.main(argv) == 0
    manifest = (tmp_path / "out" / "manifest.json").read_text()
    assert '"train_file": "train_data.jsonl"' in manifest
    bad = [*argv[:4], "0" * 64, *argv[5:8], str(tmp_path / "cache2"), *argv[9:]]
    assert redial.main(bad) == 1  # wrong zip checksum: clear error, exit 1
    assert not (tmp_path / "cache2" / "redial_dataset.zip").exists()
