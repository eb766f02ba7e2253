"""Results files under ``results/``: metrics plus provenance (git commit, config, data hashes)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from data_scripts.utils.io import sha256_paths, write_json


def git_commit(cwd: str | Path | None = None) -> str:
    """The current ``HEAD`` commit, or ``"unknown"``.

    ``-dirty`` is appended when tracked files outside ``results/`` have uncommitted changes (results
    files are outputs: refreshing one must not mark the code that produced the next as dirty).
    """
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results"],
            cwd=cwd,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_results(
    path: str | Path,
    payload: dict[str, Any],
    config: dict[str, Any] | None = None,
    data_files: list[str | Path] | None = None,
) -> dict[str, Any]:
    """Write ``payload`` plus ``git_commit``, ``config`` and ``data_sha256`` atomically as JSON."""
    out = dict(payload)
    out.setdefault("git_commit", git_commit())
    if config is not None:
        out.setdefault("config", config)
    if data_files:
        out.setdefault("data_sha256", sha256_paths(data_files))
    write_json(path, out)
    return out


def format_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A plain-text (Markdown) table; floats are printed with 2 decimals."""

    def fmt(v: Any) -> str:
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)
