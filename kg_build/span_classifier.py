"""Learned movie-span classifier of the entity linker (:mod:`kg_build.linker`, step 8).

The rule-based linker proposes **lower-case** movie spans (exact aliases, typo windows) and also knows
the lower-case common-word titles its gate rejected ("fear is good", "the birds I have not seen").
:class:`SpanClassifier` is a logistic regression over :class:`SpanFacts` (what the linker knows about a
candidate: how it was matched, how ordinary its words are, the words around it, other movies in the
utterance, the dialogue context, how often ReDial **train** users mentioned the film) that decides which
of them are movie mentions: a rule-accepted span is kept when ``p >= threshold_keep``, a gate-rejected
one is added when ``p >= threshold_add``.

Only lower-case spans are scored. The training signal comes from the benchmark protocol of
:mod:`kg_build.bench_linking` on the **train** split (every ``@id`` typed as its lower-case title),
where every capitalised movie span and every title followed by a year is text the user typed without
``@`` and the gold lacks; learning from those would teach the model that capitalisation means "not a
title" -- an artefact of the protocol, false in a chat. So capitalisation and typed years are not
features, capitalised / quoted / year-typed spans keep the rule decision, and training uses lower-case
candidates only. (Lower-case titles typed without ``@`` remain label noise: counted as negatives.)

Resource ``kg_build/resources/linker_span_classifier.json`` (written by ``python -m kg_build
train-linker``, no pickle)::

    {
      "schema": "crwalker.linker_span_classifier/1",
      "features": ["bias", "src_fuzzy", ...],      # names, in the order of span_features()
      "weights": [float, ...],                     # one per feature (raw, unstandardised inputs)
      "threshold_keep": float,                     # keep a rule-accepted span when p >= this
      "threshold_add": float,                      # add a gate-rejected span when p >= this
      "train_mentions": {"<redial_id>": int},      # @-mentions per movie in the train split
      "training": {...}                            # provenance: data, counts, command, valid grid
    }

``p = sigmoid(sum_k weights[k] * span_features(facts)[k])`` (:func:`probability`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_scripts.utils.io import read_json, write_json

SCHEMA = "crwalker.linker_span_classifier/1"
#: The packaged model (``python -m kg_build train-linker`` writes it).
DEFAULT_PATH = Path(__file__).parent / "resources" / "linker_span_classifier.json"

#: Words after a title that describe it ("fear is good", "up was great").
COPULA_AFTER: frozenset[str] = frozenset(["is", "was", "are", "were", "has", "had", "s", "looks", "sounds", "seems"])
#: Words after a title that make it a film title ("saw movies", "the saw series").
MOVIE_WORDS_AFTER: frozenset[str] = frozenset(
    ["movie", "movies", "film", "films", "series", "franchise", "trilogy", "sequel", "sequels", "remake", "one"]
)
#: Subject pronouns: a title right after one is usually a verb or adjective ("I saw", "we loved", "it's up").
SUBJECT_PRONOUNS: frozenset[str] = frozenset(["i", "you", "we", "they", "he", "she", "who", "u", "im", "it"])
#: Movie words anywhere in the utterance.
MOVIE_WORDS: frozenset[str] = frozenset(["movie", "movies", "film", "films", "flick", "flicks", "watch", "seen"])

#: Degree words before an adjective ("a bit more epic", "so twisted").
DEGREE_WORDS: frozenset[str] = frozenset(
    ["more", "most", "so", "too", "really", "very", "pretty", "quite", "kinda", "bit"]
)
#: Prepositions before a common noun ("on halloween", "in love", "for fear").
PREPOSITIONS: frozenset[str] = frozenset(["on", "in", "at", "into", "from", "with", "of", "for", "by", "to", "during"])
#: Words that are never content words next to a title (the classifier's other context features cover them).
_FUNCTION_LIKE = COPULA_AFTER | MOVIE_WORDS_AFTER | SUBJECT_PRONOUNS | {"like", "about"}

#: Feature names, in the order of :func:`span_features` (the JSON ``features`` must equal this).
FEATURES: tuple[str, ...] = (
    "bias",
    "src_fuzzy",
    "edit_fraction",
    "rule_accepted",
    "common",
    "very_common",
    "key_zipf",
    "min_word_zipf",
    "n_words",
    "starts_article",
    "log_train_mentions",
    "prev_cue",
    "prev_like",
    "prev_about",
    "prev_stop",
    "prev_subject",
    "at_sentence_start",
    "at_clause_end",
    "next_copula",
    "next_movie_word",
    "next_pronoun",
    "next_stop",
    "n_other_movies",
    "list_adjacent",
    "in_context",
    "short_text",
    "log_text_words",
    "whole_clause",
    "text_movie_word",
    "one_word_zipf",
    "common_x_copula",
    "common_x_cue",
    "fuzzy_x_word_zipf",
    "common_x_train_mentions",
    "prev_content",
    "next_content",
    "key_movie_word",
    "prev_degree",
    "prev_prep",
    "common_x_next_content",
)


@dataclass(frozen=True)
class SpanFacts:
    """What the linker knows about one lower-case movie candidate span (inputs of :func:`span_features`).

    Attributes:
        key: Normalised alias key of the matched title ("the birds").
        source: ``"ruler"`` (exact) or ``"fuzzy"``.
        score: Linker score (1.0 exact, ``1 - edits/len`` fuzzy).
        rule_accepted: The rule-based linker links it (False: its common-word gate rejected it).
        common: The alias is ordinary English (:func:`kg_build.linker.is_common_phrase`).
        very_common: A pronoun-like or Zipf >= 6 one-word alias ("it", "up").
        key_zipf: wordfreq Zipf frequency of the alias key as a phrase (0 = unknown).
        min_word_zipf: Lowest Zipf of the span's typed words (a typo is usually 0).
        n_words: Words in the span.
        prev: Previous word in the same sentence ('' at a sentence start).
        next: Next word in the same clause ('' at a break or the end).
        prev_cue: ``prev`` is a movie cue ("seen", "watch", "recommend", ...).
        prev_stop: ``prev`` is a spaCy stop word (and not a cue).
        next_pronoun: ``next`` is pronoun-like ("it", "them").
        next_stop: ``next`` is another stop word.
        n_other_movies: Other movie spans the linker accepted in the utterance.
        list_adjacent: Only ``,`` / ``and`` / ``or`` / ``&`` separate it from another linked movie.
        in_context: The movie was linked earlier in the dialogue.
        train_mentions: ``@``-mentions of the movie in the ReDial train split.
        n_text_words: Words in the utterance.
        text_movie_word: The utterance has a word of :data:`MOVIE_WORDS`.
    """

    key: str
    source: str
    score: float
    rule_accepted: bool
    common: bool
    very_common: bool
    key_zipf: float
    min_word_zipf: float
    n_words: int
    prev: str
    next: str
    prev_cue: bool
    prev_stop: bool
    next_pronoun: bool
    next_stop: bool
    n_other_movies: int
    list_adjacent: bool
    in_context: bool
    train_mentions: int
    n_text_words: int
    text_movie_word: bool


def span_features(f: SpanFacts) -> list[float]:
    """Feature vector of a candidate, in the order of :data:`FEATURES` (values roughly in [0, 1]; five
    interactions: Zipf of one-word titles, common title x copula after / cue before, fuzzy x Zipf of the
    typed word, common title x train popularity; then a content word (not a stop / cue / copula / movie
    word / pronoun) right before / after the span -- "zombie flick", "alien abduction" --, the title is
    itself a movie word ("flick"), a degree word or a preposition before it, common title x content word
    after)."""
    first = f.key.split()[0] if f.key else ""
    at_start, at_end = not f.prev, not f.next
    prev_content = bool(f.prev) and not (f.prev_stop or f.prev_cue or f.prev in _FUNCTION_LIKE)
    next_content = bool(f.next) and not (f.next_stop or f.next_pronoun or f.next in _FUNCTION_LIKE)
    return [
        1.0,
        float(f.source == "fuzzy"),
        1.0 - f.score,
        float(f.rule_accepted),
        float(f.common),
        float(f.very_common),
        f.key_zipf / 8.0,
        f.min_word_zipf / 8.0,
        min(f.n_words, 6) / 6.0,
        float(first in ("the", "a", "an")),
        math.log1p(max(f.train_mentions, 0)) / 7.0,
        float(f.prev_cue),
        float(f.prev == "like"),
        float(f.prev == "about"),
        float(f.prev_stop),
        float(f.prev in SUBJECT_PRONOUNS),
        float(at_start),
        float(at_end),
        float(f.next in COPULA_AFTER),
        float(f.next in MOVIE_WORDS_AFTER),
        float(f.next_pronoun),
        float(f.next_stop and f.next not in COPULA_AFTER),
        min(f.n_other_movies, 3) / 3.0,
        float(f.list_adjacent),
        float(f.in_context),
        float(f.n_text_words <= 3),
        math.log1p(f.n_text_words) / 4.0,
        float(at_start and at_end),
        float(f.text_movie_word),
        f.key_zipf / 8.0 if f.n_words == 1 else 0.0,
        float(f.common and f.next in COPULA_AFTER),
        float(f.common and (f.prev_cue or f.prev in ("like", "about"))),
        f.min_word_zipf / 8.0 if f.source == "fuzzy" else 0.0,
        math.log1p(max(f.train_mentions, 0)) / 7.0 if f.common else 0.0,
        float(prev_content),
        float(next_content),
        float(f.key in MOVIE_WORDS or f.key in MOVIE_WORDS_AFTER),
        float(f.prev in DEGREE_WORDS),
        float(f.prev in PREPOSITIONS),
        float(f.common and next_content),
    ]


def sigmoid(z: float) -> float:
    """Numerically safe logistic function."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    ez = math.exp(z)
    return ez / (1.0 + ez)


def probability(weights: list[float], x: list[float]) -> float:
    """``p = sigmoid(w . x)`` -- the classifier's probability that the span is a movie mention."""
    return sigmoid(sum(w * v for w, v in zip(weights, x, strict=True)))


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, iters: int = 50) -> np.ndarray:
    """L2-regularised logistic regression by Newton's method (IRLS) on standardised inputs.

    Column 0 must be the bias (all ones; not standardised, not penalised). Returns weights for the
    *raw* inputs (standardisation folded back in), so ``sigmoid(x @ w)`` is the probability.

    Args:
        x: ``(n, d)`` feature matrix.
        y: ``(n,)`` labels in {0, 1}.
        l2: Ridge penalty on the standardised non-bias weights (summed loss, not mean).
        iters: Maximum Newton steps (stops when the step is below 1e-8).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    mu = x.mean(axis=0)
    sd = x.std(axis=0)
    mu[0], sd[0] = 0.0, 1.0
    sd[sd < 1e-12] = 1.0
    z = (x - mu) / sd
    d = z.shape[1]
    w = np.zeros(d)
    pen = np.full(d, l2)
    pen[0] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ w, -30, 30)))
        grad = z.T @ (p - y) + pen * w
        hess = (z * (p * (1 - p))[:, None]).T @ z + np.diag(pen + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    raw = w / sd
    raw[0] = w[0] - float(np.sum(w[1:] * mu[1:] / sd[1:]))
    return raw


@dataclass
class SpanClassifier:
    """The trained model (see the module docstring for the JSON schema)."""

    weights: list[float]
    threshold_keep: float
    threshold_add: float
    train_mentions: dict[int, int]
    training: dict | None = None

    def probability(self, facts: SpanFacts) -> float:
        """Probability that the candidate is a movie mention."""
        return probability(self.weights, span_features(facts))

    def keeps(self, facts: SpanFacts) -> bool:
        """Decision for a candidate: ``threshold_keep`` if the rules accepted it, else ``threshold_add``."""
        p = self.probability(facts)
        return p >= (self.threshold_keep if facts.rule_accepted else self.threshold_add)

    def to_json(self) -> dict:
        """The JSON object of the resource file."""
        return {
            "schema": SCHEMA,
            "features": list(FEATURES),
            "weights": [round(float(w), 6) for w in self.weights],
            "threshold_keep": self.threshold_keep,
            "threshold_add": self.threshold_add,
            "train_mentions": {str(k): int(v) for k, v in sorted(self.train_mentions.items())},
            "training": self.training or {},
        }

    def save(self, path: str | Path) -> None:
        """Write the resource atomically (sorted keys: byte-stable)."""
        write_json(path, self.to_json())

    @classmethod
    def from_json(cls, obj: dict, source: str = "<json>") -> SpanClassifier:
        """Validate and build from a resource object.

        Raises:
            ValueError: wrong schema, or feature names / weight count that do not match :data:`FEATURES`.
        """
        if obj.get("schema") != SCHEMA:
            raise ValueError(f"{source}: schema {obj.get('schema')!r}, expected {SCHEMA!r}")
        if list(obj.get("features", [])) != list(FEATURES):
            raise ValueError(f"{source}: feature list differs from span_classifier.FEATURES (retrain the model)")
        weights = [float(w) for w in obj["weights"]]
        if len(weights) != len(FEATURES):
            raise ValueError(f"{source}: {len(weights)} weights for {len(FEATURES)} features")
        return cls(
            weights=weights,
            threshold_keep=float(obj["threshold_keep"]),
            threshold_add=float(obj["threshold_add"]),
            train_mentions={int(k): int(v) for k, v in obj.get("train_mentions", {}).items()},
            training=obj.get("training"),
        )

    @classmethod
    def load(cls, path: str | Path) -> SpanClassifier:
        """Read a resource file (:func:`data_scripts.utils.io.read_json`)."""
        return cls.from_json(read_json(path), str(path))
