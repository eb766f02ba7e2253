"""ChatStore: one transaction per turn, crash safety, state round trip, JSONL export."""

from __future__ import annotations

import json
import threading

import pytest

from ui.__main__ import main as ui_main
from ui.store import ChatStore


def _result(i: int, text: str = "hi") -> dict:
    return {
        "turn_index": i,
        "user_text": text,
        "reply": f"reply {i}",
        "act_text": "recommend(Horror->Alien)",
        "intent": "recommend",
        "intent_probs": {"recommend": 0.7, "query": 0.2, "chat": 0.1},
        "linked": [{"entity_id": "g:Horror", "name": "Horror", "type": "genre", "span": [0, 6], "negated": False}],
        "tree": [{"entity_id": "g:Horror", "name": "Horror", "type": "genre", "hop": 1, "mentioned": True,
                  "score": 0.9, "children": []}],
        "recommendations": [{"entity_id": "m1", "title": "Alien", "year": 1979}],
        "ranked": [["m1", 0.9]],
        "timings": {"total_s": 0.1},
    }  # fmt: skip


def test_turns_and_state_round_trip(tmp_path):
    st = ChatStore(tmp_path / "db" / "chat.sqlite3")
    st.save_turn("c1", _result(0, "héllo 🎬 <b>"), {"n": 1}, {"threshold": 0.5}, meta={"engine": "x"})
    st.save_turn("c1", _result(1), {"n": 2})
    turns = st.turns("c1")
    assert [t["turn_index"] for t in turns] == [0, 1]
    assert turns[0]["user_text"] == "héllo 🎬 <b>"
    assert turns[0]["tree"][0]["name"] == "Horror"
    assert st.load_state("c1") == {"n": 2}
    assert st.load_state("missing") is None
    assert st.counts() == {"conversations": 1, "turns": 2, "feedback": 0}
    with st._conn() as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_duplicate_turn_index_is_rejected_without_partial_write(tmp_path):
    st = ChatStore(tmp_path / "chat.sqlite3")
    st.save_turn("c1", _result(0), {"n": 1})
    with pytest.raises(Exception):  # noqa: B017 - sqlite3.IntegrityError
        st.save_turn("c1", _result(0), {"n": 99})
    assert st.load_state("c1") == {"n": 1}
    assert st.counts()["turns"] == 1


def test_crash_mid_turn_leaves_no_partial_row(tmp_path):
    """The state is serialised after the turn row is inserted: a failure there must roll the row back."""
    st = ChatStore(tmp_path / "chat.sqlite3")
    st.save_turn("c1", _result(0), {"n": 1})
    with pytest.raises(TypeError):
        st.save_turn("c1", _result(1), {"bad": object()})
    assert st.counts() == {"conversations": 1, "turns": 1, "feedback": 0}
    assert st.load_state("c1") == {"n": 1}
    # A brand-new conversation whose first turn fails leaves nothing at all.
    with pytest.raises(TypeError):
        st.save_turn("c2", _result(0), {"bad": object()})
    assert st.conversation_ids() == ["c1"]
    # The store is still usable afterwards.
    st.save_turn("c1", _result(1), {"n": 2})
    assert st.counts()["turns"] == 2


def test_feedback_is_validated_and_stored_with_state(tmp_path):
    st = ChatStore(tmp_path / "chat.sqlite3")
    st.save_turn("c1", _result(0), {"n": 1})
    st.save_feedback("c1", "m1", "dislike", {"n": 1, "excluded": ["m1"]}, "Alien (1979)", 0)
    with pytest.raises(ValueError):
        st.save_feedback("c1", "m1", "hate", {"n": 1})
    assert st.feedback("c1") == [
        {"turn_index": 0, "entity_id": "m1", "label": "Alien (1979)", "kind": "dislike",
         "created_at": st.feedback("c1")[0]["created_at"]}
    ]  # fmt: skip
    assert st.load_state("c1")["excluded"] == ["m1"]


def test_concurrent_writers(tmp_path):
    st = ChatStore(tmp_path / "chat.sqlite3")
    errors = []

    def work(k: int) -> None:
        try:
            for i in range(10):
                st.save_turn(f"c{k}", _result(i, f"s{k}"), {"k": k, "i": i})
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert st.counts() == {"conversations": 6, "turns": 60, "feedback": 0}
    for k in range(6):
        assert {t["user_text"] for t in st.turns(f"c{k}")} == {f"s{k}"}


def test_export_round_trip_via_cli(tmp_path, capsys):
    db = tmp_path / "chat.sqlite3"
    st = ChatStore(db)
    st.save_turn("c1", _result(0, "first\nline"), {"n": 1}, meta={"engine": "fake"})
    st.save_turn("c2", _result(0, "other"), {"n": 1})
    st.save_turn("c1", _result(1), {"n": 2})
    st.save_feedback("c1", "m1", "seen", {"n": 2}, "Alien", 1)
    out = tmp_path / "out" / "conversations.jsonl"
    ui_main(["export", "--db", str(db), "--out", str(out)])
    assert "exported 2 conversations" in capsys.readouterr().out
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["c1", "c2"]
    assert [t["user_text"] for t in rows[0]["turns"]] == ["first\nline", "hi"]
    assert rows[0]["turns"][0]["recommendations"][0]["title"] == "Alien"
    assert rows[0]["feedback"][0]["kind"] == "seen"
    assert rows[0]["meta"] == {"engine": "fake"}
    assert rows[1]["feedback"] == []
    assert not list(out.parent.glob(".*.tmp"))


def test_export_missing_db_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="database not found"):
        ui_main(["export", "--db", str(tmp_path / "nope.sqlite3"), "--out", str(tmp_path / "x.jsonl")])


def test_process_killed_mid_transaction_loses_only_that_turn(tmp_path):
    """A real crash: the writer process dies (os._exit) after inserting the turn row, before COMMIT."""
    import subprocess
    import sys
    import textwrap

    db = tmp_path / "chat.sqlite3"
    script = textwrap.dedent(
        f"""
        import os
        import ui.store as store
        st = store.ChatStore({str(db)!r})
        st.save_turn("c1", {{"turn_index": 0, "user_text": "ok", "reply": "r"}}, {{"n": 1}})
        real = store._dumps
        def dying(obj):
            if obj == {{"crash": True}}:
                os._exit(3)  # no cleanup, no rollback: like a power cut / SIGKILL
            return real(obj)
        store._dumps = dying
        st.save_turn("c1", {{"turn_index": 1, "user_text": "lost", "reply": "r"}}, {{"crash": True}})
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    st = ChatStore(db)
    assert [t["user_text"] for t in st.turns("c1")] == ["ok"]
    assert st.load_state("c1") == {"n": 1}
    assert st._conn().execute("PRAGMA integrity_check").fetchone()[0] == "ok"
