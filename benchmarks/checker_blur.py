"""How well does the shapes checker read shapes drawn with soft edges, as a model draws them?

    python benchmarks/checker_blur.py [--samples 300] [--blur 0 0.5 0.7 1.0]

Held-out dataset images (one object, and two objects) are softened by a Gaussian of each
``--blur`` σ (pixels) and read by the checker. For every image the share whose asked shapes
the checker reads right is printed for both rules, measured on the same images in one run:

* ``template fit`` — the checker's rule (:func:`bcosdiff.evaluation.checker.fit_shape`);
* ``fill ratio`` — the earlier rule: the calibrated bounding-box fill ratio nearest to the
  region's (:meth:`~bcosdiff.evaluation.ShapeChecker.classify_shape`).

Shapes are compared as sorted lists per image, as :meth:`ShapeChecker.matches` compares them.
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image, ImageFilter

from bcosdiff.data.shapes import ShapesDataset
from bcosdiff.evaluation import ShapeChecker


def read_right(checker: ShapeChecker, image: np.ndarray, wanted: list[str]) -> tuple[bool, bool]:
    """Whether the template fit and the fill-ratio rule read the ``wanted`` shapes."""
    found = checker.detect(image, max_objects=len(wanted))
    if len(found) < len(wanted):
        return False, False
    fitted = sorted(f.shape for f in found)
    by_fill = sorted(checker.classify_shape(f.fill_ratio) for f in found)
    return fitted == sorted(wanted), by_fill == sorted(wanted)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=777)
    parser.add_argument("--blur", type=float, nargs="+", default=[0.0, 0.5, 0.7, 1.0])
    args = parser.parse_args()
    checker = ShapeChecker(args.size)
    print("| objects | blur σ (px) | template fit | fill ratio |")
    print("| ---: | ---: | ---: | ---: |")
    for objects in (1, 2):
        dataset = ShapesDataset(
            size=args.size, seed=args.seed, two_object_prob=1.0 if objects == 2 else 0.0
        )
        samples = [dataset.sample(i) for i in range(args.samples)]
        for sigma in args.blur:
            right = np.zeros(2)
            for sample in samples:
                image = sample.image
                if sigma > 0:
                    image = np.asarray(
                        Image.fromarray(image).filter(ImageFilter.GaussianBlur(sigma))
                    )
                right += read_right(checker, image, [o.shape for o in sample.objects])
            fit, fill = right / len(samples)
            print(f"| {objects} | {sigma:g} | {fit:.3f} | {fill:.3f} |")


if __name__ == "__main__":
    main()
