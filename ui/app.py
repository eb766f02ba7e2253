"""The Gradio ``Blocks`` chat: streamed replies, reasoning tree, dialog act, movie cards, feedback, controls.

:class:`ChatApp` holds the engine, the :class:`~ui.store.ChatStore` and the live sessions; its handler
methods are plain Python generators/functions (unit-testable without a server) and :meth:`ChatApp.build`
wires them into a ``gr.Blocks`` page. Each browser tab keeps its conversation id and its displayed
messages in ``gr.State``; engine sessions stay on the server.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import gradio as gr

from ui.render import (
    CSS,
    act_html,
    cards_html,
    chat_text,
    clean_user_text,
    esc,
    guided_html,
    timings_text,
    tree_panel,
)
from ui.sessions import SessionManager
from ui.store import ChatStore

log = logging.getLogger("ui.app")

FEEDBACK_LABELS = {"like": "👍 liked", "dislike": "👎 disliked", "seen": "👁 seen", "reject": "🚫 excluded"}
WIDTH_RANGE = (1, 20)
LEAVES_RANGE = (1, 50)
ERROR_REPLY = "⚠️ Sorry, something went wrong while answering. Please try again or rephrase."


@dataclass
class AppSettings:
    """Runtime settings of the chat page (the CLI fills them from :class:`ui.__main__.ServeConfig`)."""

    max_chars: int = 2000
    max_sessions: int = 256
    threshold: float = 0.5
    width: int = 5
    max_leaves: int = 10
    stream_interval_s: float = 0.04
    title: str = "CR-Walker movie chat"


def _to_json(obj: Any) -> dict[str, Any]:
    return obj.to_json() if hasattr(obj, "to_json") else dict(obj)


def _movie_choices(result: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for c in result.get("recommendations") or []:
        year = c.get("year")
        label = f"{c.get('title') or c.get('entity_id')}" + (f" ({year})" if year else "")
        out.append((label, str(c.get("entity_id"))))
    return out


def _entity_choices(result: dict[str, Any]) -> list[tuple[str, str]]:
    """Attributes the user may exclude: linked entities and tree nodes that are not recommended movies."""
    movies = {str(c.get("entity_id")) for c in result.get("recommendations") or []}
    seen: dict[str, str] = {}

    def add(eid: Any, name: Any, typ: Any) -> None:
        key = str(eid)
        if eid is None or key in movies or key in seen:
            return
        seen[key] = f"{name or eid}" + (f" ({typ})" if typ else "")

    for e in result.get("linked") or []:
        add(e.get("entity_id", e.get("id")), e.get("name"), e.get("type"))
    for n in result.get("tree") or []:
        add(n.get("entity_id"), n.get("name"), n.get("type"))
        for k in n.get("children") or []:
            add(k.get("entity_id"), k.get("name"), k.get("type"))
    return [(label, key) for key, label in seen.items()]


def _ids(result: dict[str, Any]) -> dict[str, Any]:
    """str(entity id) -> original id for every entity the page can send feedback about."""
    out: dict[str, Any] = {}
    for c in result.get("recommendations") or []:
        out[str(c.get("entity_id"))] = c.get("entity_id")
    for e in result.get("linked") or []:
        eid = e.get("entity_id", e.get("id"))
        out.setdefault(str(eid), eid)
    for n in result.get("tree") or []:
        out.setdefault(str(n.get("entity_id")), n.get("entity_id"))
        for k in n.get("children") or []:
            out.setdefault(str(k.get("entity_id")), k.get("entity_id"))
    return out


class ChatApp:
    """Engine + store + sessions, and the handlers of the chat page.

    Args:
        engine: A loaded ``crwalker.engine.Engine`` (or any object with the same interface).
        store: The SQLite store.
        settings: Page settings.
        session_cls: Class providing ``from_state``; default ``crwalker.engine.Session``.
        controls_cls: Class of the walk controls; default ``crwalker.engine.WalkControls``.
        engine_info: Description of the engine stored with each new conversation.
    """

    def __init__(
        self,
        engine: Any,
        store: ChatStore,
        settings: AppSettings | None = None,
        session_cls: Any = None,
        controls_cls: Any = None,
        engine_info: dict[str, Any] | None = None,
    ):
        self.engine = engine
        self.store = store
        self.settings = settings or AppSettings()
        self.sessions = SessionManager(engine, store, self.settings.max_sessions, session_cls)
        if controls_cls is None:
            from crwalker.engine import WalkControls

            controls_cls = WalkControls
        self.controls_cls = controls_cls
        self.engine_info = engine_info or {}

    # -- handlers ----------------------------------------------------------------------------------
    def clamp_controls(self, threshold: Any, width: Any, max_leaves: Any) -> dict[str, Any]:
        """Walk controls within the sliders' ranges (API callers may send anything); defaults if not numbers."""
        s = self.settings

        def num(v: Any, default: float) -> float:
            try:
                f = float(v)
            except (TypeError, ValueError):
                return default
            return f if f == f else default  # NaN -> default

        return {
            "threshold": min(1.0, max(0.0, num(threshold, s.threshold))),
            "width": int(min(WIDTH_RANGE[1], max(WIDTH_RANGE[0], round(num(width, s.width))))),
            "max_leaves": int(min(LEAVES_RANGE[1], max(LEAVES_RANGE[0], round(num(max_leaves, s.max_leaves))))),
        }

    def respond(
        self,
        message: Any,
        display: list[dict[str, str]] | None,
        cid: str | None,
        threshold: float,
        width: float,
        max_leaves: float,
        guided: Any = False,
    ):
        """Run one turn, yielding page updates while the engine streams.

        Yields tuples matching :data:`RESPOND_OUTPUTS`: (chatbot, textbox, display state, conversation
        id state, conversation id box, tree, act, cards, movie choices, entity choices, status, last-turn
        state, guided question, Yes button, No button). Nothing is stored unless the turn completes; then
        turn + session state are written in one transaction. ``guided``: guided mode (the engine's trained
        policy asks or recommends); after a guided question the Yes / No buttons are shown.
        """
        skip = gr.skip()
        text, truncated = clean_user_text(message, self.settings.max_chars)
        if not text:
            yield (
                (skip,) * 10
                + ("Please type a message (it was empty after removing control characters).",)
                + (skip,) * 4
            )
            return
        hide = gr.update(visible=False)
        cid, session = self.sessions.get(cid)
        display = list(display or [])
        display.append({"role": "user", "content": chat_text(text)})
        display.append({"role": "assistant", "content": "…"})
        status = "thinking…" + (
            f" (your message was shortened to {self.settings.max_chars} characters)" if truncated else ""
        )
        yield (display, "", display, cid, cid, skip, skip, skip, skip, skip, status, skip, "", hide, hide)

        controls_json = {**self.clamp_controls(threshold, width, max_leaves), "guided": guided is True}
        controls = self.controls_cls(**controls_json)
        saved = False
        with self.sessions.lock(cid):
            events = None
            try:
                events = session.respond(text, controls)
                reply, final, last_push = "", None, 0.0
                for ev in events:
                    if ev.kind == "reasoning":
                        r = _to_json(ev.result)
                        yield (
                            display, skip, display, skip, skip,
                            tree_panel(r), act_html(r), cards_html(r.get("recommendations")),
                            gr.update(choices=_movie_choices(r), value=None),
                            gr.update(choices=_entity_choices(r), value=None),
                            "writing…", skip, skip, skip, skip,
                        )  # fmt: skip
                    elif ev.kind == "token":
                        reply += ev.text or ""
                        now = time.monotonic()
                        if now - last_push >= self.settings.stream_interval_s:
                            last_push = now
                            display[-1] = {"role": "assistant", "content": chat_text(reply) or "…"}
                            yield (display, skip, display) + (skip,) * 12
                    elif ev.kind == "done":
                        final = _to_json(ev.result)
                if final is None:
                    raise RuntimeError("the engine finished the turn without a final result")
                self.store.save_turn(cid, final, session.to_state(), controls_json, truncated, self.engine_info)
                saved = True
            except Exception:
                log.exception("turn failed in conversation %s", cid)
                display[-1] = {"role": "assistant", "content": ERROR_REPLY}
                yield (display, skip, display) + (skip,) * 7 + ("The turn failed and was not saved.",) + (skip,) * 4
                return
            finally:
                if events is not None and hasattr(events, "close"):
                    with contextlib.suppress(Exception):
                        events.close()
                if not saved:
                    # The session may hold half a turn: forget it; the next request restores the saved state.
                    self.sessions.drop(cid)
        display[-1] = {"role": "assistant", "content": chat_text(final.get("reply") or "") or "(no reply)"}
        last = {
            "conversation_id": cid,
            "turn_index": final.get("turn_index"),
            "ids": _ids(final),
            "labels": {value: label for label, value in _movie_choices(final) + _entity_choices(final)},
        }
        status = f"turn {final.get('turn_index')} · intent {esc(final.get('intent'))} · {timings_text(final)}"
        asked = (final.get("guided") or {}).get("action") == "ask"
        yield (
            display, skip, display, skip, cid,
            tree_panel(final), act_html(final), cards_html(final.get("recommendations")),
            gr.update(choices=_movie_choices(final), value=None),
            gr.update(choices=_entity_choices(final), value=None),
            status, last, guided_html(final), gr.update(visible=asked), gr.update(visible=asked),
        )  # fmt: skip

    def answer(self, yes: bool, display, cid, threshold, width, max_leaves, guided):
        """The Yes / No buttons: send "Yes" or "No" as the user's message (the engine reads it as the answer)."""
        yield from self.respond("Yes" if yes else "No", display, cid, threshold, width, max_leaves, guided)

    def feedback(self, kind: str, entity: str | None, cid: str | None, last: dict[str, Any] | None) -> str:
        """Apply 👍 / 👎 / "seen it" (``Session.feedback``) or an exclusion (``Session.reject``) and store it.

        Returns:
            A status line for the page.
        """
        if not cid:
            return "Start a conversation first."
        if not entity:
            return "Pick a movie (or attribute) first."
        last = last or {}
        if last.get("conversation_id") != cid:
            return "That choice belongs to an earlier conversation."
        ids = last.get("ids") or {}
        if str(entity) not in ids:
            return "Unknown choice; pick one from the current list."
        eid = ids[str(entity)]
        label = (last.get("labels") or {}).get(str(entity), str(entity))
        cid, session = self.sessions.get(cid)
        with self.sessions.lock(cid):
            try:
                if kind == "reject":
                    session.reject(eid)
                else:
                    session.feedback(eid, kind)
                self.store.save_feedback(cid, str(eid), kind, session.to_state(), label, last.get("turn_index"))
            except ValueError as exc:  # the engine refuses e.g. rejecting a generic class ("Actor")
                return f"Not applied: {esc(exc)}"
            except Exception:
                log.exception("feedback failed in conversation %s", cid)
                self.sessions.drop(cid)
                return "Feedback failed and was not saved."
        effect = " — it will not be recommended again." if kind in ("dislike", "seen") else ""
        if kind == "reject":
            effect = " — later reasoning trees will avoid it."
        return f"{FEEDBACK_LABELS[kind]}: {esc(label)}{effect}"

    def new_conversation(self):
        """Reset the page; the next message starts a fresh session."""
        return (
            [], "", [], None, "", tree_panel(None), act_html(None), cards_html(None),
            gr.update(choices=[], value=None), gr.update(choices=[], value=None),
            "New conversation. Ask for a movie!", {}, "", gr.update(visible=False), gr.update(visible=False),
        )  # fmt: skip

    # -- page --------------------------------------------------------------------------------------
    def build(self) -> gr.Blocks:
        """The ``gr.Blocks`` page wired to this app's handlers (queue not yet configured)."""
        s = self.settings
        with gr.Blocks(title=s.title) as demo:
            display = gr.State([])
            cid_state = gr.State(None)
            last_state = gr.State({})
            gr.Markdown(f"## {esc(s.title)}\nTell me what you like; I reason over a movie knowledge graph.")
            with gr.Row():
                with gr.Column(scale=3):
                    chatbot = gr.Chatbot(
                        label="Chat",
                        elem_id="chat",
                        height=480,
                        sanitize_html=True,
                        allow_tags=False,
                        latex_delimiters=[],
                        feedback_options=None,
                    )
                    with gr.Row():
                        msg = gr.Textbox(
                            placeholder="e.g. something scary from the 80s, but no Tom Cruise",
                            show_label=False,
                            elem_id="msg",
                            scale=5,
                            max_lines=6,
                        )
                        send = gr.Button("Send", variant="primary", elem_id="send", scale=1)
                    status = gr.Markdown("Ask for a movie to start.", elem_id="status")
                    question = gr.HTML("", elem_id="question", js_on_load=None)
                    with gr.Row():
                        yes_btn = gr.Button("Yes", elem_id="answer-yes", size="sm", visible=False)
                        no_btn = gr.Button("No", elem_id="answer-no", size="sm", visible=False)
                    has_guide = getattr(self.engine, "guide", None) is not None
                    guided = gr.Checkbox(
                        value=False,
                        label="Guided mode: a trained policy decides whether to ask about an attribute or to recommend"
                        + ("" if has_guide else " (not available: this engine has no guide policy)"),
                        interactive=has_guide,
                        elem_id="guided",
                    )
                    with gr.Accordion("Reasoning controls", open=False):
                        tau = gr.Slider(0.0, 1.0, value=s.threshold, step=0.05, label="τ (selection threshold)")
                        width = gr.Slider(*WIDTH_RANGE, value=s.width, step=1, label="width m (max children per node)")
                        leaves = gr.Slider(*LEAVES_RANGE, value=s.max_leaves, step=1, label="max leaves")
                    with gr.Row():
                        new_btn = gr.Button("New conversation", elem_id="new-conversation")
                        conv_box = gr.Textbox(label="Conversation id", interactive=False, elem_id="conversation-id")
                with gr.Column(scale=2):
                    tree = gr.HTML(tree_panel(None), elem_id="tree", js_on_load=None)
                    act = gr.HTML(act_html(None), elem_id="act", js_on_load=None)
                    cards = gr.HTML(cards_html(None), elem_id="cards", js_on_load=None)
                    movie_pick = gr.Radio(choices=[], label="Recommended movie", elem_id="movie-pick")
                    with gr.Row():
                        like = gr.Button("👍 Like", elem_id="like", size="sm")
                        dislike = gr.Button("👎 Dislike", elem_id="dislike", size="sm")
                        seen = gr.Button("Seen it", elem_id="seen", size="sm")
                    entity_pick = gr.Dropdown(choices=[], label="Exclude an attribute", elem_id="entity-pick")
                    reject = gr.Button("🚫 Exclude from reasoning", elem_id="reject", size="sm")
                    fb_status = gr.Markdown("", elem_id="feedback-status")

            outputs = [
                chatbot, msg, display, cid_state, conv_box, tree, act, cards, movie_pick, entity_pick, status, last_state,
                question, yes_btn, no_btn,
            ]  # fmt: skip
            gr.on(
                triggers=[msg.submit, send.click],
                fn=self.respond,
                inputs=[msg, display, cid_state, tau, width, leaves, guided],
                outputs=outputs,
                api_name="send",
                show_progress="minimal",
            )
            for btn, yes in ((yes_btn, True), (no_btn, False)):
                btn.click(
                    lambda d, c, t, w, n, g, y=yes: (yield from self.answer(y, d, c, t, w, n, g)),
                    inputs=[display, cid_state, tau, width, leaves, guided],
                    outputs=outputs,
                    api_name="answer_yes" if yes else "answer_no",
                    show_progress="minimal",
                )
            for btn, kind in ((like, "like"), (dislike, "dislike"), (seen, "seen")):
                btn.click(
                    lambda e, c, last, k=kind: self.feedback(k, e, c, last),
                    inputs=[movie_pick, cid_state, last_state],
                    outputs=fb_status,
                    api_name=kind,
                )
            reject.click(
                lambda e, c, last: self.feedback("reject", e, c, last),
                inputs=[entity_pick, cid_state, last_state],
                outputs=fb_status,
                api_name="reject",
            )
            new_btn.click(self.new_conversation, inputs=None, outputs=outputs, api_name="new_conversation")
            # The chat's own trash button starts a new conversation too (the display state is reset with it).
            chatbot.clear(self.new_conversation, inputs=None, outputs=outputs, api_visibility="private")
        return demo


# Outputs of the ``/send`` API as seen by ``gradio_client`` (``gr.State`` outputs are not exposed).
API_OUTPUTS = (
    "chatbot",
    "msg",
    "conversation_box",
    "tree",
    "act",
    "cards",
    "movie_choices",
    "entity_choices",
    "status",
    "question",
    "answer_yes",
    "answer_no",
)

RESPOND_OUTPUTS = (
    "chatbot", "msg", "display", "conversation_id", "conversation_box", "tree", "act", "cards",
    "movie_choices", "entity_choices", "status", "last", "question", "answer_yes", "answer_no",
)  # fmt: skip


def launch(
    app: ChatApp,
    host: str = "127.0.0.1",
    port: int | None = None,
    auth: tuple[str, str] | None = None,
    concurrency: int = 4,
    block: bool = True,
    quiet: bool = False,
) -> tuple[gr.Blocks, str]:
    """Build, queue and launch the page on ``host:port`` (never a public share link).

    Args:
        app: The chat app.
        host: Interface to bind (loopback by default).
        port: TCP port (``None``: Gradio picks a free one from 7860).
        auth: Optional (user, password) for HTTP basic login.
        concurrency: Turns processed at once (Gradio queue ``default_concurrency_limit``).
        block: Serve until interrupted; ``False`` returns right after start (tests).
        quiet: Suppress Gradio's own start-up banner.

    Returns:
        The running ``Blocks`` and its local URL.
    """
    demo = app.build()
    demo.queue(default_concurrency_limit=max(1, int(concurrency)), max_size=256)
    _, url, _ = demo.launch(
        server_name=host,
        server_port=port,
        auth=auth,
        share=False,
        prevent_thread_lock=True,
        quiet=quiet,
        show_error=False,
        css=CSS,
        footer_links=["api"],
        ssr_mode=False,
        mcp_server=False,
    )
    url = url or demo.local_url
    print(f"crwalker chat running at {url}", flush=True)
    if block:
        try:
            demo.block_thread()
        except KeyboardInterrupt:
            pass
        finally:
            demo.close()
    return demo, url
