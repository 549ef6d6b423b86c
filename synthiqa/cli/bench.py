"""``synthiqa bench run``, ``speed``, ``generate``, ``gmm`` and ``train`` (``synthiqa/benchmarks/``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from synthiqa.cli.app import ChoicesCommand, bench_app, console, err_console
from synthiqa.errors import ConfigError
from synthiqa.outputs import check_output_file, check_output_folder


# --- synthiqa bench speed / bench generate / bench run (benchmarks/) -------------------------------
@bench_app.command("generate", cls=ChoicesCommand)
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

@bench_app.command("train", cls=ChoicesCommand)
def bench_train_command(
    method: Optional[list[str]] = typer.Option(None, "--method", help="Method to time (repeatable): "  # noqa: UP045
                                               "{methods} (default: ceniqa and arniqa)."),
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


@bench_app.command("run", cls=ChoicesCommand)
def bench_run_command(
    suite: str = typer.Argument(..., help="Suite YAML file, a built-in suite ({suites}), or a "
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
    set_: Optional[list[str]] = typer.Option(  # noqa: UP045
        None, "--set", metavar="MODEL.OPTION=VALUE", help="An option of one of the suite's models (its "
        "label, or its name), repeatable: --set arniqa.encoder_checkpoint=runs/arniqa/best.pt."),
) -> None:
    """Run a benchmark suite (models x datasets x protocols) and write results.parquet/csv/md.

    With an experiments folder, each experiment is one CENIQA model (labelled with its name) trained and
    evaluated per split; finished experiments are skipped on a rerun, --limit N runs the next N."""

    from rich.table import Table

    from synthiqa.benchmarks import suite as S
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
    if set_:
        spec = S.with_model_options(spec, S.parse_model_options(set_))
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


@bench_app.command("speed", cls=ChoicesCommand)
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
    peer_python: Optional[Path] = typer.Option(None, help="Python of another environment whose "  # noqa: UP045
                                               "Albumentations (AlbumentationsX) is timed as a second peer."),
) -> None:
    """Images/s of each kadid distortion in synthiqa, Albumentations (CPU) and Kornia, with ratios."""
    from rich.progress import Progress
    from rich.table import Table

    from synthiqa.benchmarks import speed

    if json_out is not None:
        check_output_file(json_out, "--json", example="speed.json")
    config = speed.SpeedConfig(device=device, size=speed.parse_size(size), batch=batch, repeats=repeats,
                               level=level, only=tuple(n.strip() for n in only.split(",")) if only else (),
                               seed=seed, threads=threads, input=input_dtype,
                               peer_python=None if peer_python is None else str(peer_python))
    with Progress(transient=True, console=err_console) as bar:
        task = bar.add_task("timing", total=None)
        result = speed.run_speed_benchmark(
            config, lambda name: bar.update(task, description=f"timing {name}"))
    w, h = config.size
    table = Table(title=f"images/s, {w}x{h}, batch {batch}, level {level}, device {device} "
                        f"(median of {repeats}), synthiqa {config.input_dtype()} in/out")
    peer_x = config.peer_python is not None
    columns = ["distortion", "synthiqa", "albumentations", "ratio", "kornia", "ratio"]
    for col in columns + (["AlbumentationsX", "ratio"] if peer_x else []):
        table.add_column(col, justify="left" if col == "distortion" else "right")
    ops = Table(title="peer ops (what each ratio compares)")
    for col in ("distortion", "albumentations (CPU, uint8 HWC, one image at a time)", "kornia (batched)"):
        ops.add_column(col)
    for r in result.rows:
        cells = [r.name, speed.format_rate(r.synthiqa), speed.format_rate(r.albumentations),
                 speed.format_ratio(r.ratio_albumentations, r.albumentations_equivalent),
                 speed.format_rate(r.kornia), speed.format_ratio(r.ratio_kornia, r.kornia_equivalent)]
        if peer_x:
            cells += [speed.format_rate(r.albumentationsx),
                      speed.format_ratio(r.ratio_albumentationsx, r.albumentationsx_equivalent)]
        table.add_row(*cells)
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


@bench_app.command("predict", cls=ChoicesCommand)
def bench_predict_command(
    model: Optional[list[str]] = typer.Option(None, "--model", help="A model that needs no checkpoint "  # noqa: UP045
                                              "(repeatable; default: niqe and brisque)."),
    checkpoint: Optional[list[Path]] = typer.Option(None, "--checkpoint", help="A trained model's "  # noqa: UP045
                                                    "best.pt (repeatable)."),
    size: str = typer.Option("512x384", help="Image size WIDTHxHEIGHT in px."),
    images: int = typer.Option(32, help="Images timed per model (after one warm-up image)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Images per model call, as synthiqa predict's."),
    device: str = typer.Option("cpu", help="cpu, cuda or auto."),
    threads: Optional[int] = typer.Option(None, help="CPU threads for torch and OpenCV (default: the cores "  # noqa: UP045
                                          "this process may run on)."),
) -> None:
    """Images/s of synthiqa predict for each model on PNG files of one size (decode, features, score)."""
    from rich.table import Table

    from synthiqa.benchmarks import speed
    from synthiqa.benchmarks.predict_speed import DEFAULT_MODELS, PredictBenchConfig, run_predict_benchmark

    for path in checkpoint or []:
        if not path.is_file():
            raise ConfigError(f"{path}: checkpoint not found")
    names = tuple(model) if model else (() if checkpoint else DEFAULT_MODELS)
    config = PredictBenchConfig(models=names, checkpoints=tuple(str(c) for c in checkpoint or []),
                                size=speed.parse_size(size), images=images, batch_size=batch_size,
                                device=device, threads=threads)
    rows = run_predict_benchmark(config, log=lambda m: err_console.print(m, highlight=False))
    w, h = config.size
    table = Table()
    for col in ("model", "images", "skipped", "seconds", "images/s"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in rows:
        table.add_row(r.model, str(r.images), str(r.skipped), f"{r.seconds:.2f}",
                      f"{r.images_per_second:.1f}")
    console.print(f"synthiqa predict: {images} PNG images of {w}x{h} px, batch {batch_size}, device "
                  f"{device}, {rows[0].threads if rows else '-'} threads", highlight=False)
    (console if console.is_terminal else Console(width=130)).print(table)  # a file gets the full width


@bench_app.command("gmm", cls=ChoicesCommand)
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
