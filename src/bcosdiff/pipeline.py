"""Text-to-image pipeline: a model directory's text encoder, U-Net and diffusion process."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image

from .data.shapes import caption_words
from .dictionary.steering import Steering, apply_steering
from .diffusion import (
    DDIMSchedule,
    DiffusionProcess,
    check_guidance,
    ddim_sample,
    decode_image,
    guided_prediction,
)
from .errors import BcosdiffError, ModelLoadError
from .explain.settings import ExplainSettings
from .explain.tokens import unknown_words
from .modeldir import load_unet, read_config, save_unet, update_config
from .networks import UNet, UNetConfig
from .pictures import to_image
from .request import RunRequest, shorten
from .text import Conditioning, TextConfig, TextEncoder
from .variants import get_variant

__all__ = ["Pipeline", "RunRequest", "create_model_directory", "load_pipeline"]


class Pipeline:
    """``Pipeline(unet, process, text).generate("a red circle", steps=25, seed=0)``.

    ``guidance`` is the model's default classifier-free guidance scale (``config.json``
    ``sampling.guidance``; 1 = no guidance); every sampling method takes ``guidance=`` to
    override it (:mod:`bcosdiff.diffusion.guidance`).
    """

    def __init__(
        self,
        unet: UNet,
        process: DiffusionProcess,
        text: TextEncoder,
        name: str = "",
        guidance: float = 1.0,
        explain_settings: ExplainSettings | None = None,
    ):
        if unet.config.context_dim != text.dim:
            raise ModelLoadError(
                f"U-Net expects {unet.config.context_dim}-d context, text model gives {text.dim}"
            )
        if unet.config.in_channels != process.channels:
            raise ModelLoadError("U-Net channels do not match the image encoding")
        self.unet = unet.eval()
        self.process = process
        self.text = text
        self.name = name
        self.guidance = check_guidance(guidance)
        # What the model directory says about explaining it (flag rule, binding limit,
        # compound names, training vocabulary); read by the explanation code, not here.
        self.explain_settings = explain_settings or ExplainSettings()

    @classmethod
    def from_directory(cls, directory: str | Path) -> Pipeline:
        directory = Path(directory)
        config = read_config(directory)
        for section in ("diffusion", "text"):
            if section not in config:
                raise ModelLoadError(f"{directory / 'config.json'} has no {section!r} section")
        try:
            process = DiffusionProcess.from_dict(config["diffusion"])
            text_config = TextConfig.from_dict(config["text"])
        except (TypeError, ValueError) as exc:
            raise ModelLoadError(f"bad config in {directory}: {exc}") from None
        try:
            explain_settings = ExplainSettings.from_section(config.get("explain", {}))
        except ValueError as exc:
            raise ModelLoadError(f"{exc} in {directory / 'config.json'}") from None
        sampling = config.get("sampling", {})
        guidance = sampling.get("guidance", 1.0) if isinstance(sampling, dict) else None
        if not isinstance(guidance, int | float) or not 0 <= guidance < float("inf"):
            raise ModelLoadError(f"bad 'sampling.guidance' in {directory / 'config.json'}")
        return cls(
            load_unet(directory),
            process,
            TextEncoder(text_config),
            name=directory.name,
            guidance=float(guidance),
            explain_settings=explain_settings,
        )

    def unknown_words(self, prompt: str) -> list[str]:
        """The content words of ``prompt`` that never occur in the model's training captions
        (:func:`~bcosdiff.explain.tokens.unknown_words`; none when the model does not list
        its vocabulary)."""
        return unknown_words(caption_words(prompt), self.explain_settings.vocabulary)

    @property
    def sample_size(self) -> int:
        return self.unet.config.sample_size

    def encode(self, prompts: list[str]) -> Conditioning:
        """Text conditioning; a prompt longer than the text model allows is truncated with a
        warning (the image and its explanation then cover only the kept tokens)."""
        cond = self.text(prompts)
        for prompt, cut in zip(prompts, cond.truncated, strict=True):
            if cut:
                warnings.warn(
                    f"prompt {shorten(prompt)!r} is longer than the text model's "
                    f"{self.text.config.max_length} tokens and was truncated",
                    stacklevel=3,
                )
        return cond

    def to(self, device: str | torch.device) -> Pipeline:
        """Move the U-Net to ``device`` (the text encoder's tables stay on the CPU: its
        output is moved with the run)."""
        self.unet.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    def initial_noise(self, seed: int, batch: int = 1) -> torch.Tensor:
        """``x_T`` drawn on the CPU from ``seed`` (the same on every device), on the model's
        device."""
        g = torch.Generator().manual_seed(seed)
        shape = (batch, self.process.channels, self.sample_size, self.sample_size)
        return self.process.prior_sample(shape, generator=g).to(self.device)

    def guidance_scale(self, guidance: float | None) -> float:
        """``guidance``, or the model's default when None (checked)."""
        try:
            return self.guidance if guidance is None else check_guidance(guidance)
        except ValueError as exc:
            raise BcosdiffError(str(exc)) from None

    def denoiser(
        self, cond: Conditioning, guidance: float | None = None, steering: Steering | None = None
    ):
        """``model(x_t, t)`` for the sampler: the U-Net conditioned on ``cond``, guided with
        both branches in one U-Net call when the scale is not 1, with ``steering``'s vector
        added at its site."""
        scale = self.guidance_scale(guidance)
        embeddings = cond.embeddings.to(self.device)
        mask = None if cond.mask is None else cond.mask.to(self.device)

        def model(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            with apply_steering(self.unet, steering):
                return guided_prediction(self.unet, x_t, t, embeddings, mask, scale)

        return model

    def request(
        self,
        prompt: str | RunRequest,
        *,
        steps: int = 25,
        seed: int = 0,
        eta: float = 0.0,
        guidance: float | None = None,
        schedule: DDIMSchedule | None = None,
        steering: Steering | None = None,
    ) -> RunRequest:
        """A :class:`~bcosdiff.request.RunRequest` checked against this model; a request
        passes through (its options then come from it alone)."""
        if isinstance(prompt, RunRequest):
            given = (steps, seed, eta, guidance, schedule, steering)
            if given != (25, 0, 0.0, None, None, None):
                raise TypeError("pass the options inside the RunRequest, not beside it")
            request = prompt
        else:
            request = RunRequest(
                prompt=prompt,
                steps=steps,
                seed=seed,
                eta=eta,
                guidance=guidance,
                schedule=schedule,
                steering=steering,
            )
        return request.check_for(self.process.num_train_timesteps)

    @torch.no_grad()
    def sample_batch(self, requests: Sequence[RunRequest]) -> torch.Tensor:
        """Encoded samples of several requests at once, with the sampler :meth:`run` uses:
        row ``i`` equals ``run(requests[i]).sample`` (each row's initial noise comes from its
        own seed; with ``eta > 0`` the between-step noise is drawn for the batch, from the
        first seed + 1). The requests may differ in prompt and seed only
        (:func:`~bcosdiff.request.batch_requests` builds them)."""
        requests = [self.request(r) for r in requests]
        if not requests:
            raise ValueError("a batch needs at least one request")
        first = requests[0]

        def shared(r: RunRequest) -> tuple:
            return (r.steps, r.eta, r.guidance, r.schedule, id(r.steering))

        if any(shared(r) != shared(first) for r in requests):
            raise ValueError(
                "the requests of a batch may differ in prompt and seed only "
                "(steps, eta, guidance, schedule and steering are shared)"
            )
        cond = self.encode([r.prompt for r in requests])
        x_T = torch.cat([self.initial_noise(r.seed) for r in requests])
        g = torch.Generator().manual_seed(first.seed + 1) if first.eta > 0 else None
        model = self.denoiser(cond, first.guidance, first.steering)
        if first.schedule is not None:
            timing = {"schedule": first.schedule}
        else:
            timing = {"steps": first.steps}
        return ddim_sample(model, self.process, x_T, eta=first.eta, generator=g, **timing).cpu()

    def prepare_run(self, prompt: str | RunRequest, **options):
        """The inputs of a run (a :class:`~bcosdiff.explain.GeneratedRun` not yet sampled):
        conditioning, ``x_T`` from the seed and, with ``eta > 0``, the per-step noise drawn
        from ``seed + 1`` (``options``: those of :meth:`request`)."""
        from .explain.run import GeneratedRun

        request = self.request(prompt, **options)
        schedule = request.schedule or DDIMSchedule.uniform(self.process, request.steps)
        cond = self.encode([request.prompt])
        x_T = self.initial_noise(request.seed)
        noise = None
        if request.eta > 0:
            g = torch.Generator().manual_seed(request.seed + 1)
            noise = [
                self.process.noise(tuple(x_T.shape), g).to(self.device)
                for _ in range(len(schedule))
            ]
        return GeneratedRun(
            prompt=request.prompt,
            seed=request.seed,
            schedule=schedule,
            conditioning=cond,
            x_T=x_T,
            encoding=self.process.encoding,
            eta=request.eta,
            step_noise=noise,
            guidance=self.guidance_scale(request.guidance),
            steering=request.steering,
        )

    @torch.no_grad()
    def run(
        self,
        prompt: str | RunRequest,
        *,
        progress: Callable[[int, int], None] | None = None,
        **options,
    ):
        """Sample one image: the only path that does. Returns a sampled
        :class:`~bcosdiff.explain.GeneratedRun` that keeps what every explanation method
        needs (``x_t``, the prediction and the predicted ``x0`` of every step). ``prompt`` is
        a :class:`~bcosdiff.request.RunRequest` or a prompt with the options of
        :meth:`request`; ``progress(done, total)`` is called after each step."""
        run = self.prepare_run(prompt, **options)
        states = []
        run.sample = ddim_sample(
            self.denoiser(run.conditioning, run.guidance, run.steering),
            self.process,
            run.x_T,
            eta=run.eta,
            schedule=run.schedule,
            noise=run.step_noise,
            callback=_recorder(states, progress, len(run.schedule)),
        )
        run.states = states
        return run

    def images(self, samples: torch.Tensor) -> list[Image.Image]:
        """PIL images of encoded samples."""
        rgb = decode_image(samples, self.process.encoding)
        return [to_image(rgb[i]) for i in range(rgb.shape[0])]

    def generate(self, prompt: str | RunRequest, **options) -> Image.Image:
        """One image (PIL): ``run(prompt, **options).image`` (``options``: those of
        :meth:`request`)."""
        return self.run(prompt, **options).image


def _recorder(states: list, progress, total: int):
    """The sampler callback of :meth:`Pipeline.run`: keep every step's state, report
    progress."""

    def record(state) -> None:
        states.append(state)
        if progress is not None:
            progress(state.index + 1, total)

    return record


def create_model_directory(
    directory: str | Path,
    variant: str = "bcos-x0",
    unet: dict | None = None,
    text: dict | None = None,
    seed: int = 0,
) -> Pipeline:
    """Write a freshly initialised model of ``variant`` (U-Net overrides in ``unet``)."""
    v = get_variant(variant)
    text_config = TextConfig.from_dict({"mode": v.text_mode, **(text or {})})
    encoder = TextEncoder(text_config)
    process = DiffusionProcess.from_dict(v.diffusion_section())
    unet_fields = {
        "kind": v.unet_kind,
        "in_channels": process.channels,
        "out_channels": process.channels,
        "context_dim": encoder.dim,
        **(unet or {}),
    }
    torch.manual_seed(seed)
    net = UNet(UNetConfig.from_dict(unet_fields))
    save_unet(net, Path(directory))
    update_config(
        Path(directory), variant=variant, diffusion=process.to_dict(), text=text_config.to_dict()
    )
    return Pipeline(net, process, encoder, name=Path(directory).name)


BUNDLED_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL = "bcos-x0"


def bundled_models() -> list[str]:
    """Names of the models shipped inside the package."""
    if not BUNDLED_DIR.is_dir():
        return []
    return sorted(p.name for p in BUNDLED_DIR.iterdir() if (p / "config.json").is_file())


def resolve_model(model: str | Path | None) -> Path:
    """A bundled model name, or a model directory path; ``None`` is the bundled default."""
    name = DEFAULT_MODEL if model is None else str(model)
    if (BUNDLED_DIR / name / "config.json").is_file() and "/" not in name:
        return BUNDLED_DIR / name
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    known = ", ".join(bundled_models()) or "none installed"
    if model is None:
        raise ModelLoadError(f"the bundled default model {DEFAULT_MODEL!r} is not installed")
    raise ModelLoadError(f"unknown model {name!r}: not a directory or bundled name ({known})")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """A torch device that exists here (``None``: the CPU); anything else is a clear error."""
    if device is None:
        return torch.device("cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise BcosdiffError(f"unknown device {str(device)!r} (e.g. cpu, cuda, cuda:1)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise BcosdiffError("device 'cuda' was asked for, but no CUDA GPU is available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise BcosdiffError(f"no CUDA device {device.index} here")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise BcosdiffError("device 'mps' was asked for, but MPS is not available")
    return device


def load_pipeline(
    model: str | Path | None = None, device: str | torch.device | None = None
) -> Pipeline:
    """``load_pipeline()`` (bundled default), ``load_pipeline("vanilla")`` or a directory;
    ``device`` (default the CPU) is where the U-Net runs and every tensor of a run lives."""
    pipe = Pipeline.from_directory(resolve_model(model))
    return pipe.to(resolve_device(device))
