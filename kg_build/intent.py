"""Regular expressions that find the intent cues of a recommender turn (CR-Walker Appendix C).

CR-Walker labels ReDial by "entity linking in each sentence and regular expressions to determine
its intent and entities on the reasoning tree". This module holds the regular-expression half;
:mod:`kg_build.labels` combines it with the linked entities. The rules, applied per sentence:

* A sentence is a **question** if it contains ``?`` or starts with a question word or an
  auxiliary verb (:data:`QUESTION_START`), e.g. ``"do you like comedies"``.
* A question is a **preference question** if it matches one of :data:`PREFERENCE_PATTERNS`: it asks
  the seeker (``you``/``your``/``u``) what they like, love, enjoy, prefer, are into, are a fan of,
  are in the mood for or are looking for, what their favourite X is, or what kind/type/sort/genre
  of movie they want. Two patterns only count when the sentence also has a linked attribute
  (:data:`NEEDS_ATTRIBUTE`): "how/what about ..." and any ``?`` question ("Musicals or something else?").
* **Class cues** (:data:`CLASS_CUES`) name the generic class a preference question asks about:
  ``genre`` -> ``Genre``, ``actor|actress|star|cast`` ->
  ``Actor``, ``director|directed|filmmaker`` -> ``Director``, ``writer|written|screenplay`` ->
  ``Writer``, ``year|decade|era|older|newer|recent|classic`` -> ``Time``, and a few more; without a
  specific cue the generic ``kind|type|sort|style|mood|looking for`` asks about ``Genre``
  (details in :func:`class_cues`).
  The labeller keeps only classes that exist in the KG.

Movie mentions ``@<movieId>`` are masked (:func:`mask_movies`) before matching so that a title
such as "Have You Seen My Mother?" can never trigger a rule; masking keeps character offsets, so
linker spans computed on the raw text line up with the sentences found here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: A ReDial movie mention in ``text_raw``.
MOVIE_MENTION = re.compile(r"@\d+")
#: Sentence boundary: end punctuation (possibly repeated) followed by space, or a line break.
_SENT_END = re.compile(r"[.!?]+(?=\s|$)|\n+")
#: A sentence that starts like a question (after optional interjections such as "so," or "ok").
QUESTION_START = re.compile(
    r"^\W*(?:(?:so|ok|okay|well|and|also|hi|hello|hey|great|cool|nice|oh|alright|then)\W+)*"
    r"(?:what|whats|what's|wat|which|who|whom|whose|how|do|does|did|are|is|were|was|have|has|had|would|will|could|can|"
    r"should|any|anything|ever|r u|u)\b",
    re.IGNORECASE,
)
_YOU = r"(?:you|u|ya|your|ur|yours)"
_LIKE = (
    r"(?:like|likes|liked|love|loved|enjoy|enjoyed|prefer|preferred|into|a fan|fan|fond|interested|"
    r"in the mood|mood|looking for|looking|searching|want|wanna|feel like|feeling|thinking|favou?rite|fave|fav|"
    r"go for|watch|typically watch|usually watch|usually like)"
)
#: Named patterns; a question matching any of them asks about the seeker's preferences.
PREFERENCE_PATTERNS: dict[str, re.Pattern] = {
    name: re.compile(p, re.IGNORECASE)
    for name, p in {
        # "what kind of movies do you like", "what type of film", "what sort of thing", "which genres"
        "kind_of": r"\b(?:what|which|any)\s+(?:\w+\s+)?(?:kinds?|types?|sorts?|genres?|styles?)\b",
        # "what's your favourite actor", "who is your fave director", "your favorite genre?"
        "favourite": rf"\b{_YOU}\s+(?:\w+\s+)?(?:favou?rites?|faves?|favs?|tastes?|preferences?)\b",
        # "do you like comedies", "are you into horror", "would you prefer older movies", "r u a fan of"
        "do_you_like": rf"\b(?:do|did|does|are|were|would|will|r|have)\s+{_YOU}\s+(?:\w+\s+)?{_LIKE}\b",
        # "what are you in the mood for", "what do you like", "what are some (movies) you enjoy"
        "what_do_you": rf"\b(?:what|which|who)(?:s|'s|'re)?(?:\s+\w+){{0,6}}\s+{_YOU}\s+(?:\w+\s+){{0,2}}{_LIKE}\b",
        # "what can I help you find?", "what movies can I recommend?", "can I help you find a movie?"
        "can_i_help": r"\b(?:can|could|may|shall)\s+i\s+(?:\w+\s+)?(?:help|recommend|suggest|find)\b",
        # "you like horror?", "u into action?" (declarative question)
        "you_like": rf"^\W*{_YOU}\s+(?:\w+\s+)?{_LIKE}\b",
        # "what genre", "which actor", "what director" (asking to name an instance of a class)
        "which_class": r"\b(?:what|which|who)\s+(?:\w+\s+)?(?:genres?|actors?|actress(?:es)?|directors?|writers?|"
        r"decades?|years?|era)\b",
        # "how about comedies?", "what about something with Tom Hanks?" (needs a linked attribute, see labels)
        "how_about": r"\b(?:how|what)\s+about\b",
        # "anything in particular?", "any preference?", "any favorites?"
        # "Musicals or something else?", "Anything with Tom Hanks?" (needs a linked attribute, see labels)
        "attribute_question": r"\?",
        "any_preference": r"\bany(?:thing)?\s+(?:\w+\s+)?(?:in particular|particular|specific|preferences?|favou?rites?)\b",
    }.items()
}
#: Patterns that only count as a preference question when the sentence also mentions an attribute.
NEEDS_ATTRIBUTE: frozenset[str] = frozenset({"how_about", "attribute_question"})
#: Class cues: (class name, pattern), each naming the generic class a question asks about.
CLASS_CUES: tuple[tuple[str, re.Pattern], ...] = tuple(
    (name, re.compile(p, re.IGNORECASE))
    for name, p in (
        ("Genre", r"\b(?:genres?)\b"),
        ("Actor", r"\b(?:actors?|actress(?:es)?|stars?|starring|starred|cast)\b"),
        ("Director", r"\b(?:directors?|directed|filmmakers?|film makers?)\b"),
        ("Writer", r"\b(?:writers?|written|screenplays?|screenwriters?)\b"),
        (
            "Time",
            r"\b(?:years?|decades?|eras?|older|newer|recent|classics?|old school|"
            r"old(?=\s+(?:movies?|films?|ones?|stuff))|new(?=\s+(?:movies?|films?|ones?|releases?|stuff)))\b",
        ),
        ("Producer", r"\b(?:producers?|produced)\b"),
        ("Composer", r"\b(?:composers?|soundtracks?)\b"),
        ("Company", r"\b(?:studios?|companies|company|distributors?)\b"),
        ("Subject", r"\b(?:subjects?|topics?|themes?)\b"),
    )
)
#: Generic nouns ("what kind of movies") ask about the genre unless they modify a specific cue
#: ("what type of actor" asks about actors).
GENERIC_CUE: re.Pattern = re.compile(r"\b(?:kinds?|types?|sorts?|styles?)\b", re.IGNORECASE)
#: Generic phrases ("in the mood for", "looking for") ask about the genre only without a specific cue
#: ("are you looking for something recent?" asks about the time).
GENERIC_PHRASE: re.Pattern = re.compile(r"\b(?:mood|looking for|searching for)\b", re.IGNORECASE)
GENERIC_CLASS = "Genre"
#: The word after "kind/type/sort of" (optionally after an article).
_OF_NEXT = re.compile(r"\s+of\s+(?:an?\s+|the\s+)?(\w)", re.IGNORECASE)


@dataclass(frozen=True)
class Sentence:
    """One sentence of a turn: character span into the turn's text plus its regex cues."""

    start: int
    end: int
    text: str
    is_question: bool
    preference: tuple[str, ...]  # names of matched PREFERENCE_PATTERNS
    class_cues: tuple[tuple[int, str], ...]  # (absolute char offset, class name), in text order

    def contains(self, start: int, end: int) -> bool:
        """Whether the span ``[start, end)`` starts inside this sentence."""
        return self.start <= start < self.end

    def is_preference_question(self, has_attribute: bool = False) -> bool:
        """A question matching a preference pattern (attribute-only patterns need ``has_attribute``)."""
        if not self.is_question:
            return False
        return any(p not in NEEDS_ATTRIBUTE or has_attribute for p in self.preference)


def mask_movies(text: str) -> str:
    """Replace each ``@<movieId>`` by ``@MMM..`` of the same length (offsets are kept)."""
    return MOVIE_MENTION.sub(lambda m: "@" + "M" * (len(m.group()) - 1), text)


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of ``text`` (end punctuation stays with its sentence)."""
    spans: list[tuple[int, int]] = []
    start = 0
    for m in _SENT_END.finditer(text):
        end = m.end()
        if text[start:end].strip():
            spans.append((start, end))
        start = end
    if text[start:].strip():
        spans.append((start, len(text)))
    return spans


def is_question(sentence: str) -> bool:
    """``?`` anywhere in the sentence, or a question word / auxiliary at its start."""
    return "?" in sentence or bool(QUESTION_START.search(sentence))


def preference_cues(sentence: str) -> tuple[str, ...]:
    """Names of the :data:`PREFERENCE_PATTERNS` that match ``sentence``."""
    return tuple(name for name, pat in PREFERENCE_PATTERNS.items() if pat.search(sentence))


def class_cues(sentence: str, offset: int = 0) -> tuple[tuple[int, str], ...]:
    """``(offset + position, class name)`` for every class cue in ``sentence``, in text order.

    Specific cues (:data:`CLASS_CUES`) name their class. A :data:`GENERIC_CUE` names
    :data:`GENERIC_CLASS` (``"what kind of movies do you like?"`` -> ``Genre``) unless it modifies a
    specific cue (``"what type of actor"`` -> ``Actor`` only; ``"what type of movie or actor"`` -> both);
    a :data:`GENERIC_PHRASE` names it only when there is no specific cue.
    """
    found = [(m.start(), name) for name, pat in CLASS_CUES for m in pat.finditer(sentence)]
    specific_starts = {pos for pos, _ in found}
    for m in GENERIC_CUE.finditer(sentence):
        of = _OF_NEXT.match(sentence, m.end())
        if of is None or of.start(1) not in specific_starts:
            found.append((m.start(), GENERIC_CLASS))
    if not specific_starts:
        found.extend((m.start(), GENERIC_CLASS) for m in GENERIC_PHRASE.finditer(sentence))
    return tuple(sorted((offset + pos, name) for pos, name in found))


def analyse(text: str) -> list[Sentence]:
    """Split a turn's raw text into :class:`Sentence` objects with their regex cues.

    Args:
        text: The turn text, with ReDial ``@<movieId>`` mentions (they are masked first).
    """
    masked = mask_movies(text)
    out = []
    for s, e in split_sentences(masked):
        sent = masked[s:e]
        out.append(
            Sentence(
                start=s,
                end=e,
                text=sent,
                is_question=is_question(sent),
                preference=preference_cues(sent),
                class_cues=class_cues(sent, s),
            )
        )
    return out
