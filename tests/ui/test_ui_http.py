"""HTTP-level tests through ``gradio_client`` against a real Gradio server on loopback (fake engine)."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request

import pytest
from gradio_client import Client

from ui.app import API_OUTPUTS
from ui.render import chat_text
from ui.robustness import chat_texts, response_problems

OUT = {name: i for i, name in enumerate(API_OUTPUTS)}


def test_server_binds_loopback_and_streams(fake_server):
    url, app = fake_server
    assert url.startswith("http://127.0.0.1:")
    client = Client(url, verbose=False)
    job = client.submit("I like Horror <img src=x onerror=alert(1)>", 0.5, 5, 10, api_name="/send")
    final = job.result()
    streamed = [o for o in job.outputs() if chat_texts(o[OUT["chatbot"]])]
    assert len(streamed) >= 3  # echo, reasoning, tokens..., final
    chat = chat_texts(final[OUT["chatbot"]])
    assert [r for r, _ in chat] == ["user", "assistant"]
    assert "&lt;img" in chat[0][1] and "Alien" in chat[1][1]
    assert response_problems(final) == []
    assert "movie-card" in final[OUT["cards"]] and "<svg" in final[OUT["tree"]]
    cid = final[OUT["conversation_box"]]
    assert app.store.turns(cid)[0]["user_text"] == "I like Horror <img src=x onerror=alert(1)>"
    # feedback through the API goes to this tab's session and is stored
    assert "disliked" in client.predict("m2", api_name="/dislike")
    again = client.predict("Horror again", 0.5, 5, 10, api_name="/send")
    assert "The Thing" not in chat_texts(again[OUT["chatbot"]])[-1][1]
    assert [f["kind"] for f in app.store.feedback(cid)] == ["dislike"]
    # new conversation: next message gets a new id
    client.predict(api_name="/new_conversation")
    fresh = client.predict("Comedy", 0.5, 5, 10, api_name="/send")
    assert fresh[OUT["conversation_box"]] != cid
    assert len(chat_texts(fresh[OUT["chatbot"]])) == 2


def test_parallel_clients_do_not_cross_talk(fake_server):
    url, app = fake_server
    genres = ["Horror", "Comedy", "Sci-Fi", "Romance"]
    out: dict[str, tuple] = {}

    def talk(g: str) -> None:
        c = Client(url, verbose=False)
        c.predict(f"I want {g}", 0.5, 5, 10, api_name="/send")
        out[g] = c.predict(f"more {g} please", 0.5, 5, 10, api_name="/send")

    threads = [threading.Thread(target=talk, args=(g,)) for g in genres]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert set(out) == set(genres)
    cids = {g: o[OUT["conversation_box"]] for g, o in out.items()}
    assert len(set(cids.values())) == len(genres)
    for g, o in out.items():
        users = [t for r, t in chat_texts(o[OUT["chatbot"]]) if r == "user"]
        assert users == [chat_text(f"I want {g}"), chat_text(f"more {g} please")]
        assert [t["user_text"] for t in app.store.turns(cids[g])] == [f"I want {g}", f"more {g} please"]


def test_invalid_controls_are_an_error_reply_not_a_crash(fake_server):
    url, app = fake_server
    client = Client(url, verbose=False)
    # The slider bounds are enforced by Gradio itself; out-of-range values are refused with an error.
    with pytest.raises(Exception):  # noqa: B017 - gradio_client raises AppError
        client.predict("Horror", 5.0, 5, 10, api_name="/send")
    ok = client.predict("Horror", 0.5, 5, 10, api_name="/send")
    assert chat_texts(ok[OUT["chatbot"]])[-1][0] == "assistant"


def test_page_serves_html(fake_server):
    url, _ = fake_server
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200 and b"<html" in r.read(2000).lower()
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(url + "file=/etc/passwd", timeout=10)


def test_basic_auth_is_enforced(tmp_path):
    from conftest import free_port, make_fake_app

    from ui.app import launch

    app = make_fake_app(tmp_path / "chat.sqlite3")
    demo, url = launch(app, "127.0.0.1", free_port(), ("alice", "s3cret"), 2, block=False, quiet=True)
    try:
        with pytest.raises(Exception):  # noqa: B017 - wrong password refused
            Client(url, auth=("alice", "wrong"), verbose=False)
        with pytest.raises(urllib.error.HTTPError) as err:  # the API config is not served without login
            urllib.request.urlopen(url + "config", timeout=10)
        assert err.value.code == 401
        ok = Client(url, auth=("alice", "s3cret"), verbose=False).predict("Horror", 0.5, 5, 10, api_name="/send")
        assert chat_texts(ok[OUT["chatbot"]])[-1][0] == "assistant"
    finally:
        demo.close()
