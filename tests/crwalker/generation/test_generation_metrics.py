"""Metrics against hand-computed values."""

import math

import pytest

from crwalker.generation import metrics as M


def test_normalize_answer_lowercases_and_spaces_punctuation():
    assert M.normalize_answer("Hello, World! It's @me_(2001)") == "hello world it s me 2001"


def test_bleu_nltk35_partial_match_hand_computed():
    # NLTK 3.5 method 4: an order i (0-based) without matches gets (i + k / ln|hyp|) / denominator, k = 5
    # hyp "a b c d" vs ref "a b c e": p1 = 3/4, p2 = 2/3, p3 = 1/2, p4 = (3 + 5 / ln 4) / 1, p5 = 0
    p4 = 3 + 5 / math.log(4)
    p1 = (7 / 4 + 3 / 4 + 2 / 3) / 3  # method 5, m_-1 = p1 + 1 = 7/4
    p2 = (p1 + 2 / 3 + 1 / 2) / 3
    p3 = (p2 + 1 / 2 + p4) / 3
    p4s = (p3 + p4 + 0) / 3
    expected = math.exp(sum(math.log(x) for x in (p1, p2, p3, p4s)) / 4)
    assert expected > 1  # NLTK 3.5 can score a sentence above 1
    assert M.sentence_bleu_crwalker("A b c, d!", ["a b c e"]) == pytest.approx(expected, rel=1e-9)
    assert M.sentence_bleu_crwalker("a b c d", ["a b c e"], nltk_smoothing="3.5") == pytest.approx(expected)


def test_bleu_nltk35_edge_cases():
    # identical sentences: no zero order, so 3.5 and current agree
    same = M.sentence_bleu_crwalker("a b c d e", ["a b c d e"], nltk_smoothing="current")
    assert M.sentence_bleu_crwalker("a b c d e", ["a b c d e"]) == pytest.approx(same, rel=1e-12)
    # one-token hypothesis: NLTK 3.5 divides by ln(1) = 0 -> exception -> 0, like the reference's except
    assert M.sentence_bleu_crwalker("hi", ["hi"]) == 0.0
    assert M.sentence_bleu_crwalker("x y z", ["a b c"]) == 0.0
    # brevity penalty: hyp "a b c d" (4) vs ref of 8 tokens -> exp(1 - 8/4)
    short = M.sentence_bleu_crwalker("a b c d", ["a b c d e f g h"])
    p = M.method7_nltk35([(4, 4), (3, 3), (2, 2), (1, 1)], (0, 1), 4)
    assert short == pytest.approx(math.exp(-1) * math.exp(sum(math.log(x) for x in p) / 4))
    with pytest.raises(ValueError, match="nltk_smoothing"):
        M.sentence_bleu_crwalker("a", ["a"], nltk_smoothing="3.4")


def test_bleu_identical_sentence_is_method7_smoothed():
    # p_n = 1 for n = 1..5; method5 averages neighbours: m_-1 = p1 + 1 = 2
    # p1' = (2 + 1 + 1)/3 = 4/3, p2' = (4/3 + 1 + 1)/3 = 10/9, p3' = 28/27, p4' = 82/81; BP = 1
    expected = math.exp(sum(math.log(x) for x in (4 / 3, 10 / 9, 28 / 27, 82 / 81)) / 4)
    assert M.sentence_bleu_crwalker("A b, c d e!", ["a b c d e"], nltk_smoothing="current") == pytest.approx(
        expected, rel=1e-9
    )


def test_bleu_partial_match_hand_computed():
    # hyp "a b c d" vs ref "a b c e": p1 = 3/4, p2 = 2/3, p3 = 1/2, p4 = 0/1, p5 = 0 (no 5-grams)
    # method4 (k = 5): p4 = 1 / (2 * 5 / ln 4) / 1 = ln(4) / 10
    p4 = math.log(4) / 10
    p1 = (7 / 4 + 3 / 4 + 2 / 3) / 3  # m_-1 = p1 + 1 = 7/4
    p2 = (p1 + 2 / 3 + 1 / 2) / 3
    p3 = (p2 + 1 / 2 + p4) / 3
    p4s = (p3 + p4 + 0) / 3
    expected = math.exp(sum(math.log(x) for x in (p1, p2, p3, p4s)) / 4)
    assert M.sentence_bleu_crwalker("a b c d", ["a b c e"], nltk_smoothing="current") == pytest.approx(
        expected, rel=1e-9
    )


def test_bleu_no_overlap_and_empty_are_zero_and_mean_over_turns():
    assert M.sentence_bleu_crwalker("x y z", ["a b c"]) == 0.0
    assert M.sentence_bleu_crwalker("", ["a b c"]) == 0.0
    one = M.sentence_bleu_crwalker("a b c d", ["a b c e"])
    assert M.bleu_crwalker(["a b c d", "x y z"], ["a b c e", "a b c"]) == pytest.approx(one / 2)
    with pytest.raises(ValueError):
        M.bleu_crwalker(["a"], [])


def test_corpus_sacrebleu():
    assert M.corpus_sacrebleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(1.0)
    assert M.corpus_sacrebleu(["x y z w"], ["a b c d"]) == pytest.approx(0.0)
    # 4-gram brevity: hyp of 4 identical tokens vs ref of 8 -> BP = exp(1 - 8/4) = e^-1, precisions 1
    assert M.corpus_sacrebleu(["a b c d"], ["a b c d e f g h"]) == pytest.approx(math.exp(-1), rel=1e-6)


def test_distinct_corpus_divides_by_tokens():
    texts = ["a b a b", "a b c", "z"]
    # bigrams {ab, ba, bc} = 3; tokens = 4 + 3 + 1 = 8
    assert M.distinct_corpus(texts, 2) == pytest.approx(3 / 8)
    # trigrams {aba, bab, abc} = 3
    assert M.distinct_corpus(texts, 3) == pytest.approx(3 / 8)
    assert M.distinct_corpus([], 2) == 0.0


def test_distinct_sentence_mean_over_sentences():
    # "a b a b": 2 distinct of 3 bigrams; "a b c": 2 of 2; "z" has no bigram -> skipped
    assert M.distinct_sentence(["a b a b", "a b c", "z"], 2) == pytest.approx((2 / 3 + 1) / 2)
    assert M.distinct_sentence(["z"], 2) == 0.0


def test_knowledge_prf_micro_and_macro():
    classes = {"h1": {"Movie", "Genre"}, "r1": {"Movie"}, "h2": set(), "r2": {"Actor"}, "h3": set(), "r3": set()}
    out = M.knowledge_prf(["h1", "h2", "h3"], ["r1", "r2", "r3"], classes.__getitem__)
    assert out["precision"] == pytest.approx(0.5)
    assert out["recall"] == pytest.approx(0.5)
    assert out["f1"] == pytest.approx(0.5)
    # per turn F1: turn 1 P=1/2 R=1 -> 2/3; turn 2 -> 0; turn 3 has no class on either side -> skipped
    assert out["f1_macro"] == pytest.approx(1 / 3)


def test_perplexity():
    assert M.perplexity(3 * math.log(4), 3) == pytest.approx(4.0)
    with pytest.raises(ValueError):
        M.perplexity(1.0, 0)


def test_movie_consistency():
    found = {
        "r1": [("Alien (1979)", True), ("Fake Film (2020)", False)],
        "r2": [("Superbad (2007)", True)],
        "r3": [],
    }
    out = M.movie_consistency(
        ["r1", "r2", "r3"],
        act_movies=[["Alien (1979)", "Aliens (1986)"], [], ["Superbad (2007)"]],
        is_recommend=[True, False, True],
        find_titles=found.__getitem__,
        allowed_movies=[[], [], []],
    )
    assert out["kg_title_rate"] == pytest.approx(2 / 3)
    assert out["on_act_rate"] == pytest.approx(1 / 2)  # Superbad is named in a turn whose act has no movie
    assert out["rec_recall"] == pytest.approx(1 / 3)
    assert out["rec_all_named"] == pytest.approx(0.0)
    assert out["n_rec_turns"] == 2
