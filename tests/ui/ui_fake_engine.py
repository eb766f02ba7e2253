"""A small deterministic engine with the ``crwalker.engine`` interface, for the UI's fast tests.

It links genre/person/movie names by substring over a tiny catalogue, builds a two-hop tree
(linked attribute -> movies), streams a templated reply word by word and honours feedback. A message
containing ``__boom__`` raises in the middle of the stream (crash-safety tests). Guided mode: until the
user accepted a genre, the fake "policy" asks about the next genre (``Yes`` accepts it, ``No`` excludes
it), then it recommends movies of the accepted genres.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

MOVIES = [
    {"entity_id": "m1", "title": "Alien", "year": 1979, "genres": ["Horror", "Sci-Fi"], "directors": ["Ridley Scott"],
     "stars": ["Sigourney Weaver"], "plot": "A crew meets a deadly creature <aboard> a ship & more."},
    {"entity_id": "m2", "title": "The Thing", "year": 1982, "genres": ["Horror"], "directors": ["John Carpenter"],
     "stars": ["Kurt Russell"], "plot": "Antarctic shape-shifter."},
    {"entity_id": "m3", "title": "Top Gun", "year": 1986, "genres": ["Action"], "directors": ["Tony Scott"],
     "stars": ["Tom Cruise"], "plot": "Fighter pilots."},
    {"entity_id": "m4", "title": "Die Hard", "year": 1988, "genres": ["Action"], "directors": ["John McTiernan"],
     "stars": ["Bruce Willis"], "plot": "A cop in a tower."},
    {"entity_id": "m5", "title": "Amélie", "year": 2001, "genres": ["Comedy", "Romance"],
     "directors": ["Jean-Pierre Jeunet"], "stars": ["Audrey Tautou"], "plot": "A shy waitress in Paris."},
    {"entity_id": "m6", "title": "Airplane!", "year": 1980, "genres": ["Comedy"], "directors": ["Jim Abrahams"],
     "stars": ["Leslie Nielsen"], "plot": "Surely you can't be serious."},
    {"entity_id": "m7", "title": "Toy Story", "year": 1995, "genres": ["Animation", "Comedy"],
     "directors": ["John Lasseter"], "stars": ["Tom Hanks"], "plot": "Toys come alive."},
    {"entity_id": "m8", "title": "Heat", "year": 1995, "genres": ["Action", "Crime"], "directors": ["Michael Mann"],
     "stars": ["Al Pacino"], "plot": "Cops and robbers."},
    {"entity_id": "m9", "title": "Halloween", "year": 1978, "genres": ["Horror"], "directors": ["John Carpenter"],
     "stars": ["Jamie Lee Curtis"], "plot": "The night he came home."},
    {"entity_id": "m10", "title": "Spirited Away", "year": 2001, "genres": ["Animation", "Fantasy"],
     "directors": ["Hayao Miyazaki"], "stars": ["Rumi Hiiragi"], "plot": "A girl in a spirit world."},
    {"entity_id": "m11", "title": "Notting Hill", "year": 1999, "genres": ["Comedy", "Romance"],
     "directors": ["Roger Michell"], "stars": ["Julia Roberts"], "plot": "A bookseller and a star."},
    {"entity_id": "m12", "title": "Blade Runner", "year": 1982, "genres": ["Sci-Fi"], "directors": ["Ridley Scott"],
     "stars": ["Harrison Ford"], "plot": "Replicants."},
]  # fmt: skip
GENRES = sorted({g for m in MOVIES for g in m["genres"]})
PEOPLE = sorted({p for m in MOVIES for p in m["directors"] + m["stars"]})


@dataclasses.dataclass
class WalkControls:
    threshold: float = 0.5
    width: int = 5
    max_leaves: int = 10
    guided: bool = False


@dataclasses.dataclass
class TreeNode:
    entity_id: str
    name: str
    type: str
    hop: int
    mentioned: bool
    score: float
    children: list[TreeNode] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return d


@dataclasses.dataclass
class MovieCard:
    entity_id: str
    title: str
    year: int | None
    genres: list[str]
    directors: list[str]
    stars: list[str]
    plot: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class TurnResult:
    turn_index: int
    user_text: str
    linked: list[dict[str, Any]]
    intent: str
    intent_probs: dict[str, float]
    act_text: str
    tree: list[TreeNode]
    recommendations: list[MovieCard]
    ranked: list[tuple[str, float]]
    reply: str
    timings: dict[str, float]
    guided: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["ranked"] = [list(x) for x in self.ranked]
        return d


@dataclasses.dataclass
class TurnEvent:
    kind: str
    text: str = ""
    result: TurnResult | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "text": self.text, "result": self.result.to_json() if self.result else None}


class Session:
    def __init__(self, engine: FakeEngine, sid: str | None = None):
        self.engine = engine
        self.id = sid or uuid.uuid4().hex
        self.turns: list[str] = []
        self.excluded: set[str] = set()
        self.liked: list[str] = []
        self.recommended: list[str] = []
        self.accepted: list[str] = []  # guided mode: accepted genres
        self.asked: list[str] = []
        self.pending: str | None = None
        self._lock = threading.Lock()

    def _link(self, text: str) -> list[dict[str, Any]]:
        low = text.lower()
        out = []
        for g in GENRES:
            if g.lower() in low:
                out.append({"entity_id": f"g:{g}", "name": g, "type": "genre", "span": [0, 0], "negated": False})
        for p in PEOPLE:
            if p.lower() in low:
                neg = f"no {p.lower()}" in low
                out.append({"entity_id": f"p:{p}", "name": p, "type": "person", "span": [0, 0], "negated": neg})
        for m in MOVIES:
            if m["title"].lower() in low:
                out.append({"entity_id": m["entity_id"], "name": m["title"], "type": "movie", "span": [0, 0],
                            "negated": False})  # fmt: skip
        return out

    def respond(self, text: str, controls: WalkControls | None = None) -> Iterator[TurnEvent]:
        controls = controls or WalkControls()
        t0 = time.perf_counter()
        with self._lock:
            linked = self._link(text)
            for e in linked:
                if e["negated"]:
                    self.excluded.add(e["entity_id"])
            attrs = [e for e in linked if e["type"] != "movie" and not e["negated"]]
            guided = None
            if getattr(controls, "guided", False):
                answer = text.strip().lower()
                if self.pending and answer.startswith("yes"):
                    self.accepted.append(self.pending)
                elif self.pending and answer.startswith("no"):
                    self.excluded.add(f"g:{self.pending}")
                self.pending = None
                open_genres = [g for g in GENRES if g not in self.asked and not attrs]
                if not self.accepted and open_genres:
                    g = open_genres[0]
                    self.asked.append(g)
                    self.pending = g
                    guided = {"action": "ask", "attribute": f"g:{g}", "attribute_name": g, "class_name": "Genre",
                              "policy": "fake", "n_candidates": len(MOVIES)}  # fmt: skip
                else:
                    attrs += [{"entity_id": f"g:{g}", "name": g, "type": "genre"} for g in self.accepted]
                    guided = {"action": "recommend", "policy": "fake", "n_candidates": len(MOVIES)}
            tree: list[TreeNode] = []
            recs: list[dict[str, Any]] = []
            for a in attrs[: controls.width]:
                node = TreeNode(a["entity_id"], a["name"], a["type"], 1, True, 0.9)
                for m in MOVIES:
                    if len(node.children) >= controls.width or len(recs) >= controls.max_leaves:
                        break
                    hit = a["name"] in m["genres"] or a["name"] in m["directors"] + m["stars"]
                    bad = m["entity_id"] in self.excluded or any(
                        f"p:{p}" in self.excluded for p in m["directors"] + m["stars"]
                    )
                    if hit and not bad and m not in recs:
                        node.children.append(TreeNode(m["entity_id"], m["title"], "movie", 2, False, 0.7))
                        recs.append(m)
                tree.append(node)
            intent = "recommend" if recs else ("query" if "?" in text else "chat")
            if guided and guided["action"] == "ask":
                intent = "query"
                g = guided["attribute_name"]
                tree = [
                    TreeNode(
                        "c:Genre", "Genre", "class", 1, False, 0.0, [TreeNode(f"g:{g}", g, "genre", 2, False, 0.0)]
                    )
                ]
            cards = [MovieCard(**m) for m in recs]
            act = f"{intent}(" + ", ".join(n.name + "->" + "|".join(c.name for c in n.children) for n in tree) + ")"
            self.turns.append(text)
            self.recommended += [m["entity_id"] for m in recs]
            result = TurnResult(
                turn_index=len(self.turns) - 1,
                user_text=text,
                linked=linked,
                intent=intent,
                intent_probs={"recommend": 0.6 if recs else 0.2, "query": 0.2, "chat": 0.2 if recs else 0.6},
                act_text=act,
                tree=tree,
                recommendations=cards,
                ranked=[(m["entity_id"], 1.0 - i / 10) for i, m in enumerate(recs)],
                reply="",
                timings={"link_ms": 0.1, "encode_ms": 0.1, "walk_ms": 0.1},
                guided=guided,
            )
        yield TurnEvent("reasoning", result=result)
        if guided and guided["action"] == "ask":
            reply = f"Are you in the mood for {guided['attribute_name']} movies?"
        elif recs:
            reply = "How about " + " or ".join(f"{m['title']} ({m['year']})" for m in recs) + "? <b>enjoy</b>"
        else:
            reply = "Tell me more about what you like."
        words = reply.split(" ")
        t_first = None
        for i, w in enumerate(words):
            time.sleep(self.engine.token_delay)
            if t_first is None:
                t_first = time.perf_counter() - t0
            if "__boom__" in text and i == len(words) // 2:
                raise RuntimeError("fake engine failure mid-stream")
            yield TurnEvent("token", text=(w if i == 0 else " " + w))
        result.reply = reply
        result.timings.update(first_token_s=t_first or 0.0, total_s=time.perf_counter() - t0)
        yield TurnEvent("done", result=result)

    def feedback(self, entity_id: str, kind: str) -> None:
        if kind not in ("like", "dislike", "seen"):
            raise ValueError(kind)
        with self._lock:
            if kind == "like":
                self.liked.append(entity_id)
            else:
                self.excluded.add(entity_id)

    def reject(self, entity_id: str) -> None:
        with self._lock:
            self.excluded.add(entity_id)

    def to_state(self) -> dict[str, Any]:
        with self._lock:
            return {
                "id": self.id,
                "turns": list(self.turns),
                "excluded": sorted(self.excluded),
                "liked": list(self.liked),
                "recommended": list(self.recommended),
                "guided": {"accepted": list(self.accepted), "asked": list(self.asked), "pending": self.pending},
            }

    @classmethod
    def from_state(cls, engine: FakeEngine, state: dict[str, Any]) -> Session:
        s = cls(engine, state["id"])
        s.turns = list(state["turns"])
        s.excluded = set(state["excluded"])
        s.liked = list(state["liked"])
        s.recommended = list(state["recommended"])
        g = state.get("guided") or {}
        s.accepted, s.asked, s.pending = list(g.get("accepted", [])), list(g.get("asked", [])), g.get("pending")
        return s


class FakeEngine:
    def __init__(self, token_delay: float = 0.002):
        self.token_delay = token_delay
        self.guide = "fake"  # guided mode available (the real engine holds a MovieGuide here)

    def new_session(self) -> Session:
        return Session(self)
