"""Movie MCR builder: title normalisation (hand cases) and, when data/kg exists, a real build."""

from __future__ import annotations

from pathlib import Path

import pytest

from crwalker.policies.movie_data import build_movie_mcr, norm_title

PROJECT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    "a,b",
    [
        ("The Matrix (1999)", "Matrix, The"),
        ("Se7en", "se7en"),
        ("Amélie", "Amélie"),
        ("Star Wars: Episode IV - A New Hope (1977)", "Star Wars Episode IV  A New Hope"),
        ("A Beautiful Mind", "Beautiful Mind, A"),
    ],
)
def test_norm_title_matches_variants(a, b):
    assert norm_title(a) == norm_title(b)


def test_norm_title_keeps_distinct_titles_apart():
    assert norm_title("Alien (1979)") != norm_title("Aliens (1986)")


@pytest.mark.integration
@pytest.mark.skipif(
    not (PROJECT / "data/kg/manifest.json").exists() or not (PROJECT / "data/movielens/ml-latest-small").exists(),
    reason="data/kg or data/movielens not built",
)
def test_real_build_is_consistent():
    data, stats = build_movie_mcr(PROJECT / "data/kg", PROJECT / "data/movielens/ml-latest-small")
    assert stats["linked_movies"] > 1000 and data.n_users > 100
    assert all(len(a) > 0 for a in data.item_attrs)
    train = {tuple(x) for x in data.splits["train"].tolist()}
    assert not any(tuple(x) in train for x in data.splits["test"].tolist())
