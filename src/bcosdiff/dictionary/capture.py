"""Capture U-Net activations over whole sampling runs and stream them to safetensors shards.

A *site* is a spatial-transformer block of the U-Net (``down.1.attn``, ``middle.0.attn``,
…). What is recorded there is the block's **update**, output − input, one row of ``C``
numbers per spatial position, for every U-Net call of every sampling step. Under guidance
only the conditional branch's rows are kept.

Each site gets its own folder of shards ``shard-00000.safetensors`` … holding

* ``activations`` ``(rows, C)`` (float16 by default),
* ``prompt`` (index into ``prompts.json``), ``seed``, ``step`` and ``position``
  (``h·W + w``) for every row,

with the site's spatial size in the header metadata. Shards are written atomically, so an
interrupted capture leaves only whole shards; :class:`ActivationShards` reads them back in
batches without loading the data set into memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from ..modeldir import atomic_write
from ..networks.blocks import SpatialTransformer

__all__ = ["ActivationShards", "ShardWriter", "capture_activations", "record_updates", "sites"]


def sites(unet: nn.Module) -> dict[str, SpatialTransformer]:
    """The U-Net's spatial-transformer blocks by name, in forward order."""
    return {name: m for name, m in unet.named_modules() if isinstance(m, SpatialTransformer)}


@contextmanager
def record_updates(unet: nn.Module, names: Sequence[str], rows: int | None = None):
    """Within the block, every forward pass of the named sites appends its update
    ``(N, H·W, C)`` (first ``rows`` batch rows only, if given) to ``records[name]``."""
    known = sites(unet)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown site(s) {unknown}; the U-Net has {list(known)}")
    records: dict[str, list[Tensor]] = {n: [] for n in names}
    handles = []

    def hook(name: str):
        def record(module: nn.Module, inputs: tuple, output: Tensor) -> None:
            update = (output - inputs[0]).detach()
            if rows is not None:
                update = update[:rows]
            records[name].append(update.flatten(2).transpose(1, 2).float().cpu())

        return record

    try:
        for name in names:
            handles.append(known[name].register_forward_hook(hook(name)))
        yield records
    finally:
        for handle in handles:
            handle.remove()


class ShardWriter:
    """Accumulate rows and their labels; write a shard every ``shard_rows`` rows."""

    def __init__(self, folder: Path, shard_rows: int, metadata: dict, dtype=torch.float16):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.shard_rows, self.metadata, self.dtype = shard_rows, metadata, dtype
        self.parts: dict[str, list[Tensor]] = {k: [] for k in ("activations", *LABELS)}
        self.pending = 0
        self.written: list[Path] = []

    def add(self, activations: Tensor, labels: dict[str, Tensor]) -> None:
        self.parts["activations"].append(activations.to(self.dtype))
        for key in LABELS:
            self.parts[key].append(labels[key].to(torch.int64))
        self.pending += activations.shape[0]
        while self.pending >= self.shard_rows:
            self._write(self.shard_rows)

    def close(self) -> list[Path]:
        if self.pending:
            self._write(self.pending)
        return self.written

    def _write(self, count: int) -> None:
        joined = {k: torch.cat(v) for k, v in self.parts.items()}
        shard = {k: v[:count].contiguous() for k, v in joined.items()}
        self.parts = {k: [v[count:]] for k, v in joined.items()}
        self.pending -= count
        path = self.folder / f"shard-{len(self.written):05d}.safetensors"
        meta = {k: json.dumps(v) for k, v in self.metadata.items()}
        atomic_write(path, lambda tmp: save_file(shard, str(tmp), metadata=meta))
        self.written.append(path)


LABELS = ("prompt", "seed", "step", "position")


@torch.no_grad()
def capture_activations(
    pipe,
    *,
    prompts: Sequence[str],
    seeds: Sequence[int],
    out: str | Path,
    names: Sequence[str],
    steps: int = 25,
    shard_rows: int = 65_536,
    guidance: float | None = None,
    dtype=torch.float16,
    progress=None,
) -> dict[str, list[Path]]:
    """Sample every ``(prompt, seed)`` and write the updates at ``names`` to
    ``out/<site>/shard-*.safetensors`` (and the prompts to ``out/prompts.json``)."""
    if len(prompts) != len(seeds):
        raise ValueError("one seed per prompt is needed")
    out = Path(out)
    known = sites(pipe.unet)
    writers = {}
    for name in names:
        if name not in known:
            raise ValueError(f"unknown site {name!r}; the U-Net has {list(known)}")
    atomic_write(out / "prompts.json", lambda tmp: tmp.write_text(json.dumps(list(prompts))))
    items = list(enumerate(zip(prompts, seeds, strict=True)))
    for index, (prompt, seed) in progress(items) if progress else items:
        with record_updates(pipe.unet, names, rows=1) as records:
            pipe.run(prompt, steps=steps, seed=seed, guidance=guidance)
        for name in names:
            calls = records[name]  # one (1, H·W, C) update per sampling step
            positions = calls[0].shape[1]
            if name not in writers:
                side = int(round(positions**0.5))
                meta = {
                    "site": name,
                    "model": pipe.name,
                    "height": side,
                    "width": positions // side,
                    "steps": steps,
                }
                writers[name] = ShardWriter(out / name, shard_rows, meta, dtype)
            activations = torch.cat([c[0] for c in calls])
            step = torch.arange(len(calls)).repeat_interleave(positions)
            labels = {
                "prompt": torch.full_like(step, index),
                "seed": torch.full_like(step, seed),
                "step": step,
                "position": torch.arange(positions).repeat(len(calls)),
            }
            writers[name].add(activations, labels)
    return {name: writer.close() for name, writer in writers.items()}


class ActivationShards:
    """The shards of one site: ``ActivationShards(out / site)``."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.paths = sorted(self.folder.glob("shard-*.safetensors"))
        if not self.paths:
            raise ValueError(f"no activation shards in {self.folder}")
        with safe_open(str(self.paths[0]), "pt") as handle:
            raw = handle.metadata() or {}
        self.metadata = {k: json.loads(v) for k, v in raw.items()}
        prompts = self.folder.parent / "prompts.json"
        self.prompts = json.loads(prompts.read_text()) if prompts.is_file() else []

    def __len__(self) -> int:
        total = 0
        for path in self.paths:
            with safe_open(str(path), "pt") as handle:
                total += handle.get_slice("activations").get_shape()[0]
        return total

    def shards(self, paths: Sequence[Path] | None = None) -> Iterator[dict[str, Tensor]]:
        for path in self.paths if paths is None else paths:
            with safe_open(str(path), "pt") as handle:
                yield {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118

    def split(self) -> tuple[list[Path], list[Path]]:
        """``(training shards, held-out shards)``: the last shard is held out (with one shard,
        both are that shard)."""
        if len(self.paths) == 1:
            return self.paths, self.paths
        return self.paths[:-1], self.paths[-1:]

    def stream(self, batch: int, paths: Sequence[Path], seed: int = 0) -> Iterator[Tensor]:
        """Shuffled float32 batches from ``paths``, passing over them again and again (one
        shard in memory at a time)."""
        epoch = 0
        while True:
            yield from self.batches(batch, shuffle=True, seed=seed + epoch, paths=paths)
            epoch += 1

    def batches(
        self,
        batch: int,
        shuffle: bool = False,
        seed: int = 0,
        labels: bool = False,
        paths: Sequence[Path] | None = None,
    ) -> Iterator[Tensor] | Iterator[dict[str, Tensor]]:
        """Float32 activation batches (rows shuffled within each shard when ``shuffle``);
        with ``labels`` the batches are dicts holding the labels too."""
        g = torch.Generator().manual_seed(seed)
        for shard in self.shards(paths):
            rows = shard["activations"].shape[0]
            order = torch.randperm(rows, generator=g) if shuffle else torch.arange(rows)
            for first in range(0, rows, batch):
                chosen = order[first : first + batch]
                x = shard["activations"][chosen].float()
                if labels:
                    yield {"activations": x, **{k: shard[k][chosen] for k in LABELS}}
                else:
                    yield x
