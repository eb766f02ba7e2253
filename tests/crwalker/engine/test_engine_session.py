"""Session behaviour on the tiny KG: events, entity status, negative feedback, state, bad input, threads."""

from __future__ import annotations

import json
import threading

import pytest
import torch

from crwalker.engine import Session, TurnResult, WalkControls
from crwalker.engine.engine import cap_leaves
from crwalker.engine.session import EMPTY_REPLY_FALLBACK

ALL = WalkControls(threshold=0.0, width=5, max_leaves=10)  # tau = 0: every candidate scores above it


def tree_ids(result: TurnResult) -> set[int]:
    out = set()
    for n in result.tree:
        out.add(n.entity_id)
        out.update(c.entity_id for c in n.children)
    return out


def rec_ids(result: TurnResult) -> list[int]:
    return [c.entity_id for c in result.recommendations]


def strip_timings(d: dict) -> dict:
    d = dict(d)
    d.pop("timings", None)
    return d


def test_events_order_and_history(make_engine):
    eng = make_engine("recommend")
    s = eng.new_session()
    assert len(s.id) == 32 and s.id != eng.new_session().id
    events = list(s.respond("i like action movies with arnold schwarzenegger", ALL))
    kinds = [e.kind for e in events]
    assert kinds[0] == "reasoning" and kinds[-1] == "done" and set(kinds[1:-1]) <= {"token"}
    first, final = events[0].result, events[-1].result
    assert first.reply == "" and first.act_text.startswith("[ Recommend")
    assert final.reply == "".join(e.text for e in events if e.kind == "token").strip()
    assert final.turn_index == 0 and first.tree == final.tree
    for k in ("link_ms", "encode_ms", "walk_ms", "first_token_s", "total_s"):
        assert final.timings[k] is not None
    assert [t["role"] for t in s.turns] == ["seeker", "recommender"]
    assert {x["name"] for x in final.linked} >= {"Action", "Arnold Schwarzenegger"}
    # recommendations are the tree's movies, with cards from movie_info.jsonl
    assert rec_ids(final) and set(rec_ids(final)) <= tree_ids(final)
    card = final.recommendations[0]
    assert card.plot.startswith("plot of") and card.year is not None and "(" not in card.title
    assert len(final.ranked) <= 50 and all(isinstance(e, int) for e, _ in final.ranked)
    json.dumps(final.to_json())
    assert TurnResult.from_json(json.loads(json.dumps(final.to_json()))) == final
    second = s.say("anything else?", ALL)
    assert second.turn_index == 1 and len(s.turns) == 4


def test_entity_status_mentioned_in_tree(make_engine):
    s = make_engine("chat").new_session()
    r = s.say("i love arnold schwarzenegger", ALL)
    hop1 = {n.entity_id: n for n in r.tree}
    assert 9 in hop1 and hop1[9].mentioned and hop1[9].hop == 1
    kids = {c.entity_id: c for c in hop1[9].children}
    assert set(kids) == {4, 5} and not any(c.mentioned for c in kids.values())
    assert r.recommendations == []  # chat turns recommend nothing
    assert 9 in s.mentioned


def test_rejected_genre_never_in_trees_or_recs(make_engine):
    s = make_engine("recommend").new_session()
    r = s.say("no horror please, something with action", ALL)
    assert 13 in s.rejected and 13 in r.rejected_now
    assert any(x["entity_id"] == 13 and x["negated"] for x in r.linked)
    for res in [r, s.say("and from the 80s?", ALL), s.say("more?", ALL)]:
        assert 13 not in tree_ids(res)
        assert 6 not in rec_ids(res) and 6 not in [e for e, _ in res.ranked]  # Alien is a horror movie


def test_rejected_person_excludes_their_movies(make_engine):
    s = make_engine("recommend").new_session()
    r = s.say("no james cameron, i like action", ALL)
    assert 10 in s.rejected
    assert 10 not in tree_ids(r)
    assert set(rec_ids(r)) <= {6, 8} and not {4, 5, 7} & {e for e, _ in r.ranked}


def test_no_repeated_recommendations_and_seen_it(make_engine):
    s = make_engine("recommend").new_session()
    one = WalkControls(threshold=0.0, width=1, max_leaves=1)
    r1 = s.say("something with action", one)
    first = rec_ids(r1)
    assert len(first) == 1
    r2 = s.say("seen it", one)
    assert first[0] in s.rejected and first[0] in r2.rejected_now and first[0] in s.prefs.seen
    assert not set(first) & set(rec_ids(r2))
    r3 = s.say("haven't seen it, but another one?", one)
    assert r3.rejected_now == []
    seen_before = set(first) | set(rec_ids(r2))
    assert not seen_before & set(rec_ids(r3)) and not seen_before & {e for e, _ in r3.ranked}


def test_reject_and_feedback_api(make_engine):
    s = make_engine("recommend").new_session()
    s.reject(7)
    s.reject(14)
    one = WalkControls(threshold=0.0, width=1, max_leaves=5)
    r = s.say("action movies", one)
    disliked = r.ranked[1][0]
    s.feedback(disliked, "dislike")
    s.feedback(8, "like")
    assert 8 in s.walker_context()
    for res in [r, s.say("more", one), s.say("more", one)]:
        ids = tree_ids(res)
        assert 7 not in ids and 14 not in ids and 7 not in rec_ids(res)
    assert disliked not in rec_ids(res) and disliked not in [e for e, _ in res.ranked]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda s: s.feedback(-1, "like"), "not a KG entity"),
        (lambda s: s.feedback(10_000, "seen"), "not a KG entity"),
        (lambda s: s.feedback("4", "like"), "must be an int"),
        (lambda s: s.feedback(4.0, "like"), "must be an int"),
        (lambda s: s.feedback(13, "dislike"), "feedback is for movies"),
        (lambda s: s.feedback(4, "love"), "feedback kind"),
        (lambda s: s.reject(0), "generic class"),
        (lambda s: s.reject(None), "must be an int"),
    ],
)
def test_invalid_feedback_raises_value_error(make_engine, call, match):
    s = make_engine("recommend").new_session()
    with pytest.raises(ValueError, match=match):
        call(s)


def test_walk_controls_validation_and_leaf_cap(make_engine):
    with pytest.raises(ValueError):
        WalkControls(threshold=1.5)
    with pytest.raises(ValueError):
        WalkControls(width=0)
    with pytest.raises(ValueError):
        WalkControls(max_leaves=0)
    assert cap_leaves([(1, [2, 3]), (4, []), (5, [6])], 3) == [(1, [2, 3]), (4, [])]
    assert cap_leaves([(1, [2, 3])], 1) == [(1, [2])]
    s = make_engine("recommend").new_session()
    r = s.say("i like action with arnold schwarzenegger and james cameron", WalkControls(0.0, 5, 2))
    assert sum(max(1, len(n.children)) for n in r.tree) <= 2 and len(r.recommendations) <= 2


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n\t ",
        "x" * 100_000,
        "\x00\x01\x1b[31mred\x7f",
        "🎬🍿👨‍👩‍👧 movie?",
        "我想看电影",
        "¿Qué película?",
        None,
        42,
    ],
)
def test_bad_inputs_always_get_a_reply(make_engine, text):
    s = make_engine(None).new_session()
    r = s.say(text)
    assert isinstance(r.reply, str) and r.reply.strip()
    assert len(r.user_text) <= 1000 and "\x00" not in r.user_text
    assert len(s.turns) == 2


def test_empty_generation_gets_fallback(make_engine, monkeypatch):
    eng = make_engine("chat")
    monkeypatch.setattr(eng.generator, "stream", lambda *a, **k: iter(()))
    r = eng.new_session().say("hello")
    assert r.reply == EMPTY_REPLY_FALLBACK


def test_failing_turn_leaves_session_unchanged(make_engine, monkeypatch):
    eng = make_engine("recommend")
    s = eng.new_session()
    s.say("no horror, action please", ALL)
    before = s.to_state()

    def boom(*a, **k):
        yield "partial"
        raise RuntimeError("generator died")

    monkeypatch.setattr(eng.generator, "stream", boom)
    with pytest.raises(RuntimeError, match="generator died"):
        s.say("not comedy either, seen it", ALL)
    assert s.to_state() == before
    # an abandoned stream does not commit either
    monkeypatch.undo()
    it = s.respond("more", ALL)
    next(it)
    it.close()
    assert s.to_state() == before


def test_state_round_trip(make_engine):
    eng = make_engine(None)
    s = eng.new_session()
    s.say("no horror, i like arnold schwarzenegger", ALL)
    s.say("seen it", ALL)
    s.feedback(8, "like")
    s.reject(15)
    state = json.loads(json.dumps(s.to_state()))
    s2 = Session.from_state(eng, state)
    assert s2.id == s.id and s2.to_state() == state
    a, b = s.say("something from the 80s?", ALL), s2.say("something from the 80s?", ALL)
    assert strip_timings(a.to_json()) == strip_timings(b.to_json())
    with pytest.raises(ValueError, match="state_version"):
        Session.from_state(eng, {"id": "x"})
    bad = dict(state, mentioned=[99999])
    with pytest.raises(ValueError, match="not a KG entity"):
        Session.from_state(eng, bad)


def test_no_cross_talk_between_threads(make_engine):
    eng = make_engine(None)
    scripts = {
        "a": ["no horror, i like arnold schwarzenegger", "seen it", "more action?"],
        "b": ["something funny", "sigourney weaver?", "not comedy"],
    }

    def run(lines):
        s = eng.new_session()
        return [strip_timings(s.say(t, ALL).to_json()) for t in lines], s.to_state()

    ref = {k: run(v) for k, v in scripts.items()}
    out: dict[str, list] = {k: [] for k in scripts}
    barrier = threading.Barrier(2)

    def worker(k):
        barrier.wait()
        for _ in range(3):
            out[k].append(run(scripts[k]))

    threads = [threading.Thread(target=worker, args=(k,)) for k in scripts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in scripts:
        assert len(out[k]) == 3
        for results, state in out[k]:
            assert results == ref[k][0]
            assert {x: v for x, v in state.items() if x not in ("id", "results")} == {
                x: v for x, v in ref[k][1].items() if x not in ("id", "results")
            }


def test_stop_at_done_feedback_mid_turn_and_cross_thread_resume(make_engine):
    eng = make_engine("recommend")
    s = eng.new_session()
    it = s.respond("i like action", ALL)
    first = next(it)
    assert first.kind == "reasoning"
    s.feedback(8, "like")  # given while the turn is running: kept after the commit
    s.reject(15)
    assert s.to_state()["turns"] == []  # nothing committed yet, and no deadlock
    box = {}

    def finish():  # resume the generator from another thread (as Gradio does)
        for ev in it:
            if ev.kind == "done":
                box["done"] = ev.result
                break  # stop at "done" without exhausting the generator

    t = threading.Thread(target=finish)
    t.start()
    t.join()
    assert box["done"].reply and len(s.to_state()["turns"]) == 2
    assert 8 in s.prefs.liked and 15 in s.rejected
    assert set(rec_ids(box["done"])) <= set(s.recommended)
    assert s.say("more", ALL).turn_index == 1  # the turn lock was released


def test_session_feeds_the_dialogue_state_to_the_walker(make_engine, monkeypatch):
    from crwalker.state import dialogue_state

    eng = make_engine("recommend")
    s = eng.new_session()
    seen = []
    real = eng.walk

    def spy(feats, context, controls, tree_exclude, rec_exclude, state=None, utt_x=None, clf_logp=None):
        assert clf_logp is None  # this walker fuses no intent classifier
        seen.append((list(state), len(context), utt_x))
        return real(feats, context, controls, tree_exclude, rec_exclude, state, utt_x, clf_logp)

    monkeypatch.setattr(eng, "walk", spy)
    s.say("i like action movies", ALL)
    s.say("any with arnold schwarzenegger?", ALL)
    (st0, n0, x0), (st1, n1, x1) = seen
    # intent_utterance (default on): the user utterance alone is encoded as the pair ("", x_t), as in training
    assert eng.cfg.intent_utterance
    assert torch.allclose(x0, eng.encode([("", "i like action movies")])[0])
    assert torch.allclose(x1, eng.encode([("", "any with arnold schwarzenegger?")])[0])
    assert st0 == dialogue_state(0, 1, [], "i like action movies", n0)
    # second turn: one earlier system turn (a recommend act), the user turn is index 3 of the history + 1
    assert st1 == dialogue_state(1, 3, ["recommend"], "any with arnold schwarzenegger?", n1)
