"""Data sets: procedural shapes with ground truth (emoji, LAION and image folders follow)."""

from .shapes import (
    COLOURS,
    HELD_OUT_TEMPLATES,
    POSITIONS,
    SHAPES,
    SIZES,
    ShapeObject,
    ShapeSample,
    ShapesDataset,
    caption_words,
    render_objects,
)

__all__ = [
    "COLOURS",
    "HELD_OUT_TEMPLATES",
    "POSITIONS",
    "SHAPES",
    "SIZES",
    "ShapeObject",
    "ShapeSample",
    "ShapesDataset",
    "caption_words",
    "render_objects",
]
