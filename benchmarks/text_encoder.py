"""Cost of the frozen text encoder per training batch (one run).

    python benchmarks/text_encoder.py [--batch 32] [--max-length 24] [--repeats 5]

The frozen-encoder variants (``bcos-clip-*``, ``vanilla``) encode every training batch
with the text model's penultimate layer. This times bcosdiff's encoder, which drops the
unused last layer, against the whole Hugging Face model with ``output_hidden_states``, on
the same tokenised shapes captions, checks that both give the same numbers, and prints
the seconds per batch and their ratio, measured in this run (interleaved).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import AutoModel

from bcosdiff.data import ShapesDataset
from bcosdiff.text import TextConfig, TextEncoder
from bcosdiff.text.encoder import resolve_text_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    data = ShapesDataset(seed=1, size=32, two_object_prob=0.7)
    captions = [data[i]["caption"] for i in range(args.batch)]
    ours = TextEncoder(TextConfig(mode="encoder", max_length=args.max_length))
    full = AutoModel.from_pretrained(
        resolve_text_model(ours.config.model), local_files_only=True, use_safetensors=True
    ).eval()
    tokens = ours.tokenize(captions)

    def whole_model() -> torch.Tensor:
        with torch.no_grad():
            out = full(
                input_ids=tokens["input_ids"],
                attention_mask=tokens["attention_mask"],
                output_hidden_states=True,
            )
        return out.hidden_states[-2]

    same = torch.equal(ours(captions).embeddings, whole_model())
    times: dict[str, list[float]] = {"bcosdiff encoder": [], "whole model": []}
    for _ in range(args.repeats + 1):
        for name, run in (
            ("bcosdiff encoder", lambda: ours(captions)),
            ("whole model", whole_model),
        ):
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, {args.batch} captions, "
        f"{args.max_length} positions, median of {args.repeats}; identical states: {same}"
    )
    medians = {name: statistics.median(values[1:]) for name, values in times.items()}
    for name, seconds in medians.items():
        print(f"{name:17s} {seconds * 1e3:7.1f} ms / batch")
    ratio = medians["whole model"] / medians["bcosdiff encoder"]
    print(f"whole model / bcosdiff encoder: {ratio:.2f}x")


if __name__ == "__main__":
    main()
