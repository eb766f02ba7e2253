"""ReDial (Li et al., NeurIPS 2018) raw dialogues -> canonical JSONL.

Command::

    python -m data_scripts.prepare redial --source ../shared/datasets/redial --out data/redial
    python -m data_scripts.prepare redial --download --out data/redial   # official zip (needs internet)

Inputs (``--source`` folder): ``test_data.jsonl`` (official test split), ``train_data.jsonl`` (full
official train split, e.g. from the official zip) or, if that is absent, ``train_data_partial.jsonl``
(the 2,270 train dialogues available offline), ``movies_with_mentions.csv`` and optionally
``structured/{train,valid,test}.csv`` (see :mod:`data_scripts.redial_structured`).

Outputs (``--out`` folder, every file written atomically, and only after all inputs were validated):

``{train,valid,test}.jsonl``
    One dialogue per line::

        {"conv_id": "20001", "split": "test", "seeker_id": 956, "recommender_id": 957,
         "turns": [{"idx": 0, "role": "seeker", "text_raw": "Hi I am looking for a movie like @111776",
                    "text": "Hi I am looking for a movie like Super Troopers (2001)",
                    "movie_ids": [111776], "message_ids": [204171]}, ...],
         "questionnaire": {"111776": {"name": "Super Troopers (2001)",
                                      "seeker": {"suggested": 0, "seen": 1, "liked": 1},
                                      "recommender": {"suggested": 0, "seen": 1, "liked": 1}}}}

    The seeker is the conversation's initiator (``initiatorWorkerId``, answers in
    ``initiatorQuestions``), the recommender its respondent. Consecutive messages of the same sender
    are merged into one turn (texts joined with a space; ``message_ids`` keeps one entry per merged
    message, ``null`` where the raw message has no ``messageId``). ``movie_ids`` lists the ``@<id>``
    mentions of the turn in order, duplicates removed. In ``text`` every ``@<id>`` is replaced by the
    movie's name from ``movies_with_mentions.csv`` (whitespace squeezed, e.g. ``"Super Troopers (2001)"``);
    an id missing there falls back to the dialogue's ``movieMentions`` name, else stays ``@<id>``.
    ``questionnaire`` has one entry per movie in ``movieMentions`` or either questionnaire; a side
    that did not answer is ``null``.

``movies.jsonl``
    ``{"redial_id": int, "name": str, "title": str, "year": int | null, "n_mentions": int,
    "n_mentions_train": int}`` for every row of ``movies_with_mentions.csv`` (6,924 movies), sorted by
    ``redial_id``. ``n_mentions`` is the CSV's count over *all* ReDial dialogues (test included), so
    nothing that is evaluated on test may use it; ``n_mentions_train`` counts the dialogues of our
    train split that mention the movie (per-turn ``movie_ids``) and is what popularity priors use.

``manifest.json``
    ``{"schema_version", "counts": {split: {dialogues, turns, recommender_turns,
    recommender_turns_with_movie}}, "n_movies", "split": {method, valid_fraction, salt},
    "structured": {...} | null, "sources": {path: sha256}, "config": {...}}``.

Split: the official test dialogues are ``test``. The train dialogues (partial or full) are split into
``train``/``valid`` by :func:`split_of` -- a stable MD5 hash of ``salt:conv_id`` -- so a dialogue's split
never depends on which other dialogues are present (the same rule applies to the full 10,006-dialogue
train file of the official zip).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import sys
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from data_scripts.download import REDIAL_URL, REDIAL_ZIP_SHA256, ChecksumError
from data_scripts.titles import RedialMovie, load_redial_movies
from data_scripts.utils.config import field, parse_config, to_dict
from data_scripts.utils.io import DataFormatError, iter_jsonl, read_jsonl, sha256_file, write_json, write_jsonl
from data_scripts.utils.results import format_table

SCHEMA_VERSION = 1
SPLITS: tuple[str, ...] = ("train", "valid", "test")
ROLES: tuple[str, ...] = ("seeker", "recommender")
QUESTION_KEYS: tuple[str, ...] = ("suggested", "seen", "liked")
OFFICIAL_URL = REDIAL_URL
#: MD5 of the official ``test_data.jsonl`` (ReDialData/website, branch ``data``).
OFFICIAL_TEST_MD5 = "daa08d0bd416f4cd7a816aa3f113a2c2"
MENTION_RE = re.compile(r"@(\d+)")
_SPACES_RE = re.compile(r"\s+")


@dataclasses.dataclass
class RedialConfig:
    """Convert ReDial raw dialogues into canonical JSONL (train/valid/test + movies + manifest)."""

    source: str = field(
        "../shared/datasets/redial",
        "Folder with test_data.jsonl, train_data[_partial].jsonl, "
        "movies_with_mentions.csv (and optionally structured/).",
    )
    out: str = field("data/redial", "Output folder for the canonical files.")
    valid_fraction: float = field(0.1, "Share of train dialogues put into the valid split (by stable hash of the id).")
    split_salt: str = field(
        "crwalker-redial-v1", "Salt of the stable split hash; change it only to re-split on purpose."
    )
    structured: bool | None = field(
        None,
        "Also convert structured/{train,valid,test}.csv (default: when the folder "
        "exists). Use --no-structured to skip.",
    )
    download: bool = field(False, "Download the official zip into --cache-dir, verify it and use it as --source.")
    cache_dir: str = field("cache/downloads", "Download cache folder (for --download).")
    url: str = field(OFFICIAL_URL, "URL of the official ReDial zip (for --download).")
    zip_sha256: str = field(
        REDIAL_ZIP_SHA256,
        "Expected SHA-256 of the zip (pinned as in ParlAI; '' disables the "
        "check). The extracted test file is always checked against the official MD5.",
    )
    test_md5: str = field(OFFICIAL_TEST_MD5, "Expected MD5 of the downloaded test_data.jsonl (for --download).")
    progress: bool = field(True, "Show tqdm progress bars.")


# ----------------------------------------------------------------------------------------------- split
def split_of(conv_id: str, valid_fraction: float = 0.1, salt: str = "crwalker-redial-v1") -> str:
    """Deterministic train/valid assignment of a train-file dialogue.

    Args:
        conv_id: ReDial ``conversationId`` (string).
        valid_fraction: Expected share of ``"valid"``.
        salt: Salt mixed into the hash.

    Returns:
        ``"valid"`` if the first 8 bytes of ``md5(f"{salt}:{conv_id}")`` as a fraction of 2**64 are below
        ``valid_fraction``, else ``"train"``. Independent of Python's per-process ``hash()`` seed.
    """
    digest = hashlib.md5(f"{salt}:{conv_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    return "valid" if u < valid_fraction else "train"


# ----------------------------------------------------------------------------------------------- render
def squeeze(name: str) -> str:
    """Collapse runs of whitespace and strip (``"Police Academy  (1984)"`` -> ``"Police Academy (1984)"``)."""
    return _SPACES_RE.sub(" ", name).strip()


def mention_ids(text: str) -> list[int]:
    """``@<id>`` mentions of ``text`` in order, duplicates removed."""
    return list(dict.fromkeys(int(m) for m in MENTION_RE.findall(text)))


def render_mentions(text: str, names: dict[int, str], fallback: dict[int, str] | None = None) -> str:
    """Replace every ``@<id>`` by the movie name (``names`` first, then ``fallback``; unknown ids stay)."""
    fallback = fallback or {}

    def repl(m: re.Match) -> str:
        mid = int(m.group(1))
        return names.get(mid) or fallback.get(mid) or m.group(0)

    return MENTION_RE.sub(repl, text)


# ----------------------------------------------------------------------------------------------- convert
def _require(cond: bool, path: Path, line: int, reason: str) -> None:
    if not cond:
        raise DataFormatError(path, line, reason)


def _questions(raw: Any, path: Path, line: int, key: str) -> dict[str, dict[str, int]]:
    """A raw questionnaire (dict, or the empty list some dialogues have) -> ``{movie_id: answers}``."""
    if raw is None or (isinstance(raw, list) and not raw):
        return {}
    _require(isinstance(raw, dict), path, line, f"{key} must be an object, got {type(raw).__name__}")
    out = {}
    for mid, ans in raw.items():
        _require(isinstance(ans, dict), path, line, f"{key}[{mid!r}] must be an object")
        out[str(mid)] = {k: ans[k] for k in QUESTION_KEYS if k in ans}
    return out


def convert_dialogue(raw: dict, split: str, names: dict[int, str], path: Path, line: int) -> dict:
    """One raw ReDial dialogue -> canonical dict (see module docstring).

    Args:
        raw: Parsed JSON object of one line of a raw ReDial file.
        split: ``"train"``, ``"valid"`` or ``"test"``.
        names: ReDial movie id -> display name (``movies_with_mentions.csv``).
        path: Source file (for error messages).
        line: 1-based line number in ``path`` (for error messages).

    Raises:
        DataFormatError: missing/mistyped fields or a message whose sender is neither participant.
    """
    for key in ("conversationId", "messages", "initiatorWorkerId", "respondentWorkerId"):
        _require(key in raw, path, line, f"missing key {key!r}")
    seeker, rec = raw["initiatorWorkerId"], raw["respondentWorkerId"]
    _require(isinstance(seeker, int) and isinstance(rec, int), path, line, "worker ids must be integers")
    _require(isinstance(raw["messages"], list), path, line, "'messages' must be a list")
    mentions_raw = raw.get("movieMentions") or {}
    _require(isinstance(mentions_raw, dict), path, line, "'movieMentions' must be an object")
    fallback = {}
    for k, v in mentions_raw.items():
        if str(k).isdigit() and isinstance(v, str) and v.strip():
            fallback[int(k)] = squeeze(v)
    role_of = {seeker: "seeker", rec: "recommender"}
    turns: list[dict] = []
    for i, msg in enumerate(raw["messages"]):
        _require(isinstance(msg, dict), path, line, f"message {i} is not an object")
        text, sender = msg.get("text"), msg.get("senderWorkerId")
        _require(isinstance(text, str), path, line, f"message {i} has no text")
        if sender not in role_of:
            raise DataFormatError(
                path, line, f"message {i} sender {sender!r} is neither the initiator {seeker} nor the respondent {rec}"
            )
        role = role_of[sender]
        mid = msg.get("messageId")
        if turns and turns[-1]["role"] == role:
            turns[-1]["text_raw"] += " " + text
            turns[-1]["message_ids"].append(mid)
        else:
            turns.append({"idx": len(turns), "role": role, "text_raw": text, "message_ids": [mid]})
    for t in turns:
        t["text"] = render_mentions(t["text_raw"], names, fallback)
        t["movie_ids"] = mention_ids(t["text_raw"])
    q_seek = _questions(raw.get("initiatorQuestions"), path, line, "initiatorQuestions")
    q_rec = _questions(raw.get("respondentQuestions"), path, line, "respondentQuestions")
    questionnaire = {}
    for key in dict.fromkeys([*map(str, mentions_raw), *q_seek, *q_rec]):
        mid = int(key) if key.isdigit() else None
        name = names.get(mid) or fallback.get(mid) or squeeze(str(mentions_raw.get(key) or ""))
        questionnaire[key] = {"name": name, "seeker": q_seek.get(key), "recommender": q_rec.get(key)}
    return {
        "conv_id": str(raw["conversationId"]),
        "split": split,
        "seeker_id": seeker,
        "recommender_id": rec,
        "turns": turns,
        "questionnaire": questionnaire,
    }


def read_raw_split(
    path: str | Path,
    names: dict[int, str],
    split: str | None,
    valid_fraction: float = 0.1,
    salt: str = "crwalker-redial-v1",
    progress: bool = False,
) -> list[dict]:
    """Read and convert a whole raw ReDial file (validates every line before returning).

    Args:
        path: Raw ``*.jsonl`` file.
        names: Movie id -> display name.
        split: Fixed split for every dialogue (``"test"``) or ``None`` to assign train/valid by :func:`split_of`.
        valid_fraction: See :func:`split_of`.
        salt: See :func:`split_of`.
        progress: Show a tqdm bar.

    Raises:
        DataFormatError: naming file and line of the first bad line (invalid/truncated JSON, bad fields,
            duplicate conversation id).
    """
    path = Path(path)
    out: list[dict] = []
    seen: dict[str, int] = {}
    line = 0
    for raw in tqdm(_iter_with_lines(path), desc=path.name, unit="dlg", disable=not progress, leave=False):
        line, obj = raw
        conv_id = str(obj.get("conversationId"))
        if conv_id in seen:
            raise DataFormatError(path, line, f"duplicate conversationId {conv_id} (first on line {seen[conv_id]})")
        seen[conv_id] = line
        s = split or split_of(conv_id, valid_fraction, salt)
        out.append(convert_dialogue(obj, s, names, path, line))
    if not out:
        raise DataFormatError(path, line or None, "no dialogues found (empty file?)")
    return out


def _iter_with_lines(path: Path) -> Iterable[tuple[int, dict]]:
    """``(line_number, object)`` pairs of a JSONL file (errors from :func:`iter_jsonl`)."""
    # iter_jsonl skips blank lines and reports its own errors; pair its objects with the non-blank line numbers.
    with open(path, encoding="utf-8", errors="replace") as fh:
        numbers = [i for i, ln in enumerate(fh, start=1) if ln.strip()]
    yield from zip(numbers, iter_jsonl(path), strict=False)


# ----------------------------------------------------------------------------------------------- stats
def split_stats(dialogues: list[dict]) -> dict[str, int]:
    """Counts of one split: dialogues, turns, recommender turns, recommender turns with a movie mention."""
    rec = [t for d in dialogues for t in d["turns"] if t["role"] == "recommender"]
    return {
        "dialogues": len(dialogues),
        "turns": sum(len(d["turns"]) for d in dialogues),
        "recommender_turns": len(rec),
        "recommender_turns_with_movie": sum(1 for t in rec if t["movie_ids"]),
    }


# ----------------------------------------------------------------------------------------------- library
def load_dialogues(path: str | Path) -> list[dict]:
    """Load a canonical split file (``data/redial/train.jsonl``) written by this module.

    Raises:
        FileNotFoundError: with the command that creates the file.
        DataFormatError: a line lacking the canonical keys (file + line).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: create it with `python -m data_scripts.prepare redial --out {path.parent}`"
        )
    rows = read_jsonl(path)
    required = ("conv_id", "split", "seeker_id", "recommender_id", "turns", "questionnaire")
    for i, row in enumerate(rows, start=1):
        missing = [k for k in required if k not in row]
        if missing:
            raise DataFormatError(path, i, f"not a canonical ReDial dialogue, missing {missing}")
    return rows


def load_split(folder: str | Path, split: str) -> list[dict]:
    """``load_dialogues(folder / f"{split}.jsonl")`` with a check of the split name."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return load_dialogues(Path(folder) / f"{split}.jsonl")


def load_movies(path: str | Path) -> list[dict]:
    """Load ``data/redial/movies.jsonl``."""
    return read_jsonl(path)


def movie_record(m: RedialMovie, n_mentions_train: int = 0) -> dict:
    """:class:`RedialMovie` -> ``movies.jsonl`` row."""
    return {
        "redial_id": m.redial_id,
        "name": m.name,
        "title": m.title,
        "year": m.year,
        "n_mentions": m.n_mentions,
        "n_mentions_train": n_mentions_train,
    }


def train_mention_counts(dialogues: list[dict]) -> Counter:
    """ReDial id -> number of dialogues in ``dialogues`` that mention it (any turn's ``movie_ids``)."""
    counts: Counter = Counter()
    for d in dialogues:
        counts.update({int(m) for t in d["turns"] for m in t.get("movie_ids", [])})
    return counts


# ----------------------------------------------------------------------------------------------- pipeline
def resolve_inputs(source: str | Path) -> dict[str, Path]:
    """Locate the raw files in ``source``; prefers the full ``train_data.jsonl`` over the partial one."""
    source = Path(source)
    if not source.is_dir():
        raise FileNotFoundError(
            f"{source}: ReDial source folder not found; pass --source or use --download (needs internet)"
        )
    train = source / "train_data.jsonl"
    if not train.exists():
        train = source / "train_data_partial.jsonl"
    files = {"train": train, "test": source / "test_data.jsonl", "movies": source / "movies_with_mentions.csv"}
    missing = [str(p) for p in files.values() if not p.exists()]
    if missing:
        raise FileNotFoundError(f"missing ReDial input file(s): {missing}")
    return files


def prepare(cfg: RedialConfig) -> dict[str, Any]:
    """Run the whole conversion; returns the manifest. Nothing is written unless every input is valid."""
    t0 = time.perf_counter()
    source = Path(cfg.source)
    if cfg.download:
        from data_scripts.download import fetch_redial

        source = fetch_redial(
            cfg.cache_dir,
            url=cfg.url,
            zip_sha256=cfg.zip_sha256 or None,
            test_md5=cfg.test_md5 or None,
            progress=cfg.progress,
        )
    files = resolve_inputs(source)
    movies = load_redial_movies(files["movies"])
    names = {m.redial_id: m.name for m in movies}
    train_all = read_raw_split(files["train"], names, None, cfg.valid_fraction, cfg.split_salt, cfg.progress)
    test = read_raw_split(files["test"], names, "test", progress=cfg.progress)
    overlap = {d["conv_id"] for d in train_all} & {d["conv_id"] for d in test}
    if overlap:
        raise DataFormatError(
            files["train"], None, f"{len(overlap)} conversation ids also in the test file, e.g. {sorted(overlap)[:3]}"
        )
    data = {
        "train": [d for d in train_all if d["split"] == "train"],
        "valid": [d for d in train_all if d["split"] == "valid"],
        "test": test,
    }
    structured_dir = source / "structured"
    do_structured = structured_dir.is_dir() if cfg.structured is None else cfg.structured
    structured = None
    if do_structured:
        from data_scripts.redial_structured import build_structured

        year_less = {m.redial_id for m in movies if m.year is None}
        # parsed, validated and aligned here; written below together with the other files
        structured = build_structured(structured_dir, data, progress=cfg.progress, year_less=year_less)
    out = Path(cfg.out)
    counts = {s: split_stats(data[s]) for s in SPLITS}
    sources = {str(p): sha256_file(p) for p in files.values()}
    manifest: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "counts": counts,
        "n_movies": len(movies),
        "train_file": files["train"].name,
        "split": {
            "method": "md5(salt:conv_id) < valid_fraction",
            "valid_fraction": cfg.valid_fraction,
            "salt": cfg.split_salt,
        },
        "structured": None,
        "sources": sources,
        "config": to_dict(cfg),
    }
    # ---- everything validated: write
    for s in SPLITS:
        write_jsonl(out / f"{s}.jsonl", data[s])
    train_counts = train_mention_counts(data["train"])
    write_jsonl(out / "movies.jsonl", (movie_record(m, train_counts.get(m.redial_id, 0)) for m in movies))
    if structured is not None:
        manifest["structured"] = structured.write(out)
        manifest["sources"].update(structured.sources)
    manifest["seconds"] = round(time.perf_counter() - t0, 2)
    write_json(out / "manifest.json", manifest)
    return manifest


def main(argv: list[str] | None = None) -> int:
    """CLI entry point used by ``python -m data_scripts.prepare redial``."""
    argv = ["--structured=false" if a == "--no-structured" else a for a in (sys.argv[1:] if argv is None else argv)]
    cfg = parse_config(RedialConfig, argv)
    try:
        manifest = prepare(cfg)
    except (DataFormatError, FileNotFoundError, ChecksumError, ConnectionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    rows = [{"split": s, **manifest["counts"][s]} for s in SPLITS]
    print(format_table(rows, ["split", "dialogues", "turns", "recommender_turns", "recommender_turns_with_movie"]))
    print(f"movies: {manifest['n_movies']}")
    if manifest.get("structured"):
        st = manifest["structured"]
        print(f"structured: {st.get('counts')}; alignment: {st.get('alignment')}")
    print(f"wrote {cfg.out} in {manifest['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
