"""A pixel checker for shapes images: which coloured shapes does an image show?

It reads pixels only. Foreground pixels are those far from the background colour, which is
read from the image itself (the per-channel median of its border pixels: white on dataset
images, but a model may paint a tinted background); connected foreground regions
(4-connectivity) of a minimum area are objects. An object's colour is the palette colour
nearest to its median pixel.

Its shape is the dataset shape whose rendering fits the object best (:func:`fit_shape`). The
object's soft coverage (each pixel's share of the way from the background to the object's
colour) is compared with each shape rendered as the dataset draws it, at the object's
centroid, with the object's area, and softened by a Gaussian of 0, 0.5, 0.8 or 1.1 pixels;
the shape with the smallest squared difference wins. A model draws softer edges than the
dataset's renderer: on two-object dataset images blurred by σ = 0.7 px, the bounding-box
fill ratio this checker used before (circle ≈ π/4, square ≈ 1, triangle ≈ 1/2) read 80 % of
the shapes right against 97 % unblurred, and read small blurred squares as circles
(``benchmarks/checker_blur.py`` measures both rules). The fill ratio is still reported.
:func:`checker_accuracy` measures the checker itself on dataset images before it is trusted
with generated ones.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from ..data.shapes import COLOURS, SHAPES, ShapesDataset, shape_coverage
from ..pictures import border_colour, gaussian_blur

__all__ = [
    "DetectedObject",
    "ShapeChecker",
    "border_colour",
    "calibrate_fill_ratios",
    "checker_accuracy",
    "find_objects",
    "fit_shape",
]

TEMPLATE_BLURS = (0.0, 0.5, 0.8, 1.1)  # Gaussian σ (pixels) the shape templates are softened by
# Area of each dataset shape of radius r (data.shapes.shape_coverage): a circle πr²; a square
# of half side 0.85r; an upward equilateral triangle inscribed in a circle of 1.15r.
_AREA_PER_RADIUS2 = {
    "circle": np.pi,
    "square": 1.7**2,
    "triangle": 3 * np.sqrt(3) / 4 * 1.15**2,
}


@dataclass(frozen=True)
class DetectedObject:
    colour: str
    shape: str
    area: int
    fill_ratio: float
    centre: tuple[float, float]  # (x, y) in [0, 1]


def _components(mask: np.ndarray) -> list[np.ndarray]:
    """Pixel coordinate arrays of the 4-connected components of a boolean mask."""
    seen = np.zeros_like(mask, dtype=bool)
    height, width = mask.shape
    parts = []
    for y0, x0 in zip(*np.nonzero(mask), strict=True):
        if seen[y0, x0]:
            continue
        queue = deque([(y0, x0)])
        seen[y0, x0] = True
        pixels = []
        while queue:
            y, x = queue.popleft()
            pixels.append((y, x))
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < height and 0 <= nx < width and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    queue.append((ny, nx))
        parts.append(np.asarray(pixels))
    return parts


def _dilate(mask: np.ndarray, steps: int) -> np.ndarray:
    grown = mask.copy()
    for _ in range(steps):
        step = grown.copy()
        step[1:] |= grown[:-1]
        step[:-1] |= grown[1:]
        step[:, 1:] |= grown[:, :-1]
        step[:, :-1] |= grown[:, 1:]
        grown = step
    return grown


def fit_shape(
    image: np.ndarray, pixels: np.ndarray, background: np.ndarray | None = None
) -> tuple[str, dict[str, float]]:
    """The dataset shape that fits the region ``pixels`` (``(n, 2)`` row/column indices) of
    ``image`` best, and each shape's mean squared misfit.

    The region's soft coverage ``α`` (each pixel's projection onto the line from the
    background to the region's median colour, clipped to ``[0, 1]``) is read in the region
    grown by two pixels, so a soft rim counts and other objects do not. Each shape is
    rendered as the dataset draws it (:func:`~bcosdiff.data.shapes.shape_coverage`) at the
    ``α``-weighted centroid with the area ``Σα``, softened by each of
    :data:`TEMPLATE_BLURS`; a shape's misfit is its best over the blurs."""
    size = image.shape[0]
    background = border_colour(image) if background is None else np.asarray(background)
    pixels_f = image.astype(np.float64)
    colour = np.median(pixels_f[pixels[:, 0], pixels[:, 1]], axis=0)
    direction = colour - background
    region = np.zeros(image.shape[:2], dtype=bool)
    region[pixels[:, 0], pixels[:, 1]] = True
    window = _dilate(region, 2)
    alpha = ((pixels_f - background) @ direction) / max(float(direction @ direction), 1e-9)
    alpha = np.where(window, np.clip(alpha, 0.0, 1.0), 0.0)
    total = alpha.sum()
    ys, xs = np.mgrid[0:size, 0:size]
    centre = (
        float((alpha * (xs + 0.5)).sum() / total / size),
        float((alpha * (ys + 0.5)).sum() / total / size),
    )
    area = total / (size * size)
    misfit = {}
    for shape in SHAPES:
        radius = float(np.sqrt(area / _AREA_PER_RADIUS2[shape]))
        template = shape_coverage(shape, centre, radius, size)
        misfit[shape] = min(
            float(((gaussian_blur(template, sigma) - alpha)[window] ** 2).mean())
            for sigma in TEMPLATE_BLURS
        )
    return min(misfit, key=misfit.get), misfit


def _nearest_colour(rgb: np.ndarray) -> str:
    names = list(COLOURS)
    palette = np.asarray([COLOURS[n] for n in names], dtype=np.float64)
    return names[int(np.argmin(((palette - rgb) ** 2).sum(axis=1)))]


def find_objects(
    image: np.ndarray,
    min_area: int | None = None,
    threshold: float = 60.0,
    background: np.ndarray | None = None,
) -> list[tuple[np.ndarray, float]]:
    """``(pixels, fill_ratio)`` of foreground regions, largest first.

    ``background``: the RGB colour objects are told apart from; by default
    :func:`border_colour` of the image (the dataset's white ``BACKGROUND`` on dataset images).
    """
    size = image.shape[0]
    min_area = max(4, size * size // 200) if min_area is None else min_area
    background = border_colour(image) if background is None else np.asarray(background)
    distance = np.sqrt(((image.astype(np.float64) - background) ** 2).sum(-1))
    found = []
    for pixels in _components(distance > threshold):
        if len(pixels) < min_area:
            continue
        (y_lo, x_lo), (y_hi, x_hi) = pixels.min(0), pixels.max(0)
        box = (y_hi - y_lo + 1) * (x_hi - x_lo + 1)
        found.append((pixels, len(pixels) / box))
    return sorted(found, key=lambda item: -len(item[0]))


def calibrate_fill_ratios(size: int, samples: int = 300, seed: int = 12345) -> dict[str, float]:
    """Mean fill ratio of each shape on single-object dataset images at ``size``."""
    dataset = ShapesDataset(size=size, seed=seed, two_object_prob=0.0)
    ratios: dict[str, list[float]] = {s: [] for s in SHAPES}
    for index in range(samples):
        sample = dataset.sample(index)
        regions = find_objects(sample.image)
        if regions:
            ratios[sample.objects[0].shape].append(regions[0][1])
    return {shape: float(np.mean(values)) for shape, values in ratios.items() if values}


class ShapeChecker:
    """``ShapeChecker(size).detect(image) -> [DetectedObject, ...]`` (largest first)."""

    def __init__(self, size: int, fill_ratios: dict[str, float] | None = None):
        self.size = size
        self._fill_ratios = fill_ratios

    @property
    def fill_ratios(self) -> dict[str, float]:
        """Mean fill ratio per shape, for the earlier rule (:meth:`classify_shape`); the
        shapes are read by :func:`fit_shape`, so the calibration runs only when asked for."""
        if self._fill_ratios is None:
            self._fill_ratios = calibrate_fill_ratios(self.size)
        return self._fill_ratios

    def classify_shape(self, fill_ratio: float) -> str:
        return min(self.fill_ratios, key=lambda s: abs(self.fill_ratios[s] - fill_ratio))

    def detect(self, image: np.ndarray, max_objects: int = 2) -> list[DetectedObject]:
        return [obj for obj, _ in self.regions(image, max_objects)]

    def regions(
        self, image: np.ndarray, max_objects: int = 2
    ) -> list[tuple[DetectedObject, np.ndarray]]:
        """Detected objects with their ``(H, W)`` boolean pixel masks, largest first."""
        detected = []
        background = border_colour(image)
        for pixels, fill in find_objects(image, background=background)[:max_objects]:
            colours = image[pixels[:, 0], pixels[:, 1]].astype(np.float64)
            centre_y, centre_x = (pixels.mean(0) + 0.5) / image.shape[0]
            mask = np.zeros(image.shape[:2], dtype=bool)
            mask[pixels[:, 0], pixels[:, 1]] = True
            obj = DetectedObject(
                _nearest_colour(np.median(colours, axis=0)),
                fit_shape(image, pixels, background)[0],
                len(pixels),
                fill,
                (float(centre_x), float(centre_y)),
            )
            detected.append((obj, mask))
        return detected

    def matches(self, image: np.ndarray, wanted: list[tuple[str, str]]) -> tuple[bool, bool, bool]:
        """``(colours right, shapes right, all right)`` for the wanted (colour, shape) list.

        Every wanted object must be matched by a distinct detected object; for one object,
        colour and shape are judged separately on the largest region.
        """
        found = self.detect(image, max_objects=len(wanted))
        if len(found) < len(wanted):
            return False, False, False
        if len(wanted) == 1:
            colour_ok = found[0].colour == wanted[0][0]
            shape_ok = found[0].shape == wanted[0][1]
            return colour_ok, shape_ok, colour_ok and shape_ok
        got = [(f.colour, f.shape) for f in found]
        colours_ok = sorted(c for c, _ in got) == sorted(c for c, _ in wanted)
        shapes_ok = sorted(s for _, s in got) == sorted(s for _, s in wanted)
        return colours_ok, shapes_ok, sorted(got) == sorted(wanted)


def checker_accuracy(
    checker: ShapeChecker, samples: int = 300, seed: int = 777, two_objects: bool = False
) -> dict[str, float]:
    """Share of dataset images whose true objects the checker recognises."""
    dataset = ShapesDataset(
        size=checker.size, seed=seed, two_object_prob=1.0 if two_objects else 0.0
    )
    colour = shape = both = 0
    for index in range(samples):
        sample = dataset.sample(index)
        wanted = [(o.colour, o.shape) for o in sample.objects]
        c, s, b = checker.matches(sample.image, wanted)
        colour, shape, both = colour + c, shape + s, both + b
    return {"colour": colour / samples, "shape": shape / samples, "both": both / samples}
