"""Fixtures for the UI tests: the fake engine, a chat app on a temporary store and a live loopback server."""

from __future__ import annotations

import socket

import pytest
import ui_fake_engine as fe

from ui.app import AppSettings, ChatApp, launch
from ui.store import ChatStore


def free_port() -> int:
    """A currently free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_fake_app(db_path, **settings) -> ChatApp:
    """A :class:`ChatApp` over the fake engine and a store at ``db_path``."""
    return ChatApp(
        fe.FakeEngine(),
        ChatStore(db_path),
        AppSettings(**settings),
        session_cls=fe.Session,
        controls_cls=fe.WalkControls,
        engine_info={"engine": "fake"},
    )


@pytest.fixture
def fake_app(tmp_path) -> ChatApp:
    return make_fake_app(tmp_path / "chat.sqlite3")


@pytest.fixture(scope="module")
def fake_server(tmp_path_factory):
    """A real Gradio server with the fake engine on 127.0.0.1:<free port>; yields (url, app)."""
    db = tmp_path_factory.mktemp("server") / "chat.sqlite3"
    app = make_fake_app(db, max_sessions=8)
    demo, url = launch(app, "127.0.0.1", free_port(), None, concurrency=4, block=False, quiet=True)
    try:
        yield url, app
    finally:
        demo.close()


def real_engine_kwargs() -> dict | None:
    """How to load the real engine here, or ``None`` when its artefacts are absent.

    ``$CRWALKER_BUNDLE`` (or ``release/bundle``) wins; else ``$CRWALKER_WALKER`` + ``$CRWALKER_GENERATOR``
    (default: the e1 walker and the smoke GPT-2 generator under ``runs/``). The KG is ``$CRWALKER_KG`` or
    ``data/kg``.
    """
    import os
    from pathlib import Path

    kg = os.environ.get("CRWALKER_KG", "data/kg")
    if not Path(kg, "manifest.json").exists() and not Path(kg, "entities.jsonl").exists():
        return None
    bundle = os.environ.get("CRWALKER_BUNDLE", "release/bundle")
    if Path(bundle).is_dir():
        return {"bundle": bundle, "kg": kg}
    walker = os.environ.get("CRWALKER_WALKER", "runs/walker_e1/best.safetensors")
    generator = os.environ.get("CRWALKER_GENERATOR", "runs/generation/smoke_gpt2_scratch/best")
    if Path(walker).exists() and Path(generator).is_dir():
        return {"walker": walker, "generator": generator, "kg": kg}
    return None


@pytest.fixture(scope="session")
def real_server(tmp_path_factory):
    """A server with the real ``crwalker.engine`` (skips when the engine or its artefacts are absent)."""
    kwargs = real_engine_kwargs()
    if kwargs is None:
        pytest.skip("real engine artefacts absent (release/bundle or runs/walker_e1 + a generator, data/kg)")
    try:
        from crwalker.engine import Engine
    except ImportError as exc:  # pragma: no cover - engine package not present
        pytest.skip(f"crwalker.engine not importable: {exc}")
    engine = Engine.load(device="cpu", **kwargs)
    db = tmp_path_factory.mktemp("real") / "chat.sqlite3"
    app = ChatApp(engine, ChatStore(db), AppSettings(), engine_info={"engine": kwargs})
    demo, url = launch(app, "127.0.0.1", free_port(), None, concurrency=2, block=False, quiet=True)
    try:
        yield url, app
    finally:
        demo.close()
