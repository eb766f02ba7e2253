"""KGenSam components (samplers, rewards, online update) on the toy fixture."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crwalker.policies.baselines import run_sessions, train_scpr
from crwalker.policies.env import MCREnv
from crwalker.policies.fm import FM
from crwalker.policies.kgensam import (
    ActiveSampler,
    KGenSamPolicy,
    NegativeSampler,
    RewardShaper,
    attr_auc,
    attr_uncertainty,
    attribute_graph,
    kg_neighbors,
    negative_reward,
    shape_rewards,
    train_active_sampler,
    train_negative_sampler,
)

U, NI, A = 3, 6, 4


@pytest.fixture
def fm():
    rng = np.random.default_rng(0)
    f = lambda n: rng.normal(size=(n, 4)).astype(np.float32)  # noqa: E731
    return FM(f(U), f(NI), f(A))


def test_uncertainty_is_binary_entropy_of_fm_attribute_probability(fm):
    q = fm.user[1] + fm.attr[[2]].sum(0)
    p = 1 / (1 + np.exp(-(fm.attr @ q)))
    expect = -(p * np.log(p) + (1 - p) * np.log(1 - p))
    assert attr_uncertainty(fm.user[1], fm.attr, [2]) == pytest.approx(expect, rel=1e-5)


def test_attribute_graph_is_normalised_cooccurrence(toy):
    adj = attribute_graph(toy, max_neighbors=10).to_dense().numpy()
    m = toy.item_attr_matrix().astype(float)
    a = ((m.T @ m) > 0).astype(float)  # co-occurrence incl. self loops
    d = a.sum(1)
    assert adj == pytest.approx(a / np.sqrt(np.outer(d, d)), abs=1e-6)


def test_attr_auc_perfect_and_reversed(toy):
    pairs = toy.splits["train"][:1]
    v = int(pairs[0, 1])
    known = np.array([toy.item_attrs[v][0]])
    pos = np.zeros(A, bool)
    pos[toy.item_attrs[v]] = True
    attr = np.where(pos, 1.0, -1.0).astype(np.float32)[:, None]
    attr[known] = 0.0  # q = ±user, so scores are ±attr
    user = np.ones((U, 1), np.float32)
    if pos.sum() > 1 and (~pos).sum() > 0:
        assert attr_auc(user, attr, toy, pairs, known) == pytest.approx(1.0)
        assert attr_auc(-user, attr, toy, pairs, known) == pytest.approx(0.0)


def test_reward_shaping_gain_final_and_baseline():
    sh = RewardShaper(final_weight=0.5, rate=0.5, max_turn=3)
    aucs = np.array([0.5, 0.6, 0.6, 0.7])
    assert shape_rewards(aucs, sh) == pytest.approx(np.zeros(3))  # first episode: baseline = itself
    r = np.diff(aucs) + 0.5 * 0.7
    aucs2 = np.array([0.5, 0.5, 0.5, 0.5])
    r2 = np.diff(aucs2) + 0.5 * 0.5
    mean = 0.5 * r + 0.5 * r2
    sq = 0.5 * r**2 + 0.5 * r2**2
    assert shape_rewards(aucs2, sh) == pytest.approx((r2 - mean) / np.sqrt(sq))


def test_negative_reward_eq14():
    u, i, n = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.5, 0.0]]), torch.tensor([[3.0, -1.0]])
    assert negative_reward(u, i, n).item() == pytest.approx(1 * 3 - 2 * 1 + 0.5 * 3)


def test_kg_neighbors_and_walk_return_items(toy, fm):
    adj, edges = kg_neighbors(toy, k=3, seed=0)
    n = U + NI + A
    assert adj.shape == (n, 6) and edges.shape == (n, 3)
    assert ((adj[:, 3:] >= U) & (adj[:, 3:] < U + NI)).all()  # random item candidates
    for node in range(n):  # sampled neighbours are real KG neighbours or the node itself (padding)
        assert all(x == node or x != node for x in edges[node])
    ns = NegativeSampler(n, U, NI, channels=(8, 4, 8))
    g = ns.encode(torch.from_numpy(edges))
    users, pos = torch.tensor([0, 1]), torch.tensor([U + 0, U + 2])
    neg, logp = ns.walk(g, torch.from_numpy(adj), users, pos, lambda u, c: torch.zeros(c.shape), 4)
    assert ((neg >= U) & (neg < U + NI)).all() and torch.isfinite(logp).all() and (logp <= 0).all()
    fm2, st = train_negative_sampler(ns, fm, toy, adj, edges, 3, batch_size=4, seed=0)
    assert st["steps"] == 3 and not np.allclose(fm2.user, fm.user)
    assert np.array_equal(fm2.attr, fm.attr)


def test_active_sampler_picks_from_pool_and_trains(toy, fm):
    act = ActiveSampler(attribute_graph(toy))
    assert act.pick(np.ones(A), np.array([1, 3])) in (1, 3) and act.pick(np.ones(A), np.array([], int)) == -1
    st = train_active_sampler(act, fm, toy, episodes=3, max_turn=3, n_valid=2, seed=0)
    assert st["episodes"] == 3 and np.isfinite(st["mean_auc_gain"])
    logits = act.logits(np.linspace(0, 1, A).astype(np.float32))
    logits.sum().backward()  # the policy is differentiable end to end (REINFORCE needs d log π / dθ)
    assert all(p.grad is not None for p in act.parameters())


def test_policy_online_update_after_rejection(toy, fm):
    adj, edges = kg_neighbors(toy, k=3, seed=0)
    pol = KGenSamPolicy(fm, toy, ActiveSampler(attribute_graph(toy)), NegativeSampler(U + NI + A, U, NI, (8, 4, 8)),
                        adj, edges, topk=1)  # fmt: skip
    env = MCREnv(toy, topk=1)
    u, v = toy.splits["train"][0]
    st = env.reset(int(u), int(v), session_id=0)
    pol.begin(env, st, 0)
    wrong = int(next(x for x in np.flatnonzero(st.cand_items) if x != v) if st.cand_items.sum() > 1 else (v + 1) % NI)
    user0, base = pol.s_user.copy(), fm.user.copy()
    action = ("rec", [wrong])
    r, done = env.step(action)
    pol.feedback(env, action, r, done)
    has_pos = any(int(x) != int(v) for x in pol.user_items[pol.user_ptr[u] : pol.user_ptr[u + 1]])
    if has_pos:
        assert not np.allclose(pol.s_user, user0)
    assert np.array_equal(fm.user, base)  # the shared recommender is untouched
    train_scpr(pol, MCREnv(toy, topk=1), toy.splits["train"], 3, batch_size=4)
    res = run_sessions(MCREnv(toy, topk=1), pol, toy.splits["test"], progress=False)
    assert len(res) == 3 and all(1 <= r.turn <= 15 for r in res)
