"""Shared tiny fixtures for generation tests: a byte-level BPE tokenizer and a tiny random GPT-2."""

from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "generation"


def _corpus() -> list[str]:
    lines = []
    for name in ("dialogues.jsonl", "labels.jsonl", "predicted_acts.jsonl"):
        lines += (FIXTURES / name).read_text(encoding="utf-8").splitlines()
    return lines + ["[MOVIE_1] [MOVIE_2] [MOVIE] @ & hello"]


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<eos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(_corpus(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<eos>")
    out = tmp_path_factory.mktemp("tok")
    fast.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_spec(tiny_tokenizer_dir):
    from crwalker.generation.model import BackendSpec

    return BackendSpec(
        backend="gpt2-scratch", tokenizer=str(tiny_tokenizer_dir), n_layer=2, n_embd=32, n_head=2, n_positions=160
    )


@pytest.fixture()
def tiny_generator(tiny_spec):
    import torch

    from crwalker.generation.model import ActConditionedGenerator

    torch.manual_seed(0)
    return ActConditionedGenerator.create(tiny_spec)
