"""Rendering: the tree SVG, act and cards escape every text; user text cleaning."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from ui.render import act_html, cards_html, chat_text, clean_user_text, tree_panel, tree_svg

EVIL = '<script>alert("x")</script><img src=x onerror=alert(1)>&'


def _tree():
    return [
        {"entity_id": "g1", "name": EVIL, "type": "genre", "hop": 1, "mentioned": True, "score": 0.9,
         "children": [{"entity_id": "m1", "name": "Alien", "type": "movie", "hop": 2, "mentioned": False,
                       "score": 0.5, "children": []},
                      {"entity_id": "m2", "name": "A very long movie title that goes on and on", "type": "movie",
                       "hop": 2, "mentioned": False, "score": 0.4, "children": []}]},
        {"entity_id": "p1", "name": "Tom Hanks", "type": "person", "hop": 1, "mentioned": False, "score": 0.6,
         "children": []},
    ]  # fmt: skip


def test_tree_svg_is_wellformed_and_escaped():
    svg = tree_svg("recommend", _tree())
    root = ET.fromstring(svg)  # well-formed XML: nothing unescaped leaked into the markup
    assert root.tag.endswith("svg")
    assert "<script" not in svg and "<img" not in svg
    assert "&lt;script&gt;" in svg
    ns = "{http://www.w3.org/2000/svg}"
    groups = root.findall(f".//{ns}g")
    kinds = [g.get("class") for g in groups if (g.get("class") or "").startswith("tree-node")]
    assert kinds.count("tree-node intent") == 1
    assert kinds.count("tree-node mentioned") == 1
    assert kinds.count("tree-node new") == 3
    texts = [t.text for t in root.iter(f"{ns}text")]
    assert any(t and t.endswith("…") for t in texts)  # long names shortened, full name in <title>
    assert any("A very long movie title that goes on and on" in (t.text or "") for t in root.iter(f"{ns}title"))


def test_tree_svg_empty_and_panel_placeholder():
    ET.fromstring(tree_svg(None, []))
    assert "appears here" in tree_panel(None)
    panel = tree_panel({"intent": "chat", "tree": [], "intent_probs": {"chat": 0.8, "<x>": 0.2},
                        "linked": [{"entity_id": "p", "name": "<b>Tom</b>", "negated": True}]})  # fmt: skip
    assert "<b>Tom" not in panel and "&lt;b&gt;Tom" in panel and "negated" in panel
    assert "&lt;x&gt;" in panel


def test_cards_and_act_escape_everything():
    card = {"entity_id": '"><script>', "title": EVIL, "year": 1999, "genres": ["<i>Horror</i>"],
            "directors": ["A & B"], "stars": ["<s>"], "plot": "x" * 1000}  # fmt: skip
    html = cards_html([card])
    assert "<script" not in html and "<i>" not in html and "<s>" not in html
    assert 'data-entity="&quot;&gt;&lt;script&gt;"' in html
    assert "A &amp; B" in html and "(1999)" in html
    assert len(html) < 1500  # plot shortened
    assert "appear here" in cards_html([])
    assert "&lt;script&gt;" in act_html({"act_text": EVIL})


def test_chat_text_is_html_and_markdown_inert():
    out = chat_text('<img src=x onerror="alert(1)"> [click](javascript:alert(1)) ![i](http://x/y.png) & *b*')
    assert "<" not in out and ">" not in out.replace("&gt;", "")
    assert "\\[click\\](javascript:alert(1))" in out
    assert "\\!\\[i\\]" in out and "&amp;" in out and "\\*b\\*" in out


def test_clean_user_text():
    assert clean_user_text(None, 10) == ("", False)
    assert clean_user_text(" \t\n ", 10) == ("", False)
    assert clean_user_text("a\x00b\x1bc\u0085d\ud800e", 100) == ("abcde", False)
    assert clean_user_text("line1\nline2\tx", 100) == ("line1\nline2\tx", False)
    assert clean_user_text("e\u0301", 10) == ("é", False)  # NFC
    text, cut = clean_user_text("x" * 100_000, 2000)
    assert cut and len(text) == 2000
