import pytest

from data_scripts.titles import load_redial_movies, normalize_text, normalize_title, split_title_year, unsuffix_article
from data_scripts.utils.io import DataFormatError


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Police Academy  (1984)", ("Police Academy", 1984)),
        ("American Pie ", ("American Pie", None)),
        ("(500) Days of Summer (2009)", ("(500) Days of Summer", 2009)),
        ("Twin Peaks (1990-1991)", ("Twin Peaks", 1990)),
    ],
)
def test_split_title_year(name, expected):
    assert split_title_year(name) == expected


def test_normalisation():
    assert unsuffix_article("Matrix, The") == "The Matrix"
    assert normalize_title("Matrix, The") == normalize_title("The Matrix") == "the matrix"
    assert normalize_text("Amélie & Co.: Part II!") == "amelie and co part ii"


def test_load_redial_movies(tmp_path):
    p = tmp_path / "movies.csv"
    p.write_text('movieId,movieName,nbMentions\r\n2,"Police Academy  (1984)",3\r\n1,Alien (1979),10\r\n')
    movies = load_redial_movies(p)
    assert [m.redial_id for m in movies] == [1, 2]
    assert movies[1].name == "Police Academy (1984)" and movies[1].year == 1984 and movies[1].n_mentions == 3


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("id,name,count\n1,A,1\n", ":1: expected header"),
        ("movieId,movieName,nbMentions\n1,A (1990),1\n1,B (1991),2\n", ":3: duplicate movieId 1"),
        ("movieId,movieName,nbMentions\nx,A (1990),1\n", ":2: non-integer"),
        ("movieId,movieName,nbMentions\n1,A (1990)\n", ":2: expected 3 columns"),
    ],
)
def test_bad_movie_csv(tmp_path, body, match):
    p = tmp_path / "m.csv"
    p.write_text(body)
    with pytest.raises(DataFormatError, match=match):
        load_redial_movies(p)
