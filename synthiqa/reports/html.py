"""One self-contained HTML report of a results folder: figures embedded as base64 PNG, no network needed.

``build_report(results_dir)`` reads only what ``synthiqa bench run`` wrote (``results.parquet``,
``predictions.parquet``, ``embeddings_<model>.npz``, ``suite.json``, the quick set's references) and
training run folders (``log.csv``); it renders the PNGs into ``RESULTS/figures/`` and writes the HTML.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synthiqa.atomic import atomic_write_text
from synthiqa.benchmarks.suite import (
    SUMMARY_METRICS,
    ModelSpec,
    format_interval,
    interval_table,
    references_table,
    summary_table,
)
from synthiqa.errors import SynthiqaError
from synthiqa.reports import figures

#: Which protocol's first split is drawn in the scatter plots, in order of preference.
PROTOCOL_PREFERENCE = ("intra", "loro", "loto")


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:100]


def _img(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


#: Per-type cells on fewer test images than this are marked as unreliable.
SMALL_N = 10


def per_type_cells(per_type: pd.DataFrame) -> pd.DataFrame:
    """Model x dataset x protocol rows, one column per type: ``"0.812 (n 40)"``, ``*`` when n < ``SMALL_N``,
    ``-`` where the type has no row."""
    grouped = (per_type.groupby(["model", "dataset", "protocol", "dist_type"])
               .agg(value=("value", "median"), n=("n", "median")).reset_index())
    pairs = zip(grouped["value"], grouped["n"], strict=True)
    grouped["cell"] = [("-" if not np.isfinite(v) else f"{v:.3f}") + f" (n {int(n)})"
                       + ("*" if n < SMALL_N else "") for v, n in pairs]
    pivot = grouped.pivot(index=["model", "dataset", "protocol"], columns="dist_type", values="cell")
    return pivot.fillna("-").reset_index().rename_axis(columns=None)


def _table_html(frame: pd.DataFrame, digits: int = 3) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for _, row in frame.iterrows():
        cells = []
        for v in row:
            if isinstance(v, (float, np.floating)):
                cells.append(f'<td class="num">{"-" if not np.isfinite(v) else f"{v:.{digits}f}"}</td>')
            else:
                cells.append(f"<td>{html.escape(str(v))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _summary_frame(table: pd.DataFrame) -> pd.DataFrame:
    summary = summary_table(table)
    if summary.empty:
        return summary
    out = summary[["model", "dataset", "protocol", "splits"]].copy()
    for _, _, label in SUMMARY_METRICS:
        out[label] = [figures_fmt(v, s) for v, s in zip(summary[label], summary[label + " sd"], strict=True)]
    out["fit failures"] = summary["fit failures"]
    return out


def _interval_frame(intervals: pd.DataFrame) -> pd.DataFrame:
    """``interval_table`` (or ``references_table``) rows with each metric as 'value [low, high]'."""
    keys = [c for c in ("family", "model", "dataset", "protocol", "references", "splits", "n")
            if c in intervals]
    out = intervals[keys].copy()
    for label in ("SRCC", "PLCC"):
        ends = zip(intervals[label], intervals[f"{label} low"], intervals[f"{label} high"], strict=True)
        out[f"{label} [95% CI]"] = [format_interval(v, lo, hi) for v, lo, hi in ends]
    return out


def figures_fmt(value: float, sd: float) -> str:
    if not np.isfinite(value):
        return "-"
    return f"{value:.3f}" if not np.isfinite(sd) else f"{value:.3f} ± {sd:.3f}"


def _cluster_source(mode: str) -> str:
    if mode == "model_mixture":
        return "the model's own mixture components"
    if mode.startswith("gmm_diag_k"):
        return (f"diagonal GMM with {mode.removeprefix('gmm_diag_k')} components fitted on the standardised "
                "embeddings, one per distortion type")
    return mode or "unknown source"


def find_runs(results_dir: Path) -> list[Path]:
    """Training run folders (holding ``log.csv``) inside the results folder."""
    return sorted(p.parent for p in results_dir.rglob("log.csv"))


def _grid_inputs(results_dir: Path, preds: pd.DataFrame | None) -> tuple[Path | None, list[str] | None, str]:
    """(reference image, distortion names, profile) for the grid: the quick set's when present."""
    quick = results_dir / "data" / "quick_synthetic"
    image, profile = None, "kadid"
    if (quick / "dataset.json").is_file():
        info = json.loads((quick / "dataset.json").read_text(encoding="utf-8"))
        profile = str(info.get("profile", profile))
        refs = sorted((quick / "references").glob("*.png"))
        image = refs[0] if refs else None
    names = None
    if preds is not None and "dist_type" in preds:
        names = sorted({t for t in preds["dist_type"].dropna().unique() if t and ">" not in t})
    return image, names or None, profile


def _scatter_selection(preds: pd.DataFrame, dataset: str) -> tuple[pd.DataFrame, str]:
    test = preds[(preds["dataset"] == dataset) & (preds["subset"] == "test")]
    protocols = list(dict.fromkeys(test["protocol"]))
    ordered = [p for p in PROTOCOL_PREFERENCE if p in protocols] + [p for p in protocols
                                                                   if p not in PROTOCOL_PREFERENCE]
    protocol = ordered[0]
    sel = test[test["protocol"] == protocol]
    split = sorted(sel["split"].unique())[0]
    return sel[sel["split"] == split], f"{protocol}, {split}"


def build_report(results_dir: str | Path, out: str | Path | None = None,
                 runs: Sequence[str | Path] | None = None, seed: int = 0) -> Path:
    """Render every figure into ``RESULTS/figures`` and write the HTML (default ``RESULTS/report.html``).

    Args:
        runs: training run folders with ``log.csv``; default: those found inside the results folder.
        seed: t-SNE seed.
    """
    results_dir = Path(results_dir)
    results_path = results_dir / "results.parquet"
    if not results_path.is_file():
        raise SynthiqaError(f"{results_dir}: not a results folder (no results.parquet; "
                            "run synthiqa bench run)")
    table = pd.read_parquet(results_path)
    suite: dict[str, Any] = {}
    if (results_dir / "suite.json").is_file():
        suite = json.loads((results_dir / "suite.json").read_text(encoding="utf-8"))
    logistic = suite.get("logistic", "4pl")
    pred_path = results_dir / "predictions.parquet"
    preds = pd.read_parquet(pred_path) if pred_path.is_file() else None
    fig_dir = results_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    sections: list[tuple[str, list[str]]] = []

    # distortion grid
    image, names, profile = _grid_inputs(results_dir, preds)
    try:
        grid = figures.plot_distortion_grid(fig_dir / "distortion_grid.png", names, profile, image)
        what = f"profile {profile}, levels 1 (left) to 5 (right), reference in the first column"
        sections.append(("Distortions", [_img(grid, f"Distortion types of the benchmark ({what})")]))
    except SynthiqaError as exc:
        sections.append(("Distortions", [_note(f"distortion grid not drawn: {exc}")]))

    # results table
    summary = _summary_frame(table)
    parts = [_note("Test subsets; median over splits ± standard deviation over splits. SRCC/KRCC on raw "
                   f"scores; 'fit' = after a {logistic or 'no'} logistic fit; targets normalised to [0, 1], "
                   "higher is better (RMSE: lower is better). Models were selected on validation splits.")]
    parts.append(_table_html(summary) if not summary.empty else _note("no results"))
    per_type = table[(table["subset"] == "test") & (table["metric"] == "srcc")
                     & (table["dist_type"] != "all")]
    if not per_type.empty:
        parts.append("<h3>Median test SRCC per distortion type</h3>")
        parts.append(_note(f"Each cell: median SRCC over splits and the median number of test images n; "
                           f"cells with n < {SMALL_N} are marked * (their SRCC is unreliable). Chains count "
                           "towards each type they contain."))
        parts.append(_table_html(per_type_cells(per_type)))
    sections.append(("Results", parts))

    # bootstrap intervals and the training-set sweep
    intervals = interval_table(table)
    resamples = f"{suite['n_boot']} bootstrap resamples" if "n_boot" in suite else "bootstrap resamples"
    parts = [_note(f"Test subsets; {resamples} of the test images per split; medians over splits of each "
                   f"value and of its interval's ends; PLCC after the {logistic or 'no'} logistic fit.")]
    parts.append(_table_html(_interval_frame(intervals)) if not intervals.empty else _note("no results"))
    sections.append(("SRCC and PLCC with 95% bootstrap intervals", parts))
    specs = [ModelSpec.from_dict(m) for m in suite.get("models", [])]
    sweep = references_table(intervals, specs)
    if not sweep.empty:
        png = figures.plot_reference_sweep(sweep, fig_dir / "reference_sweep.png",
                                           "Test SRCC against the number of training references")
        parts = [_img(png, "Median test SRCC with its 95% bootstrap interval against the number of reference "
                           "images each model was trained or fitted on"),
                 _table_html(_interval_frame(sweep))]
        sections.append(("SRCC against the number of training references", parts))

    # predicted vs true
    parts = []
    if preds is None or preds.empty:
        parts.append(_note("no predictions.parquet in the results folder"))
    else:
        for dataset in sorted(preds["dataset"].unique()):
            sel, where = _scatter_selection(preds, dataset)
            png = figures.plot_predicted_vs_true(
                sel, fig_dir / f"pred_vs_true_{_slug(dataset)}.png",
                f"{dataset}: prediction vs true quality (test, {where})", logistic)
            parts.append(_img(png, f"{dataset}, {where}: each panel one model; black curve = {logistic} "
                                   "logistic fitted on these test images"))
    sections.append(("Predicted against true quality", parts))

    # embeddings: t-SNE and clusters
    tsne_parts, cluster_parts = [], []
    for npz in sorted(results_dir.glob("embeddings_*.npz")):
        model = npz.stem.removeprefix("embeddings_")
        with np.load(npz, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        for dataset in sorted(set(arrays["dataset"].tolist())):
            m = arrays["dataset"] == dataset
            where = f"{model} on {dataset}, first {arrays['protocol'][m][0]} test split"
            stem = f"{_slug(model)}_{_slug(dataset)}"
            try:
                png = figures.plot_embedding_tsne(arrays["embedding"][m], arrays["dist_type"][m].tolist(),
                                                  arrays["score_norm"][m], fig_dir / f"tsne_{stem}.png",
                                                  where, seed=seed)
                tsne_parts.append(_img(png, f"t-SNE of {where}"))
            except SynthiqaError as exc:
                tsne_parts.append(_note(f"t-SNE of {where} not drawn: {exc}"))
            clusters = arrays["cluster"][m]
            if (clusters >= 0).any():
                source = _cluster_source(str(arrays["cluster_source"][m][0]) if "cluster_source" in arrays
                                         else "")
                png = figures.plot_cluster_distribution(clusters, arrays["dist_type"][m].tolist(),
                                                        fig_dir / f"clusters_{stem}.png",
                                                        f"Clusters of {where}\n({source})")
                cluster_parts.append(_img(png, f"Clusters of {where}: {source}"))
    sections.append(("Embeddings (t-SNE)", tsne_parts or [_note("no model in this run saved embeddings")]))
    sections.append(("Cluster distribution", cluster_parts or [_note("no model in this run has clusters")]))

    # training curves
    run_dirs = [Path(r) for r in runs] if runs else find_runs(results_dir)
    parts = []
    for i, run in enumerate(run_dirs):
        log = run / "log.csv" if run.is_dir() else run
        if not log.is_file():
            raise SynthiqaError(f"{run}: no log.csv (not a training run folder)")
        label = log.parent.relative_to(results_dir) if log.parent.is_relative_to(results_dir) else log.parent
        png = figures.plot_training_curves(log, fig_dir / f"training_{i:02d}_{_slug(run.name)}.png",
                                           f"training run {label}")
        parts.append(_img(png, f"Training curves of {run}"))
        if (log.parent / "steps.csv").is_file():
            png = figures.plot_step_losses(log.parent / "steps.csv",
                                           fig_dir / f"steps_{i:02d}_{_slug(run.name)}.png",
                                           f"training run {label}: loss per step")
            parts.append(_img(png, f"Loss per step of {run}"))
    sections.append(("Training curves", parts or [_note("no training run folder found; pass --run RUN_DIR")]))

    out_path = Path(out) if out is not None else results_dir / "report.html"
    atomic_write_text(out_path, _page(suite.get("name", results_dir.name), sections))
    return out_path


_CSS = """
body{font-family:system-ui,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1300px;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}th,td{border:1px solid #ddd;padding:.25em .5em}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1em 0}img{max-width:100%;border:1px solid #eee}figcaption{font-size:.85em;color:#555}
.note{color:#666;font-size:.9em}
"""


def _page(name: str, sections: list[tuple[str, list[str]]]) -> str:
    body = [f"<h1>synthiqa benchmark report: {html.escape(str(name))}</h1>"]
    links = [f'<a href="#s{i}">{html.escape(t)}</a>' for i, (t, _) in enumerate(sections)]
    body.append("<nav>" + " · ".join(links) + "</nav>")
    for i, (title, parts) in enumerate(sections):
        body.append(f'<h2 id="s{i}">{html.escape(title)}</h2>')
        body += parts
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>synthiqa report: {html.escape(str(name))}</title><style>{_CSS}</style></head>"
            f"<body>{''.join(body)}</body></html>\n")
