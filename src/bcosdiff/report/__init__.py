"""The report of an explanation: figures, overlays and the interactive HTML view.

It reads an :class:`~bcosdiff.explain.Explanation` (and a sampled run for the progression
strip) and nothing upstream: no model, no sampling, no attribution. Importing it makes the
HTML view an explanation's notebook display (``bcosdiff.load_pipeline`` imports it).
"""

from .figures import progression_strip, save_explanation
from .html import explanation_html, explanation_page

__all__ = ["explanation_html", "explanation_page", "progression_strip", "save_explanation"]
