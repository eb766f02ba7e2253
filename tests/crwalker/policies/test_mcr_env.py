"""User simulator / environment (UNICORN §3, §4.1, §5.2.1) on the toy fixture."""

from __future__ import annotations

import numpy as np
import pytest

from crwalker.policies.env import MCREnv, sessions


def test_initial_attribute_is_seeded_and_from_target(toy):
    env = MCREnv(toy, seed=3)
    firsts = set()
    for sid in range(40):
        st = env.reset(0, 3, session_id=sid)
        assert st.accepted[0] in {0, 1, 3}
        assert st.turn == 0
        firsts.add(st.accepted[0])
        again = MCREnv(toy, seed=3).reset(0, 3, session_id=sid).accepted[0]
        assert again == st.accepted[0]
    assert firsts == {0, 1, 3}  # uniform over the target's attributes


def test_candidates_follow_eq3(toy):
    env = MCREnv(toy)
    m = toy.item_attr_matrix()
    st = env.reset(0, 3, session_id=0)
    assert np.array_equal(st.cand_items, m[:, st.accepted].all(1))
    # ask every attribute the target has: candidates = items having all accepted attributes
    for p in (0, 1, 3):
        if p not in st.accepted:
            r, done = env.step(("ask", p))
            assert r == pytest.approx(0.01) and not done
    assert st.accepted[1:] == [p for p in (0, 1, 3) if p != st.accepted[0]]
    assert np.flatnonzero(st.cand_items).tolist() == [3]  # only item 3 has {0, 1, 3}
    counts = env.attr_counts()
    assert counts.tolist() == m[[3]].sum(0).tolist()
    assert not env.cand_attr_mask(counts).any()  # all of item 3's attributes are asked


def test_rejected_attribute_and_items(toy):
    env = MCREnv(toy)
    st = env.reset(0, 3, session_id=1)
    r, done = env.step(("ask", 2))  # target 3 lacks attribute 2
    assert r == pytest.approx(-0.1) and not done and st.rejected_attrs == [2]
    assert not env.cand_attr_mask()[2]
    before = st.cand_items.copy()
    wrong = [v for v in np.flatnonzero(before) if v != 3][:1]
    r, done = env.step(("rec", wrong))
    assert r == pytest.approx(-0.1) and not done
    assert st.rejected_items == wrong and not st.cand_items[wrong].any()
    assert st.history == [-1, -2]


def test_success_rank_and_turn(toy):
    env = MCREnv(toy)
    env.reset(0, 3, session_id=0)
    env.step(("ask", 2))
    r, done = env.step(("rec", [5, 3, 0]))
    assert done and r == pytest.approx(1.0)
    res = env.result
    assert res.success and res.turn == 2 and res.rank == 2 and res.n_asks == 1
    assert res.total_reward == pytest.approx(0.9)
    with pytest.raises(RuntimeError):
        env.step(("ask", 0))


def test_quit_after_max_turns(toy):
    env = MCREnv(toy, max_turn=2)
    env.reset(0, 3, session_id=0)
    assert env.step(("ask", 2)) == (pytest.approx(-0.1), False)
    r, done = env.step(("rec", [0]))
    assert done and r == pytest.approx(-0.1 - 0.3)
    assert not env.result.success and env.result.turn == 2


def test_recommendation_list_truncated_to_k(toy):
    env = MCREnv(toy, topk=2)
    env.reset(0, 3, session_id=0)
    r, done = env.step(("rec", [0, 1, 3]))  # 3 is at position 3 > K
    assert not done and r == pytest.approx(-0.1)


def test_sessions_subset_is_seeded(toy):
    assert sessions(toy, "test").tolist() == [[0, 3], [1, 0], [2, 1]]
    a, b = sessions(toy, "train", limit=3, seed=1), sessions(toy, "train", limit=3, seed=1)
    assert a.tolist() == b.tolist() and len(a) == 3
