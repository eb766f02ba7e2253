"""Command line: ``python -m ui`` (serve the chat) and ``python -m ui export`` (conversations -> JSONL).

Examples:
    python -m ui --bundle release/bundle --kg data/kg
    python -m ui --walker runs/walker_e1/best.safetensors --generator runs/generation/smoke_gpt2_scratch/best
    python -m ui --host 0.0.0.0 --port 8080 --auth alice:secret
    python -m ui export --db runs/chat.sqlite3 --out conversations.jsonl
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_scripts.utils.config import field, parse_config

DEFAULT_DB = "runs/chat.sqlite3"


@dataclass
class ServeConfig:
    """Serve the CR-Walker browser chat (Gradio) on a local address."""

    host: str = field("127.0.0.1", "Interface to bind; loopback by default (use 0.0.0.0 to expose it).")
    port: int = field(7860, "TCP port (0: the first free one from 7860 up).")
    auth: str | None = field(None, "Basic login 'user:password' (also read from $CRWALKER_CHAT_AUTH).")
    bundle: str | None = field("release/bundle", "Release bundle folder (walker + generator); used if it exists.")
    walker: str | None = field(None, "Walker checkpoint (.safetensors); with --generator instead of --bundle.")
    generator: str | None = field(None, "Generator folder (e.g. runs/generation/<run>/best).")
    guide: str | None = field(
        None, "Guided-mode policy run folder (e.g. runs/mcr/movie/scpr); default: the bundle's guide, if any."
    )
    kg: str = field("data/kg", "Knowledge-graph folder built by `kg_build build`.")
    device: str = field("auto", "auto | cpu | cuda.")
    db: str = field(DEFAULT_DB, "SQLite file for conversations and feedback (created if absent).")
    concurrency: int = field(4, "Turns processed at once (Gradio queue default_concurrency_limit).")
    max_sessions: int = field(256, "Live engine sessions kept in memory (LRU; evicted ones restore from the DB).")
    max_chars: int = field(2000, "Longest user message passed to the engine (longer ones are shortened).")
    threshold: float = field(0.5, "Initial τ (selection threshold) of the controls.")
    width: int = field(5, "Initial width m of the controls.")
    max_leaves: int = field(10, "Initial max leaves of the controls.")


@dataclass
class ExportConfig:
    """Export all stored conversations (turns + feedback) to JSONL, one conversation per line."""

    db: str = field(DEFAULT_DB, "SQLite file written by the chat.")
    out: str = field("runs/conversations.jsonl", "Output JSONL (written atomically).")


def parse_auth(value: str | None) -> tuple[str, str] | None:
    """``"user:password"`` -> ``("user", "password")``; ``None``/empty -> ``None``."""
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise ValueError("--auth must look like user:password")
    return user, password


def load_engine(cfg: ServeConfig) -> tuple[Any, dict[str, Any]]:
    """Load ``crwalker.engine.Engine`` from a bundle or from walker + generator checkpoints.

    Returns:
        The engine and a small description stored with each conversation.
    """
    if cfg.walker:
        if not cfg.generator:
            raise ValueError("--walker needs --generator (the act-conditioned generator folder)")
        if not Path(cfg.walker).exists():
            raise FileNotFoundError(f"--walker {cfg.walker}: file not found")
        kwargs = {"walker": cfg.walker, "generator": cfg.generator, "kg": cfg.kg, "device": cfg.device}
    elif cfg.bundle and Path(cfg.bundle).exists():
        kwargs = {"bundle": cfg.bundle, "kg": cfg.kg, "device": cfg.device}
    else:
        raise FileNotFoundError(
            f"no model: release bundle {cfg.bundle!r} not found; pass --bundle DIR or --walker CKPT --generator DIR"
        )
    if cfg.guide:
        if not Path(cfg.guide, "policy.json").exists():
            raise FileNotFoundError(f"--guide {cfg.guide}: no policy.json (a crwalker.policies run folder)")
        kwargs["guide"] = cfg.guide
    from crwalker.engine import Engine

    engine = Engine.load(**kwargs)
    return engine, {"engine": {k: str(v) for k, v in kwargs.items() if v is not None}}


def serve(cfg: ServeConfig) -> None:
    """Load the engine, open the store and serve until interrupted."""
    from ui.app import AppSettings, ChatApp, launch
    from ui.store import ChatStore

    auth = parse_auth(cfg.auth or os.environ.get("CRWALKER_CHAT_AUTH"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own start-up requests
    print(f"loading engine (kg={cfg.kg}) …", flush=True)
    try:
        engine, info = load_engine(cfg)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"python -m ui: {exc}") from exc
    store = ChatStore(cfg.db)
    settings = AppSettings(
        max_chars=cfg.max_chars,
        max_sessions=cfg.max_sessions,
        threshold=cfg.threshold,
        width=cfg.width,
        max_leaves=cfg.max_leaves,
    )
    app = ChatApp(engine, store, settings, engine_info=info)
    print(f"conversations are stored in {Path(cfg.db).resolve()}", flush=True)
    launch(app, cfg.host, cfg.port or None, auth, cfg.concurrency, block=True, quiet=True)


def export(cfg: ExportConfig) -> int:
    """Write the JSONL export; returns the number of conversations."""
    from ui.store import ChatStore

    if not Path(cfg.db).exists():
        raise FileNotFoundError(f"--db {cfg.db}: database not found")
    n = ChatStore(cfg.db).export_jsonl(cfg.out)
    print(f"exported {n} conversations to {cfg.out}")
    return n


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m ui`` and the ``crwalker-chat`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "export":
        export(parse_config(ExportConfig, argv[1:], argparse.ArgumentParser(prog="python -m ui export")))
        return
    if argv and argv[0] == "serve":
        argv = argv[1:]
    parser = argparse.ArgumentParser(
        prog="python -m ui",
        description="Serve the CR-Walker browser chat. Subcommand `export` writes conversations to JSONL.",
    )
    cfg = parse_config(ServeConfig, argv, parser)
    try:
        parse_auth(cfg.auth)
    except ValueError as exc:
        parser.error(str(exc))
    serve(cfg)


if __name__ == "__main__":
    main()
