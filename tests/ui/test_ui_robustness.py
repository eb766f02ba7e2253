"""The robustness corpus and the robustness run (bad inputs + concurrent sessions) against the fake server."""

from __future__ import annotations

import json

import pytest

from ui.robustness import (
    RobustnessConfig,
    bad_inputs,
    html_problems,
    main,
    run,
    run_bad_inputs,
    run_concurrent,
    shown,
    summarize,
)


def test_corpus_is_large_varied_and_deterministic():
    corpus = bad_inputs()
    assert len(corpus) >= 200
    assert corpus == bad_inputs()
    cats = {c for c, _ in corpus}
    assert {"empty", "long_100kb", "control_chars", "emoji", "other_languages", "html_script", "sql",
            "unknown_titles", "punctuation"} <= cats  # fmt: skip
    assert max(len(t) for _, t in corpus) >= 100_000
    assert any("\ud800" in t for _, t in corpus)


def test_html_problems_detects_injection():
    assert html_problems('<div class="x"><svg><g><text>a &lt;b&gt;</text></g></svg></div>') == []
    assert html_problems("<div><script>x</script></div>") == ["tag <script>"]
    assert html_problems('<div onclick="x">a</div>') == ["div[onclick]"]
    assert html_problems('<span title="javascript:alert(1)">a</span>') == ["span[title]"]


def test_shown_matches_the_chatbot_display():
    # Gradio's Chatbot applies inspect.cleandoc to text messages: the cross-talk check compares like with like.
    assert shown("a\n    b <i>x</i>") == "a\nb &lt;i&gt;x&lt;/i&gt;"
    assert shown("[x](javascript:y)") == "\\[x\\](javascript:y)"


def test_summarize_counts():
    recs = [
        {"index": 0, "category": "a", "latency_s": 0.1, "first_reply_s": 0.05, "problems": [], "crash": False},
        {"index": 1, "category": "a", "latency_s": 2.0, "first_reply_s": 0.5, "problems": ["x"], "crash": True},
    ]
    s = summarize(recs, 1.5)
    assert s["bad_inputs"] == 2 and s["crashes"] == 1 and s["over_latency_bound"] == 1
    assert s["max_latency_s"] == 2.0 and s["html_escaped"] is False


def test_bad_input_sample_and_concurrency_against_fake_server(fake_server):
    """Fast: two items of every category (incl. 100 KB and lone surrogates) and 4 sessions."""
    url, app = fake_server
    corpus = bad_inputs()
    sample, per_cat = [], {}
    for cat, text in corpus:  # two of every category, plus the lone surrogates (sent as escaped JSON)
        if per_cat.get(cat, 0) < 2 or "\ud800" in text:
            sample.append((cat, text))
            per_cat[cat] = per_cat.get(cat, 0) + 1
    s = summarize(run_bad_inputs(url, sample), 1.5)
    assert s["crashes"] == 0, s["crash_examples"]
    assert s["html_escaped"], s["html_problem_examples"]
    assert set(s["categories"]) == {c for c, _ in corpus}
    c = run_concurrent(url, app.store.path, 4)
    assert c["cross_talk"] == 0, c["cross_talk_findings"]
    assert c["concurrent_failures"] == 0, c["concurrent_failure_examples"]
    assert c["concurrent_turns"] == 12


@pytest.mark.integration
def test_robustness_full_run_against_fake_server(fake_server, tmp_path):
    """The whole corpus and 20 concurrent sessions (about 2-3 minutes on a busy 2-core machine)."""
    url, app = fake_server
    cfg = RobustnessConfig(url=url, db=str(app.store.path), concurrent=20, out=str(tmp_path / "r.json"))
    payload = run(cfg)
    assert payload["bad_inputs"] >= 200
    assert payload["crashes"] == 0, payload["crash_examples"]
    assert payload["html_escaped"], payload["html_problem_examples"]
    assert payload["concurrent_sessions"] == 20 and payload["concurrent_turns"] == 60
    assert payload["cross_talk"] == 0, payload["cross_talk_findings"]
    assert payload["concurrent_failures"] == 0, payload["concurrent_failure_examples"]
    assert payload["server_alive"]


def test_robustness_cli_writes_results(fake_server, tmp_path, capsys):
    url, app = fake_server
    out = tmp_path / "robustness.json"
    main(["--url", url, "--db", str(app.store.path), "--limit", "6", "--concurrent", "2", "--out", str(out)])
    data = json.loads(out.read_text())
    for key in ("bad_inputs", "crashes", "max_latency_s", "concurrent_sessions", "cross_talk", "p95_latency_s"):
        assert key in data
    assert data["bad_inputs"] == 6 and "git_commit" in data and "config" in data
    assert "| cross_talk |" in capsys.readouterr().out
