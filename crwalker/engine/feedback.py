"""Negative feedback in an online session (CR-Walker's stated future work, §7), and its rules.

CR-Walker walks the KG only towards what the user likes; it has no notion of "not that". A session
keeps a :class:`Preferences` record and the engine applies it to every later walk:

1. **Negated mentions are rejections.** A linked span with ``negated=True`` (the linker's window rules:
   "not horror", "no Tom Cruise", "I hate musicals", "I've seen Inception") adds its entity to
   ``rejected``; the movie of a negated span is also recorded in ``seen`` when the cue is a seeing verb.
2. **"Seen it" refers to the last recommendation.** A user turn saying "seen it" / "I've watched that
   one" (no movie of its own linked, no negation before the verb: "haven't seen it" does not count)
   rejects the first movie the system recommended in the previous turn; "seen them / those / both /
   all of them" rejects all of them. They are also recorded as ``seen``.
3. **The latest mention decides.** A later non-negated mention of a rejected entity ("ok, horror is
   fine after all") removes it from ``rejected`` (as the dialog-act labels do with the seeker's latest
   mention).
4. **Rejected entities never appear again**: they are removed from the walker's context (user portrait,
   Eq. 3, and the Table-1 hop-1 candidates), never selected at hop 1 or hop 2 of any tree, and removed
   from the movie ranking. A rejected *attribute* (genre, person, decade, company) also removes every
   movie adjacent to it in the KG from recommendations and from the ranking ("no Tom Cruise" means no
   Tom Cruise movie). Rejected entities keep their ``mentioned`` status.
5. **Movie feedback.** :meth:`Preferences.feedback` with ``"dislike"`` or ``"seen"`` removes the movie
   from later recommendations and from the ranking (it may still be talked about in chat trees);
   ``"like"`` adds it to the mentioned entities, i.e. to the user portrait, and undoes an earlier
   ``"dislike"``.
6. **No repeats.** Movies the system recommended once are never recommended again in the session, and
   movies mentioned earlier in the conversation are not recommended (the walker's own rule).
7. **Validation.** Feedback on an id that is not a KG entity, ``feedback`` on a non-movie, ``reject`` on
   a generic class (Actor, Genre, ...) or an unknown feedback kind raise :class:`ValueError`.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

FEEDBACK_KINDS = ("like", "dislike", "seen")

_NEG = r"(?:n't|not|never|nt|havent|haven't|hasnt|didnt|didn't)"
_SEEN_VERB = r"(?:seen|saw|watched|watch(?:ed)?|see)"
#: "seen it", "i've watched that one", "saw them already" (the object refers to earlier recommendations)
SEEN_IT_RE = re.compile(
    rf"(?P<pre>\b[\w']+\s+)?(?P<pre2>\b[\w']+\s+)?\b{_SEEN_VERB}\s+"
    r"(?P<obj>it|that(?:\s+one)?|this(?:\s+one)?|both(?:\s+of\s+them)?|them(?:\s+all|\s+both)?|those(?:\s+ones)?"
    r"|these(?:\s+ones)?|all\s+of\s+them|all\s+of\s+those)\b",
    re.IGNORECASE,
)
_NEG_RE = re.compile(rf"^{_NEG}$|n't$|^no$", re.IGNORECASE)
_PLURAL = ("both", "them", "those", "these", "all")
_SEEING_CUE_RE = re.compile(r"\b(?:seen|saw|watched)\b", re.IGNORECASE)


def seen_it_targets(text: str, last_recommended: Sequence[int]) -> list[int]:
    """Movies a "seen it" phrase of ``text`` refers to (rule 2); ``[]`` when there is none.

    Args:
        text: The user's utterance.
        last_recommended: Movies the system recommended in its previous turn, in order.
    """
    if not last_recommended:
        return []
    for m in SEEN_IT_RE.finditer(text):
        before = [w for w in (m.group("pre"), m.group("pre2")) if w]
        if any(_NEG_RE.search(w.strip()) for w in before):
            continue
        if "?" in text[m.end() : m.end() + 2]:  # "have you seen it?" is a question, not feedback
            continue
        obj = m.group("obj").lower()
        return list(last_recommended) if obj.split()[0] in _PLURAL else [int(last_recommended[0])]
    return []


def check_entity(eid: object, n_entities: int) -> int:
    """``eid`` as an int KG id, or :class:`ValueError` naming the problem."""
    try:
        e = operator.index(eid)
    except TypeError:
        raise ValueError(f"entity id must be an int KG id, got {type(eid).__name__} {eid!r}") from None
    if not 0 <= e < n_entities:
        raise ValueError(f"entity id {e} is not a KG entity (valid ids: 0..{n_entities - 1})")
    return e


@dataclass
class Preferences:
    """Per-session feedback state (all sets hold KG entity ids; see the module docstring)."""

    rejected: set[int] = field(default_factory=set)
    disliked: set[int] = field(default_factory=set)
    liked: set[int] = field(default_factory=set)
    seen: set[int] = field(default_factory=set)
    recommended: list[int] = field(default_factory=list)  # in recommendation order

    def apply_linked(self, spans: Iterable[dict], types: Sequence[str], text: str) -> list[int]:
        """Rules 1 and 3 for the linked spans of one user turn; returns the entities newly rejected."""
        new: list[int] = []
        for s in spans:
            e = int(s["entity_id"])
            if types[e] == "class":
                continue
            if s["negated"]:
                if e not in self.rejected:
                    new.append(e)
                self.rejected.add(e)
                window = text[max(0, int(s["start"]) - 40) : int(s["end"]) + 20]
                if types[e] == "movie" and _SEEING_CUE_RE.search(window):
                    self.seen.add(e)
            else:
                self.rejected.discard(e)
        return new

    def apply_seen_it(self, text: str, last_recommended: Sequence[int], linked_movies: Sequence[int]) -> list[int]:
        """Rule 2; skipped when the turn links a movie itself (the linker handles "I've seen X")."""
        if linked_movies:
            return []
        new = []
        for e in seen_it_targets(text, last_recommended):
            if e not in self.rejected:
                new.append(e)
            self.rejected.add(e)
            self.seen.add(e)
        return new

    def feedback(self, eid: int, kind: str) -> None:
        """Rule 5 (``eid`` already validated as a movie)."""
        if kind not in FEEDBACK_KINDS:
            raise ValueError(f"feedback kind must be one of {FEEDBACK_KINDS}, got {kind!r}")
        if kind == "like":
            self.liked.add(eid)
            self.disliked.discard(eid)
        elif kind == "dislike":
            self.disliked.add(eid)
            self.liked.discard(eid)
        else:
            self.seen.add(eid)

    def merge_turn(self, start: Preferences, end: Preferences) -> None:
        """Apply what a turn changed (``start`` -> ``end``) onto ``self``, keeping concurrent feedback."""
        for name in ("rejected", "disliked", "liked", "seen"):
            cur, a, b = getattr(self, name), getattr(start, name), getattr(end, name)
            cur.difference_update(a - b)
            cur.update(b - a)
        self.recommended.extend(e for e in end.recommended if e not in self.recommended)

    def tree_exclusions(self) -> set[int]:
        """Entities no tree may contain (rule 4)."""
        return set(self.rejected)

    def recommend_exclusions(self, types: Sequence[str], neighbors) -> set[int]:
        """Movies that may not be recommended nor ranked (rules 4-6, mentioned movies excluded separately).

        Args:
            types: Entity type per KG id.
            neighbors: ``eid -> iterable of KG neighbours`` (e.g. ``CandidateSets.neighbors``).
        """
        out = set(self.rejected) | self.disliked | self.seen | set(self.recommended)
        for e in self.rejected:
            if types[e] not in ("movie", "class"):
                out.update(n for n in neighbors(e) if types[n] == "movie")
        return out

    def to_json(self) -> dict:
        return {
            "rejected": sorted(self.rejected),
            "disliked": sorted(self.disliked),
            "liked": sorted(self.liked),
            "seen": sorted(self.seen),
            "recommended": list(self.recommended),
        }

    @classmethod
    def from_json(cls, d: dict, n_entities: int) -> Preferences:
        def ids(key: str) -> list[int]:
            return [check_entity(x, n_entities) for x in d.get(key, [])]

        return cls(set(ids("rejected")), set(ids("disliked")), set(ids("liked")), set(ids("seen")), ids("recommended"))
