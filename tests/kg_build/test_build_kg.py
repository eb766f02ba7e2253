"""Tests of ``python -m kg_build build`` on the hand-written fixture in tests/fixtures/kg_build/datasets.

The fixture mirrors the layout of ../shared/datasets with 9 movies: The Terminator (1984),
Terminator 2 (1991; no id2info record, MovieLens title spelled "Terminator 2 - Judgement Day"),
Alien (1979), Aliens (1986), Superbad (2007), Vanilla Sky (2001), Mystery Movie (nothing known),
Okja (year only via MovieLens IMDb id) and Forgotten Film (year only in its DBpedia URI).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from data_scripts.utils.io import DataFormatError
from kg_build import build
from kg_build.schema import MOVIE_INFO_FILE, KnowledgeGraph, read_movie_info, reverse_relation
from kg_build.sources import company_key, dbpedia_label, name_key, split_movielens_title

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "kg_build" / "datasets"
REQUIRED_KEYS = ("entities", "movies", "persons", "genres", "times", "generic_classes", "relation_types", "edges")


def _cfg(datasets: Path = FIXTURE, out: Path | str = "unused", **kw) -> build.BuildConfig:
    return build.BuildConfig(datasets=str(datasets), out=str(out), stats_out="", progress=False, **kw)


@pytest.fixture(scope="module")
def kg() -> KnowledgeGraph:
    return build.build_kg(_cfg()).kg


def _facts(kg: KnowledgeGraph) -> set[tuple[str, str, str]]:
    return {
        (kg.entities[s].name, kg.relations[r], kg.entities[t].name)
        for r, s, t in zip(kg.edge_type.tolist(), kg.edge_index[0].tolist(), kg.edge_index[1].tolist(), strict=True)
    }


def _one(kg: KnowledgeGraph, name: str, type_: str):
    hits = [e for e in kg.entities if e.name == name and e.type == type_]
    assert len(hits) == 1, f"{name!r} ({type_}) appears {len(hits)} times"
    return hits[0]


# ---------------------------------------------------------------------------------------------- helpers
def test_name_helpers():
    assert dbpedia_label("<http://dbpedia.org/resource/James_Cameron_(director)>") == "James Cameron"
    assert dbpedia_label("<http://dbpedia.org/resource/Pen%C3%A9lope_Cruz>") == "Penélope Cruz"
    assert name_key("PENÉLOPE CRUZ") == name_key("Penelope Cruz") == "penelope cruz"
    assert name_key("Robert Downey Jr.") == name_key("Robert Downey Jr. (actor)")
    assert split_movielens_title("City of Lost Children, The (Cité des enfants perdus, La) (1995)") == (
        "The City of Lost Children",
        ("La Cité des enfants perdus",),
        1995,
    )
    assert split_movielens_title("(500) Days of Summer (2009)") == ("(500) Days of Summer", (), 2009)


def test_decades_and_aliases():
    assert build.decade_of(1984) == "1980s" and build.decade_of(2000) == "2000s" and build.decade_of(1909) == "1900s"
    a = build.decade_aliases("1980s")
    assert {"1980s", "80s", "80's", "eighties", "the 80's", "the eighties"} <= set(a)
    assert "10s" not in build.decade_aliases("2010s") and "00s" not in build.decade_aliases("1900s")
    m = build.movie_aliases("The Terminator", 1984, [])
    assert {"the terminator", "terminator", "the terminator (1984)"} <= set(m)
    assert all(x == x.lower() for x in m)
    assert "what happened to monday?" in build.movie_aliases("What Happened to Monday%3F", 2017, [])


# ---------------------------------------------------------------------------------------------- graph
def test_all_movies_kept_in_redial_order_even_isolated(kg):
    movies = [kg.entities[i] for i in kg.movie_ids.tolist()]
    assert [m.redial_id for m in movies] == [101, 102, 103, 104, 105, 106, 107, 108, 109]
    assert all(e.type == "class" for e in kg.entities[: movies[0].id])  # classes first, then movies
    assert [e.name for e in kg.entities[: movies[0].id]] == ["Actor", "Company", "Director", "Genre", "Time", "Writer"]
    assert "genres" in _one(kg, "Genre", "class").aliases
    isolated = _one(kg, "Mystery Movie", "movie")
    assert kg.out_edges(isolated.id) == []
    assert kg.stats["movies_isolated"] == 1


def test_same_person_from_both_sources_is_one_node(kg):
    facts = _facts(kg)
    cameron = _one(kg, "James Cameron", "person")
    assert set(cameron.classes) == {"Director", "Writer"}
    # T2 director only from DBpedia, Terminator from both, Aliens from id2info and DBpedia
    for movie in ("The Terminator (1984)", "Terminator 2: Judgment Day (1991)", "Aliens (1986)"):
        assert ("James Cameron", "director_of", movie) in facts
    weaver = _one(kg, "Sigourney Weaver", "person")  # DBpedia "Sigourney_Weaver_(actress)" + IMDb
    assert {t for _, t in kg.out_edges(weaver.id)} >= {kg.by_name["Alien (1979)"], kg.by_name["Aliens (1986)"]}
    cruz = _one(kg, "Penélope Cruz", "person")  # DBpedia percent-escaped vs IMDb upper-case
    assert "penelope cruz" in cruz.aliases
    assert not [e for e in kg.entities if "(" in e.name and e.type == "person"]


def test_relations_directions_and_dbpedia_filtering(kg):
    facts = _facts(kg)
    assert "composer_of" not in kg.relations and "Brad Fiedel" not in kg.by_name  # off by default
    assert ("Hemdale Film Corporation", "company_of", "The Terminator (1984)") in facts
    names = {e.name for e in kg.entities}
    assert "Orion Pictures" not in names  # distributor is not used
    assert "Unrelated Actor" not in names  # head is not a ReDial movie
    assert "Science fiction film" not in names  # DBpedia genre is not used (MovieLens genres are)
    for s, r, t in facts:  # forward relations point attribute -> movie / class
        if not r.endswith("_rev"):
            assert kg.entities[kg.by_name[s]].type not in {"movie", "class"}
            assert kg.entities[kg.by_name[t]].type == ("class" if r == "is_a" else "movie")


def test_decades(kg):
    facts = _facts(kg)
    assert ("1980s", "time_of", "The Terminator (1984)") in facts
    assert ("1980s", "time_of", "Aliens (1986)") in facts
    assert ("2010s", "time_of", "Okja") in facts  # year via MovieLens movie with the same IMDb id
    assert ("1990s", "time_of", "Forgotten Film") in facts  # year from the DBpedia URI "(1995_film)"
    assert _one(kg, "Okja", "movie").year == 2017
    eighties = _one(kg, "1980s", "time")
    assert {"80s", "eighties", "the 80's"} <= set(eighties.aliases) and eighties.classes == ("Time",)


def test_genres_movielens_fuzzy_and_imdb(kg):
    facts = _facts(kg)
    genres = {e.name for e in kg.entities if e.type == "genre"}
    assert genres <= set(build.GENRES) and "IMAX" not in genres
    # T2 has no id2info record: genres only from MovieLens "Terminator 2 - Judgement Day (1991)" (fuzzy)
    t2 = "Terminator 2: Judgment Day (1991)"
    assert {g for g, r, m in facts if r == "genre_of" and m == t2} == {"Action", "Sci-Fi"}
    assert "terminator 2 - judgement day" in _one(kg, t2, "movie").aliases
    assert ("Comedy", "genre_of", "Superbad (2007)") in facts  # ml-100k + IMDb
    assert ("Children", "genre_of", "Okja") in facts  # IMDb "family" -> MovieLens "Children"
    assert "Biography" not in genres
    horror = _one(kg, "Horror", "genre")
    assert "scary" in horror.aliases
    report = kg.stats["build_report"]["movielens_links"]
    assert report["ml-latest-small:fuzzy"] == 1 and report["ml-latest-small:imdb_id"] >= 4


def test_reverse_edges_sorted_unique(kg):
    triples = list(zip(kg.edge_type.tolist(), kg.edge_index[0].tolist(), kg.edge_index[1].tolist(), strict=True))
    assert triples == sorted(set(triples))
    rel = kg.relation_ids
    have = set(triples)
    for r, s, t in triples:
        assert (rel[reverse_relation(kg.relations[r])], t, s) in have
    assert len(kg.relations) == 2 * len(kg.forward_relations())
    assert all(kg.relations[i + len(kg.relations) // 2] == r + "_rev" for i, r in enumerate(kg.forward_relations()))


def test_is_a_edges_match_classes(kg):
    facts = _facts(kg)
    for e in kg.entities:
        if e.type not in {"class", "movie"}:
            assert e.classes
            for c in e.classes:
                assert (e.name, "is_a", c) in facts and (c, "is_a_rev", e.name) in facts


def test_stats_keys(kg):
    s = kg.stats
    for k in REQUIRED_KEYS:
        assert isinstance(s[k], int), k
    assert s["movies"] == 9 and s["edges"] == len(kg.edge_type) and s["relation_types"] == len(kg.relations)
    assert (
        s["entities"]
        == len(kg)
        == sum(s[k] for k in ("movies", "persons", "genres", "times", "generic_classes", "companies"))
    )


def test_company_variants_merge():
    assert company_key("Pixar Animation Studios") == company_key("Pixar") == "pixar"
    assert company_key("Walt Disney Pictures") == company_key("Walt Disney Animation Studios") == "walt disney"
    assert company_key("Pictures") == "pictures"
    kg = build.build_kg(_cfg()).kg
    brandywine = [e for e in kg.entities if e.type == "company" and e.name.startswith("Brandywine")]
    assert len(brandywine) == 1
    movies = {kg.entities[t].name for r, t in kg.out_edges(brandywine[0].id) if kg.relations[r] == "company_of"}
    assert movies == {"Alien (1979)", "Aliens (1986)"}
    assert "disney" in build.COMPANY_ALIASES["walt disney"]


def test_composer_option():
    kg = build.build_kg(_cfg(relations=["composer_of"])).kg
    assert kg.relations == ["composer_of", "is_a", "composer_of_rev", "is_a_rev"]
    assert _one(kg, "Brad Fiedel", "person").classes == ("Composer",)


def test_relation_subset_option():
    kg = build.build_kg(_cfg(relations=["actor_of", "genre_of"])).kg
    assert kg.relations == ["actor_of", "genre_of", "is_a", "actor_of_rev", "genre_of_rev", "is_a_rev"]
    assert {e.type for e in kg.entities} == {"class", "movie", "person", "genre"}
    with pytest.raises(ValueError, match="unknown relation"):
        build.build_kg(_cfg(relations=["starring"]))


# ---------------------------------------------------------------------------------------------- files
def test_cli_writes_identical_bytes_twice(tmp_path):
    outs = [tmp_path / "a", tmp_path / "b"]
    stats = tmp_path / "stats.json"
    for i, out in enumerate(outs):
        # second run uses a different spelling of the datasets path: manifest keys are relative
        ds = FIXTURE if i == 0 else Path(str(FIXTURE) + "/../datasets")
        assert (
            build.main(["--datasets", str(ds), "--out", str(out), "--stats-out", str(stats), "--progress", "false"])
            == 0
        )
    files = sorted(p.name for p in outs[0].iterdir())
    assert files == ["entities.jsonl", "kg.safetensors", "manifest.json", MOVIE_INFO_FILE]
    for name in files:
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
    res = json.loads(stats.read_text())
    assert all(isinstance(res[k], int) for k in REQUIRED_KEYS)
    assert {"git_commit", "config", "data_sha256"} <= set(res)
    loaded = KnowledgeGraph.load(outs[0])
    assert loaded.sources and all(not Path(p).is_absolute() for p in loaded.sources)
    np.testing.assert_array_equal(loaded.edge_index, build.build_kg(_cfg()).kg.edge_index)


def test_movie_info(tmp_path):
    result = build.build_kg(_cfg())
    build.write_kg(result, tmp_path)
    info = read_movie_info(tmp_path)
    kg = KnowledgeGraph.load(tmp_path)
    assert sorted(info) == kg.movie_ids.tolist()
    t1 = info[kg.by_redial_id[101]]
    assert set(t1) == {
        "entity",
        "redial_id",
        "name",
        "year",
        "genres",
        "directors",
        "writers",
        "stars",
        "plot",
        "imdb_id",
    }
    assert t1["stars"] == ["Arnold Schwarzenegger", "Linda Hamilton", "Michael Biehn"]  # IMDb billing order
    assert t1["directors"] == ["James Cameron"] and t1["imdb_id"] == "tt0088247"
    assert t1["genres"] == ["Action", "Sci-Fi", "Thriller"]
    t2 = info[kg.by_redial_id[102]]  # DBpedia only
    assert t2["stars"] == ["Arnold Schwarzenegger", "Linda Hamilton"] and t2["plot"] is None
    assert info[kg.by_redial_id[104]]["plot"] is None  # empty plot -> null


# ---------------------------------------------------------------------------------------------- bad input
@pytest.fixture()
def ds_copy(tmp_path) -> Path:
    dst = tmp_path / "datasets"
    shutil.copytree(FIXTURE, dst)
    return dst


def test_truncated_json_names_file(ds_copy):
    p = ds_copy / "kg" / "dbpedia" / "dbpedia_subkg.json"
    p.write_text(p.read_text()[:40])
    with pytest.raises(DataFormatError, match="dbpedia_subkg.json"):
        build.build_kg(_cfg(ds_copy))


def test_bad_edge_names_file(ds_copy):
    p = ds_copy / "kg" / "dbpedia" / "dbpedia_subkg.json"
    p.write_text(json.dumps({"0": [[2, 99999]]}))
    with pytest.raises(DataFormatError, match=r"dbpedia_subkg.json.*tail id 99999"):
        build.build_kg(_cfg(ds_copy))


def test_bad_id2info_record_names_file(ds_copy):
    p = ds_copy / "kg" / "imdb" / "id2info.json"
    p.write_text(json.dumps({"101": {"name": "x", "star": [1, 2]}}))
    with pytest.raises(DataFormatError, match=r"id2info.json.*movie 101.*'star'"):
        build.build_kg(_cfg(ds_copy))


def test_bad_movielens_line_names_file_and_line(ds_copy):
    p = ds_copy / "movielens" / "ml-100k" / "u.item"
    p.write_text(p.read_text() + "4|Broken (1999)|only a few fields\n")
    with pytest.raises(DataFormatError, match=r"u.item:4"):
        build.build_kg(_cfg(ds_copy))


def test_missing_file_and_folder(ds_copy, tmp_path):
    (ds_copy / "kg" / "imdb" / "id2info.json").unlink()
    with pytest.raises(FileNotFoundError, match="id2info.json"):
        build.build_kg(_cfg(ds_copy))
    with pytest.raises(FileNotFoundError, match="datasets folder not found"):
        build.build_kg(_cfg(tmp_path / "nope"))


def test_stats_only_reads_existing_kg(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="kg_build build"):
        build.main(["--out", str(tmp_path / "missing"), "--stats-only"])
    build.write_kg(build.build_kg(_cfg()), tmp_path)
    before = sorted((p.name, p.stat().st_mtime_ns) for p in tmp_path.iterdir())
    assert build.main(["--out", str(tmp_path), "--stats-only"]) == 0
    out = capsys.readouterr().out
    assert "| movies | 9 |" in out and "actor_of_rev" in out
    assert sorted((p.name, p.stat().st_mtime_ns) for p in tmp_path.iterdir()) == before
