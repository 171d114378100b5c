"""Faithfulness of explanation methods, measured against ground truth.

Prompts come with ground truth (:mod:`.truth`): for every word it is known which asked
object it describes (or that it is filler). Shapes prompts use held-out caption templates and
the pixel checker; emoji scene prompts use held-out templates and retrieval among the real
emoji. The model generates each image once; the ground truth's reader finds the asked objects
in it, their pixel masks and whether each is drawn as asked. Every method then explains the
*same* run (:mod:`bcosdiff.explain.methods`; the benchmark checks that each explanation shows
that very image) and is scored (:mod:`.scoring`, :mod:`.metrics`) by:

* **localisation** — for each word that describes a found object: the share of the positive
  mass of the word's map inside that object's mask, and the pointing game (does the map's
  maximum fall inside the mask dilated by one pixel); reported for all object words and, on
  one-object prompts, for the key words (colour and shape words; an emoji's name words);
* **token specificity** — on two-object images in which a distinct region is found for each
  asked object: for every word of one object, the share of its map's positive mass on its own
  object's region out of its mass on both regions (0.5: the map does not tell the objects
  apart). Reported as the mean share, the fraction above 0.5 and the number of images; also on
  the images that show both objects right;
* **relevance separation** — mean relevance of object words over that of filler words;
* **failure detection** — an asked object is *missed* when the image does not show it as
  asked; its detector score is the lowest peer ratio of its key words
  (:func:`~bcosdiff.explain.tokens.peer_ratios`), and AUROC measures how well low scores pick
  out the missed objects (word level too). Once from word relevance, once from each word's
  positive map mass;
* **deletion** — each content word is removed from the prompt and the image regenerated with
  the same seed; Spearman's ρ between the mean absolute pixel change and the word's relevance,
  per prompt (averaged) and pooled over all words;
* **insertion / deletion AUC** — the games of :mod:`bcosdiff.evaluation.insertion` on one
  step of the run, with the method's image-level map (its own, or the sum of the positive
  parts of the content words' maps);
* **cost** — U-Net rows (batch rows seen by the network's first layer) and wall time per
  image relative to generating it.

With ``shown_only`` (``eval faithfulness --shown-only``) the methods explain only the images
that show every asked object, so that token specificity can be measured on enough images in
which each word has an object of its own (with ``--two-object-share 1``); every other
measure is then one of those images alone, and failure detection has nothing to detect.

A method gets only the measures it supports: relevance-based ones need word scores, token
specificity and map-based failure detection need one map per word. :mod:`.report` holds the
one list of measures, from which the JSON and the table are made.
"""

from .metrics import localisation, specificity
from .report import MEASURES, FaithfulnessResult, faithfulness_markdown
from .runner import evaluate_faithfulness, without_word
from .scoring import Attribution, to_attribution
from .truth import EmojiTruth, FoundObject, ShapesTruth, TruthPrompt

__all__ = [
    "MEASURES",
    "Attribution",
    "EmojiTruth",
    "FaithfulnessResult",
    "FoundObject",
    "ShapesTruth",
    "TruthPrompt",
    "evaluate_faithfulness",
    "faithfulness_markdown",
    "localisation",
    "specificity",
    "to_attribution",
    "without_word",
]
