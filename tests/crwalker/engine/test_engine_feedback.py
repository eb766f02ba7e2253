"""Unit tests of the negative-feedback rules and input clean-up (no models)."""

from __future__ import annotations

import pytest

from crwalker.engine.cards import clean_user_text
from crwalker.engine.feedback import Preferences, seen_it_targets


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("seen it", [4]),
        ("I've already watched that one, sorry", [4]),
        ("seen them both", [4, 7]),
        ("i saw those already", [4, 7]),
        ("haven't seen it", []),
        ("I have not seen it", []),
        ("never watched it", []),
        ("have you seen it?", []),
        ("sounds great", []),
    ],
)
def test_seen_it_targets(text, expected):
    assert seen_it_targets(text, [4, 7]) == expected
    assert seen_it_targets(text, []) == []


def test_latest_mention_decides_and_exclusions():
    types = ["class", "genre", "movie", "movie", "person"]
    nbrs = {1: [2], 4: [3]}
    p = Preferences()
    span = {"entity_id": 1, "negated": True, "start": 3, "end": 8}
    assert p.apply_linked([span], types, "no horror") == [1]
    assert p.recommend_exclusions(types, lambda e: nbrs.get(e, [])) == {1, 2}
    p.apply_linked([dict(span, negated=False)], types, "horror is fine")
    assert p.rejected == set()
    p.feedback(3, "dislike")
    p.feedback(3, "like")
    assert p.liked == {3} and p.disliked == set()
    with pytest.raises(ValueError):
        p.feedback(3, "meh")
    assert Preferences.from_json(p.to_json(), 5) == p


def test_clean_user_text():
    assert clean_user_text(None) == ""
    assert clean_user_text("  a\x00b\tc\n ") == "a b c"
    assert clean_user_text("👨‍👩‍👧 ok") == "👨‍👩‍👧 ok"
    long = clean_user_text("word " * 50_000)
    assert len(long) <= 1000 and long.endswith("word")


def test_bench_replays_seeker_turns(tmp_path):
    from crwalker.engine.bench import pct, seeker_sessions
    from data_scripts.utils.io import write_jsonl

    s, r = "seeker", "recommender"
    write_jsonl(
        tmp_path / "test.jsonl",
        [
            {"conv_id": "1", "turns": [{"role": r, "text": "hi"}, {"role": s, "text": "a"}, {"role": s, "text": " "}]},
            {"conv_id": "2", "turns": [{"role": r, "text": "hello"}]},
            {"conv_id": "3", "turns": [{"role": s, "text": "b"}, {"role": r, "text": "x"}, {"role": s, "text": "c"}]},
        ],
    )
    assert seeker_sessions(tmp_path / "test.jsonl", 8) == [["a"], ["b", "c"]]
    assert seeker_sessions(tmp_path / "test.jsonl", 1) == [["a"], ["b"]]
    assert pct([1.0, 2.0, 3.0], 50) == 2.0 and pct([], 95) is None
