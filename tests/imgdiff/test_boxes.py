import pytest

from spotdiff.imgdiff.boxes import clipped, format_coordinate, from_centre, grown, iou, nms, normalised_box, to_centre
from spotdiff.protocol import Box


def box(*xyxy: float) -> Box:
    return Box.from_list(list(xyxy))


def test_iou_uses_plus_one_pixel_areas() -> None:
    # two 10x10-pixel boxes (0..9) overlapping in 5x10: 50 / (100 + 100 - 50)
    assert iou(box(0, 0, 9, 9), box(5, 0, 14, 9)) == pytest.approx(50 / 150)
    assert iou(box(0, 0, 9, 9), box(0, 0, 9, 9)) == 1.0
    assert iou(box(0, 0, 9, 9), box(20, 20, 29, 29)) == 0.0
    assert iou(box(0, 0, 9, 9), box(20, 0, 29, 9)) == 0.0  # apart in x only
    assert iou(box(0, 0, 9, 9), box(0, 20, 9, 29)) == 0.0  # apart in y only


def test_nms_keeps_in_order_and_drops_overlaps_above_threshold() -> None:
    boxes = [box(0, 0, 9, 9), box(1, 0, 10, 9), box(50, 50, 60, 60), box(0, 0, 9, 4)]
    # 2nd overlaps the 1st at 90/110 > 0.5; the 4th at exactly 0.5 is kept (IoU <= threshold keeps)
    assert nms(boxes, 0.5) == [0, 2, 3]


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.3, "0.30"), (0.12, "0.12"), (0.0, "0.00"), (1.0, "1.00"), (0.555, "0.56"), (0.9999, "1.00"), (0.05, "0.05")],
)
def test_coordinates_are_written_as_the_reference_writes_them(value: float, text: str) -> None:
    assert format_coordinate(value) == text


def test_normalised_box_string() -> None:
    assert normalised_box(box(128, 307.2, 573.44, 798.72), 1024, 1024) == "[0.12, 0.30, 0.56, 0.78]"


def test_normalised_box_divides_in_float64_unless_told_float32() -> None:
    """ORIG's records (the default) and Data-Juicer's float32 boxes write 0.445 differently."""
    assert normalised_box(box(445, 0, 1000, 1000), 1000, 1000) == "[0.45, 0.00, 1.00, 1.00]"
    assert normalised_box(box(445, 0, 1000, 1000), 1000, 1000, float32=True) == "[0.44, 0.00, 1.00, 1.00]"


def test_centre_form_round_trips() -> None:
    assert from_centre(10, 20, 4, 6) == box(8, 17, 12, 23)
    assert to_centre(box(8, 17, 12, 23)) == (10, 20, 4, 6)


def test_grown_box_is_clamped_to_the_image() -> None:
    assert grown(box(2, 3, 100, 60), 5, 102, 64).as_list() == [0, 0, 102, 64]
    assert grown(box(20, 20, 30, 30), 5, 100, 100).as_list() == [15, 15, 35, 35]


def test_clipped_drops_boxes_outside_the_image() -> None:
    assert clipped(box(10, 10, 300, 300), 128, 128) == box(10, 10, 128, 128)
    assert clipped(box(200, 200, 300, 300), 128, 128) is None
    assert clipped(box(200, 0, 300, 50), 128, 128) is None  # outside in x only
    assert clipped(box(0, 200, 50, 300), 128, 128) is None  # outside in y only
    assert clipped(box(128, 0, 300, 50), 128, 128) is None  # starts on the edge: nothing inside
    assert clipped(box(0, 128, 50, 300), 128, 128) is None
    assert clipped(box(0, 0, 0.5, 0.25), 128, 128) == box(0, 0, 0.5, 0.25)  # a sliver at the corner stays
    assert clipped(box(127.5, 127.75, 300, 300), 128, 128) == box(127.5, 127.75, 128, 128)


def test_box_refuses_inverted_corners() -> None:
    with pytest.raises(ValueError):
        box(10, 10, 5, 20)
