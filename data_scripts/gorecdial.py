"""GoRecDial (Kang et al., EMNLP 2019) loader for its published ParlAI text format.

GoRecDial is **not available offline** here; this loader is tested on a tiny hand-written fixture only
(``tests/fixtures/data_scripts/gorecdial``). Command (not yet registered in ``data_scripts.prepare``)::

    python -m data_scripts.gorecdial --source <folder with dialrec-Expert-all-{train,test}.txt> --out data/gorecdial

Input: ParlAI flat text files ``dialrec-Expert-all-{train,test}.txt``. Each line is one exchange: tab-separated
``key:value`` fields (``\\t`` and ``\\n`` inside values are escaped as the two characters ``\\t`` / ``\\n``)
with at least ``text`` (seeker message; on the first line of an episode it is preceded by ``\\n``-separated
context lines) and ``labels`` (expert reply), and optional ``episode_start:True`` / ``episode_done:True``.
Movies appear in expert replies as ``MID<n>`` (MovieLens ``ml-latest`` movie ids); the seeker reacts to a
recommendation with the message ``ACCEPT`` or ``REJECT``.

Output ``{train,test}.jsonl`` (one episode per line; written atomically after both files parsed)::

    {"conv_id": "train-000001", "split": "train", "context": ["..."],
     "turns": [{"idx": 0, "role": "seeker", "text_raw": "...", "text": "...", "movie_ids": []},
               {"idx": 1, "role": "recommender", "text_raw": "try MID2571", "text": "try Matrix, The (1999)",
                "movie_ids": [2571]}],
     "reactions": [{"movie_id": 2571, "accepted": true}]}

``text`` renders ``MID<n>`` with ``--titles`` (a MovieLens ``movies.jsonl`` written by
:mod:`data_scripts.movielens`, ``title_raw``) when given, else keeps ``MID<n>``. A reaction pairs the last
movie recommended before an ``ACCEPT``/``REJECT`` message with that answer.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

from data_scripts.utils.config import field, parse_config
from data_scripts.utils.io import DataFormatError, read_jsonl, write_jsonl

MID_RE = re.compile(r"MID(\d+)")
SPLITS = ("train", "test")
FILE_PATTERN = "dialrec-Expert-all-{split}.txt"


@dataclasses.dataclass
class GoRecDialConfig:
    """Convert GoRecDial ParlAI text files into canonical JSONL."""

    source: str = field("../shared/datasets/gorecdial", "Folder with dialrec-Expert-all-{train,test}.txt.")
    out: str = field("data/gorecdial", "Output folder.")
    titles: str = field("", "Optional MovieLens movies.jsonl (from `prepare movielens`) to render MID<n> as titles.")


def _unescape(value: str) -> str:
    return value.replace("\\n", "\n").replace("\\t", "\t")


def parse_line(line: str, path: Path | str = "<string>", lineno: int | None = None) -> dict[str, str]:
    """One ParlAI text line -> ``{key: value}`` (values unescaped).

    Raises:
        DataFormatError: a field without ``key:`` or a line without ``text``/``labels``.
    """
    fields: dict[str, str] = {}
    for part in line.rstrip("\r\n").split("\t"):
        if not part:
            continue
        key, sep, value = part.partition(":")
        if not sep:
            raise DataFormatError(path, lineno, f"field {part[:40]!r} is not key:value")
        fields[key] = _unescape(value)
    if "text" not in fields or "labels" not in fields:
        raise DataFormatError(path, lineno, "line needs 'text' and 'labels' fields; is the file truncated?")
    return fields


def read_gorecdial(path: str | Path, split: str, titles: dict[int, str] | None = None) -> list[dict]:
    """Parse one ``dialrec-Expert-all-<split>.txt`` file into canonical episodes.

    Raises:
        DataFormatError: bad line, or the file ends inside an episode (no ``episode_done:True``).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: GoRecDial file not found (GoRecDial is not in ../shared/datasets)")
    titles = titles or {}
    episodes: list[dict] = []
    cur: dict | None = None
    lineno = 0
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            f = parse_line(line, path, lineno)
            if cur is None or f.get("episode_start") == "True":
                if cur is not None:
                    raise DataFormatError(path, lineno, "episode_start before the previous episode_done")
                lines = f["text"].split("\n")
                cur = {
                    "conv_id": f"{split}-{len(episodes) + 1:06d}",
                    "split": split,
                    "context": lines[:-1],
                    "turns": [],
                    "reactions": [],
                }
                seeker_text = lines[-1]
            else:
                seeker_text = f["text"]
            _add_turn(cur, "seeker", seeker_text, titles)
            _add_turn(cur, "recommender", f["labels"], titles)
            if f.get("episode_done") == "True":
                episodes.append(cur)
                cur = None
    if cur is not None:
        raise DataFormatError(path, lineno, "file ends inside an episode (no episode_done:True); truncated?")
    return episodes


def _add_turn(ep: dict, role: str, text: str, titles: dict[int, str]) -> None:
    ids = list(dict.fromkeys(int(m) for m in MID_RE.findall(text)))
    if role == "seeker" and text.strip().upper() in ("ACCEPT", "REJECT"):
        last = next((t["movie_ids"][-1] for t in reversed(ep["turns"]) if t["movie_ids"]), None)
        if last is not None:
            ep["reactions"].append({"movie_id": last, "accepted": text.strip().upper() == "ACCEPT"})
    rendered = MID_RE.sub(lambda m: titles.get(int(m.group(1)), m.group(0)), text)
    ep["turns"].append({"idx": len(ep["turns"]), "role": role, "text_raw": text, "text": rendered, "movie_ids": ids})


def main(argv: list[str] | None = None) -> int:
    """CLI: convert both splits (all parsed before anything is written)."""
    cfg = parse_config(GoRecDialConfig, argv)
    try:
        titles = {r["item_id"]: r["title_raw"] for r in read_jsonl(cfg.titles)} if cfg.titles else {}
        data = {s: read_gorecdial(Path(cfg.source) / FILE_PATTERN.format(split=s), s, titles) for s in SPLITS}
    except (DataFormatError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for s, eps in data.items():
        write_jsonl(Path(cfg.out) / f"{s}.jsonl", eps)
        print(f"{s}: {len(eps)} episodes, {sum(len(e['turns']) for e in eps)} turns")
    return 0


if __name__ == "__main__":
    sys.exit(main())
