"""Score fusion (not in the paper): walker logits + train-only priors for the recommend ranking.

For every candidate movie ``m`` of a turn with prior mentions ``ctx`` the fused recommend logit is

``z_m = h_m . sum_j c^{(j)}                                   (Eq. 7 logit)
      + w_pop   * log(1 + pop(m))                            (popularity: mentions in the training data)
      + w_cooc  * log(1 + s * sum_{c in ctx movies} P(m | c)) (co-occurrence: c mentioned before m)
      + w_kg    * log(1 + |{a in ctx, a not a movie : (a, m) in KG}|)   (KG neighbours of mentioned entities)
      + w_ment  * 1[m in ctx]                                 (re-mention of an earlier movie)
      + w_rec   * 1[m in ctx] / (1 + #ctx movies first mentioned after m)``   (recency of that mention)

and the movie score is ``sigmoid(z_m)`` (so tau/m selection and the ranking use the fused score).
``P(m | c)`` is the row-normalised count of training dialogues in which ``m`` is mentioned after ``c``.
All weights live in :class:`crwalker.config.ModelConfig` (``fusion_*``, default 0 = off); the
statistics (``pop``, ``P``) are persistent buffers of :class:`MoviePrior`, so a checkpoint/bundle carries
them. Checkpoints written before this module existed load with empty statistics (fusion off).
Weights are chosen on the validation split by :mod:`crwalker.tune`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from crwalker.config import ModelConfig

_BUFFERS = ("popularity", "cooc_index", "cooc_value")
#: config overrides that switch every score-fusion component off (the intent prior correction is separate)
FUSION_OFF: dict = {
    "fusion_popularity": 0.0,
    "fusion_cooccurrence": 0.0,
    "fusion_kg": 0.0,
    "fusion_mentioned": 0.0,
    "fusion_recency": 0.0,
}


def fusion_active(cfg: ModelConfig) -> bool:
    """True when any fusion weight is non-zero."""
    return any(getattr(cfg, k) for k in FUSION_OFF)


def movie_statistics(
    dialogues: Iterable[Sequence[Sequence[int]]], movie_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mention counts and ordered co-occurrence ``P(m | c)`` from movie-id sequences.

    Args:
        dialogues: per dialogue, per turn, the KG entity ids of the movies mentioned in it (training data only).
        movie_ids: sorted candidate movie ids (the columns).

    Returns:
        ``(popularity [n], cooc_index [2, nnz] (row = earlier movie, col = later movie), cooc_value [nnz])``
        where row ``c`` of the co-occurrence is normalised to sum to 1.
    """
    col = {int(m): i for i, m in enumerate(movie_ids)}
    pop = np.zeros(len(movie_ids), dtype=np.float64)
    pairs: dict[tuple[int, int], float] = {}
    for turns in dialogues:
        seen: list[int] = []
        for ids in turns:
            cols = [col[int(m)] for m in ids if int(m) in col]
            for c in cols:
                pop[c] += 1
            for m in dict.fromkeys(cols):
                for c in dict.fromkeys(seen):
                    if c != m:
                        pairs[(c, m)] = pairs.get((c, m), 0.0) + 1.0
            seen.extend(cols)
    if not pairs:
        return pop, np.zeros((2, 0), dtype=np.int64), np.zeros(0, dtype=np.float64)
    keys = sorted(pairs)
    idx = np.array(keys, dtype=np.int64).T
    val = np.array([pairs[k] for k in keys], dtype=np.float64)
    row_sum = np.bincount(idx[0], weights=val, minlength=len(movie_ids))
    return pop, idx, val / row_sum[idx[0]]


class MoviePrior(nn.Module):
    """Train-only movie statistics and the fusion bonus of the module docstring."""

    def __init__(self, n_movies: int):
        super().__init__()
        self.n_movies = n_movies
        self.register_buffer("popularity", torch.zeros(0))
        self.register_buffer("cooc_index", torch.zeros(2, 0, dtype=torch.long))
        self.register_buffer("cooc_value", torch.zeros(0))
        self._csr: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._log_pop: np.ndarray | None = None

    @property
    def has_statistics(self) -> bool:
        return self.popularity.numel() == self.n_movies

    def set_statistics(self, popularity: np.ndarray, cooc_index: np.ndarray, cooc_value: np.ndarray) -> None:
        """Install statistics from :func:`movie_statistics`."""
        if len(popularity) != self.n_movies:
            raise ValueError(f"popularity has {len(popularity)} entries, expected {self.n_movies}")
        dev = self.popularity.device
        self.popularity = torch.as_tensor(popularity, dtype=torch.float32, device=dev)
        self.cooc_index = torch.as_tensor(cooc_index, dtype=torch.long, device=dev).reshape(2, -1)
        self.cooc_value = torch.as_tensor(cooc_value, dtype=torch.float32, device=dev)
        self._build_csr()

    def _build_csr(self) -> None:
        idx = self.cooc_index.cpu().numpy()
        order = np.lexsort((idx[1], idx[0]))
        rows, cols = idx[0][order], idx[1][order]
        vals = self.cooc_value.cpu().numpy().astype(np.float64)[order]
        indptr = np.searchsorted(rows, np.arange(self.n_movies + 1))
        self._csr = (indptr, cols, vals)
        self._log_pop = np.log1p(self.popularity.cpu().numpy().astype(np.float64))

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        # without statistics nothing is saved, so such a state dict is the same as before this module existed
        if self.has_statistics:
            super()._save_to_state_dict(destination, prefix, keep_vars)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, errs):
        # statistics have a data-dependent size; older checkpoints have none (fusion then stays off)
        for name in _BUFFERS:
            key = prefix + name
            if key in state_dict:
                t = state_dict[key]
                t = t.round().long() if name == "cooc_index" else t.float()  # bundles store every tensor as float
                setattr(self, name, t.to(getattr(self, name).device))
        if self.cooc_index.numel() or self.popularity.numel():
            self._build_csr()

    def terms(self, context: Sequence[int], movie_ids: np.ndarray, is_movie: np.ndarray, neighbors) -> np.ndarray:
        """``[5, n]`` un-weighted fusion features (pop, cooc, kg, mentioned, recency) for one turn.

        Args:
            context: entities mentioned before the turn, in first-mention order (recency reads the order).
            movie_ids: sorted candidate movie ids.
            is_movie: ``[num_entities]`` bool.
            neighbors: ``eid -> sorted KG neighbour ids`` (e.g. ``CandidateSets.neighbors``).
        """
        n = len(movie_ids)
        out = np.zeros((5, n), dtype=np.float64)
        ctx_movies = [int(e) for e in dict.fromkeys(context) if is_movie[int(e)]]
        recency = 1.0 / np.arange(len(ctx_movies), 0, -1, dtype=np.float64)  # last mentioned: 1, before it: 1/2, ...
        cols = np.searchsorted(movie_ids, np.asarray(ctx_movies, dtype=np.int64))
        known = (cols < n) & (movie_ids[np.minimum(cols, n - 1)] == np.asarray(ctx_movies, dtype=np.int64))
        cols, recency = cols[known], recency[known]
        if self.has_statistics:
            if self._log_pop is None:
                self._build_csr()
            out[0] = self._log_pop
            if self._csr is not None:
                indptr, ccols, vals = self._csr
                for c in cols:
                    s, e = indptr[c], indptr[c + 1]
                    out[1][ccols[s:e]] += vals[s:e]  # column ids are unique within a row
        kg = np.zeros(n, dtype=np.float64)
        for a in dict.fromkeys(context):
            if is_movie[int(a)]:
                continue
            nb = np.asarray(neighbors(int(a)), dtype=np.int64)
            nb = nb[is_movie[nb]] if nb.size else nb
            pos = np.searchsorted(movie_ids, nb)
            ok = pos < n
            ok[ok] = movie_ids[pos[ok]] == nb[ok]
            kg[pos[ok]] += 1.0  # neighbours are unique, so no repeated positions
        out[2] = np.log1p(kg)
        out[3, cols] = 1.0
        out[4, cols] = recency
        return out

    def bonus(self, cfg: ModelConfig, context: Sequence[int], movie_ids, is_movie, neighbors) -> np.ndarray:
        """Weighted sum of :meth:`terms` (``[n]``, added to the Eq. 7 logits); zeros when fusion is off."""
        if not fusion_active(cfg):
            return np.zeros(len(movie_ids), dtype=np.float64)
        t = self.terms(context, movie_ids, is_movie, neighbors)
        t[1] = np.log1p(cfg.fusion_cooc_scale * t[1])
        return np.array([getattr(cfg, k) for k in FUSION_OFF]) @ t
