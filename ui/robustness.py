"""Robustness of the served chat: >= 200 bad inputs and concurrent sessions through a real server.

``python -m ui.robustness --walker runs/walker_e1/best.safetensors --generator <dir> --out results/robustness.json``
loads the engine, serves the chat on a free loopback port and talks to it with ``gradio_client`` exactly
like browsers do. With ``--url`` (and ``--db``, the server's database) it tests an already running server.

Checks: every bad input gets an answer (zero crashes: no client error, no error reply, server alive),
latency per request (max / p95 against the bound), every returned HTML fragment contains only the
tags the renderer emits and no raw user markup; then ``--concurrent`` sessions in parallel threads, each
asking for different movies/genres, with no cross-talk: each session's chat shows only its own messages
and, per turn, the reply and recommended movies the server returned equal the ones stored in SQLite for
that session's own conversation.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from data_scripts.utils.config import field, parse_config, to_dict
from data_scripts.utils.results import format_table, write_results
from ui.corpus import bad_inputs

ALLOWED_TAGS = {"div", "span", "b", "em", "pre", "code", "svg", "g", "rect", "text", "title", "path"}


# ---------------------------------------------------------------------------------------------- checks
class _TagCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.bad_attrs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for name, value in attrs:
            if name.lower().startswith("on") or (value or "").strip().lower().startswith("javascript:"):
                self.bad_attrs.append(f"{tag}[{name}]")


def html_problems(fragment: Any) -> list[str]:
    """Problems of one server-rendered HTML fragment: tags outside the renderer's set, event/JS attributes."""
    if not isinstance(fragment, str):
        return []
    p = _TagCollector()
    p.feed(fragment)
    p.close()
    return [f"tag <{t}>" for t in sorted(p.tags - ALLOWED_TAGS)] + p.bad_attrs


def chat_texts(chatbot: Any) -> list[tuple[str, str]]:
    """``(role, text)`` of the chatbot value returned by ``gradio_client`` (content may be parts)."""
    out = []
    for m in chatbot if isinstance(chatbot, list) else []:
        content = m.get("content")
        if isinstance(content, list):
            text = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        else:
            text = str(content or "")
        out.append((m.get("role", ""), text))
    return out


def response_problems(outputs: tuple) -> list[str]:
    """Escaping problems in one ``/send`` response (chat text must contain no raw ``<``)."""
    from ui.app import API_OUTPUTS

    o = dict(zip(API_OUTPUTS, outputs, strict=False))
    probs = []
    for role, text in chat_texts(o.get("chatbot")):
        if "<" in text or ">" in text:
            probs.append(f"raw markup in {role} message")
    for key in ("tree", "act", "cards"):
        probs += [f"{key}: {p}" for p in html_problems(o.get(key))]
    if "<" in str(o.get("status") or ""):
        probs.append("raw markup in status")
    return probs


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return float(values[0])
    return float(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1])


# ---------------------------------------------------------------------------------------------- runs
def _client(url: str, auth: tuple[str, str] | None = None):
    import httpx
    from gradio_client import Client

    # A busy server (every worker thread running a turn) may answer late: wait, as a browser would.
    return Client(url, auth=auth, verbose=False, httpx_kwargs={"timeout": httpx.Timeout(600.0, connect=60.0)})


def send(client: Any, text: str, controls: tuple[float, int, int] = (0.5, 5, 10)) -> tuple[tuple, float, float]:
    """One ``/send`` call; returns (final outputs, total seconds, seconds to the first streamed reply text)."""
    t0 = time.perf_counter()
    job = client.submit(text, *controls, api_name="/send")
    first = None
    while not job.done():
        if first is None:
            for out in job.outputs():
                chat = chat_texts(out[0]) if isinstance(out, (list, tuple)) and out else []
                if chat and chat[-1][0] == "assistant" and chat[-1][1] not in ("", "…"):
                    first = time.perf_counter() - t0
                    break
        time.sleep(0.005)
    result = job.result()
    total = time.perf_counter() - t0
    return result, total, first if first is not None else total


def send_raw(
    url: str, text: str, controls: tuple[float, int, int, bool] = (0.5, 5, 10, False), auth=None
) -> tuple[tuple, float]:
    """``/send`` through Gradio's plain HTTP API with ASCII-escaped JSON (for text UTF-8 cannot encode).

    ``controls``: threshold, width, max leaves, guided mode (the plain API needs every input).

    ``gradio_client`` encodes requests as UTF-8 and cannot send lone surrogates, while a browser's
    ``JSON.stringify`` sends them as ``\\udXXX`` escapes; this reproduces what the browser sends.
    """
    import base64
    import json
    import urllib.request

    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    base = url.rstrip("/") + "/gradio_api/call/send"
    t0 = time.perf_counter()
    body = json.dumps({"data": [text, *controls]}, ensure_ascii=True).encode("ascii")
    with urllib.request.urlopen(urllib.request.Request(base, data=body, headers=headers), timeout=120) as r:
        event_id = json.loads(r.read())["event_id"]
    with urllib.request.urlopen(urllib.request.Request(f"{base}/{event_id}", headers=headers), timeout=120) as r:
        stream = r.read().decode("utf-8")
    total = time.perf_counter() - t0
    event, data = None, None
    for line in stream.splitlines():
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:") and event == "complete":
            data = json.loads(line.split(":", 1)[1])
    if data is None:
        raise RuntimeError(f"no complete event in the response stream: {stream[-300:]!r}")
    return tuple(data), total


def _utf8_ok(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def run_bad_inputs(
    url: str, corpus: list[tuple[str, str]], auth=None, reset_every: int = 10, progress: bool = False
) -> list[dict]:
    """Send every corpus item (a new conversation every ``reset_every`` items); one record per item."""
    from ui.app import API_OUTPUTS, ERROR_REPLY
    from ui.render import chat_text

    client = _client(url, auth)
    records = []
    for i, (cat, text) in enumerate(corpus):
        if i % reset_every == 0:
            client.predict(api_name="/new_conversation")
        rec: dict[str, Any] = {"index": i, "category": cat, "chars": len(text)}
        try:
            if _utf8_ok(text):
                out, total, first = send(client, text)
            else:
                out, total = send_raw(url, text, auth=auth)
                first = total
                rec["raw_http"] = True
            o = dict(zip(API_OUTPUTS, out, strict=False))
            chat = chat_texts(o["chatbot"])
            rec.update(latency_s=total, first_reply_s=first, problems=response_problems(out))
            rec["error_reply"] = bool(chat) and chat[-1][1] == chat_text(ERROR_REPLY)
            rec["answered"] = bool(chat) and chat[-1][0] == "assistant" and bool(chat[-1][1])
            rec["empty_input_notice"] = "Please type a message" in str(o.get("status") or "")
            rec["crash"] = rec["error_reply"] or not (rec["answered"] or rec["empty_input_notice"])
        except Exception as exc:  # the client raised: the server failed this request
            rec.update(crash=True, error=f"{type(exc).__name__}: {exc}"[:300], problems=[])
        records.append(rec)
        if progress and (i + 1) % 25 == 0:
            print(f"bad inputs: {i + 1}/{len(corpus)} sent, {sum(r.get('crash', False) for r in records)} crashes",
                  flush=True)  # fmt: skip
    return records


SESSION_TOPICS = [
    ["I love horror movies", "something scarier please", "what about from the 80s?"],
    ["any good comedies?", "I like Jim Carrey", "something more recent"],
    ["I want an action movie", "with Arnold Schwarzenegger", "more like that"],
    ["recommend an animated film", "Pixar ones", "thanks, another one?"],
    ["I loved The Matrix", "more sci-fi like it", "something with Keanu Reeves"],
    ["romantic movies please", "Julia Roberts is great", "any others?"],
    ["I enjoy crime thrillers", "like The Godfather", "something by Scorsese"],
    ["documentaries about nature", "something lighter", "maybe a musical"],
    ["a western", "with Clint Eastwood", "something else from the 60s"],
    ["war movies", "like Saving Private Ryan", "by Spielberg"],
    ["fantasy adventures", "like The Lord of the Rings", "something for kids"],
    ["superhero films", "Marvel ones", "Batman?"],
    ["I like Tom Hanks", "something funny with him", "a drama then"],
    ["mystery movies", "like Se7en", "with Morgan Freeman"],
    ["musicals", "like The Sound of Music", "something from the 2000s"],
    ["teen comedies", "like Superbad", "any from the 90s"],
    ["movies about space", "like Interstellar", "by Christopher Nolan"],
    ["I want to cry", "a sad drama", "with a happy ending though"],
    ["zombie movies", "funny zombie movies", "like Shaun of the Dead"],
    ["family movies for christmas", "like Home Alone", "another classic"],
]


def run_concurrent(url: str, db: str | Path, n_sessions: int = 20, auth=None) -> dict[str, Any]:
    """``n_sessions`` clients in parallel threads, each its own conversation; checks for cross-talk.

    Returns:
        Counts, latencies and the list of cross-talk findings (empty when sessions stay separate).
    """
    from ui.app import API_OUTPUTS
    from ui.store import ChatStore

    results: dict[int, dict[str, Any]] = {}
    start = threading.Barrier(n_sessions)

    def worker(k: int) -> None:
        topics = SESSION_TOPICS[k % len(SESSION_TOPICS)]
        sent = [f"{t} (session {k})" for t in topics]
        rec: dict[str, Any] = {"sent": sent, "turns": [], "errors": []}
        results[k] = rec
        try:
            client = _client(url, auth)
            start.wait(timeout=120)
            for text in sent:
                out, total, first = send(client, text)
                o = dict(zip(API_OUTPUTS, out, strict=False))
                rec["turns"].append(
                    {
                        "conversation_id": o["conversation_box"],
                        "chat": chat_texts(o["chatbot"]),
                        "cards": _card_ids(o["cards"]),
                        "latency_s": total,
                        "first_reply_s": first,
                    }
                )
        except Exception as exc:
            rec["errors"].append(f"{type(exc).__name__}: {exc}"[:300])

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(n_sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=1800)

    store = ChatStore(db)
    findings: list[str] = []
    failures: list[str] = []
    latencies = []
    cids = {}
    for k, rec in sorted(results.items()):
        if rec["errors"]:
            failures.append(f"session {k}: {rec['errors']}")
        turn_cids = {t["conversation_id"] for t in rec["turns"]}
        if not turn_cids:
            continue
        if len(turn_cids) != 1:
            findings.append(f"session {k}: conversation id changed {sorted(map(str, turn_cids))}")
            continue
        cid = turn_cids.pop()
        cids[k] = cid
        stored = store.turns(cid)
        if [t["user_text"] for t in stored] != rec["sent"][: len(rec["turns"])]:
            findings.append(f"session {k}: stored user texts differ from what it sent")
        for i, t in enumerate(rec["turns"]):
            latencies.append(t["latency_s"])
            users = [text for role, text in t["chat"] if role == "user"]
            if users != [shown(s) for s in rec["sent"][: i + 1]]:
                findings.append(f"session {k} turn {i}: chat shows messages that are not its own")
            if i < len(stored):
                if t["chat"][-1][1] != shown(stored[i]["reply"] or "(no reply)"):
                    findings.append(f"session {k} turn {i}: reply differs from its stored reply")
                if t["cards"] != [str(c["entity_id"]) for c in stored[i]["recommendations"]]:
                    findings.append(f"session {k} turn {i}: movies differ from its stored recommendations")
    if len(set(cids.values())) != len(cids):
        findings.append("two sessions share a conversation id")
    return {
        "concurrent_sessions": n_sessions,
        "concurrent_turns": len(latencies),
        "concurrent_p50_latency_s": _pct(latencies, 50),
        "concurrent_p95_latency_s": _pct(latencies, 95),
        "concurrent_max_latency_s": max(latencies) if latencies else 0.0,
        "concurrent_failures": len(failures),
        "concurrent_failure_examples": failures[:20],
        "cross_talk": len(findings),
        "cross_talk_findings": findings[:50],
    }


def shown(text: str) -> str:
    """How the chatbot displays ``text``: :func:`ui.render.chat_text`, then Gradio's ``inspect.cleandoc``."""
    import inspect

    from ui.render import chat_text

    return inspect.cleandoc(chat_text(text))


def _card_ids(cards_html: Any) -> list[str]:
    import re

    return re.findall(r'class="movie-card" data-entity="([^"]*)"', cards_html if isinstance(cards_html, str) else "")


def summarize(records: list[dict], latency_bound_s: float) -> dict[str, Any]:
    """Aggregate the per-input records into the results payload."""
    lat = [r["latency_s"] for r in records if "latency_s" in r]
    first = [r["first_reply_s"] for r in records if "first_reply_s" in r and not r.get("empty_input_notice")]
    cats: dict[str, int] = {}
    for r in records:
        cats[r["category"]] = cats.get(r["category"], 0) + 1
    problems = [(r["index"], p) for r in records for p in r.get("problems", [])]
    crashes = [r for r in records if r.get("crash")]
    return {
        "bad_inputs": len(records),
        "categories": cats,
        "crashes": len(crashes),
        "crash_examples": [{"index": r["index"], "category": r["category"], "error": r.get("error")} for r in crashes][
            :20
        ],
        "max_latency_s": max(lat) if lat else 0.0,
        "p50_latency_s": _pct(lat, 50),
        "p95_latency_s": _pct(lat, 95),
        "first_reply_p95_s": _pct(first, 95),
        "latency_bound_s": latency_bound_s,
        "over_latency_bound": sum(1 for x in lat if x > latency_bound_s),
        "html_escaped": not problems,
        "html_problems": len(problems),
        "html_problem_examples": [f"#{i}: {p}" for i, p in problems[:20]],
        "empty_input_notices": sum(1 for r in records if r.get("empty_input_notice")),
    }


@dataclass
class RobustnessConfig:
    """Send the bad-input corpus and concurrent sessions through a real chat server; write results JSON."""

    out: str = field("runs/robustness/robustness.json", "Results JSON (results/robustness.json for the release).")
    url: str | None = field(None, "Test this running server instead of launching one (needs --db).")
    db: str = field("runs/robustness/chat.sqlite3", "The server's SQLite file (fresh one when launching).")
    bundle: str | None = field("release/bundle", "Release bundle (when launching a server).")
    walker: str | None = field(None, "Walker checkpoint (with --generator) instead of --bundle.")
    generator: str | None = field(None, "Generator folder.")
    kg: str = field("data/kg", "Knowledge-graph folder.")
    device: str = field("auto", "auto | cpu | cuda.")
    concurrency: int = field(4, "Server queue concurrency (when launching).")
    concurrent: int = field(20, "Parallel sessions of the cross-talk test.")
    latency_bound_s: float = field(1.5, "Per-reply latency bound reported against (issue #5: whole turn p95).")
    limit: int = field(0, "Use only the first N corpus items (0 = all; for quick runs).")
    skip_bad_inputs: bool = field(False, "Run only the concurrent-sessions check.")


def run(cfg: RobustnessConfig, app: Any = None) -> dict[str, Any]:
    """Run both checks against ``cfg.url`` or a server launched here (with ``app`` or the engine of ``cfg``)."""
    demo = None
    url = cfg.url
    if url is None:
        import socket

        from ui.__main__ import ServeConfig, load_engine
        from ui.app import AppSettings, ChatApp, launch
        from ui.store import ChatStore

        if app is None:
            db = Path(cfg.db)
            for suffix in ("", "-wal", "-shm"):  # a fresh database: the cross-talk check reads it
                Path(str(db) + suffix).unlink(missing_ok=True)
            engine, info = load_engine(
                ServeConfig(bundle=cfg.bundle, walker=cfg.walker, generator=cfg.generator, kg=cfg.kg, device=cfg.device)
            )
            app = ChatApp(engine, ChatStore(db), AppSettings(), engine_info=info)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        demo, url = launch(app, "127.0.0.1", port, None, cfg.concurrency, block=False, quiet=True)
    try:
        corpus = bad_inputs()
        if cfg.limit:
            corpus = corpus[: cfg.limit]
        if cfg.skip_bad_inputs:
            corpus = []
        t0 = time.perf_counter()
        records = run_bad_inputs(url, corpus, progress=True)
        payload = summarize(records, cfg.latency_bound_s)
        payload["bad_inputs_wall_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        payload.update(run_concurrent(url, cfg.db, cfg.concurrent))
        payload["concurrent_wall_s"] = round(time.perf_counter() - t0, 2)
        _client(url).predict(api_name="/new_conversation")  # the server is still alive
        payload["server_alive"] = True
    finally:
        if demo is not None:
            demo.close()
    return payload


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """CLI entry point: run, write the results JSON, print a table."""
    cfg = parse_config(RobustnessConfig, argv, argparse.ArgumentParser(prog="python -m ui.robustness"))
    payload = run(cfg)
    write_results(cfg.out, payload, config=to_dict(cfg))
    rows = [{"metric": k, "value": payload[k]} for k in (
        "bad_inputs", "crashes", "html_escaped", "max_latency_s", "p50_latency_s", "p95_latency_s",
        "first_reply_p95_s", "over_latency_bound", "concurrent_sessions", "concurrent_turns",
        "concurrent_p95_latency_s", "concurrent_max_latency_s", "concurrent_failures", "cross_talk",
    )]  # fmt: skip
    print(format_table(rows, ["metric", "value"]))
    print(f"wrote {cfg.out}")
    return payload


if __name__ == "__main__":
    main()
