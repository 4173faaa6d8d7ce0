"""Which objects changed between the two captions (stage 0), as the reference's ``compare_text_index``.

The reference lower-cases both captions, strips punctuation, diffs the word lists with ``difflib``,
lemmatises every changed word with NLTK's WordNet lemmatiser (as a noun) and keeps it when it is absent from
the other side's changed words and NLTK's tagger tags it NN*. NLTK's tagger and WordNet are downloads; here
lemminflect, which ships its data, gives both the noun lemma and whether a word has a noun reading.

How it can differ from the reference (documented, tested):
- a word is a noun when lemminflect knows a noun reading of it, except the -ing/-ed forms of verbs
  ("flying", "colored"), which NLTK tags as verbs when it sees them alone (a verb's own base form, "feed" or
  "weed", stays a noun); words lemminflect does not know are taken as nouns (NLTK's tagger also calls most
  unknown words NN);
- words that are nouns and adjectives ("red", "chocolate") count as nouns here, while NLTK tags some as JJ;
- a word changed twice is listed once.
Objects given with the request always win over this.
"""

from __future__ import annotations

import difflib
import re

import lemminflect

from spotdiff.imgdiff.decision import Decision

_PUNCTUATION = re.compile(r"[^\w\s]")
# Closed-class words a tagger never calls nouns (lemminflect lists "a" as the letter, a noun).
FUNCTION_WORDS = frozenset(
    """a an the this that these those some any each every no all both either neither my your his her its our
    their of in on at by for with from to into onto over under above below near beside behind between among
    through across along around against about and or but nor so yet as than while if i you he she it we they
    me him us them is are was were be been being am has have had do does did will would can could may might
    must shall should""".split()
)


def words(caption: str) -> list[str]:
    """Lower-cased words without punctuation, as the reference splits them."""
    return _PUNCTUATION.sub("", caption.lower()).split()


def lemma(word: str) -> str:
    """The noun lemma (dogs -> dog), or the word itself when it has none: WordNet's default, pos='n'."""
    nouns = lemminflect.getAllLemmas(word).get("NOUN")
    return nouns[0] if nouns else word


def is_noun(word: str) -> bool:
    """Does the word read as a noun on its own (see the module doc for how this differs from NLTK)?"""
    if word in FUNCTION_WORDS:
        return False
    readings = lemminflect.getAllLemmas(word)
    if not readings:
        return not word.isdigit()  # unknown words: taken as nouns, as a tagger mostly does
    if "NOUN" not in readings:
        return False
    verb_lemmas = readings.get("VERB")
    inflected_verb = word.endswith(("ing", "ed")) and verb_lemmas is not None and word not in verb_lemmas
    return not inflected_verb


def changed_objects(source: str, target: str) -> tuple[list[str], list[str]]:
    """Nouns only in the source caption, and only in the target caption, in caption order, lemmatised."""
    removed: list[str] = []
    added: list[str] = []
    for line in difflib.Differ().compare(words(source), words(target)):
        if line.startswith("- "):
            removed.append(lemma(line[2:]))
        elif line.startswith("+ "):
            added.append(lemma(line[2:]))

    def keep(candidates: list[str], other: list[str]) -> list[str]:
        kept: list[str] = []
        for word in candidates:
            if word not in other and word not in kept and is_noun(word):
                kept.append(word)
        return kept

    return keep(removed, added), keep(added, removed)


def objects_decision(source_objects: list[str], target_objects: list[str]) -> Decision:
    """A pair goes on when some object word changed on either side (the reference skips it when both are empty)."""
    numbers = {"source_objects": source_objects, "target_objects": target_objects}
    if not source_objects and not target_objects:
        return Decision(False, "no_changed_objects", numbers)
    return Decision(True, "objects_changed", numbers)
