"""Train the shapes feature extractor used for the domain Fréchet distance (one run).

    python benchmarks/train_shapes_features.py [--steps 3000] [--out PATH]

Writes the weights (safetensors) and prints the held-out accuracy: the share of images
whose set of colour/shape combinations and object count are all predicted right.
"""

from __future__ import annotations

import argparse
import time

from bcosdiff.evaluation.features import SHAPES_FEATURES, feature_accuracy, train_shapes_features
from bcosdiff.modeldir import write_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--out", default=str(SHAPES_FEATURES))
    args = parser.parse_args()
    start = time.perf_counter()
    net = train_shapes_features(steps=args.steps)
    print(f"trained {args.steps} steps in {time.perf_counter() - start:.0f} s")
    print(f"held-out accuracy (all combinations and the count right): {feature_accuracy(net):.1%}")
    write_weights(args.out, net.state_dict(), {"format": "pt"})
    print(args.out)


if __name__ == "__main__":
    main()
