"""Stage (a): the reference's prompt and post-filters on its own cases, repeatable seeds, the weight-free
lexicon rewriter's grammar on many captions, and the checks a pair passes before any image is made."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spotdiff.imgdiff.decision import Decision
from spotdiff.imgdiff.objects import changed_objects, is_noun, lemma
from spotdiff.imgdiff.rewrite import (
    DJ_TASK,
    ORIG_TASK,
    RECIPES,
    Cleaned,
    article_for,
    chat_messages,
    clean_answer,
    kind_of,
    lexicon,
    lexicon_rewrite,
    orig_prompt,
    pair_decision,
    plural,
    rewrite_seed,
)

CAPTIONS = [
    "A dog on the grass",
    "An apple on a wooden table",
    "Two cats sleeping on a sofa",
    "A man riding a horse on the beach",
    "A red car parked on a city street",
    "A bus driving down the road",
    "An owl sitting on a branch",
    "A plate of food next to a cup of coffee",
    "A woman holding an umbrella",
    "A boy flying a kite in the park",
    "Three sheep standing in a field",
    "A cow grazing near a tree",
    "A laptop on a desk beside a lamp",
    "A guitar leaning against a chair",
    "A bowl of oranges on the counter",
    "An elephant walking through the jungle",
    "A boat floating on a calm lake",
    "Two horses pulling a cart",
    "A pizza on a plate",
    "A girl hugging a small dog",
    "A truck carrying logs on a highway",
    "An airplane flying over the mountains",
    "A bicycle chained to a bench",
    "A vase of tulips on a windowsill",
    "A bed with a pillow and a blanket",
    "Several bananas hanging in a market",
    "A duck swimming in a pond",
    "A clock hanging on a brick wall",
    "A sandwich and a bottle on a picnic table",
    "A giraffe eating leaves",
    "A skateboard lying on the sidewalk",
    "A cake with candles on a table",
    "Two dogs playing with a ball",
    "A motorcycle parked next to a fence",
    "A zebra drinking at a river",
    "A train crossing a bridge",
    "A pair of boots by the door",
    "A violin resting on a music stand",
    "A hammer on a workbench",
    "A bear catching fish in a stream",
    "A cactus in a clay pot",
    "An umbrella on the beach",
    "A laptop and a phone on a sofa",
    "A penguin standing on the ice",
    "A ladder against a house",
    "A basket full of apples",
    "A horse and a donkey in a barn",
    "An egg in a frying pan",
    "A squirrel eating a nut on a bench",
    "A helicopter landing on a ship",
    "A television above a cabinet",
    "A rabbit hiding under a bush",
    "Four chairs around a table",
    "A lion resting under a tree",
    "A parrot on a man's shoulder",
    "An orange next to a knife on a cutting board",
]
WORD = re.compile(r"\w+")
# the reference's texts (gen.py:52, the recipe's task_sentence, FastChat's vicuna_v1.1 system line)
ORIG_TASK_TEXT = (
    "Please replace one entity in this sentence with another entity, such as an animal, a vehicle, or a piece of "
    "furniture. Please only answer with the replaced sentence."
)
DJ_TASK_TEXT = (
    "Please replace one entity in this sentence with another entity, such as an animal, a vehicle, a piece of "
    "furniture or other physically consistent object. Ensure the replaced sentence adheres to physical "
    "plausibility. Please only answer with the replaced sentence."
)
SYSTEM_TEXT = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions."
)


def test_the_prompt_is_the_references_word_for_word() -> None:
    assert orig_prompt("A dog on the grass") == (
        "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
        'detailed, and polite answers to the user\'s questions. USER: Here is a sentence: "A dog on the grass". '
        "Please replace one entity in this sentence with another entity, such as an animal, a vehicle, or a piece "
        "of furniture. Please only answer with the replaced sentence. ASSISTANT:"
    )
    assert (ORIG_TASK, DJ_TASK) == (ORIG_TASK_TEXT, DJ_TASK_TEXT)


def test_the_vicuna_prompt_carries_the_task_it_is_given() -> None:
    assert orig_prompt("A dog on the grass", DJ_TASK) == (
        f'{SYSTEM_TEXT} USER: Here is a sentence: "A dog on the grass". {DJ_TASK_TEXT} ASSISTANT:'
    )


def test_chat_messages_are_the_recipes_system_and_user_turns() -> None:
    user = 'Here is a sentence: "A dog on the grass". '
    # ORIG leaves the system turn to the chat template; Data-Juicer sends its DEFAULT_SYSTEM_PROMPT
    assert chat_messages("A dog on the grass", RECIPES["orig"]) == [{"role": "user", "content": user + ORIG_TASK_TEXT}]
    system = {"role": "system", "content": SYSTEM_TEXT}
    assert chat_messages("A dog on the grass", RECIPES["dj"]) == [
        system,
        {"role": "user", "content": user + DJ_TASK_TEXT},
    ]
    assert chat_messages("A dog on the grass", RECIPES["dj"], "Name the animal.") == [
        system,
        {"role": "user", "content": user + "Name the animal."},
    ]
    assert chat_messages("A dog on the grass", RECIPES["orig"], None) == chat_messages(
        "A dog on the grass", RECIPES["orig"]
    )


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("A cat on the grass</s>", Cleaned("A cat on the grass", "rewritten")),
        ("<s> A cat on the grass\nEND", Cleaned("A cat on the grass", "rewritten")),
        ('"A cat on the grass."', Cleaned("A cat on the grass.", "rewritten")),
        ("Sure, here it is:\n---\nA cat on the grass", Cleaned("A cat on the grass", "rewritten")),
        ("a --- b --- A cat on the grass", Cleaned("A cat on the grass", "rewritten")),
        ("I replaced the dog: A cat on the grass", Cleaned(None, "mentions_replac")),
        ("Replacement: A cat on the grass", Cleaned(None, "mentions_replac")),
        ("The dog has become a cat.", Cleaned(None, "mentions_become")),
        ("Modified sentence: A cat on the grass", Cleaned(None, "mentions_modified")),
        ("</s>", Cleaned(None, "empty_answer")),
        ('"Xbox controllers on a sofa"</s>', Cleaned("Xbox controllers on a sofa", "rewritten")),
    ],
)
def test_the_references_post_filters(answer: str, expected: Cleaned) -> None:
    assert clean_answer(answer) == expected


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (' "A cat on the grass" \n', Cleaned("A cat on the grass", "rewritten")),
        ('"Xbox controllers on a sofa"', Cleaned("Xbox controllers on a sofa", "rewritten")),
        # no drop words, no `---`, no token stripping
        ("I replaced the dog --- A cat</s>", Cleaned("I replaced the dog --- A cat</s>", "rewritten")),
        (' "" \n', Cleaned(None, "empty_answer")),
        ("", Cleaned(None, "empty_answer")),
    ],
)
def test_data_juicer_only_trims_whitespace_and_quotes(answer: str, expected: Cleaned) -> None:
    assert clean_answer(answer, post_filters=False) == expected


def test_the_prompt_is_stripped_from_an_echoing_answer() -> None:
    prompt = orig_prompt("A dog on the grass")
    assert clean_answer(prompt + " A cat on the grass</s>", prompt) == Cleaned("A cat on the grass", "rewritten")


def test_seeds_are_the_same_in_every_run_and_version() -> None:
    # sha256("<base seed>\0<number>\0<caption>")'s first 4 bytes, big-endian, less the top bit: a recorded seed
    # means the same rewrite later
    assert [rewrite_seed("A dog on the grass", number) for number in range(3)] == [1840243060, 1182124261, 927569533]
    assert rewrite_seed("A dog on the grass", 0, base_seed=7) == 1155633673


def test_a_seed_gives_the_same_rewrite_and_numbers_give_others() -> None:
    for caption in CAPTIONS[:20]:
        assert rewrite_seed(caption, 3) == rewrite_seed(caption, 3)
        assert lexicon_rewrite(caption, rewrite_seed(caption, 3)) == lexicon_rewrite(caption, rewrite_seed(caption, 3))
    assert rewrite_seed("A dog", 0) != rewrite_seed("A dog", 1) != rewrite_seed("A cat", 1)
    assert rewrite_seed("A dog", 0, base_seed=1) != rewrite_seed("A dog", 0)
    varied = {lexicon_rewrite(CAPTIONS[0], rewrite_seed(CAPTIONS[0], k)) for k in range(5)}
    assert len(varied) >= 3


def test_the_lexicon_holds_hundreds_of_concrete_nouns_each_once() -> None:
    nouns = [noun for nouns in lexicon().values() for noun in nouns]
    assert len(nouns) >= 300 and len(nouns) == len(set(nouns)) == len(kind_of())
    assert {"animal", "vehicle", "furniture", "food", "household"} <= set(lexicon())
    # singular, nouns to the object stage, and back to themselves from the plural the rewriter makes
    assert all(lemma(noun) == noun and is_noun(noun) and lemma(plural(noun)) == noun for noun in nouns)


@pytest.mark.parametrize("caption", CAPTIONS)
def test_the_lexicon_rewriter_keeps_articles_and_number_right(caption: str) -> None:
    assert len(CAPTIONS) >= 50
    for number in range(3):
        rewrite = lexicon_rewrite(caption, rewrite_seed(caption, number))
        assert rewrite is not None and rewrite.text != caption
        assert kind_of()[rewrite.replaced] == kind_of()[rewrite.replacement] == rewrite.kind
        assert changed_objects(caption, rewrite.text) == ([rewrite.replaced], [rewrite.replacement])
        before, after = WORD.findall(caption), WORD.findall(rewrite.text)
        assert len(before) == len(after)
        changed = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
        noun_at = next(i for i in changed if lemma(after[i].lower()) == rewrite.replacement)
        assert set(changed) <= {noun_at, noun_at - 1}  # the noun, and maybe its article
        was_plural = before[noun_at].lower() != rewrite.replaced
        assert (after[noun_at].lower() != rewrite.replacement) == was_plural, (caption, rewrite.text)
        if noun_at > 0 and after[noun_at - 1].lower() in ("a", "an"):
            assert after[noun_at - 1].lower() == article_for(after[noun_at]), rewrite.text
            assert after[noun_at - 1][0].isupper() == before[noun_at - 1][0].isupper()


def test_articles_follow_the_sound() -> None:
    assert [article_for(word) for word in ("owl", "dog", "unicorn", "umbrella", "ewe", "hour", "Apple")] == [
        "an",
        "a",
        "a",
        "an",
        "a",
        "an",
        "an",
    ]
    assert lexicon_rewrite("The sky at night", 0) is None  # no noun the lexicon knows
    for seed in range(10):  # a lexicon word used as a verb, after no determiner, stays
        rewrite = lexicon_rewrite("Two people watch a dog", seed)
        assert rewrite is not None and rewrite.replaced == "dog" and "watch" in rewrite.text
    assert lexicon_rewrite("A girl hugging a teddy bear", 0) is None  # a compound's noun stays


def test_a_lexicon_noun_needs_a_determiner_at_most_two_adjectives_before_it() -> None:
    for seed in range(10):
        rewrite = lexicon_rewrite("A small red car", seed)
        assert rewrite is not None and rewrite.replaced == "car"
    assert lexicon_rewrite("A big old red car", 0) is None  # three adjectives: too far from its "a"
    assert lexicon_rewrite("Cars on the road", 0) is None  # nothing before it


@pytest.mark.parametrize(
    ("caption", "template"),
    [
        ("A dog on the grass", "{Article} {noun} on the grass"),
        ("A DOG ON THE GRASS", "{ARTICLE} {NOUN} ON THE GRASS"),  # "A" alone is no sign of capitals
        ("AN OWL IN THE SKY", "{ARTICLE} {NOUN} IN THE SKY"),
        ("The Dog on the grass", "The {Noun} on the grass"),
        ("On the grass sits an owl", "On the grass sits {article} {noun}"),
        ("Two dogs on the grass", "Two {nouns} on the grass"),
    ],
)
def test_the_new_noun_and_its_article_are_cased_like_the_old(caption: str, template: str) -> None:
    articles = set()
    for seed in range(40):
        rewrite = lexicon_rewrite(caption, seed)
        assert rewrite is not None
        noun, article = rewrite.replacement, article_for(rewrite.replacement)
        expected = template.format(
            article=article,
            Article=article.capitalize(),
            ARTICLE=article.upper(),
            noun=noun,
            Noun=noun.capitalize(),
            NOUN=noun.upper(),
            nouns=plural(noun),
        )
        assert rewrite.text == expected
        articles.add(article)
    assert articles == {"a", "an"}  # both articles were written


def test_the_new_noun_is_none_already_in_the_caption() -> None:
    for caption in ("A dog with two cats", "A dog next to a cat."):
        for seed in range(300):
            rewrite = lexicon_rewrite(caption, seed)
            assert rewrite is not None and rewrite.replacement not in {"dog", "cat"}, (caption, seed)


def test_a_caption_naming_a_whole_kind_rewrites_another_noun_or_none() -> None:
    """Every instrument named: no other instrument is left to choose, so only the dog can change."""
    instruments = lexicon()["instrument"]
    caption = "A " + " and a ".join(instruments)
    assert all(lexicon_rewrite(caption, seed) is None for seed in range(20))
    with_dog = caption + " near a dog"
    for seed in range(20):
        rewrite = lexicon_rewrite(with_dog, seed)
        assert rewrite is not None and rewrite.replaced == "dog" and rewrite.kind == "animal"


WORDS = st.sampled_from([*sorted(kind_of()), "a", "an", "the", "two", "red", "and", "of", "A", "DOG", "Cats", ","])


@given(
    st.one_of(st.text(max_size=200), st.lists(WORDS, max_size=40).map(" ".join)),
    st.integers(min_value=0, max_value=2**31 - 1),
)
def test_any_caption_gives_a_rewrite_or_none_never_an_error(caption: str, seed: int) -> None:
    rewrite = lexicon_rewrite(caption, seed)
    if rewrite is not None:
        assert rewrite.text != caption and rewrite.replaced != rewrite.replacement
        assert kind_of()[rewrite.replaced] == kind_of()[rewrite.replacement] == rewrite.kind


def test_plurals_are_lemminflects() -> None:
    assert [plural(noun) for noun in ("dog", "sheep", "knife", "bus", "xyzzy")] == [
        "dogs",
        "sheep",
        "knives",
        "buses",
        "xyzzies",  # a word lemminflect does not know: its rules
    ]


def test_articles_go_by_the_first_letter_in_either_case() -> None:
    assert [article_for(word) for word in ("Owl", "OWL", "Xylophone", "Umbrella", "HOUR", "Unicorn")] == [
        "an",
        "an",
        "a",
        "an",
        "an",
        "a",
    ]


NUMBERS = {"source_tokens": 7, "target_tokens": 7, "tokens_max": 77}


@pytest.mark.parametrize(
    ("source", "target", "tokens", "expected"),
    [
        (
            "A dog on the grass",
            "A cat on the grass",
            (7, 7),
            Decision(True, "rewrite_ok", {**NUMBERS, "source_objects": ["dog"], "target_objects": ["cat"]}),
        ),
        (
            "A dog on the grass",
            "a dog  on the grass",
            (7, 7),
            Decision(False, "same_sentence", {**NUMBERS, "source_objects": [], "target_objects": []}),
        ),
        (
            "A dog on the grass",
            "A dog in the grass",
            (7, 7),
            Decision(False, "no_changed_noun", {**NUMBERS, "source_objects": [], "target_objects": []}),
        ),
        (  # an object added, none replaced: no one-object edit
            "A dog on the grass",
            "A dog and a cat on the grass",
            (7, 10),
            Decision(
                False,
                "no_changed_noun",
                {**NUMBERS, "target_tokens": 10, "source_objects": [], "target_objects": ["cat"]},
            ),
        ),
        (
            "A dog on the grass",
            "A cat on the grass",
            (7, 78),
            Decision(
                False,
                "too_long",
                {**NUMBERS, "target_tokens": 78, "source_objects": ["dog"], "target_objects": ["cat"]},
            ),
        ),
        (
            "A dog on the grass",
            "A cat on the grass",
            (78, 7),
            Decision(
                False,
                "too_long",
                {**NUMBERS, "source_tokens": 78, "source_objects": ["dog"], "target_objects": ["cat"]},
            ),
        ),
        (  # the text encoders take 77 tokens
            "A dog on the grass",
            "A cat on the grass",
            (77, 77),
            Decision(
                True,
                "rewrite_ok",
                {
                    **NUMBERS,
                    "source_tokens": 77,
                    "target_tokens": 77,
                    "source_objects": ["dog"],
                    "target_objects": ["cat"],
                },
            ),
        ),
    ],
)
def test_a_pair_is_checked_before_any_image(
    source: str, target: str, tokens: tuple[int, int], expected: Decision
) -> None:
    assert pair_decision(source, target, *tokens, max_objects=16, max_chars=1000) == expected


def test_a_pair_may_change_up_to_16_nouns_by_default() -> None:
    animals = lexicon()["animal"][1:18]  # not "dog"
    sixteen, seventeen = (" and ".join(f"a {animal}" for animal in animals[:count]) for count in (16, 17))
    numbers = {"source_objects": ["dog"], "source_tokens": 7, "target_tokens": 70, "tokens_max": 77}
    assert pair_decision("A dog", sixteen, 7, 70, max_objects=16, max_chars=1000) == Decision(
        True, "rewrite_ok", {**numbers, "target_objects": list(animals[:16])}
    )
    assert pair_decision("A dog", seventeen, 7, 70, max_objects=16, max_chars=1000) == Decision(
        False, "too_many_changed_nouns", {**numbers, "target_objects": list(animals), "objects_max": 16}
    )
    assert pair_decision(
        "A dog on the grass", "A cat and a cow and a fox on the hay", 7, 12, max_objects=2, max_chars=1000
    ) == (
        Decision(
            False,
            "too_many_changed_nouns",
            {
                "source_objects": ["dog", "grass"],
                "target_objects": ["cat", "cow", "fox", "hay"],
                "source_tokens": 7,
                "target_tokens": 12,
                "tokens_max": 77,
                "objects_max": 2,
            },
        )
    )


def test_a_pair_longer_than_a_caption_may_be_is_too_long_by_its_characters() -> None:
    """Counted by characters too: a caption may be 1000 characters, and a rewrite swapping in a longer noun may
    not fit though its tokens do."""
    source = "A dog " + "x" * 994
    target = source.replace("dog", "goat")
    numbers = {"source_objects": ["dog"], "target_objects": ["goat"], "source_tokens": 9, "target_tokens": 9}
    assert pair_decision(source, source.replace("dog", "cat"), 9, 9, max_objects=16, max_chars=1000) == Decision(
        True, "rewrite_ok", {**numbers, "target_objects": ["cat"], "tokens_max": 77}
    )
    chars = {"source_chars": 1000, "target_chars": 1001, "chars_max": 1000}
    assert pair_decision(source, target, 9, 9, max_objects=16, max_chars=1000) == Decision(
        False, "too_long", {**numbers, "tokens_max": 77, **chars}
    )
    assert pair_decision(target, source, 9, 9, max_objects=16, max_chars=1001) == Decision(
        True, "rewrite_ok", {**numbers, "source_objects": ["goat"], "target_objects": ["dog"], "tokens_max": 77}
    )
