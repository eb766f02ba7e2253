"""Server-side engine sessions keyed by conversation id: a bounded LRU restored from the store on a miss."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from ui.store import ChatStore


class SessionManager:
    """Holds live engine ``Session`` objects for the browser tabs.

    Each tab keeps only its conversation id (in ``gr.State``); the session lives here. When more than
    ``capacity`` sessions are live the least recently used one is dropped; it is rebuilt with
    ``Session.from_state`` from the state saved with its last turn when its tab comes back.

    Args:
        engine: The loaded ``crwalker.engine.Engine`` (or any object with the same interface).
        store: Where session states are saved.
        capacity: Most live sessions kept in memory.
        session_cls: The class with ``from_state(engine, state)``; ``crwalker.engine.Session`` by default.
    """

    def __init__(self, engine: Any, store: ChatStore, capacity: int = 256, session_cls: Any = None):
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.engine = engine
        self.store = store
        self.capacity = capacity
        self._sessions: OrderedDict[str, Any] = OrderedDict()
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self.restored = 0
        if session_cls is None:
            from crwalker.engine import Session

            session_cls = Session
        self.session_cls = session_cls

    def new(self) -> tuple[str, Any]:
        """Start a new conversation; returns its id and session."""
        session = self.engine.new_session()
        cid = str(session.id)
        self._put(cid, session)
        return cid, session

    def _put(self, cid: str, session: Any) -> None:
        with self._lock:
            self._sessions[cid] = session
            self._sessions.move_to_end(cid)
            self._locks.setdefault(cid, threading.Lock())
            while len(self._sessions) > self.capacity:
                old, _ = self._sessions.popitem(last=False)
                lock = self._locks.get(old)
                if lock is not None and not lock.locked():
                    self._locks.pop(old, None)

    def get(self, cid: str | None) -> tuple[str, Any]:
        """The session of ``cid`` (restored from the store if evicted); a new one if ``cid`` is unknown."""
        if not cid:
            return self.new()
        with self._lock:
            session = self._sessions.get(cid)
            if session is not None:
                self._sessions.move_to_end(cid)
                return cid, session
        state = self.store.load_state(cid)
        if state is None:
            # Known id but nothing stored yet (no completed turn): a fresh session under the same id.
            session = self.engine.new_session()
            restored = False
        else:
            session = self.session_cls.from_state(self.engine, state)
            restored = True
        with self._lock:
            existing = self._sessions.get(cid)
            if existing is not None:  # another request restored it meanwhile
                self._sessions.move_to_end(cid)
                return cid, existing
            if restored:
                self.restored += 1
        self._put(cid, session)
        return cid, session

    def lock(self, cid: str) -> threading.Lock:
        """The lock serialising turns/feedback of one conversation (double submits wait their turn)."""
        with self._lock:
            return self._locks.setdefault(cid, threading.Lock())

    def drop(self, cid: str) -> None:
        """Forget a live session (its stored state stays)."""
        with self._lock:
            self._sessions.pop(cid, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)
