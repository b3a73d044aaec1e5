import numpy as np
import pytest

from lit_rcqa.analysis.words import (answer_word_indices, merge_words, record_words, span_word_indices,
                                     top_word_indices)
from tests.analysis.records import make_record

CONTEXT = "The Denver Broncos won, lazily.  It costs $5,000 in unaffable   Zürich!"


def _check_against_whitespace_split(context, offsets, n_tokens):
    """Merged words equal str.split(); every token's mass lands in the word containing it."""
    rng = np.random.default_rng(0)
    imp = rng.random((3, n_tokens))
    words = merge_words(context, offsets, imp)
    assert words.words == context.split()
    for (s, e), w in zip(words.spans, words.words):
        assert context[s:e] == w
    # independent reference: assign each token to the whitespace word its first visible char falls in
    expected = np.zeros((3, len(words.words)))
    word_of_char = np.full(len(context) + 1, -1)
    for j, (s, e) in enumerate(words.spans):
        word_of_char[s:e] = j
    for t, (s, e) in enumerate(offsets):
        visible = [c for c in range(s, e) if not context[c].isspace()]
        j = word_of_char[visible[0]] if visible else word_of_char[min(c for c in range(e, len(context))
                                                                         if word_of_char[c] >= 0)]
        expected[:, j] += imp[:, t]
        assert words.token_word[t] == j
    np.testing.assert_allclose(words.importance, expected / expected.sum(axis=1, keepdims=True))
    return words


def test_bert_wordpiece_pieces_merge_into_whitespace_words(tokenizer):
    enc = tokenizer(CONTEXT, return_offsets_mapping=True, add_special_tokens=False)
    tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"])
    assert any(t.startswith("##") for t in tokens)  # the test really exercises WordPiece merging
    _check_against_whitespace_split(CONTEXT, np.array(enc["offset_mapping"]), len(tokens))


@pytest.mark.parametrize("trim_offsets", [False, True])
def test_byte_level_bpe_pieces_merge_into_whitespace_words(trim_offsets):
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer(trim_offsets=trim_offsets)
    bpe.train_from_iterator(["The quick brown fox jumps over the lazy dog.",
                             "Denver Broncos won Super Bowl 50 in 2016!", "It costs $5,000 per year."],
                            vocab_size=280, min_frequency=1, show_progress=False)
    enc = bpe.encode(CONTEXT)
    assert "Ġ" in enc.tokens  # lone-space pieces, empty spans when trimmed: the hard case
    _check_against_whitespace_split(CONTEXT, np.array(enc.offsets), len(enc.tokens))


def test_hand_made_tokenisation_sums_pieces_and_skips_spanless_tokens():
    context = "un affable, x"
    offsets = [(0, 2), (3, 6), (6, 10), (10, 11), (-1, -1), (12, 13)]  # un | aff ##able , | no span | x
    imp = np.array([[1.0, 2.0, 3.0, 4.0, 100.0, 0.0]])
    words = merge_words(context, offsets, imp)
    assert words.words == ["un", "affable,", "x"]
    np.testing.assert_array_equal(words.spans, [[0, 2], [3, 11], [12, 13]])
    np.testing.assert_allclose(words.importance, [[0.1, 0.9, 0.0]])
    np.testing.assert_array_equal(words.token_word, [0, 1, 1, 1, -1, 2])
    split = merge_words(context, offsets, imp, split_punctuation=True)
    assert split.words == ["un", "affable", ",", "x"]
    np.testing.assert_allclose(split.importance, [[0.1, 0.5, 0.4, 0.0]])


def test_record_words_answer_and_top_words():
    rec = make_record("who won ?", "Denver Broncos won the game", [[1, 5, 2, 0, 0], [0, 0, 0, 3, 1]],
                      pred_words=(0, 1))
    words = record_words(rec)
    assert words.words == ["Denver", "Broncos", "won", "the", "game"]
    np.testing.assert_allclose(words.importance[0], [0.125, 0.625, 0.25, 0, 0])
    np.testing.assert_array_equal(answer_word_indices(words, rec), [0, 1])
    np.testing.assert_array_equal(span_word_indices(words, 2, 3), [2, 3])
    np.testing.assert_array_equal(top_word_indices(words.importance, 2), [[1, 2], [3, 4]])
    assert top_word_indices(words.importance, 10).shape == (2, 5)
