"""``synthiqa generate`` and ``synthiqa merge`` (``synthiqa/datasets/generation/``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from synthiqa.cli.app import ChoicesCommand, app, console, err_console
from synthiqa.outputs import check_output_folder


# --- synthiqa generate / merge (datasets/generation/) -----------------------------------------------
@app.command("generate", cls=ChoicesCommand)
def generate_command(
    ref_dir: Optional[Path] = typer.Argument(None, help="Folder of reference images (recursive); "  # noqa: UP045
                                             "default: the built-in references."),
    out: Path = typer.Option(..., "--out", help="Output folder (new or empty, or the run to --resume)."),
    profile: str = typer.Option("basic8", help="Distortion profile: {profiles}."),
    mode: str = typer.Option("basic", help="Mode: {modes} (grid: every type x level; chains: ARNIQA; "
                             "basic: the guide)."),
    per_image: Optional[int] = typer.Option(None, help="Images per reference in chains/basic mode "  # noqa: UP045
                                            "(default 5)."),
    max_chain: Optional[int] = typer.Option(None, help="Longest chain in chains mode (default: the "  # noqa: UP045
                                            "profile's, 4)."),
    seed: int = typer.Option(0, help="Run seed; each image's seed derives from it and its name."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    batch_size: int = typer.Option(16, help="Images per device batch (chunk)."),
    workers: Optional[int] = typer.Option(None, help="CPU processes / GPU I/O threads; Ray: actors "  # noqa: UP045
                                          "(default: min(4, cores))."),
    max_side: Optional[int] = typer.Option(None, help="Shrink references to this longer side in px "  # noqa: UP045
                                           "(default: full size; built-ins 384); also admits images over "
                                           "the decompression-bomb guard, shrunk while decoding."),
    crop: Optional[str] = typer.Option(None, help="Centre crop WIDTHxHEIGHT instead of --max-side."),  # noqa: UP045
    shard: Optional[str] = typer.Option(None, help="I/N: make only shard I of N (merge them after)."),  # noqa: UP045
    resume: bool = typer.Option(False, "--resume", help="Finish an interrupted run in --out."),
    labels: str = typer.Option("level,fr", help="Labels: level (guide levels), fr (FR pseudo-MOS)."),
    image_format: str = typer.Option("png", "--format", help="Format: {formats} (png, bmp: image files, "
                                     "lossless; webdataset: tar shards of PNG + JSON samples)."),
    shard_size: Optional[int] = typer.Option(None, help="Images per WebDataset shard, about; shards hold "  # noqa: UP045
                                             "whole references [1000]."),
    engine: str = typer.Option("local", help="local (this machine) or ray (Ray Data; needs the ray extra)."),
    pipeline: str = typer.Option("auto", help="auto (CPU: worker processes) or device (the accelerator's "
                                 "one-process batched pipeline on any device, e.g. to check it on a CPU)."),
    ray_address: Optional[str] = typer.Option(None, help="Ray cluster to join: HOST:PORT, or auto for the "  # noqa: UP045
                                              "running one; default: start a local Ray instance."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Make a labelled distorted dataset (images, manifest.parquet, labels.csv, dataset.json, ...)."""
    from synthiqa.datasets.generate import GenerateConfig, generate, parse_shard
    from synthiqa.datasets.references import parse_crop

    check_output_folder(out)
    crop_size = parse_crop(crop)
    container = "webdataset" if image_format == "webdataset" else "files"
    config = GenerateConfig(
        out=str(out), ref_dir=None if ref_dir is None else str(ref_dir), profile=profile, mode=mode,
        per_image=per_image, max_chain=max_chain, seed=seed, max_side=max_side, crop=crop_size,
        labels=tuple(labels.split(",")), image_format="png" if container == "webdataset" else image_format,
        container=container, shard_size=shard_size, shard=parse_shard(shard), device=device,
        batch_size=batch_size, resume=resume, engine=engine, pipeline=pipeline, ray_address=ray_address,
        **({} if workers is None else {"workers": workers}),
    )
    summary = generate(config, console=err_console, progress=not quiet)
    if summary.skipped:
        err_console.print(f"skipped {len(summary.skipped)} file(s); see the warnings above", highlight=False)
    console.print(
        f"{summary.out}: {summary.images_total} images from {summary.references} references "
        f"({summary.images_written} written now in {summary.seconds:.1f} s, "
        f"{summary.images_per_second:.1f} images/s on {summary.device})", highlight=False)


@app.command("merge", cls=ChoicesCommand)
def merge_command(
    shard_dirs: list[Path] = typer.Argument(..., help="Output folders of the shard runs."),
    out: Path = typer.Option(..., "--out", help="New or empty folder for the merged dataset."),
) -> None:
    """Merge ``generate --shard`` runs into one dataset, identical to an unsharded run."""
    from synthiqa.datasets.generate import merge

    check_output_folder(out)
    summary = merge([str(d) for d in shard_dirs], str(out), console=err_console)
    console.print(f"{summary.out}: {summary.images_total} images from {summary.references} references "
                  f"merged from {len(shard_dirs)} runs in {summary.seconds:.1f} s", highlight=False)
