"""Which prompt tokens are content, and which are judged "not reflected" in the image.

A *content word* is an alphabetic word that is not a stop word (articles, prepositions,
conjunctions, pronouns, auxiliaries — the closed word classes of English) and not a word of
licence/boiler-plate filler typical of web captions. Punctuation and numbers are never
content. Sub-word pieces (``flam`` + ``##ingo`` in WordPiece, ``</w>`` endings in CLIP BPE)
are merged into words first; a word's relevance is the sum of its pieces.

Flagging rule. A content word's *peer ratio* is its score divided by the median score of
the prompt's other content words; the word is flagged when its peer ratio is below a
threshold ``ratio``. The score (the *signal*, one of :data:`FLAG_SIGNALS`) is the word's
relevance (eq. 8) or its ``colour_change``: the total, over the image, of how far each
pixel's colour moves when the word's contribution is taken out (the removal read-out of
:mod:`bcosdiff.explain.readouts`). Both are shares of a prompt-wide total, so absolute
thresholds would depend on prompt length; the peer ratio does not. A prompt with a single
content word has no peers and is never flagged. The threshold is calibrated per model
(:mod:`bcosdiff.evaluation.flags`): on captions from the training distribution, it is the
low quantile of the peer ratios of words the image verifiably shows, and it is stored in the
model's ``config.json``. Without a calibration, ``DEFAULT_FLAG_RATIO = 0.1`` (an order of
magnitude below the peers; the paper's "shark" received 0.18 % next to tokens of 10–20 %).

Unknown words. Apart from that judgement, a content word absent from the model's training
captions (its ``vocabulary``, stored at export) is reported as *unknown*
(:func:`unknown_words`).
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "DEFAULT_FLAG_RATIO",
    "FLAG_SIGNALS",
    "STOP_WORDS",
    "Word",
    "check_flag_signal",
    "flag_words",
    "group_words",
    "is_content_word",
    "WordRoles",
    "peer_ratios",
    "unknown_words",
]

DEFAULT_FLAG_RATIO = 0.1
FLAG_SIGNALS = ("relevance", "colour_change")

STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "this",
        "that",
        "these",
        "those",
        "some",
        "any",
        "each",
        "every",
        "no",
        "and",
        "or",
        "but",
        "nor",
        "so",
        "yet",
        "for",
        "with",
        "without",
        "of",
        "on",
        "in",
        "at",
        "by",
        "to",
        "from",
        "into",
        "onto",
        "over",
        "under",
        "above",
        "below",
        "up",
        "down",
        "out",
        "off",
        "about",
        "next",
        "front",
        "beside",
        "near",
        "behind",
        "between",
        "among",
        "around",
        "across",
        "along",
        "inside",
        "outside",
        "through",
        "against",
        "beneath",
        "beyond",
        "within",
        "toward",
        "towards",
        "upon",
        "via",
        "atop",
        "as",
        "than",
        "then",
        "there",
        "here",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "am",
        "do",
        "does",
        "did",
        "has",
        "have",
        "had",
        "will",
        "would",
        "can",
        "could",
        "it",
        "its",
        "it's",
        "i",
        "me",
        "my",
        "you",
        "your",
        "he",
        "him",
        "his",
        "she",
        "her",
        "we",
        "us",
        "our",
        "they",
        "them",
        "their",
        "one",
        "ones",
        "which",
        "who",
        "whom",
        "what",
        "where",
        "when",
        "how",
        "very",
        "just",
        "also",
        "too",
        "not",
        "photo",
        "image",
        "picture",
        "stock",
        "free",
        "vector",
        "illustration",
        "clipart",
        "download",
        "isolated",
        "simple",
        "drawing",
        "background",
        "design",
    ]
)
_ALPHA = re.compile(r"^[A-Za-z]+$")


@dataclass
class Word:
    text: str
    positions: list[int]  # context positions of its pieces
    relevance: float
    colour_change: float = 0.0  # Σ over pixels of the removal read-out of its contribution


def is_content_word(word: str) -> bool:
    return bool(_ALPHA.match(word)) and word.lower() not in STOP_WORDS


def _clean(token: str) -> tuple[str, bool]:
    """Token text without sub-word markers, and whether it continues the previous word."""
    if token.startswith("##"):
        return token[2:], True
    return token.replace("</w>", ""), False


def group_words(tokens: list[tuple[int, str]], relevance: list[float]) -> list[Word]:
    """Merge sub-word pieces; ``tokens`` are ``(position, token)``, ``relevance`` per token.

    For CLIP's BPE a piece without the ``</w>`` end marker continues into the next piece.
    """
    words: list[Word] = []
    open_word = False
    end_markers = any(t.endswith("</w>") for _, t in tokens)  # CLIP-style BPE
    for (position, token), score in zip(tokens, relevance, strict=True):
        text, continues = _clean(token)
        if (continues or open_word) and words:
            words[-1].text += text
            words[-1].positions.append(position)
            words[-1].relevance += score
        else:
            words.append(Word(text, [position], score))
        open_word = end_markers and "</w>" not in token and token.isalpha()
    return words


def check_flag_signal(signal: str) -> None:
    """Raise a ValueError unless ``signal`` is one of :data:`FLAG_SIGNALS`."""
    if signal not in FLAG_SIGNALS:
        raise ValueError(f"unknown flag signal {signal!r}; expected one of {FLAG_SIGNALS}")


POSITION_WORDS = frozenset(("left", "right", "top", "bottom", "middle", "centre", "center"))
SIZE_WORDS = frozenset(("big", "small", "large", "little", "tiny", "huge", "medium"))
LAYOUT_WORDS = POSITION_WORDS | SIZE_WORDS
"""Words that say where an object is and how large, not what it looks like. Their trace in
the image is the object's place and extent, which neither flag signal reads: on the bundled
``bcos-x0``, "left" in "a small purple circle on the left" (drawn so) has peer ratios of
0.03 (colour change) and 0.04 (relevance), and "big" in "a big red circle" 0.10 and 0.23,
below every colour or shape word the image shows. The flagging rule leaves them out; the
binding rule keeps them in their phrases."""


@dataclass(frozen=True)
class WordRoles:
    """What the model's training captions say about its words (lower case; None: not
    known): ``vocabulary``, every word they hold, and ``depicting``, those that name or
    describe what is drawn (object names and keywords, colours, shapes, sizes, positions,
    styles).

    With ``depicting`` known, a content word's peers are the depicting words only, and the
    words judged are those and the words the model never saw ("shark"); the training
    templates' frame words ("a picture of", "clipart") are neither. Words no training caption
    has and that describe nothing ("page", "two shapes") are judged but are no peers, and
    their flags are reported as unknown words, not as findings. So a word's peer ratio does
    not depend on how the prompt around the objects is phrased. Without ``depicting``, every
    content word is a peer and judged. Size and position words (:data:`LAYOUT_WORDS`) are
    neither, whatever is known."""

    depicting: frozenset[str] | None = None
    vocabulary: frozenset[str] | None = None

    def is_peer(self, word: str) -> bool:
        lowered = word.lower()
        return (
            is_content_word(word)
            and lowered not in LAYOUT_WORDS
            and (self.depicting is None or lowered in self.depicting)
        )

    def is_judged(self, word: str) -> bool:
        lowered = word.lower()
        unknown = self.vocabulary is not None and lowered not in self.vocabulary
        return self.is_peer(word) or (
            is_content_word(word) and unknown and lowered not in LAYOUT_WORDS
        )


def peer_ratios(
    words: list[Word], signal: str = "relevance", roles: WordRoles | None = None
) -> list[tuple[Word, float]]:
    """``(word, score / median score of its peers)`` per judged word (:class:`WordRoles`;
    default: every content word is judged and a peer of the others), the score being the
    word's ``signal`` (:data:`FLAG_SIGNALS`).

    Empty for prompts with fewer than two judged words; a word without peers gets no ratio;
    the ratio is ``inf`` when the peers' median is zero.
    """
    check_flag_signal(signal)
    roles = roles or WordRoles()
    judged = [w for w in words if roles.is_judged(w.text)]
    if len(judged) < 2:
        return []
    peers = [w for w in words if roles.is_peer(w.text)]
    ratios = []
    for word in judged:
        others = [getattr(w, signal) for w in peers if w is not word]
        if not others:
            continue
        median = statistics.median(others)
        score = getattr(word, signal)
        ratios.append((word, score / median if median > 0 else math.inf))
    return ratios


def flag_words(
    words: list[Word],
    ratio: float = DEFAULT_FLAG_RATIO,
    signal: str = "relevance",
    roles: WordRoles | None = None,
) -> list[str]:
    """Judged words whose peer ratio is below ``ratio`` (see the module docstring)."""
    return [word.text for word, peer in peer_ratios(words, signal, roles) if peer < ratio]


def unknown_words(words: Iterable[str], vocabulary: frozenset[str] | None) -> list[str]:
    """The content words of ``words`` absent from ``vocabulary`` (the words of the model's
    training captions, lower case; ``None``: not known, nothing reported), lower case, each
    once. This is a lookup, not a reading of the image: an unknown word may still be drawn
    when the text model places it near a known one ("kitten" near "cat"), and a known word
    may still be left out (the flagging rule's business). It tells the user which words the
    model cannot have learned, which no other seed can mend."""
    if vocabulary is None:
        return []
    found = (w.lower() for w in words if is_content_word(w))
    return list(dict.fromkeys(w for w in found if w not in vocabulary))
