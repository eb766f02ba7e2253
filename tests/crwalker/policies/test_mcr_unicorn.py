"""UNICORN components (Eq. 4-13, 17-19) on the toy fixture."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crwalker.policies.baselines import run_sessions
from crwalker.policies.env import MCREnv
from crwalker.policies.rl import PrioritizedReplay, Transition, double_dqn_targets, soft_update
from crwalker.policies.unicorn import (
    GraphBatch,
    UnicornPolicy,
    UnicornQNet,
    build_graph,
    preference_scores,
    train_unicorn,
    weighted_entropy,
)

U, NI, A = 3, 6, 4


@pytest.fixture
def emb():
    return np.random.default_rng(0).normal(size=(U + NI + A, 8)).astype(np.float32)


def test_preference_and_weighted_entropy(toy, emb):
    env = MCREnv(toy)
    st = env.reset(0, 3, session_id=0)
    items = np.flatnonzero(st.cand_items)
    acc = [U + NI + p for p in st.accepted]
    w = preference_scores(emb, 0, acc, U + items)
    q = emb[0] + emb[acc].sum(0)
    assert w == pytest.approx(1 / (1 + np.exp(-(emb[U + items] @ q))), rel=1e-5)
    went = weighted_entropy(env, items, w)
    m = toy.item_attr_matrix()
    for p in range(A):
        prob = w[m[items, p]].sum() / w.sum()
        expect = 0.0 if prob == 0 else -prob * np.log2(prob)
        assert went[p] == pytest.approx(expect, abs=1e-6)


def test_dynamic_graph_structure(toy, emb):
    env = MCREnv(toy)
    st = env.reset(0, 3, session_id=0)
    g = build_graph(env, st, emb, U, k_v=2, k_p=2, graph_items=0, graph_attrs=0)
    assert g.nodes[0] == 0  # the user
    items = set(np.flatnonzero(st.cand_items) + U)
    assert items <= set(g.nodes.tolist())
    assert g.n_item_actions == min(2, len(items))
    src, dst = g.edge_index
    # user-item edges carry w_v, item-attribute and user-accepted-attribute edges weight 1
    ui = (src == 0) & np.isin(g.nodes[dst], list(items))
    assert np.all((g.edge_weight[ui] > 0) & (g.edge_weight[ui] < 1))
    assert np.all(g.edge_weight[~ui] == 1.0)
    assert [int(g.nodes[a]) - U - NI for a in g.accepted] == st.accepted


def test_qnet_masks_padding_and_batches(toy, emb):
    env = MCREnv(toy)
    net = UnicornQNet(U + NI + A, 8, 16, init=emb)
    gs = []
    for sid, (u, v) in enumerate(toy.splits["train"]):
        st = env.reset(int(u), int(v), session_id=sid)
        gs.append(build_graph(env, st, emb, U, 2, 2, 0, 0))
    b = GraphBatch.collate(gs)
    q = net(b)
    assert q.shape[0] == len(gs)
    assert torch.isinf(q[~b.action_mask]).all() and torch.isfinite(q[b.action_mask]).all()
    single = net(GraphBatch.collate(gs[:1]))
    assert torch.allclose(single[0, : len(gs[0].actions)], q[0, : len(gs[0].actions)], atol=1e-5)


def test_replay_dqn_helpers():
    mem = PrioritizedReplay(3, seed=0)
    for i in range(5):
        mem.push(Transition(i, 0, 0.0, None, True))
    assert len(mem) == 3 and {t.state for t in mem.data} == {2, 3, 4}
    mem.update(np.array([0, 1, 2]), np.array([0.0, 0.0, 10.0]))
    batch, idx, w = mem.sample(50)
    assert (idx == 2).mean() > 0.9 and w.max() == pytest.approx(1.0)
    y = double_dqn_targets(
        torch.tensor([1.0, 0.5]),
        torch.tensor([False, True]),
        torch.tensor([[1.0, 3.0], [0.0, 0.0]]),
        torch.tensor([[10.0, 20.0], [5.0, 5.0]]),
        torch.tensor([[True, True], [True, True]]),
        0.9,
    )
    assert y.tolist() == pytest.approx([1.0 + 0.9 * 20.0, 0.5])
    a, b = torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)
    with torch.no_grad():
        a.weight.fill_(0.0), b.weight.fill_(1.0)
    soft_update(a, b, 0.01)
    assert float(a.weight.detach()) == pytest.approx(0.01)


def test_prioritized_replay_samples_like_rng_choice():
    """The cumulative-sum sampler draws the same indices as ``rng.choice(p=P(i))`` from the same generator state,
    and the importance weights follow Eq. 19."""
    mem = PrioritizedReplay(64, alpha=0.6, beta=0.4, seed=3)
    for i in range(50):
        mem.push(Transition(i, 0, 0.0, None, True))
    mem.update(np.arange(50), np.random.default_rng(1).exponential(size=50))
    ref = np.random.default_rng(3)
    p = mem.prio[:50] ** 0.6
    p = p / p.sum()
    for _ in range(5):
        _, idx, w = mem.sample(32)
        expect = ref.choice(50, size=32, p=p)
        np.testing.assert_array_equal(idx, expect)
        wr = (50 * p[idx]) ** -0.4
        np.testing.assert_allclose(w, wr / wr.max(), rtol=1e-5)


def test_training_and_inference_run(toy, emb):
    env = MCREnv(toy, topk=2)
    pol = UnicornPolicy(UnicornQNet(U + NI + A, 8, 16, init=emb), U, topk=2, k_v=2, k_p=2, graph_items=0, graph_attrs=0)
    st = train_unicorn(pol, env, toy.splits["train"], episodes=4, batch_size=4)
    assert st["episodes_run"] == 4 and st["updates"] > 0
    res = run_sessions(env, pol, toy.splits["test"], progress=False)
    assert len(res) == 3 and all(1 <= r.turn <= 15 for r in res)


def _reference_q(net: UnicornQNet, gs: list) -> torch.Tensor:
    """Q values computed the original way: PyG gcn_norm + GCNConv on the merged sparse graph."""
    from torch_geometric.nn.conv.gcn_conv import gcn_norm

    offs = np.concatenate(([0], np.cumsum([len(g.nodes) for g in gs])[:-1]))
    ei = np.concatenate([g.edge_index.astype(np.int64) + o for g, o in zip(gs, offs, strict=True)], axis=1)
    ei = torch.from_numpy(np.concatenate([ei, ei[::-1]], axis=1).copy())
    ew = torch.from_numpy(np.concatenate([g.edge_weight for g in gs] * 2))
    nodes = torch.from_numpy(np.concatenate([g.nodes for g in gs]).astype(np.int64))
    ei2, ew2 = gcn_norm(ei, ew, len(nodes), add_self_loops=True)
    h = net.emb(nodes)
    for conv in net.gcn:
        h = torch.relu(conv(h, ei2, ew2))
    out = []
    for g, o in zip(gs, offs, strict=True):
        seq = net.seq(h[torch.from_numpy(g.accepted + o)][None])
        x = torch.relu(net.fc(seq.mean(1)))
        ha = h[torch.from_numpy(g.actions + o)]
        out.append((net.value(x) + net.adv(torch.cat([x.expand(len(ha), -1), ha], -1)).T)[0])
    return out


def test_batched_gcn_matches_pyg_reference(toy, emb):
    env = MCREnv(toy)
    net = UnicornQNet(U + NI + A, 8, 16, init=emb)
    gs = []
    for sid, (u, v) in enumerate(toy.splits["train"]):
        st = env.reset(int(u), int(v), session_id=sid)
        env.step(("ask", int(np.flatnonzero(toy.item_attr_matrix()[v])[-1])))
        gs.append(build_graph(env, st, emb, U, 2, 2, 0, 0))
    with torch.no_grad():
        q = net(GraphBatch.collate(gs))
        ref = _reference_q(net, gs)
    for i, r in enumerate(ref):
        assert torch.allclose(q[i, : len(r)], r, atol=1e-5)


def test_batched_inference_matches_sequential(toy, emb):
    from crwalker.policies.unicorn import run_sessions_batched

    env = MCREnv(toy, topk=2)
    pol = UnicornPolicy(UnicornQNet(U + NI + A, 8, 16, init=emb), U, topk=2, k_v=2, k_p=2, graph_items=0, graph_attrs=0)
    pairs = np.concatenate([toy.splits["test"], toy.splits["train"]])
    seq = run_sessions(env, pol, pairs, progress=False)
    bat = run_sessions_batched(env, pol, pairs, batch=3, progress=False)
    assert [(r.success, r.turn, r.rank, r.n_asks) for r in seq] == [(r.success, r.turn, r.rank, r.n_asks) for r in bat]


def test_sequence_matches_torch_encoder():
    torch.manual_seed(0)
    net = UnicornQNet(U + NI + A, 8, 16)
    x = torch.randn(4, 5, 8)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]], dtype=torch.bool)
    ref = net.seq(x, src_key_padding_mask=~mask)
    # the packed form: the real rows only, with their flat positions in the padded layout
    out = net.sequence(x[mask], torch.from_numpy(np.flatnonzero(mask.numpy())), mask)
    assert torch.allclose(out, ref[mask], atol=1e-5)
    # gradients agree too (training path)
    g1 = torch.autograd.grad(out.square().sum(), list(net.seq.parameters()))
    g2 = torch.autograd.grad(ref[mask].square().sum(), list(net.seq.parameters()))
    for a, b in zip(g1, g2, strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_cached_adjacency_matches_uncached(toy, emb):
    import dataclasses

    env = MCREnv(toy)
    gs = []
    for sid, (u, v) in enumerate(toy.splits["train"]):
        st = env.reset(int(u), int(v), session_id=sid)
        gs.append(build_graph(env, st, emb, U, 2, 2, 0, 0))
    cached = GraphBatch.collate(gs)
    plain = GraphBatch.collate([dataclasses.replace(g, norm_adj=None) for g in gs])
    assert torch.equal(cached.adj, plain.adj) and torch.equal(cached.nodes, plain.nodes)


def test_dqn_gradients_match_pyg_reference(toy, emb):
    """The TD loss gradient of the batched network equals the one of the PyG reference computation."""
    from crwalker.policies.unicorn import dqn_loss

    env = MCREnv(toy)
    torch.manual_seed(0)
    net = UnicornQNet(U + NI + A, 8, 16, init=emb)
    target = UnicornQNet(U + NI + A, 8, 16, init=emb)
    batch = []
    for sid, (u, v) in enumerate(toy.splits["train"]):
        st = env.reset(int(u), int(v), session_id=sid)
        g = build_graph(env, st, emb, U, 2, 2, 0, 0)
        r, done = env.step(("ask", int(np.flatnonzero(toy.item_attr_matrix()[v])[-1])))
        batch.append(
            Transition(g, len(g.actions) - 1, r, None if done else build_graph(env, st, emb, U, 2, 2, 0, 0), done)
        )
    w = np.linspace(0.5, 1.0, len(batch)).astype(np.float32)
    loss, td = dqn_loss(net, target, batch, w, 0.9)
    grads = torch.autograd.grad(loss, list(net.parameters()), allow_unused=True)
    # reference: per-sample Q from PyG, targets from the reference Q of the next states
    q = _reference_q(net, [b.state for b in batch])
    with torch.no_grad():
        nxt = [b.next_state for b in batch]
        qn, qt = _reference_q(net, nxt), _reference_q(target, nxt)
    ys = [b.reward + 0.9 * float(qt[i][int(qn[i].argmax())]) for i, b in enumerate(batch)]
    ref_td = torch.stack([torch.tensor(ys[i]) - q[i][b.action] for i, b in enumerate(batch)])
    ref_loss = (torch.from_numpy(w) * ref_td.pow(2)).mean()
    ref_grads = torch.autograd.grad(ref_loss, list(net.parameters()), allow_unused=True)
    assert float(loss.detach()) == pytest.approx(float(ref_loss.detach()), rel=1e-4)
    assert np.allclose(td, ref_td.detach().numpy(), atol=1e-5)
    for a, b in zip(grads, ref_grads, strict=True):
        if a is None or b is None:
            assert (a is None or not a.abs().sum()) and (b is None or not b.abs().sum())
        else:
            assert torch.allclose(a, b, atol=1e-5)


def test_preference_embeddings_stay_pretrained_while_the_table_trains(toy, emb):
    """Eq. 11 reads the frozen initial vectors by default; ``preference="current"`` follows the trained table."""
    env = MCREnv(toy, topk=2)
    net = UnicornQNet(U + NI + A, 8, 16, init=emb)
    pol = UnicornPolicy(net, U, topk=2, k_v=2, k_p=2, graph_items=0, graph_attrs=0)
    cur = UnicornPolicy(net, U, topk=2, k_v=2, k_p=2, graph_items=0, graph_attrs=0, preference="current")
    train_unicorn(pol, env, toy.splits["train"], episodes=4, batch_size=4, lr=1e-2)
    assert not np.allclose(net.emb.weight.detach().numpy(), emb)  # the table moved ...
    np.testing.assert_array_equal(pol.emb(), emb)  # ... the preference vectors did not
    cur.refresh()
    np.testing.assert_array_equal(cur.emb(), net.emb.weight.detach().numpy())
    assert "pref_emb" in net.state_dict() and all(n != "pref_emb" for n, _ in net.named_parameters())
    with pytest.raises(ValueError, match="preference"):
        UnicornPolicy(net, U, preference="trained")


def test_legacy_checkpoints_get_their_current_table_as_preference(emb):
    from crwalker.policies.unicorn import upgrade_state_dict

    net = UnicornQNet(U + NI + A, 8, 16, init=emb)
    legacy = {k: v for k, v in net.state_dict().items() if k != "pref_emb"}
    legacy["emb.weight"] = legacy["emb.weight"] + 1.0
    fresh = UnicornQNet(U + NI + A, 8, 16)
    fresh.load_state_dict(upgrade_state_dict(legacy))
    assert torch.equal(fresh.pref_emb, legacy["emb.weight"])


def test_inference_rule_recommends_with_few_candidates_or_at_the_last_turn(toy, emb):
    """The reference implementation's test-time rule: <= K candidates or the last turn -> recommend."""
    env = MCREnv(toy, max_turn=15, topk=2)
    net = UnicornQNet(U + NI + A, 8, 16, init=emb)
    pol = UnicornPolicy(net, U, topk=2, k_v=2, k_p=2, graph_items=0, graph_attrs=0)
    off = UnicornPolicy(net, U, topk=2, k_v=2, k_p=2, graph_items=0, graph_attrs=0, inference_rule=False)
    st = env.reset(0, 3, session_id=0)
    g = pol.graph(env, st)
    n_cand = int(st.cand_items.sum())
    assert n_cand > 2 and g.n_item_actions > 0
    assert not pol.must_recommend(env, st, g)
    st.turn = 14  # the 15th and last system turn
    assert pol.must_recommend(env, st, g) and not off.must_recommend(env, st, g)
    pol.epsilon = 0.1  # never while exploring (training)
    assert not pol.must_recommend(env, st, g)
    pol.epsilon, st.turn = 0.0, 0
    st.cand_items[:] = False
    st.cand_items[[3, 4]] = True  # two candidates <= K
    g = pol.graph(env, st)
    assert pol.must_recommend(env, st, g)
    kind, items = pol.act(env, st)
    assert kind == "rec" and sorted(items) == [3, 4]
