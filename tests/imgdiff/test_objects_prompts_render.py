from PIL import Image

from spotdiff.imgdiff.objects import changed_objects, objects_decision
from spotdiff.imgdiff.prompts import cross_replace_words, difference_caption_prompt, region_label_prompt
from spotdiff.imgdiff.render import red_boxed, side_by_side
from spotdiff.protocol import Box


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


def test_prompts_are_verbatim() -> None:
    box = Box.from_list([128, 307.2, 573.44, 798.72])
    assert region_label_prompt(box, 1024, 1024) == (
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
    assert region_label_prompt(box, 1000, 1000) == (
        "Please provide a clear description for this region: [0.45, 0.10, 0.60, 0.70]."
    )
    assert region_label_prompt(box, 1000, 1000, "dj") == (
        "Please provide a clear description for this region: [0.44, 0.10, 0.60, 0.70]."
    )


def test_dj_generation_always_passes_its_confetti_weight() -> None:
    assert cross_replace_words("dj") == {"confetti": 0.8}
    assert cross_replace_words("orig") == {}


def test_a_pair_goes_on_when_either_side_changed_an_object() -> None:
    assert objects_decision(["dog"], []).keep and objects_decision([], ["cat"]).keep
    assert objects_decision([], []).reason == "no_changed_objects"
