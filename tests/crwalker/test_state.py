import math

import torch

from crwalker.config import ModelConfig, model_config_of
from crwalker.encoders import encode_pairs, model_fingerprint
from crwalker.state import STATE_DIM, dialogue_state


def test_dialogue_state_hand_computed():
    s = dialogue_state(4, 9, ["chat", "query", "recommend", "recommend"], "any good comedies?", 7)
    assert len(s) == STATE_DIM
    want = [0.4, math.log(10), 2 / 3, 1 / 3, 1 / 3, 1.0, math.log(4), 0.0, 1.4]
    assert all(abs(a - b) < 1e-12 for a, b in zip(s, want, strict=True))
    # the system speaks first / twice in a row: empty user side
    assert dialogue_state(0, 0, [], "  ", 0) == [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]


def test_legacy_configs_keep_cls_and_no_state():
    old = model_config_of({"dim": 128, "bert": "minilm"})  # a config.json written before the fields existed
    assert old.bert_pooling == "cls" and old.intent_state is False
    new = ModelConfig()
    assert new.bert_pooling == "mean" and new.intent_state is True
    assert model_config_of(new) == new


def test_mean_pooling_is_the_masked_token_mean(tiny_bert):
    tok, bert, _ = tiny_bert
    pairs = [("have you seen alien", "yes"), ("", "hi")]
    got = encode_pairs(pairs, tok, bert, batch_size=2, max_length=32, pooling="mean")
    for i, (y, x) in enumerate(pairs):
        enc = tok([y], [x], truncation="longest_first", max_length=32, return_tensors="pt")
        with torch.no_grad():
            h = bert(**enc).last_hidden_state[0]
        assert torch.allclose(got[i], h.mean(0), atol=1e-5)  # one pair alone: no padding
    cls = encode_pairs(pairs, tok, bert, batch_size=2, max_length=32)
    assert not torch.allclose(cls, got)
    assert model_fingerprint(bert, 32) != model_fingerprint(bert, 32, "mean")


def test_examples_and_batches_carry_the_state(tiny_kg, tiny_data):
    from crwalker.candidates import INTENT_NAMES, CandidateSets
    from crwalker.data import build_examples, collate, load_dialogues

    cands = CandidateSets(tiny_kg)
    dlg = load_dialogues(tiny_data / "redial" / "train.jsonl")
    exs = build_examples(tiny_data / "labels" / "train.jsonl", dlg, cands, history=3)
    seen: dict[str, list[str]] = {}
    for ex in sorted(exs, key=lambda e: (e.conv_id, e.turn_idx)):
        turns = dlg[ex.conv_id]["turns"]
        n_sys = sum(t["role"] == "recommender" for t in turns[: ex.turn_idx])
        want = dialogue_state(n_sys, ex.turn_idx, seen.get(ex.conv_id, []), ex.pairs[-1][1], len(ex.context))
        assert ex.state == want
        seen.setdefault(ex.conv_id, []).append(INTENT_NAMES[ex.intent])
    assert any(sum(ex.state[2:5]) > 0 for ex in exs)  # later turns count earlier intents
    batch = collate(exs, torch.zeros(100, 8), cands, 0, torch.Generator(), targets=False)
    assert batch.state.shape == (len(exs), STATE_DIM) and torch.equal(batch.state[0], torch.tensor(exs[0].state))
