"""The phrase parser on a table of prompts."""

import pytest

from bcosdiff.data.shapes import caption_words
from bcosdiff.explain.phrases import parse_phrases

TABLE = [
    ("a big red circle and a blue square", [["big", "red", "circle"], ["blue", "square"]]),
    ("a red circle with a green triangle", [["red", "circle"], ["green", "triangle"]]),
    ("a red circle, a blue square", [["red", "circle"], ["blue", "square"]]),
    ("a red circle next to a blue square", [["red", "circle"], ["blue", "square"]]),
    ("a red circle on the left and a blue square", [["red", "circle", "left"], ["blue", "square"]]),
    ("a small red circle at the top", [["small", "red", "circle", "top"]]),
    ("a photo of a red circle and a shark", [["red", "circle"], ["shark"]]),
    ("minimal poster showing a red circle", [["red", "circle"]]),
    ("a red circle in flat design", [["red", "circle"]]),
    ("picture of a yellow square for kids", [["yellow", "square"]]),
    ("a cat face and a rocket, fluent style", [["cat", "face"], ["rocket"]]),
    ("a drawing of a cat face with a rocket (noto style)", [["cat", "face"], ["rocket"]]),
    ("emoji of a red apple", [["red", "apple"]]),
    ("a red circle to the left of a blue square", [["red", "circle"], ["blue", "square"]]),
    ("", []),
    ("and , with", []),
]


@pytest.mark.parametrize(("prompt", "expected"), TABLE)
def test_phrases_group_attributes_with_their_noun(prompt, expected):
    words = caption_words(prompt)
    phrases = parse_phrases(words)
    assert [[words[i] for i in p.words] for p in phrases] == expected
    for phrase in phrases:  # the noun is the phrase's last word that is no position
        assert (
            words[phrase.noun]
            == [w for w in expected[phrases.index(phrase)] if w not in ("left", "top")][-1]
        )
        assert phrase.noun not in phrase.attributes


def test_compounds_keep_a_multi_word_name_in_one_phrase():
    words = caption_words("a nest with eggs and a rocket")
    assert [[words[i] for i in p.words] for p in parse_phrases(words)] == [
        ["nest"],
        ["eggs"],
        ["rocket"],
    ]
    kept = parse_phrases(words, compounds=["nest with eggs"])
    assert [[words[i] for i in p.words] for p in kept] == [["nest", "eggs"], ["rocket"]]
    assert words[kept[0].noun] == "eggs"


def test_compounds_to_keep_are_the_names_the_rules_would_cut():
    from bcosdiff.explain.phrases import compounds_to_keep

    names = ["cat face", "rocket", "Glass of Milk", "bow and arrow", "sun behind cloud"]
    kept = compounds_to_keep(names)
    assert kept == ["bow and arrow", "glass of milk", "sun behind cloud"]
    for name in kept:  # cut without the list, one phrase with it, inside a prompt
        words = caption_words(f"a {name} next to a rocket")
        assert len(parse_phrases(words)) == 3 and len(parse_phrases(words, kept)) == 2


def test_with_the_depicting_words_frame_words_start_and_join_no_phrase():
    depicting = frozenset({"red", "blue", "circle", "square", "big", "left"})

    def texts(prompt, depicting=depicting):
        words = caption_words(prompt)
        return [[words[i] for i in p.words] for p in parse_phrases(words, (), depicting)]

    expected = [["red", "circle"], ["blue", "square"]]
    assert texts("a picture of a red circle and a blue square") == expected
    assert texts("an illustration with a red circle beside a blue square") == expected
    assert texts("two shapes: one red circle and one blue square") == expected
    assert texts("a red circle and a blue square in the middle of the page") == expected
    assert texts("a big bright red circle and a blue square") == [
        ["big", "red", "circle"],
        ["blue", "square"],
    ]
    # Without them, the frame words make phrases and join them (the rules' old reading).
    assert texts("a sketch of a red circle", None) == [["sketch"], ["red", "circle"]]
    assert texts("two shapes: one red circle", None) == [["two", "shapes", "red", "circle"]]
