"""Benchmark suites: models x datasets x protocols, as data (YAML), and the runner that writes one tidy table.

A suite YAML::

    name: my_suite
    seed: 27
    logistic: 4pl            # 4pl, 5pl or null (no fitted PLCC/RMSE)
    n_boot: 1000             # bootstrap resamples for the 95% intervals (0 = none)
    models: [psnr, haarpsi, niqe, {name: brisque, options: {c_grid: [1, 10]}}]
    datasets:
      - {name: live, kind: live}                  # root from --live PATH
      - {name: kadid, kind: kadid10k, root: /data/kadid10k}
    protocols:
      - {name: intra, n_splits: 10}
      - {name: cross, train: kadid, test: [live]}

Every number of ``results.parquet`` / ``results.csv`` is one row: model, dataset, protocol, split, subset
(``test``, or ``val`` for the selection split), dist_type (``all`` or one type), metric, mode (``raw``,
``4pl``/``5pl``, ``raw_fallback``, or the cluster source), value, ci_low, ci_high, n.
``timings.csv`` holds each cell's wall-clock seconds of ``fit`` and of the predictions (kept out of the
results, which are the same on every rerun).
``results.md`` adds the summary: median over splits with the spread (standard deviation) over splits.
Bootstrap 95% intervals (``n_boot`` resamples, seeded per cell) are given on the overall test rows only.
Cluster rows (``purity_type``, ``nmi_type``, ``ari_type`` and the ``_group`` versions) use the model's own
mixture (``clusters(records)``, mode ``model_mixture``) or else a diagonal GMM with one component per
distortion type on its standardised embeddings (mode ``gmm_diag_k<K>``).

Every cell gets its own unfitted model, ``sklearn.base.clone`` of the prototype built once from the
suite's model spec, in one process or in ``jobs`` worker processes alike, so no state (fitted weights,
training logs, caches) passes from one cell to the next. A model that keeps its per-epoch log rows in a
``training_log_`` attribute after ``fit`` gets them written to
``runs/<model>/<dataset>/<protocol>/<split>/log.csv`` (training curves in the report). Finished cells (model x
dataset x protocol x split) are stored under ``cells/`` with a digest of their configuration and are
skipped on a rerun, so an interrupted run resumes where it stopped; ``limit`` computes only the next N
unfinished cells, ``jobs`` runs cells in that many worker processes.

A folder written by ``synthiqa experiments`` (``index.yaml``) is a suite too (``experiments_suite``): one
CENIQA model per experiment, labelled with the experiment's name, on the ``intra`` protocol.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
import re
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from sklearn.base import clone

from synthiqa.atomic import atomic_path, atomic_write_bytes, atomic_write_text
from synthiqa.benchmarks.metrics import cluster_metrics, quality_metrics
from synthiqa.benchmarks.protocols import ProtocolSpec, Task, make_tasks
from synthiqa.datasets.builtin import builtin_reference_images
from synthiqa.datasets.generation.encoding import encode_image
from synthiqa.datasets.labels import level_quality
from synthiqa.datasets.loaders import load_dataset
from synthiqa.datasets.records import IQADataset, IQARecord
from synthiqa.devices import threads_per_worker
from synthiqa.distortions import ChainOp, apply_distortion, derive_seed, get_distortion, list_distortions
from synthiqa.errors import ConfigError, SynthiqaError
from synthiqa.models.ceniqa.experiments import is_experiments_folder, read_experiments
from synthiqa.models.method_config import read_yaml
from synthiqa.models.registry import MODELS, create_model
from synthiqa.registry import Registry
from synthiqa.stats import quality_table

RESULT_COLUMNS = ("model", "dataset", "protocol", "split", "subset", "dist_type", "metric", "mode", "value",
                  "ci_low", "ci_high", "n")
PREDICTION_COLUMNS = ("model", "dataset", "protocol", "split", "subset", "image", "scene", "dist_type",
                      "dist_group", "level", "score", "score_norm", "pred", "cluster")
#: Types with fewer test images than this get no per-type row.
MIN_PER_TYPE = 3
#: Bumped whenever a change alters the numbers of a cell; part of every cell's digest (no stale reuse).
CELL_FORMAT = 3


# --------------------------------------------------------------------------------------------------
# suite description


@dataclass
class ModelSpec:
    """A model of a suite: registry name, factory options and the label used in results.

    ``references`` (the number of reference images the model was trained or fitted on) and ``family``
    (default: the registry name) describe a training-set sweep: models of one family with different
    ``references`` form the report's SRCC-against-references table and plot. Neither changes a number.
    """

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    label: str | None = None
    references: int | None = None
    family: str | None = None

    def __post_init__(self) -> None:
        if self.references is not None and (isinstance(self.references, bool) or int(self.references) < 1):
            raise ConfigError(f"suite model {self.key}: references must be a positive number of images, "
                              f"got {self.references!r}")

    @property
    def key(self) -> str:
        return self.label or self.name

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | str) -> ModelSpec:
        if isinstance(data, str):
            return cls(name=data)
        unknown = set(data) - {"name", "options", "label", "references", "family"}
        if unknown or "name" not in data:
            raise ConfigError(f"suite model {dict(data)!r}: needs 'name' (and optionally options, label, "
                              "references, family)")
        refs = data.get("references")
        return cls(str(data["name"]), dict(data.get("options") or {}), data.get("label"),
                   None if refs is None else int(refs), data.get("family"))

    def numbers_key(self) -> dict[str, Any]:
        """What of the spec changes a cell's numbers (its digest): name, options and label."""
        return {"name": self.name, "options": self.options, "label": self.label}


@dataclass
class DatasetSpec:
    """A dataset of a suite: its name in results, loader kind, folder and loader options.

    ``required``: fail (one line) instead of skipping when it cannot be loaded; set for every dataset
    whose folder the user gave (in the YAML or on the command line).
    """

    name: str
    kind: str
    root: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    required: bool = False

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetSpec:
        unknown = set(data) - {"name", "kind", "root", "options", "required"}
        if unknown or "name" not in data:
            raise ConfigError(f"suite dataset {dict(data)!r}: needs 'name', 'kind' (optional root, options)")
        root = data.get("root")
        return cls(str(data["name"]), str(data.get("kind", data["name"])),
                   None if root is None else str(root), dict(data.get("options") or {}),
                   bool(data.get("required", root is not None)))


@dataclass
class Suite:
    """Models x datasets x protocols, plus the settings that make a run reproducible.

    Attributes:
        builtin_data: ``quick`` to generate the built-in synthetic set into the results folder, or None.
        logistic: ``4pl``, ``5pl`` or None.
        n_boot: bootstrap resamples for 95% intervals (0 disables them).
        embeddings: save test embeddings of the first split (t-SNE, clusters in the report).
    """

    name: str
    models: list[ModelSpec]
    datasets: list[DatasetSpec]
    protocols: list[ProtocolSpec]
    seed: int = 27
    logistic: str | None = "4pl"
    n_boot: int = 1000
    embeddings: bool = True
    builtin_data: str | None = None

    def __post_init__(self) -> None:
        if not self.models:
            raise ConfigError(f"suite {self.name}: no models")
        if not self.protocols:
            raise ConfigError(f"suite {self.name}: no protocols")
        if self.logistic not in (None, "4pl", "5pl"):
            raise ConfigError(f"suite {self.name}: logistic must be 4pl, 5pl or null, got {self.logistic!r}")
        keys = [m.key for m in self.models]
        if len(set(keys)) != len(keys):
            raise ConfigError(f"suite {self.name}: two models share a name; give them distinct 'label's")
        if self.builtin_data not in (None, "quick"):
            raise ConfigError(f"suite {self.name}: builtin_data must be 'quick' or null")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Suite:
        known = {"name", "models", "datasets", "protocols", "seed", "logistic", "n_boot", "embeddings",
                 "builtin_data"}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"suite: unknown key(s) {', '.join(sorted(unknown))}; "
                              f"known: {', '.join(sorted(known))}")
        return cls(
            name=str(data.get("name", "suite")),
            models=[ModelSpec.from_dict(m) for m in data.get("models") or []],
            datasets=[DatasetSpec.from_dict(d) for d in data.get("datasets") or []],
            protocols=[ProtocolSpec.from_dict(p) for p in data.get("protocols") or []],
            seed=int(data.get("seed", 27)),
            logistic=data.get("logistic", "4pl"),
            n_boot=int(data.get("n_boot", 1000)),
            embeddings=bool(data.get("embeddings", True)),
            builtin_data=data.get("builtin_data"),
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["protocols"] = [p.to_dict() for p in self.protocols]
        return out


#: The built-in ``quick`` suite: the built-in references only, two CPU cores, a few minutes.
QUICK_SUITE: dict[str, Any] = {
    "name": "quick",
    "seed": 27,
    "logistic": "4pl",
    "n_boot": 200,
    "builtin_data": "quick",
    "models": [
        "psnr", "ssim", "ms_ssim", "fsim", "vsi", "haarpsi", "mdsi",
        {"name": "niqe", "options": {"patch_size": 64}},
        {"name": "brisque", "options": {"c_grid": [1, 10, 100], "gamma_grid": [0.03, 0.1, 0.3]}},
        {"name": "ceniqa", "options": {"preset": "quick"}},
    ],
    "datasets": [],
    "protocols": [
        {"name": "intra", "n_splits": 3, "ratios": [0.5, 0.17, 0.33],
         "models": ["psnr", "ssim", "ms_ssim", "fsim", "vsi", "haarpsi", "mdsi", "niqe", "brisque"]},
        {"name": "intra", "n_splits": 3, "ratios": [0.5, 0.17, 0.33], "max_splits": 1, "models": ["ceniqa"]},
        {"name": "loto", "models": ["psnr", "haarpsi", "niqe", "brisque"]},
    ],
}

#: The built-in ``standard`` suite: the field's protocols on the datasets given on the command line
#: (``--live``, ``--kadid``, ``--synthetic``); those not given are skipped.
STANDARD_SUITE: dict[str, Any] = {
    "name": "standard",
    "seed": 27,
    "logistic": "4pl",
    "n_boot": 1000,
    "models": ["psnr", "ssim", "ms_ssim", "fsim", "vsi", "haarpsi", "mdsi", "niqe", "brisque", "ceniqa"],
    "datasets": [{"name": "live", "kind": "live"}, {"name": "kadid10k", "kind": "kadid10k"},
                 {"name": "synthetic", "kind": "synthiqa"}],
    "protocols": [
        {"name": "intra", "n_splits": 10, "ratios": [0.7, 0.1, 0.2]},
        {"name": "cross", "train": "synthetic", "test": ["live", "kadid10k"]},
        {"name": "cross", "train": "kadid10k", "test": ["live"]},
        {"name": "loto", "models": ["psnr", "haarpsi", "niqe", "brisque"]},
    ],
}

#: The built-in suites by name: a suite dict, or a bundled YAML file (``suites/NAME.yaml``).
SUITES: Registry[dict[str, Any] | Path] = Registry("suite")
SUITES.register("quick", QUICK_SUITE)
SUITES.register("standard", STANDARD_SUITE)
for _path in sorted((Path(__file__).parent / "suites").glob("*.yaml")):
    SUITES.register(_path.stem, _path)


def load_suite(source: str | Path) -> Suite:
    """A built-in suite by name (``quick``, ``standard``, ``kodak_methods``), a suite YAML file, or a folder
    written by ``synthiqa experiments`` (``experiments_suite`` with its defaults); one-line error when
    unreadable."""
    builtin = SUITES.get(str(source)) if str(source) in SUITES else None
    if isinstance(builtin, dict):
        return Suite.from_dict(builtin)
    path = Path(source) if builtin is None else builtin
    if is_experiments_folder(path):
        return experiments_suite(path)
    if not path.is_file():
        raise ConfigError(f"{path}: suite file not found (built-in suites: {', '.join(SUITES.list())})")
    data = read_yaml(path, "suite YAML")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a suite YAML must be a mapping with models, datasets, protocols")
    data.setdefault("name", path.stem)
    return Suite.from_dict(data)


def experiments_suite(folder: str | Path, splits: int = 1, n_splits: int = 10, seed: int = 27) -> Suite:
    """The suite of an experiments folder: each experiment is model ``ceniqa`` with its config's fields as
    options and its name as label, run on the ``intra`` protocol (the first ``splits`` of ``n_splits``
    reference-disjoint 70/10/20 splits) of every dataset given on the command line."""
    if splits < 1 or splits > n_splits:
        raise ConfigError(f"--splits must be in 1..{n_splits}, got {splits}")
    models = [ModelSpec("ceniqa", exp.config.to_dict(), exp.name) for exp in read_experiments(folder)]
    protocol = ProtocolSpec("intra", n_splits=n_splits, max_splits=splits)
    return Suite(Path(folder).name or "experiments", models, [], [protocol], seed=seed)


#: Command-line dataset flags: flag name -> (dataset name, loader kind).
CLI_DATASETS = {"live": ("live", "live"), "kadid": ("kadid10k", "kadid10k"),
                "synthetic": ("synthetic", "synthiqa")}


def with_dataset_paths(suite: Suite, paths: Mapping[str, tuple]) -> Suite:
    """Set (or add) datasets given on the command line: ``{name: (kind, root[, options])}`` (options update
    the suite's own for that dataset); these become required."""
    datasets = list(suite.datasets)
    for name, (kind, root, *rest) in paths.items():
        options = dict(rest[0]) if rest else {}
        for i, spec in enumerate(datasets):
            if spec.name == name:
                datasets[i] = DatasetSpec(name, spec.kind, str(root), {**spec.options, **options}, True)
                break
        else:
            datasets.append(DatasetSpec(name, kind, str(root), options, True))
    return Suite(suite.name, suite.models, datasets, suite.protocols, suite.seed, suite.logistic,
                 suite.n_boot, suite.embeddings, suite.builtin_data)


def parse_model_options(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``MODEL.OPTION=VALUE`` items (``bench run --set``) as ``{model: {option: value}}``; values are read
    as YAML scalars (``true``, ``64``, ``[1, 10]``; anything else stays a string, e.g. a path)."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        target, sep, text = item.partition("=")
        model, dot, option = target.strip().rpartition(".")
        if not sep or not dot or not model or not option:
            raise ConfigError(f"--set {item!r}: expected MODEL.OPTION=VALUE (e.g. "
                              "arniqa.encoder_checkpoint=runs/arniqa/best.pt)")
        try:
            value = yaml.safe_load(text) if text.strip() else text
        except yaml.YAMLError:
            value = text
        out.setdefault(model, {})[option] = value
    return out


def with_model_options(suite: Suite, overrides: Mapping[str, Mapping[str, Any]]) -> Suite:
    """Set options of the suite's models from the command line: ``{model key: {option: value}}`` (a key
    is a model's label, or its name when it has none); an unknown key is a one-line error."""
    keys = [m.key for m in suite.models]
    unknown = sorted(set(overrides) - set(keys))
    if unknown:
        raise ConfigError(f"--set {unknown[0]}.OPTION: suite {suite.name} has no model {unknown[0]!r}; its "
                          f"models: {', '.join(keys)}")
    models = [dataclasses.replace(m, options={**m.options, **overrides.get(m.key, {})}) for m in suite.models]
    return dataclasses.replace(suite, models=models)


# --------------------------------------------------------------------------------------------------
# the built-in quick data


QUICK_SIZE = 256
QUICK_LEVELS = (1, 3, 5)
QUICK_PROFILE = "kadid"
#: Name of the quick set in results.
QUICK_DATASET = "quick_synthetic"
#: KADID-10k types of the quick set: two blurs, two noises, two codecs, a brightness and a spatial change.
QUICK_TYPES = ("gaussian_blur", "motion_blur", "white_noise", "impulse_noise", "jpeg", "jpeg2000", "darken",
               "pixelate")


def prepare_quick_dataset(folder: Path, seed: int) -> Path:
    """Write the quick suite's synthetic set (built-in references, 256x256 centre crops, ``QUICK_TYPES``
    at KADID levels 1/3/5, ``level_quality`` label) as a generated-set folder; reused when present."""
    import torch
    from PIL import Image

    if (folder / "manifest.parquet").is_file() and (folder / "dataset.json").is_file():
        return folder
    rows = []
    known = set(list_distortions(QUICK_PROFILE))
    types = [t for t in QUICK_TYPES if t in known]
    if len(types) < 2:
        raise SynthiqaError(f"quick suite: distortions {', '.join(QUICK_TYPES)} are not registered")
    for name, rgb in builtin_reference_images():
        h, w = rgb.shape[:2]
        side = min(h, w)
        crop = rgb[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
        ref = np.asarray(Image.fromarray(crop).resize((QUICK_SIZE, QUICK_SIZE), Image.BICUBIC))
        ref_rel = f"references/{name}.png"
        _write_png(folder / ref_rel, ref)
        x = torch.from_numpy(ref.copy()).permute(2, 0, 1).float().div(255.0)[None]
        for dist in types:
            levels = list(QUICK_LEVELS)
            seeds = [derive_seed(seed, name, dist, lv) for lv in levels]
            out, _ = apply_distortion(x.expand(len(levels), -1, -1, -1), dist, levels, seeds, QUICK_PROFILE)
            group = get_distortion(dist, QUICK_PROFILE).group
            for lv, img in zip(levels, out, strict=True):
                rel = f"images/{name}_{dist}_{lv}.png"
                arr = img.clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
                _write_png(folder / rel, arr)
                rows.append({"image": rel, "reference": ref_rel, "scene": name, "dist_type": dist,
                             "dist_group": group, "level": float(lv),
                             "level_quality": level_quality((ChainOp(dist, float(lv)),), QUICK_PROFILE)})
    with atomic_path(folder / "manifest.parquet") as tmp:
        pd.DataFrame(rows).to_parquet(tmp, index=False)
    info = {"name": "quick_synthetic", "profile": QUICK_PROFILE, "seed": seed,
            "labels": {"level_quality": {"low": 0.0, "high": 100.0, "lower_better": False}},
            "primary_label": "level_quality"}
    atomic_write_text(folder / "dataset.json", json.dumps(info, indent=1) + "\n")
    return folder


def _write_png(path: Path, rgb: np.ndarray) -> None:
    atomic_write_bytes(path, encode_image(np.ascontiguousarray(rgb), "png"))


# --------------------------------------------------------------------------------------------------
# running


def _digest(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def _seed_of(*parts: Any) -> int:
    return int(_digest(*parts)[:8], 16)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text)[:120]


def _load_datasets(suite: Suite, log: Any) -> dict[str, IQADataset]:
    loaded: dict[str, IQADataset] = {}
    for spec in suite.datasets:
        if spec.root is None:
            flags = [f"--{f} " for f, (n, _) in CLI_DATASETS.items() if n == spec.name]
            flag = flags[0] if flags else f"--csv {spec.name}="
            log(f"dataset {spec.name}: no folder given ({flag}PATH or 'root:' in the suite); skipped")
            continue
        try:
            ds = load_dataset(spec.kind, spec.root, **spec.options)
        except SynthiqaError as exc:
            if spec.required:
                raise SynthiqaError(f"dataset {spec.name}: {exc}") from None
            log(f"dataset {spec.name}: {exc}; skipped")
            continue
        ds.name = spec.name
        loaded[spec.name] = ds
    return loaded


def _make_model(spec: ModelSpec, seed: int) -> Any:
    options = dict(spec.options)
    factory = MODELS.get(spec.name).build if spec.name in MODELS else None
    if factory is not None and "seed" not in options:
        try:
            params = inspect.signature(factory).parameters
            if "seed" in params or any(p.kind is p.VAR_KEYWORD for p in params.values()):
                options["seed"] = seed
        except (TypeError, ValueError):
            pass
    return create_model(spec.name, **options)


def _quality_rows(pred: np.ndarray, records: Sequence[IQARecord], logistic: str | None, n_boot: int,
                  seed: int, subset: str) -> list[dict[str, Any]]:
    """The quality table (``synthiqa.stats.quality_table``) as result rows: every metric with its mode and
    interval (bootstrap on the overall row only); a type holding every image repeats the overall row
    and is left out."""
    true = np.array([r.score_norm for r in records], dtype=np.float64)

    def values(n_boot: int) -> Callable[[np.ndarray, np.ndarray], dict[str, Any]]:
        def metric_set(p: np.ndarray, t: np.ndarray) -> dict[str, Any]:
            with warnings.catch_warnings():  # failed fits are recorded as mode raw_fallback
                warnings.simplefilter("ignore", RuntimeWarning)
                return {"values": quality_metrics(p, t, logistic, n_boot, seed)[0]}
        return metric_set

    table = quality_table(pred, true, [r.dist_type for r in records], values(0), MIN_PER_TYPE,
                          overall=values(n_boot))
    kept = [row for row in table if row.metrics is not None
            and (row.dist_type == "all" or row.size < len(records))]
    return [{"subset": subset, "dist_type": row.dist_type, **v.to_dict(), "n": row.size}
            for row in kept for v in row.metrics["values"]]


def _clusters(model: Any, records: Sequence[IQARecord], emb: np.ndarray | None, seed: int
              ) -> tuple[np.ndarray | None, str]:
    """Cluster ids per record: the model's own mixture if it has one, else a GMM on its embeddings."""
    own = getattr(model, "clusters", None)
    if callable(own):
        out = own(records)
        if out is not None:
            return np.asarray(out), "model_mixture"
    types = {r.dist_type for r in records if r.dist_type}
    if emb is None or len(types) < 2 or len(records) < 2 * len(types):
        return None, ""
    from sklearn.mixture import GaussianMixture
    from sklearn.preprocessing import StandardScaler

    x = StandardScaler().fit_transform(np.nan_to_num(emb))
    gmm = GaussianMixture(len(types), covariance_type="diag", random_state=seed % 2**31, reg_covar=1e-4)
    return gmm.fit_predict(x), f"gmm_diag_k{len(types)}"


def _cluster_rows(clusters: np.ndarray, records: Sequence[IQARecord], mode: str) -> list[dict[str, Any]]:
    rows = []
    for attr in ("dist_type", "dist_group"):
        labels = [getattr(r, attr) for r in records]
        keep = np.array([lbl is not None for lbl in labels])
        if keep.sum() < 2:
            continue
        scores = cluster_metrics(clusters[keep], np.array([lbl for lbl in labels if lbl is not None]))
        suffix = attr.removeprefix("dist_")
        rows += [{"subset": "test", "dist_type": "all", "metric": f"{name}_{suffix}", "mode": mode,
                  "value": value, "ci_low": math.nan, "ci_high": math.nan, "n": int(keep.sum())}
                 for name, value in scores.items()]
    return rows


def _prediction_frame(records: Sequence[IQARecord], pred: np.ndarray, subset: str,
                      clusters: np.ndarray | None) -> pd.DataFrame:
    return pd.DataFrame({
        "subset": subset,
        "image": [str(r.image) for r in records],
        "scene": [r.scene for r in records],
        "dist_type": [r.dist_type for r in records],
        "dist_group": [r.dist_group for r in records],
        "level": [r.level for r in records],
        "score": [r.score for r in records],
        "score_norm": [r.score_norm for r in records],
        "pred": pred,
        "cluster": clusters if clusters is not None else np.full(len(records), -1),
    })


def run_cell(model: Any, task: Task, suite: Suite, seed: int, want_embedding: bool
             ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, np.ndarray] | None, dict[str, float]]:
    """Fit on train (selecting on val), predict val and test; returns rows, predictions, embedding arrays
    and the wall-clock seconds of ``fit`` and of the rest (``fit_seconds``, ``predict_seconds``)."""
    start = time.perf_counter()
    model.fit(task.train, task.val or None)
    fit_seconds = time.perf_counter() - start
    rows: list[dict[str, Any]] = []
    preds = []
    if task.val and getattr(model, "trainable", False):
        pv = np.asarray(model.predict(task.val), dtype=np.float64)
        rows += _quality_rows(pv, task.val, suite.logistic, 0, seed, "val")
        preds.append(_prediction_frame(task.val, pv, "val", None))
    pt = np.asarray(model.predict(task.test), dtype=np.float64)
    if pt.shape != (len(task.test),) or not np.all(np.isfinite(pt)):
        raise SynthiqaError(f"model {getattr(model, 'name', model)} returned {pt.shape} predictions with "
                            f"non-finite values for {len(task.test)} images")
    rows += _quality_rows(pt, task.test, suite.logistic, suite.n_boot, seed, "test")
    emb = model.embed(task.test)
    emb = None if emb is None else np.asarray(emb, dtype=np.float32)
    clusters, mode = _clusters(model, task.test, emb, seed)
    if clusters is not None:
        rows += _cluster_rows(clusters, task.test, mode)
    preds.append(_prediction_frame(task.test, pt, "test", clusters))
    seconds = {"fit_seconds": fit_seconds, "predict_seconds": time.perf_counter() - start - fit_seconds}
    arrays = None
    if want_embedding and emb is not None:
        arrays = {"embedding": emb, "cluster": clusters if clusters is not None else np.full(len(pt), -1),
                  "cluster_source": np.full(len(pt), mode or "none"),
                  "image": np.array([str(r.image) for r in task.test]),
                  "dist_type": np.array([r.dist_type or "" for r in task.test]),
                  "dist_group": np.array([r.dist_group or "" for r in task.test]),
                  "score_norm": np.array([r.score_norm for r in task.test]), "pred": pt}
    return pd.DataFrame(rows), pd.concat(preds, ignore_index=True), arrays, seconds


@dataclass
class RunSummary:
    """What a run did: cells computed and reused, failures, output folder, seconds."""

    out: Path
    computed: int = 0
    reused: int = 0
    failures: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    pending: int = 0


def run_suite(suite: Suite, out: str | Path, log: Any = print, progress: bool = True, resume: bool = True,
              limit: int | None = None, jobs: int = 1) -> RunSummary:
    """Run every model x task of ``suite`` and write the results folder.

    Args:
        log: called with one-line messages (skipped datasets, failed cells).
        progress: show a rich progress bar on stderr (its line names the cell being computed); when
            stderr is not a terminal, one ``log`` line per finished cell instead.
        resume: reuse finished cells found under ``out/cells`` (False recomputes and overwrites them).
        limit: compute at most this many unfinished cells (in suite order), leaving the rest for a later
            run (``RunSummary.pending``); None computes all.
        jobs: worker processes computing cells at the same time (each with its share of the CPU threads).
    """
    if limit is not None and limit < 0:
        raise ConfigError(f"--limit must be >= 0, got {limit}")
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    summary = RunSummary(out)
    datasets = _load_datasets(suite, log)  # the user's datasets first: a bad path fails before any work
    if suite.builtin_data == "quick":
        folder = prepare_quick_dataset(out / "data" / "quick_synthetic", suite.seed)
        quick = DatasetSpec(QUICK_DATASET, "synthiqa", str(folder), {}, True)
        others = [d for d in suite.datasets if d.name != QUICK_DATASET]
        suite = dataclasses.replace(suite, datasets=[*others, quick])
        datasets.update(_load_datasets(dataclasses.replace(suite, datasets=[quick]), log))
    atomic_write_text(out / "suite.json", json.dumps(suite.to_dict(), indent=1, default=str) + "\n")
    if not datasets:
        raise SynthiqaError(f"suite {suite.name}: no dataset could be loaded; give folders with --live, "
                            "--kadid, --synthetic or --csv NAME=PATH")
    planned: list[tuple[ModelSpec, Task, int]] = []
    for proto in suite.protocols:
        try:
            tasks = make_tasks(proto, datasets, suite.seed)
        except SynthiqaError as exc:
            summary.skipped.append(f"protocol {proto.label}: {exc}")
            log(f"protocol {proto.label}: {exc}; skipped")
            continue
        if proto.name == "cross" and not tasks:
            log(f"protocol {proto.label}: dataset {proto.train!r} or its test sets not loaded; skipped")
        first: dict[str, int] = {}
        for task in tasks:
            index = first.setdefault(task.dataset, 0)
            first[task.dataset] += 1
            for spec in suite.models:
                if proto.models and spec.key not in proto.models and spec.name not in proto.models:
                    continue
                planned.append((spec, task, index))
    #: unfitted models, asked only what they need (references); each cell fits its own clone
    prototypes: dict[str, Any] = {spec.key: _make_model(spec, suite.seed) for spec in suite.models}
    no_ref_skipped: set[tuple[str, str]] = set()
    runnable = []
    for spec, task, index in planned:
        model = prototypes[spec.key]
        if getattr(model, "needs_reference", False) and any(r.reference is None for r in task.test):
            if (spec.key, task.dataset) not in no_ref_skipped:
                no_ref_skipped.add((spec.key, task.dataset))
                msg = f"model {spec.key}: dataset {task.dataset} has images without reference; skipped"
                summary.skipped.append(msg)
                log(msg)
            continue
        runnable.append((spec, task, index))
    _check_cells(suite, datasets, runnable, summary.skipped)
    todo: list[tuple[ModelSpec, Task, int, Path]] = []
    for spec, task, index in runnable:
        stem = _cell_stem(out, spec, task, suite)
        if resume and _rows_path(stem).is_file():
            summary.reused += 1
        else:
            todo.append((spec, task, index, stem))
    if limit is not None and len(todo) > limit:
        summary.pending = len(todo) - limit
        todo = todo[:limit]
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    stderr = Console(stderr=True)
    live = progress and stderr.is_terminal  # a bar on a terminal, else one line per finished cell
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, disable=not live, transient=False, console=stderr) as bar:
        job = bar.add_task(f"suite {suite.name}", total=len(todo))

        def done(where: str, error: str | None) -> None:
            if error is None:
                summary.computed += 1
            else:
                summary.failures.append(f"{where}: {error}")
                log(f"{where}: {error}")
            bar.advance(job)
            if progress and not live:
                finished = summary.computed + len(summary.failures)
                log(f"[{finished}/{len(todo)}] {where}: {'done' if error is None else 'failed'}")

        if jobs == 1 or len(todo) < 2:
            for spec, task, index, stem in todo:
                bar.update(job, description=_where(spec, task)[:70])
                done(_where(spec, task),
                     compute_cell(clone(prototypes[spec.key]), spec, task, index, stem, suite, out))
        else:
            _run_parallel(todo, prototypes, suite, out, min(jobs, len(todo)), bar, job, done)
    expected = [(spec, task) for spec, task, _ in runnable]
    write_results(out, suite, expected)
    summary.seconds = time.perf_counter() - start
    if summary.failures:
        atomic_write_text(out / "failures.txt", "\n".join(summary.failures) + "\n")
    return summary


def _check_cells(suite: Suite, datasets: Mapping[str, IQADataset],
                 runnable: Sequence[tuple[ModelSpec, Task, int]], skipped: Sequence[str]) -> None:
    """One-line error when the run would have no cell, or when a dataset the user gave (``required``)
    is in none: a suite that computes nothing must not write empty results and succeed."""
    used = {name for _, task, _ in runnable for name in (task.dataset, task.train_dataset) if name}
    unused = [d.name for d in suite.datasets if d.required and d.name in datasets and d.name not in used]
    why = f" ({'; '.join(skipped)})" if skipped else ""
    if not runnable:
        raise SynthiqaError(f"suite {suite.name}: no cell to compute on the loaded datasets "
                            f"({', '.join(datasets) or 'none'}){why}; check the protocols' dataset names")
    if unused:
        raise SynthiqaError(f"suite {suite.name}: dataset {', '.join(unused)} is in no cell (no protocol "
                            f"uses it){why}; name it in a protocol, or drop it")


def _where(spec: ModelSpec, task: Task) -> str:
    return f"{spec.key} | {task.dataset} | {task.protocol} | {task.split}"


def _rows_path(stem: Path) -> Path:
    """A cell's rows: written last, so its presence marks the cell finished."""
    return stem.with_name(stem.name + ".rows.parquet")


def compute_cell(model: Any, spec: ModelSpec, task: Task, index: int, stem: Path, suite: Suite, out: Path
                 ) -> str | None:
    """Run one cell and store its files (each written atomically, the rows last: a cell interrupted
    before its rows exist is recomputed from scratch); returns the one-line failure, or None."""
    seed = _seed_of(suite.seed, spec.key, task.dataset, task.protocol, task.split)
    try:
        rows, preds, arrays, seconds = run_cell(model, task, suite, seed, index == 0 and suite.embeddings)
    except SynthiqaError as exc:
        return str(exc)
    keys = {"model": spec.key, "dataset": task.dataset, "protocol": task.protocol, "split": task.split}
    atomic_write_text(stem.with_name(stem.name + ".time.json"), json.dumps({**keys, **seconds}) + "\n")
    preds = preds.assign(**keys)
    if arrays is not None:
        with atomic_path(stem.with_name(stem.name + ".emb.npz")) as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)
    with atomic_path(stem.with_name(stem.name + ".pred.parquet")) as tmp:
        preds.to_parquet(tmp, index=False)
    history = getattr(model, "training_log_", None)
    if history:
        run_dir = out / "runs" / _safe(spec.key) / _safe(task.dataset) / _safe(task.protocol)
        with atomic_path(run_dir / _safe(task.split) / "log.csv") as tmp:
            pd.DataFrame(history).to_csv(tmp, index=False)
    with atomic_path(_rows_path(stem)) as tmp:
        rows.assign(**keys).to_parquet(tmp, index=False)
    return None


def _cell_worker(prototype: Any, spec: ModelSpec, task: Task, index: int, stem: Path, suite: Suite,
                 out: Path, threads: int) -> str | None:
    """``compute_cell`` in a worker process, with its own model and ``threads`` torch and OpenCV threads."""
    import cv2
    import torch

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    return compute_cell(clone(prototype), spec, task, index, stem, suite, out)


def _run_parallel(todo: Sequence[tuple[ModelSpec, Task, int, Path]], prototypes: Mapping[str, Any],
                  suite: Suite, out: Path, jobs: int, bar: Any, job: Any, done: Any) -> None:
    """Cells in ``jobs`` spawned processes (the CPU's threads shared out); the bar names those running."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    threads = threads_per_worker(jobs)
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"))
    running: dict[Any, str] = {}
    queue = list(todo)
    try:
        while queue or running:
            while queue and len(running) < jobs:
                spec, task, index, stem = queue.pop(0)
                future = pool.submit(_cell_worker, prototypes[spec.key], spec, task, index, stem, suite, out,
                                     threads)
                running[future] = _where(spec, task)
            names = ", ".join(w.split(" | ")[0] for w in running.values())
            bar.update(job, description=f"running {names}"[:70])
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in finished:
                done(running.pop(future), future.result())
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


# --------------------------------------------------------------------------------------------------
# results files


#: Loader options that say where files are, not what they hold (left out of a cell's key).
_LOCATION_OPTIONS = ("image_root",)


def _cell_stem(out: Path, spec: ModelSpec, task: Task, suite: Suite) -> Path:
    """Where a cell's files live. The digest changes with anything that changes the cell's numbers and
    with nothing else: the model's config, the datasets' kind and loader options, the task's content
    (``Task.content_key``: file names relative to the dataset, scores), protocol, split, seed, logistic
    and bootstrap settings. Dataset folders are not in it, so a moved results or data folder reuses
    its cells."""
    datasets = [(d.name, d.kind, {k: v for k, v in d.options.items() if k not in _LOCATION_OPTIONS})
                for d in suite.datasets if d.name in (task.dataset, task.train_dataset)]
    digest = _digest(CELL_FORMAT, spec.numbers_key(), datasets, task.content_key, task.protocol, task.split,
                     suite.seed, suite.logistic, suite.n_boot)
    return (out / "cells" / _safe(spec.key) / _safe(task.dataset) / _safe(task.protocol)
            / f"{_safe(task.split)}.{digest}")


def _cell_files(out: Path, spec: ModelSpec, task: Task, suite: Suite, kind: str) -> Path | None:
    stem = _cell_stem(out, spec, task, suite)
    path = stem.with_name(f"{stem.name}.{kind}")
    return path if path.is_file() else None


def write_results(out: Path, suite: Suite, cells: Sequence[tuple[ModelSpec, Task]]) -> pd.DataFrame:
    """Gather this run's cells into results.parquet/csv/md, predictions.parquet, embeddings_<model>.npz."""
    rows, preds = [], []
    embeddings: dict[str, list[tuple[str, str, dict[str, np.ndarray]]]] = {}
    for spec, task in cells:
        path = _cell_files(out, spec, task, suite, "rows.parquet")
        if path is None:
            continue
        rows.append(pd.read_parquet(path))
        pred_path = _cell_files(out, spec, task, suite, "pred.parquet")
        if pred_path is not None:
            preds.append(pd.read_parquet(pred_path))
        emb_path = _cell_files(out, spec, task, suite, "emb.npz")
        if emb_path is not None:
            with np.load(emb_path, allow_pickle=False) as npz:
                embeddings.setdefault(spec.key, []).append((task.dataset, task.protocol, dict(npz)))
    times = [json.loads(path.read_text()) for spec, task in cells
             if (path := _cell_files(out, spec, task, suite, "time.json")) is not None]
    if times:
        with atomic_path(out / "timings.csv") as tmp:
            pd.DataFrame(times).to_csv(tmp, index=False, float_format="%.2f")
    table = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=list(RESULT_COLUMNS))
    table = table[list(RESULT_COLUMNS)].sort_values(list(RESULT_COLUMNS[:8]), kind="stable",
                                                    ignore_index=True)
    with atomic_path(out / "results.parquet") as tmp:
        table.to_parquet(tmp, index=False)
    with atomic_path(out / "results.csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    if preds:
        frame = pd.concat(preds, ignore_index=True)[list(PREDICTION_COLUMNS)]
        with atomic_path(out / "predictions.parquet") as tmp:
            frame.to_parquet(tmp, index=False)
    for key, items in embeddings.items():
        _write_embeddings(out / f"embeddings_{_safe(key)}.npz", items)
    atomic_write_text(out / "results.md", results_markdown(table, suite))
    return table


def _write_embeddings(path: Path, items: list[tuple[str, str, dict[str, np.ndarray]]]) -> None:
    """One file per model: the first split's test embeddings of each dataset (first protocol wins)."""
    seen, parts = set(), []
    for dataset, protocol, arrays in items:
        if dataset in seen:
            continue
        seen.add(dataset)
        n = len(arrays["pred"])
        parts.append({**arrays, "dataset": np.array([dataset] * n), "protocol": np.array([protocol] * n)})
    merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **merged)


SUMMARY_METRICS = (("srcc", "raw", "SRCC"), ("krcc", "raw", "KRCC"), ("plcc", "raw", "PLCC raw"),
                   ("plcc", "fit", "PLCC fit"), ("rmse", "fit", "RMSE fit"), ("purity_type", None, "purity"),
                   ("nmi_type", None, "NMI"))


def summary_table(table: pd.DataFrame) -> pd.DataFrame:
    """Median and standard deviation over splits per model x dataset x protocol (test, all types)."""
    test = table[(table["subset"] == "test") & (table["dist_type"] == "all")].copy()
    fit_modes = test["mode"].isin(["4pl", "5pl", "raw_fallback"])
    test.loc[fit_modes, "mode"] = "fit"
    out = []
    for (model, dataset, protocol), group in test.groupby(["model", "dataset", "protocol"], sort=True):
        row: dict[str, Any] = {"model": model, "dataset": dataset, "protocol": protocol,
                               "splits": group["split"].nunique()}
        for metric, mode, label in SUMMARY_METRICS:
            sel = group[(group["metric"] == metric) & ((group["mode"] == mode) if mode else True)]
            vals = sel["value"].to_numpy(dtype=float)
            row[label] = float(np.nanmedian(vals)) if np.isfinite(vals).any() else math.nan
            row[label + " sd"] = float(np.nanstd(vals)) if np.isfinite(vals).sum() > 1 else math.nan
        fallbacks = (group["mode"] == "raw_fallback") & (group["metric"] == "plcc")
        row["fit failures"] = int(fallbacks.sum())
        out.append(row)
    return pd.DataFrame(out)


#: The metrics given with their bootstrap intervals: (metric, mode, label).
INTERVAL_METRICS = (("srcc", "raw", "SRCC"), ("plcc", "fit", "PLCC"))


def interval_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per model x dataset x protocol, the test SRCC (raw) and PLCC (after the logistic fit) with their 95%
    bootstrap intervals: the medians over splits of the value and of the interval's ends (one split:
    its own interval); ``n`` is the median test size."""
    test = table[(table["subset"] == "test") & (table["dist_type"] == "all")].copy()
    test.loc[test["mode"].isin(["4pl", "5pl", "raw_fallback"]), "mode"] = "fit"
    out = []
    for (model, dataset, protocol), group in test.groupby(["model", "dataset", "protocol"], sort=True):
        row: dict[str, Any] = {"model": model, "dataset": dataset, "protocol": protocol,
                               "splits": group["split"].nunique()}
        for metric, mode, label in INTERVAL_METRICS:
            sel = group[(group["metric"] == metric) & (group["mode"] == mode)]
            for col, suffix in (("value", ""), ("ci_low", " low"), ("ci_high", " high")):
                vals = sel[col].to_numpy(dtype=float)
                row[label + suffix] = float(np.nanmedian(vals)) if np.isfinite(vals).any() else math.nan
        sizes = group["n"].to_numpy(dtype=float)
        row["n"] = int(np.nanmedian(sizes)) if np.isfinite(sizes).any() else 0
        out.append(row)
    return pd.DataFrame(out)


def references_table(intervals: pd.DataFrame, models: Sequence[ModelSpec]) -> pd.DataFrame:
    """The training-set sweep from ``interval_table``'s frame: one row per model with ``references`` set
    (family, dataset, protocol, references, model, SRCC with its interval, PLCC, splits), sorted by family
    and number of references; empty when no model has ``references``."""
    sweep = {m.key: m for m in models if m.references is not None}
    if not sweep or intervals.empty:
        return pd.DataFrame()
    rows = intervals[intervals["model"].isin(sweep)].copy()
    rows.insert(0, "family", [sweep[k].family or sweep[k].name for k in rows["model"]])
    rows.insert(3, "references", [int(sweep[k].references) for k in rows["model"]])
    return rows.sort_values(["family", "dataset", "protocol", "references"], ignore_index=True)


def format_interval(value: float, low: float, high: float) -> str:
    """``0.612 [0.551, 0.668]`` (the value and its 95% interval), ``-`` for a missing value."""
    if value is None or not np.isfinite(value):
        return "-"
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"{value:.3f}"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def _fmt(value: float, sd: float | None = None) -> str:
    if value is None or not np.isfinite(value):
        return "-"
    return f"{value:.3f}" if sd is None or not np.isfinite(sd) else f"{value:.3f} ±{sd:.3f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def results_markdown(table: pd.DataFrame, suite: Suite) -> str:
    """The summary (median ±sd over splits) and the per-type median SRCC, as Markdown."""
    text = [f"# Results of suite `{suite.name}`\n",
            f"seed {suite.seed}; PLCC/RMSE 'fit' = after a {suite.logistic or 'no'} logistic fit on z-scored "
            "predictions (4pl constrained non-decreasing; raw where the fit failed, counted in "
            "'fit failures'); SRCC/KRCC on raw scores; "
            "targets are scores normalised to [0, 1], higher is better. Values: median over splits ±standard "
            "deviation over splits, test subsets only (models were selected on val). purity/NMI: clusters "
            "against distortion type.\n"]
    summary = summary_table(table)
    if summary.empty:
        text.append("No results.\n")
        return "\n".join(text)
    labels = [label for _, _, label in SUMMARY_METRICS]
    header = ["model", "dataset", "protocol", "splits", *labels, "fit failures"]
    rows = [[r["model"], r["dataset"], r["protocol"], r["splits"],
             *[_fmt(r[lbl], r[lbl + " sd"]) for lbl in labels], r["fit failures"]]
            for _, r in summary.iterrows()]
    text.append("## Summary\n")
    text.append(markdown_table(header, rows))
    intervals = interval_table(table)
    text.append("\n## SRCC and PLCC with 95% bootstrap intervals\n")
    text.append(f"Test subsets; {suite.n_boot} bootstrap resamples of the test images per split; medians "
                "over splits of the value and of the interval's ends; PLCC after the logistic fit.\n")
    text.append(markdown_table(
        ["model", "dataset", "protocol", "splits", "n", "SRCC [95% CI]", "PLCC [95% CI]"],
        [[r["model"], r["dataset"], r["protocol"], r["splits"], r["n"],
          format_interval(r["SRCC"], r["SRCC low"], r["SRCC high"]),
          format_interval(r["PLCC"], r["PLCC low"], r["PLCC high"])] for _, r in intervals.iterrows()]))
    sweep = references_table(intervals, suite.models)
    if not sweep.empty:
        text.append("\n## SRCC against the number of training references\n")
        text.append(markdown_table(
            ["family", "dataset", "protocol", "references", "model", "SRCC [95% CI]", "PLCC [95% CI]"],
            [[r["family"], r["dataset"], r["protocol"], r["references"], r["model"],
              format_interval(r["SRCC"], r["SRCC low"], r["SRCC high"]),
              format_interval(r["PLCC"], r["PLCC low"], r["PLCC high"])] for _, r in sweep.iterrows()]))
    per_type = table[(table["subset"] == "test") & (table["metric"] == "srcc")
                     & (table["dist_type"] != "all") & (table["protocol"] == "intra")]
    if not per_type.empty:
        pivot = per_type.groupby(["model", "dataset", "dist_type"])["value"].median().unstack("dist_type")
        text.append("\n## Median test SRCC per distortion type (intra)\n")
        rows = [[m, d, *[_fmt(v) for v in vals]]
                for (m, d), vals in zip(pivot.index, pivot.to_numpy(), strict=True)]
        text.append(markdown_table(["model", "dataset", *pivot.columns], rows))
    return "\n".join(text)
