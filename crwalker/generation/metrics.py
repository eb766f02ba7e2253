"""Response-generation metrics (CR-Walker §4, Table 3), each defined exactly as computed.

* :func:`sentence_bleu_crwalker` / :func:`bleu_crwalker` -- CR-Walker's BLEU: NLTK sentence BLEU
  (default BLEU-4 weights ``(0.25,)*4``, ``SmoothingFunction(epsilon=1e-12).method7``) on text that is
  lower-cased with punctuation turned into spaces (:func:`normalize_answer`), averaged over turns.
  This follows the reference release (``data/metrics.py``: ``bleu`` and ``normalize_answer``).
  ``nltk_smoothing`` picks the smoothing code: ``"3.5"`` (default, :func:`method7_nltk35`) is method 7 as
  NLTK <= 3.6.1 implemented it -- the NLTK of the paper's environment (Python 3.6.10 / PyTorch 1.4, 2020;
  arXiv v1 Oct 2020, before NLTK 3.6.2 rewrote method 4 in April 2021). Its method 4 gives an n-gram order
  with no match the precision ``(i + k / ln|hyp|) / denominator`` (``i`` the 0-based order), which is much
  larger than today's ``1 / (2^j k / ln|hyp|) / denominator``, so the same replies score far higher (a
  sentence can exceed 1). ``"current"`` calls the installed NLTK. Both are reported (``BLEU`` and
  ``BLEU_nltk_current``).
* :func:`corpus_sacrebleu` -- standard corpus-level sacreBLEU (13a tokeniser, cased), reported beside it.
* :func:`distinct_corpus` -- Distinct-n as CR-Walker computes it: number of distinct n-grams over the
  whole corpus divided by the total number of *tokens* (whitespace split of the raw text).
* :func:`distinct_sentence` -- the sentence-level variant: mean over sentences of
  distinct n-grams / n-grams in that sentence (sentences with no n-gram skipped).
* :func:`knowledge_prf` -- knowledge precision/recall/F1 over *generic classes* (Wu et al., 2019 as used
  by CR-Walker): does a reply mention a genre / an actor / a director / a movie ..., not which one.
* :func:`perplexity` -- ``exp`` of the mean negative log-likelihood per reply token.
* :func:`movie_consistency` -- our check that replies name only KG movies and that recommend turns name
  the movies the walker selected (see :mod:`crwalker.generation.placeholders`).

All scores here are fractions in ``[0, 1]`` (BLEU can slightly exceed 1 with method7 smoothing, see the
tests); the evaluation CLI multiplies by 100 for the results file.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence

from nltk.translate import bleu_score as nltk_bleu

#: Punctuation turned into spaces before BLEU (the exact character class of the reference code).
RE_PUNC = re.compile(r"[!\"#$%&()*+,-./:;<=>?@\[\]\\^`{|}~_\']")


def normalize_answer(text: str) -> str:
    """Lower-case, replace each punctuation character of :data:`RE_PUNC` by a space, squeeze spaces.

    Articles are *kept* (the reference code comments out article removal).
    """
    return " ".join(RE_PUNC.sub(" ", text.lower()).split())


NLTK_SMOOTHINGS = ("3.5", "current")


def method7_nltk35(p_n: Sequence[tuple[int, int]], p5: tuple[int, int], hyp_len: int, k: int = 5) -> list[float]:
    """NLTK 3.5's ``SmoothingFunction().method7`` (= method 4 then method 5) on modified n-gram precisions.

    Method 4 (NLTK 3.5 code, operator precedence included): an order ``i`` (0-based) with no matching n-gram
    gets ``(i + k / ln(hyp_len)) / denominator``; ``hyp_len == 1`` divides by ``ln 1 = 0`` and raises
    ``ZeroDivisionError`` as NLTK did. Method 5: ``p_i' = (m_{i-1} + p_i + p_{i+1}) / 3`` with
    ``m_{-1} = p_0 + 1``, ``m_i = p_i'`` and ``p_{i+1}`` the method-4 value of the next order (for the last
    order: the unsmoothed 5-gram precision ``p5``).

    Args:
        p_n: ``(matches, denominator)`` per order 1..4 as :func:`nltk.translate.bleu_score.modified_precision`
            gives them (denominator at least 1).
        p5: the same for 5-grams.
        hyp_len: Hypothesis length in tokens.
        k: Method 4's constant (NLTK default 5).
    """
    p = [num / den for num, den in p_n]
    for i, (num, den) in enumerate(p_n):
        if num == 0 and hyp_len != 0:
            p[i] = (i + 1 * k / math.log(hyp_len)) / den
    nxt = p + [p5[0] / p5[1]]
    prev = p[0] + 1
    for i in range(len(p)):
        p[i] = (prev + p[i] + nxt[i + 1]) / 3
        prev = p[i]
    return p


def _sentence_bleu_nltk35(references: list[list[str]], hypothesis: list[str]) -> float:
    """NLTK 3.5 ``sentence_bleu`` (BLEU-4, uniform weights) with :func:`method7_nltk35` smoothing."""
    p_n = []
    for n in range(1, 5):
        f = nltk_bleu.modified_precision(references, hypothesis, n)
        p_n.append((f.numerator, f.denominator))
    if p_n[0][0] == 0:
        return 0.0
    f5 = nltk_bleu.modified_precision(references, hypothesis, 5)
    hyp_len = len(hypothesis)
    bp = nltk_bleu.brevity_penalty(nltk_bleu.closest_ref_length(references, hyp_len), hyp_len)
    p = method7_nltk35(p_n, (f5.numerator, f5.denominator), hyp_len)
    return bp * math.exp(math.fsum(0.25 * math.log(x) for x in p))


def sentence_bleu_crwalker(hypothesis: str, references: Sequence[str], nltk_smoothing: str = "3.5") -> float:
    """CR-Walker's per-turn BLEU.

    ``nltk.translate.bleu_score.sentence_bleu([normalize_answer(r).split(" ") for r in references],
    normalize_answer(hypothesis).split(" "), weights=(0.25, 0.25, 0.25, 0.25),
    smoothing_function=SmoothingFunction(epsilon=1e-12).method7)``; any exception from NLTK gives 0
    (as in the reference). Note ``split(" ")`` of an empty string is ``[""]`` (one empty token).

    Args:
        hypothesis: Generated reply.
        references: Gold replies (usually one).
        nltk_smoothing: ``"3.5"`` -- method 7 as NLTK 3.5 computed it, the paper's environment
            (:func:`method7_nltk35`); ``"current"`` -- the installed NLTK.
    """
    if nltk_smoothing not in NLTK_SMOOTHINGS:
        raise ValueError(f"nltk_smoothing must be one of {NLTK_SMOOTHINGS}, got {nltk_smoothing!r}")
    refs = [normalize_answer(r).split(" ") for r in references]
    hyp = normalize_answer(hypothesis).split(" ")
    try:
        if nltk_smoothing == "3.5":
            return float(_sentence_bleu_nltk35(refs, hyp))
        return float(
            nltk_bleu.sentence_bleu(
                refs,
                hyp,
                weights=(0.25, 0.25, 0.25, 0.25),
                smoothing_function=nltk_bleu.SmoothingFunction(epsilon=1e-12).method7,
            )
        )
    except Exception:  # noqa: BLE001 - the reference scores any NLTK failure as 0
        return 0.0


def bleu_crwalker(hypotheses: Sequence[str], references: Sequence[str], nltk_smoothing: str = "3.5") -> float:
    """Mean over turns of :func:`sentence_bleu_crwalker` (one gold reference per turn)."""
    _check_lengths(hypotheses, references)
    if not hypotheses:
        return 0.0
    return sum(
        sentence_bleu_crwalker(h, [r], nltk_smoothing) for h, r in zip(hypotheses, references, strict=False)
    ) / len(hypotheses)


def corpus_sacrebleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus sacreBLEU (default: BLEU-4, 13a tokenisation, cased, exp smoothing) as a fraction in [0, 1]."""
    import sacrebleu

    _check_lengths(hypotheses, references)
    if not hypotheses:
        return 0.0
    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score) / 100.0


def _ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct_corpus(texts: Iterable[str], n: int) -> float:
    """Corpus Distinct-n as CR-Walker (``distinct_n_grams``): ``|union of n-gram sets| / total tokens``.

    Tokens are ``text.split()`` of the raw text (no lower-casing); the denominator counts *tokens*
    (sum of sentence lengths), not n-grams, exactly as the reference. Returns 0 for an empty corpus.
    """
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        toks = text.split()
        seen.update(_ngrams(toks, n))
        total += len(toks)
    return len(seen) / total if total else 0.0


def distinct_sentence(texts: Iterable[str], n: int) -> float:
    """Sentence-level Distinct-n (reference ``dist_str``): mean over sentences of
    ``|distinct n-grams| / |n-grams|``; sentences with fewer than ``n`` tokens are skipped."""
    scores = []
    for text in texts:
        grams = _ngrams(text.split(), n)
        if grams:
            scores.append(len(set(grams)) / len(grams))
    return sum(scores) / len(scores) if scores else 0.0


def prf(pred: Iterable[str], gold: Iterable[str]) -> tuple[float, float, float]:
    """Set precision, recall and F1 of ``pred`` against ``gold``; an empty side scores 0."""
    p_set, g_set = set(pred), set(gold)
    hit = len(p_set & g_set)
    if hit == 0:
        return 0.0, 0.0, 0.0
    p, r = hit / len(p_set), hit / len(g_set)
    return p, r, 2 * p * r / (p + r)


def knowledge_prf(
    hypotheses: Sequence[str], references: Sequence[str], link_classes: Callable[[str], set[str]]
) -> dict[str, float]:
    """Knowledge precision / recall / F1 over generic classes (Wu et al., 2019; CR-Walker Table 3).

    For every turn, ``link_classes`` maps a text to the set of generic classes it mentions (e.g.
    ``{"Movie", "Genre", "Actor"}``). Counts are pooled over the corpus (micro average)::

        P  = sum_t |C(hyp_t) & C(ref_t)| / sum_t |C(hyp_t)|
        R  = sum_t |C(hyp_t) & C(ref_t)| / sum_t |C(ref_t)|
        F1 = 2 P R / (P + R)

    The macro variant (mean of per-turn F1 over turns where the reference or the hypothesis mentions a
    class) is returned as ``"f1_macro"``.

    Returns:
        ``{"precision", "recall", "f1", "f1_macro"}``, fractions in [0, 1].
    """
    _check_lengths(hypotheses, references)
    hit = n_pred = n_gold = 0
    per_turn = []
    for h, r in zip(hypotheses, references, strict=False):
        ch, cr = set(link_classes(h)), set(link_classes(r))
        hit += len(ch & cr)
        n_pred += len(ch)
        n_gold += len(cr)
        if ch or cr:
            per_turn.append(prf(ch, cr)[2])
    p = hit / n_pred if n_pred else 0.0
    r = hit / n_gold if n_gold else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f1, "f1_macro": sum(per_turn) / len(per_turn) if per_turn else 0.0}


def perplexity(nll_sum: float, n_tokens: int) -> float:
    """Token-level perplexity ``exp(nll_sum / n_tokens)`` (natural log), pooled over all reply tokens.

    Args:
        nll_sum: Sum of ``-log p(token)`` over every scored reply token (incl. the end-of-reply token).
        n_tokens: Number of scored tokens.
    """
    if n_tokens <= 0:
        raise ValueError("perplexity needs at least one scored token")
    return math.exp(nll_sum / n_tokens)


def movie_consistency(
    replies: Sequence[str],
    act_movies: Sequence[Sequence[str]],
    is_recommend: Sequence[bool],
    find_titles: Callable[[str], list[tuple[str, bool]]],
    allowed_movies: Sequence[Sequence[str]] | None = None,
) -> dict[str, float]:
    """Movie-name consistency of generated replies (our measure; not in the paper).

    ``find_titles(reply)`` returns every movie title the reply names as ``(name, in_kg)``. With
    ``allowed_t = act_movies_t + allowed_movies_t`` (e.g. the movies of the user utterance):

    * ``kg_title_rate``: named titles that are KG movies / named titles (1.0 when none named);
    * ``on_act_rate``: named KG titles that are in ``allowed_t`` / named KG titles (1.0 when none);
    * ``rec_recall``: over recommend turns, act movies named in the reply / act movies;
    * ``rec_all_named``: fraction of recommend turns (with >= 1 act movie) naming every act movie.

    Returns:
        The four rates above plus ``n_titles`` and ``n_rec_turns`` (counts, as floats).
    """
    _check_lengths(replies, act_movies)
    _check_lengths(replies, is_recommend)
    n_titles = n_kg = n_on = 0
    rec_hit = rec_total = rec_turns = rec_full = 0
    for t, reply in enumerate(replies):
        found = find_titles(reply)
        allowed = set(act_movies[t]) | set(allowed_movies[t] if allowed_movies is not None else ())
        names = {n for n, _ in found}
        for name, in_kg in found:
            n_titles += 1
            if in_kg:
                n_kg += 1
                n_on += name in allowed
        if is_recommend[t] and act_movies[t]:
            want = set(act_movies[t])
            got = len(want & names)
            rec_hit += got
            rec_total += len(want)
            rec_turns += 1
            rec_full += got == len(want)
    return {
        "kg_title_rate": n_kg / n_titles if n_titles else 1.0,
        "on_act_rate": n_on / n_kg if n_kg else 1.0,
        "rec_recall": rec_hit / rec_total if rec_total else 0.0,
        "rec_all_named": rec_full / rec_turns if rec_turns else 0.0,
        "n_titles": float(n_titles),
        "n_rec_turns": float(rec_turns),
    }


def _check_lengths(a: Sequence, b: Sequence) -> None:
    if len(a) != len(b):
        raise ValueError(f"length mismatch: {len(a)} hypotheses vs {len(b)} references")
