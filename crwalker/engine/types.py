"""Plain dataclasses exchanged between the online engine and its callers (the UI, the benchmark).

Every class has ``to_json()`` (JSON-serialisable dict); :class:`TurnResult` and :class:`TreeNode`
also have ``from_json`` so a stored turn can be shown again.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class WalkControls:
    """User-adjustable walk settings of one turn.

    Attributes:
        threshold: ``tau`` of Eq. 7: an entity is selected when its score exceeds it (0..1).
        width: ``m``: at most this many entities are selected per hop (>= 1).
        max_leaves: cap on the total number of leaves of the reasoning tree (>= 1); leaves beyond it are
            dropped in preorder (hop-1 nodes left to right, their children left to right).
        guided: guided mode (:mod:`crwalker.engine.guided`): the engine's trained Movie-domain policy decides
            whether to ask about an attribute or to recommend; ignored when the engine has no guide.
    """

    threshold: float = 0.5
    width: int = 5
    max_leaves: int = 10
    guided: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.threshold) <= 1.0:
            raise ValueError(f"WalkControls.threshold must be in [0, 1], got {self.threshold!r}")
        if int(self.width) < 1:
            raise ValueError(f"WalkControls.width must be >= 1, got {self.width!r}")
        if int(self.max_leaves) < 1:
            raise ValueError(f"WalkControls.max_leaves must be >= 1, got {self.max_leaves!r}")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class TreeNode:
    """One node of the reasoning tree (hop 1 below the intent root, hop 2 below hop 1).

    ``mentioned`` is the entity status of CR-Walker's Algorithm 1: True when the entity was mentioned
    earlier in the conversation (by the user or the system). ``score`` is the walker's sigmoid score
    (Eq. 7) when known.
    """

    entity_id: int
    name: str
    type: str
    hop: int
    mentioned: bool
    score: float | None = None
    children: list[TreeNode] = field(default_factory=list)

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["children"] = [c.to_json() for c in self.children]
        return d

    @classmethod
    def from_json(cls, d: dict) -> TreeNode:
        kids = [cls.from_json(c) for c in d.get("children", [])]
        return cls(int(d["entity_id"]), d["name"], d["type"], int(d["hop"]), bool(d["mentioned"]), d.get("score"), kids)


@dataclass
class MovieCard:
    """What the UI shows for a recommended movie (from ``data/kg/movie_info.jsonl``)."""

    entity_id: int
    title: str
    year: int | None = None
    genres: list[str] = field(default_factory=list)
    directors: list[str] = field(default_factory=list)
    stars: list[str] = field(default_factory=list)
    plot: str | None = None

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> MovieCard:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class TurnResult:
    """Everything one turn produced (see :class:`crwalker.engine.Session`)."""

    turn_index: int
    user_text: str
    linked: list[dict]
    intent: str
    intent_probs: dict[str, float]
    act_text: str
    tree: list[TreeNode]
    recommendations: list[MovieCard]
    ranked: list[tuple[int, float]]
    reply: str = ""
    timings: dict[str, float | None] = field(default_factory=dict)
    rejected_now: list[int] = field(default_factory=list)  # entities this turn's text added to the rejected set
    #: guided mode only (else None): the policy's decision and what it saw -- ``action`` ("ask"|"recommend"),
    #: ``attribute``/``attribute_name``/``class_name`` (ask), ``items`` (recommend), ``policy``, ``q_values``,
    #: ``n_candidates``, ``accepted``, ``rejected_attrs``, ``relaxed``, ``history``, ``answered``/``answer``
    #: (the user's answer to the previous question), ``question_appended``
    guided: dict | None = None

    def to_json(self) -> dict:
        return {
            "turn_index": self.turn_index,
            "user_text": self.user_text,
            "linked": [dict(x) for x in self.linked],
            "intent": self.intent,
            "intent_probs": dict(self.intent_probs),
            "act_text": self.act_text,
            "tree": [n.to_json() for n in self.tree],
            "recommendations": [c.to_json() for c in self.recommendations],
            "ranked": [[int(e), float(s)] for e, s in self.ranked],
            "reply": self.reply,
            "timings": dict(self.timings),
            "rejected_now": list(self.rejected_now),
            "guided": None if self.guided is None else dict(self.guided),
        }

    @classmethod
    def from_json(cls, d: dict) -> TurnResult:
        return cls(
            turn_index=int(d["turn_index"]),
            user_text=d["user_text"],
            linked=[dict(x) for x in d.get("linked", [])],
            intent=d["intent"],
            intent_probs={k: float(v) for k, v in d.get("intent_probs", {}).items()},
            act_text=d.get("act_text", ""),
            tree=[TreeNode.from_json(n) for n in d.get("tree", [])],
            recommendations=[MovieCard.from_json(c) for c in d.get("recommendations", [])],
            ranked=[(int(e), float(s)) for e, s in d.get("ranked", [])],
            reply=d.get("reply", ""),
            timings=dict(d.get("timings", {})),
            rejected_now=[int(x) for x in d.get("rejected_now", [])],
            guided=None if d.get("guided") is None else dict(d["guided"]),
        )


@dataclass
class TurnEvent:
    """One item of :meth:`Session.respond`'s stream.

    ``kind``: ``"reasoning"`` (``result`` holds the tree/act/cards, ``reply`` still ""), ``"token"``
    (``text`` is the next piece of the reply) or ``"done"`` (``result`` is the final turn with the full
    reply and timings; the session history has been updated).
    """

    kind: Literal["reasoning", "token", "done"]
    text: str = ""
    result: TurnResult | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "text": self.text, "result": self.result.to_json() if self.result else None}
