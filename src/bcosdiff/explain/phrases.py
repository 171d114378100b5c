"""Phrases of a prompt: which attribute words go with which noun.

"a big red circle and a blue square" → ``[big, red, circle]``, ``[blue, square]``. Binding
diagnostics (:mod:`bcosdiff.explain.binding`) compare where each word drew with where its
phrase's noun drew.

The rules suit the prompts text-to-image users type and this project's data: lists of noun
phrases. A prompt is cut into chunks at conjunctions and relations ("and", "with", commas,
"next to", "beside", "above", ...); in each chunk the *noun* is the last content word that is
neither a position word ("left", "top", ...) nor a framing word ("style", "emoji", "sticker",
...), and the chunk's other content words are its attributes. Position words after the noun
("a red circle on the left") stay in its phrase. A chunk without a noun (a style: "noto
style"; a frame: "a photo of") is no phrase. Known multi-word names (``compounds``, such as
the emoji names "nest with eggs") are kept whole before cutting.

No NLP library is used: a dependency parser (spaCy, stanza) needs model files that cannot be
fetched at run time here, and for noun-phrase lists these rules and a parser agree. Anything
the rules do not recognise falls back to one phrase per chunk, which can only under-report a
binding, never invent one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .tokens import POSITION_WORDS, is_content_word

__all__ = ["compounds_to_keep", "Phrase", "parse_phrases"]

# Words that end one noun phrase and start the next; multi-word relations first.
RELATIONS = (
    ("next", "to"),
    ("in", "front", "of"),
    ("on", "top", "of"),
    ("to", "the", "left", "of"),
    ("to", "the", "right", "of"),
    ("and",),
    ("with",),
    (",",),
    (";",),
    ("beside",),
    ("near",),
    ("above",),
    ("below",),
    ("under",),
    ("behind",),
    ("plus",),
    ("&",),
    ("of",),
)
FRAME_WORDS = frozenset(
    (
        "style", "emoji", "icon", "sticker", "rendering", "poster", "showing", "flat",
        "minimal", "kids", "fluent", "noto", "openmoji", "twemoji",
    )
)  # fmt: skip


@dataclass(frozen=True)
class Phrase:
    words: tuple[int, ...]  # indices into the word list, in order
    noun: int  # index of the phrase's noun

    @property
    def attributes(self) -> tuple[int, ...]:
        return tuple(i for i in self.words if i != self.noun)


def _is_phrase_word(word: str, depicting: frozenset[str] | None) -> bool:
    if depicting is not None:
        return is_content_word(word) and word.lower() in depicting
    return is_content_word(word) and word.lower() not in FRAME_WORDS


def _relation_at(lowered: Sequence[str], start: int) -> int:
    """Length of the relation that begins at ``start`` (0: none)."""
    for relation in RELATIONS:
        if tuple(lowered[start : start + len(relation)]) == relation:
            return len(relation)
    return 0


def parse_phrases(
    words: Sequence[str],
    compounds: Iterable[str] = (),
    depicting: frozenset[str] | None = None,
) -> list[Phrase]:
    """Phrases of a prompt given as words (the explanation's words or
    :func:`~bcosdiff.data.shapes.caption_words`). ``compounds``: multi-word names to keep in
    one phrase (their last word is the noun). ``depicting``: the model's words that name or
    describe what is drawn (:class:`~bcosdiff.explain.settings.ExplainSettings`); where
    known, only they belong to phrases, so frame words ("a picture of", "two shapes:") and
    words the model never saw start no phrase and join none."""
    lowered = [w.lower() for w in words]
    names = sorted({tuple(c.lower().split()) for c in compounds if c.strip()}, key=len)[::-1]
    chunks: list[list[int]] = [[]]
    i = 0
    while i < len(words):
        name = next((n for n in names if tuple(lowered[i : i + len(n)]) == n), None)
        if name is not None and len(name) > 1:
            chunks[-1].extend(range(i, i + len(name)))
            i += len(name)
            continue
        skip = _relation_at(lowered, i)
        if skip:
            chunks.append([])
            i += skip
            continue
        chunks[-1].append(i)
        i += 1
    phrases = []
    for chunk in chunks:
        content = [j for j in chunk if _is_phrase_word(words[j], depicting)]
        nouns = [j for j in content if lowered[j] not in POSITION_WORDS]
        if not nouns:
            if content and phrases:  # "on the left" after a phrase: a position of that noun
                last = phrases.pop()
                phrases.append(Phrase(tuple(sorted((*last.words, *content))), last.noun))
            continue
        phrases.append(Phrase(tuple(content), nouns[-1]))
    return phrases


def compounds_to_keep(names: Iterable[str]) -> list[str]:
    """The names that the rules would cut into several phrases or none ("glass of milk",
    "bow and arrow"), sorted: a model trained on such names lists them as its ``compounds``
    (``config.json``, section ``explain``) so that each stays one phrase."""
    return sorted({n.lower() for n in names if len(parse_phrases(n.split())) != 1})
