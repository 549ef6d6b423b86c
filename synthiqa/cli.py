"""The ``synthiqa`` command line. It only parses options and calls one library function per command."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from synthiqa.errors import SynthiqaError

app = typer.Typer(
    help="synthiqa: synthetic distortion datasets, quality models and benchmarks for IQA research.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
bench_app = typer.Typer(help="Benchmarks: quality suites and speed of the engine.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")

console = Console()
err_console = Console(stderr=True)


@app.command("list")
def list_command(
    profile: str = typer.Option("kadid", help="Profile: kadid, arniqa or basic8."),
    extra: bool = typer.Option(False, "--extra", help="Also list the extra group (rain, fog, ...)."),
) -> None:
    """List the distortions of a profile with their KADID id, group and level table."""
    from rich.table import Table

    from synthiqa.distortions import get_distortion, list_distortions

    table = Table(title=f"profile {profile}")
    for col in ("name", "kadid id", "group", "parameters per level 1..5", "exact on"):
        table.add_column(col)
    for name in list_distortions(profile, include_extra=extra):
        d = get_distortion(name, profile)
        params = "; ".join(f"{k}={list(v)}" for k, v in d.table.params.items())
        table.add_row(name, str(d.kadid_id or "-"), d.group, params, ",".join(d.exact_on))
    console.print(table)


# --- synthiqa grid (reports/grid.py) ---------------------------------------------------------------
def _float_list(text: str, option: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SynthiqaError(f"{option} must be comma-separated numbers, got {text!r}") from None


@app.command("grid")
def grid_command(
    image: Optional[Path] = typer.Argument(None, help="Reference image; default: the built-in astronaut."),  # noqa: UP045
    profile: str = typer.Option("kadid", help="Profile: kadid, arniqa or basic8."),
    out: Path = typer.Option(Path("grid.png"), help="Output PNG (written atomically)."),
    levels: Optional[str] = typer.Option(  # noqa: UP045
        None, help="Comma-separated levels in [1,5]; default 1..5 (basic8: severities .25,.5,.75,1)."),
    extra: bool = typer.Option(False, "--extra", help="Add the extra group (rain, fog, lens, aberration)."),
    size: int = typer.Option(256, help="Shorter image side in px, resized before distorting."),
    seed: int = typer.Option(0, help="Run seed (each row uses one seed in every column)."),
    device: str = typer.Option("cpu", help="torch device, e.g. cpu or cuda."),
) -> None:
    """Render distortions (rows) x levels (columns) on one image as a labelled PNG."""
    from synthiqa.reports.grid import render_distortion_grid

    cols = _float_list(levels, "--levels") if levels else None
    grid = render_distortion_grid(image, profile, cols, out, include_extra=extra, size=size, seed=seed,
                                  device=device)
    console.print(f"wrote {out} ({grid.width}x{grid.height} px)")



# --- synthiqa generate / merge (datasets/generate.py) ----------------------------------------------
@app.command("generate")
def generate_command(
    ref_dir: Optional[Path] = typer.Argument(None, help="Folder of reference images (recursive); "  # noqa: UP045
                                             "default: the built-in references."),
    out: Path = typer.Option(..., "--out", help="Output folder (new or empty, or the run to --resume)."),
    profile: str = typer.Option("basic8", help="Distortion profile: kadid, arniqa or basic8."),
    mode: str = typer.Option("basic", help="grid (every type x level), chains (ARNIQA), basic (guide)."),
    per_image: Optional[int] = typer.Option(None, help="Images per reference in chains/basic mode [5]."),  # noqa: UP045
    max_chain: Optional[int] = typer.Option(None, help="Longest chain in chains mode [profile's, 4]."),  # noqa: UP045
    seed: int = typer.Option(0, help="Run seed; each image's seed derives from it and its name."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    batch_size: int = typer.Option(16, help="Images per device batch (chunk)."),
    workers: Optional[int] = typer.Option(None, help="Decode threads and write threads [min(4, cores)]."),  # noqa: UP045
    max_side: Optional[int] = typer.Option(None, help="Shrink references to this longer side in px "  # noqa: UP045
                                           "[built-ins: 512]."),
    crop: Optional[str] = typer.Option(None, help="Centre crop WIDTHxHEIGHT instead of --max-side."),  # noqa: UP045
    shard: Optional[str] = typer.Option(None, help="I/N: make only shard I of N (merge them after)."),  # noqa: UP045
    resume: bool = typer.Option(False, "--resume", help="Finish an interrupted run in --out."),
    labels: str = typer.Option("level,fr", help="Labels: level (guide levels), fr (FR pseudo-MOS)."),
    image_format: str = typer.Option("png", "--format", help="png or bmp (lossless)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Make a labelled distorted dataset (images, manifest.parquet, labels.csv, dataset.json, ...)."""
    from synthiqa.datasets.generate import GenerateConfig, generate, parse_shard
    from synthiqa.datasets.references import parse_crop

    config = GenerateConfig(
        out=str(out), ref_dir=None if ref_dir is None else str(ref_dir), profile=profile, mode=mode,
        per_image=per_image, max_chain=max_chain, seed=seed, max_side=max_side, crop=parse_crop(crop),
        labels=tuple(labels.split(",")), image_format=image_format, shard=parse_shard(shard),
        device=device, batch_size=batch_size, resume=resume,
        **({} if workers is None else {"workers": workers}),
    )
    summary = generate(config, console=err_console, progress=not quiet)
    if summary.skipped:
        err_console.print(f"skipped {len(summary.skipped)} file(s); see the warnings above", highlight=False)
    console.print(
        f"{summary.out}: {summary.images_total} images from {summary.references} references "
        f"({summary.images_written} written now in {summary.seconds:.1f} s, "
        f"{summary.images_per_second:.1f} images/s on {summary.device})", highlight=False)


@app.command("merge")
def merge_command(
    shard_dirs: list[Path] = typer.Argument(..., help="Output folders of the shard runs."),
    out: Path = typer.Option(..., "--out", help="New or empty folder for the merged dataset."),
) -> None:
    """Merge ``generate --shard`` runs into one dataset, identical to an unsharded run."""
    from synthiqa.datasets.generate import merge

    summary = merge([str(d) for d in shard_dirs], str(out), console=err_console)
    console.print(f"{summary.out}: {summary.images_total} images from {summary.references} references "
                  f"merged from {len(shard_dirs)} runs in {summary.seconds:.1f} s", highlight=False)



# --- synthiqa train / predict / evaluate (models/) -------------------------------------------------


# --- synthiqa bench speed / bench generate / bench run (benchmarks/) -------------------------------
@bench_app.command("speed")
def bench_speed_command(
    device: str = typer.Option("cpu", help="torch device for synthiqa and Kornia: cpu or cuda."),
    size: str = typer.Option("512x384", help="Image size WIDTHxHEIGHT in px."),
    batch: int = typer.Option(32, help="Images per batch."),
    repeats: int = typer.Option(3, help="Timed runs per op after one warm-up; the median is kept."),
    level: int = typer.Option(4, help="KADID level 1..5 used for every op."),
    only: Optional[str] = typer.Option(None, help="Comma-separated distortions to time (skips the mix)."),  # noqa: UP045
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the results as JSON (atomic)."),  # noqa: UP045
    seed: int = typer.Option(0, help="First per-image seed."),
) -> None:
    """Images/s of each kadid distortion in synthiqa, Albumentations (CPU) and Kornia, with ratios."""
    from rich.progress import Progress
    from rich.table import Table

    from synthiqa.benchmarks import speed

    config = speed.SpeedConfig(device=device, size=speed.parse_size(size), batch=batch, repeats=repeats,
                               level=level, only=tuple(n.strip() for n in only.split(",")) if only else (),
                               seed=seed)
    with Progress(transient=True, console=err_console) as bar:
        task = bar.add_task("timing", total=None)
        result = speed.run_speed_benchmark(
            config, lambda name: bar.update(task, description=f"timing {name}"))
    w, h = config.size
    table = Table(title=f"images/s, {w}x{h}, batch {batch}, level {level}, device {device} "
                        f"(median of {repeats})")
    for col in ("distortion", "synthiqa", "albumentations", "ratio", "albumentations op", "kornia", "ratio",
                "kornia op"):
        table.add_column(col, justify="right" if col in ("synthiqa", "albumentations", "kornia", "ratio")
                         else "left")
    for r in result.rows:
        table.add_row(r.name, speed.format_rate(r.synthiqa), speed.format_rate(r.albumentations),
                      speed.format_ratio(r.ratio_albumentations), r.albumentations_op or "-",
                      speed.format_rate(r.kornia), speed.format_ratio(r.ratio_kornia), r.kornia_op or "-")
    console.print(table)
    for line in speed.summary_lines(result):
        console.print(line)
    if json_out is not None:
        speed.write_speed_json(result, str(json_out))
        console.print(f"wrote {json_out}")



# --- synthiqa report (reports/) --------------------------------------------------------------------


def main(argv: Optional[list[str]] = None) -> None:  # noqa: UP045 (typer needs Optional on 3.10)
    """Entry point: user mistakes print one line on stderr and exit with status 2."""
    try:
        app(args=argv, prog_name="synthiqa", standalone_mode=True)
    except SynthiqaError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted; finished outputs are kept, rerun with --resume to continue")
        sys.exit(130)


if __name__ == "__main__":
    main()


__all__ = ["app", "main", "Path"]
