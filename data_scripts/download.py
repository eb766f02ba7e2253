"""Download + verify + atomic move of public data files (standard library ``urllib``, tqdm progress).

Used by ``python -m data_scripts.prepare redial --download``. A download goes to a temporary file in the
cache folder, is checked against the expected SHA-256 (when one is given) and only then renamed to its
final name, so the cache never holds a partial or corrupt file. Without internet the error says so and
names the URL.

ReDial: :func:`fetch_redial` fetches the official ``redial_dataset.zip`` (ReDialData/website, branch
``data``; SHA-256 :data:`REDIAL_ZIP_SHA256` as pinned by ParlAI's ``parlai/tasks/redial/build.py``),
extracts ``train_data.jsonl`` (full official train split, 10,006 dialogues), ``test_data.jsonl`` and
``movies_with_mentions.csv`` into ``<cache>/redial_dataset/`` (extracted to a temp folder, then renamed)
and checks the test file against the official MD5 ``daa08d0bd416f4cd7a816aa3f113a2c2``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm

REDIAL_URL = "https://github.com/ReDialData/website/raw/data/redial_dataset.zip"
#: SHA-256 of the official zip, as pinned by ParlAI (facebookresearch/ParlAI, parlai/tasks/redial/build.py).
REDIAL_ZIP_SHA256 = "b48756681ec6f84e0af36979c5e9baa21ea8d9e7036b8764ea9b787bb0baf69b"
REDIAL_TEST_MD5 = "daa08d0bd416f4cd7a816aa3f113a2c2"
REDIAL_FILES = ("train_data.jsonl", "test_data.jsonl", "movies_with_mentions.csv")


class ChecksumError(ValueError):
    """A downloaded or extracted file does not have the expected digest."""


def file_digest(path: str | os.PathLike, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    """Hex digest of a file (``"sha256"``, ``"md5"``, ...)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify(path: str | os.PathLike, expected: str | None, algorithm: str = "sha256") -> str:
    """Check ``path``'s digest; returns it. ``expected=None`` only computes it.

    Raises:
        ChecksumError: naming the file, the expected and the actual digest.
    """
    actual = file_digest(path, algorithm)
    if expected and actual.lower() != expected.lower():
        raise ChecksumError(f"{path}: {algorithm} mismatch: expected {expected}, got {actual}")
    return actual


def download(
    url: str,
    dest: str | os.PathLike,
    sha256: str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest`` (skipped if ``dest`` exists and matches ``sha256``).

    Args:
        url: ``http(s)://`` or ``file://`` URL.
        dest: Final path; parent folders are created.
        sha256: Expected SHA-256 (``None`` or ``""``: not checked).
        progress: Show a tqdm bar.
        timeout: Socket timeout in seconds.

    Returns:
        ``dest`` as a :class:`Path`.

    Raises:
        ConnectionError: no network / HTTP error, with the URL and a hint to use a local copy.
        ChecksumError: the downloaded bytes do not match ``sha256`` (nothing is kept).
    """
    dest = Path(dest)
    if dest.exists():
        try:
            verify(dest, sha256 or None)
            return dest
        except ChecksumError:
            pass  # stale or corrupt cache: download again
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, os.fdopen(fd, "wb") as fh:  # noqa: S310
                total = int(resp.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
                    while block := resp.read(1 << 16):
                        fh.write(block)
                        bar.update(len(block))
        except (urllib.error.URLError, OSError) as exc:
            raise ConnectionError(
                f"could not download {url} ({exc}); are you offline? Download it elsewhere and pass the "
                f"extracted folder with --source, or copy the file to {dest}"
            ) from exc
        verify(tmp, sha256 or None)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return dest


def extract_members(zip_path: str | os.PathLike, names: tuple[str, ...], dest: str | os.PathLike) -> Path:
    """Extract the members whose base name is in ``names`` into ``dest`` (atomically, as a whole folder).

    Raises:
        ChecksumError: the zip is corrupt.
        FileNotFoundError: a wanted member is missing from the zip.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        try:
            with zipfile.ZipFile(zip_path) as zf:
                found = {}
                for info in zf.infolist():
                    base = Path(info.filename).name
                    if base in names and not info.is_dir() and "__MACOSX" not in info.filename:
                        found[base] = info
                missing = [n for n in names if n not in found]
                if missing:
                    raise FileNotFoundError(f"{zip_path}: missing member(s) {missing}")
                for base, info in found.items():
                    with zf.open(info) as src, open(tmp / base, "wb") as dst:
                        shutil.copyfileobj(src, dst)
        except zipfile.BadZipFile as exc:
            raise ChecksumError(f"{zip_path}: not a valid zip file ({exc}); delete it and download again") from exc
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def fetch_redial(
    cache_dir: str | os.PathLike = "cache/downloads",
    url: str = REDIAL_URL,
    zip_sha256: str | None = REDIAL_ZIP_SHA256,
    test_md5: str | None = REDIAL_TEST_MD5,
    progress: bool = True,
) -> Path:
    """Download (if needed), verify and extract the official ReDial zip; returns the extracted folder.

    The folder holds ``train_data.jsonl`` (full train split), ``test_data.jsonl`` and
    ``movies_with_mentions.csv`` and can be passed as ``--source`` to the ReDial converter.
    """
    cache = Path(cache_dir)
    folder = cache / "redial_dataset"
    if not (folder.is_dir() and all((folder / n).exists() for n in REDIAL_FILES)):
        zip_path = download(url, cache / "redial_dataset.zip", sha256=zip_sha256, progress=progress)
        extract_members(zip_path, REDIAL_FILES, folder)
    try:
        verify(folder / "test_data.jsonl", test_md5, "md5")
    except ChecksumError:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder
