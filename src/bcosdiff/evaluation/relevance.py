"""Relevance per word over a data set's captions (the paper's tables 1 and 2).

For every caption the model generates an image and explains it; each word that occurs in
the caption contributes its relevance (eq. 8, summed over its sub-word pieces and over
repeated occurrences in that caption) once to that word's statistics. The table lists, per
lower-cased word, the number of captions it occurs in and its mean relevance over them;
the Pearson correlation between occurrence count and mean relevance measures how much
relevance merely follows word frequency.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..explain.methods import SCORES_ONLY
from ..explain.tokens import is_content_word
from ..service import explain_prompt

__all__ = ["RelevanceTable", "WordRelevance", "pearson", "relevance_table"]


@dataclass(frozen=True)
class WordRelevance:
    word: str
    occurrences: int  # captions the word occurs in
    mean_relevance: float
    content: bool  # a content word (not a stop word, not punctuation or a number)


def pearson(xs: list[float], ys: list[float]) -> float:
    """Pearson's r; NaN when either variable is constant or there are fewer than 2 points."""
    n = len(xs)
    if n < 2:
        return math.nan
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else math.nan


@dataclass
class RelevanceTable:
    rows: list[WordRelevance]  # most frequent first, ties by word
    captions: int
    steps: int
    model: str

    @property
    def correlation(self) -> float:
        """Pearson r between occurrence count and mean relevance over all words."""
        return pearson(
            [float(r.occurrences) for r in self.rows], [r.mean_relevance for r in self.rows]
        )

    def write_csv(self, path: Path) -> None:
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["word", "occurrences", "mean_relevance", "content"])
            for r in self.rows:
                writer.writerow([r.word, r.occurrences, f"{r.mean_relevance:.6f}", int(r.content)])

    def markdown(self, top: int = 20) -> str:
        lines = [
            f"Model `{self.model}`, {self.captions} captions, {self.steps} steps. "
            f"Pearson r (occurrences vs mean relevance, {len(self.rows)} words): "
            f"{self.correlation:.3f}",
            "",
            "| word | occurrences | mean relevance | content |",
            "| --- | ---: | ---: | :---: |",
        ]
        for r in self.rows[:top]:
            mark = "yes" if r.content else ""
            lines.append(f"| {r.word} | {r.occurrences} | {r.mean_relevance:.2%} | {mark} |")
        return "\n".join(lines) + "\n"


def relevance_table(
    pipe,
    captions: Iterable[str],
    *,
    steps: int = 25,
    seed: int = 0,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> RelevanceTable:
    """Explain caption ``k`` with seed ``seed + k`` and aggregate relevance per word."""
    captions = list(captions)
    totals: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    indexed = list(enumerate(captions))
    for k, caption in progress(indexed) if progress else indexed:
        exp = explain_prompt(pipe, caption, steps=steps, seed=seed + k, options=SCORES_ONLY)
        per_caption: dict[str, float] = defaultdict(float)
        for word in exp.words:
            per_caption[word.text.lower()] += word.relevance
        for word, relevance in per_caption.items():
            totals[word] += relevance
            counts[word] += 1
    rows = [WordRelevance(w, counts[w], totals[w] / counts[w], is_content_word(w)) for w in counts]
    rows.sort(key=lambda r: (-r.occurrences, r.word))
    return RelevanceTable(rows, len(captions), steps, pipe.name)
