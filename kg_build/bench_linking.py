"""Entity-linking benchmark: ``python -m kg_build bench-linking [--kg data/kg --data data/redial ...]``.

Two evaluations of :class:`kg_build.linker.EntityLinker`, written to ``results/linking.json``:

1. **Typed ReDial mentions** (``--split test``). In every turn of the split, each ``@<movieId>``
   of ``text_raw`` whose movie is in the KG is replaced by the movie title *as a person would type
   it*: the KG title without the year, lower-cased, and -- for a seeded ``--typo-share`` of the
   mentions whose title has >= ``--typo-min-letters`` letters -- one typo (titles of >= 10 letters:
   one or two, 50/50), each typo being a random substitution, deletion, insertion or transposition of
   adjacent letters (:func:`make_typo`). The other words of the turn are unchanged. Each inserted
   title is a gold mention with its character span and KG entity. A predicted span whose entity is a
   movie is a true positive when it overlaps a not-yet-matched gold span of the same entity
   (one-to-one, in order). Micro over mentions::

       movie_precision = TP / #predicted movie spans      movie_recall = TP / #gold mentions

   Predicted movie spans outside every gold span count as false positives, even when the user really
   typed a title there (ReDial users occasionally did). ``*_title_level`` extras also accept a
   predicted movie whose normalised title equals the gold one (remakes, and ReDial duplicates such
   as "American Pie" vs "American Pie (1999)" cannot be told apart without the year).
2. **Hand-labelled utterances** (``kg_build/resources/linking_handlabelled.jsonl``, written for this
   project): per entity type, precision/recall of the *set* of linked entities of that type per
   utterance (micro over utterances), ``n`` = number of gold entities of the type; negation accuracy
   over correctly linked entities. Gold names must exist in the KG (checked, file:line errors).

Speed: ``ms_per_utterance`` is wall time of :meth:`EntityLinker.link_many` over all benchmark turns
divided by their number (after :meth:`EntityLinker.load`, whose time is ``load_s``);
``ms_per_utterance_single`` times :meth:`EntityLinker.link` one call at a time on the first
``--single-sample`` turns.

``ablation_no_ner`` repeats the typed-mention benchmark with ``use_ner=False`` (quality and speed).

``--calibrate`` instead runs a coordinate search of the linker's thresholds on the ReDial **train
and valid** splits (never test) with the same protocol and prints the table (the chosen values are
the :class:`~kg_build.linker.LinkerOptions` defaults).
"""

from __future__ import annotations

import dataclasses
import random
import string
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from data_scripts.titles import split_title_year
from data_scripts.utils.config import field, parse_config, to_dict
from data_scripts.utils.io import DataFormatError, iter_jsonl
from data_scripts.utils.results import format_table, write_results
from kg_build.linker import MENTION_RE, EntityLinker, LinkedSpan
from kg_build.schema import KnowledgeGraph

HANDLABELLED_PATH = Path(__file__).parent / "resources" / "linking_handlabelled.jsonl"
HANDLABELLED_TYPES: tuple[str, ...] = ("movie", "person", "genre", "time")


@dataclass
class BenchConfig:
    """Entity-linking benchmark (typed ReDial mentions + hand-labelled utterances)."""

    kg: str = field("data/kg", "KG folder (python -m kg_build build).")
    data: str = field("data/redial", "Canonical ReDial folder with {train,valid,test}.jsonl and movies.jsonl.")
    out: str = field("results/linking.json", "Results JSON ('' = do not write).")
    split: str = field("test", "Split for the typed-mention benchmark.")
    typo_share: float = field(0.2, "Share of eligible mentions that get a typo.")
    typo_min_letters: int = field(5, "Titles with fewer letters never get a typo.")
    seed: int = field(0, "Seed of the typo generator.")
    max_turns: int = field(0, "Use only the first N turns (0 = all).")
    single_sample: int = field(1000, "Turns timed one link() call at a time.")
    handlabelled: str = field(
        "kg_build/resources/linking_handlabelled.jsonl", "Hand-labelled JSONL ('' = skip; default: the packaged file)."
    )
    calibrate: bool = field(False, "Sweep linker thresholds on train+valid instead (prints a table).")
    calibration_turns: int = field(4000, "Turns (train+valid) used by --calibrate.")
    use_ner: bool = field(True, "Run spaCy NER as a fallback.")
    ablate_ner: bool = field(True, "Also run the typed-mention benchmark without NER (ablation_no_ner).")
    show_errors: int = field(15, "Print this many example errors.")


# ---------------------------------------------------------------------------------------- typos
def make_typo(text: str, rng: random.Random, n_edits: int = 1) -> str:
    """Apply ``n_edits`` random one-letter edits (substitute, delete, insert, swap adjacent) to letters.

    Only positions of ASCII letters are edited, so spaces and digits stay; the result differs from
    ``text`` (an edit that would reproduce it or the previous string is retried).
    """
    out = text
    for _ in range(n_edits):
        for _attempt in range(20):
            pos = [i for i, c in enumerate(out) if c.isascii() and c.isalpha()]
            if not pos:
                return out
            i = rng.choice(pos)
            op = rng.choice(("sub", "del", "ins", "swap"))
            letter = rng.choice(string.ascii_lowercase)
            if op == "sub":
                cand = out[:i] + letter + out[i + 1 :]
            elif op == "del":
                cand = out[:i] + out[i + 1 :]
            elif op == "ins":
                cand = out[:i] + letter + out[i:]
            else:
                if i + 1 >= len(out) or not out[i + 1].isalpha():
                    continue
                cand = out[:i] + out[i + 1] + out[i] + out[i + 2 :]
            if cand not in (out, text):
                out = cand
                break
    return out


@dataclass(frozen=True)
class TypedTurn:
    """A benchmark utterance: text with typed titles and the gold ``(start, end, entity)`` spans."""

    text: str
    gold: tuple[tuple[int, int, int], ...]
    n_typos: int


def typed_title(kg: KnowledgeGraph, eid: int) -> str:
    """The KG movie title without year, lower-cased ("The Terminator (1984)" -> "the terminator")."""
    return split_title_year(kg.entities[eid].name)[0].lower()


def build_typed_turns(
    kg: KnowledgeGraph, dialogues: list[dict], typo_share: float, typo_min_letters: int, seed: int
) -> list[TypedTurn]:
    """Replace every ``@id`` of every turn by the typed title (see module docstring)."""
    rng = random.Random(seed)
    turns = []
    for d in dialogues:
        for t in d["turns"]:
            raw = t["text_raw"]
            pieces, gold, pos, n_typos = [], [], 0, 0
            last = 0
            for m in MENTION_RE.finditer(raw):
                eid = kg.by_redial_id.get(int(m.group(1)))
                if eid is None:
                    continue
                pieces.append(raw[last : m.start()])
                pos += m.start() - last
                title = typed_title(kg, eid)
                if sum(c.isalpha() for c in title) >= typo_min_letters and rng.random() < typo_share:
                    n = 1 if sum(c.isalpha() for c in title) < 10 else rng.choice((1, 2))
                    title = make_typo(title, rng, n)
                    n_typos += 1
                pieces.append(title)
                gold.append((pos, pos + len(title), eid))
                pos += len(title)
                last = m.end()
            pieces.append(raw[last:])
            turns.append(TypedTurn("".join(pieces), tuple(gold), n_typos))
    return turns


def score_movies(kg: KnowledgeGraph, turns: list[TypedTurn], preds: list[list[LinkedSpan]], title_level: bool = False):
    """Micro precision/recall of movie links (module docstring). Returns (tp, n_pred, n_gold, errors)."""
    tp = n_pred = n_gold = 0
    errors = []
    for turn, spans in zip(turns, preds, strict=True):
        movies = [s for s in spans if kg.entities[s.entity].type == "movie"]
        n_pred += len(movies)
        n_gold += len(turn.gold)
        used: set[int] = set()
        for s in movies:
            hit = None
            for gi, (gs, ge, geid) in enumerate(turn.gold):
                if gi in used or not (s.start < ge and gs < s.end):
                    continue
                if geid == s.entity or (title_level and typed_title(kg, geid) == typed_title(kg, s.entity)):
                    hit = gi
                    break
            if hit is None:
                errors.append(("FP", turn.text, s.text, kg.entities[s.entity].name))
            else:
                used.add(hit)
                tp += 1
        for gi, (gs, ge, geid) in enumerate(turn.gold):
            if gi not in used:
                errors.append(("FN", turn.text, turn.text[gs:ge], kg.entities[geid].name))
    return tp, n_pred, n_gold, errors


def _ratio(a: int, b: int) -> float:
    return a / b if b else 0.0


# ---------------------------------------------------------------------------------- hand-labelled
def load_handlabelled(path: str | Path, kg: KnowledgeGraph) -> list[tuple[str, list[tuple[int, str, bool]]]]:
    """Read the hand-labelled set; each gold ``name`` must be a KG entity of the given ``type``.

    Returns:
        ``[(text, [(entity id, type, negated), ...]), ...]``.

    Raises:
        DataFormatError: naming file and line for a missing field or a name not in the KG.
    """
    by_name: dict[tuple[str, str], int] = {}
    for e in kg.entities:
        by_name.setdefault((e.type, e.name), e.id)
    out = []
    for lineno, row in enumerate(iter_jsonl(path), start=1):
        if not isinstance(row.get("text"), str) or not isinstance(row.get("entities"), list):
            raise DataFormatError(path, lineno, 'expected {"text": str, "entities": [...]}')
        gold = []
        for g in row["entities"]:
            typ, name = g.get("type"), g.get("name")
            if typ not in HANDLABELLED_TYPES:
                raise DataFormatError(path, lineno, f"entity type {typ!r} not in {HANDLABELLED_TYPES}")
            if (typ, name) not in by_name:
                raise DataFormatError(path, lineno, f"{typ} {name!r} is not a KG entity name (see {kg.describe()})")
            gold.append((by_name[(typ, name)], typ, bool(g.get("negated", False))))
        out.append((row["text"], gold))
    return out


def score_handlabelled(kg: KnowledgeGraph, data, preds: list[list[LinkedSpan]]) -> dict:
    """Per-type P/R over entity sets per utterance, plus negation accuracy (module docstring)."""
    stats = {t: {"tp": 0, "pred": 0, "gold": 0} for t in HANDLABELLED_TYPES}
    neg_ok = neg_n = other = 0
    clean = n_empty = 0
    errors = []
    for (text, gold), spans in zip(data, preds, strict=True):
        gold_map = {eid: (typ, neg) for eid, typ, neg in gold}
        pred_map: dict[int, bool] = {}
        for s in spans:
            pred_map[s.entity] = pred_map.get(s.entity, False) or s.negated
        if not gold:
            n_empty += 1
            clean += not any(kg.entities[e].type in HANDLABELLED_TYPES for e in pred_map)
        for _eid, typ, _ in gold:
            stats[typ]["gold"] += 1
        for eid, neg in pred_map.items():
            typ = kg.entities[eid].type
            if typ not in stats:
                other += 1
                continue
            stats[typ]["pred"] += 1
            if eid in gold_map:
                stats[typ]["tp"] += 1
                neg_n += 1
                neg_ok += neg == gold_map[eid][1]
                if neg != gold_map[eid][1]:
                    errors.append(("NEG", text, kg.entities[eid].name, f"pred negated={neg}"))
            else:
                errors.append(("FP", text, kg.entities[eid].name, ""))
        for eid in gold_map:
            if eid not in pred_map:
                errors.append(("FN", text, kg.entities[eid].name, ""))
    out = {
        t: {"precision": _ratio(v["tp"], v["pred"]), "recall": _ratio(v["tp"], v["gold"]), "n": v["gold"]}
        for t, v in stats.items()
    }
    tp = sum(v["tp"] for v in stats.values())
    micro = {
        "precision": _ratio(tp, sum(v["pred"] for v in stats.values())),
        "recall": _ratio(tp, sum(v["gold"] for v in stats.values())),
        "n": sum(v["gold"] for v in stats.values()),
    }
    return {
        "per_type": out,
        "micro_all_types": micro,
        "negation_accuracy": _ratio(neg_ok, neg_n),
        "negation_n": neg_n,
        "n_utterances": len(data),
        "no_entity_utterances": n_empty,
        "no_entity_clean_share": _ratio(clean, n_empty),
        "other_type_predictions": other,
        "errors": errors,
    }


# ---------------------------------------------------------------------------------------- driver
def _load_split(folder: Path, split: str) -> list[dict]:
    path = folder / f"{split}.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `python -m data_scripts.prepare redial` first")
    return list(iter_jsonl(path))


def run_movie_benchmark(linker: EntityLinker, turns: list[TypedTurn]) -> tuple[dict, list, float]:
    t0 = time.perf_counter()
    preds = linker.link_many([t.text for t in turns])
    ms = (time.perf_counter() - t0) * 1000 / max(len(turns), 1)
    kg = linker.kg
    tp, n_pred, n_gold, errors = score_movies(kg, turns, preds)
    tpt, n_pred_t, _, _ = score_movies(kg, turns, preds, title_level=True)
    res = {
        "movie_precision": _ratio(tp, n_pred),
        "movie_recall": _ratio(tp, n_gold),
        "movie_precision_title_level": _ratio(tpt, n_pred_t),
        "movie_recall_title_level": _ratio(tpt, n_gold),
        "n_mentions": n_gold,
        "n_predicted": n_pred,
        "n_utterances": len(turns),
    }
    typo_turns = [i for i, t in enumerate(turns) if t.n_typos]
    if typo_turns:
        tp2, p2, g2, _ = score_movies(kg, [turns[i] for i in typo_turns], [preds[i] for i in typo_turns])
        res["recall_in_turns_with_typos"] = _ratio(tp2, g2)
    return res, errors, ms


def calibrate(cfg: BenchConfig, kg: KnowledgeGraph) -> int:
    """Coordinate search of linker thresholds on train+valid typed mentions (never test)."""
    data = Path(cfg.data)
    dialogues = _load_split(data, "train") + _load_split(data, "valid")
    turns = build_typed_turns(kg, dialogues, cfg.typo_share, cfg.typo_min_letters, cfg.seed + 1)
    turns = [t for t in turns if t.gold][: cfg.calibration_turns // 2] + [t for t in turns if not t.gold][
        : cfg.calibration_turns // 2
    ]
    grid = {
        "common_phrase_zipf": [5.0, 5.5, 6.0],
        "common_zipf": [4.0, 4.5, 5.0],
        "cap_zipf": [4.5, 5.0, 5.5],
        "start_zipf": [3.5, 4.0, 4.5],
        "stripped_zipf": [3.0, 3.5, 4.0],
        "fuzzy_min_chars": [4, 5, 6],
        "fuzzy_two_edit_chars": [8, 10, 12],
    }
    best = {k: dataclasses.asdict(EntityLinker(kg).options)[k] for k in grid}
    rows = []
    for name, values in grid.items():
        scores = []
        for v in values:
            opts = {**best, name: v}
            lk = EntityLinker.from_kg(kg, popularity_path=str(data / "movies.jsonl"), use_ner=cfg.use_ner, **opts)
            res, _, _ = run_movie_benchmark(lk.load(), turns)
            f1 = _ratio(2 * res["movie_precision"] * res["movie_recall"], res["movie_precision"] + res["movie_recall"])
            p, r = res["movie_precision"], res["movie_recall"]
            rows.append({"param": name, "value": v, "P": f"{p:.4f}", "R": f"{r:.4f}", "F1": f"{f1:.4f}"})
            print(format_table(rows[-1:], ["param", "value", "P", "R", "F1"]).splitlines()[-1], flush=True)
            scores.append((f1, v))
        best[name] = max(scores, key=lambda x: (round(x[0], 4), x[1] == best[name]))[1]
    print(format_table(rows, ["param", "value", "P", "R", "F1"]))
    print(f"calibrated on {len(turns)} train+valid turns: {best}")
    return 0


def main(argv: list[str] | None = None) -> int:
    cfg = parse_config(BenchConfig, argv)
    kg = KnowledgeGraph.load(cfg.kg)
    if cfg.calibrate:
        return calibrate(cfg, kg)
    data = Path(cfg.data)
    linker = EntityLinker.from_kg(kg, popularity_path=str(data / "movies.jsonl"), use_ner=cfg.use_ner)
    hand_path = Path(cfg.handlabelled)
    if cfg.handlabelled and not hand_path.exists() and cfg.handlabelled == BenchConfig.handlabelled:
        hand_path = HANDLABELLED_PATH  # run from outside the project root
    hand = load_handlabelled(hand_path, kg) if cfg.handlabelled else None  # validate before heavy work
    linker.load()
    print(f"{kg.describe()}\nlinker loaded in {linker.load_seconds:.1f} s", flush=True)

    turns = build_typed_turns(kg, _load_split(data, cfg.split), cfg.typo_share, cfg.typo_min_letters, cfg.seed)
    if cfg.max_turns:
        turns = turns[: cfg.max_turns]
    res, errors, ms = run_movie_benchmark(linker, turns)
    t0 = time.perf_counter()
    sample = turns[: cfg.single_sample]
    for t in sample:
        linker.link(t.text)
    ms_single = (time.perf_counter() - t0) * 1000 / max(len(sample), 1)
    n_typo_mentions = sum(t.n_typos for t in turns)
    payload = {
        **res,
        "ms_per_utterance": ms,
        "ms_per_utterance_single": ms_single,
        "load_s": linker.load_seconds,
        "typo_share": cfg.typo_share,
        "n_typo_mentions": n_typo_mentions,
        "split": cfg.split,
    }
    if cfg.use_ner and cfg.ablate_ner:
        fast = EntityLinker.from_kg(kg, popularity_path=str(data / "movies.jsonl"), use_ner=False).load()
        res_fast, _, ms_fast = run_movie_benchmark(fast, turns)
        t0 = time.perf_counter()
        for t in sample:
            fast.link(t.text)
        payload["ablation_no_ner"] = {
            "movie_precision": res_fast["movie_precision"],
            "movie_recall": res_fast["movie_recall"],
            "ms_per_utterance": ms_fast,
            "ms_per_utterance_single": (time.perf_counter() - t0) * 1000 / max(len(sample), 1),
        }
    print(format_table([{"metric": k, "value": v} for k, v in payload.items()], ["metric", "value"]))
    for e in errors[: cfg.show_errors]:
        print("  ", e)
    if hand is not None:
        hres = score_handlabelled(kg, hand, linker.link_many([t for t, _ in hand]))
        payload["handlabelled"] = hres.pop("per_type")
        micro = hres.pop("micro_all_types")
        hand_errors = hres.pop("errors")
        payload["handlabelled_summary"] = {**hres, "micro_all_types": micro}
        rows = [{"type": t, **v} for t, v in payload["handlabelled"].items()] + [{"type": "all (micro)", **micro}]
        print(format_table(rows, ["type", "precision", "recall", "n"]))
        print(format_table([{"metric": k, "value": v} for k, v in hres.items()], ["metric", "value"]))
        for e in hand_errors[: cfg.show_errors * 2]:
            print("  ", e)
    if cfg.out:
        files = [data / f"{cfg.split}.jsonl", data / "movies.jsonl", Path(cfg.kg) / "entities.jsonl"]
        if cfg.handlabelled:
            files.append(hand_path)
        write_results(
            cfg.out, payload, config={**to_dict(cfg), "linker": dataclasses.asdict(linker.options)}, data_files=files
        )
        print(f"wrote {cfg.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
