"""MovieLens parsing on tiny hand-written fixtures (tests/fixtures/data_scripts/movielens)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from data_scripts import movielens
from data_scripts.movielens import (
    Movie,
    MovieLensConfig,
    Rating,
    load_canonical_movies,
    load_canonical_ratings,
    load_movielens,
)
from data_scripts.utils.io import DataFormatError

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "data_scripts" / "movielens"


def test_latest_small_movies_and_ratings():
    movies, ratings = load_movielens(FIX, "ml-latest-small")
    assert [m.item_id for m in movies] == [1, 3, 4, 2571]
    matrix = movies[-1]
    assert matrix == Movie(
        2571, "Matrix, The (1999)", "The Matrix", 1999, ("Action", "Sci-Fi", "Thriller"), "tt0133093", 603
    )
    babylon = movies[1]
    assert (babylon.title, babylon.year, babylon.genres, babylon.tmdb_id) == ("Babylon 5", None, (), None)
    assert movies[2].title == "Amélie (Fabuleux destin d'Amélie Poulain, Le)" and movies[2].year == 2001
    assert ratings[2] == Rating(2, 3, 2.5, 1445714835)


def test_ml100k_latin1_and_genre_flags():
    movies, ratings = load_movielens(FIX, "ml-100k")
    assert movies[0].genres == ("Animation", "Children's", "Comedy")
    assert movies[1].title == "The Shawshank Redemption" and movies[1].year == 1994
    assert movies[2].title_raw == "Cité des enfants perdus, La (1995)"  # decoded from latin-1
    assert movies[2].title == "La Cité des enfants perdus"
    assert movies[2].genres == ("Adventure", "Sci-Fi")
    assert (movies[3].title, movies[3].year, movies[3].genres) == ("unknown", None, ())
    assert ratings == [Rating(196, 1, 3.0, 881250949), Rating(186, 2, 5.0, 891717742), Rating(22, 3, 1.0, 878887116)]


def test_prepare_all_roundtrip(tmp_path, capsys):
    out = tmp_path / "ml"
    assert movielens.main(["--source", str(FIX), "--out", str(out), "--progress", "false"]) == 0
    assert "| ml-100k | 4 | 3 | 3 | 1 |" in capsys.readouterr().out
    for v in ("ml-latest-small", "ml-100k"):
        movies, ratings = load_movielens(FIX, v)
        assert load_canonical_movies(out / v / "movies.jsonl") == movies
        assert load_canonical_ratings(out / v / "ratings.jsonl") == ratings
    manifest = (out / "ml-100k" / "manifest.json").read_text()
    assert '"n_users": 3' in manifest


def test_single_variant(tmp_path):
    cfg = MovieLensConfig(source=str(FIX), variant="ml-100k", out=str(tmp_path), progress=False)
    movielens.prepare(cfg)
    assert (tmp_path / "ml-100k" / "movies.jsonl").exists()
    assert not (tmp_path / "ml-latest-small").exists()


def test_bad_files_name_file_and_line(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(FIX, src)
    with open(src / "ml-100k" / "u.item", "a", encoding="latin-1") as fh:
        fh.write("5|Truncated (1999)|01-Jan-1999||http://x|0|1\n")
    with pytest.raises(DataFormatError, match=r"u.item:5: expected 24"):
        load_movielens(src, "ml-100k")
    with open(src / "ml-latest-small" / "ratings.csv", "a") as fh:
        fh.write("3,1,4.0\n")
    with pytest.raises(DataFormatError, match=r"ratings.csv:5: expected 4 fields"):
        load_movielens(src, "ml-latest-small")
    # nothing written when any variant is bad
    cfg = MovieLensConfig(source=str(src), variant="all", out=str(tmp_path / "out"), progress=False)
    with pytest.raises(DataFormatError):
        movielens.prepare(cfg)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="unknown MovieLens variant"):
        load_movielens(src, "ml-1m")
