"""Train-split BPE vocabulary, fp16 checkpoints, the auxiliary prompt loss, bench/eval helpers."""

from pathlib import Path

import pytest
import torch

from crwalker.generation import data as D
from crwalker.generation import tokenizer as T
from crwalker.generation.evaluate import bench_backends, intent_accuracy
from crwalker.generation.model import ActConditionedGenerator, BackendSpec
from data_scripts.utils.io import write_json
from kg_build.schema import tiny_kg_for_tests

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "generation"


@pytest.fixture(scope="module")
def examples():
    kg = tiny_kg_for_tests()
    return D.build_examples(D.load_dialogues(FIXTURES / "dialogues.jsonl"), FIXTURES / "labels.jsonl", kg)


@pytest.fixture(scope="module")
def bpe(examples, tmp_path_factory):
    tok = T.train_bpe(T.training_texts(examples), vocab_size=300, min_frequency=1, n_placeholders=3)
    out = tmp_path_factory.mktemp("bpe")
    tok.save_pretrained(out)
    return out


def test_training_texts_are_prompts_and_both_targets(examples):
    texts = list(T.training_texts(examples))
    assert len(texts) == 3 * len(examples)
    assert texts[0] == examples[0].prompt(True) and texts[1] == " " + examples[0].reply


def test_bpe_vocab_placeholders_and_roundtrip(bpe):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(bpe)
    assert type(tok).__name__.startswith("GPT2Tokenizer")
    assert tok.eos_token == tok.pad_token == "<eos>" and tok.eos_token_id == 0
    assert 256 < len(tok) <= 300 + 4  # bytes + merges (+ <eos>) + 4 placeholders
    assert T.placeholder_tokens(3) == ["[MOVIE]", "[MOVIE_1]", "[MOVIE_2]", "[MOVIE_3]"]
    text = "hi @ [ Recommend ( Alien (1979) ) ] & seen [MOVIE_1] or[MOVIE_3]?"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    pieces = [tok.decode([i]) for i in ids]
    assert "[MOVIE_1]" in pieces and "[MOVIE_3]" in pieces  # one token each, never split
    # placeholders survive skip_special_tokens (they are added, not special); EOS does not
    assert tok.decode(ids + [tok.eos_token_id], skip_special_tokens=True) == text


def test_tokenizer_cli(tmp_path):
    import shutil

    root = tmp_path / "d"
    for sub in ("redial", "labels"):
        (root / sub).mkdir(parents=True)
    shutil.copy(FIXTURES / "dialogues.jsonl", root / "redial" / "train.jsonl")
    shutil.copy(FIXTURES / "labels.jsonl", root / "labels" / "train.jsonl")
    tiny_kg_for_tests().save(root / "kg")
    out = T.main([
        "--dialogues-dir", str(root / "redial"), "--labels-dir", str(root / "labels"), "--kg-dir", str(root / "kg"),
        "--vocab-size", "280", "--min-frequency", "1", "--out", str(tmp_path / "tok"),
    ])  # fmt: skip
    assert (out / "tokenizer.json").exists()


def test_fp16_checkpoint_and_prompt_loss(bpe, examples, tmp_path):
    torch.manual_seed(0)
    spec = BackendSpec(backend="gpt2-scratch", tokenizer=str(bpe), n_layer=1, n_embd=32, n_head=2, n_positions=160)
    gen = ActConditionedGenerator.create(spec)
    batch = D.collate([D.encode_pair(gen.tokenizer, e.prompt(), e.reply) for e in examples], gen.tokenizer.pad_token_id)
    gen.model.eval()
    with torch.no_grad():
        reply_only = gen.train_loss(batch, 0.0)
        assert torch.allclose(reply_only, gen.forward(batch))
        assert gen.train_loss(batch, 0.5) > reply_only  # adds 0.5 x (positive) prompt cross-entropy
    gen.save(tmp_path / "fp32")
    gen.save(tmp_path / "fp16", dtype="float16")
    size = {k: (tmp_path / k / "model.safetensors").stat().st_size for k in ("fp32", "fp16")}
    assert size["fp16"] < 0.6 * size["fp32"]
    assert next(gen.model.parameters()).dtype == torch.float32  # in-memory model untouched
    loaded = ActConditionedGenerator.load(tmp_path / "fp16")
    assert next(loaded.model.parameters()).dtype == torch.float32
    with torch.inference_mode():
        assert torch.allclose(loaded.nll(batch)[0], gen.nll(batch)[0], rtol=1e-2)


def test_noact_generation_does_not_use_the_act(tiny_generator, examples):
    import dataclasses

    from crwalker.generation.model import postprocess

    noact = dataclasses.replace(examples[0], intent="recommend")
    assert postprocess("I like it", noact, None, complete=True, use_act=False) == "I like it"
    gen = ActConditionedGenerator(tiny_generator.model, tiny_generator.tokenizer, tiny_generator.spec, use_act=False)
    torch.manual_seed(0)
    raw, final = gen.generate([noact], max_new_tokens=4)[0]
    assert final == raw  # no completion with the (unseen) act's movies


def test_intent_accuracy_and_bench_backends(examples, tmp_path):
    gold = {(e.conv_id, e.turn_idx): e.intent for e in examples}
    flipped = [examples[0].__class__(**{**examples[0].to_json(), "intent": "zzz"})] + list(examples[1:])
    assert intent_accuracy(list(examples), gold) == 1.0
    assert intent_accuracy(flipped, gold) == pytest.approx((len(examples) - 1) / len(examples))
    runs = [
        {"backend": "smollm2", "variant": v, "threads": 1, "n": 6, "total_p95_s": p, "first_token_p95_s": f}
        for v, p, f in (("fp32", 6.0, 0.5), ("int8", 3.0, 0.2))
    ]
    write_json(tmp_path / "b.json", {"runs": runs})
    got = bench_backends(tmp_path / "b.json")["smollm2"]
    assert got["p95_s"] == 6.0 and got["first_token_p95_s"] == 0.5 and got["evaluated"] is False
    assert got["BLEU"] is None and got["train_minutes"] is None


def test_time_cosine_schedule():
    from crwalker.generation.train import time_cosine

    assert time_cosine(0, 10, 0.0) == pytest.approx(0.1)  # warm-up by steps
    assert time_cosine(10, 10, 0.0) == pytest.approx(1.0)
    assert time_cosine(50, 10, 0.5) == pytest.approx(0.5)  # half the wall-clock budget used
    assert time_cosine(99, 10, 1.3) == pytest.approx(0.0)  # clipped at the end of the budget


def test_bench_append_keeps_other_runs(tiny_generator, tmp_path):
    from crwalker.generation import bench
    from data_scripts.utils.io import read_json

    tiny_generator.save(tmp_path / "ckpt")
    out = tmp_path / "bench.json"
    old = {"backend": "smollm2", "variant": "fp32", "threads": 1, "n": 6, "total_p95_s": 6.0}
    write_json(out, {"runs": [old]})
    args = ["--backends", f"tiny={tmp_path / 'ckpt'}", "--runs", "2", "--warmup", "0", "--tokens", "3"]
    bench.main([*args, "--out", str(out), "--append", "true"])
    runs = read_json(out)["runs"]
    assert [r["backend"] for r in runs] == ["smollm2", "tiny"] and runs[1]["n"] == 2 and "measured_utc" in runs[1]
    bench.main([*args, "--out", str(out)])  # without --append the file holds only this run
    assert [r["backend"] for r in read_json(out)["runs"]] == ["tiny"]


def test_decode_and_score_matches_generate_and_nll(tiny_generator, examples):
    gen = tiny_generator
    prompts = [e.prompt() for e in examples]
    raws, nll, n = gen.decode_and_score(prompts, [e.reply for e in examples], max_new_tokens=6, do_sample=False)
    assert raws == gen.generate_raw(prompts, max_new_tokens=6, do_sample=False)  # same greedy replies
    with torch.no_grad():
        ref_nll, ref_n = gen.nll(
            D.collate(
                [D.encode_pair(gen.tokenizer, p, e.reply) for p, e in zip(prompts, examples, strict=True)],
                gen.tokenizer.pad_token_id,
            )
        )
    assert n == int(ref_n) and nll == pytest.approx(float(ref_nll), rel=1e-4)
    torch.manual_seed(0)
    sampled, _, zero = gen.decode_and_score(prompts, None, max_new_tokens=6)
    assert len(sampled) == len(prompts) and zero == 0


def test_sample_top_p_keeps_the_nucleus():
    from crwalker.generation.model import _sample_top_p

    logits = torch.log(torch.tensor([[0.6, 0.35, 0.04, 0.01]])).repeat(200, 1)
    torch.manual_seed(0)
    got = set(_sample_top_p(logits, 0.9).tolist())
    assert got == {0, 1}  # cumulative 0.95 >= 0.9 with the two most likely tokens


def test_sample_top_p_temperature_reshapes_before_the_nucleus():
    from crwalker.generation.model import _sample_top_p

    # p = (0.6, 0.35, 0.04, 0.01); at T = 2 the probabilities become proportional to sqrt(p):
    # (0.7746, 0.5916, 0.2, 0.1) / 1.6662 = (0.465, 0.355, 0.120, 0.060): the 0.9 nucleus now needs 3 tokens
    logits = torch.log(torch.tensor([[0.6, 0.35, 0.04, 0.01]])).repeat(400, 1)
    torch.manual_seed(0)
    assert set(_sample_top_p(logits, 0.9, temperature=2.0).tolist()) == {0, 1, 2}
    torch.manual_seed(0)
    assert set(_sample_top_p(logits, 0.9, temperature=0.05).tolist()) == {0}  # near-greedy
    with pytest.raises(ValueError, match="temperature"):
        _sample_top_p(logits, 0.9, temperature=0.0)
