"""The ``synthiqa`` command line. It only parses options and calls one library function per command."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from synthiqa.errors import SynthiqaError
from synthiqa.outputs import OutputError, check_output_file, check_output_folder

#: Plain click help (no Rich panels): nothing in brackets is taken for markup, defaults and choices show
#: as ``[default: ...]``, and the text wraps at any width and reads the same when redirected to a file.
_HELP = {"rich_markup_mode": None, "context_settings": {"help_option_names": ["-h", "--help"],
                                                        "max_content_width": 100}}
app = typer.Typer(
    help="synthiqa: synthetic distortion datasets, quality models and benchmarks for IQA research.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    **_HELP,
)
bench_app = typer.Typer(help="Benchmarks: quality suites and speed of the engine.", no_args_is_help=True,
                        **_HELP)
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
        table.add_column(col, no_wrap=col in ("name", "kadid id"), overflow="fold")
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

    check_output_file(out, example="grid.png")
    cols = _float_list(levels, "--levels") if levels else None
    grid = render_distortion_grid(image, profile, cols, out, include_extra=extra, size=size, seed=seed,
                                  device=device)
    console.print(f"wrote {out} ({grid.width}x{grid.height} px)")



# --- synthiqa generate / merge (datasets/generation/) -----------------------------------------------
@app.command("generate")
def generate_command(
    ref_dir: Optional[Path] = typer.Argument(None, help="Folder of reference images (recursive); "  # noqa: UP045
                                             "default: the built-in references."),
    out: Path = typer.Option(..., "--out", help="Output folder (new or empty, or the run to --resume)."),
    profile: str = typer.Option("basic8", help="Distortion profile: kadid, arniqa or basic8."),
    mode: str = typer.Option("basic", help="grid (every type x level), chains (ARNIQA), basic (guide)."),
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
    image_format: str = typer.Option("png", "--format", help="png or bmp (image files, lossless), or "
                                     "webdataset (tar shards of PNG + JSON samples)."),
    shard_size: Optional[int] = typer.Option(None, help="Images per WebDataset shard, about; shards hold "  # noqa: UP045
                                             "whole references [1000]."),
    engine: str = typer.Option("local", help="local (this machine) or ray (Ray Data; needs the ray extra)."),
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
        batch_size=batch_size, resume=resume, engine=engine, ray_address=ray_address,
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

    check_output_folder(out)
    summary = merge([str(d) for d in shard_dirs], str(out), console=err_console)
    console.print(f"{summary.out}: {summary.images_total} images from {summary.references} references "
                  f"merged from {len(shard_dirs)} runs in {summary.seconds:.1f} s", highlight=False)



# --- synthiqa train / predict / evaluate (models/) -------------------------------------------------
@app.command("train")
def train_command(
    data: Optional[str] = typer.Option(None, "--data", help="A generated set's folder, or KIND:PATH "  # noqa: UP045
                                       "(live, kadid10k, csv, synthiqa), with loader options as "
                                       "?name=value&... (csv:s.csv?lower_better=false&mos_range=0,100)."),
    out: Path = typer.Option(..., "--out", help="Run folder: best.pt, last.pt, log.csv, run.json."),
    method: str = typer.Option("ceniqa", "--method", help="Trainable method: ceniqa, arniqa, trcnn or sind."),
    config: Optional[Path] = typer.Option(None, "--config", help="Config file (YAML or JSON)."),  # noqa: UP045
    preset: Optional[str] = typer.Option(None, "--preset", help="Named config: default or quick."),  # noqa: UP045
    label: Optional[str] = typer.Option(None, "--label", help="Generated sets: level_quality or "  # noqa: UP045
                                        "fr_pseudo_mos (default: the set's primary label)."),
    on_the_fly: Optional[Path] = typer.Option(None, "--on-the-fly", help="Reference folder: distort "  # noqa: UP045
                                              "crops with the engine on the device instead of --data."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="A last.pt to continue from."),  # noqa: UP045
    backbone: Optional[str] = typer.Option(None, "--backbone", help="compact, unet or a timm name."),  # noqa: UP045
    backbone_checkpoint: Optional[str] = typer.Option(None, "--backbone-checkpoint",  # noqa: UP045
                                                      help="Local backbone weights file."),
    pretrained: Optional[bool] = typer.Option(None, "--pretrained/--no-pretrained",  # noqa: UP045
                                              help="timm's published backbone weights (needs a network)."),
    n_clusters: Optional[int] = typer.Option(None, "--n_clusters", "--n-clusters",  # noqa: UP045
                                             help="Mixture components (CENIQA; default 8)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Training (CENIQA: fine-tuning) "  # noqa: UP045
                                         "epochs (default: the method's config; CENIQA 8)."),
    pretrain_epochs: Optional[int] = typer.Option(None, "--pretrain_epochs", "--pretrain-epochs",  # noqa: UP045
                                                  help="Self-supervised epochs before fine-tuning "
                                                  "(CENIQA 2, ARNIQA's whole training)."),
    batch_size: Optional[int] = typer.Option(None, "--batch_size", "--batch-size",  # noqa: UP045
                                             help="Training items per batch (CENIQA 32)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate (CENIQA 0.002)."),  # noqa: UP045
    refit_interval: Optional[int] = typer.Option(None, "--refit_interval", "--refit-interval",  # noqa: UP045
                                                 help="Refit the mixture every N fine-tuning epochs "
                                                 "(CENIQA 2)."),
    cluster_loss_weight: Optional[float] = typer.Option(None, "--cluster_loss_weight",  # noqa: UP045
                                                        "--cluster-loss-weight",
                                                        help="Multiplies lambda_cluster while fine-tuning "
                                                        "(CENIQA 1.0)."),
    train_samples: Optional[int] = typer.Option(None, "--train_samples", "--train-samples",  # noqa: UP045
                                                help="Most training items per epoch (CENIQA 1536)."),
    val_samples: Optional[int] = typer.Option(None, "--val_samples", "--val-samples",  # noqa: UP045
                                              help="Most validation images per epoch (default: all)."),
    distortions_per_image: Optional[int] = typer.Option(None, "--distortions_per_image",  # noqa: UP045
                                                        "--distortions-per-image",
                                                        help="With --on-the-fly: distorted versions per "
                                                        "reference crop and pass."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N "  # noqa: UP045
                                         "(default: the config's, auto)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Run seed (default: the config's, 0)."),  # noqa: UP045
    set_: Optional[list[str]] = typer.Option(None, "--set", metavar="NAME=VALUE",  # noqa: UP045
                                             help="Any config field: --set NAME=VALUE (repeatable)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    nproc: int = typer.Option(1, "--nproc", help="Training processes on this machine (DistributedData"
                              "Parallel through torch.distributed.run: gloo on the CPU, nccl on CUDA)."),
) -> None:
    """Train a quality model (CENIQA by default) and write its checkpoints, log and test metrics.
    Also runs under ``torchrun --nproc-per-node N -m synthiqa train ...``."""
    import json

    from synthiqa.errors import ConfigError
    from synthiqa.models.training import distributed
    from synthiqa.models.training.launch import launch, torchrun_environment, train_in_process

    check_output_folder(out)
    overrides = {
        "backbone": backbone, "backbone_checkpoint": backbone_checkpoint, "pretrained": pretrained,
        "n_clusters": n_clusters, "epochs": epochs, "pretrain_epochs": pretrain_epochs,
        "batch_size": batch_size, "learning_rate": lr, "refit_interval": refit_interval,
        "cluster_loss_weight": cluster_loss_weight, "train_samples": train_samples,
        "val_samples": val_samples, "distortions_per_image": distortions_per_image, "device": device,
        "seed": seed,
    }
    for item in set_ or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected NAME=VALUE")
        overrides[key.strip()] = value.strip()
    options = {"config": config, "preset": preset, "label": label, "on_the_fly": on_the_fly,
               "resume": resume, "progress": not quiet,
               "overrides": {k: v for k, v in overrides.items() if v is not None}}
    from synthiqa.models.registry import get_method

    get_method(method)  # an unknown method fails here, before any process starts
    if nproc != 1 and not torchrun_environment():
        launch(nproc, method, options, data, out)
        best = Path(out) / "best.pt"
    else:
        best = train_in_process(method, options, data, out)
        if distributed.launched_rank() != 0:
            return
    run = Path(out) / "run.json"
    if run.is_file():
        test = json.loads(run.read_text()).get("test", {})
        figures = " ".join(f"{k}={test[k]:.4f}" for k in ("srcc", "plcc", "rmse", "active_clusters", "purity")
                           if isinstance(test.get(k), float))
        console.print(f"test: {figures}", highlight=False)
    console.print(f"best checkpoint: {best}", highlight=False)


def _model_options(items: Optional[list[str]]) -> dict:  # noqa: UP045
    """``--option NAME=VALUE`` items as keyword arguments (values parsed as in dataset specs)."""
    from synthiqa.datasets.spec import option_value
    from synthiqa.errors import ConfigError

    options = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--option {item!r}: expected NAME=VALUE")
        options[key.strip()] = option_value(value.strip())
    return options


def _scorer(checkpoint: Optional[Path], model: Optional[str], options: Optional[list[str]],  # noqa: UP045
            device: str):
    from synthiqa.errors import ConfigError
    from synthiqa.scoring import Scorer

    if (checkpoint is None) == (model is None):
        raise ConfigError("give --checkpoint CKPT (a trained model) or --model NAME (niqe, brisque, psnr, "
                          "ssim, ...), one of them")
    return Scorer(model, checkpoint, device, **_model_options(options))


_MODEL_HELP = ("A model that needs no checkpoint: niqe, brisque (--option data=KIND:PATH to fit on), or a "
               "full-reference metric (psnr, ssim, ms_ssim, fsim, vsi, haarpsi, mdsi; needs a dataset with "
               "references).")
_OPTION_HELP = ("A model option NAME=VALUE (repeatable): niqe reference_dir=DIR (default: the built-in "
                "references), brisque data=KIND:PATH.")
_DATASET_HELP = ("KIND:PATH (live, kadid10k, csv, synthiqa) or a generated set's folder; loader options as "
                 "?name=value&... (csv:s.csv?lower_better=false&mos_range=0,100&subset=test).")


@app.command("predict")
def predict_command(
    target: str = typer.Argument(..., help="An image, a folder of images (recursive), or a dataset "
                                 "KIND:PATH[?options] (its images, with their references for "
                                 "full-reference metrics)."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="A trained model's "  # noqa: UP045
                                              "best.pt / last.pt."),
    model: Optional[str] = typer.Option(None, "--model", help=_MODEL_HELP),  # noqa: UP045
    option: Optional[list[str]] = typer.Option(None, "--option", metavar="NAME=VALUE",  # noqa: UP045
                                               help=_OPTION_HELP),
    out: Optional[Path] = typer.Option(None, "--out", help="CSV to write (image,score,cluster); "  # noqa: UP045
                                       "default: print."),
    batch_size: int = typer.Option(32, "--batch-size", help="Images per batch."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
) -> None:
    """Score images, higher is better (trained models: quality in [0, 1]), and the mixture cluster of each
    image (CENIQA). Unreadable images are reported one line each and skipped."""
    from synthiqa.models.inference import list_images, write_predictions

    if out is not None:
        check_output_file(out, example="predictions.csv")
    scorer = _scorer(checkpoint, model, option, device)
    skipped: list[str] = []

    def warn(line: str) -> None:
        skipped.append(line)
        err_console.print(f"warning: {line}", highlight=False, soft_wrap=True)

    if Path(target).exists() and Path(target).suffix.lower() != ".csv":
        rows = scorer.score(list_images(target), None, batch_size, warn=warn)
    else:
        from synthiqa.datasets.spec import load_data_spec

        records = load_data_spec(target)[1].records
        refs = [r.reference for r in records] if scorer.needs_reference else None
        rows = scorer.score([r.image for r in records], refs, batch_size, warn=warn)
    if out is not None:
        try:
            write_predictions(out, rows)
        except OutputError as exc:  # the scores are not lost: print them, then the error
            _print_rows(rows)
            raise OutputError(f"{exc}; the {len(rows)} scores are printed above") from None
        console.print(f"{out}: {len(rows)} images scored, {len(skipped)} skipped", highlight=False)
    else:
        _print_rows(rows)


def _print_rows(rows: list) -> None:
    """``image<TAB>score<TAB>cluster`` lines, as they are (no wrapping: the output may be redirected)."""
    for image, score, cluster in rows:
        typer.echo(f"{image}\t{score:.4f}\t{'' if cluster is None else cluster}")


def _metric_cells(m: dict, logistic: str) -> list[str]:
    """n, SRCC, KRCC, PLCC raw, fitted PLCC and RMSE; ``-`` for rows under --min-n, and for the fitted
    pair where the logistic fit failed (``fit_mode`` raw_fallback)."""
    if m.get("small"):
        return [str(m["n"])] + ["-"] * 5
    cells = [str(m["n"])] + [f"{m[k]:.4f}" for k in ("srcc", "krcc", "plcc")]
    fitted = m.get("fit_mode") == logistic
    return cells + [f"{m[k]:.4f}" if fitted else "-" for k in ("plcc_fit", "rmse_fit")]


@app.command("evaluate")
def evaluate_command(
    dataset: str = typer.Option(..., "--dataset", help=_DATASET_HELP),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="A trained model's "  # noqa: UP045
                                              "checkpoint."),
    model: Optional[str] = typer.Option(None, "--model", help=_MODEL_HELP),  # noqa: UP045
    option: Optional[list[str]] = typer.Option(None, "--option", metavar="NAME=VALUE",  # noqa: UP045
                                               help=_OPTION_HELP),
    label: Optional[str] = typer.Option(None, "--label", help="Generated sets: which label column "  # noqa: UP045
                                        "(default: the set's primary label)."),
    split: Optional[str] = typer.Option(None, "--split", help="Only the manifest's train, val or test "  # noqa: UP045
                                        "part (default: all images)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the metrics as JSON."),  # noqa: UP045
    scores: Optional[Path] = typer.Option(None, "--scores", help="Write each image's score as CSV "  # noqa: UP045
                                          "(image, prediction, dataset score, type, group, level, cluster)."),
    logistic: str = typer.Option("4pl", "--logistic", help="Logistic fit for the fitted PLCC/RMSE: 4pl, "
                                 "5pl or none."),
    min_n: int = typer.Option(3, "--min-n", help="Fewest images a per-type row is computed on."),
    batch_size: int = typer.Option(32, "--batch-size", help="Images per batch (models without a config)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
) -> None:
    """SRCC, KRCC, PLCC (raw and logistic-fitted) and RMSE of a model on a dataset, overall, per
    distortion type and per group (chains count towards each of their types)."""
    import json

    from rich.table import Table

    from synthiqa.atomic import atomic_write_text
    from synthiqa.benchmarks.evaluation import evaluate_predictions
    from synthiqa.datasets.spec import load_data_spec
    from synthiqa.errors import ConfigError, DatasetError

    if logistic not in ("4pl", "5pl", "none"):
        raise ConfigError(f"--logistic must be 4pl, 5pl or none, got {logistic!r}")
    if min_n < 1:
        raise ConfigError(f"--min-n must be at least 1, got {min_n}")
    for path, example in ((out, "metrics.json"), (scores, "scores.csv")):
        if path is not None:
            check_output_file(path, "--out" if path is out else "--scores", example=example)
    records = load_data_spec(dataset, label)[1].records
    if split is not None:
        records = [r for r in records if r.extra.get("split") == split]
        if not records:
            raise DatasetError(f"{dataset}: no images with split {split!r}")
    scorer = _scorer(checkpoint, model, option, device)
    pred, clusters = scorer.score_records(records, batch_size)
    result = evaluate_predictions(records, pred, clusters, None if logistic == "none" else logistic, min_n)
    fit = f"PLCC {logistic}"
    for key, title in (("per_type", "distortion type"), ("per_group", "distortion group")):
        if key == "per_group" and "per_group" not in result:
            continue
        table = Table(title=f"{checkpoint or model} on {dataset}" if key == "per_type" else None)
        for col in (title, "n", "SRCC", "KRCC", "PLCC raw", fit, "RMSE fit"):
            table.add_column(col, justify="left" if col == title else "right", no_wrap=col == title)
        rows = [("all", result)] if key == "per_type" else []
        for name, m in [*rows, *result.get(key, {}).items()]:
            table.add_row(name, *_metric_cells(m, logistic))
        console.print(table)
    console.print(f"-: fewer than {min_n} images (--min-n), or no {logistic} fit", highlight=False)
    if "active_clusters" in result:
        purity = f", purity vs group {result['purity']:.3f}" if "purity" in result else ""
        console.print(f"active clusters: {int(result['active_clusters'])}{purity}", highlight=False)
    if out is not None:
        atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    if scores is not None:
        import pandas as pd

        frame = pd.DataFrame({
            "image": [str(r.image) for r in records], "prediction": pred, "score": [r.score for r in records],
            "score_norm": [r.score_norm for r in records], "dist_type": [r.dist_type for r in records],
            "dist_group": [r.dist_group for r in records], "level": [r.level for r in records],
            "cluster": clusters if clusters is not None else [None] * len(records)})
        atomic_write_text(scores, frame.to_csv(index=False))
        console.print(f"{scores}: {len(records)} scores", highlight=False)



# --- synthiqa experiments (models/ceniqa/experiments.py) ---------------------------------------------------
@app.command("experiments")
def experiments_command(
    out: Path = typer.Option(..., "--out", help="Folder for the configs (GROUP/NAME.yaml) and index.yaml."),
    base: Optional[Path] = typer.Option(None, "--base", help="CENIQA config every experiment starts "  # noqa: UP045
                                        "from [the defaults]."),
    preset: Optional[str] = typer.Option(None, "--preset", help="CENIQA preset to start from: default "  # noqa: UP045
                                         "or quick."),
) -> None:
    """Write the CENIQA ablation configs: backbones, regressors, K = 4..12, feature and component
    ablations, plus index.yaml listing them (run them with synthiqa train --config)."""
    from collections import Counter

    from synthiqa.errors import ConfigError
    from synthiqa.models.ceniqa.config import CENIQAConfig
    from synthiqa.models.ceniqa.experiments import ablation_experiments, write_experiments
    from synthiqa.models.ceniqa.method import preset_config

    check_output_folder(out)
    if base is not None and preset is not None:
        raise ConfigError("give --base or --preset, not both")
    start = CENIQAConfig.load(base) if base is not None else preset_config(preset or "default")
    paths = write_experiments(out, start)
    groups = Counter(e.group for e in ablation_experiments())
    summary = ", ".join(f"{n} {g}" for g, n in groups.items())
    console.print(f"{out}: {len(paths)} configs ({summary}) and index.yaml", highlight=False)


# --- synthiqa bench speed / bench generate / bench run (benchmarks/) -------------------------------
@bench_app.command("generate")
def bench_generate_command(
    ref_dir: Optional[Path] = typer.Argument(None, help="Reference folder [built-in references]."),  # noqa: UP045
    per_image: int = typer.Option(100, help="Distorted images per reference (plus the pristine copy)."),
    repeat: int = typer.Option(3, help="Runs of each side, alternating; the median time is reported."),
    workers: int = typer.Option(2, help="Processes on both sides (synthiqa: its CPU worker processes)."),
    max_side: int = typer.Option(384, help="References are shrunk to this longer side first (px)."),
    labels: str = typer.Option("level", help="synthiqa labels: level, or level,fr (the baseline has none)."),
    device: str = typer.Option("cpu", help="synthiqa device: cpu, cuda or auto."),
    seed: int = typer.Option(0, help="Run seed."),
    engine: Optional[str] = typer.Option(None, help="ray: time the local engine against the Ray engine "  # noqa: UP045
                                         "(a local Ray instance, same workers) instead of the baseline."),
) -> None:
    """Time the whole generation job against an Albumentations + cv2.imwrite multiprocessing script, or
    (``--engine ray``) the local engine against the Ray engine."""
    from rich.table import Table

    from synthiqa.benchmarks.generate_speed import PNG_NOTE, GenerateBenchConfig, run_generate_benchmark
    from synthiqa.datasets.labels import parse_label_families

    config = GenerateBenchConfig(ref_dir=None if ref_dir is None else str(ref_dir), per_image=per_image,
                                 repeat=repeat, workers=workers, max_side=max_side,
                                 labels=parse_label_families(labels), device=device, seed=seed,
                                 engine=engine)
    peer = "the Ray and local engines" if engine == "ray" else "synthiqa generate and the baseline script"
    with err_console.status(f"timing {peer}, {repeat} runs each"):
        result = run_generate_benchmark(config)
    table = Table(title=f"generate: {result.references} references x ({per_image} + 1) images, PNG, max "
                        f"side {max_side} px, {workers} workers, synthiqa labels {labels}, device {device}; "
                        f"median of {repeat} alternating runs")
    for col in ("job", "images", "seconds", "images/s", "MB written", "peak RSS (MB)", "driver RSS (MB)"):
        table.add_column(col, justify="left" if col == "job" else "right")
    for row in result.rows:
        if row.error:
            table.add_row(row.name, "-", "-", "-", "-", "-", "-")
            err_console.print(f"{row.name}: {row.error}", highlight=False)
            continue
        rss = "-" if row.peak_rss_mb is None else f"{row.peak_rss_mb:.0f}"
        driver = "-" if row.driver_rss_mb is None else f"{row.driver_rss_mb:.0f}"
        table.add_row(row.name, str(row.images), f"{row.seconds:.2f}", f"{row.images_per_second:.1f}",
                      f"{row.megabytes:.1f}", rss, driver)
    console.print(table)
    console.print(PNG_NOTE, highlight=False)
    if result.ratio is not None:
        what = "Ray / local" if engine == "ray" else "synthiqa / baseline"
        console.print(f"{what} images/s: {result.ratio:.2f}x", highlight=False)

@bench_app.command("train")
def bench_train_command(
    method: Optional[list[str]] = typer.Option(None, "--method", help="Method to time (repeatable): "  # noqa: UP045
                                               "ceniqa, arniqa, trcnn, sind (default: ceniqa and arniqa)."),
    device: str = typer.Option("cpu", "--device", help="auto, cpu, cuda or cuda:N."),
    ref_dir: Optional[Path] = typer.Option(None, "--refs", help="Reference folder (default: the built-in "  # noqa: UP045
                                           "references)."),
    steps: int = typer.Option(6, "--steps", help="Timed training steps per run."),
    repeat: int = typer.Option(3, "--repeat", help="Alternating runs of each side; medians."),
    workers: int = typer.Option(0, "--workers", help="DataLoader workers on both sides."),
    seed: int = typer.Option(0, "--seed", help="Run seed."),
) -> None:
    """Training images/s of each method fed on the fly against fed from files of the same distortions, and
    the share of step time spent generating (or decoding) the batches."""
    from rich.table import Table

    from synthiqa.benchmarks.train_speed import TrainBenchConfig, run_train_benchmark

    config = TrainBenchConfig(methods=tuple(method or ("ceniqa", "arniqa")), device=device, steps=steps,
                              repeat=repeat, ref_dir=None if ref_dir is None else str(ref_dir),
                              workers=workers, seed=seed)
    rows = run_train_benchmark(config, log=lambda m: err_console.print(m, highlight=False))
    table = Table(title=f"train: default configs, device {device}, {steps} steps x {repeat} alternating runs "
                        f"(medians), {workers} workers")
    for col in ("method", "images/step", "on the fly img/s", "files img/s", "ratio", "generating % of step",
                "decoding % of step"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for r in rows:
        table.add_row(r.method, str(r.images_per_step), f"{r.onthefly_images_per_s:.1f}",
                      f"{r.files_images_per_s:.1f}", f"{r.ratio:.2f}x", f"{100 * r.generation_share:.1f}",
                      f"{100 * r.decode_share:.1f}")
    console.print(table)


@bench_app.command("run")
def bench_run_command(
    suite: str = typer.Argument(..., help="Suite YAML file, a built-in suite (quick, standard), or a "
                                "folder written by synthiqa experiments (index.yaml)."),
    out: Path = typer.Option(..., "--out", help="Results folder; finished cells found there are reused."),
    live: Optional[Path] = typer.Option(None, "--live", help="LIVE Release 2 folder."),  # noqa: UP045
    kadid: Optional[Path] = typer.Option(None, "--kadid", help="KADID-10k folder."),  # noqa: UP045
    synthetic: Optional[Path] = typer.Option(None, "--synthetic", help="Set made by synthiqa generate."),  # noqa: UP045
    csv: Optional[list[str]] = typer.Option(  # noqa: UP045
        None, "--csv", metavar="NAME=PATH[?OPTIONS]", help="A CSV dataset (repeatable), with its loader "
        "options: --csv \"clive=clive.csv?lower_better=false&mos_range=0,100\" (README: Loading datasets)."),
    seed: Optional[int] = typer.Option(None, help="Override the suite's seed."),  # noqa: UP045
    resume: bool = typer.Option(True, "--resume/--fresh",
                                help="Reuse finished cells found in --out (default), or recompute all."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Compute at most N unfinished cells (next in "  # noqa: UP045
                                        "order), then stop; rerun to continue."),
    jobs: int = typer.Option(1, "--jobs", help="Cells computed at once, each in its own process."),
    splits: Optional[int] = typer.Option(None, "--splits", help="Experiments folders: reference-disjoint "  # noqa: UP045
                                         "splits per experiment (of 10; default 1)."),
) -> None:
    """Run a benchmark suite (models x datasets x protocols) and write results.parquet/csv/md.

    With an experiments folder, each experiment is one CENIQA model (labelled with its name) trained and
    evaluated per split; finished experiments are skipped on a rerun, --limit N runs the next N."""
    import dataclasses

    from rich.table import Table

    from synthiqa.benchmarks import suite as S
    from synthiqa.errors import ConfigError
    from synthiqa.models.ceniqa.experiments import is_experiments_folder

    check_output_folder(out)
    if is_experiments_folder(suite):
        spec = S.experiments_suite(suite, splits=splits or 1)
    elif splits is not None:
        raise ConfigError("--splits applies to experiments folders (index.yaml); set n_splits/max_splits "
                          "in the suite YAML instead")
    else:
        spec = S.load_suite(suite)
    paths: dict[str, tuple[str, str]] = {}
    for flag, value in (("live", live), ("kadid", kadid), ("synthetic", synthetic)):
        if value is not None:
            name, kind = S.CLI_DATASETS[flag]
            paths[name] = (kind, str(value))
    for item in csv or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--csv {item!r}: expected NAME=PATH[?option=value&...]")
        from synthiqa.datasets.spec import parse_data_spec

        kind, root, options = parse_data_spec(path if path.startswith("csv:") else f"csv:{path}")
        paths[name] = (kind, root, options)
    spec = S.with_dataset_paths(spec, paths)
    if seed is not None:
        spec = dataclasses.replace(spec, seed=seed)
    def log(msg: str) -> None:
        err_console.print(msg, highlight=False)

    summary = S.run_suite(spec, out, log=log, resume=resume, limit=limit, jobs=jobs)
    table = Table(title=f"suite {spec.name}: median over splits (test), higher is better except RMSE")
    frame = S.summary_table(S.pd.read_parquet(Path(out) / "results.parquet"))
    cols = ["model", "dataset", "protocol", "splits", "SRCC", "PLCC raw", "PLCC fit", "RMSE fit", "purity"]
    timings = Path(out) / "timings.csv"
    fit_s = (S.pd.read_csv(timings).groupby(["model", "dataset", "protocol"])["fit_seconds"].median()
             if timings.is_file() else None)
    for col in [*cols, "fit s"]:
        table.add_column(col, justify="left" if col in ("model", "dataset", "protocol") else "right")
    for _, row in frame.iterrows():
        key = (row["model"], row["dataset"], row["protocol"])
        fit = f"{fit_s[key]:.1f}" if fit_s is not None and key in fit_s.index else "-"
        table.add_row(*[str(row[c]) if c in cols[:4] else S._fmt(row[c]) for c in cols], fit)
    (console if console.is_terminal else Console(width=130)).print(table)  # a file gets the full width
    console.print(f"{summary.computed} cells computed, {summary.reused} reused, "
                  f"{len(summary.failures)} failed in {summary.seconds:.1f} s; results in {out}",
                  highlight=False)
    if summary.failures:
        err_console.print(f"failed cells are listed in {Path(out) / 'failures.txt'}", highlight=False)
    if summary.pending:
        console.print(f"{summary.pending} cells left (--limit {limit}); run the same command again to "
                      "continue", highlight=False)


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
    threads: Optional[int] = typer.Option(None, help="CPU threads for torch and OpenCV (default: theirs)."),  # noqa: UP045
    input_dtype: str = typer.Option("auto", "--input", help="synthiqa's input/output: uint8 (Albumentations' "
                                    "arrays), float, or auto (uint8 on cpu, float on cuda)."),
) -> None:
    """Images/s of each kadid distortion in synthiqa, Albumentations (CPU) and Kornia, with ratios."""
    from rich.progress import Progress
    from rich.table import Table

    from synthiqa.benchmarks import speed

    if json_out is not None:
        check_output_file(json_out, "--json", example="speed.json")
    config = speed.SpeedConfig(device=device, size=speed.parse_size(size), batch=batch, repeats=repeats,
                               level=level, only=tuple(n.strip() for n in only.split(",")) if only else (),
                               seed=seed, threads=threads, input=input_dtype)
    with Progress(transient=True, console=err_console) as bar:
        task = bar.add_task("timing", total=None)
        result = speed.run_speed_benchmark(
            config, lambda name: bar.update(task, description=f"timing {name}"))
    w, h = config.size
    table = Table(title=f"images/s, {w}x{h}, batch {batch}, level {level}, device {device} "
                        f"(median of {repeats}), synthiqa {config.input_dtype()} in/out")
    for col in ("distortion", "synthiqa", "albumentations", "ratio", "kornia", "ratio"):
        table.add_column(col, justify="left" if col == "distortion" else "right")
    ops = Table(title="peer ops (what each ratio compares)")
    for col in ("distortion", "albumentations (CPU, uint8 HWC, one image at a time)", "kornia (batched)"):
        ops.add_column(col)
    for r in result.rows:
        table.add_row(r.name, speed.format_rate(r.synthiqa), speed.format_rate(r.albumentations),
                      speed.format_ratio(r.ratio_albumentations, r.albumentations_equivalent),
                      speed.format_rate(r.kornia), speed.format_ratio(r.ratio_kornia, r.kornia_equivalent))
        if r.albumentations_op or r.kornia_op:
            ops.add_row(r.name,
                        speed.peer_label(r.albumentations_op, speed.ALBUMENTATIONS_APPROXIMATE.get(r.name)),
                        speed.peer_label(r.kornia_op, speed.KORNIA_APPROXIMATE.get(r.name)))
    console.print(table)
    console.print(ops)
    for line in speed.summary_lines(result):
        console.print(line)
    if json_out is not None:
        speed.write_speed_json(result, str(json_out))
        console.print(f"wrote {json_out}")


@bench_app.command("gmm")
def bench_gmm_command(
    sizes: str = typer.Option("20000x32,20000x128,200000x32,200000x128", help="Data sizes NxD, comma list."),
    k: int = typer.Option(8, "--k", help="Mixture components (and true clusters in the data)."),
    cov: str = typer.Option("diag,full", help="Covariance types, comma-separated: diag, full."),
    dtype: str = typer.Option("float32,float64", help="torch dtypes, comma-separated (sklearn: float64)."),
    device: str = typer.Option("cpu", help="torch device for synthiqa: cpu or cuda."),
    threads: Optional[int] = typer.Option(None, help="Cap torch and BLAS threads (default: no cap)."),  # noqa: UP045
    max_iter: int = typer.Option(100, help="Most EM iterations (both)."),
    tol: float = typer.Option(1e-3, help="EM convergence threshold on the mean log-likelihood (both)."),
    repeats: int = typer.Option(1, help="Fits per configuration; the fastest is kept."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the results as JSON (atomic)."),  # noqa: UP045
) -> None:
    """Torch GaussianMixture vs scikit-learn: EM fit time from the same init, log-likelihood and BIC."""
    from rich.progress import Progress
    from rich.table import Table

    from synthiqa.benchmarks import gmm_speed

    if json_out is not None:
        check_output_file(json_out, "--json", example="gmm.json")
    config = gmm_speed.GMMSpeedConfig(
        sizes=gmm_speed.parse_sizes(sizes), n_components=k, device=device, threads=threads, max_iter=max_iter,
        tol=tol, repeats=repeats, covariance_types=tuple(c.strip() for c in cov.split(",")),
        dtypes=tuple(d.strip() for d in dtype.split(",")))
    with Progress(transient=True, console=err_console) as bar:
        task = bar.add_task("fitting", total=None)
        rows = gmm_speed.run_gmm_speed(config, lambda what: bar.update(task, description=f"fitting {what}"))
    table = Table(title=f"GaussianMixture K={k}: synthiqa ({device}) vs scikit-learn (cpu, float64), "
                        f"same init, threads {threads or 'default'}")
    for col in ("N", "D", "cov", "dtype", "init s", "synthiqa s", "sklearn s", "iters", "speed-up/iter",
                "loglik synthiqa", "loglik sklearn", "rel diff", "BIC synthiqa", "BIC sklearn", "rel diff"):
        table.add_column(col, justify="left" if col in ("cov", "dtype") else "right")
    for r in rows:
        table.add_row(str(r.n), str(r.d), r.covariance_type, r.dtype, f"{r.init_s:.2f}", f"{r.torch_s:.2f}",
                      f"{r.sklearn_s:.2f}", f"{r.torch_iter}/{r.sklearn_iter}", f"{r.speedup_per_iter:.1f}x",
                      f"{r.torch_loglik:.4f}", f"{r.sklearn_loglik:.4f}", f"{r.loglik_rel_diff:.1e}",
                      f"{r.torch_bic:.6g}", f"{r.sklearn_bic:.6g}", f"{r.bic_rel_diff:.1e}")
    (console if console.is_terminal else Console(width=170)).print(table)  # a file gets the full width
    if json_out is not None:
        gmm_speed.write_gmm_speed_json(rows, config, str(json_out))
        console.print(f"wrote {json_out}")



# --- synthiqa report (reports/) --------------------------------------------------------------------
@app.command("report")
def report_command(
    results: Path = typer.Argument(..., help="Results folder written by synthiqa bench run."),
    out: Optional[Path] = typer.Option(None, "--out", help="HTML file (default RESULTS/report.html)."),  # noqa: UP045
    run: Optional[list[Path]] = typer.Option(  # noqa: UP045
        None, "--run", help="Training run folder with log.csv (repeatable; default: runs found in RESULTS)."),
) -> None:
    """Render the figures (PNG) and one self-contained HTML report from a results folder; never retrains."""
    from synthiqa.reports.html import build_report

    if out is not None:
        check_output_file(out, example="report.html")
    check_output_folder(results / "figures", "RESULTS")
    path = build_report(results, out=out, runs=run or None)
    console.print(f"wrote {path} (figures in {path.parent / 'figures'})", highlight=False)




def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """``warnings.showwarning`` for the command line: one ``warning:`` line, no source path or code."""
    err_console.print(f"warning: {escape(str(message))}", highlight=False, soft_wrap=True)


def main(argv: Optional[list[str]] = None) -> None:  # noqa: UP045 (typer needs Optional on 3.10)
    """Entry point: user mistakes print one line on stderr and exit with status 2; warnings print as
    one line each."""
    import warnings

    warnings.showwarning = _warning_line
    try:
        app(args=argv, prog_name="synthiqa", standalone_mode=True)
    except SynthiqaError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except OSError as exc:  # the system refused a file operation: one line naming the file
        where = f"{exc.filename}: " if exc.filename else ""
        err_console.print(f"[bold red]error:[/] {escape(where + str(exc.strerror or exc))}", highlight=False,
                          soft_wrap=True)
        sys.exit(2)
    except SystemExit as exc:  # typer turns Ctrl-C into a silent exit 130
        if exc.code == 130:
            err_console.print("interrupted; finished outputs are kept (generate: rerun with --resume)")
        raise
    except KeyboardInterrupt:
        err_console.print("interrupted; finished outputs are kept (generate: rerun with --resume)")
        sys.exit(130)


if __name__ == "__main__":
    main()


__all__ = ["app", "main", "Path"]
