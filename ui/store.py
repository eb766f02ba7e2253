"""SQLite store of chat conversations, turns and feedback (stdlib ``sqlite3``, WAL journal).

Each completed turn is written in ONE transaction together with the session state after it, so a crash
loses at most the turn in flight; feedback is written the same way. Connections are per thread (the
Gradio worker threads each get their own), with a busy timeout so concurrent writers wait, not fail.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from data_scripts.utils.io import atomic_write

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    n_turns INTEGER NOT NULL DEFAULT 0,
    state_json TEXT,
    meta_json TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS turns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    turn_index INTEGER NOT NULL,
    user_text TEXT NOT NULL,
    reply TEXT NOT NULL,
    act_text TEXT NOT NULL,
    intent TEXT,
    intent_probs_json TEXT NOT NULL,
    linked_json TEXT NOT NULL,
    tree_json TEXT NOT NULL,
    recommendations_json TEXT NOT NULL,
    ranked_json TEXT NOT NULL,
    controls_json TEXT NOT NULL,
    timings_json TEXT NOT NULL,
    truncated INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    UNIQUE (conversation_id, turn_index)
);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    turn_index INTEGER,
    entity_id TEXT NOT NULL,
    label TEXT,
    kind TEXT NOT NULL CHECK (kind IN ('like', 'dislike', 'seen', 'reject')),
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS turns_by_conversation ON turns (conversation_id, turn_index);
CREATE INDEX IF NOT EXISTS feedback_by_conversation ON feedback (conversation_id, id);
"""

FEEDBACK_KINDS = ("like", "dislike", "seen", "reject")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True)


class ChatStore:
    """Conversations, turns and feedback in one SQLite file.

    Args:
        path: Database file; parent folders are created. ``":memory:"`` is not supported (each thread
            would see its own empty database).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        con = self._conn()
        con.executescript(_SCHEMA)
        con.execute(
            "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
            (str(SCHEMA_VERSION),),
        )
        con.commit()

    # -- connections -------------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            con.row_factory = sqlite3.Row
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            con.execute("PRAGMA foreign_keys=ON")
            con.execute("PRAGMA busy_timeout=30000")
            self._local.con = con
        return con

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None

    class _Tx:
        def __init__(self, con: sqlite3.Connection):
            self.con = con

        def __enter__(self) -> sqlite3.Connection:
            self.con.execute("BEGIN IMMEDIATE")
            return self.con

        def __exit__(self, exc_type, exc, tb) -> None:
            if exc_type is None:
                self.con.execute("COMMIT")
            else:
                self.con.execute("ROLLBACK")

    def transaction(self) -> ChatStore._Tx:
        """A write transaction (``BEGIN IMMEDIATE`` … ``COMMIT``; ``ROLLBACK`` if the block raises)."""
        return ChatStore._Tx(self._conn())

    # -- writes ------------------------------------------------------------------------------------
    def save_turn(
        self,
        conversation_id: str,
        result: dict[str, Any],
        state: dict[str, Any],
        controls: dict[str, Any] | None = None,
        truncated: bool = False,
        meta: dict[str, Any] | None = None,
    ) -> int:
        """Record one completed turn and the session state after it, atomically.

        Args:
            conversation_id: The conversation (created on its first turn).
            result: ``TurnResult.to_json()`` of the finished turn.
            state: ``Session.to_state()`` after the turn (restores the session if it is evicted).
            controls: The walk controls used (threshold, width, max_leaves).
            truncated: Whether the user text was cut to the length limit.
            meta: Conversation metadata stored on creation (e.g. the engine description).

        Returns:
            The turn's row id.
        """
        now = time.time()
        with self.transaction() as con:
            con.execute(
                "INSERT INTO conversations(id, created_at, updated_at, meta_json) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(id) DO NOTHING",
                (conversation_id, now, now, _dumps(meta or {})),
            )
            cur = con.execute(
                "INSERT INTO turns(conversation_id, turn_index, user_text, reply, act_text, intent, "
                "intent_probs_json, linked_json, tree_json, recommendations_json, ranked_json, controls_json, "
                "timings_json, truncated, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    conversation_id,
                    int(result.get("turn_index", 0)),
                    str(result.get("user_text", "")),
                    str(result.get("reply", "")),
                    str(result.get("act_text", "")),
                    result.get("intent"),
                    _dumps(result.get("intent_probs") or {}),
                    _dumps(result.get("linked") or []),
                    _dumps(result.get("tree") or []),
                    _dumps(result.get("recommendations") or []),
                    _dumps(result.get("ranked") or []),
                    _dumps(controls or {}),
                    _dumps(result.get("timings") or {}),
                    int(bool(truncated)),
                    now,
                ),
            )
            con.execute(
                "UPDATE conversations SET state_json = ?, updated_at = ?, n_turns = n_turns + 1 WHERE id = ?",
                (_dumps(state), now, conversation_id),
            )
            return int(cur.lastrowid)

    def save_feedback(
        self,
        conversation_id: str,
        entity_id: str,
        kind: str,
        state: dict[str, Any],
        label: str | None = None,
        turn_index: int | None = None,
    ) -> int:
        """Record one 👍 / 👎 / "seen it" / reject and the session state after it, atomically."""
        if kind not in FEEDBACK_KINDS:
            raise ValueError(f"feedback kind must be one of {FEEDBACK_KINDS}, got {kind!r}")
        now = time.time()
        with self.transaction() as con:
            con.execute(
                "INSERT INTO conversations(id, created_at, updated_at) VALUES (?, ?, ?) ON CONFLICT(id) DO NOTHING",
                (conversation_id, now, now),
            )
            cur = con.execute(
                "INSERT INTO feedback(conversation_id, turn_index, entity_id, label, kind, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (conversation_id, turn_index, str(entity_id), label, kind, now),
            )
            con.execute(
                "UPDATE conversations SET state_json = ?, updated_at = ? WHERE id = ?",
                (_dumps(state), now, conversation_id),
            )
            return int(cur.lastrowid)

    # -- reads -------------------------------------------------------------------------------------
    def load_state(self, conversation_id: str) -> dict[str, Any] | None:
        """The session state saved with the conversation's last write, or ``None``."""
        row = self._conn().execute("SELECT state_json FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
        if row is None or row["state_json"] is None:
            return None
        return json.loads(row["state_json"])

    @staticmethod
    def _turn_dict(row: sqlite3.Row) -> dict[str, Any]:
        return {
            "turn_index": row["turn_index"],
            "user_text": row["user_text"],
            "reply": row["reply"],
            "act_text": row["act_text"],
            "intent": row["intent"],
            "intent_probs": json.loads(row["intent_probs_json"]),
            "linked": json.loads(row["linked_json"]),
            "tree": json.loads(row["tree_json"]),
            "recommendations": json.loads(row["recommendations_json"]),
            "ranked": json.loads(row["ranked_json"]),
            "controls": json.loads(row["controls_json"]),
            "timings": json.loads(row["timings_json"]),
            "truncated": bool(row["truncated"]),
            "created_at": row["created_at"],
        }

    def turns(self, conversation_id: str, con: sqlite3.Connection | None = None) -> list[dict[str, Any]]:
        """All turns of a conversation in order."""
        con = con or self._conn()
        rows = con.execute(
            "SELECT * FROM turns WHERE conversation_id = ? ORDER BY turn_index", (conversation_id,)
        ).fetchall()
        return [self._turn_dict(r) for r in rows]

    def feedback(self, conversation_id: str, con: sqlite3.Connection | None = None) -> list[dict[str, Any]]:
        """All feedback of a conversation in the order given."""
        con = con or self._conn()
        rows = con.execute(
            "SELECT turn_index, entity_id, label, kind, created_at FROM feedback WHERE conversation_id = ? ORDER BY id",
            (conversation_id,),
        ).fetchall()
        return [dict(r) for r in rows]

    def conversation_ids(self) -> list[str]:
        """Ids of all stored conversations, oldest first."""
        rows = self._conn().execute("SELECT id FROM conversations ORDER BY created_at, id").fetchall()
        return [r["id"] for r in rows]

    def counts(self) -> dict[str, int]:
        """Row counts per table."""
        con = self._conn()
        return {
            t: con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("conversations", "turns", "feedback")
        }

    def iter_conversations(self) -> Iterator[dict[str, Any]]:
        """Every conversation with its turns and feedback, read from one consistent snapshot."""
        con = self._conn()
        con.execute("BEGIN")  # deferred read transaction: one snapshot for the whole export
        try:
            convs = con.execute(
                "SELECT id, created_at, updated_at, n_turns, meta_json FROM conversations ORDER BY created_at, id"
            ).fetchall()
            for c in convs:
                yield {
                    "id": c["id"],
                    "created_at": c["created_at"],
                    "updated_at": c["updated_at"],
                    "n_turns": c["n_turns"],
                    "meta": json.loads(c["meta_json"] or "{}"),
                    "turns": self.turns(c["id"], con),
                    "feedback": self.feedback(c["id"], con),
                }
        finally:
            con.execute("COMMIT")

    def export_jsonl(self, out: str | os.PathLike) -> int:
        """Write one conversation per line (turns and feedback included) atomically; returns the count."""
        n = 0
        with atomic_write(out) as fh:
            for conv in self.iter_conversations():
                fh.write(json.dumps(conv, ensure_ascii=False, sort_keys=True))
                fh.write("\n")
                n += 1
        return n
