import dataclasses

import numpy as np
import pytest
import torch

from crwalker.candidates import INTENT_INDEX, CandidateSets
from crwalker.config import ModelConfig
from crwalker.data import ROOT, build_examples, collate, exchange_pairs, load_dialogues
from crwalker.features import attach_features
from crwalker.model import UserPortrait
from crwalker.walker import CRWalker, WalkerCell
from kg_build.acts import DialogAct


@pytest.fixture
def setup(tiny_data, tiny_kg, tiny_bert, tmp_path):
    cands = CandidateSets(tiny_kg)
    dlg = load_dialogues(tiny_data / "redial" / "train.jsonl")
    exs = build_examples(tiny_data / "labels" / "train.jsonl", dlg, cands, history=3)
    tok, bert, _ = tiny_bert
    feats, stats = attach_features(exs, tmp_path / "cache", "tiny", 64, encoder=(tok, bert), log=lambda *_: None)
    return cands, exs, feats, stats


def test_table1_candidates(tiny_kg):
    c = CandidateSets(tiny_kg)
    # mentioned Action (12) and The Terminator (4): attributes of the Terminator are Arnold, Cameron, Action, 1980s
    assert c.hop1("recommend", [12, 4]) == [9, 10, 12, 15]
    assert c.hop1("query", []) == [0, 1, 2, 3]
    assert c.hop1("chat", [4, 0]) == [4]
    assert c.hop2("query", 2) == [12, 13, 14]  # genres
    assert c.hop2("chat", 10) == [4, 5, 7]  # Cameron's movies, no class node
    assert c.hop2("recommend", 12) is None


def test_exchange_pairs_window():
    turns = [
        {"role": "recommender", "text": "a"},
        {"role": "seeker", "text": "b"},
        {"role": "recommender", "text": "c"},
        {"role": "seeker", "text": "d"},
        {"role": "recommender", "text": "e"},
    ]
    assert exchange_pairs(turns, 4, 3) == [("a", "b"), ("c", "d")]
    assert exchange_pairs(turns, 4, 1) == [("c", "d")]
    assert exchange_pairs(turns, 0, 3) == [("", "")]
    assert exchange_pairs(turns, 3, 3) == [("a", "b"), ("c", "")]


def test_examples_gold_is_restricted_to_legal_candidates(setup):
    _, exs, _, stats = setup
    assert len(exs) == 7 and stats["encoded"] == stats["unique"] > 0
    first = exs[0]  # c1 turn 1: recommend, context Action + Arnold
    assert first.hop1_candidates == [9, 12] and first.hop1_gold == [12, 9]
    assert first.hop2_gold == {12: [4], 9: [4]} and first.gold_movies == [4]
    sb = [e for e in exs if e.conv_id.endswith("c2") and e.turn_idx == 3][0]  # Superbad at hop 1 -> root child
    assert sb.hop2_gold == {ROOT: [8]}


def test_user_portrait_is_attention_average():
    torch.manual_seed(0)
    port = UserPortrait(4, 3)
    H = torch.randn(6, 4)
    ids = torch.tensor([[1, 2], [3, 0]])
    mask = torch.tensor([[True, True], [False, False]])
    p = port(H, ids, mask)
    beta = port.w(torch.tanh(port.W(H[[1, 2]]))).squeeze(-1)
    alpha = torch.softmax(beta, 0)
    assert torch.allclose(p[0], alpha[0] * H[1] + alpha[1] * H[2], atol=1e-6)
    assert torch.equal(p[1], torch.zeros(4))  # nothing mentioned -> zero portrait


def test_score_sums_contexts_over_parents():
    H = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    ctx = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    # slot 0 = entity 2 reached from both parents; slot 1 = entity 0 from parent 1 only
    logit = WalkerCell.score_logits(H, ctx, torch.tensor([2, 0]), torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1]))
    assert logit.tolist() == [5.0, 0.0]


def test_forward_backward_and_learning(setup, tiny_kg):
    cands, exs, feats, _ = setup
    torch.manual_seed(0)
    cfg = ModelConfig(dim=16, attn_hidden=8, intent_hidden=8, dropout=0.0, neg_ratio=2)
    model = CRWalker(cfg, tiny_kg, feats.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    batch = collate(exs, feats, cands, cfg.neg_ratio, gen)
    assert batch.hop1_entity.numel() > 0 and batch.hop2_entity.numel() > 0
    first = model(batch).loss.item()
    for _ in range(60):
        opt.zero_grad()
        out = model(collate(exs, feats, cands, cfg.neg_ratio, gen))
        out.loss.backward()
        opt.step()
    assert out.loss.item() < first * 0.5
    assert all(p.grad is not None for n, p in model.named_parameters() if not n.startswith("hop2.") or True)


def test_predict_outputs_tree_and_full_ranking(setup, tiny_kg):
    cands, exs, feats, _ = setup
    torch.manual_seed(0)
    model = CRWalker(ModelConfig(dim=16, attn_hidden=8, intent_hidden=8), tiny_kg, feats.shape[1]).eval()
    batch = collate(exs, feats, cands, 0, torch.Generator())
    preds = model.predict(batch, cands, width=2, threshold=0.0)
    assert len(preds) == len(exs)
    for ex, pr in zip(exs, preds, strict=True):
        assert pr.intent in INTENT_INDEX and abs(sum(pr.intent_probs) - 1) < 1e-5
        assert pr.movie_ids.tolist() == tiny_kg.movie_ids.tolist() and pr.movie_scores.shape == (5,)
        assert pr.act.width <= 2
        assert DialogAct.parse(pr.act.linearize()).intent == pr.intent
        legal1 = set(cands.hop1(pr.intent, ex.context))
        if pr.intent != "recommend" or legal1:
            assert set(pr.act.hop1) <= legal1 | set(tiny_kg.movie_ids.tolist())
    # forced (e.g. gold) intents: the tree follows them, the intent distribution and the ranking stay the model's
    forced = [(INTENT_INDEX[p.intent] + 1) % 3 for p in preds]
    gi = model.predict(batch, cands, width=2, threshold=0.0, intents=forced)
    for f, g, pr in zip(forced, gi, preds, strict=True):
        assert INTENT_INDEX[g.intent] == f and DialogAct.parse(g.act.linearize()).intent == g.intent
        assert g.intent_probs == pr.intent_probs and np.array_equal(g.movie_scores, pr.movie_scores)
    # tau = 1 selects nothing: the tree stops (recommend still ranks all movies)
    none = model.predict(batch, cands, width=5, threshold=1.0)
    assert all(p.act.nodes == () for p in none)
    assert np.all(np.isfinite(none[0].movie_scores))


@pytest.mark.parametrize("variant", ["depth1", "portrait"])
def test_variants_train(setup, tiny_kg, variant):
    cands, exs, feats, _ = setup
    cfg = dataclasses.replace(ModelConfig(dim=8, attn_hidden=4, intent_hidden=4), variant=variant)
    model = CRWalker(cfg, tiny_kg, feats.shape[1])
    batch = collate(exs, feats, cands, 2, torch.Generator().manual_seed(1), variant=variant)
    assert batch.hop1_entity.numel() == 0 and set(batch.hop2_parent.tolist()) == {ROOT}
    model(batch).loss.backward()
    preds = model.predict(batch, cands)
    assert all(p.movie_scores.shape == (5,) for p in preds)


@pytest.mark.parametrize("bases", [0, 2])
def test_target_subgraph_rgcn_is_exact(tiny_kg, bases):
    from crwalker.model import EntityEncoder

    torch.manual_seed(0)
    enc = EntityEncoder(len(tiny_kg), tiny_kg.num_relations, 8, layers=1, bases=bases)
    ei, et = tiny_kg.tensors()
    full = enc(ei, et)
    targets = torch.tensor([0, 4, 7, 12, 15])
    part = enc(ei, et, targets)
    assert torch.allclose(part[targets], full[targets], atol=1e-6)
    assert torch.count_nonzero(part[[1, 2, 3]]) == 0


def test_hop2_candidate_cap_keeps_gold(setup):
    cands, exs, feats, _ = setup
    query = [e for e in exs if e.intent == INTENT_INDEX["query"] and e.conv_id.endswith("c1")]
    batch = collate(query, feats, cands, 0, torch.Generator().manual_seed(0), max_hop2=2)
    # gold children Horror, Comedy of class Genre are kept; the cap drops Action
    assert sorted(batch.hop2_entity.tolist()) == [13, 14] and batch.hop2_label.tolist() == [1.0, 1.0]


def test_structured_examples_respect_leakage_rule(tiny_kg, tmp_path):
    from crwalker.data import structured_examples
    from data_scripts.utils.io import write_jsonl

    def conv(cid, split, text_split):
        turns = [
            {"idx": 0, "role": "seeker", "movie_ids": [1001], "mentions": [], "entity_ids": []},
            {"idx": 1, "role": "recommender", "movie_ids": [1001, 1002], "mentions": [], "entity_ids": []},
            {"idx": 2, "role": "recommender", "movie_ids": [9999], "mentions": [], "entity_ids": []},
        ]
        return {"conv_id": cid, "split": split, "text_split": text_split, "turns": turns, "movie_sent": []}

    path = tmp_path / "structured_train.jsonl"
    write_jsonl(path, [conv("a", "train", "train"), conv("b", "train", "valid"), conv("c", "test", None)])
    exs = structured_examples(path, tiny_kg, CandidateSets(tiny_kg))
    assert len(exs) == 1  # b (text valid) and c (official test) are never used; unaligned 9999 is dropped
    ex = exs[0]
    assert ex.conv_id == "a" and ex.context == [4] and ex.hop2_gold == {ROOT: [5]} and ex.hop1_candidates == []
    assert ex.source == "structured" and ex.pairs == [("", "")]


def test_batch_order_deterministic_and_ddp_balanced():
    from crwalker.data import batch_order

    a = batch_order(10, 3, seed=1, epoch=2)
    assert a == batch_order(10, 3, seed=1, epoch=2) and a != batch_order(10, 3, seed=1, epoch=3)
    assert sorted(i for b in a for i in b) == list(range(10))
    r0, r1 = batch_order(10, 3, 1, 2, rank=0, world=2), batch_order(10, 3, 1, 2, rank=1, world=2)
    assert len(r0) == len(r1) == 2 and not {i for b in r0 for i in b} & {i for b in r1 for i in b}


def test_leakage_guard_trips_on_gold_text():
    from crwalker.data import assert_no_leak

    turns = [{"role": "seeker", "text": "any horror?"}, {"role": "recommender", "text": "Try Alien (1979)"}]
    assert_no_leak(exchange_pairs(turns, 1, 3), turns, 1)  # the real input is fine
    with pytest.raises(AssertionError, match="leak"):
        assert_no_leak([("Try Alien (1979)", "any horror?")], turns, 1)
