"""HTTP-level test of the chat with the real ``crwalker.engine`` (integration; skips without artefacts)."""

from __future__ import annotations

import pytest
from gradio_client import Client

from ui.app import API_OUTPUTS
from ui.robustness import _card_ids, chat_texts, response_problems

OUT = {name: i for i, name in enumerate(API_OUTPUTS)}

pytestmark = pytest.mark.integration


def test_real_engine_turn_feedback_and_restore(real_server):
    url, app = real_server
    client = Client(url, verbose=False)
    job = client.submit("I love scary movies like Alien <b>and</b> The Thing", 0.5, 5, 10, api_name="/send")
    final = job.result()
    assert len(job.outputs()) >= 3  # streamed
    assert response_problems(final) == []
    chat = chat_texts(final[OUT["chatbot"]])
    assert chat[-1][0] == "assistant" and chat[-1][1]
    cid = final[OUT["conversation_box"]]
    turns = app.store.turns(cid)
    assert len(turns) == 1 and turns[0]["reply"] and turns[0]["act_text"]
    cards = _card_ids(final[OUT["cards"]])
    assert cards == [str(c["entity_id"]) for c in turns[0]["recommendations"]]
    if cards:  # 👎 on the first recommended movie: stored and never recommended again
        assert "disliked" in client.predict(cards[0], api_name="/dislike")
        assert app.store.feedback(cid)[0]["entity_id"] == cards[0]
    app.sessions.drop(cid)  # force a restore from SQLite (as after LRU eviction)
    again = client.predict("something else please", 0.5, 5, 10, api_name="/send")
    assert again[OUT["conversation_box"]] == cid
    assert [t["turn_index"] for t in app.store.turns(cid)] == [0, 1]
    if cards:
        assert cards[0] not in _card_ids(again[OUT["cards"]])
    assert app.sessions.restored >= 1
