"""Reinforcement-learning building blocks shared by the learned policies.

* :class:`PrioritizedReplay` -- proportional prioritized experience replay (Schaul et al. 2016;
  UNICORN Eq. 19): ``P(i) = p_i^α / Σ_k p_k^α`` with ``p_i = |δ_i| + ε`` and importance weights
  ``w_i = (N · P(i))^{-β} / max_j w_j``.
* :func:`soft_update` -- target network update ``θ' ← τ θ + (1 − τ) θ'`` (UNICORN Eq. 18).
* :func:`double_dqn_targets` -- ``y = r + γ (1 − done) Q_target(s', argmax_a Q(s', a))`` (Eq. 17).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn


@dataclass
class Transition:
    """One replay entry; ``state``/``next_state`` are whatever the policy's Q-network consumes."""

    state: Any
    action: int
    reward: float
    next_state: Any
    done: bool


class PrioritizedReplay:
    """Proportional prioritized replay with a fixed capacity (ring buffer).

    Stores ``p_i^α`` (``pa``) rather than ``p_i``, so neither sampling nor insertion raises the whole buffer to the
    power ``α``: ``push`` gives the new entry the maximum priority (``max_i p_i^α = (max_i p_i)^α``), ``update`` computes
    ``α`` powers for the replayed entries only, and ``sample`` draws by inverting the cumulative sum of ``pa`` --
    the same draws as ``rng.choice(size, p=pa / Σ pa)`` (one uniform per sample, ``searchsorted`` on the normalised
    CDF) without its O(N) argument checks.
    """

    def __init__(self, capacity: int = 50_000, alpha: float = 0.6, beta: float = 0.4, eps: float = 1e-5, seed: int = 0):
        self.capacity, self.alpha, self.beta, self.eps = capacity, alpha, beta, eps
        self.data: list[Transition | None] = [None] * capacity
        self.pa = np.zeros(capacity, dtype=np.float64)  # p_i^alpha
        self.pos, self.size = 0, 0
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.size

    @property
    def prio(self) -> np.ndarray:
        """The priorities ``p_i`` (derived from ``pa``; for inspection)."""
        return self.pa ** (1.0 / self.alpha)

    def push(self, t: Transition) -> None:
        """Add ``t`` with the current maximum priority (so it is replayed at least once soon)."""
        pa = self.pa[: self.size].max() if self.size else 1.0
        self.data[self.pos], self.pa[self.pos] = t, pa
        self.pos = (self.pos + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int) -> tuple[list[Transition], np.ndarray, np.ndarray]:
        """Return (transitions, indices, normalised importance weights)."""
        pa = self.pa[: self.size]
        cdf = np.cumsum(pa)
        cdf /= cdf[-1]
        idx = np.searchsorted(cdf, self.rng.random(batch_size), side="right")
        w = (self.size * (pa[idx] / pa.sum())) ** (-self.beta)
        data = self.data
        return [data[i] for i in idx.tolist()], idx, (w / w.max()).astype(np.float32)

    def update(self, idx: np.ndarray, td_error: np.ndarray) -> None:
        self.pa[idx] = (np.abs(td_error) + self.eps) ** self.alpha


def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Eq. 18: ``θ' ← τ θ + (1 − τ) θ'``."""
    with torch.no_grad():
        tps, sps = list(target.parameters()), list(source.parameters())
        if len(tps) != len(sps):
            raise ValueError("target and source have different parameter lists")
        torch._foreach_lerp_(tps, sps, tau)  # lerp: t + tau * (s - t) = tau * s + (1 - tau) * t


def double_dqn_targets(
    reward: torch.Tensor,
    done: torch.Tensor,
    q_next_online: torch.Tensor,
    q_next_target: torch.Tensor,
    next_mask: torch.Tensor,
    gamma: float,
) -> torch.Tensor:
    """Eq. 17 with invalid next actions (``next_mask`` False) excluded from the argmax."""
    q_on = q_next_online.masked_fill(~next_mask, float("-inf"))
    best = q_on.argmax(1, keepdim=True)
    q_t = q_next_target.gather(1, best).squeeze(1)
    has_next = next_mask.any(1) & ~done
    return reward + gamma * torch.where(has_next, q_t, torch.zeros_like(q_t))
