import json

import numpy as np

from crwalker.config import EvalConfig, TrainConfig
from crwalker.evaluate import evaluate, popularity_scores
from crwalker.train import train
from kg_build.schema import tiny_kg_for_tests


def test_popularity_counts_train_mentions(tiny_data):
    kg = tiny_kg_for_tests()
    # movies 4..8; train mentions: Terminator 1, Alien 1, Aliens 2 (c2, c3), Superbad 1
    assert popularity_scores(tiny_data / "redial" / "train.jsonl", kg).tolist() == [1.0, 0.0, 1.0, 2.0, 1.0]


def test_evaluate_writes_results(tiny_data, tiny_bert, tmp_path, tiny_paths):
    tok, bert, _ = tiny_bert
    quiet = lambda *_: None  # noqa: E731
    common = tiny_paths
    train(
        TrainConfig(
            name="w",
            runs=str(tmp_path / "runs"),
            bert="tiny",
            dim=8,
            attn_hidden=4,
            intent_hidden=4,
            batch_size=4,
            epochs=2,
            **common,
        ),
        encoder=(tok, bert),
        log=quiet,
    )
    out = tmp_path / "res" / "recommendation.json"
    res = evaluate(
        EvalConfig(
            run=str(tmp_path / "runs" / "w"),
            out=str(out),
            plot=str(tmp_path / "res" / "w.png"),
            widths=[1, 2],
            gold_intent_turns=True,
            **common,
        ),
        encoder=(tok, bert),
        log=quiet,
    )
    disk = json.loads(out.read_text())
    assert disk["rows"] == res["rows"] and disk["split"] == "test" and "git_commit" in disk
    assert set(disk["rows"]) == {"cr_walker", "popularity", "depth1", "rgcn_portrait"}
    for row in list(disk["rows"].values()) + list(disk["rows_new"].values()):
        for k in ("R@1", "R@10", "R@50", "coverage"):
            assert 0.0 <= row[k] <= 100.0
        assert row["R@1"] <= row["R@10"] <= row["R@50"]
    # 5 candidate movies: every gold movie is inside the top-50, so Recall@50 is exactly 100 %
    assert disk["rows"]["cr_walker"]["R@50"] == 100.0
    assert disk["details"]["cr_walker"]["scored_turns"] == 5
    # popularity (Aliens 2 > others; ties by id -> Terminator): gold of test turns = 4, 6, 7, 8, 7 -> R@1 = 2/5
    assert disk["rows"]["popularity"]["R@1"] == 40.0
    assert set(disk["width_sweep"]) == {"1", "2"}
    lines = (tmp_path / "runs" / "w" / "eval_test_turns.jsonl").read_text().splitlines()
    assert len(lines) == 7 and len(json.loads(lines[0])["top50"]) == 5
    gold_lines = (tmp_path / "runs" / "w" / "eval_test_turns_gold_intent.jsonl").read_text().splitlines()
    for row in map(json.loads, gold_lines):  # trees walked from the gold intent
        assert row["pred"]["intent"] == row["gold"]["intent"] == row["pred"]["act"]["intent"]
    assert (tmp_path / "res" / "w.png").stat().st_size > 0
    assert np.isfinite(disk["width_sweep"]["1"]["mean_tree_width"])
