"""Report figures as PNG files, from a results folder's files only (never retraining anything).

* ``plot_embedding_tsne``: t-SNE (scikit-learn; UMAP if installed and asked) of a model's test embeddings,
  one panel coloured by distortion type, one by true quality.
* ``plot_cluster_distribution``: mixture cluster x distortion type heat map (counts) and cluster sizes.
* ``plot_predicted_vs_true``: per dataset, one panel per model: prediction against true quality with the
  logistic curve fitted on the same test images (as the PLCC 'fit' numbers are computed).
* ``plot_training_curves``: losses, validation SRCC/PLCC and active clusters per epoch from ``log.csv``.
* ``plot_reference_sweep``: test SRCC (95% bootstrap intervals) against the number of training references,
  one line per model family and protocol.
* ``plot_step_losses``: every logged loss per training step from ``steps.csv`` (a moving mean over the
  noisy steps), with the chance level of each loss that logs one (``NAME_chance``) drawn dashed.
* ``plot_distortion_grid``: the distortion types of the benchmark on one reference (``reports.grid``).

Every figure states its model, dataset and split in the title, and the direction of quality axes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from synthiqa.atomic import atomic_path
from synthiqa.benchmarks.logistic import fit_logistic
from synthiqa.benchmarks.metrics import plcc, srcc
from synthiqa.distortions import get_distortion
from synthiqa.errors import SynthiqaError
from synthiqa.reports.grid import render_distortion_grid

QUALITY_LABEL = "true quality (normalised, 1 = best)"
DPI = 110


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: str | Path) -> Path:
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    _plt().close(fig)
    return out


def _category_colours(names: Sequence[str]) -> dict[str, tuple]:
    plt = _plt()
    cmap = plt.get_cmap("tab20" if len(names) > 10 else "tab10")
    return {n: cmap(i % cmap.N) for i, n in enumerate(names)}


def tsne_coordinates(embedding: np.ndarray, seed: int = 0, method: str = "tsne") -> np.ndarray:
    """2-D coordinates of ``embedding`` (standardised first): t-SNE, or UMAP when ``method='umap'``."""
    from sklearn.preprocessing import StandardScaler

    x = StandardScaler().fit_transform(np.nan_to_num(np.asarray(embedding, dtype=np.float64)))
    n = x.shape[0]
    if n < 4:
        raise SynthiqaError(f"t-SNE needs at least 4 embeddings, got {n}")
    if method == "umap":
        try:
            import umap  # type: ignore[import-not-found]
        except ImportError:
            raise SynthiqaError("UMAP asked for but umap-learn is not installed (pip install umap-learn)"
                                ) from None
        return umap.UMAP(n_components=2, random_state=seed).fit_transform(x)
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    perplexity = float(min(30.0, max(2.0, (n - 1) / 3)))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    # OpenMP threads buy nothing on report-sized sets and spin badly on a busy machine.
    with threadpool_limits(limits=1 if n < 5000 else None, user_api="openmp"):
        return tsne.fit_transform(x)


def plot_embedding_tsne(embedding: np.ndarray, dist_type: Sequence[str], quality: Sequence[float],
                        out: str | Path, title: str, seed: int = 0, method: str = "tsne") -> Path:
    """Two panels of the same 2-D map: colour = distortion type (legend), colour = true quality (bar)."""
    plt = _plt()
    xy = tsne_coordinates(embedding, seed, method)
    types = np.asarray([t or "unknown" for t in dist_type])
    names = sorted(set(types.tolist()))
    colours = _category_colours(names)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.4))
    for name in names:
        m = types == name
        axes[0].scatter(xy[m, 0], xy[m, 1], s=16, color=colours[name], label=name, alpha=0.85, linewidths=0)
    axes[0].legend(title="distortion type", fontsize=8, title_fontsize=9, loc="upper left",
                   bbox_to_anchor=(1.01, 1.0), frameon=False, markerscale=1.5)
    sc = axes[1].scatter(xy[:, 0], xy[:, 1], s=16, c=np.asarray(quality, dtype=float), cmap="viridis",
                         alpha=0.9, linewidths=0)
    bar = fig.colorbar(sc, ax=axes[1])
    bar.set_label(QUALITY_LABEL)
    label = "UMAP" if method == "umap" else "t-SNE"
    for ax, what in zip(axes, ("coloured by distortion type", "coloured by true quality"), strict=True):
        ax.set_title(what, fontsize=10)
        ax.set_xlabel(f"{label} 1")
        ax.set_ylabel(f"{label} 2")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{title} ({label} of test embeddings, {len(types)} images)", fontsize=12)
    fig.tight_layout()
    return _save(fig, out)


def plot_cluster_distribution(clusters: Sequence[int], dist_type: Sequence[str], out: str | Path,
                              title: str) -> Path:
    """Heat map of images per (cluster, distortion type) with counts, and a bar chart of cluster sizes."""
    plt = _plt()
    frame = pd.DataFrame({"cluster": np.asarray(clusters), "type": [t or "unknown" for t in dist_type]})
    counts = pd.crosstab(frame["cluster"], frame["type"])
    counts.index = [f"cluster {c}" for c in counts.index]
    n_clusters, n_types = counts.shape
    size = (max(9.0, 0.55 * n_types + 6), max(3.5, 0.45 * n_clusters + 2.2))
    fig, (ax, bx) = plt.subplots(1, 2, figsize=size,
                                 gridspec_kw={"width_ratios": [max(n_types, 3), 3]})
    im = ax.imshow(counts.to_numpy(), cmap="Blues", aspect="auto", vmin=0)
    ax.set_xticks(range(n_types), counts.columns, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n_clusters), counts.index, fontsize=8)
    ax.set_xlabel("distortion type")
    ax.set_ylabel("mixture cluster")
    top = counts.to_numpy().max() or 1
    for i in range(n_clusters):
        for j in range(n_types):
            v = int(counts.iat[i, j])
            if v:
                ax.text(j, i, str(v), ha="center", va="center", fontsize=7,
                        color="white" if v > 0.6 * top else "black")
    from matplotlib.ticker import MaxNLocator

    bar = fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02)
    bar.set_label("images")
    bar.locator = MaxNLocator(integer=True)
    bar.update_ticks()
    ax.set_title("images per cluster and distortion type", fontsize=10)
    sizes = counts.sum(axis=1)
    bx.barh(range(n_clusters), sizes.to_numpy(), color="tab:blue")
    bx.set_yticks(range(n_clusters), counts.index, fontsize=8)
    bx.invert_yaxis()
    bx.set_xlabel("images in cluster")
    bx.set_title("cluster sizes", fontsize=10)
    for i, v in enumerate(sizes.to_numpy()):
        bx.text(v, i, f" {int(v)}", va="center", fontsize=7)
    bx.set_xlim(0, sizes.max() * 1.15)
    bx.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    return _save(fig, out)


def plot_predicted_vs_true(preds: pd.DataFrame, out: str | Path, title: str, logistic: str | None = "4pl"
                           ) -> Path:
    """One panel per model: prediction (x) vs true quality (y), per-type colours, fitted logistic curve.

    ``preds`` holds one dataset's test predictions of one split per model (columns model, pred,
    score_norm, dist_type).
    """
    plt = _plt()
    models = list(dict.fromkeys(preds["model"]))
    if not models:
        raise SynthiqaError("no predictions to plot")
    cols = min(4, len(models))
    rows = math.ceil(len(models) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.9 * cols, 3.5 * rows + 0.6), squeeze=False)
    names = sorted({t or "unknown" for t in preds["dist_type"].fillna("unknown")})
    colours = _category_colours(names)
    for ax, model in zip(axes.flat, models, strict=False):
        sel = preds[preds["model"] == model]
        x, y = sel["pred"].to_numpy(float), sel["score_norm"].to_numpy(float)
        types = sel["dist_type"].fillna("unknown").to_numpy()
        for name in names:
            m = types == name
            if m.any():
                ax.scatter(x[m], y[m], s=14, color=colours[name], alpha=0.75, linewidths=0, label=name)
        text = f"SRCC {srcc(x, y):.3f}"
        if logistic is not None and len(x) > 5:
            fit = fit_logistic(x, y, logistic)
            grid = np.linspace(x.min(), x.max(), 200)
            if fit.ok:
                ax.plot(grid, fit.predict(grid), color="black", lw=1.5)
                fitted = plcc(fit.predict(x), y)
                text += (f"\nPLCC {logistic} {fitted:.3f}" if np.isfinite(fitted)
                         else f"\nPLCC {logistic} undefined (flat fit)")
            else:
                text += "\nlogistic fit failed"
        ax.text(0.03, 0.97, text, transform=ax.transAxes, va="top", fontsize=8,
                bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"})
        ax.set_title(model, fontsize=10)
        ax.set_xlabel("prediction (higher = better)", fontsize=8)
        ax.set_ylabel(QUALITY_LABEL, fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(models):]:
        ax.axis("off")
    handles = [plt.Line2D([], [], marker="o", ls="", color=colours[n], label=n) for n in names]
    handles.append(plt.Line2D([], [], color="black", label=f"{logistic} logistic fit"))
    legend_rows = math.ceil(len(handles) / 6)
    fig.suptitle(title, fontsize=12)
    height = fig.get_size_inches()[1]
    fig.tight_layout(rect=(0, (0.28 * legend_rows + 0.12) / height, 1, 1))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 0.0))
    return _save(fig, out)


def _numeric(frame: pd.DataFrame, cols: Sequence[str]) -> pd.DataFrame:
    return frame[list(cols)].apply(pd.to_numeric, errors="coerce")


def _read_log(path: Path, what: str) -> pd.DataFrame:
    """A run's CSV log; a one-line error naming the file when it cannot be read."""
    try:
        return pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise SynthiqaError(f"{path}: cannot read {what} ({type(exc).__name__})") from None


def plot_training_curves(log_csv: str | Path, out: str | Path, title: str) -> Path:
    """Losses, validation correlations and active clusters per epoch from a run's ``log.csv``."""
    from matplotlib.ticker import MaxNLocator

    plt = _plt()
    path = Path(log_csv)
    log = _read_log(path, "training log")
    if log.empty:
        raise SynthiqaError(f"{path}: training log has no rows")
    if "epoch" in log:
        epoch = pd.to_numeric(log["epoch"], errors="coerce")
    else:
        epoch = pd.Series(range(1, len(log) + 1))
    loss_cols = [c for c in log.columns if "loss" in c.lower()]
    val_cols = [c for c in log.columns if any(k in c.lower() for k in ("srcc", "plcc"))]
    active_cols = [c for c in log.columns if "active" in c.lower()]
    panels = [(cols, label) for cols, label in ((loss_cols, "loss (lower is better)"),
                                                (val_cols, "validation correlation (higher is better)"),
                                                (active_cols, "active mixture clusters")) if cols]
    if not panels:
        raise SynthiqaError(f"{path}: no loss, srcc/plcc or active-cluster columns to plot")
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.9), squeeze=False)
    phases = log["phase"].astype(str).to_numpy() if "phase" in log else None
    for ax, (cols, label) in zip(axes[0], panels, strict=True):
        values = _numeric(log, cols)
        for c in cols:
            if values[c].notna().any():
                ax.plot(epoch, values[c], marker="o", ms=3, label=c)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, frameon=False)
        if phases is not None:
            starts = [i for i in range(len(phases)) if i == 0 or phases[i] != phases[i - 1]]
            for i in starts:
                ax.axvline(epoch.iloc[i] - 0.5, color="grey", lw=0.8, ls=":")
                ax.text(epoch.iloc[i] - 0.4, 1.0, phases[i], transform=ax.get_xaxis_transform(), fontsize=7,
                        va="bottom", color="grey")
    fig.suptitle(title, fontsize=12, y=1.04)
    fig.tight_layout()
    return _save(fig, out)


def plot_reference_sweep(sweep: pd.DataFrame, out: str | Path, title: str) -> Path:
    """Test SRCC with its 95% interval against the number of training references (log axis), one line per
    family x protocol, one panel per dataset; ``sweep`` is ``benchmarks.suite.references_table``'s frame."""
    if sweep.empty:
        raise SynthiqaError("no model of this run has a number of training references")
    from matplotlib.ticker import NullLocator

    plt = _plt()
    datasets = sorted(sweep["dataset"].unique())
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.4 * len(datasets), 4.0), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        for (family, protocol), group in sweep[sweep["dataset"] == dataset].groupby(["family", "protocol"]):
            group = group.sort_values("references")
            x, y = group["references"].to_numpy(float), group["SRCC"].to_numpy(float)
            low = np.nan_to_num(y - group["SRCC low"].to_numpy(float))
            high = np.nan_to_num(group["SRCC high"].to_numpy(float) - y)
            ax.errorbar(x, y, yerr=[low, high], marker="o", ms=4, capsize=3, label=f"{family} ({protocol})")
        refs = sorted(sweep["references"].unique())
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticks(refs, [str(r) for r in refs])
        ax.set_xlabel("training references (images)")
        ax.set_ylabel("test SRCC (higher is better)")
        ax.set_title(dataset, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=12, y=1.03)
    fig.tight_layout()
    return _save(fig, out)


#: Steps of the moving mean drawn over the per-step losses (at most a tenth of the run).
LOSS_SMOOTHING = 25


def plot_step_losses(steps_csv: str | Path, out: str | Path, title: str) -> Path:
    """Every loss column of a run's ``steps.csv`` against the step (thin: each step; thick: the moving
    mean), with a dashed line at each loss's chance level (column ``NAME_chance``) and epoch boundaries
    dotted."""
    plt = _plt()
    path = Path(steps_csv)
    log = _read_log(path, "step log")
    if log.empty or "step" not in log:
        raise SynthiqaError(f"{path}: step log has no rows or no 'step' column")
    skip = {"epoch", "step", "lr"}
    losses = [c for c in log.columns if c not in skip and not c.endswith("_chance")]
    if not losses:
        raise SynthiqaError(f"{path}: no loss columns to plot")
    step = pd.to_numeric(log["step"], errors="coerce")
    window = max(1, min(LOSS_SMOOTHING, len(log) // 10))
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for i, c in enumerate(losses):
        colour = f"C{i}"
        values = pd.to_numeric(log[c], errors="coerce")
        ax.plot(step, values, color=colour, lw=0.6, alpha=0.35)
        ax.plot(step, values.rolling(window, min_periods=1).mean(), color=colour, lw=1.8,
                label=f"{c} (mean of {window} steps)")
        if f"{c}_chance" in log:
            chance = pd.to_numeric(log[f"{c}_chance"], errors="coerce")
            ax.plot(step, chance, color=colour, ls="--", lw=1.2, label=f"{c} at chance")
    if "epoch" in log:
        epoch = pd.to_numeric(log["epoch"], errors="coerce").to_numpy()
        for i in range(1, len(epoch)):
            if epoch[i] != epoch[i - 1]:
                ax.axvline(step.iloc[i] - 0.5, color="grey", lw=0.6, ls=":")
    ax.set_xlabel("training step")
    ax.set_ylabel("loss (lower is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False)
    ax.set_title(title, fontsize=11)
    fig.tight_layout()
    return _save(fig, out)


def plot_distortion_grid(out: str | Path, names: Sequence[str] | None = None, profile: str = "kadid",
                         image: str | Path | None = None, size: int = 128) -> Path:
    """The benchmark's distortion types (rows) at levels 1..5 on one reference (``reports.grid``)."""
    rows = None
    if names:
        rows = []
        for n in names:
            try:
                get_distortion(n, profile)
            except SynthiqaError:
                continue
            rows.append(n)
        rows = rows or None
    render_distortion_grid(image, profile, None, out, names=rows, size=size)
    return Path(out)
