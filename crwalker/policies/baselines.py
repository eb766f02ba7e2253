"""Baseline MCR policies (UNICORN §5.2.2): Abs Greedy, Max Entropy, CRM, EAR, SCPR.

All recommendation lists are the top-K candidate items (``V_cand``) by the FM score (EAR Eq. 1,
:mod:`crwalker.policies.fm`).

* **Abs Greedy** (Christakopoulou et al. 2016): recommends every turn; a rejected list is treated as
  negative feedback -- one gradient step of BPR-style loss ``Σ_{v∈rej} ln σ(q·v)`` on the session's
  query vector ``q`` (lr ``abs_greedy_lr``), besides removing the items from ``V_cand``.
* **Max Entropy** (EAR's rule): asks the candidate attribute with the largest binary entropy over
  ``V_cand``; recommends instead with probability ``K / max(|V_cand|, K)`` (always when
  ``|V_cand| <= K`` or no attribute is left).
* **EAR** (Lei et al. 2020a): policy network (2-layer MLP) over ``s = [s_ent, s_pre, s_his, s_len]``
  (per-attribute entropy, FM attribute preference Eq. 4, the 15-turn history, one-hot candidate-size
  bucket), actions = every attribute + "recommend"; pretrained by imitating Max Entropy, then REINFORCE
  (γ = 0.7).
* **CRM** (Sun & Zhang 2018, as adapted by EAR): same network and training, but the state is only the
  belief tracker output (here the FM attribute preference ``s_pre``).
* **SCPR** (Lei et al. KDD 2020): DQN over two actions {ask, recommend} with state ``[s_his, s_len]``;
  the asked attribute is the one with the largest propagated item preference
  ``Σ_{v ∈ V_cand ∩ V_p} σ(y(u, v, P_u))`` (path reasoning on the user-item-attribute graph).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from crwalker.policies.env import MCREnv, SessionResult, State
from crwalker.policies.fm import FM
from crwalker.policies.rl import PrioritizedReplay, Transition, double_dqn_targets, soft_update

LEN_BUCKETS = (10, 50, 100, 200, 300, 500, 1000)  # s_len one-hot boundaries (EAR)


class Policy:
    """Interface: ``begin`` at reset, ``act`` each turn, ``feedback`` after each step."""

    name = "policy"

    def begin(self, env: MCREnv, state: State, session_id: int) -> None:  # noqa: B027
        pass

    def act(self, env: MCREnv, state: State) -> tuple[str, object]:
        raise NotImplementedError

    def feedback(self, env: MCREnv, action: tuple[str, object], reward: float, done: bool) -> None:  # noqa: B027
        pass


def top_items(fm: FM, env: MCREnv, state: State, k: int, query: np.ndarray | None = None) -> list[int]:
    """Top-``k`` candidate items by FM score (descending, ties by id)."""
    items = np.flatnonzero(state.cand_items)
    if items.size == 0:
        return []
    q = fm.query(state.user, state.accepted) if query is None else query
    s = fm.item[items] @ q
    if items.size > k:
        part = np.argpartition(-s, k)[:k]
        items, s = items[part], s[part]
    order = np.lexsort((items, -s))
    return items[order].tolist()


def binary_entropy(counts: np.ndarray, n: int) -> np.ndarray:
    """``H(q) = −q ln q − (1−q) ln(1−q)`` with ``q = counts / n`` (0 where q ∈ {0, 1})."""
    q = counts / max(n, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(q * np.log(q) + (1 - q) * np.log(1 - q))
    return np.nan_to_num(h)


class AbsGreedy(Policy):
    name = "abs_greedy"

    def __init__(self, fm: FM, topk: int = 10, lr: float = 0.01):
        self.fm, self.topk, self.lr = fm, topk, lr

    def begin(self, env, state, session_id):
        self.query = self.fm.query(state.user, state.accepted).copy()

    def act(self, env, state):
        return ("rec", top_items(self.fm, env, state, self.topk, self.query))

    def feedback(self, env, action, reward, done):
        if action[0] == "rec" and not done:
            v = self.fm.item[list(action[1])]
            sig = 1 / (1 + np.exp(-(v @ self.query)))
            self.query -= self.lr * (sig[:, None] * v).sum(0)  # gradient of Σ −ln σ(−q·v)


class MaxEntropy(Policy):
    name = "max_entropy"

    def __init__(self, fm: FM, topk: int = 10, seed: int = 0):
        self.fm, self.topk, self.seed = fm, topk, seed

    def begin(self, env, state, session_id):
        self.rng = np.random.default_rng([self.seed, 7, session_id])

    def choose(self, env: MCREnv, state: State) -> int:
        """Return -1 to recommend, else the attribute to ask."""
        counts = env.attr_counts()
        n = int(state.cand_items.sum())
        mask = env.cand_attr_mask(counts)
        if n <= self.topk or not mask.any() or self.rng.random() < self.topk / max(n, self.topk):
            return -1
        h = np.where(mask, binary_entropy(counts, n), -1.0)
        return int(np.argmax(h))

    def act(self, env, state):
        p = self.choose(env, state)
        return ("rec", top_items(self.fm, env, state, self.topk)) if p < 0 else ("ask", p)


def len_onehot(n: int) -> np.ndarray:
    out = np.zeros(len(LEN_BUCKETS) + 1, np.float32)
    out[int(np.searchsorted(LEN_BUCKETS, n))] = 1.0
    return out


def history_vec(state: State, max_turn: int) -> np.ndarray:
    h = np.zeros(max_turn, np.float32)
    h[: len(state.history)] = state.history[:max_turn]
    return h


def ear_state(fm: FM, env: MCREnv, state: State, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """EAR/CRM state vector and the valid-action mask (attributes in P_cand, then "recommend")."""
    counts = env.attr_counts()
    n = int(state.cand_items.sum())
    mask = np.append(env.cand_attr_mask(counts), True)
    pre = fm.attr_scores(state.user, state.accepted).astype(np.float32)
    if kind == "crm":
        return pre, mask
    ent = binary_entropy(counts, n).astype(np.float32)
    return np.concatenate([ent, pre, history_vec(state, env.max_turn), len_onehot(n)]), mask


class PolicyNet(nn.Module):
    """EAR's policy network: ``softmax(W2 ReLU(W1 s))`` over attributes + recommend."""

    def __init__(self, state_dim: int, n_actions: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(state_dim, hidden), nn.ReLU(), nn.Linear(hidden, n_actions))

    def forward(self, s: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.net(s).masked_fill(~mask, float("-inf"))


class EARPolicy(Policy):
    """EAR (``kind="ear"``) or CRM (``kind="crm"``) policy network."""

    def __init__(self, fm: FM, n_attrs: int, max_turn: int = 15, topk: int = 10, kind: str = "ear", hidden: int = 64):
        self.fm, self.topk, self.kind, self.name = fm, topk, kind, kind
        dim = n_attrs if kind == "crm" else 2 * n_attrs + max_turn + len(LEN_BUCKETS) + 1
        self.net = PolicyNet(dim, n_attrs + 1, hidden)
        self.n_attrs = n_attrs
        self.sample = False
        self.rng = np.random.default_rng(0)

    def logits(self, env, state):
        s, m = ear_state(self.fm, env, state, self.kind)
        return self.net(torch.from_numpy(s)[None], torch.from_numpy(m)[None])[0]

    def to_action(self, a: int, env, state):
        return ("rec", top_items(self.fm, env, state, self.topk)) if a == self.n_attrs else ("ask", a)

    def act(self, env, state):
        with torch.inference_mode():
            lg = self.logits(env, state)
        if self.sample:
            p = torch.softmax(lg, 0).numpy().astype(np.float64)
            a = int(self.rng.choice(len(p), p=p / p.sum()))
        else:
            a = int(torch.argmax(lg))
        return self.to_action(a, env, state)


def _ear_action_index(action, n_attrs: int) -> int:
    return n_attrs if action[0] == "rec" else int(action[1])


def train_ear(
    policy: EARPolicy,
    env: MCREnv,
    pairs: np.ndarray,
    pretrain_episodes: int,
    rl_episodes: int,
    lr: float = 1e-3,
    gamma: float = 0.7,
    l2: float = 1e-5,
    seed: int = 0,
    log: Callable[[dict], None] | None = None,
) -> dict:
    """EAR training: imitation of Max Entropy (cross-entropy), then REINFORCE with discount ``gamma``."""
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(policy.net.parameters(), lr=lr, weight_decay=l2)
    teacher = MaxEntropy(policy.fm, policy.topk, seed)
    t0 = time.time()
    for ep in tqdm(range(pretrain_episodes), desc=f"{policy.name} pretrain", mininterval=5):
        i = int(rng.integers(len(pairs)))
        st = env.reset(*pairs[i], session_id=10_000_000 + ep)
        teacher.begin(env, st, ep)
        loss, done = 0.0, False
        while not done:
            act = teacher.act(env, st)
            lg = policy.logits(env, st)
            loss = loss - torch.log_softmax(lg, 0)[_ear_action_index(act, policy.n_attrs)]
            _, done = env.step(act)
        opt.zero_grad()
        loss.backward()
        opt.step()
    policy.sample, policy.rng = True, np.random.default_rng(seed + 1)
    returns_log = []
    for ep in tqdm(range(rl_episodes), desc=f"{policy.name} REINFORCE", mininterval=5):
        i = int(rng.integers(len(pairs)))
        st = env.reset(*pairs[i], session_id=20_000_000 + ep)
        logps, rewards, done = [], [], False
        while not done:
            lg = policy.logits(env, st)
            p = torch.softmax(lg.detach(), 0).numpy().astype(np.float64)
            a = int(policy.rng.choice(len(p), p=p / p.sum()))
            logps.append(torch.log_softmax(lg, 0)[a])
            r, done = env.step(policy.to_action(a, env, st))
            rewards.append(r)
        g, rets = 0.0, []
        for r in reversed(rewards):
            g = r + gamma * g
            rets.append(g)
        rets = torch.tensor(rets[::-1], dtype=torch.float32)
        loss = -(torch.stack(logps) * rets).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        returns_log.append(float(rets[0]))
        if log and (ep + 1) % 100 == 0:
            log({"episode": ep + 1, "return": float(np.mean(returns_log[-100:]))})
    policy.sample = False
    return {"train_seconds": time.time() - t0, "pretrain_episodes": pretrain_episodes, "rl_episodes": rl_episodes}


class SCPRPolicy(Policy):
    """SCPR: DQN decides ask vs recommend; path reasoning picks the attribute."""

    name = "scpr"

    def __init__(self, fm: FM, max_turn: int = 15, topk: int = 10, hidden: int = 64):
        self.fm, self.topk, self.max_turn = fm, topk, max_turn
        dim = max_turn + len(LEN_BUCKETS) + 1
        self.q = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, 2))
        self.epsilon, self.rng = 0.0, np.random.default_rng(0)

    def state_vec(self, env, state) -> np.ndarray:
        return np.concatenate([history_vec(state, self.max_turn), len_onehot(int(state.cand_items.sum()))])

    def best_attr(self, env: MCREnv, state: State) -> int:
        """Path reasoning: attribute score = Σ_{v ∈ V_cand ∩ V_p} σ(y(u, v, P_u)); -1 if P_cand is empty."""
        items = np.flatnonzero(state.cand_items)
        s = 1 / (1 + np.exp(-self.fm.item_scores(state.user, state.accepted, items)))
        score = env.attr_sums(items, s)
        mask = score > 0
        mask[state.accepted] = False
        mask[state.rejected_attrs] = False
        return int(np.argmax(np.where(mask, score, -np.inf))) if mask.any() else -1

    def decide(self, env, state) -> int:
        if self.epsilon > 0 and self.rng.random() < self.epsilon:
            return int(self.rng.integers(2))
        with torch.inference_mode():
            return int(torch.argmax(self.q(torch.from_numpy(self.state_vec(env, state))[None])[0]))

    def to_action(self, a: int, env, state):
        p = self.best_attr(env, state) if a == 0 else -1
        return ("ask", p) if p >= 0 else ("rec", top_items(self.fm, env, state, self.topk))

    def act(self, env, state):
        return self.to_action(self.decide(env, state), env, state)


def train_scpr(
    policy: SCPRPolicy,
    env: MCREnv,
    pairs: np.ndarray,
    episodes: int,
    lr: float = 1e-4,
    gamma: float = 0.999,
    batch_size: int = 128,
    buffer: int = 50_000,
    tau: float = 0.01,
    eps_start: float = 0.5,
    eps_end: float = 0.05,
    seed: int = 0,
    log: Callable[[dict], None] | None = None,
) -> dict:
    """Double DQN with prioritized replay for SCPR's ask/recommend decision (also KGenSam's, which uses the
    policy's ``begin``/``feedback`` hooks for its online recommender update)."""
    import copy

    rng = np.random.default_rng(seed)
    target = copy.deepcopy(policy.q)
    opt = torch.optim.Adam(policy.q.parameters(), lr=lr, weight_decay=1e-6)
    mem = PrioritizedReplay(buffer, seed=seed)
    policy.rng = np.random.default_rng(seed + 1)
    t0, rets = time.time(), []
    for ep in tqdm(range(episodes), desc=f"{policy.name} DQN", mininterval=5):
        policy.epsilon = eps_end + (eps_start - eps_end) * max(0.0, 1 - ep / max(episodes * 0.5, 1))
        i = int(rng.integers(len(pairs)))
        st = env.reset(*pairs[i], session_id=30_000_000 + ep)
        policy.begin(env, st, 30_000_000 + ep)
        done, ret = False, 0.0
        while not done:
            s = policy.state_vec(env, st)
            a = policy.decide(env, st)
            action = policy.to_action(a, env, st)
            r, done = env.step(action)
            policy.feedback(env, action, r, done)
            ret += r
            mem.push(Transition(s, a, r, policy.state_vec(env, st), done))
            if len(mem) >= batch_size:
                batch, idx, w = mem.sample(batch_size)
                S = torch.from_numpy(np.stack([b.state for b in batch]))
                S2 = torch.from_numpy(np.stack([b.next_state for b in batch]))
                A = torch.tensor([b.action for b in batch])
                R = torch.tensor([b.reward for b in batch], dtype=torch.float32)
                D = torch.tensor([b.done for b in batch])
                q = policy.q(S).gather(1, A[:, None]).squeeze(1)
                with torch.no_grad():
                    y = double_dqn_targets(
                        R, D, policy.q(S2), target(S2), torch.ones(len(batch), 2, dtype=torch.bool), gamma
                    )
                td = y - q
                loss = (torch.from_numpy(w) * td.pow(2)).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                mem.update(idx, td.detach().numpy())
                soft_update(target, policy.q, tau)
        rets.append(ret)
        if log and (ep + 1) % 100 == 0:
            log({"episode": ep + 1, "return": float(np.mean(rets[-100:])), "epsilon": policy.epsilon})
    policy.epsilon = 0.0
    return {"train_seconds": time.time() - t0, "episodes": episodes}


def run_sessions(
    env: MCREnv, policy: Policy, pairs: Sequence, desc: str = "eval", progress: bool = True, offset: int = 0
) -> list[SessionResult]:
    """Run one session per (user, item) pair; session ids are ``offset + index`` (seeds the simulator)."""
    out = []
    for i, (u, v) in enumerate(tqdm(pairs, desc=desc, disable=not progress, mininterval=5)):
        st = env.reset(int(u), int(v), session_id=offset + i)
        policy.begin(env, st, offset + i)
        done = False
        while not done:
            action = policy.act(env, st)
            r, done = env.step(action)
            policy.feedback(env, action, r, done)
        out.append(env.result)
    return out
