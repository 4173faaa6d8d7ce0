import numpy as np
from PIL import Image

from spotdiff.imgdiff.boxes import iou
from spotdiff.imgdiff.prior import change_map, components, otsu_threshold, prior_boxes
from spotdiff.protocol import Box


def scene(seed: int = 0, size: int = 128) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(60, 200, (size, size, 3), dtype=np.uint8)


def test_identical_images_change_nowhere() -> None:
    image = scene()
    assert float(change_map(image, image).max()) == 0.0
    assert prior_boxes(image, image) == []


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


def test_otsu_splits_two_populations() -> None:
    values = np.concatenate([np.full(100, 0.1), np.full(20, 0.8)]).astype(np.float32)
    assert 0.1 <= otsu_threshold(values) < 0.8


def test_components_are_eight_connected() -> None:
    mask = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0], [1, 1, 0]], dtype=bool)
    assert [sorted(group) for group in components(mask)] == [[(0, 0), (1, 1)], [(3, 0), (3, 1)]]
