"""Release bundle: build / verify / load round trip, sharding, size refusal, KG mismatch refusal."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import crwalker.engine.bundle as B
from crwalker.checkpoint import save_checkpoint
from crwalker.engine import Engine, WalkControls
from data_scripts.utils.io import write_json


@pytest.fixture
def walker_ckpt(tmp_path, tiny_bert, tiny_linker, walker_factory):
    w = walker_factory(tiny_linker.kg, tiny_bert[2], seed=3)
    path = tmp_path / "run" / "best.safetensors"
    save_checkpoint(path, w, torch.optim.Adam(w.parameters()), {**w.cfg.__dict__, "epochs": 1}, {"epoch": 1})
    write_json(path.parent / "features.json", {"fingerprint": "tiny"})
    return path, w


def build(tmp_path, walker_ckpt, gen_dir, kg_dir, **kw):
    res = tmp_path / "results"
    res.mkdir(exist_ok=True)
    write_json(res / "recommendation.json", {"cr_walker": {"R@10": 1.0}})
    kw.setdefault("guide", "")  # no guided-mode policy unless a test passes one
    cfg = B.BuildConfig(
        walker=str(walker_ckpt[0]), generator=str(gen_dir), kg=str(kg_dir), out=str(tmp_path / "bundle"),
        results=str(res), **kw,
    )  # fmt: skip
    return cfg, B.build_bundle(cfg, ["build", "--out", cfg.out])


def test_build_verify_load_round_trip(tmp_path, walker_ckpt, tiny_gen_dir, engine_kg_dir, tiny_bert, tiny_linker):
    cfg, man = build(tmp_path, walker_ckpt, tiny_gen_dir, engine_kg_dir)
    out = tmp_path / "bundle"
    assert B.verify_bundle(out, engine_kg_dir) == []
    assert man["metrics"]["recommendation"]["cr_walker"]["R@10"] == 1.0
    assert man["kg_entities_sha256"] == B.kg_hashes(engine_kg_dir)["kg_entities_sha256"]
    assert man["walker"]["config"]["dim"] == 16 and man["generator"]["spec"]["backend"] == "gpt2-scratch"
    assert man["created_by"].startswith("python -m crwalker.engine.bundle build")
    assert not [k for k in man["walker"]["tensors"] if k.startswith("optim")]
    for rel in man["files"]:
        assert (out / rel).stat().st_size <= B.MAX_FILE_BYTES
    assert B.main(["verify", "--bundle", str(out)]) == 0
    eng = Engine.load(
        bundle=out,
        kg=engine_kg_dir,
        device="cpu",
        bert=tiny_bert[:2],
        gen_kwargs={"max_new_tokens": 4},
        linker=tiny_linker,
    )
    ref = walker_ckpt[1].state_dict()
    for k, v in eng.walker.state_dict().items():
        assert v.dtype == torch.float32
        torch.testing.assert_close(v, ref[k].half().float())
    r = eng.new_session().say("i like action", WalkControls(0.0, 3, 5))
    assert r.reply
    # export-generator gives back a generator folder with the bundle's (fp16-rounded) weights
    from crwalker.generation.model import ActConditionedGenerator

    assert B.main(["export-generator", "--bundle", str(out), "--out", str(tmp_path / "gen_export")]) == 0
    exported = ActConditionedGenerator.load(tmp_path / "gen_export").model.state_dict()
    for k, v in eng.generator.model.state_dict().items():
        torch.testing.assert_close(exported[k], v)
    # export-walker gives a run folder that crwalker.evaluate loads (same weights as the engine's walker)
    from crwalker.evaluate import _load_model

    assert (
        B.main(["export-walker", "--bundle", str(out), "--kg", str(engine_kg_dir), "--out", str(tmp_path / "w")]) == 0
    )
    w = _load_model(tmp_path / "w", "tuned", tiny_linker.kg, tiny_bert[1].config.hidden_size, "cpu")
    for k, v in eng.walker.state_dict().items():
        torch.testing.assert_close(w.state_dict()[k], v)
    # tampering is detected
    shard = next(out.glob("walker/shard-*.safetensors"))
    shard.write_bytes(shard.read_bytes()[:-1] + b"\x00")
    assert any("sha256" in p for p in B.verify_bundle(out))
    assert B.main(["verify", "--bundle", str(out)]) == 1
    with pytest.raises(B.BundleError, match="failed verification"):
        Engine.load(bundle=out, kg=engine_kg_dir, device="cpu", bert=tiny_bert[:2])


def test_big_tensors_are_split_and_reassembled(monkeypatch):
    monkeypatch.setattr(B, "SHARD_PAYLOAD", 1000)
    monkeypatch.setattr(B, "MAX_FILE_BYTES", 2000)
    t = {"a": torch.randn(200, 7), "b": torch.randn(3), "c": torch.arange(6)}
    blobs, index = B.shard_tensors(t, "w")
    assert len(index["a"]["parts"]) > 1 and all(len(b) <= 2000 for b in blobs.values())
    assert index["a"]["dtype"] == "float16" and index["c"]["dtype"] == "int64"
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        for rel, blob in blobs.items():
            (Path(d) / rel).parent.mkdir(parents=True, exist_ok=True)
            (Path(d) / rel).write_bytes(blob)
        back = B.read_sharded(Path(d), index)
    torch.testing.assert_close(back["a"], t["a"].half().float())
    assert torch.equal(back["c"], t["c"])


def test_size_refusal_writes_nothing(tmp_path, walker_ckpt, tiny_gen_dir, engine_kg_dir):
    with pytest.raises(B.BundleError, match=r"> limit 0.01 MB \(walker weights .* MB, generator weights"):
        build(tmp_path, walker_ckpt, tiny_gen_dir, engine_kg_dir, max_total_mb=0.01)
    assert not (tmp_path / "bundle").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bundle")]


def test_kg_mismatch_is_refused(tmp_path, walker_ckpt, tiny_gen_dir, engine_kg_dir, tiny_bert):
    build(tmp_path, walker_ckpt, tiny_gen_dir, engine_kg_dir)
    other = tmp_path / "kg2"
    shutil.copytree(engine_kg_dir, other)
    rows = (other / "entities.jsonl").read_text().splitlines()
    first = json.loads(rows[4])
    first["name"] = "Renamed Movie (1984)"
    rows[4] = json.dumps(first)
    (other / "entities.jsonl").write_text("\n".join(rows) + "\n")
    with pytest.raises(B.BundleError, match="KG mismatch"):
        Engine.load(bundle=tmp_path / "bundle", kg=other, device="cpu", bert=tiny_bert[:2])
    assert any("kg_entities_sha256" in p for p in B.verify_bundle(tmp_path / "bundle", other))


def test_wrong_kg_size_refused_at_build(tmp_path, walker_ckpt, tiny_gen_dir, engine_kg_dir):
    other = tmp_path / "kg3"
    shutil.copytree(engine_kg_dir, other)
    rows = (other / "entities.jsonl").read_text().splitlines()
    (other / "entities.jsonl").write_text("\n".join(rows[:-1]) + "\n")
    with pytest.raises(B.BundleError, match="not the KG the walker was trained on"):
        build(tmp_path, walker_ckpt, tiny_gen_dir, other)


def test_bundle_carries_the_intent_classifier(
    tmp_path, tiny_gen_dir, engine_kg_dir, tiny_bert, tiny_linker, walker_factory
):
    """A walker that late-fuses an intent classifier: the bundle stores the adapter + head, the engine applies it."""
    import dataclasses

    from transformers import AutoModel

    from crwalker.encoders import model_fingerprint
    from crwalker.intent_clf import IntentClassifier, IntentClfConfig, classifier_doc, save_classifier

    ccfg = IntentClfConfig(bert=tiny_bert[2], lora_r=2, head_hidden=8)
    base = AutoModel.from_pretrained(tiny_bert[2]).eval()
    fp = model_fingerprint(base, ccfg.max_length, "mean")
    clf = IntentClassifier(base, ccfg)
    with torch.no_grad():  # always "chat"
        clf.head[3].weight.zero_()
        clf.head[3].bias.copy_(torch.tensor([-8.0, -8.0, 8.0]))
    doc = classifier_doc(ccfg, fp, {"best_epoch": 1})
    art = save_classifier(tmp_path / "clf" / "intent_clf.safetensors", clf.trainable_state(), doc)
    w = walker_factory(tiny_linker.kg, tiny_bert[2], seed=3, intent_bias=(4.0, 0.0, 0.0))  # alone: recommend
    w.cfg = dataclasses.replace(w.cfg, intent_clf=str(art), intent_clf_weight=1.0)
    path = tmp_path / "run" / "best.safetensors"
    save_checkpoint(path, w, None, dataclasses.asdict(w.cfg), {"epoch": 1})
    _, man = build(tmp_path, (path, w), tiny_gen_dir, engine_kg_dir)
    assert man["intent_clf"]["doc"]["config"]["lora_r"] == 2 and man["sizes_bytes"]["intent classifier"] > 0
    assert B.verify_bundle(tmp_path / "bundle", engine_kg_dir) == []
    art.unlink()  # the engine needs only the bundle
    kw = {
        "kg": engine_kg_dir,
        "device": "cpu",
        "bert": tiny_bert[:2],
        "gen_kwargs": {"max_new_tokens": 4},
        "linker": tiny_linker,
    }
    eng = Engine.load(bundle=tmp_path / "bundle", **kw)
    r = eng.new_session().say("i like action", WalkControls(0.0, 3, 5))
    assert r.intent == "chat" and r.intent_probs["chat"] > 0.9  # 4 + (-16) vs 0 + 0: the classifier decides
    # export-walker writes the classifier beside the checkpoint and points the config at it
    assert B.main(["export-walker", "--bundle", str(tmp_path / "bundle"), "--kg", str(engine_kg_dir),
                   "--out", str(tmp_path / "w")]) == 0  # fmt: skip
    cfg = json.loads((tmp_path / "w" / "tuned.json").read_text())["config"]
    assert cfg["intent_clf"] == str(tmp_path / "w" / "intent_clf.safetensors") and cfg["intent_clf_weight"] == 1.0
    # a walker that needs a classifier is refused without one
    with pytest.raises(ValueError, match="late-fuses an intent classifier"):
        Engine(tiny_linker.kg, eng.walker, tiny_bert[:2], eng.generator, linker=tiny_linker)
