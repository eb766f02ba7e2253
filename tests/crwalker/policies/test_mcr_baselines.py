"""Baseline policies (Abs Greedy, Max Entropy, EAR, CRM, SCPR) on the toy fixture."""

from __future__ import annotations

import numpy as np
import pytest

from crwalker.policies.baselines import (
    AbsGreedy,
    EARPolicy,
    MaxEntropy,
    SCPRPolicy,
    binary_entropy,
    ear_state,
    run_sessions,
    top_items,
    train_ear,
    train_scpr,
)
from crwalker.policies.env import MCREnv
from crwalker.policies.fm import FM


@pytest.fixture
def fm(toy):
    rng = np.random.default_rng(0)
    return FM(rng.normal(size=(3, 4)), rng.normal(size=(6, 4)), rng.normal(size=(4, 4)))


def test_binary_entropy_values():
    h = binary_entropy(np.array([0, 2, 4, 1]), 4)
    assert h[0] == 0 and h[2] == 0 and h[1] == pytest.approx(np.log(2))
    assert h[3] == pytest.approx(-(0.25 * np.log(0.25) + 0.75 * np.log(0.75)))


def test_top_items_are_fm_ranked_candidates(toy, fm):
    env = MCREnv(toy)
    st = env.reset(0, 3, session_id=0)
    cand = np.flatnonzero(st.cand_items)
    got = top_items(fm, env, st, 2)
    s = fm.item_scores(0, st.accepted, cand)
    assert got == cand[np.argsort(-s)][:2].tolist()


def test_abs_greedy_only_recommends(toy, fm):
    env = MCREnv(toy, topk=1)
    res = run_sessions(env, AbsGreedy(fm, topk=1), [(0, 3)], progress=False)
    assert res[0].n_asks == 0 and res[0].success  # candidates shrink until the target is recommended


def test_max_entropy_asks_max_entropy_attribute(toy, fm):
    env = MCREnv(toy, topk=1)
    st = env.reset(0, 3, session_id=0)
    pol = MaxEntropy(fm, topk=1)
    pol.begin(env, st, 0)
    pol.rng = type("R", (), {"random": staticmethod(lambda: 1.0)})()  # never take the random recommend branch
    counts = env.attr_counts()
    n = int(st.cand_items.sum())
    mask = env.cand_attr_mask(counts)
    kind, p = pol.act(env, st)
    assert kind == "ask" and mask[p]
    assert binary_entropy(counts, n)[p] == pytest.approx(binary_entropy(counts, n)[mask].max())


def test_run_sessions_is_deterministic(toy, fm):
    env = MCREnv(toy, seed=5)
    pairs = toy.splits["train"]
    a = run_sessions(env, MaxEntropy(fm, topk=2, seed=1), pairs, progress=False)
    b = run_sessions(env, MaxEntropy(fm, topk=2, seed=1), pairs, progress=False)
    assert [(r.success, r.turn, r.rank) for r in a] == [(r.success, r.turn, r.rank) for r in b]


@pytest.mark.parametrize("kind", ["ear", "crm"])
def test_ear_crm_state_and_training(toy, fm, kind):
    env = MCREnv(toy, topk=2)
    pol = EARPolicy(fm, toy.n_attrs, kind=kind)
    st = env.reset(0, 3, session_id=0)
    s, m = ear_state(fm, env, st, kind)
    assert s.shape == ((4,) if kind == "crm" else (4 + 4 + 15 + 8,)) and m.shape == (5,) and m[-1]
    stats = train_ear(pol, env, toy.splits["train"], pretrain_episodes=3, rl_episodes=3)
    assert stats["rl_episodes"] == 3
    res = run_sessions(env, pol, toy.splits["test"], progress=False)
    assert len(res) == 3


def test_scpr_path_reasoning_and_training(toy, fm):
    env = MCREnv(toy, topk=2)
    pol = SCPRPolicy(fm)
    st = env.reset(0, 3, session_id=0)
    items = np.flatnonzero(st.cand_items)
    sig = 1 / (1 + np.exp(-fm.item_scores(0, st.accepted, items)))
    m = toy.item_attr_matrix()
    score = {p: sig[m[items, p]].sum() for p in range(4) if p not in st.accepted and m[items, p].any()}
    assert pol.best_attr(env, st) == max(score, key=score.get)
    train_scpr(pol, env, toy.splits["train"], episodes=4, batch_size=4)
    assert len(run_sessions(env, pol, toy.splits["test"], progress=False)) == 3
