"""Tiny engine fixtures: the 16-entity KG, a random tiny CR-Walker, the tiny BERT of tests/crwalker/conftest.py
and a tiny from-scratch GPT-2 generator (byte-level BPE trained on a few lines)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from crwalker.config import ModelConfig
from crwalker.walker import CRWalker
from data_scripts.utils.io import write_jsonl
from kg_build.schema import tiny_kg_for_tests

# tiny KG ids: classes 0-3, movies 4-8 (Terminator 4, T2 5, Alien 6, Aliens 7, Superbad 8),
# Arnold 9, Cameron 10, Weaver 11, Action 12, Horror 13, Comedy 14, 1980s 15
CORPUS = [
    "hi , i like action movies with arnold schwarzenegger",
    "have you seen [MOVIE_1] ? it is a great action film",
    "what genre do you like ? [MOVIE_1] and [MOVIE_2] are scary",
    "any scary movies like alien ? @ [ Recommend ( Horror ( Alien (1979) ) ) ] &",
    "no horror please , something funny . seen it . i loved it !",
]


@pytest.fixture(scope="session")
def engine_kg_dir(tmp_path_factory):
    """The tiny KG saved as a folder, with a movie_info.jsonl for cards."""
    folder = tmp_path_factory.mktemp("kg")
    kg = tiny_kg_for_tests()
    kg.save(folder)
    rows = [
        {
            "entity": e.id,
            "name": e.name,
            "year": e.year,
            "genres": ["Action"] if e.id in (4, 5, 7) else [],
            "directors": ["James Cameron"] if e.id in (4, 5, 7) else [],
            "stars": [],
            "writers": [],
            "plot": f"plot of {e.name}",
            "redial_id": e.redial_id,
            "imdb_id": None,
        }
        for e in kg.entities
        if e.type == "movie"
    ]
    write_jsonl(folder / "movie_info.jsonl", rows)
    return folder


@pytest.fixture(scope="session")
def tiny_gen_dir(tmp_path_factory):
    """A saved tiny gpt2-scratch ActConditionedGenerator folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from crwalker.generation.model import ActConditionedGenerator, BackendSpec

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<eos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<eos>")
    tok_dir = tmp_path_factory.mktemp("gentok")
    fast.save_pretrained(tok_dir)
    spec = BackendSpec(backend="gpt2-scratch", tokenizer=str(tok_dir), n_layer=1, n_embd=16, n_head=2, n_positions=128)
    torch.manual_seed(0)
    gen = ActConditionedGenerator.create(spec)
    out = tmp_path_factory.mktemp("gen") / "best"
    gen.save(out)
    return out


def make_walker(kg, bert_dir: str, seed: int = 0, intent_bias: tuple[float, float, float] | None = None) -> CRWalker:
    """A random tiny walker (d=16) whose config names the tiny BERT folder; ``intent_bias`` forces an intent."""
    torch.manual_seed(seed)
    cfg = dataclasses.replace(ModelConfig(), dim=16, attn_hidden=8, intent_hidden=8, bert=bert_dir, dropout=0.0)
    w = CRWalker(cfg, kg, bert_dim=32).eval()
    if intent_bias is not None:
        with torch.no_grad():
            w.intent_selector.net[2].weight.zero_()
            w.intent_selector.net[2].bias.copy_(torch.tensor(intent_bias))
    return w


@pytest.fixture(scope="session")
def walker_factory():
    """:func:`make_walker` as a fixture (test modules do not import conftest)."""
    return make_walker


@pytest.fixture(scope="session")
def tiny_linker():
    from kg_build.linker import EntityLinker, LinkerOptions

    opts = {"popularity_path": ""}
    if "span_classifier" in LinkerOptions.__dataclass_fields__:  # trained on the real KG: off for the tiny one
        opts["span_classifier"] = ""
    return EntityLinker.from_kg(tiny_kg_for_tests(), **opts).load()


@pytest.fixture(scope="session")
def make_engine(tiny_bert, tiny_gen_dir, engine_kg_dir, tiny_linker):
    """Factory: ``make_engine(intent="recommend"|"query"|"chat"|None)`` -> Engine with greedy decoding."""
    from crwalker.engine import Engine
    from crwalker.engine.cards import CardFactory
    from crwalker.generation.model import ActConditionedGenerator

    tok, bert, bert_dir = tiny_bert
    gen = ActConditionedGenerator.load(tiny_gen_dir)
    cache = {}

    def make(intent: str | None = None):
        if intent not in cache:
            kg = tiny_linker.kg
            bias = (
                None if intent is None else tuple(10.0 if n == intent else 0.0 for n in ("recommend", "query", "chat"))
            )
            walker = make_walker(kg, bert_dir, intent_bias=bias)
            cards = CardFactory.from_folder(kg, engine_kg_dir)
            cache[intent] = Engine(
                kg,
                walker,
                (tok, bert),
                gen,
                cards,
                tiny_linker,
                gen_kwargs={"max_new_tokens": 6, "do_sample": False},
            )
        return cache[intent]

    return make
