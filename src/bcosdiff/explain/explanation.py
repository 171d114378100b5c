"""The user-facing explanation of one generated image (``docs/explanations.md``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..diffusion import decode_image
from ..pictures import to_image
from ..text import Conditioning
from .binding import DEFAULT_STRAY_LIMIT
from .linear_map import RunExplanation, normalized_reconstruction
from .readouts import DEFAULT_READOUT, colour_change, get_readout
from .run import GeneratedRun
from .tokens import DEFAULT_FLAG_RATIO, Word, WordRoles, flag_words, group_words

# The notebook view. The HTML module registers it when it is imported (the explain package
# imports it), so that an explanation never imports its own presentation.
_html_view: Callable[[Explanation], str] | None = None


def set_html_view(view: Callable[[Explanation], str] | None) -> None:
    """Make ``view(explanation)`` the HTML an explanation shows as in a notebook."""
    global _html_view
    _html_view = view


__all__ = ["Explanation", "build_attribution", "build_explanation"]

REST = "[REST]"


@dataclass
class Explanation:
    prompt: str
    seed: int
    steps: int
    model: str
    tokens: list[str]  # in prompt order; specials excluded when they are masked
    relevance: list[float] | None  # eq. 8 (or the method's token score), sums to 1
    contribution_maps: Tensor | None  # (len(tokens), C, H, W) W_i x_i; None without maps
    reconstruction: Tensor | None  # (C, H, W) W(x)·x, the sum of the contribution maps
    normalized_reconstruction: Tensor | None  # (3, H, W); None for 3-channel encodings
    reconstruction_mse: float | None  # normalised reconstruction vs the generated image
    image: Image.Image
    sample: Tensor  # (C, H, W) generated encoded sample
    flagged_tokens: list[str]  # content words judged not reflected in the image
    words: list[Word] = field(default_factory=list)
    complete: bool = True  # False when fresh noise entered between steps (eta > 0)
    # (seed, flagged words, misbound words) of every seed tried (explain_prompt with regenerate)
    attempts: list[tuple[int, list[str], list[str]]] = field(default_factory=list)
    token_positions: list[list[int]] = field(default_factory=list)  # context positions per token
    flag_signal: str = "relevance"  # the word score the flagging rule compared
    method: str = "bcos"  # the attribution method (bcosdiff.explain.methods)
    token_maps: Tensor | None = None  # (len(tokens), H, W) of methods that map each token
    saliency: Tensor | None = None  # (H, W) of methods with one map for the whole image
    readout: str = DEFAULT_READOUT  # how heatmaps read the contribution maps
    guidance: float = 1.0  # the run's classifier-free guidance scale
    # Contribution (C, H, W) of each source of the run: prompt, x_T, time, mean. They add up
    # to ``sample``; filled on request (``BcosOptions(sources=True)``).
    sources: dict[str, Tensor] = field(default_factory=dict)
    steering: dict | None = None  # {"site", "norm"} of a steering vector added to the run
    # Largest |Σ parts − whole| (whole-run methods): the token contributions against the
    # prompt's contribution computed as one whole, and, with sources, the sources against the
    # sample. Float rounding for B-cos; None for methods without an additive decomposition.
    completeness_residual: float | None = None
    stray_limit: float = DEFAULT_STRAY_LIMIT  # binding: the model's calibrated limit
    compounds: tuple[str, ...] = ()  # the model's multi-word names, each kept in one phrase
    word_roles: WordRoles = field(default_factory=WordRoles)  # the model's words (tokens)
    unknown_words: list[str] = field(default_factory=list)  # content words never in training

    @cached_property
    def heatmaps(self) -> Tensor | None:
        """``(len(tokens), H, W)``: which pixels each token drew — its share of the pixel's
        departure from the background colour (:func:`~bcosdiff.explain.readouts.colour_share`),
        one scale for all tokens. Other methods: their token maps, or their one image map
        repeated for every token."""
        if self.contribution_maps is None and self.token_maps is not None:
            return self.token_maps
        if self.contribution_maps is None and self.saliency is not None:
            return self.saliency.expand(len(self.tokens), *self.saliency.shape)
        return self.read_out(self.readout)

    @cached_property
    def mass_maps(self) -> Tensor | None:
        """``(len(tokens), H, W)``: ``Σ_c`` of each token's contribution (its share of the
        pixel's constant mass; does not localise)."""
        return self.read_out("mass")

    def read_out(self, name: str = DEFAULT_READOUT) -> Tensor | None:
        """``(len(tokens), H, W)``: the read-out ``name`` (:data:`~bcosdiff.explain.readouts.
        READOUTS`) of every token's contribution map; None without contribution maps."""
        if self.contribution_maps is None:
            return None
        return get_readout(name)(self.contribution_maps, self.reconstruction)

    def word_contributions(self) -> Tensor:
        """``(len(words), C, H, W)``: each word's contribution, the sum over its pieces."""
        if self.contribution_maps is None:
            raise ValueError("this explanation was computed without heat maps")
        row = {positions[0]: k for k, positions in enumerate(self.token_positions)}
        return torch.stack(
            [self.contribution_maps[[row[p] for p in w.positions]].sum(0) for w in self.words]
        )

    def word_heatmaps(self, readout: str | None = None) -> Tensor:
        """``(len(words), H, W)``: each word's map, read out of the summed contribution of
        its sub-word pieces (summed first: the removal read-out is not additive). Methods
        without contributions: the sum of the pieces' maps (``readout`` is ignored), or the
        image map repeated."""
        if self.contribution_maps is None and self.token_maps is not None:
            row = {positions[0]: k for k, positions in enumerate(self.token_positions)}
            return torch.stack(
                [self.token_maps[[row[p] for p in w.positions]].sum(0) for w in self.words]
            )
        if self.contribution_maps is None and self.saliency is not None:
            return self.saliency.expand(len(self.words), *self.saliency.shape)
        readout = self.readout if readout is None else readout
        return get_readout(readout)(self.word_contributions(), self.reconstruction)

    @cached_property
    def binding(self):
        """``(findings, drawn objects, placements)`` of the binding diagnostics
        (:func:`~bcosdiff.explain.binding.find_misbound`) on the words' maps, with the
        model's calibrated ``stray_limit``; no findings for explanations without one map per
        word. Whole-run methods compute it before dropping their maps (``keep_maps=False``)."""
        from .binding import find_misbound

        if self.saliency is not None or (
            self.contribution_maps is None and self.token_maps is None
        ):
            return [], [], {}
        maps = self.word_heatmaps().numpy()
        return find_misbound(
            np.asarray(self.image),
            [w.text for w in self.words],
            maps,
            self.phrases,
            self.stray_limit,
            weights=self.painting_weights(),
        )

    @cached_property
    def phrases(self):
        """The prompt's phrases (:func:`~bcosdiff.explain.phrases.parse_phrases`) over
        ``words``, with the model's multi-word names (``compounds``) kept whole."""
        from .phrases import parse_phrases

        return parse_phrases(
            [w.text for w in self.words], self.compounds, self.word_roles.depicting
        )

    def painting_weights(self) -> np.ndarray:
        """How much each word painted, for the binding diagnostics: its ``colour_change``
        (whole-run B-cos explanations), else its relevance, else equal weights."""
        for values in (
            [w.colour_change for w in self.words],
            [w.relevance for w in self.words] if self.relevance is not None else [],
        ):
            if values and any(v > 0 for v in values):
                return np.array(values, dtype=float)
        return np.ones(len(self.words))

    @property
    def misbound_words(self) -> list[str]:
        """Words whose stray share exceeds ``stray_limit``: denser on another drawn object than
        on their phrase's home (``binding[0]`` has the object each went to, in words)."""
        return [finding.word for finding in self.binding[0]]

    @property
    def known_flagged(self) -> list[str]:
        """The flagged words the model saw in training: those another seed might mend (an
        unknown word stays unknown whatever the seed)."""
        unknown = set(self.unknown_words)
        return [w for w in self.flagged_tokens if w.lower() not in unknown]

    @property
    def findings(self) -> list[str]:
        """What another seed might mend: the known flagged words, then the misbound words."""
        return self.known_flagged + self.misbound_words

    def _repr_html_(self) -> str | None:
        """The interactive view (:mod:`bcosdiff.report.html`) in a notebook."""
        return None if _html_view is None else _html_view(self)

    def to_dict(self) -> dict:
        return {
            "prompt": self.prompt,
            "seed": self.seed,
            "steps": self.steps,
            "model": self.model,
            "guidance": self.guidance,
            "method": self.method,
            "tokens": self.tokens,
            "relevance": None
            if self.relevance is None
            else [round(float(r), 8) for r in self.relevance],
            "reconstruction_mse": self.reconstruction_mse,
            "flagged_tokens": self.flagged_tokens,
            "unknown_words": self.unknown_words,
            "misbound_words": [
                {
                    "word": f.word,
                    "noun": f.noun,
                    "phrase": f.phrase,
                    "drew": f.drew,
                    "home": f.home,
                    "share": round(f.share, 6),
                    "finding": f.sentence(),
                }
                for f in self.binding[0]
            ],
            "words": [
                {
                    "word": w.text,
                    "relevance": None if self.relevance is None else round(w.relevance, 8),
                    "colour_change": round(w.colour_change, 6),
                }
                for w in self.words
            ],
            "flag_signal": self.flag_signal,
            "complete": self.complete,
            "completeness_residual": self.completeness_residual,
            "attempts": [
                {"seed": s, "flagged_tokens": f, "misbound_words": m} for s, f, m in self.attempts
            ],
            **({"steering": self.steering} if self.steering else {}),
        }


def _select(cond: Conditioning, scores: Tensor, maps: Tensor | None, masked: bool):
    """Token names, positions and per-entry relevance/maps (CLIP: [REST] summed) from
    per-position ``scores`` ``(L,)`` and ``maps`` ``(L, …)``."""
    specials = cond.special[0].tolist()
    names = cond.tokens[0]
    if masked:
        chosen = [(i, names[i]) for i in range(len(names)) if not specials[i]]
        groups = [[i] for i, _ in chosen]
        labels = [t for _, t in chosen]
    else:
        # Start token, prompt tokens, the first end token, then every later position
        # (padding) aggregated as [REST], as in the paper's App. E.1.
        end = next((i for i in range(1, len(names)) if specials[i]), len(names))
        groups = [[i] for i in range(min(end + 1, len(names)))]
        labels = [names[i] for i in range(min(end + 1, len(names)))]
        if end + 1 < len(names):
            groups.append(list(range(end + 1, len(names))))
            labels.append(REST)
    contributions = torch.stack([scores[g].sum() for g in groups])
    total = scores.abs().sum()
    relevance = (contributions.abs() / total if total > 0 else contributions * 0).tolist()
    if maps is not None:
        maps = torch.stack([maps[g].sum(0) for g in groups])
    return labels, groups, relevance, maps


def _words(cond: Conditioning, groups, labels, relevance) -> list[Word]:
    in_prompt = [
        ((g[0], label), r)
        for g, label, r in zip(groups, labels, relevance, strict=True)
        if not cond.special[0, g[0]] and label != REST
    ]
    return group_words([entry for entry, _ in in_prompt], [r for _, r in in_prompt])


def _image(rgb: Tensor) -> Image.Image:
    return to_image(rgb)


def build_explanation(
    run: RunExplanation,
    *,
    cond: Conditioning,
    encoding: str,
    masked: bool,
    prompt: str,
    seed: int,
    steps: int,
    model: str,
    flag_ratio: float = DEFAULT_FLAG_RATIO,
    flag_signal: str = "relevance",
    guidance: float = 1.0,
    word_roles: WordRoles | None = None,
) -> Explanation:
    """The report of ``run``, contribution maps included (the attribution method drops them
    after the binding diagnostics when asked to, :class:`~bcosdiff.explain.WholeRunOptions`)."""
    labels, groups, relevance, maps = _select(
        cond, run.token_contributions, run.contributions, masked
    )
    rgb = decode_image(run.sample[None], encoding)[0]
    normalized = mse = None
    if encoding == "rgb_inv":
        normalized = normalized_reconstruction(run.reconstruction)
        mse = float((normalized - rgb).square().mean())
    words = _words(cond, groups, labels, relevance)
    if run.contributions is not None and words:
        per_word = torch.stack([run.contributions[w.positions].sum(0) for w in words])
        totals = colour_change(per_word, run.reconstruction).sum(dim=(1, 2))
        for word, total in zip(words, totals.tolist(), strict=True):
            word.colour_change = total
    elif run.contributions is None and flag_signal != "relevance":
        raise ValueError(f"the flag signal {flag_signal!r} needs the contribution maps")
    flagged = flag_words(words, flag_ratio, flag_signal, word_roles)
    return Explanation(
        prompt=prompt,
        seed=seed,
        steps=steps,
        model=model,
        tokens=labels,
        relevance=relevance,
        contribution_maps=maps,
        reconstruction=run.reconstruction,
        normalized_reconstruction=normalized,
        reconstruction_mse=mse,
        image=_image(rgb),
        sample=run.sample,
        flagged_tokens=flagged,
        words=words,
        complete=run.complete,
        completeness_residual=run.completeness_residual,
        attempts=[(seed, flagged, [])],
        token_positions=groups,
        flag_signal=flag_signal,
        guidance=guidance,
        sources=dict(run.sources),
    )


def build_attribution(
    run: GeneratedRun,
    masked: bool,
    model: str,
    method: str,
    scores: Tensor | None = None,
    maps: Tensor | None = None,
    saliency: Tensor | None = None,
) -> Explanation:
    """The report of a method other than B-cos on a sampled ``run``: per context position
    ``scores`` ``(L,)`` (token relevance after normalising, or None), per-position ``maps``
    ``(L, H, W)``, or one ``saliency`` ``(H, W)`` map for the whole image. Nothing is
    flagged (the flagging rule is calibrated on B-cos scores)."""
    if run.sample is None:
        raise ValueError("the run has not been sampled")
    cond = run.conditioning
    length = cond.embeddings.shape[1]
    placeholder = scores if scores is not None else torch.zeros(length)
    labels, groups, relevance, token_maps = _select(cond, placeholder.cpu(), maps, masked)
    sample = run.sample[0].detach().cpu()
    rgb = decode_image(sample[None], run.encoding)[0]
    return Explanation(
        prompt=run.prompt,
        seed=run.seed,
        steps=run.steps,
        model=model,
        tokens=labels,
        relevance=relevance if scores is not None else None,
        contribution_maps=None,
        reconstruction=None,
        normalized_reconstruction=None,
        reconstruction_mse=None,
        image=_image(rgb),
        sample=sample,
        flagged_tokens=[],
        words=_words(cond, groups, labels, relevance),
        complete=run.eta == 0,
        attempts=[(run.seed, [], [])],
        token_positions=groups,
        method=method,
        token_maps=None if token_maps is None else token_maps.detach().cpu(),
        saliency=None if saliency is None else saliency.detach().cpu(),
        guidance=run.guidance,
    )
