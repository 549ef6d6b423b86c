"""CENIQA's ablation study as data: one config file per experiment and an index of them.

``write_experiments(out)`` writes ``out/<group>/<name>.yaml`` (each a complete ``CENIQAConfig``, loadable
with ``CENIQAConfig.load`` and ``synthiqa train --config``) and ``out/index.yaml``::

    format: synthiqa-experiments
    version: 1
    base: {...}                      # the config every experiment starts from
    experiments:
      - {name: backbone-resnet, group: backbone, config: backbone/backbone-resnet.yaml,
         overrides: {backbone: resnet18}}
      ...

Groups: ``backbone`` (ResNet, EfficientNet, ViT, Swin, UNet, and the compact default), ``regressor``
(MLP, KAN, Transformer, GRU, attention), ``clusters`` (K = 4, 6, 8, 10, 12), ``features`` (each of the
multi-scale, frequency, patch-wise and pixel-statistics extractors alone and left out) and
``components`` (the monotonic head and loss, the level head, the scene statistics, the whole-image features
without quantile normalisation, and each auxiliary loss switched off, then all of them).

``read_experiments(folder)`` loads such a folder back (validating every config);
``synthiqa bench run FOLDER`` runs it as benchmark cells, a few at a time, resuming where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthiqa.atomic import atomic_write_text
from synthiqa.errors import ConfigError
from synthiqa.models.ceniqa.config import CENIQAConfig
from synthiqa.models.method_config import read_yaml

INDEX_FORMAT = "synthiqa-experiments"
INDEX_VERSION = 1

#: Backbone family -> the timm (or synthiqa) model standing for it: the smallest of each family.
BACKBONES = {"compact": "compact", "resnet": "resnet18", "efficientnet": "efficientnet_b0",
             "vit": "vit_tiny_patch16_224", "swin": "swin_tiny_patch4_window7_224", "unet": "unet"}
REGRESSORS = ("mlp", "kan", "transformer", "gru", "attention")
CLUSTER_COUNTS = (4, 6, 8, 10, 12)
FEATURES = ("multiscale", "frequency", "patch", "statistics", "whole_image")
AUXILIARY_LOSSES = ("contrast", "consistency", "ranking", "cluster")


@dataclass
class Experiment:
    """One ablation: its name, group and the config fields it changes from the base."""

    name: str
    group: str
    overrides: dict[str, Any] = field(default_factory=dict)


def ablation_experiments() -> list[Experiment]:
    """Every experiment of the CENIQA ablation study, in index order."""
    exps = [Experiment(f"backbone-{family}", "backbone", {"backbone": name})
            for family, name in BACKBONES.items()]
    exps += [Experiment(f"regressor-{r}", "regressor", {"regressor_type": r}) for r in REGRESSORS]
    exps += [Experiment(f"clusters-k{k}", "clusters", {"n_clusters": k, "use_bic_selection": False})
             for k in CLUSTER_COUNTS]
    for feat in FEATURES:
        exps.append(Experiment(f"features-only-{feat}", "features",
                               {f"use_{f}": f == feat for f in FEATURES}))
    for feat in FEATURES:
        exps.append(Experiment(f"features-no-{feat}", "features", {f"use_{feat}": False}))
    exps += [
        Experiment("components-monotonic-head", "components", {"regressor_type": "monotonic"}),
        Experiment("components-no-monotonic-loss", "components", {"lambda_monotonic": 0.0}),
        Experiment("components-no-level-head", "components", {"use_level_head": False}),
        Experiment("components-untiled-level-head", "components", {"level_tiles": 0}),
        Experiment("components-no-scene-statistics", "components", {"use_scene_statistics": False}),
        Experiment("components-raw-whole-image-features", "components", {"normalize_context": False}),
    ]
    exps += [Experiment(f"components-no-{loss}-loss", "components", {f"lambda_{loss}": 0.0})
             for loss in AUXILIARY_LOSSES]
    exps.append(Experiment("components-no-auxiliary-losses", "components",
                           {f"lambda_{loss}": 0.0 for loss in (*AUXILIARY_LOSSES, "monotonic")}))
    return exps


def write_experiments(out: str | Path, base: CENIQAConfig | None = None) -> list[Path]:
    """Write every experiment's config (``base`` with its overrides; validated) and ``index.yaml``
    under ``out``; returns the config paths. Existing files of the same names are replaced."""
    import yaml

    root = Path(out)
    base = base or CENIQAConfig()
    paths, entries = [], []
    for exp in ablation_experiments():
        config = base.replace(**exp.overrides)
        rel = Path(exp.group) / f"{exp.name}.yaml"
        (root / exp.group).mkdir(parents=True, exist_ok=True)
        config.save(root / rel)
        paths.append(root / rel)
        entries.append({"name": exp.name, "group": exp.group, "config": rel.as_posix(),
                        "overrides": dict(exp.overrides)})
    index = {"format": INDEX_FORMAT, "version": INDEX_VERSION, "method": "ceniqa", "base": base.to_dict(),
             "experiments": entries}
    atomic_write_text(root / "index.yaml", yaml.safe_dump(index, sort_keys=False))
    return paths


@dataclass
class ExperimentConfig:
    """One experiment of a written folder: name, group, and its validated config."""

    name: str
    group: str
    config: CENIQAConfig


def is_experiments_folder(path: str | Path) -> bool:
    """True when ``path`` is a folder holding an ``index.yaml``."""
    return Path(path).is_dir() and (Path(path) / "index.yaml").is_file()


def read_experiments(folder: str | Path) -> list[ExperimentConfig]:
    """The experiments of a folder written by ``write_experiments``, in index order, each config loaded
    from its file (so edits to a file count); one-line ``ConfigError`` for a foreign or broken index."""
    root = Path(folder)
    index_path = root / "index.yaml"
    if not index_path.is_file():
        raise ConfigError(f"{root}: no index.yaml (write one with synthiqa experiments --out {root})")
    index = read_yaml(index_path, "experiments index YAML")
    if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
        raise ConfigError(f"{index_path}: not a {INDEX_FORMAT} index (format: {INDEX_FORMAT} missing)")
    if index.get("version") != INDEX_VERSION:
        raise ConfigError(f"{index_path}: version {index.get('version')!r} not supported (expected "
                          f"{INDEX_VERSION})")
    if index.get("method", "ceniqa") != "ceniqa":
        raise ConfigError(f"{index_path}: method {index.get('method')!r}; only ceniqa experiments are known")
    entries = index.get("experiments")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{index_path}: no experiments listed")
    out, seen = [], set()
    for entry in entries:
        if not isinstance(entry, dict) or not {"name", "config"} <= set(entry):
            raise ConfigError(f"{index_path}: experiment entry {entry!r} needs 'name' and 'config'")
        name = str(entry["name"])
        if name in seen:
            raise ConfigError(f"{index_path}: experiment {name!r} listed twice")
        seen.add(name)
        path = root / str(entry["config"])
        if not path.is_file():
            raise ConfigError(f"{path}: config of experiment {name!r} not found")
        out.append(ExperimentConfig(name, str(entry.get("group", "")), CENIQAConfig.load(path)))
    return out
