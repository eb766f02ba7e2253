"""Dialog acts: the reasoning tree of one system turn and its linearised string form.

A :class:`DialogAct` is CR-Walker's reasoning tree (§3.2, Table 1): an intent at the root,
hop-1 entities below it and hop-2 entities below those. It is the one type shared by the
extracted labels (:mod:`kg_build.labels`), the walker's predictions and the generator's input.

Linearisation is the preorder traversal of the paper's Table 10, tokens separated by spaces::

    [ Recommend ( Action ( The Terminator (1984) ) ) ( 1980s ( The Terminator (1984) ) ) ]

``[``/``]`` wrap the act and ``(``/``)`` wrap each subtree; they are only structural when they
stand alone as tokens, so names such as ``"(500) Days of Summer (2009)"`` survive the round trip.
Stand-alone bracket tokens inside a name are glued to their neighbour when writing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

INTENTS: tuple[str, ...] = ("recommend", "query", "chat")
_STRUCT = {"[", "]", "(", ")"}


@dataclass(frozen=True)
class ActNode:
    """One entity in a reasoning tree (``entity`` is a KG id, -1 when unresolved)."""

    entity: int
    name: str
    children: tuple[ActNode, ...] = ()

    def to_json(self) -> dict:
        return {"entity": self.entity, "name": self.name, "children": [c.to_json() for c in self.children]}

    @classmethod
    def from_json(cls, d: dict) -> ActNode:
        return cls(int(d["entity"]), d["name"], tuple(cls.from_json(c) for c in d.get("children", ())))


@dataclass(frozen=True)
class DialogAct:
    """Intent plus hop-1 nodes (each with its hop-2 children)."""

    intent: str
    nodes: tuple[ActNode, ...] = ()

    def __post_init__(self) -> None:
        if self.intent not in INTENTS:
            raise ValueError(f"unknown intent {self.intent!r}; expected one of {INTENTS}")

    # ---------------------------------------------------------------- views
    @property
    def hop1(self) -> list[int]:
        """Hop-1 entity ids, in order."""
        return [n.entity for n in self.nodes]

    @property
    def hop2(self) -> list[int]:
        """Distinct hop-2 entity ids in first-appearance order."""
        seen: dict[int, None] = {}
        for n in self.nodes:
            for c in n.children:
                seen.setdefault(c.entity, None)
        return list(seen)

    @property
    def leaves(self) -> list[int]:
        """Distinct leaf entity ids (hop-2 nodes, or hop-1 nodes without children)."""
        seen: dict[int, None] = {}
        for n in self.nodes:
            for leaf in n.children or (n,):
                seen.setdefault(leaf.entity, None)
        return list(seen)

    @property
    def width(self) -> int:
        return len(self.nodes)

    @property
    def depth(self) -> int:
        if not self.nodes:
            return 0
        return 2 if any(n.children for n in self.nodes) else 1

    # ---------------------------------------------------------------- string form
    def linearize(self) -> str:
        """Preorder string (see module docstring)."""
        parts = ["[", self.intent.capitalize()]
        for n in self.nodes:
            parts.append(_linearize_node(n))
        parts.append("]")
        return " ".join(parts)

    @classmethod
    def parse(cls, text: str, resolve: Callable[[str], int] | None = None) -> DialogAct:
        """Inverse of :meth:`linearize`.

        Args:
            text: A linearised act.
            resolve: Maps a name to its KG id; without it ids are -1.

        Raises:
            ValueError: if the string is not a well-formed act.
        """
        tokens = text.split()
        if len(tokens) < 3 or tokens[0] != "[" or tokens[-1] != "]":
            raise ValueError(f"not a dialog act (must look like '[ Intent ( ... ) ]'): {text!r}")
        intent = tokens[1].lower()
        pos = 2
        nodes = []
        while pos < len(tokens) - 1:
            node, pos = _parse_node(tokens, pos, resolve, text)
            nodes.append(node)
        return cls(intent, tuple(nodes))

    def to_json(self) -> dict:
        return {"intent": self.intent, "nodes": [n.to_json() for n in self.nodes]}

    @classmethod
    def from_json(cls, d: dict) -> DialogAct:
        return cls(d["intent"], tuple(ActNode.from_json(n) for n in d.get("nodes", ())))


def _safe_name(name: str) -> str:
    tokens = name.split()
    if not tokens:
        return "_"
    out: list[str] = []
    for tok in tokens:
        if tok in _STRUCT:
            if out:
                out[-1] += tok
            else:
                out.append(tok + "_")
        else:
            out.append(tok)
    return " ".join(out)


def _linearize_node(node: ActNode) -> str:
    inner = [_safe_name(node.name)] + [_linearize_node(c) for c in node.children]
    return "( " + " ".join(inner) + " )"


def _parse_node(tokens: list[str], pos: int, resolve, text: str) -> tuple[ActNode, int]:
    if tokens[pos] != "(":
        raise ValueError(f"expected '(' at token {pos} in {text!r}")
    pos += 1
    name_toks: list[str] = []
    while pos < len(tokens) and tokens[pos] not in _STRUCT:
        name_toks.append(tokens[pos])
        pos += 1
    if not name_toks:
        raise ValueError(f"empty entity name at token {pos} in {text!r}")
    children = []
    while pos < len(tokens) and tokens[pos] == "(":
        child, pos = _parse_node(tokens, pos, resolve, text)
        children.append(child)
    if pos >= len(tokens) or tokens[pos] != ")":
        raise ValueError(f"unbalanced parentheses in {text!r}")
    name = " ".join(name_toks)
    entity = resolve(name) if resolve else -1
    return ActNode(entity, name, tuple(children)), pos + 1


_WS = re.compile(r"\s+")


def display_name(name: str) -> str:
    """The form an entity name takes inside a linearised act (whitespace squeezed, brackets safe)."""
    return _safe_name(_WS.sub(" ", name).strip())


def name_resolver(kg) -> Callable[[str], int]:
    """A ``name -> KG id`` resolver for :meth:`DialogAct.parse` built from a :class:`KnowledgeGraph`.

    Names are matched in their linearised form (:func:`display_name`), first exactly, then
    case-insensitively. When several entities share a display name the lowest id wins (ids are
    deterministic, see :mod:`kg_build.schema`); unknown names resolve to -1.

    Args:
        kg: A :class:`kg_build.schema.KnowledgeGraph` (anything with ``.entities`` of ``(id, name)``).

    Returns:
        A function usable as ``DialogAct.parse(text, resolve=name_resolver(kg))``.
    """
    exact: dict[str, int] = {}
    folded: dict[str, int] = {}
    for e in kg.entities:
        key = display_name(e.name)
        exact.setdefault(key, e.id)
        folded.setdefault(key.casefold(), e.id)

    def resolve(name: str) -> int:
        key = display_name(name)
        if key in exact:
            return exact[key]
        return folded.get(key.casefold(), -1)

    return resolve
