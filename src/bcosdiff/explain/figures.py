"""Figures and files of ``bcosdiff explain``: images, heat maps, relevance chart, JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .report import Explanation

__all__ = ["save_explanation"]

UPSCALE = 256  # display size of the small generated images


def _to_pil(rgb: torch.Tensor) -> Image.Image:
    array = (rgb.clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    return Image.fromarray(array, mode="RGB")


def _big(image: Image.Image) -> Image.Image:
    return image.resize((UPSCALE, UPSCALE), Image.Resampling.NEAREST)


def _reconstruction_rgb(exp: Explanation) -> torch.Tensor:
    """The raw reconstruction shown like an image: R_rgb (and the mirrored R_inv), clipped."""
    recon = exp.reconstruction
    if recon.shape[0] == 6:
        return ((recon[:3] + (1 - recon[3:])) / 2).clamp(0, 1)
    return ((recon + 1) / 2).clamp(0, 1)


def _heatmap_figure(exp: Explanation, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = len(exp.tokens)
    cols = min(6, count)
    rows = (count + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.4 * rows), squeeze=False)
    limit = float(exp.heatmaps.abs().max()) or 1.0
    base = np.asarray(exp.image.convert("L"), dtype=float) / 255.0
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= count:
            continue
        ax.imshow(base, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.imshow(
            exp.heatmaps[k].numpy(),
            cmap="bwr",
            vmin=-limit,
            vmax=limit,
            alpha=0.65,
            interpolation="nearest",
        )
        ax.set_title(f"{exp.tokens[k]}  {exp.relevance[k]:.1%}", fontsize=9)
    fig.suptitle("token contributions (red +, blue −), shared colour scale", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _relevance_figure(exp: Explanation, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_img, ax_bar) = plt.subplots(
        1, 2, figsize=(9, 3.2), gridspec_kw={"width_ratios": [1, 2.2]}
    )
    ax_img.imshow(np.asarray(exp.image), interpolation="nearest")
    ax_img.axis("off")
    ax_img.set_title(exp.prompt, fontsize=9, wrap=True)
    flagged = set(exp.flagged_tokens)
    colours = ["#c0392b" if t.replace("##", "") in flagged else "#2c7fb8" for t in exp.tokens]
    positions = np.arange(len(exp.tokens))
    ax_bar.bar(positions, [100 * r for r in exp.relevance], color=colours)
    ax_bar.set_xticks(positions, exp.tokens, rotation=45, ha="right", fontsize=9)
    ax_bar.set_ylabel("relevance (%)")
    title = "token relevance"
    if flagged:
        title += f" — not reflected: {', '.join(sorted(flagged))}"
    ax_bar.set_title(title, fontsize=10)
    for spine in ("top", "right"):
        ax_bar.spines[spine].set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_explanation(exp: Explanation, out: Path) -> dict:
    """Write every artefact into ``out`` and return the explanation JSON (also written)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "image": "image.png",
        "reconstruction": "reconstruction.png",
        "heatmaps": "heatmaps.png",
        "relevance_chart": "relevance.png",
        "json": "explanation.json",
    }
    exp.image.save(out / files["image"])
    _big(_to_pil(_reconstruction_rgb(exp))).save(out / files["reconstruction"])
    if exp.normalized_reconstruction is not None:
        files["normalized_reconstruction"] = "normalized_reconstruction.png"
        _big(_to_pil(exp.normalized_reconstruction)).save(out / files["normalized_reconstruction"])
    _heatmap_figure(exp, out / files["heatmaps"])
    _relevance_figure(exp, out / files["relevance_chart"])
    data = {**exp.to_dict(), "files": files}
    (out / files["json"]).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return data
