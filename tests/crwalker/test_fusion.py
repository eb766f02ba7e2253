import dataclasses
import json

import numpy as np
import pytest
import torch

from crwalker.candidates import CandidateSets
from crwalker.config import EvalConfig, ModelConfig, TrainConfig
from crwalker.data import build_examples, collate, load_dialogues
from crwalker.evaluate import evaluate
from crwalker.features import attach_features
from crwalker.fusion import MoviePrior, fusion_active, movie_statistics
from crwalker.metrics import rank_candidates
from crwalker.train import train
from crwalker.tune import TuneConfig, gold_ranks, tune
from crwalker.walker import CRWalker

QUIET = lambda *_: None  # noqa: E731


def test_movie_statistics_hand_computed():
    movies = np.array([4, 5, 6, 7])
    dialogues = [[[4], [5], [4, 6]], [[4], [], [6]]]
    pop, idx, val = movie_statistics(dialogues, movies)
    assert pop.tolist() == [3.0, 1.0, 2.0, 0.0]
    got = {(int(a), int(b)): round(float(v), 4) for a, b, v in zip(idx[0], idx[1], val, strict=True)}
    # row 4 (col 0): 4->5 once, 4->6 twice; row 5 (col 1): 5->4, 5->6 once each
    assert got == {(0, 1): 0.3333, (0, 2): 0.6667, (1, 0): 0.5, (1, 2): 0.5}


def test_prior_terms_and_bonus(tiny_kg):
    cands = CandidateSets(tiny_kg)
    prior = MoviePrior(len(cands.movie_ids))
    pop, idx, val = movie_statistics([[[4], [6]], [[7], [8]]], cands.movie_ids)
    prior.set_statistics(pop, idx, val)
    # context: Action (12) and The Terminator (4)
    t = prior.terms([12, 4], cands.movie_ids, cands.is_movie, cands.neighbors)
    assert t.shape == (5, 5)
    assert np.allclose(t[0], np.log1p([1, 0, 1, 1, 1]))
    assert t[1].tolist() == [0.0, 0.0, 1.0, 0.0, 0.0]  # P(Alien | Terminator) = 1
    action_movies = {n for n in cands.neighbors(12) if cands.is_movie[n]}
    assert t[2].tolist() == [np.log1p(1.0) if m in action_movies else 0.0 for m in cands.movie_ids]
    assert t[3].tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert t[4].tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]  # Terminator is the last (only) movie mentioned
    off = ModelConfig()
    assert not fusion_active(off)
    assert prior.bonus(off, [12, 4], cands.movie_ids, cands.is_movie, cands.neighbors).tolist() == [0.0] * 5
    on = dataclasses.replace(off, fusion_mentioned=2.0, fusion_cooccurrence=1.0, fusion_cooc_scale=3.0)
    b = prior.bonus(on, [12, 4], cands.movie_ids, cands.is_movie, cands.neighbors)
    assert np.allclose(b, [2.0, 0.0, np.log1p(3.0), 0.0, 0.0])


def test_recency_term_follows_the_mention_order(tiny_kg):
    cands = CandidateSets(tiny_kg)
    prior = MoviePrior(len(cands.movie_ids))
    ids = [int(m) for m in cands.movie_ids]
    # three movies mentioned in the order ids[2], genre 12, ids[0], ids[3]: recency 1/3, 1/2, 1 (the genre is skipped)
    t = prior.terms([ids[2], 12, ids[0], ids[3]], cands.movie_ids, cands.is_movie, cands.neighbors)
    assert np.allclose(t[4], [1 / 2, 0.0, 1 / 3, 1.0, 0.0])
    on = dataclasses.replace(ModelConfig(), fusion_recency=6.0)
    assert fusion_active(on)
    b = prior.bonus(on, [ids[2], 12, ids[0], ids[3]], cands.movie_ids, cands.is_movie, cands.neighbors)
    assert np.allclose(b, [3.0, 0.0, 2.0, 6.0, 0.0])


def test_select_value_sums_metrics():
    from crwalker.tune import select_value

    m = {"R@1": 0.05, "R@10": 0.25, "R@50": 0.5, "coverage": 0.04}
    assert select_value(m, "R@10") == 0.25
    assert abs(select_value(m, "R@1+R@10+R@50") - 0.8) < 1e-12
    with pytest.raises(ValueError, match="unknown"):
        select_value(m, "R@5")


def test_gold_ranks_match_rank_candidates():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=30).astype(np.float64)  # many ties
    ids = np.arange(100, 130)
    ranked = rank_candidates(scores, ids).tolist()
    gold = [0, 5, 17, 29]
    assert gold_ranks(scores, gold).tolist() == [ranked.index(100 + g) for g in gold]


@pytest.fixture
def walker_setup(tiny_data, tiny_kg, tiny_bert, tmp_path):
    cands = CandidateSets(tiny_kg)
    dlg = load_dialogues(tiny_data / "redial" / "train.jsonl")
    exs = build_examples(tiny_data / "labels" / "train.jsonl", dlg, cands, history=3)
    tok, bert, _ = tiny_bert
    feats, _ = attach_features(exs, tmp_path / "cache", "tiny", 64, encoder=(tok, bert), log=QUIET, intent_pairs=True)
    torch.manual_seed(0)
    model = CRWalker(ModelConfig(dim=8, attn_hidden=4, intent_hidden=4), tiny_kg, feats.shape[1]).eval()
    return cands, exs, feats, model


def test_old_state_dict_loads_and_statistics_round_trip(walker_setup, tiny_kg):
    cands, _, feats, model = walker_setup
    old = {k: v for k, v in model.state_dict().items() if not k.startswith("prior.")}
    fresh = CRWalker(model.cfg, tiny_kg, feats.shape[1])
    fresh.load_state_dict(old, strict=True)  # a checkpoint from before crwalker.fusion
    assert not fresh.prior.has_statistics
    model.prior.set_statistics(*movie_statistics([[[4], [6]]], cands.movie_ids))
    again = CRWalker(model.cfg, tiny_kg, feats.shape[1])
    again.load_state_dict(model.state_dict(), strict=True)
    assert again.prior.has_statistics and again.prior.cooc_index.tolist() == [[0], [2]]
    # the engine bundle loads every tensor as float32 (crwalker.engine.engine.build_walker)
    as_float = CRWalker(model.cfg, tiny_kg, feats.shape[1])
    as_float.load_state_dict({k: v.float() for k, v in model.state_dict().items()}, strict=True)
    assert as_float.prior.cooc_index.dtype == torch.long and as_float.prior.cooc_index.tolist() == [[0], [2]]
    assert not [k for k in fresh.state_dict() if k.startswith("prior.")]  # no statistics: nothing saved


def test_fusion_and_intent_prior_in_predict(walker_setup):
    cands, exs, feats, model = walker_setup
    batch = collate(exs, feats, cands, 0, torch.Generator(), targets=False)
    base = model.predict(batch, cands)
    model.prior.set_statistics(*movie_statistics([[[4], [6]]], cands.movie_ids))
    model.cfg = dataclasses.replace(model.cfg, fusion_mentioned=10.0, intent_log_prior=[0.0, 0.0, 100.0])
    fused = model.predict(batch, cands)
    for ex, b, f in zip(exs, base, fused, strict=True):
        assert f.intent == "chat"  # the class-prior correction is applied in eval mode
        z_b = np.log(b.movie_scores) - np.log1p(-b.movie_scores)
        z_f = np.log(f.movie_scores) - np.log1p(-f.movie_scores)
        ment = np.isin(cands.movie_ids, ex.context)
        assert np.allclose(z_f - z_b, 10.0 * ment, atol=1e-6)
    model.train()  # training logits carry no correction
    u, _, logits = model.encode(batch, model.entity_embeddings())
    assert torch.allclose(logits, model.intent_selector(model.intent_input(u, batch.state, batch.utt_x)))
    model.eval()
    u, _, logits = model.encode(batch, model.entity_embeddings())
    assert torch.allclose(
        logits - torch.tensor([0.0, 0.0, 100.0]),
        model.intent_selector(model.intent_input(u, batch.state, batch.utt_x)),
        atol=1e-4,
    )


def test_tune_then_evaluate(tiny_data, tiny_bert, tmp_path, tiny_paths):
    tok, bert, _ = tiny_bert
    common = tiny_paths
    tc = TrainConfig(name="w", runs=str(tmp_path / "runs"), bert="tiny", dim=8, attn_hidden=4, intent_hidden=4)
    train(dataclasses.replace(tc, batch_size=4, epochs=1, **common), encoder=(tok, bert), log=QUIET)
    run = tmp_path / "runs" / "w"
    with pytest.raises(ValueError, match="test split"):
        tune(TuneConfig(run=str(run), split="test", **common), encoder=(tok, bert), log=QUIET)
    rec = tune(
        TuneConfig(
            run=str(run),
            use_structured=False,
            grid_popularity=[0.0],
            grid_cooccurrence=[0.0],
            grid_kg=[0.0],
            grid_mentioned=[5.0],
            grid_recency=[0.0],
            **common,
        ),
        encoder=(tok, bert),
        log=QUIET,
    )
    assert rec["chosen"]["fusion_mentioned"] == 5.0 and rec["split"] == "valid"
    assert json.loads((run / "tuned.json").read_text())["config"]["fusion_mentioned"] == 5.0
    out = tmp_path / "res.json"
    res = evaluate(
        EvalConfig(run=str(run), checkpoint="tuned", out=str(out), plot="", widths=[1], **common),
        encoder=(tok, bert),
        log=QUIET,
    )
    assert {"cr_walker", "cr_walker_no_fusion", "fusion_prior_only", "popularity"} <= set(res["rows"])
    assert res["tuning"]["chosen"]["fusion_mentioned"] == 5.0


def test_refit_trains_on_train_and_valid_and_copies_the_tuning(tiny_data, tiny_bert, tmp_path, tiny_paths):
    """`train --refit` has no validation (best = last epoch); `tune --from-tuned` copies the chosen values."""
    from crwalker.candidates import CandidateSets
    from crwalker.checkpoint import read_checkpoint_doc
    from crwalker.data import build_examples, load_dialogues
    from kg_build.schema import KnowledgeGraph

    tok, bert, _ = tiny_bert
    common = tiny_paths
    tc = TrainConfig(runs=str(tmp_path / "runs"), bert="tiny", dim=8, attn_hidden=4, intent_hidden=4, batch_size=4)
    train(dataclasses.replace(tc, name="sel", epochs=1, **common), encoder=(tok, bert), log=QUIET)
    summary = train(
        dataclasses.replace(tc, name="refit", epochs=2, refit=True, **common), encoder=(tok, bert), log=QUIET
    )
    assert summary["epochs_run"] == 2 and summary["best_epoch"] == 2
    hist = read_checkpoint_doc(tmp_path / "runs/refit/best.safetensors")["train_state"]["history"]
    assert [h["epoch"] for h in hist] == [1, 2] and not any(k.startswith("valid_") for k in hist[-1])
    # steps per epoch: train + valid examples in batches of 4
    cands = CandidateSets(KnowledgeGraph.load(tiny_data / "kg"))
    n = 0
    for split in ("train", "valid"):
        dlg = load_dialogues(tiny_data / "redial" / f"{split}.jsonl")
        n += len(build_examples(tiny_data / "labels" / f"{split}.jsonl", dlg, cands, 3))
    assert read_checkpoint_doc(tmp_path / "runs/refit/last.safetensors")["train_state"]["step"] == 2 * -(-n // 4)
    grids = {"grid_popularity": [0.5], "grid_cooccurrence": [0.0], "grid_kg": [2.0], "grid_mentioned": [5.0]}
    grids["grid_recency"] = [8.0]
    src = tune(TuneConfig(run=str(tmp_path / "runs/sel"), use_structured=False, **grids, **common),
               encoder=(tok, bert), log=QUIET)  # fmt: skip
    rec = tune(
        TuneConfig(run=str(tmp_path / "runs/refit"), from_tuned=str(tmp_path / "runs/sel/tuned.safetensors"), **common),
        log=QUIET,
    )
    assert rec["chosen"] == src["chosen"] and rec["split"] is None
    doc = read_checkpoint_doc(tmp_path / "runs/refit/tuned.safetensors")
    assert doc["config"]["fusion_kg"] == 2.0 and doc["config"]["intent_log_prior"] == src["chosen"]["intent_log_prior"]
    assert doc["train_state"]["tuning"]["config"]["use_structured"] is False  # taken from the source tuning
    res = evaluate(
        EvalConfig(run=str(tmp_path / "runs/refit"), checkpoint="tuned", out=str(tmp_path / "r.json"), plot="",
                   widths=[1], **common),
        encoder=(tok, bert),
        log=QUIET,
    )  # fmt: skip
    assert res["rows"]["cr_walker"] != res["rows"]["cr_walker_no_fusion"]


def test_intent_reads_the_user_utterance_alone(walker_setup, tiny_kg):
    """intent_utterance: the batch carries the vector of ("", x_t) and the Eq. 4 MLP reads [u; s_t; x_t]."""
    from crwalker.config import model_config_of
    from crwalker.data import collate
    from crwalker.features import pair_key

    cands, exs, feats, model = walker_setup
    assert model.cfg.intent_utterance
    for ex in exs:
        assert ex.intent_pair == ("", ex.pairs[-1][1]) and ex.intent_row >= 0
        # a pair whose system side is empty (the first turn) is its own intent pair: same cached row
        assert (ex.intent_row == ex.feat_rows[-1]) == (ex.pairs[-1][0] == "")
    assert any(ex.pairs[-1][0] for ex in exs)
    ex = exs[0]
    batch = collate(exs[:3], feats, cands, 0, torch.Generator(), targets=False)
    assert torch.equal(batch.utt_x, feats[[e.intent_row for e in exs[:3]]])
    assert model.intent_selector.net[0].in_features == 8 + 9 + feats.shape[1]
    u = torch.zeros(3, 8)
    x = model.intent_input(u, batch.state, batch.utt_x)
    assert torch.equal(x[:, 8 + 9 :], batch.utt_x)
    assert torch.equal(model.intent_input(u, batch.state)[:, 8 + 9 :], torch.zeros(3, feats.shape[1]))
    # the same pair text gives the same cache key (the engine encodes ("", x_t) per turn)
    assert pair_key(ex.intent_pair) == pair_key(("", ex.pairs[-1][1]))
    # checkpoints from before the option load as walkers without it
    old = model_config_of({"dim": 8, "attn_hidden": 4, "intent_hidden": 4, "intent_state": True})
    assert not old.intent_utterance
    assert CRWalker(old, tiny_kg, feats.shape[1]).intent_selector.net[0].in_features == 8 + 9
