"""One attribution API for every explanation method (captum's convention).

``Method(pipe).attribute(run, words=None) -> Explanation`` explains one generated run
(:class:`~bcosdiff.explain.run.GeneratedRun`, from :meth:`~bcosdiff.pipeline.Pipeline.run`);
every method returns the same :class:`~bcosdiff.explain.explanation.Explanation` shape, so the
figures, the JSON and the faithfulness benchmark treat them alike. ``words`` keeps only the
named prompt words in ``exp.words`` (their maps are computed all the same).

==============  ============================================  ==========  ===============
name            what it attributes                             model       maps
==============  ============================================  ==========  ===============
``bcos``        the whole run, exactly: ``W_i x_i`` per token  B-cos only  per token
``gradxinput``  the whole run, linearised: ``J_i x_i``         any         per token
``xattn``       cross-attention probabilities (DAAM)           any         per token
``dfrise``      one step: random masks on ``x_t`` (DF-RISE)    any         one per image
``dfcam``       one step: Grad-CAM of U-Net blocks (DF-CAM)    any         one per image
==============  ============================================  ==========  ===============

``docs/explanations.md`` describes each method, and ``docs/results.md`` ranks them. The
names are listed in :mod:`bcosdiff.explain.registry`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

from ..bcos import explanation_mode, explicit_attention
from ..errors import BcosdiffError
from .budget import check_explanation_memory
from .explanation import Explanation, build_explanation
from .linear_map import explain_run
from .readouts import DEFAULT_READOUT, get_readout
from .run import GeneratedRun

__all__ = ["AttributionMethod", "BcosAttribution", "GradientInput"]


class AttributionMethod:
    """Base class: subclasses set ``name`` and implement :meth:`_attribute`."""

    name: ClassVar[str] = ""
    bcos_only: ClassVar[bool] = False  # needs a B-cos U-Net (explanation mode)
    needs_sample: ClassVar[bool] = True  # reads the stored states of a sampled run

    def __init__(self, pipe):
        if self.bcos_only and pipe.unet.config.kind != "bcos":
            from .registry import posthoc_methods  # the registry lists this module's classes

            raise BcosdiffError(
                f"model {pipe.name!r} is a {pipe.unet.config.kind} U-Net: only B-cos models "
                f"have a dynamic linear summary to explain with {self.name!r}; post-hoc "
                f"methods work on any model ({', '.join(posthoc_methods())})"
            )
        self.pipe = pipe

    def attribute(self, run: GeneratedRun, words: Sequence[str] | None = None) -> Explanation:
        if self.needs_sample and not run.sampled:
            raise ValueError(f"{self.name!r} needs a sampled run (Pipeline.run)")
        return keep_words(_with_steering(self._attribute(run), run), words)

    def _attribute(self, run: GeneratedRun) -> Explanation:
        raise NotImplementedError

    @property
    def masked(self) -> bool:
        """Whether the text model masks its special tokens (they are then not reported)."""
        return self.pipe.text.config.mode == "subword"

    def _explain_whole_run(
        self,
        run: GeneratedRun,
        linearise: bool,
        flag_ratio: float,
        keep_maps: bool = True,
        sources: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> Explanation:
        """The whole-run explanation of ``run``: the B-cos replay (``linearise``) or the
        JVP/VJP path outside explanation mode (gradient × input); ``sources`` adds each
        source's contribution (B-cos only)."""
        pipe = self.pipe
        context, mask = run.context()
        method = "bcos" if linearise else "gradxinput"
        check_explanation_memory(pipe.unet, context.shape[1], run.steps, method, sources)
        result = explain_run(
            pipe.unet,
            pipe.process,
            run.schedule,
            context,
            run.x_T,
            mask,
            contributions=True,  # the replay computes them anyway; flagging may need them
            eta=run.eta,
            step_noise=run.step_noise,
            method="replay" if linearise else "jvp",
            linearise=linearise,
            guidance=run.guidance,
            decompose_sources=sources,
            steering=run.steering,
            progress=progress,
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
            run.conditioning,
            pipe.process.encoding,
            self.masked,
            run.prompt,
            run.seed,
            run.steps,
            pipe.name,
            flag_ratio,
            pipe.flag_signal if linearise else "relevance",
            keep_maps=keep_maps,
            guidance=run.guidance,
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
    are read out with ``readout`` (:data:`~bcosdiff.explain.readouts.READOUTS`). Needs only
    the run's inputs: the replay recomputes the sample (to float rounding; the explanation
    reports the generated image itself)."""

    name = "bcos"
    bcos_only = True
    needs_sample = False

    def __init__(self, pipe, readout: str = DEFAULT_READOUT):
        super().__init__(pipe)
        get_readout(readout)
        self.readout = readout

    def attribute(
        self,
        run: GeneratedRun,
        words: Sequence[str] | None = None,
        flag_ratio: float | None = None,
        keep_maps: bool = True,
        sources: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> Explanation:
        """``flag_ratio`` overrides the model's calibrated threshold; ``keep_maps=False``
        drops the contribution maps once the words' scores are known; ``sources=True``
        fills ``exp.sources`` (prompt, x_T, time, μ; they add up to ``exp.sample``)."""
        ratio = self.pipe.flag_ratio if flag_ratio is None else flag_ratio
        exp = self._explain_whole_run(run, True, ratio, keep_maps, sources, progress)
        exp.readout = self.readout
        return keep_words(_with_steering(exp, run), words)


class GradientInput(AttributionMethod):
    """Gradient × input through the whole run, the non-B-cos analogue of eq. 8: the same
    computation as the B-cos JVP/VJP path with explanation mode off, so the run's true
    Jacobian ``J`` takes the place of ``W``. Relevance ``|Σ_{h,w,c} J_i x_i|`` comes from one
    VJP of the summed output; per-token maps ``J_i x_i`` from batched JVPs, read out like the
    B-cos maps. Unlike ``W(x)·x``, ``J(x)·x`` does not add up to the output."""

    name = "gradxinput"

    def _attribute(self, run: GeneratedRun) -> Explanation:
        # Forward-mode AD needs the explicit attention path (the fused kernel has no rule).
        with explicit_attention(self.pipe.unet), explanation_mode(self.pipe.unet, active=False):
            # The flagging rule is calibrated on B-cos scores only: nothing is flagged.
            exp = self._explain_whole_run(run, linearise=False, flag_ratio=0.0)
        exp.method = self.name
        return exp
