"""Explanations of a whole deterministic sampling run with respect to the prompt (paper §3.4).

For prompt embeddings ``x`` and the run's dynamic linear summary ``W(x)`` (explanation mode):

* reconstruction ``R = W(x)·x`` — one Jacobian-vector product with tangent ``x`` (eq. 6);
* normalised reconstruction ``R_rgb / (R_rgb + R_inv)`` and its MSE against the image (eq. 7);
* relevance ``S_i = |Σ_{h,w,c} W_i x_i| / Σ_j |Σ_{h,w,c} W_j x_j|`` — one vector-Jacobian
  product of the summed output, dotted with each token's embedding (eq. 8);
* per-token contributions ``W_i x_i`` to every output channel at full resolution —
  Jacobian-vector products with one-hot token tangents, batched with ``vmap`` (the primal
  run is shared). Maps are read out of them in :mod:`bcosdiff.explain.readouts`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor
from torch.func import jvp, vmap

from ..bcos import explanation_mode, linear_replay
from ..dictionary.steering import Steering
from ..diffusion import DDIMSchedule, DiffusionProcess, as_schedule
from ..networks import UNet
from .trajectory import RunSources, run_trajectory

__all__ = ["RunExplanation", "explain_run", "normalized_reconstruction"]


def normalized_reconstruction(reconstruction: Tensor, eps: float = 1e-8) -> Tensor:
    """``R_rgb / (R_rgb + R_inv)`` of a 6-channel ``(…, 6, H, W)`` reconstruction (eq. 7)."""
    rgb, inv = reconstruction[..., :3, :, :], reconstruction[..., 3:, :, :]
    total = rgb + inv
    safe = torch.where(total.abs() < eps, torch.full_like(total, eps), total)
    return (rgb / safe).clamp(0.0, 1.0)


@dataclass
class RunExplanation:
    """The explanation of one sampling run (batch of one), all tensors on the CPU."""

    sample: Tensor  # (C, H, W) the generated encoded sample
    reconstruction: Tensor  # (C, H, W) W(x)·x, the prompt's contribution
    token_contributions: Tensor  # (L,) Σ_{h,w,c} W_i x_i per context position
    relevance: Tensor  # (L,) eq. 8 over all context positions (masked ones are 0)
    contributions: Tensor | None  # (L, C, H, W) W_i x_i per channel and pixel, or None
    sources: dict[str, Tensor] = field(default_factory=dict)  # contribution of each source
    complete: bool = True  # False when fresh noise entered between steps (eta > 0)
    # Largest |Σ parts − whole| over channels and pixels: the token contributions against the
    # prompt's contribution computed as one whole and, with sources, the sources against the
    # sample; None when the token maps were not computed.
    completeness_residual: float | None = None

    @property
    def mass_maps(self) -> Tensor | None:
        """``(L, H, W)``: ``Σ_c W_i x_i``, each position's contribution summed over channels."""
        return None if self.contributions is None else self.contributions.sum(1)


def explain_run(
    unet: UNet,
    process: DiffusionProcess,
    *,
    steps: int | DDIMSchedule,
    context: Tensor,
    x_T: Tensor,
    context_mask: Tensor | None = None,
    contributions: bool = True,
    token_chunk: int = 16,
    checkpoint_steps: bool = True,
    decompose_sources: bool = False,
    eta: float = 0.0,
    step_noise: list[Tensor] | None = None,
    method: str = "replay",
    linearise: bool = True,
    guidance: float = 1.0,
    steering: Steering | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RunExplanation:
    """Explain the DDIM run from ``x_T`` conditioned on ``context`` (shape ``(1, L, D)``).

    ``method="replay"`` (default): one batched forward pass per step in which every prompt
    token (and, with ``decompose_sources``, x_T, the time features and μ) is a batch row
    replayed through the run's own dynamic linear map — reconstruction, per-token
    contributions and relevance all follow from the per-row outputs. ``method="jvp"``: the
    same quantities from forward- and reverse-mode autodiff (one JVP, one VJP, batched JVPs);
    kept as an independent computation. ``contributions=False`` skips the per-token maps.
    ``linearise=False`` (``"jvp"`` only) differentiates the run as it is, outside
    explanation mode: the Jacobian ``J(x)`` replaces ``W(x)`` (gradient × input).
    ``guidance`` is the run's classifier-free guidance scale: the prompt's contributions
    come through the conditional branch, and the sources still add up to the sample.
    ``steering`` (:class:`~bcosdiff.dictionary.Steering`) is one more source: its vector
    enters the real run only, and ``sources["steering"]`` is its contribution (replay only).
    ``progress(done, total)`` is called after each step of the replay.
    """
    if context.shape[0] != 1 or x_T.shape[0] != 1:
        raise ValueError("explain_run explains one run at a time (batch of one)")
    if method == "replay" and not linearise:
        raise ValueError("the linear replay exists only in explanation mode (linearise=True)")
    if method == "replay":
        return _explain_by_replay(
            unet,
            process,
            RunSources.for_run(unet, process, context, x_T, steps),
            steps=steps,
            context_mask=context_mask,
            contributions=contributions,
            decompose_sources=decompose_sources,
            eta=eta,
            step_noise=step_noise,
            guidance=guidance,
            steering=steering,
            progress=progress,
        )
    if method != "jvp":
        raise ValueError(f"unknown method {method!r}; expected 'replay' or 'jvp'")
    if not linearise and decompose_sources:
        raise ValueError("sources add up only in explanation mode")
    if decompose_sources and steering is not None and not steering.is_zero:
        raise ValueError("the steering source is separated by the replay (method='replay')")
    sources = RunSources.for_run(unet, process, context, x_T, steps)

    def run(ctx: Tensor, x: Tensor, features: Tensor, mean: Tensor, ckpt: bool = False) -> Tensor:
        return run_trajectory(
            unet,
            process,
            RunSources(ctx, x, features, mean),
            steps=steps,
            context_mask=context_mask,
            checkpoint_steps=ckpt,
            eta=eta,
            step_noise=step_noise,
            guidance=guidance,
            steering=steering,
        )

    with explanation_mode(unet, active=linearise):
        return _explain_by_autodiff(
            run,
            sources.as_tuple(),
            contributions=contributions,
            token_chunk=token_chunk,
            checkpoint_steps=checkpoint_steps,
            decompose_sources=decompose_sources,
            complete=eta == 0,
        )


def _explain_by_autodiff(
    run: Callable[..., Tensor],
    primals: tuple[Tensor, ...],
    *,
    contributions: bool,
    token_chunk: int,
    checkpoint_steps: bool,
    decompose_sources: bool,
    complete: bool,
) -> RunExplanation:
    """The quantities of :func:`explain_run` by autodiff of ``run(context, x_T, time
    features, μ)``: the reconstruction by one JVP along the context, relevance by one VJP,
    the token maps by batched JVPs along each token, the sources by one JVP each."""
    context = primals[0]

    def context_only(tangent: Tensor) -> tuple[Tensor, Tensor]:
        zeros = tuple(torch.zeros_like(p) for p in primals[1:])
        # Forward-mode AD is unaffected by no_grad; without it every step's graph is kept.
        with torch.no_grad():
            return jvp(run, primals, (tangent, *zeros))

    sample, reconstruction = context_only(context)
    # Relevance: a single VJP of the summed output (per-step recomputation bounds memory).
    ctx = context.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        out = run(ctx, *primals[1:], ckpt=checkpoint_steps)
        (grad,) = torch.autograd.grad(out.sum(), ctx)
    totals = (grad * context).sum(-1)[0]
    maps = _token_maps_by_jvp(context_only, context, token_chunk) if contributions else None
    parts = {}
    if decompose_sources:
        for k, name in enumerate(("prompt", "x_T", "time", "mean")):
            tangent = tuple(p if j == k else torch.zeros_like(p) for j, p in enumerate(primals))
            with torch.no_grad():
                parts[name] = jvp(run, primals, tangent)[1][0].detach().cpu()
    gaps = []  # the token maps against the prompt's JVP; the sources against the sample
    if maps is not None:
        gaps.append(float((maps.sum(0) - reconstruction[0]).abs().max()))
    if parts:
        gaps.append(float((sum(parts.values()) - sample[0].detach().cpu()).abs().max()))
    total = totals.abs().sum()
    relevance = totals.abs() / total if total > 0 else torch.zeros_like(totals)
    return RunExplanation(
        sample=sample[0].detach().cpu(),
        reconstruction=reconstruction[0].detach().cpu(),
        token_contributions=totals.detach().cpu(),
        relevance=relevance.detach().cpu(),
        contributions=None if maps is None else maps.detach().cpu(),
        sources=parts,
        complete=complete,
        completeness_residual=max(gaps) if gaps else None,
    )


def _token_maps_by_jvp(context_only, context: Tensor, token_chunk: int) -> Tensor:
    """``(L, C, H, W)``: one JVP per token along its own embedding, ``token_chunk`` at once."""
    length = context.shape[1]
    eye = torch.eye(length, dtype=context.dtype, device=context.device)
    chunks = []
    for start in range(0, length, token_chunk):
        one_hot = eye[start : start + token_chunk, None, :, None] * context
        tangent_out = vmap(lambda t: context_only(t)[1])(one_hot)
        chunks.append(tangent_out[:, 0])
    return torch.cat(chunks)


@dataclass(frozen=True)
class _ReplayRows:
    """The batch of a linear replay. Rows: the real run, one row per attended token, the
    whole prompt alone (computed apart from the token rows, so that their sum is checked
    against it), then (optionally) x_T, time, μ and the steering vector, each alone."""

    sources: RunSources
    steering_rows: Tensor  # which rows the steering vector enters
    valid: Tensor  # the attended token positions
    prompt_row: int
    steered: bool

    @classmethod
    def build(
        cls,
        process: DiffusionProcess,
        sources: RunSources,
        steps: int | DDIMSchedule,
        context_mask: Tensor | None,
        decompose_sources: bool,
        steered: bool,
    ) -> _ReplayRows:
        context, x_T = sources.context, sources.x_T
        length, device = context.shape[1], context.device
        if context_mask is None:
            valid = torch.arange(length, device=device)
        else:
            valid = torch.nonzero(context_mask[0].to(device))[:, 0]
        count = len(valid)
        token_ctx = torch.zeros(count, *context.shape[1:], dtype=context.dtype, device=device)
        token_ctx[torch.arange(count, device=device), valid] = context[0, valid]
        extra = (4 if steered else 3) if decompose_sources else 0
        prompt_row = 1 + count
        rows = prompt_row + 1 + extra
        extra_ctx = context.new_zeros(extra, *context.shape[1:])
        ctx = torch.cat([context, token_ctx, context, extra_ctx])
        x = x_T.new_zeros(rows, *x_T.shape[1:])
        x[0] = x_T[0]
        features = sources.time_features.new_zeros(
            len(as_schedule(process, steps)), rows, sources.time_features.shape[1]
        )
        features[:, 0] = sources.time_features
        mean = x_T.new_zeros(rows, 1, 1, 1)
        mean[0] = process.mean
        steering_rows = torch.zeros(rows, dtype=torch.bool, device=x_T.device)
        steering_rows[0] = True  # the steering vector enters the real run, never token rows
        if decompose_sources:
            x[prompt_row + 1] = x_T[0]
            features[:, prompt_row + 2] = sources.time_features
            mean[prompt_row + 3] = process.mean
            if steered:
                steering_rows[prompt_row + 4] = True
        return cls(RunSources(ctx, x, features, mean), steering_rows, valid, prompt_row, steered)

    @property
    def rows(self) -> int:
        return self.sources.x_T.shape[0]

    def padded_noise(self, step_noise: list[Tensor] | None) -> list[Tensor]:
        """Fresh noise between steps is a bias of the real run only: zero in every other row."""
        noise = []
        for n in step_noise or []:
            padded = n.new_zeros(self.rows, *n.shape[1:])
            padded[0] = n[0]
            noise.append(padded)
        return noise


def _explain_by_replay(
    unet: UNet,
    process: DiffusionProcess,
    sources: RunSources,
    *,
    steps: int | DDIMSchedule,
    context_mask: Tensor | None,
    contributions: bool,
    decompose_sources: bool,
    eta: float,
    step_noise: list[Tensor] | None,
    guidance: float,
    steering: Steering | None,
    progress: Callable[[int, int], None] | None,
) -> RunExplanation:
    steered = steering is not None and not steering.is_zero
    layout = _ReplayRows.build(process, sources, steps, context_mask, decompose_sources, steered)
    with linear_replay(unet), torch.no_grad():
        out = run_trajectory(
            unet,
            process,
            layout.sources,
            steps=steps,
            context_mask=context_mask,
            eta=eta,
            step_noise=layout.padded_noise(step_noise) if eta > 0 else None,
            guidance=guidance,
            steering=steering,
            steering_rows=layout.steering_rows,
            callback=_progress_callback(progress, len(as_schedule(process, steps))),
        )
    return _read_replay(out, layout, sources, contributions, decompose_sources, eta == 0)


def _read_replay(
    out: Tensor,
    layout: _ReplayRows,
    sources: RunSources,
    contributions: bool,
    decompose_sources: bool,
    complete: bool,
) -> RunExplanation:
    """The explanation from the replay's per-row outputs (rows: :class:`_ReplayRows`)."""
    context, x_T, valid, row = sources.context, sources.x_T, layout.valid, layout.prompt_row
    per_token = out[1:row]
    prompt = out[row]
    residual = float((per_token.sum(0) - prompt).abs().max())
    totals = context.new_zeros(context.shape[1])
    totals[valid] = per_token.sum(dim=(1, 2, 3))
    maps = None
    if contributions:
        maps = x_T.new_zeros(context.shape[1], *x_T.shape[1:])
        maps[valid] = per_token
    total = totals.abs().sum()
    parts = {}
    if decompose_sources:
        parts = {"prompt": prompt, "x_T": out[row + 1], "time": out[row + 2], "mean": out[row + 3]}
        if layout.steered:
            parts["steering"] = out[row + 4]
        residual = max(residual, float((sum(parts.values()) - out[0]).abs().max()))
    return RunExplanation(
        sample=out[0].cpu(),
        reconstruction=prompt.cpu(),
        token_contributions=totals.cpu(),
        relevance=(totals.abs() / total if total > 0 else totals * 0).cpu(),
        contributions=None if maps is None else maps.cpu(),
        sources={k: v.cpu() for k, v in parts.items()},
        complete=complete,
        completeness_residual=residual,
    )


def _progress_callback(progress: Callable[[int, int], None] | None, total: int):
    if progress is None:
        return None
    return lambda state: progress(state.index + 1, total)


def patch_backward_contributions(
    unet: UNet,
    process: DiffusionProcess,
    *,
    steps: int | DDIMSchedule,
    context: Tensor,
    x_T: Tensor,
    context_mask: Tensor | None = None,
    patch: int = 8,
    guidance: float = 1.0,
) -> Tensor:
    """The authors' reference procedure: one backward pass per (output channel, patch).

    Returns ``(L, C, H/patch, W/patch)``: for every context position the contribution
    ``Σ_{pixels in patch} W_i x_i`` per output channel. It costs ``C·(H/patch)·(W/patch)``
    backward passes through the whole run (384 for 6 channels at 64×64); the JVP/VJP path of
    :func:`explain_run` gives the same numbers (summed over the patch) far cheaper.
    """
    sources = RunSources.for_run(unet, process, context, x_T, steps)
    _, channels, height, width = x_T.shape
    if height % patch or width % patch:
        raise ValueError(f"image size {height}x{width} is not a multiple of the patch {patch}")
    result = torch.zeros(
        context.shape[1],
        channels,
        height // patch,
        width // patch,
        dtype=context.dtype,
        device=context.device,
    )
    with explanation_mode(unet), torch.enable_grad():
        ctx = context.detach().clone().requires_grad_(True)
        out = run_trajectory(
            unet,
            process,
            replace(sources, context=ctx),
            steps=steps,
            context_mask=context_mask,
            guidance=guidance,
        )
        for c in range(channels):
            for ph in range(height // patch):
                for pw in range(width // patch):
                    target = out[0, c, ph * patch : (ph + 1) * patch, pw * patch : (pw + 1) * patch]
                    (grad,) = torch.autograd.grad(target.sum(), ctx, retain_graph=True)
                    result[:, c, ph, pw] = (grad * context).sum(-1)[0].detach()
    return result.cpu()
