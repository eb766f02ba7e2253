"""Tiny fixtures for crwalker tests: the 16-entity KG, synthetic dialogues/labels and a random tiny BERT."""

from __future__ import annotations

import pytest
import torch

from data_scripts.utils.io import write_jsonl
from kg_build.acts import ActNode, DialogAct
from kg_build.schema import tiny_kg_for_tests

# tiny KG ids: classes 0-3, movies 4-8, Arnold 9, Cameron 10, Weaver 11, Action 12, Horror 13, Comedy 14, 1980s 15
N = tiny_kg_for_tests().entities


def _node(e, kids=()):
    return ActNode(e, N[e].name, tuple(ActNode(k, N[k].name) for k in kids))


def _dialogues_and_labels(split: str):
    s, r = "seeker", "recommender"
    convs = [
        (
            "c1",
            [
                (s, "hi, I like action movies with Arnold Schwarzenegger"),
                (r, "Have you seen The Terminator (1984)?"),
                (s, "yes, loved it"),
                (r, "what genre do you like besides action?"),
                (s, "horror is great"),
                (r, "Alien (1979) is scary"),
            ],
        ),
        (
            "c2",
            [
                (s, "I love James Cameron"),
                (r, "James Cameron directed Aliens (1986)"),
                (s, "something funny?"),
                (r, "Superbad (2007) is hilarious"),
            ],
        ),
        ("c3", [(r, "hello! what do you like?"), (s, "sigourney weaver"), (r, "try Aliens (1986), an action film")]),
    ]
    labels = {
        ("c1", 1): ("recommend", [_node(12, [4]), _node(9, [4])], [4], [12, 9]),
        ("c1", 3): ("query", [_node(2, [13, 14])], [], [12, 9, 4]),
        ("c1", 5): ("recommend", [_node(13, [6])], [6], [12, 9, 4, 13]),
        ("c2", 1): ("chat", [_node(10, [7])], [7], [10]),
        ("c2", 3): ("recommend", [_node(8)], [8], [10, 7]),
        ("c3", 0): ("query", [_node(0, [11, 9])], [], []),
        ("c3", 2): ("recommend", [_node(11, [7])], [7], [11]),
    }
    dialogues, rows = [], []
    for cid, turns in convs:
        dialogues.append(
            {
                "conv_id": f"{split}-{cid}",
                "split": split,
                "seeker_id": 1,
                "recommender_id": 2,
                "turns": [
                    {
                        "idx": i,
                        "role": ro,
                        "text_raw": t,
                        "text": t,
                        "message_ids": [i],
                        "movie_ids": [N[m].redial_id for m in labels.get((cid, i), ("", [], [], []))[2]],
                    }
                    for i, (ro, t) in enumerate(turns)
                ],
                "questionnaire": [],
            }
        )
        for (c, ti), (intent, nodes, movies, ctx) in labels.items():
            if c != cid:
                continue
            act = DialogAct(intent, tuple(nodes))
            rows.append(
                {
                    "conv_id": f"{split}-{cid}",
                    "split": split,
                    "turn_idx": ti,
                    "intent": intent,
                    "act": act.to_json(),
                    "act_text": act.linearize(),
                    "turn_movies": movies,
                    "turn_entities": movies,
                    "context_entities": ctx,
                    "context_entities_seeker": ctx,
                    "negated_entities": [],
                }
            )
    return dialogues, rows


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """The machine is shared: tests run single-threaded (also makes timings stable)."""
    torch.set_num_threads(1)


@pytest.fixture
def tiny_kg():
    return tiny_kg_for_tests()


@pytest.fixture
def tiny_data(tmp_path):
    """Writes data/{redial,labels}/{train,valid,test}.jsonl and data/kg under tmp_path; returns the root."""
    root = tmp_path / "data"
    tiny_kg_for_tests().save(root / "kg")
    for split in ("train", "valid", "test"):
        d, r = _dialogues_and_labels(split)
        write_jsonl(root / "redial" / f"{split}.jsonl", d)
        write_jsonl(root / "labels" / f"{split}.jsonl", r)
    return root


@pytest.fixture
def tiny_paths(tiny_data, tmp_path):
    """The data/cache/device options shared by train, tune and evaluate configs on the tiny fixture."""
    return {
        "kg": str(tiny_data / "kg"),
        "labels": str(tiny_data / "labels"),
        "dialogues": str(tiny_data / "redial"),
        "cache": str(tmp_path / "cache"),
        "device": "cpu",
    }


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    """``(tokenizer, BertModel)`` with random weights and a 60-word vocabulary (no network)."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tinybert")
    words = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        "hi",
        "i",
        "like",
        "action",
        "movies",
        "with",
        "arnold",
        "have",
        "you",
        "seen",
        "the",
        "terminator",
        "yes",
        "loved",
        "it",
        "what",
        "genre",
        "do",
        "besides",
        "horror",
        "is",
        "great",
        "alien",
        "scary",
        "love",
        "james",
        "cameron",
        "directed",
        "aliens",
        "something",
        "funny",
        "superbad",
        "hilarious",
        "hello",
        "sigourney",
        "weaver",
        "try",
        "an",
        "film",
        ",",
        "?",
        "!",
        "(",
        ")",
        "1984",
        "1979",
        "1986",
        "2007",
    ]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    tok = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(words),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=128,
    )
    model = BertModel(cfg).eval()
    tok.save_pretrained(folder)
    model.save_pretrained(folder)
    return tok, model, str(folder)
