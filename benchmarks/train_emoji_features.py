"""Train the emoji feature extractor used for recognisability and the emoji Fréchet distance.

    python benchmarks/train_emoji_features.py --data data/emoji [--steps 3000] [--out PATH]

Trains on emoji scenes of the import in ``--data`` (data seed 1; the default concept
subset), writes the weights (safetensors, with the concept keys in the metadata) and prints
the instrument's accuracy on real images it was not trained on (data seed 77): retrieval of
lone emoji, retrieval with the emoji's own style left out of the gallery, and both emoji of
two-emoji scenes found.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict

from bcosdiff.data.emoji_scenes import EmojiScenes
from bcosdiff.evaluation.emoji import EmojiGallery, instrument_accuracy
from bcosdiff.evaluation.emoji_features import (
    EMOJI_FEATURES,
    save_emoji_features,
    train_emoji_features,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="an emoji import (bcosdiff data emoji)")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--out", default=str(EMOJI_FEATURES))
    args = parser.parse_args()
    scenes = EmojiScenes(args.data, seed=1, two_object_prob=0.3, three_object_prob=0.1)
    start = time.perf_counter()
    net = train_emoji_features(scenes, steps=args.steps)
    print(f"trained {args.steps} steps in {time.perf_counter() - start:.0f} s")
    for name, value in asdict(instrument_accuracy(EmojiGallery(net, scenes))).items():
        print(f"{name:18s} {value:.1%}")
    save_emoji_features(net, args.out, note=f"{args.steps} steps, data seed 1")
    print(args.out)


if __name__ == "__main__":
    main()
