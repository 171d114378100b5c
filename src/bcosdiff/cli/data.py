"""``bcosdiff data``: build or check training data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import BcosdiffError

app = typer.Typer(help="Build or check training data.", no_args_is_help=True)


@app.command("shapes")
def data_shapes(
    out: Annotated[Path, typer.Argument(help="Output image folder.")],
    count: Annotated[int, typer.Option(help="Number of images.")] = 1000,
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 32,
    seed: Annotated[int, typer.Option(help="Data seed.")] = 0,
    two_object_prob: Annotated[float, typer.Option(help="Share of two-object images.")] = 0.3,
) -> None:
    """Write shapes images, masks and per-word ground truth as an image folder."""
    from ..data.export import export_shapes

    if count < 1 or size < 8:
        raise BcosdiffError("count must be >= 1 and size >= 8")
    export_shapes(out, count=count, size=size, seed=seed, two_object_prob=two_object_prob)
    typer.echo(f"{count} images in {out}")


@app.command("emoji")
def data_emoji(
    out: Annotated[Path, typer.Argument(help="Output image folder.")],
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="fluent, noto, openmoji, twemoji (SVG, the default) and/or twitter, google (PNG).",
        ),
    ] = None,
    tarball: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=PATH of an npm tarball at hand (a set or emojilib); else npm pack."
        ),
    ] = None,
    size: Annotated[int, typer.Option(help="Raster side of the SVG artwork in pixels.")] = 64,
    all_concepts: Annotated[
        bool, typer.Option("--all-concepts", help="Keep emoji that not every set draws.")
    ] = False,
) -> None:
    """Import emoji artwork from npm: images, alpha masks, names, keywords and licences."""
    from ..data.emoji import DEFAULT_SETS, import_emoji

    given = {}
    for item in tarball or []:
        name, sep, path = item.partition("=")
        if not sep:
            raise BcosdiffError(f"--tarball takes NAME=PATH, got {item!r}")
        given[name] = Path(path)
    counts = import_emoji(
        out,
        sets=sets or DEFAULT_SETS,
        tarballs=given,
        size=size,
        common_only=not all_concepts,
    )
    for name, n in counts.items():
        typer.echo(f"{name}: {n} images")


@app.command("laion")
def data_laion(
    parquet: Annotated[list[Path], typer.Argument(help="LAION metadata parquet files.")],
    out: Annotated[Path, typer.Option(help="Selection to write (.parquet).")] = Path(
        "laion-selection.parquet"
    ),
    objects: Annotated[str, typer.Option(help="Comma-separated object names.")] = (
        "banana,cat,goat,flamingo,penguin"
    ),
    top_n: Annotated[int, typer.Option(help="Rows kept per object.")] = 20_000,
    shards: Annotated[Path, typer.Option(help="Where img2dataset should write shards.")] = Path(
        "laion-shards"
    ),
) -> None:
    """Select the paper's LAION subset and print the img2dataset download command."""
    import pyarrow.parquet as pq

    from ..data.laion import img2dataset_command, select_laion

    names = tuple(o.strip() for o in objects.split(",") if o.strip())
    table = select_laion(list(parquet), names, top_n)
    pq.write_table(table, out)
    counts = {n: table.column("object").to_pylist().count(n) for n in names}
    typer.echo(f"selected {table.num_rows} rows {counts} -> {out}")
    typer.echo(img2dataset_command(out, shards))


@app.command("folder")
def data_folder(root: Annotated[Path, typer.Argument(help="Image folder.")]) -> None:
    """Check an image folder with metadata.jsonl (file_name, text)."""
    from ..data.images import read_metadata

    rows = read_metadata(root)
    typer.echo(f"{len(rows)} images with captions in {root}")
