"""train / evaluate CLIs end to end on the fixtures with a tiny from-scratch GPT-2."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from crwalker.generation import evaluate, train
from data_scripts.utils.io import read_json, read_jsonl
from kg_build.schema import tiny_kg_for_tests

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "generation"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    for split in ("train", "valid", "test"):
        (root / "redial").mkdir(exist_ok=True)
        (root / "labels").mkdir(exist_ok=True)
        shutil.copy(FIXTURES / "dialogues.jsonl", root / "redial" / f"{split}.jsonl")
        shutil.copy(FIXTURES / "labels.jsonl", root / "labels" / f"{split}.jsonl")
    tiny_kg_for_tests().save(root / "kg")
    return root


def _train_args(root, tok, out, *extra):
    return [
        "--dialogues-dir", str(root / "redial"), "--labels-dir", str(root / "labels"), "--kg-dir", str(root / "kg"),
        "--backend", "gpt2-scratch", "--tokenizer", str(tok), "--n-layer", "1", "--n-embd", "32", "--n-head", "2",
        "--n-positions", "160", "--batch-size", "2", "--max-steps", "3", "--eval-every", "2", "--log-every", "1",
        "--lr", "1e-3", "--device", "cpu", "--out", str(out), *extra,
    ]  # fmt: skip


def test_train_then_evaluate(workdir, tiny_tokenizer_dir, tmp_path):
    torch.set_num_threads(1)
    info = train.main(_train_args(workdir, tiny_tokenizer_dir, tmp_path / "act"))
    assert info["steps"] == 3 and info["n_train"] == 4 and info["valid_loss"] > 0
    log = read_jsonl(tmp_path / "act" / "train_log.jsonl")
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3]
    assert read_json(tmp_path / "act" / "best" / "generator.json")["use_act"] is True
    train.main(_train_args(workdir, tiny_tokenizer_dir, tmp_path / "noact", "--use-act", "false"))
    assert read_json(tmp_path / "noact" / "last" / "generator.json")["use_act"] is False

    out = tmp_path / "results" / "generation.json"
    res = evaluate.main([
        "--dialogues-dir", str(workdir / "redial"), "--labels-dir", str(workdir / "labels"),
        "--kg-dir", str(workdir / "kg"), "--backends", f"tiny={tmp_path / 'act' / 'last'}",
        "--noact-checkpoint", str(tmp_path / "noact" / "last"),
        "--predicted-acts", str(FIXTURES / "predicted_acts.jsonl"), "--max-new-tokens", "6",
        "--latency-runs", "1", "--latency-tokens", "3", "--device", "cpu", "--out", str(out),
        "--replies-dir", str(tmp_path / "replies"), "--linker", "simple",
    ])  # fmt: skip
    saved = read_json(out)
    assert saved["default_backend"] == "tiny" and saved["git_commit"]
    assert set(saved["rows"]) == {"gold_act", "end_to_end", "no_act"}
    for row in saved["rows"].values():
        assert {"BLEU", "Dist-2", "Dist-3", "KF1", "PPL"} <= set(row) and row["n"] == 4
        assert row["PPL"] > 1
    b = saved["backends"]["tiny"]
    assert b["p95_s"] > 0 and b["first_token_p95_s"] > 0 and b["train_minutes"] > 0
    # the recommend completion guarantees that every selected movie is named
    assert saved["movie_consistency"]["gold_act"]["rec_all_named"] == 1.0
    assert res["rows"]["gold_act"] == saved["rows"]["gold_act"]
    replies = read_jsonl(tmp_path / "replies" / "end_to_end__tiny.jsonl")
    assert len(replies) == 4 and "Terminator 2: Judgment Day (1991)" in replies[1]["reply"]

    # the same rows computed in separate processes (--rows) and merged give the same numbers
    common = [
        "--dialogues-dir", str(workdir / "redial"), "--labels-dir", str(workdir / "labels"),
        "--kg-dir", str(workdir / "kg"), "--backends", f"tiny={tmp_path / 'act' / 'last'}",
        "--noact-checkpoint", str(tmp_path / "noact" / "last"),
        "--predicted-acts", str(FIXTURES / "predicted_acts.jsonl"), "--max-new-tokens", "6",
        "--latency-runs", "1", "--latency-tokens", "3", "--device", "cpu",
        "--replies-dir", str(tmp_path / "replies2"), "--linker", "simple",
    ]  # fmt: skip
    parts = []
    for rows in (["gold_act", "end_to_end"], ["no_act"], ["latency"]):
        parts.append(tmp_path / f"part_{len(parts)}.json")
        extra = ["--latency-runs", "0"] if rows[0] == "gold_act" else []  # timed only by the latency part
        evaluate.main([*common, "--rows", *rows, *extra, "--out", str(parts[-1])])
    # a named predicted-acts row (e.g. trees walked from the gold intent) merges beside end_to_end
    parts.append(tmp_path / "part_named.json")
    evaluate.main([*common, "--rows", "end_to_end", "--end-to-end-row", "gold_intent_walker_tree", "--latency-runs",
                   "0", "--out", str(parts[-1])])  # fmt: skip
    assert set(read_json(parts[-1])["rows"]) == {"gold_intent_walker_tree"}
    assert set(read_json(parts[1])["rows"]) == {"no_act"}
    timed = read_json(parts[2])  # the latency part
    assert timed["rows"] == {} and set(timed["backends"]["tiny"]) == {"p95_s", "first_token_p95_s"}
    assert "p95_s" not in read_json(parts[0])["backends"]["tiny"]
    merged = evaluate.main([*common, "--merge", *map(str, parts), "--out", str(tmp_path / "merged.json")])
    assert set(merged["rows"]) == {"gold_act", "end_to_end", "no_act", "gold_intent_walker_tree"}
    assert merged["rows"]["gold_intent_walker_tree"]["BLEU"] == merged["rows"]["end_to_end"]["BLEU"]  # same acts
    tiny = merged["backends"]["tiny"]  # metrics of the gold part + latency of the latency part
    assert tiny["p95_s"] == timed["backends"]["tiny"]["p95_s"] and tiny["BLEU"] == merged["rows"]["gold_act"]["BLEU"]
    for row in ("gold_act", "end_to_end", "no_act"):
        assert merged["rows"][row]["BLEU"] == pytest.approx(saved["rows"][row]["BLEU"])
    assert merged["rows"]["end_to_end"]["intent_acc"] == saved["rows"]["end_to_end"]["intent_acc"]
    assert merged["rows"]["gold_act"]["temperature"] == 1.0  # no tuned decoding in generator.json

    # a backend evaluated on a sample of the turns merges as a backend only (its own n), rows untouched
    sample = tmp_path / "part_sample.json"
    ck = tmp_path / "act" / "last"
    meta = read_json(ck / "generator.json")
    meta["decoding"] = {"top_p": 0.9, "temperature": 1.1}
    (ck / "generator.json").write_text(json.dumps(meta))
    common_s = [a for a in common if a != f"tiny={ck}"]
    i = common_s.index("--backends")
    common_s.insert(i + 1, f"tiny_s2={ck}")
    evaluate.main([*common_s, "--rows", "gold_act", "--sample", "2", "--latency-runs", "0", "--out", str(sample)])
    assert read_json(sample)["rows"]["gold_act"]["temperature"] == 1.1  # the checkpoint's tuned temperature
    merged2 = evaluate.main([*common, "--merge", *map(str, parts), str(sample), "--out", str(tmp_path / "m2.json")])
    assert merged2["backends"]["tiny_s2"]["n"] == 2 and merged2["rows"] == merged["rows"]


def test_missing_labels_message(workdir, tiny_tokenizer_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope/train.jsonl not found"):
        train.main(_train_args(workdir, tiny_tokenizer_dir, tmp_path / "x", "--labels-dir", str(tmp_path / "nope")))
