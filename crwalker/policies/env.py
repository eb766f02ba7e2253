"""Multi-round conversational recommendation environment and user simulator (UNICORN §3, §4.1, §5.2.1).

One session per observed (user, item) interaction; the item is the hidden target ``v*``.

* Turn 0 (not counted): the simulated user names one attribute ``p0`` of ``v*``, drawn uniformly
  with a per-session seeded generator (``default_rng([seed, session_id])``), so results do not
  depend on evaluation order or on the policy.
* Each turn ``t = 1..T`` (``T = 15``) the system either asks one attribute ``p`` (the user accepts iff
  ``v*`` has ``p``) or recommends a list of at most ``K = 10`` items (the user accepts iff ``v*`` is in
  it; the session ends with success at turn ``t`` and rank = 1-based position of ``v*``).
* Candidate sets (Eq. 3): ``V_cand = V_{p0} ∩ V_{P_u} \\ V_rej`` (items with every accepted attribute,
  minus rejected items); ``P_cand = P_{V_cand} \\ (P_u ∪ P_rej)``.
* Rewards: ``rec_suc = 1``, ``rec_fail = -0.1``, ``ask_suc = 0.01``, ``ask_fail = -0.1``; if turn ``T``
  ends without success, ``quit = -0.3`` is added to that turn's reward and the session ends (the
  UNICORN code gives ``quit`` on an extra step; folding it in keeps exactly ``T`` actions).

Everything is vectorised with numpy: ``V_cand`` is a boolean item mask and attribute counts over
``V_cand`` come from one ``bincount`` over the item->attribute CSR.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from data_scripts.mcr import MCRData


@dataclass(frozen=True)
class Rewards:
    """Reward constants (UNICORN §5.2.1)."""

    rec_suc: float = 1.0
    rec_fail: float = -0.1
    ask_suc: float = 0.01
    ask_fail: float = -0.1
    quit: float = -0.3


@dataclass
class SessionResult:
    """Outcome of one session: ``turn`` is the success turn (1..T), or ``T`` on failure; ``rank`` is 1..K or 0."""

    user: int
    target: int
    success: bool
    turn: int
    rank: int = 0
    n_asks: int = 0
    total_reward: float = 0.0


@dataclass
class State:
    """Dialogue state seen by a policy (the target is hidden)."""

    user: int
    turn: int  # number of system actions taken so far
    accepted: list[int]  # P_u, in order (p0 first)
    rejected_attrs: list[int]
    rejected_items: list[int]
    cand_items: np.ndarray  # bool [n_items]
    history: list[int] = field(default_factory=list)  # per turn: +1 ask_suc, -1 ask_fail, -2 rec_fail


class MCREnv:
    """The simulator for one dataset. ``reset(user, target, session_id)`` then ``step(action)``.

    Actions are ``("ask", attr)`` or ``("rec", [item, ...])``.
    """

    def __init__(
        self, data: MCRData, max_turn: int = 15, topk: int = 10, seed: int = 0, rewards: Rewards | None = None
    ):
        self.data, self.max_turn, self.topk, self.seed = data, max_turn, topk, seed
        self.rewards = rewards or Rewards()
        self.ia_ptr, self.ia_idx = data.item_attr_csr
        self.ai_ptr, self.ai_idx = data.attr_item_csr
        self.n_items, self.n_attrs = data.n_items, data.n_attrs
        self.state: State | None = None
        self.target = -1
        self.done = True

    # --- candidate sets (Eq. 3) -------------------------------------------------------------
    def items_with(self, attr: int) -> np.ndarray:
        """Item ids having attribute ``attr``."""
        return self.ai_idx[self.ai_ptr[attr] : self.ai_ptr[attr + 1]]

    def attr_counts(self, cand: np.ndarray | None = None) -> np.ndarray:
        """``counts[p]`` = number of candidate items having attribute ``p`` (int64 [n_attrs])."""
        cand = self.state.cand_items if cand is None else cand
        return self.attr_sums(np.flatnonzero(cand)).astype(np.int64)

    def attr_sums(self, items: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """``out[p] = Σ_{v ∈ items, v has p} weights[v]`` (counts when ``weights`` is None), float64 [n_attrs]."""
        if len(items) == 0:
            return np.zeros(self.n_attrs)
        starts, ends = self.ia_ptr[items], self.ia_ptr[items + 1]
        lens = ends - starts
        offs = np.repeat(starts - np.concatenate(([0], np.cumsum(lens)[:-1])), lens)
        w = None if weights is None else np.repeat(weights, lens)
        return np.bincount(self.ia_idx[np.arange(lens.sum()) + offs], weights=w, minlength=self.n_attrs).astype(float)

    def cand_attr_mask(self, counts: np.ndarray | None = None) -> np.ndarray:
        """Boolean mask of ``P_cand`` = attributes of candidate items minus asked ones."""
        counts = self.attr_counts() if counts is None else counts
        mask = counts > 0
        mask[self.state.accepted] = False
        mask[self.state.rejected_attrs] = False
        return mask

    def item_has(self, item: int, attr: int) -> bool:
        a = self.ia_idx[self.ia_ptr[item] : self.ia_ptr[item + 1]]
        i = np.searchsorted(a, attr)
        return bool(i < len(a) and a[i] == attr)

    # --- episode ----------------------------------------------------------------------------
    def reset(self, user: int, target: int, session_id: int = 0) -> State:
        """Start a session; the user names a seeded random attribute of ``target``."""
        rng = np.random.default_rng([self.seed, int(session_id)])
        attrs = self.ia_idx[self.ia_ptr[target] : self.ia_ptr[target + 1]]
        p0 = int(attrs[rng.integers(len(attrs))])
        cand = np.zeros(self.n_items, dtype=bool)
        cand[self.items_with(p0)] = True
        self.state = State(user=int(user), turn=0, accepted=[p0], rejected_attrs=[], rejected_items=[], cand_items=cand)
        self.target, self.done = int(target), False
        self.result = SessionResult(user=int(user), target=int(target), success=False, turn=self.max_turn)
        return self.state

    def step(self, action: tuple[str, object]) -> tuple[float, bool]:
        """Apply one system action; returns (reward, done)."""
        if self.done:
            raise RuntimeError("step() after the session ended; call reset()")
        st, r = self.state, self.rewards
        st.turn += 1
        kind, arg = action
        if kind == "ask":
            p = int(arg)
            if self.item_has(self.target, p):
                reward = r.ask_suc
                st.accepted.append(p)
                keep = np.zeros(self.n_items, dtype=bool)
                keep[self.items_with(p)] = True
                st.cand_items &= keep
                st.history.append(1)
            else:
                reward = r.ask_fail
                st.rejected_attrs.append(p)
                st.history.append(-1)
            self.result.n_asks += 1
        elif kind == "rec":
            items = [int(v) for v in list(arg)[: self.topk]]
            if self.target in items:
                reward = r.rec_suc
                self.result.success, self.result.turn = True, st.turn
                self.result.rank = items.index(self.target) + 1
                self.done = True
            else:
                reward = r.rec_fail
                st.rejected_items.extend(items)
                st.cand_items[items] = False
                st.history.append(-2)
        else:
            raise ValueError(f"unknown action kind {kind!r}; expected 'ask' or 'rec'")
        if not self.done and st.turn >= self.max_turn:
            reward += r.quit
            self.done = True
        self.result.total_reward += reward
        return reward, self.done


def sessions(data: MCRData, split: str = "test", limit: int | None = None, seed: int = 0) -> np.ndarray:
    """The (user, item) pairs of ``split`` (one session each); ``limit`` takes a seeded random subset."""
    pairs = data.splits[split]
    if limit is not None and limit < len(pairs):
        idx = np.sort(np.random.default_rng(seed).choice(len(pairs), size=limit, replace=False))
        pairs = pairs[idx]
    return pairs
