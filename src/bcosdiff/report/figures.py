"""Figures and files of ``bcosdiff explain``: images, heat maps, relevance chart, JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..diffusion import decode_image
from ..explain.explanation import Explanation
from ..explain.run import GeneratedRun
from ..pictures import to_image
from .overlays import UPSCALE, map_overlays, reconstruction_rgb, word_overlays

__all__ = ["panel_grid", "progression_strip", "save_explanation"]

MAX_COLUMNS = 6  # panels per row of the heat-map figure


def _big(image: Image.Image) -> Image.Image:
    return image.resize((UPSCALE, UPSCALE), Image.Resampling.NEAREST)


def panel_grid(panels: int, max_cols: int = MAX_COLUMNS) -> tuple[int, int]:
    """``(rows, cols)`` for ``panels`` panels: as few rows as ``max_cols`` allows, and the
    panels spread evenly over them (7 panels: 4 + 3, not 6 + 1)."""
    rows = math.ceil(panels / max_cols)
    return rows, math.ceil(panels / rows)


def _heatmap_figure(exp: Explanation, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    painted = exp.contribution_maps is not None
    overlays, scale = word_overlays(exp) if painted else map_overlays(exp)
    count = len(overlays)
    rows, cols = panel_grid(count + 1)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.4 * rows), squeeze=False)
    # The image, faded to light grey under every map so the map's colour reads clearly.
    grey = np.asarray(exp.image.convert("L"), dtype=float) / 255.0
    base = np.repeat((0.75 + 0.25 * grey)[..., None], 3, axis=2)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k == 0:
            ax.imshow(np.asarray(exp.image), interpolation="nearest")
            ax.set_title("image", fontsize=9)
        elif k <= count:
            ax.imshow(base, interpolation="nearest")
            ax.imshow(overlays[k - 1], interpolation="nearest")
            if exp.saliency is not None:
                ax.set_title(f"{exp.method} (all words)", fontsize=9)
            else:
                word = exp.words[k - 1]
                share = "" if exp.relevance is None else f"  {word.relevance:.1%}"
                ax.set_title(f"{word.text}{share}", fontsize=9)
    if painted:
        title = (
            "what each word painted: colour = the colour it paints, opacity = its share of the "
            f"pixel's departure from the background (one scale, full at {scale:.2f})"
        )
    else:
        title = f"{exp.method} maps (one scale, brightest at {scale:.3g})"
    fig.suptitle(title, fontsize=9, wrap=True)
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
    misbound = set(exp.misbound_words)

    def colour(token: str) -> str:
        word = token.replace("##", "")
        return "#c0392b" if word in flagged else "#e67e22" if word in misbound else "#2c7fb8"

    colours = [colour(t) for t in exp.tokens]
    positions = np.arange(len(exp.tokens))
    ax_bar.bar(positions, [100 * r for r in exp.relevance], color=colours)
    ax_bar.set_xticks(positions, exp.tokens, rotation=45, ha="right", fontsize=9)
    ax_bar.set_ylabel("relevance (%)")
    title = "token relevance"
    if flagged:
        title += f" — not reflected: {', '.join(sorted(flagged))}"
    if exp.unknown_words:
        title += f" — never in training: {', '.join(exp.unknown_words)}"
    if exp.binding[0]:
        title += "\n" + "; ".join(f.sentence() for f in exp.binding[0])
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
    files = {"image": "image.png"}
    exp.image.save(out / files["image"])
    if exp.reconstruction is not None:
        files["reconstruction"] = "reconstruction.png"
        _big(to_image(reconstruction_rgb(exp))).save(out / files["reconstruction"])
    if exp.normalized_reconstruction is not None:
        files["normalized_reconstruction"] = "normalized_reconstruction.png"
        _big(to_image(exp.normalized_reconstruction)).save(out / files["normalized_reconstruction"])
    if exp.heatmaps is not None:
        files["heatmaps"] = "heatmaps.png"
        _heatmap_figure(exp, out / files["heatmaps"])
    if exp.relevance is not None:
        files["relevance_chart"] = "relevance.png"
        _relevance_figure(exp, out / files["relevance_chart"])
    files["json"] = "explanation.json"
    data = {**exp.to_dict(), "files": files}
    (out / files["json"]).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return data


def progression_strip(run: GeneratedRun, scale: int = 4) -> Image.Image:
    """The clean image predicted at every step of ``run``, left (noisiest) to right, each
    enlarged ``scale`` times (the denoising-progression view)."""
    rgb = decode_image(run.progression(), run.encoding).clamp(0, 1)
    row = torch.cat(list(rgb), dim=2)  # (3, H, steps·W)
    image = to_image(row)
    return image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
