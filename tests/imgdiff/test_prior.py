"""The weight-free difference prior: the change map against scikit-image's SSIM, Otsu's threshold against
scikit-image's, the components against SciPy's labelling, and the boxes on pairs whose change map is known."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.metrics import structural_similarity

from spotdiff.imgdiff.boxes import iou
from spotdiff.imgdiff.prior import change_map, components, default_block, otsu_threshold, prior_boxes
from spotdiff.protocol import Box

QUICK = settings(max_examples=60, deadline=None, database=None, derandomize=True)
LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601, as PIL's "L" mode has it


def scene(seed: int = 0, size: int = 128) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(60, 200, (size, size, 3), dtype=np.uint8)


def pair_with_map(values: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat float images whose change map is ``values``: a flat block shifted by d in every channel has colour
    difference 2d and next to no structural difference (about d squared)."""
    before = np.full((values.shape[0] * block, values.shape[1] * block, 3), 0.5, dtype=np.float32)
    shift = np.kron(values, np.ones((block, block)))[..., None] / 2
    return before, (before + shift).astype(np.float32)


def reference_map(first: np.ndarray, second: np.ndarray, block: int) -> np.ndarray:
    """The change map block by block, SSIM from scikit-image over one window the size of the block."""
    rows, cols = first.shape[0] // block, first.shape[1] // block
    expected = np.zeros((rows, cols))
    for row in range(rows):
        for col in range(cols):
            window = np.s_[row * block : (row + 1) * block, col * block : (col + 1) * block]
            a, b = first[window].astype(np.float64), second[window].astype(np.float64)
            colour = min(1.0, 2 * float(np.abs(a - b).mean()))
            ssim = structural_similarity(
                a @ LUMA,
                b @ LUMA,
                win_size=block,
                data_range=1.0,
                gaussian_weights=False,
                use_sample_covariance=False,
                K1=0.01,
                K2=0.03,
            )
            expected[row, col] = max(colour, (1 - float(ssim)) / 2)
    return expected


def mixed_pair(seed: int, block: int = 7, rows: int = 6, cols: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Blocks of every kind: dark and flat (where SSIM's C1 counts), faint noise (C2), inverted or weakened
    texture, plain recolours, untouched blocks. In most of them the structural difference decides."""
    rng = np.random.default_rng(seed)
    first = np.zeros((rows * block, cols * block, 3))
    second = np.zeros_like(first)
    for row in range(rows):
        for col in range(cols):
            window = np.s_[row * block : (row + 1) * block, col * block : (col + 1) * block]
            level = rng.uniform(0.2, 0.8)
            texture = rng.uniform(-1, 1, (block, block, 3))
            kind = (row * cols + col + seed) % 6
            if kind == 0:  # dark, flat
                a = np.full((block, block, 3), rng.uniform(0.0, 0.05))
                b = a + rng.uniform(0.0, 0.02)
            elif kind == 1:  # faint independent noise
                a = level + 0.02 * texture
                b = level + 0.02 * rng.uniform(-1, 1, (block, block, 3))
            elif kind == 2:  # inverted texture
                a, b = level + 0.1 * texture, level - 0.1 * texture
            elif kind == 3:  # weakened texture, a little darker
                a, b = level + 0.15 * texture, level - 0.02 + 0.05 * texture
            elif kind == 4:  # recoloured
                a = level + 0.05 * texture
                b = a + rng.uniform(-0.2, 0.2, 3)
            else:
                a = b = level + 0.1 * texture
            first[window], second[window] = a, b
    return np.clip(first, 0, 1).astype(np.float32), np.clip(second, 0, 1).astype(np.float32)


# the change map


def test_identical_images_change_nowhere() -> None:
    image = scene()
    assert float(change_map(image, image).max()) == 0.0
    assert prior_boxes(image, image) == []


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_change_map_is_colour_or_ssim_block_by_block(seed: int) -> None:
    first, second = mixed_pair(seed)
    expected = reference_map(first, second, 7)
    colour = np.minimum(1, 2 * np.abs(first - second).mean(axis=2).reshape(6, 7, 8, 7).mean(axis=(1, 3)))
    assert (expected > colour + 0.05).sum() >= 10, "the structural difference should decide many blocks"
    found = change_map(first, second, block=7)
    assert found.dtype == np.float32
    np.testing.assert_allclose(found, expected, atol=2e-6)


def test_a_strong_recolour_saturates_and_a_weak_one_is_twice_the_difference() -> None:
    before = np.full((16, 32, 3), 0.2, dtype=np.float32)
    after = before.copy()
    after[:, :16] += 0.6  # a difference of 0.6: twice that, capped at 1
    after[:, 16:] += 0.1
    np.testing.assert_allclose(change_map(before, after), [[1.0, 1.0, 0.2, 0.2]] * 2, atol=1e-6)


def test_the_map_has_one_value_per_whole_block() -> None:
    """8-pixel blocks by default; the strip right and below the last whole block is not compared."""
    before = scene(3, size=64)[:45, :61]
    after = before.copy()
    after[40:, :] = 0  # only the 5-row strip under the last whole block (rows 40 to 44)
    after[:, 56:] = 0  # and the 5-column strip beside it
    assert change_map(before, after).shape == (5, 7)
    assert float(change_map(before, after).max()) == 0.0
    assert change_map(before, after, block=4).shape == (11, 15)
    assert float(change_map(before, after, block=4).max()) > 0.5


@QUICK
@given(
    hnp.arrays(np.float32, (8, 12, 3), elements=st.floats(0, 1, width=32)),
    hnp.arrays(np.float32, (8, 12, 3), elements=st.floats(0, 1, width=32)),
)
def test_the_map_is_symmetric_and_within_0_and_1(first: np.ndarray, second: np.ndarray) -> None:
    found = change_map(first, second, block=4)
    assert np.array_equal(found, change_map(second, first, block=4))
    assert found.min() >= 0.0 and found.max() <= 1.0


def test_8bit_images_are_scaled_by_255() -> None:
    before, after = scene(4, 32), scene(5, 32)
    np.testing.assert_allclose(
        change_map(before, after), change_map(before / 255.0, after / 255.0), rtol=1e-5, atol=1e-6
    )


def test_a_dark_8bit_image_is_not_taken_for_a_float_one() -> None:
    """The scale follows the pixel type: an 8-bit image with no pixel over 1 is still 8-bit (it once was read
    as a float image in [0, 1], so a change of 1/255 counted as one of 1)."""
    black = np.zeros((16, 16, 3), dtype=np.uint8)
    dark = black.copy()
    dark[:8, :8] = 1
    found = change_map(black, dark)
    np.testing.assert_allclose(found, change_map(black / 255.0, dark / 255.0), rtol=1e-5, atol=1e-7)
    assert float(found.max()) < 0.1


def test_half_precision_is_computed_in_single_precision() -> None:
    first, second = (image.astype(np.float16) for image in mixed_pair(0))
    assert np.array_equal(
        change_map(first, second, block=7),
        change_map(first.astype(np.float32), second.astype(np.float32), block=7),
    )


def test_pil_images_are_the_same_as_their_arrays() -> None:
    before, after = scene(6, 32), scene(7, 32)
    assert np.array_equal(change_map(Image.fromarray(before), Image.fromarray(after)), change_map(before, after))


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_pil_images_of_other_modes_are_compared_as_rgb(mode: str) -> None:
    before, after = (Image.fromarray(scene(seed, 32)).convert(mode) for seed in (8, 9))
    rgb = [np.asarray(image.convert("RGB")) for image in (before, after)]
    assert np.array_equal(change_map(before, after), change_map(*rgb))


def test_images_of_different_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="differ in size"):
        change_map(scene(0, 32), scene(0, 40))


# Otsu's threshold


def test_otsu_splits_two_populations() -> None:
    values = np.concatenate([np.full(100, 0.1), np.full(20, 0.8)]).astype(np.float32)
    assert 0.1 <= otsu_threshold(values) < 0.8


def otsu_cases() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    cases = [
        rng.uniform(0, 1, 500),
        rng.beta(0.5, 3, 400),  # skewed, a long tail
        np.concatenate([rng.normal(0.2, 0.05, 300), rng.normal(0.7, 0.1, 60)]),
        np.concatenate([[0.0], rng.uniform(0.3, 1, 50)]),  # a lone minimum: a class of one at the bottom
        np.concatenate([rng.uniform(0, 0.6, 50), [1.0]]),  # a lone maximum
        np.concatenate([rng.uniform(0, 0.5, 40), rng.uniform(0.9, 1.0, 3)]),
        rng.exponential(0.1, 300),
        np.array([0.0, 0.05, 0.1, 1.0]),
    ]
    cases += [rng.uniform(0, 1, size) ** power for size, power in ((7, 1), (30, 3), (200, 0.3), (64, 2))]
    return [case.astype(np.float32).reshape(-1, 1) for case in cases]


@pytest.mark.parametrize("bins", [64, 16, 256])
def test_otsu_is_scikit_images(bins: int) -> None:
    for values in otsu_cases():
        assert otsu_threshold(values, bins=bins) == pytest.approx(float(threshold_otsu(values, nbins=bins)), abs=0)


def test_otsu_takes_64_bins_by_default() -> None:
    assert [otsu_threshold(values) for values in otsu_cases()] == [
        otsu_threshold(values, bins=64) for values in otsu_cases()
    ]


def test_otsu_of_an_empty_or_constant_map() -> None:
    assert otsu_threshold(np.zeros((0, 3), dtype=np.float32)) == 0.0
    assert otsu_threshold(np.full((3, 2), 0.3, dtype=np.float32)) == pytest.approx(0.3)
    assert otsu_threshold(np.full(1, 0.6, dtype=np.float32)) == pytest.approx(0.6)


# components


def test_components_are_eight_connected() -> None:
    mask = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0], [1, 1, 0]], dtype=bool)
    assert [sorted(group) for group in components(mask)] == [[(0, 0), (1, 1)], [(3, 0), (3, 1)]]


@pytest.mark.parametrize(
    ("rows", "groups"),
    [
        (["#.#", ".#."], [[(0, 0), (1, 1), (0, 2)]]),  # a V: back up to the top row
        ([".#", "#."], [[(0, 1), (1, 0)]]),  # back to the first column
        (["#.#"], [[(0, 0)], [(0, 2)]]),  # a gap of one cell parts them
        (["#", ".", "#"], [[(0, 0)], [(2, 0)]]),
        (["##", "##"], [[(0, 0), (0, 1), (1, 0), (1, 1)]]),
        ([".#.", "#.#", ".#."], [[(0, 1), (1, 0), (1, 2), (2, 1)]]),  # a ring of diagonals, each cell once
    ],
)
def test_components_small_cases(rows: list[str], groups: list[list[tuple[int, int]]]) -> None:
    mask = np.array([[cell == "#" for cell in row] for row in rows])
    assert components(mask) == groups


def labelled(mask: np.ndarray) -> list[list[tuple[int, int]]]:
    """SciPy's 8-connected labelling, as lists of cells in scan order, the labels in order of their first cell."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    return [[(int(r), int(c)) for r, c in np.argwhere(labels == label)] for label in range(1, count + 1)]


@QUICK
@given(hnp.arrays(np.bool_, st.tuples(st.integers(1, 9), st.integers(1, 9))))
def test_components_are_scipys_labels(mask: np.ndarray) -> None:
    found = components(mask)
    assert [sorted(group) for group in found] == labelled(mask)
    assert all(group[0] == min(group) for group in found)  # each group starts at its first cell in scan order


# default block size


def test_default_block_is_a_64th_of_the_shorter_side_and_at_least_4() -> None:
    assert default_block(1024, 1024) == 16
    assert default_block(1000, 3000) == 15
    assert default_block(3000, 1000) == 15
    assert default_block(256, 512) == 4
    assert default_block(100, 100) == 4


# the boxes


def test_a_pasted_square_is_found_where_it_is() -> None:
    before = scene()
    after = before.copy()
    after[40:72, 80:112] = (250, 20, 20)
    found = prior_boxes(Image.fromarray(before), Image.fromarray(after))
    assert found, "no box"
    assert iou(found[0].box, Box.from_list([80, 40, 112, 72])) > 0.7


def test_two_changes_give_one_box_each() -> None:
    before = scene(1)
    after = before.copy()
    after[8:24, 8:24] = 0
    after[64:120, 60:120] = 255
    found = prior_boxes(before, after)
    truths = [Box.from_list([8, 8, 24, 24]), Box.from_list([60, 64, 120, 120])]
    assert len(found) == 2  # the same component at several thresholds is kept once
    assert all(max(iou(prior.box, truth) for prior in found) > 0.6 for truth in truths)


def test_an_object_inside_a_restyled_area_gets_its_own_box() -> None:
    before = scene(2)
    after = before.copy()
    after[:, 64:] = np.clip(after[:, 64:].astype(int) + 45, 0, 255).astype(np.uint8)  # mild restyle
    after[80:104, 88:112] = (255, 255, 0)  # a strong object change inside it
    found = prior_boxes(before, after)
    assert max(iou(prior.box, Box.from_list([88, 80, 112, 104])) for prior in found) > 0.5


def test_a_box_spans_its_blocks_and_scores_their_change() -> None:
    values = np.zeros((6, 8))
    values[2:4, 5:8] = 0.6
    before, after = pair_with_map(values, 8)
    np.testing.assert_allclose(change_map(before, after), values, atol=1e-6)  # the premise of these tests
    (found,) = prior_boxes(before, after, block=8)  # not the default, 4 px here
    assert found.box == Box.from_list([40, 16, 64, 32])
    assert found.score == pytest.approx(6 * 0.6, abs=1e-5)


def test_boxes_rank_by_mean_change_not_total() -> None:
    values = np.zeros((12, 12))
    values[1:3, 1:2] = 0.9  # small and strong: total 1.8
    values[6:10, 6:8] = 0.5  # large and weaker: total 4
    found = prior_boxes(*pair_with_map(values, 4), block=4)
    assert [prior.box for prior in found] == [Box.from_list([4, 4, 8, 12]), Box.from_list([24, 24, 32, 40])]
    assert [prior.score for prior in found] == pytest.approx([1.8, 4.0], abs=1e-5)


def test_components_under_min_blocks_are_no_candidates() -> None:
    values = np.zeros((12, 12))
    values[1, 1] = 0.9  # a single block, first in scan order
    values[6, 6:8] = 0.9  # two blocks
    before, after = pair_with_map(values, 4)
    assert [prior.box for prior in prior_boxes(before, after, block=4)] == [Box.from_list([24, 24, 32, 28])]
    assert len(prior_boxes(before, after, block=4, min_blocks=1)) == 2
    assert prior_boxes(before, after, block=4, min_blocks=3) == []


def test_at_most_max_boxes() -> None:
    values = np.zeros((16, 16))
    values[1::3, 0:2] = values[1::3, 6:8] = 0.8  # 10 separate pairs of blocks
    values[1::6, 12:14] = 0.9  # and 3 stronger
    before, after = pair_with_map(values, 4)
    assert len(prior_boxes(before, after, block=4, max_boxes=100)) == 13
    found = prior_boxes(before, after, block=4)
    assert len(found) == 10
    assert [prior.box.x1 for prior in found[:3]] == [48, 48, 48]  # the strongest kept


def test_a_uniform_change_or_an_image_under_one_block_has_no_box() -> None:
    """Nothing stands out of a map that is the same everywhere, and a map without blocks has nothing."""
    before = np.full((32, 32, 3), 0.3, dtype=np.float32)
    assert prior_boxes(before, before + 0.2, block=8) == []
    assert prior_boxes(scene(0, 3), scene(1, 3)) == []  # under the 4-pixel default block


def test_each_level_of_a_graded_change_gets_a_box() -> None:
    """A restyled background (0.2), an object changed more (0.3) holding a part changed a little more (0.35)
    and a core changed most (0.65): a box at Otsu's threshold, a quarter and half the way to the peak."""
    values = np.full((16, 16), 0.2)
    values[4:10, 4:10] = 0.3
    values[5:9, 5:9] = 0.35
    values[6:8, 6:8] = 0.65
    before, after = pair_with_map(values, 4)
    otsu = otsu_threshold(change_map(before, after, block=4))
    cuts = [otsu + (0.65 - otsu) * level for level in (0.0, 0.25, 0.5)]
    assert 0.2 < cuts[0] < 0.3 < cuts[1] < 0.35 < cuts[2] < 0.65  # the premise: one tier between two cuts
    core, part, whole = (
        Box.from_list([24, 24, 32, 32]),
        Box.from_list([20, 20, 36, 36]),
        Box.from_list([16, 16, 40, 40]),
    )
    assert [prior.box for prior in prior_boxes(before, after, block=4)] == [core, part, whole]
    assert [prior.box for prior in prior_boxes(before, after, block=4, levels=(0.0,))] == [whole]
    assert [prior.box for prior in prior_boxes(before, after, block=4, levels=(0.5,))] == [core]


def test_boxes_overlapping_by_exactly_the_limit_are_both_kept() -> None:
    """Only IoU above 0.8 makes a duplicate. Blocks of one pixel: 4 x 1 and 3 x 1 boxes, +1-pixel areas 10 and 8."""
    values = np.zeros((16, 16))
    values[5, 3:6] = 1.0
    values[5, 6] = 0.5
    found = prior_boxes(*pair_with_map(values, 1), block=1, levels=(0.0, 0.5))
    assert [prior.box for prior in found] == [Box.from_list([3, 5, 6, 6]), Box.from_list([3, 5, 7, 6])]
    assert iou(found[0].box, found[1].box) == 0.8
