"""``bcosdiff sae``: dictionary learning on U-Net activations."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import BcosdiffError
from .options import (
    DeviceOption,
    GuidanceOption,
    ModelOption,
    ProgressOption,
    StepsOption,
)
from .output import writing

app = typer.Typer(
    help="Dictionary learning on U-Net activations: sparse autoencoders and ITDA.",
    no_args_is_help=True,
)


@app.command("sites")
def sae_sites(model: ModelOption = None) -> None:
    """List the model's sites (spatial-transformer blocks) with channels and resolution."""
    import torch

    from ..dictionary import record_updates, sites
    from ..pipeline import load_pipeline

    pipe = load_pipeline(model)
    known = sites(pipe.unet)
    size, config = pipe.sample_size, pipe.unet.config
    x = torch.zeros(1, config.in_channels, size, size)
    with torch.no_grad(), record_updates(pipe.unet, list(known)) as records:
        pipe.unet(x, torch.zeros(1, dtype=torch.long), torch.zeros(1, 1, config.context_dim))
    for name, module in known.items():
        side = int(round(records[name][0].shape[1] ** 0.5))
        typer.echo(f"{name}\t{module.proj_out.out_features} channels\t{side}x{side}")


@app.command("capture")
def sae_capture(
    model: ModelOption = None,
    site: Annotated[
        list[str] | None, typer.Option(help="Site(s) to record (bcosdiff sae sites).")
    ] = None,
    prompts: Annotated[int, typer.Option(help="Shapes training captions to sample.")] = 200,
    steps: StepsOption = 25,
    seed: Annotated[int, typer.Option(help="Caption seed; caption k uses noise seed k.")] = 0,
    shard_rows: Annotated[int, typer.Option(help="Rows per shard.")] = 65_536,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("activations"),
    guidance: GuidanceOption = None,
    device: DeviceOption = None,
    progress: ProgressOption = True,
) -> None:
    """Record the update (output - input) of U-Net sites at every position and step."""
    from tqdm import tqdm

    from ..data.captions import load_captions
    from ..dictionary import capture_activations, sites
    from ..pipeline import load_pipeline

    if prompts < 1 or steps < 1 or shard_rows < 1:
        raise BcosdiffError("prompts, steps and shard-rows must be at least 1")
    pipe = load_pipeline(model, device)
    names = site or list(sites(pipe.unet))[-1:]
    known = sites(pipe.unet)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise BcosdiffError(f"unknown site(s) {', '.join(unknown)}; known: {', '.join(known)}")
    captions = load_captions("shapes", prompts, seed)
    bar = (lambda items: tqdm(items, desc="prompts", unit="prompt")) if progress else None
    with writing(out):
        written = capture_activations(
            pipe,
            prompts=captions,
            seeds=list(range(prompts)),
            out=out,
            names=names,
            steps=steps,
            shard_rows=shard_rows,
            guidance=guidance,
            progress=bar,
        )
    for name, paths in written.items():
        typer.echo(f"{name}: {len(paths)} shard(s) in {out / name}")


@app.command("train")
def sae_train(
    activations: Annotated[Path, typer.Argument(help="A site's shard folder (sae capture).")],
    kind: Annotated[str, typer.Option(help="sae, itda or neurons (the baseline).")] = "sae",
    features: Annotated[int, typer.Option(help="SAE dictionary size (ITDA: cap / 16).")] = 256,
    k: Annotated[int, typer.Option(help="Non-zero codes per row (SAE TopK, ITDA L0).")] = 8,
    steps: Annotated[int, typer.Option(help="Training batches.")] = 2000,
    batch: Annotated[int, typer.Option(help="Rows per batch.")] = 512,
    lr: Annotated[float, typer.Option(help="SAE learning rate (Adam).")] = 1e-3,
    threshold: Annotated[float, typer.Option(help="ITDA's loss threshold τ.")] = 0.3,
    seed: Annotated[int, typer.Option(help="Shuffling and initialisation seed.")] = 0,
    out: Annotated[Path, typer.Option(help="Dictionary file (.safetensors).")] = Path(
        "dictionary.safetensors"
    ),
) -> None:
    """Learn a dictionary on all shards but the last; measure FVU, L0 and dead share on it."""
    import json

    from ..dictionary import ActivationShards
    from ..dictionary.store import save_dictionary
    from ..dictionary.workflow import learn_dictionary

    if min(features, k, steps, batch) < 1 or not lr > 0 or not 0 < threshold < 1:
        raise BcosdiffError("need features, k, steps, batch >= 1, lr > 0 and 0 < threshold < 1")
    if kind == "sae" and k > features:
        raise BcosdiffError(f"k ({k}) cannot exceed the dictionary size ({features})")
    try:
        shards = ActivationShards(activations)
    except ValueError as exc:
        raise BcosdiffError(str(exc)) from None
    stored, metrics = learn_dictionary(
        shards,
        kind,
        features=features,
        k=k,
        steps=steps,
        batch=batch,
        lr=lr,
        threshold=threshold,
        seed=seed,
    )
    report = {
        "kind": kind,
        "site": stored.site,
        "model": stored.source_model,
        "held_out": metrics.to_dict(),
    }
    with writing(out):
        save_dictionary(out, stored)
        out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    typer.echo(
        f"{kind} at {stored.site}: {metrics.features} features, held-out FVU {metrics.fvu:.4f}, "
        f"L0 {metrics.l0:.2f}, dead {metrics.dead_share:.1%} ({metrics.rows} rows) -> {out}"
    )


@app.command("interpret")
def sae_interpret(
    dictionary: Annotated[Path, typer.Argument(help="Dictionary file (sae train).")],
    model: ModelOption = None,
    images: Annotated[int, typer.Option(help="Held-out shapes images.")] = 200,
    cards: Annotated[int, typer.Option(help="Feature cards to draw (best first).")] = 8,
    min_rows: Annotated[
        int, typer.Option(help="Score only features active on at least this many positions.")
    ] = 100,
    seed: Annotated[
        int | None, typer.Option(help="Data seed of the held-out images [default: 123].")
    ] = None,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("interpretation"),
    device: DeviceOption = None,
) -> None:
    """Match every feature to the shapes attribute it tracks best (AUROC vs ground truth)."""
    import json

    from ..dictionary.store import load_dictionary
    from ..dictionary.workflow import interpret_dictionary, write_feature_cards
    from ..pipeline import load_pipeline

    if images < 2 or cards < 0:
        raise BcosdiffError("need images >= 2 and cards >= 0")
    stored = load_dictionary(dictionary)
    pipe = load_pipeline(model, device)
    found = interpret_dictionary(pipe, stored, images=images, min_rows=min_rows, seed=seed)
    with writing(out):
        out.mkdir(parents=True, exist_ok=True)
        data = {
            "dictionary": str(dictionary),
            "kind": stored.kind,
            "site": stored.site,
            "images": images,
            "seed": found.seed,
            "summary": found.summary,
            "features": [r.__dict__ for r in found.readings],
        }
        (out / "interpretation.json").write_text(json.dumps(data, indent=2) + "\n")
        write_feature_cards(found, stored, out=out, cards=cards, size=pipe.sample_size)
    typer.echo(json.dumps(found.summary, indent=2))
