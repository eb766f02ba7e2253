"""ChatApp handlers with the fake engine (no server): streaming, storage, feedback, sessions, escaping."""

from __future__ import annotations

import gradio as gr
import pytest
from conftest import make_fake_app

from ui.__main__ import ServeConfig, load_engine, parse_auth
from ui.app import ERROR_REPLY, RESPOND_OUTPUTS

OUT = {name: i for i, name in enumerate(RESPOND_OUTPUTS)}


def run_turn(app, text, display=None, cid=None, tau=0.5, width=5, leaves=10):
    """Drive ``respond`` to the end; returns (all yields, final chat display, conversation id, last state)."""
    ys = list(app.respond(text, display, cid, tau, width, leaves))
    final_display, new_cid, last = display, cid, None
    for y in ys:
        if isinstance(y[OUT["display"]], list):
            final_display = y[OUT["display"]]
        if isinstance(y[OUT["conversation_id"]], str):
            new_cid = y[OUT["conversation_id"]]
        if isinstance(y[OUT["last"]], dict):
            last = y[OUT["last"]]
    return ys, final_display, new_cid, last


def test_turn_streams_renders_and_is_stored(fake_app):
    ys, display, cid, last = run_turn(fake_app, "I love Horror <script>alert(1)</script>")
    assert len(ys) >= 4  # user echo, reasoning, >=1 token push, final
    assert all(len(y) == len(RESPOND_OUTPUTS) for y in ys)
    reasoning = ys[1]
    assert "<svg" in reasoning[OUT["tree"]] and "movie-card" in reasoning[OUT["cards"]]
    assert [m["role"] for m in display] == ["user", "assistant"]
    assert "<script" not in display[0]["content"] and "&lt;script&gt;" in display[0]["content"]
    assert "Alien" in display[1]["content"] and "<b>" not in display[1]["content"]
    token_pushes = [y for y in ys[2:-1] if isinstance(y[OUT["chatbot"]], list)]
    assert token_pushes, "reply must be streamed"
    turns = fake_app.store.turns(cid)
    assert len(turns) == 1 and turns[0]["user_text"] == "I love Horror <script>alert(1)</script>"
    assert turns[0]["reply"].startswith("How about Alien")
    assert turns[0]["controls"] == {"threshold": 0.5, "width": 5, "max_leaves": 10, "guided": False}
    assert {c["entity_id"] for c in turns[0]["recommendations"]} == {"m1", "m2", "m9"}
    assert last["conversation_id"] == cid and last["ids"]["m1"] == "m1"


def test_controls_reach_the_engine(fake_app):
    _, _, cid, last = run_turn(fake_app, "Horror please", width=1)
    assert len(fake_app.store.turns(cid)[0]["recommendations"]) == 1


def test_empty_input_is_not_sent(fake_app):
    for text in ["", "   ", "\x00\x01\n", None]:
        ys = list(fake_app.respond(text, [], None, 0.5, 5, 10))
        assert len(ys) == 1 and "Please type a message" in ys[0][OUT["status"]]
    assert fake_app.store.counts()["turns"] == 0


def test_long_input_is_truncated(fake_app):
    _, _, cid, _ = run_turn(fake_app, "Horror " * 20_000)
    t = fake_app.store.turns(cid)[0]
    assert t["truncated"] and len(t["user_text"]) <= fake_app.settings.max_chars


def test_failed_turn_is_not_stored_and_session_restores(fake_app):
    _, display, cid, _ = run_turn(fake_app, "Horror")
    ys, display, cid2, _ = run_turn(fake_app, "Comedy __boom__", display, cid)
    assert cid2 == cid
    assert display[-1]["content"] == ERROR_REPLY
    assert "not saved" in ys[-1][OUT["status"]]
    assert len(fake_app.store.turns(cid)) == 1  # only the completed turn
    # The half-run session was dropped; the next turn continues from the saved state.
    _, display, _, _ = run_turn(fake_app, "Comedy", display, cid)
    turns = fake_app.store.turns(cid)
    assert [t["turn_index"] for t in turns] == [0, 1]
    assert fake_app.store.load_state(cid)["turns"] == ["Horror", "Comedy"]


def test_feedback_excludes_and_is_stored(fake_app):
    _, display, cid, last = run_turn(fake_app, "Horror")
    assert fake_app.feedback("dislike", None, cid, last).startswith("Pick")
    assert fake_app.feedback("dislike", "m2", None, last).startswith("Start")
    assert fake_app.feedback("dislike", "zzz", cid, last).startswith("Unknown")
    msg = fake_app.feedback("dislike", "m2", cid, last)
    assert "disliked" in msg and "The Thing" in msg
    assert "excluded" in fake_app.feedback("reject", "g:Horror", cid, last)
    _, display, _, _ = run_turn(fake_app, "Horror again", display, cid)
    recs = {c["entity_id"] for c in fake_app.store.turns(cid)[-1]["recommendations"]}
    assert "m2" not in recs
    kinds = [f["kind"] for f in fake_app.store.feedback(cid)]
    assert kinds == ["dislike", "reject"]
    # Feedback aimed at another conversation's choices is refused.
    assert "earlier conversation" in fake_app.feedback("like", "m1", "other", last)


def test_sessions_are_isolated_and_lru_restores_from_store(tmp_path):
    app = make_fake_app(tmp_path / "chat.sqlite3", max_sessions=2)
    cids = []
    for genre in ["Horror", "Comedy", "Action"]:
        _, _, cid, _ = run_turn(app, f"I want {genre}")
        cids.append(cid)
    assert len(set(cids)) == 3 and len(app.sessions) == 2
    _, _, same, _ = run_turn(app, "and Animation", [], cids[0])  # evicted: restored from SQLite
    assert same == cids[0] and app.sessions.restored == 1
    assert app.store.load_state(cids[0])["turns"] == ["I want Horror", "and Animation"]
    assert [t["user_text"] for t in app.store.turns(cids[1])] == ["I want Comedy"]


def test_new_conversation_and_build(fake_app):
    out = fake_app.new_conversation()
    assert len(out) == len(RESPOND_OUTPUTS)
    assert out[OUT["conversation_id"]] is None and out[OUT["chatbot"]] == []
    demo = fake_app.build()
    assert isinstance(demo, gr.Blocks)
    names = {d.get("api_name") for d in demo.config["dependencies"]}
    assert {"send", "like", "dislike", "seen", "reject", "new_conversation"} <= names


def test_cli_helpers(tmp_path):
    assert parse_auth("alice:s3:cret") == ("alice", "s3:cret")
    assert parse_auth(None) is None
    with pytest.raises(ValueError):
        parse_auth("nopassword")
    cfg = ServeConfig(bundle=str(tmp_path / "absent"), walker=None)
    assert cfg.host == "127.0.0.1"
    with pytest.raises(FileNotFoundError, match="no model"):
        load_engine(cfg)


def test_controls_are_clamped(fake_app):
    assert fake_app.clamp_controls(5.0, 0, 1000) == {"threshold": 1.0, "width": 1, "max_leaves": 50}
    assert fake_app.clamp_controls(None, "x", float("nan")) == {"threshold": 0.5, "width": 5, "max_leaves": 10}
    assert fake_app.clamp_controls(0.25, 3.4, 7.6) == {"threshold": 0.25, "width": 3, "max_leaves": 8}


def test_cli_without_model_exits_with_a_clear_message(tmp_path):
    from ui.__main__ import main

    with pytest.raises(SystemExit, match="no model"):
        main(["--bundle", str(tmp_path / "absent"), "--db", str(tmp_path / "c.sqlite3")])
    with pytest.raises(SystemExit, match="needs --generator"):
        main(["--walker", str(tmp_path / "w.safetensors")])


def _visible(update) -> bool:
    return isinstance(update, dict) and update.get("visible") is True


def test_guided_question_buttons_and_answer(fake_app):
    ys = list(fake_app.respond("hi there", [], None, 0.5, 5, 10, True))
    final = ys[-1]
    assert not _visible(ys[0][OUT["answer_yes"]])  # hidden while a turn runs
    assert _visible(final[OUT["answer_yes"]]) and _visible(final[OUT["answer_no"]])
    q = final[OUT["question"]]
    assert "guided-question" in q and "<b>Action</b> (Genre)" in q and "FAKE asks about" in q
    cid, display = ys[0][OUT["conversation_id"]], final[OUT["display"]]
    assert "Action" in display[-1]["content"]
    # the Yes button sends "Yes" in guided mode; the next turn recommends and hides the buttons
    ys = list(fake_app.answer(True, display, cid, 0.5, 5, 10, True))
    final = ys[-1]
    assert not _visible(final[OUT["answer_yes"]]) and "recommends now" in final[OUT["question"]]
    turns = fake_app.store.turns(cid)
    assert [t["user_text"] for t in turns] == ["hi there", "Yes"]
    assert turns[0]["controls"]["guided"] is True and turns[0]["intent"] == "query"
    assert {c["entity_id"] for c in turns[1]["recommendations"]} == {"m3", "m4", "m8"}  # the Action movies
    assert fake_app.store.load_state(cid)["guided"]["accepted"] == ["Action"]
    # No: the genre is excluded and the next genre is asked
    ys = list(fake_app.respond("hello", [], None, 0.5, 5, 10, True))
    cid2 = ys[0][OUT["conversation_id"]]
    ys = list(fake_app.answer(False, ys[-1][OUT["display"]], cid2, 0.5, 5, 10, True))
    assert "<b>Animation</b>" in ys[-1][OUT["question"]] and _visible(ys[-1][OUT["answer_no"]])


def test_guided_off_shows_no_question(fake_app):
    final = list(fake_app.respond("Horror", [], None, 0.5, 5, 10))[-1]
    assert final[OUT["question"]] == "" and not _visible(final[OUT["answer_yes"]])


def test_guided_checkbox_and_answer_api(fake_app, tmp_path):
    demo = fake_app.build()
    names = {d.get("api_name") for d in demo.config["dependencies"]}
    assert {"answer_yes", "answer_no"} <= names
    box = [c for c in demo.config["components"] if c.get("props", {}).get("elem_id") == "guided"]
    assert box and box[0]["props"]["interactive"] is True
    fake_app.engine.guide = None  # an engine without a guide policy: the checkbox is disabled
    box = [c for c in fake_app.build().config["components"] if c.get("props", {}).get("elem_id") == "guided"]
    assert box[0]["props"]["interactive"] is False and "not available" in box[0]["props"]["label"]


def test_cli_guide_folder_is_checked(tmp_path):
    cfg = ServeConfig(bundle=str(tmp_path), guide=str(tmp_path / "no-run"))
    with pytest.raises(FileNotFoundError, match="no policy.json"):
        load_engine(cfg)
