"""Curated lexicon for the entity linker (:mod:`kg_build.linker`): what the KG's aliases lack.

The KG (``python -m kg_build build``) already gives every movie its lower-cased titles (with and
without year / leading article), every person its name forms, every genre everyday words
(``"scary"`` -> Horror, ``"funny"`` -> Comedy) and every decade its forms (``"80s"``,
``"eighties"``). This module adds, all lower-case:

* :data:`GENRE_WORDS` -- a few more everyday genre words, used only for genres present in the KG;
* :data:`TIME_PHRASES` -- vague times (``"old movies"``, ``"recent ones"``) -> a decade name;
* :data:`ABBREVIATIONS` -- abbreviations people type (``"lotr"``, ``"t2"``), resolved to the most
  popular KG movie with that title;
* :data:`ROMAN` -- sequel numbers (``"rocky ii"`` <-> ``"rocky 2"``);
* :data:`NEGATION_*` -- cue words of the negation rules (see :func:`kg_build.linker.is_negated`).

Everything is plain data so it can be reviewed and extended without touching the linker.
"""

from __future__ import annotations

#: Genre (KG name) -> extra everyday words/phrases (the KG's GENRE_ALIASES come first).
GENRE_WORDS: dict[str, tuple[str, ...]] = {
    "Action": ("shoot em up", "shoot 'em up", "explosions", "action flick", "action flicks"),
    "Animation": ("animated movie", "animated movies", "animated film", "animated films", "cartoon movies"),
    "Children": ("kid movies", "kid friendly", "kid-friendly", "children's movies", "for my kids"),
    "Comedy": (
        "comedy movie",
        "comedy movies",
        "comedies",
        "funny movie",
        "funny movies",
        "funny ones",
        "laughs",
        "humorous",
        "goofy",
        "silly",
    ),
    "Crime": ("crime movie", "crime movies", "crime drama", "mob movies", "gangster movies", "detective"),
    "Documentary": ("documentary film", "docuseries", "true story documentaries"),
    "Drama": ("dramatic movies", "tearjerker", "tearjerkers", "tear jerker", "sad movie", "sad movies"),
    "Fantasy": ("fantasy movie", "fantasy movies", "wizards", "dragons"),
    "Horror": (
        "scary movie",
        "scary movies",
        "scary ones",
        "horror flick",
        "horror flicks",
        "horrific",
        "terrifying",
        "gory",
        "gore",
        "zombie movies",
    ),
    "Musical": ("musical movies", "song and dance"),
    "Mystery": ("mystery movie", "mystery movies", "detective stories"),
    "Romance": (
        "romantic comedy",
        "romantic movies",
        "romantic movie",
        "love movies",
        "romcoms",
        "rom coms",
        "rom-coms",
        "date movie",
        "date night movie",
    ),
    "Sci-Fi": ("sci-fi movies", "science fiction movies", "space movies", "aliens invading", "sci fi movies"),
    "Thriller": ("thriller movie", "thriller movies", "psychological thrillers", "suspense movies"),
    "War": ("war movie", "war movies", "world war", "wwii", "ww2"),
    "Western": ("western movie", "western movies", "cowboy movies", "wild west"),
}

#: Decade (KG name) -> vague time phrases. ``"old"`` alone is too common ("30 years old"), so only
#: phrases with a movie noun are listed. "Old" is mapped to the 1980s and "recent" to the 2010s: the
#: ReDial crowd-workers wrote in 2017-18, when "old movies" mostly meant the 80s (documented guess).
_OLD = (
    "old movie",
    "old movies",
    "old film",
    "old films",
    "old ones",
    "older movies",
    "older films",
    "older ones",
    "oldies",
    "old school",
    "old-school",
    "classic movie",
    "classic movies",
    "classics",
    "old classics",
    "vintage movies",
)
_RECENT = (
    "recent movie",
    "recent movies",
    "recent ones",
    "recent films",
    "newer movies",
    "newer ones",
    "newer films",
    "new movies",
    "new releases",
    "new release",
    "latest movies",
    "modern movies",
    "recently released",
    "something recent",
    "something newer",
    "more recent",
)
TIME_PHRASES: dict[str, tuple[str, ...]] = {"1980s": _OLD, "2010s": _RECENT}

#: One-word KG aliases too ambiguous in chat to link alone ("as a kid", "with the family", "made me laugh");
#: their longer forms ("kids movies", "family movie") still link.
DROP_ALIASES: frozenset[str] = frozenset(["kid", "family", "laugh", "scare", "docs", "sf", "docu", "singing"])

#: Abbreviation -> movie title (lower-case, no year) as in the KG aliases.
ABBREVIATIONS: dict[str, str] = {
    "lotr": "the lord of the rings: the fellowship of the ring",
    "fotr": "the lord of the rings: the fellowship of the ring",
    "ttt": "the lord of the rings: the two towers",
    "rotk": "the lord of the rings: the return of the king",
    "lord of the rings": "the lord of the rings: the fellowship of the ring",
    "t2": "terminator 2: judgment day",
    "t3": "terminator 3: rise of the machines",
    "esb": "star wars: episode v - the empire strikes back",
    "empire strikes back": "star wars: episode v - the empire strikes back",
    "star wars iv": "star wars",
    "star wars 4": "star wars",
    "a new hope": "star wars",
    "star wars v": "star wars: episode v - the empire strikes back",
    "star wars 5": "star wars: episode v - the empire strikes back",
    "star wars vi": "star wars: episode vi - return of the jedi",
    "star wars 6": "star wars: episode vi - return of the jedi",
    "return of the jedi": "star wars: episode vi - return of the jedi",
    "the force awakens": "star wars: the force awakens",
    "force awakens": "star wars: the force awakens",
    "the last jedi": "star wars: the last jedi",
    "rogue one": "rogue one: a star wars story",
    "bttf": "back to the future",
    "mib": "men in black",
    "gotg": "guardians of the galaxy",
    "tmnt": "teenage mutant ninja turtles",
    "potc": "pirates of the caribbean: the curse of the black pearl",
    "pirates of the caribbean": "pirates of the caribbean: the curse of the black pearl",
    "hp": "harry potter and the sorcerer's stone",
    "harry potter": "harry potter and the sorcerer's stone",
    "tlk": "the lion king",
    "godfather 2": "the godfather: part ii",
    "godfather ii": "the godfather: part ii",
    "the godfather 2": "the godfather: part ii",
    "jurassic park 2": "the lost world: jurassic park",
    "ghostbusters 2": "ghostbusters ii",
    "indiana jones": "raiders of the lost ark",
    "indy": "raiders of the lost ark",
    "the dark knight rises": "the dark knight rises",
    "infinity war": "avengers: infinity war",
    "age of ultron": "avengers: age of ultron",
    "civil war": "captain america: civil war",
    "winter soldier": "captain america: the winter soldier",
    "ragnarok": "thor: ragnarok",
    "homecoming": "spider-man: homecoming",
    "spiderman": "spider-man",
}

#: Roman sequel numerals <-> arabic, for "Rocky II" / "rocky 2" variants.
ROMAN: dict[str, str] = {"ii": "2", "iii": "3", "iv": "4", "v": "5", "vi": "6", "vii": "7", "viii": "8"}

#: Words that never start a common-word title match in lower case even after a movie cue
#: (pronouns, particles): "have you seen it?", "I liked her".
PRONOUN_LIKE: frozenset[str] = frozenset(
    [
        "it",
        "her",
        "him",
        "us",
        "them",
        "me",
        "you",
        "up",
        "in",
        "out",
        "on",
        "off",
        "over",
        "all",
        "this",
        "that",
        "one",
        "two",
        "here",
        "there",
        "now",
        "then",
    ]
)
#: Words right before a lower-case common-word title that make it a title ("have you seen frozen").
#: ("like" and "try" are left out: "sounds like fun", "try something else"; "see you": "you" is pronoun-like.)
MOVIE_CUES: frozenset[str] = frozenset(
    [
        "seen",
        "watched",
        "watch",
        "watching",
        "saw",
        "see",
        "seeing",
        "recommend",
        "recommended",
        "suggest",
        "suggested",
        "movie",
        "film",
        "called",
        "titled",
        "loved",
        "love",
        "liked",
        "enjoyed",
    ]
)

#: Words right before a lower-case movie title that make it an ordinary noun phrase, not a title
#: ("a hitman", "my twins", "our house", "an alien abduction", "serial killers"); calibrated on train/valid.
NOUN_DETERMINERS: frozenset[str] = frozenset(["a", "an", "my", "our", "your", "his", "their", "some", "many", "serial"])

#: Adverbs right before a lower-case movie title that make it an adjective / verb ("a bit more epic",
#: "kind of twisted", "really loving it"); same rule as :data:`NOUN_DETERMINERS`.
INTENSIFIERS: frozenset[str] = frozenset(["very", "pretty", "quite", "kinda"])

#: Everyday formulae that contain a movie title ("happy holidays" -> Holidays, "sure thing" -> The Sure
#: Thing): a movie alias inside one of them is not linked (normalised words, see ``alias_key``).
NOT_TITLE_PHRASES: tuple[tuple[str, ...], ...] = tuple(
    tuple(p.split())
    for p in (
        "happy holidays",
        "good holidays",
        "merry christmas",
        "happy new year",
        "sure thing",
        "anything else",
        "every day",
        "checking out",
        "make you laugh",
        "no problem",
        "thank you",
        "good night",
        "good luck",
    )
)

#: Words before "like" that make it a comparison, not a movie cue: "sounds like fun.", "feel like home".
LIKE_NOT_CUE: frozenset[str] = frozenset(
    ["sounds", "sound", "looks", "look", "seems", "seem", "feel", "feels", "felt", "looked", "sounded", "would", "d"]
)
#: Common words never accepted as a title by the list cue ("X and Y" next to a linked movie): answers and
#: verbs that follow a title in "I saw X and loved it", "Yes, X is good".
LIST_CUE_STOP: frozenset[str] = frozenset(
    ["yes", "no", "ok", "okay", "sure", "thanks", "well", "so", "life", "love", "like", "enjoy", "hate", "think"]
)

#: Words right before a remade title that pick the oldest / newest version ("the original jumanji",
#: "the older longest yard", "the new it"); see ``EntityLinker._pick``.
ERA_OLD_CUES: frozenset[str] = frozenset(["original", "originals", "older", "old", "classic"])
ERA_NEW_CUES: frozenset[str] = frozenset(["new", "newer", "latest", "remake", "recent", "newest"])
#: Pronoun titles that are nouns after a determiner and an era word ("the new it", "the original it"; on
#: the benchmark-style ReDial train turns 36 of 41 such "it" were the film, 2 others "it's", which the rule
#: skips). Not "one": "the new one".
ERA_PRONOUN_TITLES: frozenset[str] = frozenset(["it"])

# ------------------------------------------------------------------------------------- negation cues
#: Single tokens that negate an entity later in the same clause ("not horror", "no Tom Cruise").
NEGATION_PRE: frozenset[str] = frozenset(
    [
        "not",
        "n't",
        "no",
        "never",
        "nor",
        "neither",
        "without",
        "except",
        "excluding",
        "hate",
        "hated",
        "hates",
        "dislike",
        "disliked",
        "dislikes",
        "avoid",
        "avoiding",
        "skip",
        "against",
    ]
)
#: Two-token cues (lower-cased) that negate an entity later in the same clause.
NEGATION_PRE_BIGRAMS: frozenset[tuple[str, str]] = frozenset(
    {
        ("tired", "of"),
        ("sick", "of"),
        ("other", "than"),
        ("instead", "of"),
        ("rather", "than"),
        ("already", "seen"),
        ("already", "watched"),
        ("already", "saw"),
        ("'ve", "seen"),
        ("have", "seen"),
        ("'ve", "watched"),
        ("have", "watched"),
        ("ve", "seen"),
        ("ve", "watched"),
        ("not", "into"),
        ("can't", "stand"),
        ("cannot", "stand"),
        ("fed", "up"),
    }
)
#: Past-tense verbs after which a preceding negation means "not yet seen" -- not a rejection ("I haven't
#: seen X"); present forms stay rejections ("I don't watch horror").
NOT_SEEN_VERBS: frozenset[str] = frozenset(["seen", "watched", "saw", "heard", "tried"])
#: Positive words that cancel the "I've seen X" rejection ("I've seen X and loved it").
POSITIVE_WORDS: frozenset[str] = frozenset(
    [
        "love",
        "loved",
        "loves",
        "like",
        "liked",
        "likes",
        "enjoy",
        "enjoyed",
        "enjoys",
        "great",
        "good",
        "favorite",
        "favourite",
        "awesome",
        "amazing",
        "best",
        "fun",
        "funny",
        "fantastic",
        "excellent",
    ]
)
#: Phrases after an entity that reject it ("X? seen it", "X is not for me").
NEGATION_POST: tuple[tuple[str, ...], ...] = (
    ("seen", "it"),
    ("seen", "that"),
    ("seen", "this"),
    ("seen", "them"),
    ("seen", "those"),
    ("watched", "it"),
    ("watched", "that"),
    ("already", "seen"),
    ("already", "watched"),
    ("is", "not"),
    ("is", "n't"),
    ("are", "not"),
    ("are", "n't"),
    ("was", "not"),
    ("was", "n't"),
    ("'s", "not"),
    ("sucks",),
    ("sucked",),
    ("is", "overrated"),
    ("was", "overrated"),
    ("is", "boring"),
    ("was", "boring"),
    ("are", "boring"),
    ("not", "for", "me"),
)
#: Tokens that end a clause for the negation window.
CLAUSE_BREAKS: frozenset[str] = frozenset(
    [".", "!", "?", ";", ",", ":", "but", "though", "although", "however", "yet", "whereas", "while", "so", "because"]
    + ["\n"]
)
