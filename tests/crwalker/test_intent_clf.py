"""Fine-tuned intent classifier (crwalker.intent_clf): training, artefact round trip, late fusion, tuning."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from crwalker.candidates import CandidateSets
from crwalker.config import EvalConfig, ModelConfig, TrainConfig
from crwalker.data import build_examples, collate, load_dialogues
from crwalker.evaluate import evaluate
from crwalker.intent_clf import (
    IntentClassifier,
    IntentClfConfig,
    attach_log_probs,
    bucket_batches,
    build_classifier,
    classifier_doc,
    clf_text,
    load_classifier,
    make_batch,
    read_classifier,
    save_classifier,
    train_classifier,
)
from crwalker.state import STATE_DIM
from crwalker.train import train
from crwalker.tune import TuneConfig, choose_intent_calibration, tune
from crwalker.walker import CRWalker

QUIET = lambda *a, **k: None  # noqa: E731


def fresh_bert(tiny_bert):
    """A new copy of the tiny BERT (the classifier injects LoRA layers into its base in place)."""
    from transformers import AutoModel

    return tiny_bert[0], AutoModel.from_pretrained(tiny_bert[2]).eval()


def test_clf_text_batch_and_buckets():
    assert clf_text([("a", "b"), ("sys", "user")]) == ("user", "sys")
    assert clf_text([]) == ("", "")
    b = make_batch([[2, 5, 3], [2, 3]], [[0.0] * STATE_DIM, [1.0] * STATE_DIM], pad_id=0)
    assert b.input_ids.tolist() == [[2, 5, 3], [2, 3, 0]] and b.attention_mask.tolist() == [[1, 1, 1], [1, 1, 0]]
    batches = bucket_batches([5, 1, 4, 2, 3, 6], 2, seed=0)
    assert sorted(i for b in batches for i in b) == list(range(6))
    lengths = [5, 1, 4, 2, 3, 6]
    assert all(abs(lengths[b[0]] - lengths[b[-1]]) <= 1 for b in batches)  # similar lengths together
    assert batches == bucket_batches(lengths, 2, seed=0)


def test_choose_intent_calibration_hand_computed():
    # walker log-probs: right on 0 and 1, wrong on 2 and 3; the classifier is right on 2 and 3 but wrong on 0
    lp = np.log(np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.5, 0.1, 0.4], [0.45, 0.1, 0.45]]))
    clf = np.log(np.array([[0.3, 0.4, 0.3], [0.2, 0.6, 0.2], [0.1, 0.1, 0.8], [0.1, 0.1, 0.8]]))
    gold = np.array([0, 1, 2, 2])
    w, b, acc = choose_intent_calibration(lp, clf, gold, [0.0, 1.0, 2.0], 0.0)
    assert (w, b, acc) == (1.0, (0.0, 0.0, 0.0), 1.0)  # w = 1 and w = 2 both reach 4/4: the smaller wins
    w0, _, acc0 = choose_intent_calibration(lp, clf, gold, [0.0], 0.0)
    assert (w0, acc0) == (0.0, 0.5)


def test_train_then_reload_gives_the_recorded_valid_accuracy(tiny_data, tiny_bert, tmp_path, tiny_paths):
    cfg = IntentClfConfig(
        name="clf", runs=str(tmp_path / "runs"), kg=tiny_paths["kg"], labels=tiny_paths["labels"],
        dialogues=tiny_paths["dialogues"], bert=tiny_bert[2], epochs=2, batch_size=4, lr=5e-3, device="cpu",
        lora_r=2, head_hidden=8,
    )  # fmt: skip
    state = train_classifier(cfg, encoder=fresh_bert(tiny_bert), log=QUIET)
    path = tmp_path / "runs" / "clf" / "intent_clf.safetensors"
    tensors, doc = read_classifier(path)
    assert doc["train_state"]["best_epoch"] == state["best_epoch"] and len(doc["train_state"]["history"]) == 2
    assert all(".lora_" in k or k.startswith("head.") for k in tensors) and not any(
        "word_embeddings" in k for k in tensors
    )
    clf, _ = load_classifier(path)
    from kg_build.schema import KnowledgeGraph

    cands = CandidateSets(KnowledgeGraph.load(tiny_paths["kg"]))
    dlg = load_dialogues(tiny_data / "redial" / "valid.jsonl")
    exs = build_examples(tiny_data / "labels" / "valid.jsonl", dlg, cands, 1)
    attach_log_probs(exs, clf)
    acc = float(np.mean([int(np.argmax(e.intent_clf_logp)) == e.intent for e in exs]))
    assert acc == pytest.approx(state["best_valid_intent_acc"])
    for e in exs:
        assert np.exp(e.intent_clf_logp).sum() == pytest.approx(1.0, abs=1e-5)
    # another base encoder is refused
    doc2 = {**doc, "base_fingerprint": "0" * 16}
    with pytest.raises(ValueError, match="base encoder"):
        build_classifier(tensors, doc2, encoder=fresh_bert(tiny_bert))
    with pytest.raises(FileNotFoundError, match="python -m crwalker.intent_clf"):
        read_classifier(tmp_path / "missing.safetensors")


def test_late_fusion_adds_the_weighted_log_probs(tiny_data, tiny_kg, tiny_bert, tmp_path):
    from crwalker.features import attach_features

    cands = CandidateSets(tiny_kg)
    exs = build_examples(
        tiny_data / "labels" / "train.jsonl", load_dialogues(tiny_data / "redial" / "train.jsonl"), cands, 3
    )
    feats, _ = attach_features(exs, tmp_path / "c", "tiny", 64, encoder=tiny_bert[:2], log=QUIET, intent_pairs=True)
    torch.manual_seed(0)
    model = CRWalker(ModelConfig(dim=8, attn_hidden=4, intent_hidden=4), tiny_kg, feats.shape[1]).eval()
    rng = np.random.default_rng(0)
    for e in exs:
        e.intent_clf_logp = np.log(rng.dirichlet([1, 1, 1])).tolist()
    batch = collate(exs, feats, cands, 0, torch.Generator(), targets=False)
    H = model.entity_embeddings()
    _, _, base = model.encode(batch, H)
    model.cfg = dataclasses.replace(model.cfg, intent_clf_weight=0.7)
    _, _, fused = model.encode(batch, H)
    torch.testing.assert_close(fused, base + 0.7 * batch.intent_clf)
    model.train()  # training never reads the classifier (same dropout draws with and without the weight)
    torch.manual_seed(1)
    _, _, with_w = model.encode(batch, H)
    model.cfg = dataclasses.replace(model.cfg, intent_clf_weight=0.0)
    torch.manual_seed(1)
    _, _, without_w = model.encode(batch, H)
    torch.testing.assert_close(with_w, without_w)


def test_tune_chooses_the_weight_and_evaluate_applies_it(tiny_data, tiny_bert, tmp_path, tiny_paths):
    # a classifier whose head always says "query": fusing it must move the intents toward query
    cfg = IntentClfConfig(bert=tiny_bert[2], lora_r=2, head_hidden=8)
    from crwalker.encoders import model_fingerprint

    tok, base = fresh_bert(tiny_bert)
    fp = model_fingerprint(base, cfg.max_length, "mean")
    clf = IntentClassifier(base, cfg)
    with torch.no_grad():
        clf.head[3].weight.zero_()
        clf.head[3].bias.copy_(torch.tensor([-5.0, 5.0, -5.0]))
    art = tmp_path / "clf" / "intent_clf.safetensors"
    save_classifier(art, clf.trainable_state(), classifier_doc(cfg, fp, {"best_epoch": 0}))
    assert json.loads(art.with_suffix(".json").read_text())["config"]["bert"] == tiny_bert[2]
    tc = TrainConfig(name="w", runs=str(tmp_path / "runs"), bert="tiny", dim=8, attn_hidden=4, intent_hidden=4)
    train(dataclasses.replace(tc, batch_size=4, epochs=1, **tiny_paths), encoder=tiny_bert[:2], log=QUIET)
    run = tmp_path / "runs" / "w"
    grids = {f"grid_{k}": [0.0] for k in ("popularity", "cooccurrence", "kg", "mentioned", "recency")}
    rec = tune(
        TuneConfig(run=str(run), use_structured=False, intent_clf=str(art), grid_intent_clf=[0.0, 50.0],
                   intent_bias_range=0.0, **grids, **tiny_paths),
        encoder=tiny_bert[:2], log=QUIET,
    )  # fmt: skip
    valid = [json.loads(x) for x in (tmp_path / "data" / "labels" / "valid.jsonl").read_text().splitlines()]
    share_query = np.mean([r["intent"] == "query" for r in valid])
    w = rec["chosen"].get("intent_clf_weight", 0.0)
    assert w in (0.0, 50.0) and rec["chosen"]["intent_clf"] == str(art)
    if w == 50.0:  # always-query is then at least as accurate as the walker alone
        assert rec["valid_after"]["intent_acc"] == pytest.approx(share_query)
    # evaluate applies the tuned weight: with w = 50 every predicted intent is query
    tuned = json.loads((run / "tuned.json").read_text())
    tuned["config"]["intent_clf_weight"] = 50.0
    from crwalker.checkpoint import load_checkpoint, save_checkpoint
    from crwalker.config import model_config_of
    from kg_build.schema import KnowledgeGraph

    kg = KnowledgeGraph.load(tiny_paths["kg"])
    m = CRWalker(model_config_of(tuned["config"]), kg, 32)
    load_checkpoint(run / "tuned.safetensors", m)
    save_checkpoint(run / "forced.safetensors", m, None, tuned["config"], tuned["train_state"])
    out = tmp_path / "res.json"
    res = evaluate(
        EvalConfig(run=str(run), checkpoint="forced", out=str(out), plot="", widths=[1], **tiny_paths),
        encoder=tiny_bert[:2], log=QUIET,
    )  # fmt: skip
    test_rows = [json.loads(x) for x in (tmp_path / "data" / "labels" / "test.jsonl").read_text().splitlines()]
    assert res["intent_clf"]["weight"] == 50.0 and res["intent_clf"]["best_epoch"] == 0
    assert res["rows"]["cr_walker"]["intent_acc"] == pytest.approx(
        100 * np.mean([r["intent"] == "query" for r in test_rows]), abs=0.01
    )
