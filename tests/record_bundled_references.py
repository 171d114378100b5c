"""Record the bundled models' reference outputs that ``tests/test_bundled.py`` compares with.

    python tests/record_bundled_references.py

Writes ``tests/data/bundled_references.safetensors``: the generated pixels of every
``BUNDLED_IMAGES`` case, and each ``BUNDLED_EXPLANATIONS`` case's relevance, token
contribution maps, sample and image. Run it only when a change is meant to change what the
bundled models produce, and say why in the commit. One thread, as the suite runs."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from test_bundled import (  # noqa: E402
    BUNDLED_EXPLANATIONS,
    BUNDLED_IMAGES,
    REFERENCES,
    explanation_case,
    explanation_key,
    image_key,
)

from bcosdiff.pipeline import load_pipeline  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    tensors = {}
    for model, prompt, seed, steps in BUNDLED_IMAGES:
        pixels = np.asarray(load_pipeline(model).generate(prompt, steps=steps, seed=seed))
        tensors[image_key(model, prompt, seed, steps)] = torch.from_numpy(pixels.copy())
    for model, prompt, _flagged, _misbound in BUNDLED_EXPLANATIONS:
        for name, value in explanation_case(model, prompt).items():
            tensors[explanation_key(model, prompt, name)] = value.contiguous()
    REFERENCES.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(REFERENCES))
    print(f"wrote {len(tensors)} tensors to {REFERENCES}")


if __name__ == "__main__":
    main()
