"""HTML/SVG rendering of one turn: the reasoning tree (CR-Walker Fig. 1 style), the act and movie cards.

Every function takes the JSON form of the engine's dataclasses (``TurnResult.to_json()`` and friends), so a
stored turn can be re-rendered from SQLite. All text coming from users, the knowledge graph or the generator
is escaped with :func:`html.escape` before it is placed in markup; nothing here emits script or event handlers.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

# Paper Fig. 1: entities already mentioned in the dialog vs. new ones the walker brings in.
COLOR_INTENT = "#6d28d9"
COLOR_MENTIONED = "#f59e0b"
COLOR_NEW = "#0ea5e9"
COLOR_EDGE = "#94a3b8"

_NODE_W, _NODE_H, _COL_GAP, _ROW_H, _PAD = 150, 26, 36, 32, 8
_MAX_LABEL = 20

# Characters removed from user text before it reaches the engine or the store: C0/C1 controls except
# tab/newline, lone surrogates (not encodable as UTF-8) and other non-characters.
_KEEP_CONTROLS = {"\n", "\t"}


def esc(text: Any) -> str:
    """HTML-escape any value (``None`` -> empty string); quotes are escaped too."""
    return html.escape("" if text is None else str(text), quote=True)


def clean_user_text(text: Any, max_chars: int) -> tuple[str, bool]:
    """Normalise raw user input for the engine and the store.

    Removes control characters (keeping tab and newline), lone surrogates and unassigned code points,
    applies NFC, strips surrounding whitespace and truncates to ``max_chars``.

    Args:
        text: What the browser sent (any value; ``None`` becomes empty).
        max_chars: Longest text passed on.

    Returns:
        The cleaned text and whether it was truncated.
    """
    raw = "" if text is None else str(text)
    kept = []
    for ch in raw:
        cat = unicodedata.category(ch)
        if (cat == "Cc" and ch not in _KEEP_CONTROLS) or cat in ("Cs", "Cn"):
            continue
        kept.append(ch)
    out = unicodedata.normalize("NFC", "".join(kept)).strip()
    truncated = len(out) > max_chars
    return (out[:max_chars].rstrip() if truncated else out), truncated


_MD_SPECIAL = re.compile(r"([\\`*_\[\]#!|~$])")


def chat_text(text: str) -> str:
    """Text safe to show in the (markdown-rendering) chatbot: HTML-escaped and markdown-inert.

    HTML special characters become entities and markdown punctuation is backslash-escaped, so user or
    generated text can neither inject markup nor form links/images; it is displayed literally.
    """
    return _MD_SPECIAL.sub(r"\\\1", html.escape("" if text is None else str(text), quote=False))


def _short(label: str, n: int = _MAX_LABEL) -> str:
    return label if len(label) <= n else label[: n - 1] + "…"


def _node_box(x: float, y: float, label: str, full: str, fill: str, kind: str) -> str:
    return (
        f'<g class="tree-node {kind}"><title>{esc(full)}</title>'
        f'<rect x="{x:.0f}" y="{y:.0f}" rx="6" ry="6" width="{_NODE_W}" height="{_NODE_H}" fill="{fill}" />'
        f'<text x="{x + _NODE_W / 2:.0f}" y="{y + _NODE_H / 2 + 4:.0f}" text-anchor="middle" font-size="12" '
        f'font-family="sans-serif" fill="#ffffff">{esc(_short(label))}</text></g>'
    )


def _edge(x1: float, y1: float, x2: float, y2: float) -> str:
    mx = (x1 + x2) / 2
    return (
        f'<path d="M{x1:.0f},{y1:.0f} C{mx:.0f},{y1:.0f} {mx:.0f},{y2:.0f} {x2:.0f},{y2:.0f}" '
        f'stroke="{COLOR_EDGE}" stroke-width="1.5" fill="none" />'
    )


def _node_label(node: Mapping[str, Any]) -> tuple[str, str]:
    name = str(node.get("name") or node.get("entity_id") or "?")
    typ = str(node.get("type") or "")
    score = node.get("score")
    full = f"{name} ({typ})" if typ else name
    if isinstance(score, (int, float)):
        full += f" score={score:.2f}"
    full += " · mentioned" if node.get("mentioned") else " · new"
    return name, full


def tree_svg(intent: str | None, tree: Sequence[Mapping[str, Any]] | None) -> str:
    """The reasoning tree of one turn as inline SVG: intent root -> hop-1 -> hop-2 (left to right).

    Args:
        intent: The chosen intent (``recommend`` / ``query`` / ``chat``); the root node.
        tree: ``TreeNode.to_json()`` dicts of the hop-1 nodes, each with its hop-2 ``children``.

    Returns:
        An ``<svg>`` element (with a legend) sized to the tree; text escaped, long names shortened with
        the full name in a ``<title>`` tooltip.
    """
    hop1 = list(tree or [])
    # One row per leaf: a hop-1 node without children occupies one row itself.
    rows: list[tuple[int, int]] = []  # (hop1 index, child index or -1)
    for i, n in enumerate(hop1):
        kids = list(n.get("children") or [])
        if kids:
            rows.extend((i, j) for j in range(len(kids)))
        else:
            rows.append((i, -1))
    n_rows = max(1, len(rows))
    legend_h = 22
    height = _PAD * 2 + n_rows * _ROW_H + legend_h
    width = _PAD * 2 + 3 * _NODE_W + 2 * _COL_GAP
    xs = [_PAD + c * (_NODE_W + _COL_GAP) for c in range(3)]

    def row_y(r: float) -> float:
        return _PAD + legend_h + r * _ROW_H

    parts: list[str] = []
    boxes: list[str] = []
    root_y = row_y((n_rows - 1) / 2)
    root_label = f"intent: {intent}" if intent else "intent: ?"
    boxes.append(_node_box(xs[0], root_y, root_label, root_label, COLOR_INTENT, "intent"))
    for i, n in enumerate(hop1):
        my_rows = [r for r, (hi, _) in enumerate(rows) if hi == i]
        y1 = row_y(sum(my_rows) / len(my_rows))
        parts.append(_edge(xs[0] + _NODE_W, root_y + _NODE_H / 2, xs[1], y1 + _NODE_H / 2))
        label, full = _node_label(n)
        kind = "mentioned" if n.get("mentioned") else "new"
        boxes.append(_node_box(xs[1], y1, label, full, COLOR_MENTIONED if n.get("mentioned") else COLOR_NEW, kind))
        for j, kid in enumerate(n.get("children") or []):
            y2 = row_y(rows.index((i, j)))
            parts.append(_edge(xs[1] + _NODE_W, y1 + _NODE_H / 2, xs[2], y2 + _NODE_H / 2))
            label, full = _node_label(kid)
            kind = "mentioned" if kid.get("mentioned") else "new"
            fill = COLOR_MENTIONED if kid.get("mentioned") else COLOR_NEW
            boxes.append(_node_box(xs[2], y2, label, full, fill, kind))
    if not hop1:
        boxes.append(
            f'<text x="{xs[1]:.0f}" y="{root_y + _NODE_H / 2 + 4:.0f}" font-size="12" font-family="sans-serif" '
            f'fill="#64748b">(no entities selected)</text>'
        )
    legend = (
        f'<g class="legend" font-size="11" font-family="sans-serif" fill="#334155">'
        f'<rect x="{_PAD}" y="{_PAD}" width="10" height="10" fill="{COLOR_INTENT}"/>'
        f'<text x="{_PAD + 14}" y="{_PAD + 9}">intent</text>'
        f'<rect x="{_PAD + 70}" y="{_PAD}" width="10" height="10" fill="{COLOR_MENTIONED}"/>'
        f'<text x="{_PAD + 84}" y="{_PAD + 9}">mentioned</text>'
        f'<rect x="{_PAD + 160}" y="{_PAD}" width="10" height="10" fill="{COLOR_NEW}"/>'
        f'<text x="{_PAD + 174}" y="{_PAD + 9}">new (unmentioned)</text>'
        f'<text x="{xs[1]:.0f}" y="{_PAD + 9}" dx="{_NODE_W + 40}">hop 1 → hop 2</text></g>'
    )
    return (
        f'<svg class="reasoning-tree" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="reasoning tree">'
        + legend
        + "".join(parts)
        + "".join(boxes)
        + "</svg>"
    )


def tree_panel(result: Mapping[str, Any] | None) -> str:
    """The tree panel HTML for a ``TurnResult.to_json()`` dict (placeholder before the first turn)."""
    if not result:
        return '<div class="tree-panel empty">The reasoning tree of the last turn appears here.</div>'
    probs = result.get("intent_probs") or {}
    prob_txt = ", ".join(
        f"{esc(k)} {float(v):.2f}" for k, v in sorted(probs.items(), key=lambda kv: -float(kv[1] or 0))
    )
    linked = result.get("linked") or []
    link_items = []
    for e in linked:
        name = esc(e.get("name") or e.get("entity_id") or e.get("id") or "?")
        typ = esc(e.get("type") or "")
        neg = " negated" if e.get("negated") else ""
        link_items.append(f'<span class="linked{neg}" title="{typ}">{"not " if neg else ""}{name}</span>')
    linked_html = " ".join(link_items) if link_items else "<em>none</em>"
    return (
        '<div class="tree-panel">'
        + tree_svg(result.get("intent"), result.get("tree"))
        + f'<div class="intent-probs">intent probabilities: {prob_txt or "n/a"}</div>'
        + f'<div class="linked-entities">linked: {linked_html}</div>'
        + "</div>"
    )


def act_html(result: Mapping[str, Any] | None) -> str:
    """The linearized dialog act in a ``<code>`` block (escaped)."""
    act = (result or {}).get("act_text") or ""
    return f'<div class="act"><b>Dialog act</b><pre><code>{esc(act) or "—"}</code></pre></div>'


def _join(values: Any, limit: int) -> str:
    if not values:
        return ""
    if isinstance(values, str):
        return values
    return ", ".join(str(v) for v in list(values)[:limit])


def movie_card(card: Mapping[str, Any]) -> str:
    """One recommended movie as an HTML card (title, year, genres, directors, stars, plot)."""
    title = esc(card.get("title") or card.get("entity_id") or "?")
    year = card.get("year")
    year_html = f' <span class="year">({esc(year)})</span>' if year not in (None, "", 0) else ""
    rows = []
    for label, key, lim in (("Genres", "genres", 6), ("Director", "directors", 3), ("Stars", "stars", 4)):
        val = _join(card.get(key), lim)
        if val:
            rows.append(f'<div class="{key}"><b>{label}:</b> {esc(val)}</div>')
    plot = str(card.get("plot") or "")
    if len(plot) > 400:
        plot = plot[:399] + "…"
    plot_html = f'<div class="plot">{esc(plot)}</div>' if plot else ""
    return (
        f'<div class="movie-card" data-entity="{esc(card.get("entity_id"))}">'
        f'<div class="title">{title}{year_html}</div>' + "".join(rows) + plot_html + "</div>"
    )


def cards_html(cards: Sequence[Mapping[str, Any]] | None) -> str:
    """All recommended movies of a turn, or a placeholder."""
    if not cards:
        return '<div class="movie-cards empty">Recommended movies appear here.</div>'
    return '<div class="movie-cards">' + "".join(movie_card(c) for c in cards) + "</div>"


def timings_text(result: Mapping[str, Any] | None) -> str:
    """A one-line summary of the turn's timings (plain text)."""
    t = (result or {}).get("timings") or {}
    parts = []
    for key, label, unit, scale in (
        ("link_ms", "link", "ms", 1),
        ("encode_ms", "encode", "ms", 1),
        ("walk_ms", "walk", "ms", 1),
        ("first_token_s", "first token", "s", 1),
        ("total_s", "total", "s", 1),
    ):
        v = t.get(key)
        if isinstance(v, (int, float)):
            parts.append(f"{label} {v * scale:.0f} {unit}" if unit == "ms" else f"{label} {v:.2f} {unit}")
    return " · ".join(parts)


def guided_html(result: Mapping[str, Any] | None) -> str:
    """Guided mode: the question the policy asked (answer with Yes / No or text), or what it recommended from.

    Empty for turns that were not guided (``result["guided"]`` is ``None``).
    """
    g = (result or {}).get("guided") or None
    if not g:
        return ""
    policy = esc(str(g.get("policy") or "policy").upper())
    n = g.get("n_candidates")
    cand = f" ({esc(n)} candidate movies)" if isinstance(n, int) else ""
    if g.get("action") == "ask":
        cls = g.get("class_name")
        what = f"<b>{esc(g.get('attribute_name'))}</b>" + (f" ({esc(cls)})" if cls else "")
        return (
            f'<div class="guided-question" data-attribute="{esc(g.get("attribute"))}">'
            f"{policy} asks about {what}{cand}: answer with the buttons or in your own words.</div>"
        )
    return f'<div class="guided-question recommend">{policy} recommends now{cand}.</div>'


CSS = """
.tree-panel svg { max-width: 100%; height: auto; }
.intent-probs, .linked-entities { font-size: 12px; color: #475569; margin-top: 4px; }
.linked { background: #e0f2fe; border-radius: 4px; padding: 0 4px; margin-right: 2px; }
.linked.negated { background: #fee2e2; text-decoration: line-through; }
.act pre { white-space: pre-wrap; word-break: break-word; font-size: 12px; margin: 4px 0; }
.movie-cards { display: flex; flex-direction: column; gap: 8px; max-height: 520px; overflow-y: auto; }
.movie-card { border: 1px solid #cbd5e1; border-radius: 8px; padding: 8px 10px; font-size: 13px; }
.movie-card .title { font-weight: 600; font-size: 14px; margin-bottom: 2px; }
.movie-card .plot { color: #475569; margin-top: 4px; }
.guided-question { background: #fef9c3; border-radius: 6px; padding: 6px 8px; font-size: 13px; }
"""
