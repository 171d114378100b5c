"""One attribution API for every explanation method (captum's convention).

``Method(pipe, options).attribute(run, options=None) -> Explanation`` explains one generated
run (:class:`~bcosdiff.explain.run.GeneratedRun`, from :meth:`~bcosdiff.pipeline.Pipeline.run`);
every method returns the same :class:`~bcosdiff.explain.explanation.Explanation` shape, so the
figures, the JSON and the faithfulness benchmark treat them alike. Each method has one
frozen, keyword-only options class (``Method.Options``); what every method accepts lives in
:class:`AttributionOptions` (``words`` keeps only the named prompt words in ``exp.words``).
Options given to the constructor are the method's defaults; options given to ``attribute``
replace them for that call.

==============  ============================================  ==========  ======================
name            what it attributes                             model       options
==============  ============================================  ==========  ======================
``bcos``        the whole run, exactly: ``W_i x_i`` per token  B-cos only  :class:`BcosOptions`
``gradxinput``  the whole run, linearised: ``J_i x_i``         any         :class:`WholeRunOptions`
``xattn``       cross-attention probabilities (DAAM)           any         ``CrossAttentionOptions``
``dfrise``      one step: random masks on ``x_t`` (DF-RISE)    any         ``RiseOptions``
``dfcam``       one step: Grad-CAM of U-Net blocks (DF-CAM)    any         ``CamOptions``
==============  ============================================  ==========  ======================

Whole-run methods report ``exp.completeness_residual``: the largest gap, over channels and
pixels, between the sum of the token contributions and the prompt's contribution computed
as one whole (and, with ``sources``, between the sum of the sources and the sample), as
captum's convergence delta reports how far attributions are from adding up.

``docs/explanations.md`` describes each method, and ``docs/results.md`` ranks them. The
names are listed in :mod:`bcosdiff.explain.registry`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from ..bcos import explanation_mode, explicit_attention
from ..errors import BcosdiffError
from .budget import check_explanation_memory
from .explanation import Explanation, build_explanation
from .linear_map import explain_run
from .readouts import DEFAULT_READOUT, get_readout
from .run import GeneratedRun

__all__ = [
    "AttributionMethod",
    "AttributionOptions",
    "BcosAttribution",
    "BcosOptions",
    "GradientInput",
    "SCORES_ONLY",
    "WholeRunOptions",
    "keep_words",
]


@dataclass(frozen=True, kw_only=True)
class AttributionOptions:
    """What every method accepts. ``words``: report only these prompt words in ``exp.words``
    (case-insensitive; their maps are computed all the same)."""

    words: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.words is not None:
            if isinstance(self.words, str):
                raise TypeError("words is a sequence of words, not one string")
            object.__setattr__(self, "words", tuple(self.words))


@dataclass(frozen=True, kw_only=True)
class WholeRunOptions(AttributionOptions):
    """Options of the methods that explain the whole run. ``keep_maps=False`` drops the
    contribution maps once the words' scores are known (cheaper to keep many);
    ``progress(done, total)`` is called after each replayed step."""

    keep_maps: bool = True
    progress: Callable[[int, int], None] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, kw_only=True)
class BcosOptions(WholeRunOptions):
    """Options of the B-cos explanation. ``readout`` names how heatmaps read the contribution
    maps (:data:`~bcosdiff.explain.readouts.READOUTS`); ``flag_ratio`` overrides the model's
    calibrated failure-detection threshold; ``sources=True`` fills ``exp.sources`` (prompt,
    x_T, time, μ and any steering vector; they add up to ``exp.sample``)."""

    readout: str = DEFAULT_READOUT
    flag_ratio: float | None = None
    sources: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        get_readout(self.readout)
        if self.flag_ratio is not None and not self.flag_ratio >= 0:
            raise ValueError(f"flag_ratio must be at least 0, got {self.flag_ratio}")


SCORES_ONLY = BcosOptions(keep_maps=False)
"""B-cos options for scoring many prompts: the words' scores and flags, no maps kept."""


def _posthoc_names() -> list[str]:
    """The names of the defined method classes that work on any U-Net (read from the
    classes themselves, so that this module need not import the registry that lists them)."""
    names, pending = set(), [AttributionMethod]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.name and not cls.bcos_only:
            names.add(cls.name)
    return sorted(names)


class AttributionMethod:
    """Base class: subclasses set ``name`` and ``Options`` and implement :meth:`_attribute`."""

    name: ClassVar[str] = ""
    Options: ClassVar[type[AttributionOptions]] = AttributionOptions
    bcos_only: ClassVar[bool] = False  # needs a B-cos U-Net (explanation mode)
    needs_sample: ClassVar[bool] = True  # reads the stored states of a sampled run
    flags_words: ClassVar[bool] = False  # judges which content words the image shows
    maps_words: ClassVar[bool] = True  # one map per prompt word (False: one for the image)

    def __init__(self, pipe, options: AttributionOptions | None = None):
        if self.bcos_only and pipe.unet.config.kind != "bcos":
            raise BcosdiffError(
                f"model {pipe.name!r} is a {pipe.unet.config.kind} U-Net: only B-cos models "
                f"have a dynamic linear summary to explain with {self.name!r}; post-hoc "
                f"methods work on any model ({', '.join(_posthoc_names())})"
            )
        self.pipe = pipe
        self.options = self.Options() if options is None else self.check_options(options)

    @classmethod
    def check_options(cls, options: AttributionOptions) -> AttributionOptions:
        """``options`` if they are this method's kind, else a clear error."""
        if not isinstance(options, cls.Options):
            raise BcosdiffError(
                f"{cls.name!r} takes {cls.Options.__name__}, not {type(options).__name__}"
            )
        return options

    def attribute(self, run: GeneratedRun, options: AttributionOptions | None = None):
        """The :class:`~bcosdiff.explain.explanation.Explanation` of ``run`` with ``options``
        (default: those given to the constructor)."""
        options = self.options if options is None else self.check_options(options)
        if self.needs_sample and not run.sampled:
            raise ValueError(f"{self.name!r} needs a sampled run (Pipeline.run)")
        exp = self._attribute(run, options)
        exp.method = self.name
        exp.stray_limit = self.pipe.explain_settings.stray_limit
        exp.compounds = self.pipe.explain_settings.compounds
        exp.word_roles = self.pipe.explain_settings.word_roles
        exp.unknown_words = self.pipe.unknown_words(exp.prompt)
        # The binding diagnostics run here, while every word and map is there.
        exp.attempts = [(exp.seed, list(exp.flagged_tokens), list(exp.misbound_words))]
        if isinstance(options, WholeRunOptions) and not options.keep_maps:
            exp.contribution_maps = None
        return keep_words(_with_steering(exp, run), options.words)

    def with_progress(self, options: AttributionOptions, progress) -> AttributionOptions:
        """``options`` reporting ``progress`` where the method replays the run itself."""
        if progress is None or not isinstance(options, WholeRunOptions):
            return options
        return dataclasses.replace(options, progress=progress)

    def _attribute(self, run: GeneratedRun, options: AttributionOptions) -> Explanation:
        raise NotImplementedError

    @property
    def masked(self) -> bool:
        """Whether the text model masks its special tokens (they are then not reported)."""
        return self.pipe.text.config.mode == "subword"

    def _explain_whole_run(
        self,
        run: GeneratedRun,
        options: WholeRunOptions,
        *,
        linearise: bool,
        flag_ratio: float,
        sources: bool = False,
    ) -> Explanation:
        """The whole-run explanation of ``run``: the B-cos replay (``linearise``) or the
        JVP/VJP path outside explanation mode (gradient × input); ``sources`` adds each
        source's contribution (B-cos only)."""
        pipe = self.pipe
        context, mask = run.context()
        method = "bcos" if linearise else "gradxinput"
        check_explanation_memory(
            pipe.unet, tokens=context.shape[1], steps=run.steps, method=method, sources=sources
        )
        result = explain_run(
            pipe.unet,
            pipe.process,
            steps=run.schedule,
            context=context,
            x_T=run.x_T,
            context_mask=mask,
            contributions=True,  # the replay computes them anyway; flagging may need them
            eta=run.eta,
            step_noise=run.step_noise,
            method="replay" if linearise else "jvp",
            linearise=linearise,
            guidance=run.guidance,
            decompose_sources=sources,
            steering=run.steering,
            progress=options.progress,
        )
        if run.sample is not None:
            # Both paths recompute the sample with other kernels than the generating call: the
            # JVP path with explicit attention, the replay as row 0 of a batch of 1 + tokens
            # rows, whose matrix products may sum in another order (a few 1e-7 after 25 steps,
            # enough to move one 8-bit pixel). The explanation reports the very sample that
            # was generated, once the recomputation is shown to be the same run.
            gap = float((result.sample - run.sample[0].cpu()).abs().max())
            if gap > 1e-3:
                raise RuntimeError(f"the explained run departs from the generated one by {gap}")
            result.sample = run.sample[0].detach().cpu()  # the very image that was generated
        return build_explanation(
            result,
            cond=run.conditioning,
            encoding=pipe.process.encoding,
            masked=self.masked,
            prompt=run.prompt,
            seed=run.seed,
            steps=run.steps,
            model=pipe.name,
            flag_ratio=flag_ratio,
            flag_signal=pipe.explain_settings.flag_signal if linearise else "relevance",
            guidance=run.guidance,
            word_roles=pipe.explain_settings.word_roles,
        )


def _with_steering(exp: Explanation, run: GeneratedRun) -> Explanation:
    """Record the run's steering vector (site and norm) in the explanation."""
    if run.steering is not None and not run.steering.is_zero:
        exp.steering = {"site": run.steering.site, "norm": float(run.steering.vector.norm())}
    return exp


def keep_words(exp: Explanation, words: Sequence[str] | None) -> Explanation:
    """``exp`` with only the named words in ``exp.words`` (case-insensitive)."""
    if words is None:
        return exp
    wanted = [w.lower() for w in words]
    known = {w.text.lower() for w in exp.words}
    missing = [w for w in wanted if w not in known]
    if missing:
        raise BcosdiffError(f"not in the prompt: {', '.join(missing)}")
    exp.words = [w for w in exp.words if w.text.lower() in wanted]
    return exp


class BcosAttribution(AttributionMethod):
    """The B-cos explanation of the whole run: the run replayed through its own dynamic
    linear map, one batch row per token (:func:`~bcosdiff.explain.explain_run`). Token maps
    are read out with ``options.readout``. Needs only the run's inputs: the replay recomputes
    the sample (to float rounding; the explanation reports the generated image itself)."""

    name = "bcos"
    Options = BcosOptions
    bcos_only = True
    needs_sample = False
    flags_words = True

    def _attribute(self, run: GeneratedRun, options: BcosOptions) -> Explanation:
        ratio = (
            self.pipe.explain_settings.flag_ratio
            if options.flag_ratio is None
            else options.flag_ratio
        )
        exp = self._explain_whole_run(
            run, options, linearise=True, flag_ratio=ratio, sources=options.sources
        )
        exp.readout = options.readout
        return exp


class GradientInput(AttributionMethod):
    """Gradient × input through the whole run, the non-B-cos analogue of eq. 8: the same
    computation as the B-cos JVP/VJP path with explanation mode off, so the run's true
    Jacobian ``J`` takes the place of ``W``. Relevance ``|Σ_{h,w,c} J_i x_i|`` comes from one
    VJP of the summed output; per-token maps ``J_i x_i`` from batched JVPs, read out like the
    B-cos maps. Unlike ``W(x)·x``, ``J(x)·x`` does not add up to the output (its
    completeness residual compares the token maps with the JVP of the whole prompt, which
    linearity makes equal)."""

    name = "gradxinput"
    Options = WholeRunOptions

    def _attribute(self, run: GeneratedRun, options: WholeRunOptions) -> Explanation:
        # Forward-mode AD needs the explicit attention path (the fused kernel has no rule).
        with explicit_attention(self.pipe.unet), explanation_mode(self.pipe.unet, active=False):
            # The flagging rule is calibrated on B-cos scores only: nothing is flagged.
            return self._explain_whole_run(run, options, linearise=False, flag_ratio=0.0)
