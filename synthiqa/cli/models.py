"""``synthiqa train``, ``predict``, ``evaluate`` and ``experiments`` (``synthiqa/models/``,
``synthiqa/scoring.py``, ``synthiqa/benchmarks/evaluation.py``)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import json
import time
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Optional

import typer

from synthiqa.cli.app import ChoicesCommand, app, console, err_console
from synthiqa.errors import ConfigError, DatasetError
from synthiqa.outputs import OutputError, check_output_file, check_output_folder


# --- synthiqa train / predict / evaluate (models/) -------------------------------------------------
def _field_type(hint: Any) -> tuple[Any, str | None]:
    """The option type and metavar of a config field's type hint: bool, int, float and str as themselves;
    optional values and tuples as text the config converts (``none``; ``A,B``)."""
    if hint in (bool, int, float, str):
        return hint, None
    return str, "A,B" if typing.get_origin(hint) is tuple else "VALUE|none"


def method_options() -> tuple[Any, ...]:
    """One option per field of every trainable method's config (``--name-with-dashes`` and
    ``--name_with_underscores``; booleans ``--name-with-dashes/--no-name-with-dashes``), its help from
    the config's docstring, with each method's default; a method registered later has its flags too."""
    from synthiqa.models.registry import list_methods

    return _options_of(tuple(list_methods()))


@functools.lru_cache(maxsize=4)
def _options_of(methods: tuple[str, ...]) -> tuple[Any, ...]:
    from synthiqa.models.registry import MODELS

    owners: dict[str, list[tuple[str, dataclasses.Field]]] = {}
    for method in methods:
        for f in dataclasses.fields(MODELS.get(method).config):
            owners.setdefault(f.name, []).append((method, f))
    params = []
    for name, entries in owners.items():
        configs = [MODELS.get(method).config for method, _ in entries]
        defaults: dict[str, list[str]] = {}
        for method, f in entries:
            text = ",".join(map(str, f.default)) if isinstance(f.default, tuple) else str(f.default)
            defaults.setdefault(text, []).append(method)
        shown = "; ".join(f"{', '.join(names)}: {value}" for value, names in defaults.items())
        documented = [(c, c.field_help(name)) for c in dict.fromkeys(configs) if c.field_help(name)]
        about = f"The method config's {name}."
        if documented:
            owner, about = documented[0]
            if len(set(configs)) > 1:  # described by one method's config: say whose
                about = f"{owner.__name__.removesuffix('Config')}: {about}"
        kind, metavar = _field_type(typing.get_type_hints(configs[0])[name])
        dashed = name.replace("_", "-")
        if kind is bool:
            decls = [f"--{dashed}/--no-{dashed}"]
        else:
            decls = [f"--{dashed}"] + ([f"--{name}"] if dashed != name else [])
        option = typer.Option(None, *decls, metavar=metavar, help=f"{about} (default {shown})")
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                        annotation=Optional[kind]))  # noqa: UP045

    def holder(**options: Any) -> None:
        """Carries the options' signature; typer turns it into its options."""

    holder.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    holder.__annotations__ = {p.name: p.annotation for p in params}
    one = typer.Typer(add_completion=False)
    one.command()(holder)
    return tuple(typer.main.get_command(one).params)


class MethodOptionsCommand(ChoicesCommand):
    """``synthiqa train``: its own options plus ``method_options()``, built from the model cards when the
    command runs or shows help (nothing is imported for other commands). The values given go to
    ``ctx.meta["method_options"]``."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        help_option = self.get_help_option(ctx)
        own = [p for p in params if p is not help_option]
        return [*own, *method_options(), *([help_option] if help_option is not None else [])]

    def invoke(self, ctx: Any) -> Any:
        names = {o.name for o in method_options()}
        ctx.meta["method_options"] = {k: ctx.params.pop(k) for k in list(ctx.params) if k in names}
        return super().invoke(ctx)


@app.command("train", cls=MethodOptionsCommand)
def train_command(
    ctx: typer.Context,
    data: Optional[str] = typer.Option(None, "--data", help="A generated set's folder, or KIND:PATH "  # noqa: UP045
                                       "({kinds}), with loader options as "
                                       "?name=value&... (csv:s.csv?lower_better=false&mos_range=0,100)."),
    out: Path = typer.Option(..., "--out", help="Run folder: best.pt, last.pt, log.csv, run.json."),
    method: str = typer.Option("ceniqa", "--method", help="Trainable method: {methods}. Each field of the "
                               "method's config is a flag below (default: per method)."),
    config: Optional[Path] = typer.Option(None, "--config", help="Config file (YAML or JSON)."),  # noqa: UP045
    preset: Optional[str] = typer.Option(None, "--preset", help="Named config: default or quick."),  # noqa: UP045
    label: Optional[str] = typer.Option(None, "--label", help="Generated sets: level_quality or "  # noqa: UP045
                                        "fr_pseudo_mos (default: the set's primary label)."),
    on_the_fly: Optional[Path] = typer.Option(None, "--on-the-fly", help="Reference folder: distort "  # noqa: UP045
                                              "crops with the engine on the device instead of --data."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="A last.pt to continue from."),  # noqa: UP045
    set_: Optional[list[str]] = typer.Option(  # noqa: UP045
        None, "--set", metavar="NAME=VALUE", help="Any field of the method's config: --set NAME=VALUE "
        "(repeatable), as its flag does."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    nproc: int = typer.Option(1, "--nproc", help="Training processes on this machine (DistributedData"
                              "Parallel through torch.distributed.run: gloo on the CPU, nccl on CUDA)."),
) -> None:
    """Train a quality model (CENIQA by default) and write its checkpoints, log and test metrics.
    Also runs under ``torchrun --nproc-per-node N -m synthiqa train ...``."""

    from synthiqa.models.registry import get_method, list_methods
    from synthiqa.models.training import distributed
    from synthiqa.models.training.launch import launch, torchrun_environment, train_in_process

    check_output_folder(out)
    card = get_method(method)  # an unknown method fails here, before any process starts
    fields = {f.name for f in dataclasses.fields(card.config)}
    overrides = {k: v for k, v in ctx.meta.get("method_options", {}).items() if v is not None}
    for name in overrides:
        if name not in fields:
            others = [m for m in list_methods()
                      if name in {f.name for f in dataclasses.fields(get_method(m).config)}]
            raise ConfigError(f"--{name.replace('_', '-')} is not an option of --method {method} (it is one "
                              f"of {', '.join(others)}); see synthiqa train --help")
    for item in set_ or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected NAME=VALUE")
        overrides[key.strip()] = value.strip()
    options = {"config": config, "preset": preset, "label": label, "on_the_fly": on_the_fly,
               "resume": resume, "progress": not quiet, "overrides": overrides}
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
    steps = Path(out) / "steps.csv"
    if steps.is_file():
        from synthiqa.reports.figures import plot_step_losses

        curve = plot_step_losses(steps, Path(out) / "loss_curve.png", f"{method} training run {out}")
        console.print(f"loss curve: {curve}", highlight=False)
    console.print(f"best checkpoint: {best}", highlight=False)


def _model_options(items: Optional[list[str]]) -> dict:  # noqa: UP045
    """``--option NAME=VALUE`` items as keyword arguments (values parsed as in dataset specs)."""
    from synthiqa.datasets.spec import option_value

    options = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--option {item!r}: expected NAME=VALUE")
        options[key.strip()] = option_value(value.strip())
    return options


def _scorer(checkpoint: Optional[Path], model: Optional[str], options: Optional[list[str]],  # noqa: UP045
            device: str):
    from synthiqa.scoring import Scorer

    if (checkpoint is None) == (model is None):
        raise ConfigError("give --checkpoint CKPT (a trained model) or --model NAME (niqe, brisque, psnr, "
                          "ssim, ...), one of them")
    return Scorer(model, checkpoint, device, **_model_options(options))


_MODEL_HELP = ("A model that needs no checkpoint: {untrained} (brisque: --option data=KIND:PATH to fit on; "
               "the full-reference metrics need a dataset with references).")
_OPTION_HELP = ("A model option NAME=VALUE (repeatable): niqe reference_dir=DIR (default: the built-in "
                "references), brisque data=KIND:PATH.")
_DATASET_HELP = ("KIND:PATH ({kinds}) or a generated set's folder; loader options as "
                 "?name=value&... (csv:s.csv?lower_better=false&mos_range=0,100&subset=test).")

# The options predict and evaluate share (the same model, scored the same way).
CHECKPOINT_OPTION = typer.Option(None, "--checkpoint", help="A trained model's best.pt / last.pt.")
MODEL_OPTION = typer.Option(None, "--model", help=_MODEL_HELP)
MODEL_OPTIONS_OPTION = typer.Option(None, "--option", metavar="NAME=VALUE", help=_OPTION_HELP)
BATCH_OPTION = typer.Option(32, "--batch-size", help="Images per model call (checkpoints: their config's).")
DEVICE_OPTION = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N.")


@app.command("predict", cls=ChoicesCommand)
def predict_command(
    target: str = typer.Argument(..., help="An image, a folder of images (recursive), or a dataset "
                                 "KIND:PATH[?options] (its images, with their references for "
                                 "full-reference metrics)."),
    checkpoint: Optional[Path] = CHECKPOINT_OPTION,  # noqa: UP045
    model: Optional[str] = MODEL_OPTION,  # noqa: UP045
    option: Optional[list[str]] = MODEL_OPTIONS_OPTION,  # noqa: UP045
    out: Optional[Path] = typer.Option(None, "--out", help="CSV to write (image,score,cluster); "  # noqa: UP045
                                       "default: print."),
    batch_size: int = BATCH_OPTION,
    device: str = DEVICE_OPTION,
) -> None:
    """Score images, higher is better (trained models: quality in [0, 1]), and the mixture cluster of each
    image (CENIQA). Unreadable images are reported one line each and skipped. Torch and OpenCV use the
    cores this process may run on less those other processes keep busy, looked at again after every
    batch (``devices.threads_for_load``); progress goes to stderr."""
    from synthiqa.devices import share_cores
    from synthiqa.models.inference import list_images, write_predictions

    if out is not None:
        check_output_file(out, example="predictions.csv")
    share_cores()
    scorer = _scorer(checkpoint, model, option, device)
    skipped: list[str] = []

    def warn(line: str) -> None:
        skipped.append(line)
        err_console.print(f"warning: {line}", highlight=False, soft_wrap=True)

    if Path(target).exists() and Path(target).suffix.lower() != ".csv":
        images, refs = list_images(target), None
    else:
        from synthiqa.datasets.spec import load_data_spec

        records = load_data_spec(target)[1].records
        images = [r.image for r in records]
        refs = [r.reference for r in records] if scorer.needs_reference else None
    with _progress(len(images), batch_size) as progress:
        def batch_done(done: int) -> None:
            progress(done)
            share_cores()  # the load may have changed since the last batch

        rows = scorer.score(images, refs, batch_size, warn=warn, progress=batch_done)
    if out is not None:
        try:
            write_predictions(out, rows)
        except OutputError as exc:  # the scores are not lost: print them, then the error
            _print_rows(rows)
            raise OutputError(f"{exc}; the {len(rows)} scores are printed above") from None
        console.print(f"{out}: {len(rows)} images scored, {len(skipped)} skipped", highlight=False)
    else:
        _print_rows(rows)


@contextlib.contextmanager
def _progress(total: int, batch_size: int) -> Iterator[Callable[[int], None]]:
    """A callback taking the images done: a bar on a terminal's stderr, else one stderr line per batch
    (nothing when every image fits in one batch)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    start = time.perf_counter()
    if total <= batch_size:
        yield lambda done: None
        return
    if not err_console.is_terminal:
        def line(done: int) -> None:
            err_console.print(f"scored {done}/{total} images in {time.perf_counter() - start:.1f} s",
                              highlight=False)
        yield line
        return
    columns = (TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task("scoring", total=total)
        yield lambda done: bar.update(task, completed=done)


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


@app.command("evaluate", cls=ChoicesCommand)
def evaluate_command(
    dataset: str = typer.Option(..., "--dataset", help=_DATASET_HELP),
    checkpoint: Optional[Path] = CHECKPOINT_OPTION,  # noqa: UP045
    model: Optional[str] = MODEL_OPTION,  # noqa: UP045
    option: Optional[list[str]] = MODEL_OPTIONS_OPTION,  # noqa: UP045
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
    batch_size: int = BATCH_OPTION,
    device: str = DEVICE_OPTION,
) -> None:
    """SRCC, KRCC, PLCC (raw and logistic-fitted) and RMSE of a model on a dataset, overall, per
    distortion type and per group (chains count towards each of their types)."""

    from rich.table import Table

    from synthiqa.atomic import atomic_write_text
    from synthiqa.benchmarks.evaluation import evaluate_predictions
    from synthiqa.datasets.spec import load_data_spec

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
    pred, clusters = scorer.score_records(records)
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
@app.command("experiments", cls=ChoicesCommand)
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
