import io

from PIL import Image

from spotdiff.imgdiff.decision import Decision
from spotdiff.imgdiff.objects import changed_objects, is_noun, objects_decision, words
from spotdiff.imgdiff.prompts import cross_replace_words, difference_caption_prompt, region_label_prompt
from spotdiff.imgdiff.render import png_bytes, red_boxed, side_by_side
from spotdiff.protocol import Box

Colour = tuple[int, int, int]
WHITE: Colour = (255, 255, 255)
RED: Colour = (255, 0, 0)
BLACK: Colour = (0, 0, 0)


def pixels(image: Image.Image) -> dict[tuple[int, int], Colour]:
    rgb = image.convert("RGB")
    return {(x, y): rgb.getpixel((x, y)) for y in range(rgb.height) for x in range(rgb.width)}  # type: ignore[misc]


def test_words_are_lower_cased_without_punctuation() -> None:
    # the reference removes [^\w\s] in place, so "man's" becomes one word
    assert words("A dog, on the man's GRASS!") == ["a", "dog", "on", "the", "mans", "grass"]


def test_changed_objects_of_a_single_swap() -> None:
    assert changed_objects("A dog on the grass", "A cat on the grass") == (["dog"], ["cat"])


def test_changed_objects_of_the_reference_example() -> None:
    source, target = changed_objects("A plane in the sky flying alone.", "A boat in the ocean sailing alone.")
    assert {"plane", "sky"} <= set(source) and {"boat", "ocean"} <= set(target)


def test_plurals_fold_and_identical_words_vanish() -> None:
    assert changed_objects("Two dogs on a bench", "Two dog on a sofa") == (["bench"], ["sofa"])
    assert changed_objects("Three cats", "Three puppies") == (["cat"], ["puppy"])


def test_only_nouns_are_objects() -> None:
    # articles, verbs' -ing forms and adjective-only words ("wooden") are not objects; "red" also reads as a
    # noun, so it counts (a documented difference from NLTK's tagger)
    assert changed_objects("A red apple on a wooden table", "An orange on a metal table") == (
        ["red", "apple"],
        ["orange", "metal"],
    )
    assert changed_objects("A bird flying", "A bird sitting") == ([], [])
    assert changed_objects("A teddy on a bed", "A football on a bed") == (["teddy"], ["football"])  # unknown word
    # an -ed form of a verb is no object, even where lemminflect also lists it as a noun ("the married")
    assert changed_objects("A red umbrella", "A colored umbrella") == (["red"], [])
    assert not is_noun("colored") and not is_noun("married") and not is_noun("flying")


def test_a_verbs_own_base_form_stays_a_noun() -> None:
    # "feed" and "weed" are also past tenses of "fee" and "wee", but read alone they are nouns
    assert changed_objects("A cow eating feed", "A cow eating hay") == (["feed"], ["hay"])
    assert is_noun("feed") and is_noun("weed") and is_noun("ring")


def test_prompts_are_verbatim() -> None:
    box = Box.from_list([128, 307.2, 573.44, 798.72])
    assert region_label_prompt(box, 1024, 1024, "orig") == (
        "Please provide a clear description for this region: [0.12, 0.30, 0.56, 0.78]."
    )
    assert difference_caption_prompt("a dog", "a cat") == (
        "Analyse the the left image and the right image (separated by the black vertical bar). The detail within "
        "the red bounding box in the left image is: a dog, while the detail within the red bounding box in the "
        "right image is: a cat. What is their difference? Answer with a few concise sentences."
    )


def test_red_box_is_grown_5_pixels_and_3_wide() -> None:
    image = Image.new("RGB", (100, 80), (255, 255, 255))
    boxed = red_boxed(image, Box.from_list([20, 20, 50, 40]))
    assert image.getpixel((15, 15)) == (255, 255, 255)  # the original is untouched
    for corner in ((15, 15), (17, 17), (55, 45), (53, 43)):  # 3-pixel outline at the grown box
        assert boxed.getpixel(corner) == (255, 0, 0)
    assert boxed.getpixel((18, 18)) == (255, 255, 255)
    assert boxed.getpixel((30, 30)) == (255, 255, 255)


def test_side_by_side_has_a_20_pixel_black_bar() -> None:
    left, right = Image.new("RGB", (30, 20), (255, 255, 255)), Image.new("RGB", (30, 20), (0, 255, 0))
    joined = side_by_side(left, right)
    assert joined.size == (80, 20)
    assert joined.getpixel((29, 5)) == (255, 255, 255)
    assert all(joined.getpixel((x, 5)) == (0, 0, 0) for x in range(30, 50))
    assert joined.getpixel((50, 5)) == (0, 255, 0)


def test_difference_prompt_wordings() -> None:
    from spotdiff.imgdiff.prompts import TRAINING_QUESTION

    corrected = difference_caption_prompt("a dog", "a cat", "corrected")
    assert corrected.startswith("Analyse the left image and") and ", while the detail" in corrected
    dj = difference_caption_prompt("a dog", "a cat", "dj")
    assert dj == (
        "Analyse the left image and the right image (separated by the black vertical bar). The detail within the "
        "red bounding box in the left image is: a dog, the detail within the red bounding box in the right image "
        "is: a cat. What is their difference? Answer with a few concise sentences."
    )
    assert TRAINING_QUESTION.startswith("Analyse the the left image") and TRAINING_QUESTION.endswith("sentences.")


def test_dj_writes_the_normalised_box_in_float32() -> None:
    # 445 / 1000 is 0.445000...006 in float64 (rounds to 0.45) and 0.444999... in float32 (rounds to 0.44)
    box = Box(x1=445, y1=100, x2=600, y2=700)
    assert region_label_prompt(box, 1000, 1000, "orig") == (
        "Please provide a clear description for this region: [0.45, 0.10, 0.60, 0.70]."
    )
    assert region_label_prompt(box, 1000, 1000, "dj") == (
        "Please provide a clear description for this region: [0.44, 0.10, 0.60, 0.70]."
    )


def test_dj_generation_always_passes_its_confetti_weight() -> None:
    assert cross_replace_words("dj") == {"confetti": 0.8}
    assert cross_replace_words("orig") == {}


def test_a_pair_goes_on_when_either_side_changed_an_object() -> None:
    assert objects_decision(["dog"], []) == Decision(
        True, "objects_changed", {"source_objects": ["dog"], "target_objects": []}
    )
    assert objects_decision([], ["cat"]) == Decision(
        True, "objects_changed", {"source_objects": [], "target_objects": ["cat"]}
    )
    assert objects_decision(["dog"], ["cat"]) == Decision(
        True, "objects_changed", {"source_objects": ["dog"], "target_objects": ["cat"]}
    )
    assert objects_decision([], []) == Decision(
        False, "no_changed_objects", {"source_objects": [], "target_objects": []}
    )


def test_the_red_box_is_exactly_a_3_pixel_ring_around_the_box_grown_by_5() -> None:
    image = Image.new("RGB", (100, 80), WHITE)
    boxed = red_boxed(image, Box.from_list([20, 20, 50, 40]))
    outer = {(x, y) for x in range(15, 56) for y in range(15, 46)}  # [15, 15, 55, 45], both ends drawn
    inner = {(x, y) for x in range(18, 53) for y in range(18, 43)}
    assert boxed.mode == "RGB" and boxed.size == image.size
    assert pixels(boxed) == {xy: RED if xy in outer - inner else WHITE for xy in pixels(image)}
    assert pixels(image) == dict.fromkeys(pixels(image), WHITE)  # drawn on a copy


def test_the_grown_red_box_is_clamped_to_the_image() -> None:
    # [2, 3, 98, 78] grows to [0, 0, 100, 80]: the right and bottom lines fall partly outside, as in the reference
    boxed = red_boxed(Image.new("RGB", (100, 80), WHITE), Box.from_list([2, 3, 98, 78]))
    assert pixels(boxed) == {
        (x, y): RED if x <= 2 or y <= 2 or x >= 98 or y >= 78 else WHITE for x in range(100) for y in range(80)
    }


def test_a_grey_or_transparent_image_is_boxed_in_rgb() -> None:
    for image, plain in (
        (Image.new("L", (40, 30), 200), (200, 200, 200)),
        (Image.new("RGBA", (40, 30), (9, 8, 7, 0)), (9, 8, 7)),
    ):
        boxed = red_boxed(image, Box.from_list([10, 10, 20, 20]))
        assert boxed.mode == "RGB"
        assert boxed.getpixel((5, 5)) == RED and boxed.getpixel((15, 15)) == plain and boxed.getpixel((1, 1)) == plain


def patterned(width: int, height: int, base: int) -> Image.Image:
    """An image whose every pixel differs from the others (and from black)."""
    image = Image.new("RGB", (width, height))
    for x in range(width):
        for y in range(height):
            image.putpixel((x, y), (base, 10 + x, 10 + y))
    return image


def laid_out(left: Image.Image, right: Image.Image, bar: int) -> dict[tuple[int, int], Colour]:
    """``left``, ``bar`` black columns, ``right``, top-aligned on black: what the captioner is shown."""
    start = left.width + bar
    expected: dict[tuple[int, int], Colour] = {}
    for x in range(start + right.width):
        for y in range(max(left.height, right.height)):
            if x < left.width and y < left.height:
                expected[x, y] = pixels(left)[x, y]
            elif x >= start and y < right.height:
                expected[x, y] = pixels(right)[x - start, y]
            else:
                expected[x, y] = BLACK
    return expected


def test_side_by_side_lays_left_bar_right_on_black_as_tall_as_the_taller() -> None:
    short, tall = patterned(3, 2, 100), patterned(4, 5, 200)
    for left, right in ((short, tall), (tall, short)):
        joined = side_by_side(left, right)  # the reference's 20-pixel bar
        assert joined.mode == "RGB" and joined.size == (left.width + 20 + right.width, 5)
        assert pixels(joined) == laid_out(left, right, 20)
        assert pixels(side_by_side(left, right, bar=1)) == laid_out(left, right, 1)


def test_png_bytes_decode_to_the_same_pixels() -> None:
    image = Image.new("RGB", (7, 5), (12, 34, 56))
    image.putpixel((3, 2), (250, 1, 128))
    data = png_bytes(image)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    decoded = Image.open(io.BytesIO(data))
    assert decoded.format == "PNG" and decoded.mode == "RGB" and decoded.size == (7, 5)
    assert decoded.tobytes() == image.tobytes()
