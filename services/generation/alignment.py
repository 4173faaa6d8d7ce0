"""Token alignment for Prompt-to-Prompt's *refine* edit (pure Python: no torch, testable alone).

The reference aligns the source and target prompts' token ids globally (Needleman-Wunsch with gap 0, match 1,
mismatch -1) and maps each target token to the source token it aligns with; a target token with no partner is
new and keeps its own cross-attention. Ties are broken as the reference breaks them (a gap in the source
first, then a gap in the target, then the diagonal), because the tie order decides which tokens pair up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

GAP, MATCH, MISMATCH = 0, 1, -1
_LEFT, _UP, _DIAGONAL = 1, 2, 3


@dataclass(frozen=True)
class Refinement:
    """For every target position (up to ``max_len``): its source position and whether it takes the source's
    attention (``alpha`` 1) or keeps its own (``alpha`` 0, a new token)."""

    mapper: list[int]
    alphas: list[float]


def _traceback(source: Sequence[int], target: Sequence[int]) -> list[list[int]]:
    rows, columns = len(source) + 1, len(target) + 1
    score = [[0] * columns for _ in range(rows)]
    trace = [[0] * columns for _ in range(rows)]
    for j in range(1, columns):
        score[0][j], trace[0][j] = j * GAP, _LEFT
    for i in range(1, rows):
        score[i][0], trace[i][0] = i * GAP, _UP
    for i in range(1, rows):
        for j in range(1, columns):
            left = score[i][j - 1] + GAP
            up = score[i - 1][j] + GAP
            diagonal = score[i - 1][j - 1] + (MATCH if source[i - 1] == target[j - 1] else MISMATCH)
            best = max(left, up, diagonal)
            score[i][j] = best
            trace[i][j] = _LEFT if best == left else _UP if best == up else _DIAGONAL
    return trace


def align(source: Sequence[int], target: Sequence[int]) -> list[int]:
    """For each target token, the index of the source token aligned with it, or -1 for a new token."""
    trace = _traceback(source, target)
    mapping: list[int] = []
    i, j = len(source), len(target)
    while i > 0 or j > 0:
        step = trace[i][j]
        if step == _DIAGONAL:
            i, j = i - 1, j - 1
            mapping.append(i)
        elif step == _LEFT:
            j -= 1
            mapping.append(-1)
        else:
            i -= 1
    mapping.reverse()
    return mapping


def refinement(source: Sequence[int], target: Sequence[int], max_len: int = 77) -> Refinement:
    """The refine edit's mapper and alphas over the text encoder's ``max_len`` positions.

    Positions past the target's tokens (padding) map to themselves and take the source's attention.
    """
    if len(source) > max_len or len(target) > max_len:
        raise ValueError(f"prompts are limited to {max_len} tokens")
    aligned = align(source, target)
    mapper = [index if index >= 0 else 0 for index in aligned] + list(range(len(target), max_len))
    alphas = [0.0 if index < 0 else 1.0 for index in aligned] + [1.0] * (max_len - len(target))
    # The reference keeps -1 in the mapper for new tokens; its alpha of 0 makes the gathered value unused,
    # so any valid index serves. 0 keeps the gather in range.
    return Refinement(mapper=mapper, alphas=alphas)


def word_token_positions(text: str, token_pieces: Sequence[str], word: str) -> list[int]:
    """Token positions (BOS = 0) of every occurrence of ``word`` among the space-separated words of ``text``.

    ``token_pieces`` are the prompt's tokens decoded one by one, without BOS and EOS. Pieces are walked
    against the words by length, as the reference's ``get_word_inds`` does, so a word split into several
    tokens yields all of its positions.
    """
    words = text.split(" ")
    wanted = {index for index, candidate in enumerate(words) if candidate == word}
    positions: list[int] = []
    if not wanted:
        return positions
    length, pointer = 0, 0
    for index, piece in enumerate(token_pieces):
        length += len(piece)
        if pointer in wanted:
            positions.append(index + 1)
        if pointer < len(words) and length >= len(words[pointer]):
            pointer, length = pointer + 1, 0
    return positions


def time_word_alphas(
    num_steps: int,
    cross_replace: float,
    word_overrides: Sequence[tuple[Sequence[int], float]] = (),
    max_len: int = 77,
) -> list[list[float]]:
    """Per denoising step (``num_steps + 1`` rows) and token: 1 where cross-attention is replaced.

    Every token is replaced for the first ``cross_replace`` fraction of the steps; a word override gives its
    token positions their own fraction (the reference's ``cross_replace_steps`` dict).
    """
    rows = num_steps + 1

    def window(fraction: float) -> range:
        return range(0, int(fraction * rows))

    alphas = [[1.0 if step in window(cross_replace) else 0.0 for _ in range(max_len)] for step in range(rows)]
    for positions, fraction in word_overrides:
        active = window(fraction)
        for step in range(rows):
            for position in positions:
                if position < max_len:
                    alphas[step][position] = 1.0 if step in active else 0.0
    return alphas
