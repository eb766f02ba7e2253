"""Guided mode: a trained Movie-domain MCR policy decides ask vs recommend in the chat.

With ``WalkControls(guided=True)`` and an engine that has a guide (:class:`crwalker.policies.guide.MovieGuide`,
shipped in the release bundle), a turn runs as usual (link, entity status, negative feedback, BERT, walk) and
then:

1. **The user's answer.** When the previous system turn asked about attribute ``a`` (``pending``), the
   turn's answer is read by :func:`answer_to`: a linked mention of ``a`` decides (negated = no); otherwise
   yes/no words (:func:`parse_yes_no`: "yes", "sure", "yeah, I do" / "no", "nope", "not really", ...; the
   UI's Yes / No buttons send "Yes" / "No"). Yes: ``a`` joins the accepted attributes and the mentioned
   entities (so the walker's portrait sees it), history +1. No: ``a`` is rejected through the session's
   negative-feedback machinery (never in a tree again, its movies never recommended), history -1. Neither
   (the user changed the subject): no history entry. After a guided recommendation, the next user turn
   records -2 unless the user liked one of the recommended movies or said yes.
2. **Attributes named by the user** (linked, not negated, in the Movie domain; in this or any earlier
   turn, also before guided mode was switched on) are accepted too; rejected ones are dropped.
3. **The decision** (:meth:`MovieGuide.decide`) over the accepted / rejected attributes, the movies the
   chat may not recommend and the history.
4. **The act.** *Ask* -> intent ``query``, tree ``query -> the attribute's generic class -> the attribute``
   (the shape of ReDial's query labels, e.g. ``[ Query ( Genre ( Comedy ) ) ]``). *Recommend* -> intent
   ``recommend``: the policy's top-K movies re-ranked by the walker's recommend score of this turn; the
   first ``width`` become the tree's movies, below the most recently accepted attributes (at most
   :data:`REASONS`; every candidate has all accepted attributes, Eq. 3), leaves capped as usual.
5. **The reply** is generated from that act. The release generator rarely names an asked attribute, so
   when the reply does not contain its name, :func:`question_for` is appended ("Do you like movies with
   Tom Hanks?") and ``guided["question_appended"]`` says so.

The per-session :class:`GuidedState` is part of :meth:`Session.to_state` (key ``"guided"``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .feedback import check_entity

REASONS = 2  #: accepted attributes shown as hop-1 reasons of a guided recommendation
#: a yes/no phrase counts only when it ends the text, is followed by punctuation, or by words like "I"
#: ("yeah I do", "no, thanks"); "no horror please" is a rejection of horror, not an answer
_END = r"(?=\s*(?:$|[,.!?;:)]|(?:i|i'm|im|thanks|thank|please|that|it|they|those|sounds|really|at)\b))"
_YES = re.compile(
    r"^\s*(?:yes|yeah|yea|yep|yup|ya|sure|ok|okay|of course|definitely|absolutely|certainly|i do|i would|"
    r"(?:i )?love (?:it|them|that|those)|sounds good|why not|please do|totally|indeed|correct|y)" + _END,
    re.IGNORECASE,
)
_NO = re.compile(
    r"^\s*(?:no|nope|nah|naw|not really|not at all|not much|not so much|not a fan|not for me|never|"
    r"i don'?t|i do not|don'?t|rather not|i'?d rather not|no thanks|no thank you|hate (?:it|them)|n)" + _END,
    re.IGNORECASE,
)
#: how a question about an attribute is asked, per generic class (``{name}`` = the attribute's name)
QUESTIONS = {
    "Genre": "Are you in the mood for {name} movies?",
    "Time": "Would you like something from the {name}?",
    "Actor": "Do you like movies with {name}?",
    "Director": "Do you like movies directed by {name}?",
    "Writer": "Do you like movies written by {name}?",
    "Company": "Do you like movies from {name}?",
}
DEFAULT_QUESTION = "Do you like {name}?"


def parse_yes_no(text: str) -> bool | None:
    """``True`` for a yes-answer ("yes", "sure", "yeah I do"), ``False`` for a no ("no", "not really"), else None.

    "No" wins when both match (``"no, yes"`` is unusual; a leading no is the safer reading).
    """
    if _NO.search(text):
        return False
    if _YES.search(text):
        return True
    return None


def answer_to(attribute: int, text: str, linked: Sequence[dict]) -> bool | None:
    """The user's answer about ``attribute``: its linked mention decides (negated = no), else yes/no words."""
    for s in linked:
        if int(s["entity_id"]) == int(attribute):
            return not bool(s["negated"])
    return parse_yes_no(text)


def question_for(name: str, class_name: str | None) -> str:
    """A plain question about the attribute ``name`` of generic class ``class_name``."""
    return QUESTIONS.get(class_name or "", DEFAULT_QUESTION).format(name=name)


@dataclass
class GuidedState:
    """Per-session guided-mode state (KG ids).

    Attributes:
        accepted: Attributes the user accepted (named or answered yes), oldest first.
        rejected_attrs: Attributes the user answered no to.
        history: Outcome per guided turn (+1 yes, -1 no, -2 recommendation not liked).
        pending: What the last guided system turn did: ``{"kind": "ask", "attribute": id}`` or
            ``{"kind": "recommend", "items": [ids]}``; ``None`` when there is nothing to answer.
    """

    accepted: list[int] = dataclasses.field(default_factory=list)
    rejected_attrs: list[int] = dataclasses.field(default_factory=list)
    history: list[int] = dataclasses.field(default_factory=list)
    pending: dict | None = None

    def to_json(self) -> dict:
        return {
            "accepted": list(self.accepted),
            "rejected_attrs": list(self.rejected_attrs),
            "history": list(self.history),
            "pending": None if self.pending is None else dict(self.pending),
        }

    @classmethod
    def from_json(cls, d: dict | None, n_entities: int) -> GuidedState:
        """Inverse of :meth:`to_json` (``None`` -> empty state; ids checked against the KG size)."""
        if not d:
            return cls()
        pending = d.get("pending")
        if pending is not None:
            kind = pending.get("kind")
            if kind == "ask":
                pending = {"kind": "ask", "attribute": check_entity(pending["attribute"], n_entities)}
            elif kind == "recommend":
                pending = {"kind": "recommend", "items": [check_entity(e, n_entities) for e in pending["items"]]}
            else:
                raise ValueError(f"unknown guided pending kind {kind!r}")
        history = [int(h) for h in d.get("history", [])]
        if any(h not in (1, -1, -2) for h in history):
            raise ValueError(f"guided history entries must be +1, -1 or -2, got {history}")
        return cls(
            [check_entity(e, n_entities) for e in d.get("accepted", [])],
            [check_entity(e, n_entities) for e in d.get("rejected_attrs", [])],
            history,
            pending,
        )

    def absorb_user_turn(
        self, text: str, linked: Sequence[dict], is_attribute, liked: set[int], rejected: set[int]
    ) -> dict:
        """Steps 1-2 of the module docstring (mutates ``self``; the caller applies the returned changes).

        Args:
            text: The user's cleaned text.
            linked: The turn's linked spans.
            is_attribute: ``eid -> bool``: attribute of the guide's domain.
            liked: Movies the user liked so far (a liked recommendation is not a rejection).
            rejected: The session's rejected entities after this turn's negative feedback.

        Returns:
            ``{"answered": id or None, "answer": True/False/None, "accept": [ids], "reject": [ids]}``:
            ``accept`` must become mentioned and un-rejected, ``reject`` rejected.
        """
        out: dict = {"answered": None, "answer": None, "accept": [], "reject": []}
        pending, self.pending = self.pending, None
        if pending and pending["kind"] == "ask":
            a = int(pending["attribute"])
            ans = answer_to(a, text, linked)
            out["answered"], out["answer"] = a, ans
            if ans is True:
                self.history.append(1)
                out["accept"].append(a)
            elif ans is False:
                self.history.append(-1)
                out["reject"].append(a)
                if a not in self.rejected_attrs:
                    self.rejected_attrs.append(a)
        elif (
            pending
            and pending["kind"] == "recommend"
            and not set(pending["items"]) & liked  # a liked movie or a plain "yes" accepts the list
            and parse_yes_no(text) is not True
        ):
            self.history.append(-2)
        for s in linked:
            e = int(s["entity_id"])
            if not s["negated"] and is_attribute(e) and e not in out["reject"]:
                out["accept"].append(e)
        now_rejected = rejected | set(out["reject"])
        for e in out["accept"]:
            if e in self.rejected_attrs:
                self.rejected_attrs.remove(e)
            if e in self.accepted:
                self.accepted.remove(e)  # re-confirmed: most recent last
            self.accepted.append(e)
        self.accepted = [e for e in self.accepted if e not in now_rejected or e in out["accept"]]
        return out
