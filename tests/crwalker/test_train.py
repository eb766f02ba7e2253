import math

import pytest
import torch
from safetensors.torch import load_file

from crwalker.checkpoint import load_checkpoint, read_checkpoint_doc
from crwalker.config import TrainConfig
from crwalker.train import train


def _cfg(tiny_data, tmp_path, name, **kw):
    base = {
        "name": name,
        "runs": str(tmp_path / "runs"),
        "kg": str(tiny_data / "kg"),
        "labels": str(tiny_data / "labels"),
        "dialogues": str(tiny_data / "redial"),
        "cache": str(tmp_path / "cache"),
        "bert": "tiny",
        "dim": 16,
        "attn_hidden": 8,
        "intent_hidden": 8,
        "batch_size": 3,
        "epochs": 4,
        "patience": 100,
        "device": "cpu",
        "neg_ratio": 2,
        "dropout": 0.2,
        "seed": 7,
    }
    base.update(kw)
    return TrainConfig(**base)


def test_resume_reaches_identical_weights(tiny_data, tiny_bert, tmp_path):
    tok, bert, _ = tiny_bert
    quiet = lambda *_: None  # noqa: E731
    full = train(_cfg(tiny_data, tmp_path, "full"), encoder=(tok, bert), log=quiet)
    assert full["epochs_run"] == 4
    part = train(_cfg(tiny_data, tmp_path, "resumed", stop_after_epoch=2), encoder=(tok, bert), log=quiet)
    assert part["epochs_run"] == 2
    res = train(_cfg(tiny_data, tmp_path, "resumed", resume=True), encoder=(tok, bert), log=quiet)
    assert res["epochs_run"] == 4
    a = load_file(str(tmp_path / "runs/full/last.safetensors"))
    b = load_file(str(tmp_path / "runs/resumed/last.safetensors"))
    assert a.keys() == b.keys() and any(k.startswith("optim.") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    doc = read_checkpoint_doc(tmp_path / "runs/full/last.safetensors")
    assert [r["epoch"] for r in doc["train_state"]["history"]] == [1, 2, 3, 4]
    assert (tmp_path / "runs/full/metrics.csv").read_text().count("\n") == 5
    assert math.isfinite(doc["train_state"]["history"][-1]["valid_R@10"])


def test_training_reduces_loss_and_checkpoint_roundtrip(tiny_data, tiny_bert, tmp_path):
    from crwalker.candidates import CandidateSets
    from crwalker.config import model_config_of
    from crwalker.walker import CRWalker
    from kg_build.schema import KnowledgeGraph

    tok, bert, _ = tiny_bert
    cfg = _cfg(tiny_data, tmp_path, "learn", epochs=20, lr=1e-2, dropout=0.0, weight_decay=0.0)
    train(cfg, encoder=(tok, bert), log=lambda *_: None)
    doc = read_checkpoint_doc(tmp_path / "runs/learn/last.safetensors")
    hist = doc["train_state"]["history"]
    assert hist[-1]["train_loss"] < 0.6 * hist[0]["train_loss"]
    kg = KnowledgeGraph.load(tiny_data / "kg")
    model = CRWalker(model_config_of(doc["config"]), kg, bert.config.hidden_size)
    load_checkpoint(tmp_path / "runs/learn/best.safetensors", model)
    assert CandidateSets(kg).movie_ids.size == 5
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "runs/nothing.safetensors", model)
