"""The reference's own test pair (a real SDXL + P2P pair: plane in the sky -> boat on water) and its boxes."""

import pytest
from PIL import Image

from bench.regions import GOLDEN, REFERENCE_BOXES
from spotdiff.imgdiff.areas import Candidate, CropPair, area_scores_needed, decide_areas
from spotdiff.imgdiff.boxes import from_centre, iou, normalised_box, to_centre
from spotdiff.imgdiff.objects import changed_objects


@pytest.fixture(scope="module")
def pair() -> tuple[Image.Image, Image.Image]:
    if not (GOLDEN / "dj_img_pair_1.jpg").exists():
        pytest.skip("shared/golden is not beside this checkout")
    return tuple(Image.open(GOLDEN / f"dj_img_pair_{n}.jpg").convert("RGB") for n in (1, 2))  # type: ignore[return-value]


def test_the_reference_boxes_convert_and_lie_on_the_object(pair: tuple[Image.Image, Image.Image]) -> None:
    boxes = [from_centre(*values) for values in REFERENCE_BOXES]
    assert boxes[0].as_list() == pytest.approx([289.04, 483.80, 572.84, 614.96])
    assert boxes[1].as_list() == pytest.approx([302.25, 475.905, 602.39, 613.535])
    assert [to_centre(box) for box in boxes] == [pytest.approx(values) for values in REFERENCE_BOXES]
    width, height = pair[0].size
    assert (width, height) == (1024, 1024)
    assert all(0 <= b.x1 < b.x2 <= width and 0 <= b.y1 < b.y2 <= height for b in boxes)
    # the same object seen in each image: inter 271.59 x 130.735 over union 43880.3 (+1-pixel areas)
    assert iou(boxes[0], boxes[1]) == pytest.approx(0.8092, abs=1e-4)
    assert normalised_box(boxes[0], width, height) == "[0.28, 0.47, 0.56, 0.60]"


@pytest.mark.parametrize(
    ("semantics", "reasons"),
    [
        # ORIG scores an image-2 box's own crop (a boat) against the source objects (plane, sky): it fails
        ("orig", ["difference_area", "no_text_match"]),
        # DJ pairs image 2's crop with the target objects: both pass, and NMS keeps the first
        ("dj", ["difference_area", "overlaps_a_kept_box"]),
    ],
)
def test_the_area_decision_keeps_one_box_for_the_object(semantics: str, reasons: list[str]) -> None:
    source_objects, target_objects = changed_objects(
        "A plane in the sky flying alone.", "A boat in the ocean sailing alone."
    )
    assert (source_objects, target_objects) == (["plane", "sky"], ["boat", "ocean"])
    boxes = [from_centre(*values) for values in REFERENCE_BOXES]
    candidates = [Candidate(boxes[0], 1), Candidate(boxes[1], 2)]
    crop_cosines = [0.62, 0.58]  # oracle: the crops hold a plane and a boat, so they differ

    shown = {1: {"plane", "sky"}, 2: {"boat", "ocean"}}  # oracle: what each image's crops hold
    needed = area_scores_needed(candidates, source_objects, target_objects, semantics)  # type: ignore[arg-type]
    scores = {
        key: crop_cosines[key.candidate]
        if isinstance(key, CropPair)
        else (0.9 if key.word in shown[key.image] else 0.1)
        for key in needed
    }
    selection = decide_areas(
        candidates,
        source_objects,
        target_objects,
        scores,
        text_min=0.35 if semantics == "orig" else 0.4,
        crop_max=0.85,
        nms_iou=0.5,
        max_boxes=10,
        semantics=semantics,  # type: ignore[arg-type]
    )
    assert [decided.reason for decided in selection.decisions] == reasons
    assert selection.kept == [0]  # one box for the one object (NMS drops the overlapping one)
