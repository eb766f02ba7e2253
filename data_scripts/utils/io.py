"""Atomic, validated file IO used by every stage of the pipeline.

Every artefact is written to a temporary file in the destination folder and moved
into place with :func:`os.replace`, so a crash never leaves a half-written file.
Readers raise :class:`DataFormatError` naming the file and line of bad input.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any


class DataFormatError(ValueError):
    """Raised when an input file is malformed; the message names file and line."""

    def __init__(self, path: str | os.PathLike, line: int | None, reason: str):
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {reason}")
        self.path = str(path)
        self.line = line
        self.reason = reason


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary file next to ``path``; on success move it over ``path``.

    Args:
        path: Final destination. Parent folders are created.
        mode: ``"w"`` for text or ``"wb"`` for bytes.
        encoding: Text encoding (ignored for binary mode).

    Yields:
        The open temporary file. If the block raises, the temp file is removed and
        ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        kwargs = {} if "b" in mode else {"encoding": encoding, "newline": "\n"}
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    """Atomically write ``obj`` as JSON with sorted keys (byte-stable output)."""
    with atomic_write(path) as fh:
        json.dump(obj, fh, indent=indent, sort_keys=True, ensure_ascii=False)
        fh.write("\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[Any]) -> int:
    """Atomically write one JSON object per line; returns the number of rows."""
    n = 0
    with atomic_write(path) as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, sort_keys=True))
            fh.write("\n")
            n += 1
    return n


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file, raising :class:`DataFormatError` with the line on failure."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise DataFormatError(path, exc.lineno, f"invalid JSON ({exc.msg}); is the file truncated?") from exc
    except UnicodeDecodeError as exc:
        raise DataFormatError(path, None, f"not UTF-8 text ({exc.reason})") from exc


def iter_jsonl(path: str | os.PathLike) -> Iterator[dict]:
    """Yield objects from a JSON-lines file; blank lines are skipped.

    Raises:
        DataFormatError: naming the file and 1-based line of the first bad line.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found")
    with open(path, encoding="utf-8", errors="strict") as fh:
        lineno = 0
        try:
            for lineno, line in enumerate(fh, start=1):  # noqa: B007
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataFormatError(path, lineno, f"invalid JSON ({exc.msg}); is the file truncated?") from exc
                if not isinstance(obj, dict):
                    raise DataFormatError(path, lineno, f"expected a JSON object, got {type(obj).__name__}")
                yield obj
        except UnicodeDecodeError as exc:
            raise DataFormatError(path, lineno + 1, f"not UTF-8 text ({exc.reason})") from exc


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a whole JSON-lines file (see :func:`iter_jsonl`)."""
    return list(iter_jsonl(path))


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_paths(paths: Iterable[str | os.PathLike]) -> dict[str, str]:
    """SHA-256 of each existing file (folders are expanded recursively, sorted)."""
    out: dict[str, str] = {}
    for p in paths:
        p = Path(p)
        files = sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else [p]
        for f in files:
            if f.exists():
                out[str(f)] = sha256_file(f)
    return out
