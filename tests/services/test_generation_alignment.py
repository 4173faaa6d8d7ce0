import pytest

from services.generation.alignment import align, refinement, time_word_alphas, word_token_positions

BOS, EOS = 49406, 49407


def test_identical_prompts_align_one_to_one() -> None:
    tokens = [BOS, 320, 1929, 525, 518, 3116, EOS]
    assert align(tokens, tokens) == list(range(len(tokens)))


def test_a_swapped_word_is_aligned_in_place() -> None:
    # "a dog on the grass" -> "a cat on the grass": a mismatch on the diagonal still pairs the two words
    source = [BOS, 320, 1929, 525, 518, 3116, EOS]
    target = [BOS, 320, 2368, 525, 518, 3116, EOS]
    # with gap 0 a mismatch (-1) never beats a pair of gaps (0): the new word is unaligned, so it keeps its own
    # attention, and every other token takes the source's
    assert align(source, target) == [0, 1, -1, 3, 4, 5, 6]


def test_an_inserted_word_is_new_and_the_rest_shifts() -> None:
    # "a cake" -> "a confetti cake"
    source = [BOS, 320, 2972, EOS]
    target = [BOS, 320, 9999, 2972, EOS]
    assert align(source, target) == [0, 1, -1, 2, 3]


def test_a_removed_word_leaves_no_target_entry() -> None:
    source = [BOS, 320, 1000, 2972, EOS]
    target = [BOS, 320, 2972, EOS]
    assert align(source, target) == [0, 1, 3, 4]


def test_ties_are_broken_in_the_reference_order() -> None:
    # source [1, 2], target [2, 1]: pairing the 1s or pairing the 2s both score 1. Tracing back from the end,
    # a gap in the source (left) wins the tie first, so the last target token is new and the 2s pair up.
    assert align([1, 2], [2, 1]) == [1, -1]


def test_refinement_pads_to_max_len_with_identity() -> None:
    source = [BOS, 320, 2972, EOS]
    target = [BOS, 320, 9999, 2972, EOS]
    refined = refinement(source, target, max_len=8)
    assert refined.mapper == [0, 1, 0, 2, 3, 5, 6, 7]
    assert refined.alphas == [1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0]


def test_refinement_refuses_over_long_prompts() -> None:
    with pytest.raises(ValueError):
        refinement(list(range(80)), [1, 2], max_len=77)


def test_word_positions_follow_multi_token_words() -> None:
    # "a confetti apple" where "confetti" is two pieces: positions count BOS as 0
    pieces = ["a", "conf", "etti", "apple"]
    assert word_token_positions("a confetti apple", pieces, "confetti") == [2, 3]
    assert word_token_positions("a confetti apple", pieces, "apple") == [4]
    assert word_token_positions("a confetti apple", pieces, "pear") == []


def test_time_word_alphas_default_and_overrides() -> None:
    alphas = time_word_alphas(4, 0.4, [([2], 0.8)], max_len=4)
    # 5 rows; default 0.4 -> rows [0, 2); word at position 2 -> rows [0, 4)
    assert [row[1] for row in alphas] == [1, 1, 0, 0, 0]
    assert [row[2] for row in alphas] == [1, 1, 1, 1, 0]
    assert all(value == 1.0 for row in time_word_alphas(50, 1.0) for value in row)
