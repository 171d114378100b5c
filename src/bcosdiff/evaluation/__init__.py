"""Evaluation: pixel checkers and benchmarks against the data's ground truth."""

from .checker import DetectedObject, ShapeChecker, calibrate_fill_ratios, checker_accuracy

__all__ = ["DetectedObject", "ShapeChecker", "calibrate_fill_ratios", "checker_accuracy"]
