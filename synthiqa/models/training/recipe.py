"""The one run recipe every method trains through: config -> data -> training loop -> test -> ``run.json``.

``run_recipe`` resolves the method's config (a ``--config`` file, or a preset with the method's defaults,
then ``--set`` overrides), checks the inputs before any long step, lets the method load its data, creates
the run folder and writes ``config.yaml`` (rank 0), lets the method train (``best.pt``, ``last.pt``,
``log.csv`` come from the loop) and test, and writes ``run.json``: ``method``, ``data``, ``device``, what
the method reports about its training, and ``test`` (the test metrics) when a test set exists.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthiqa.atomic import atomic_write_text
from synthiqa.devices import resolve_device
from synthiqa.errors import ConfigError
from synthiqa.models.method_config import MethodConfig
from synthiqa.models.training.distributed import is_main_process


@dataclass
class Trained:
    """What a method's ``fit`` step gives back: the best checkpoint, the report's training entries, and
    whatever its ``test`` step needs (the trained model and its helpers)."""

    best_path: Path
    report: dict[str, Any]
    model: Any


@dataclass(frozen=True)
class Recipe:
    """One method's steps.

    Attributes:
        method: the method's name (``run.json``'s ``method``, messages).
        config_class: its ``MethodConfig`` (``--config FILE`` is loaded with it).
        preset: ``preset(name) -> config``.
        load_data: ``(config, options, data, out_dir, device) -> data`` with a ``description``.
        fit: ``(config, data, options, out_dir, device) -> Trained``.
        test: ``(config, data, trained, device) -> report entries`` (``test``: the test metrics, when the
            data has a test set; any others, e.g. throughput).
    """

    method: str
    config_class: type[MethodConfig]
    preset: Callable[[str], MethodConfig]
    load_data: Callable[..., Any]
    fit: Callable[..., Trained]
    test: Callable[..., dict[str, Any]]


def resolve_config(recipe: Recipe, options: dict[str, Any], defaults: dict[str, Any] | None = None
                   ) -> MethodConfig:
    """``options['config']`` (a file), else ``options['preset']`` (``default``) with ``defaults``; then
    ``options['overrides']``."""
    config = (recipe.config_class.load(options["config"]) if options.get("config")
              else recipe.preset(options.get("preset") or "default").replace(**(defaults or {})))
    return config.replace(**(options.get("overrides") or {}))


def json_default(v: Any) -> Any:
    """``json.dumps`` of numpy scalars."""
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    raise TypeError(type(v).__name__)


def run_recipe(recipe: Recipe, options: dict[str, Any], data: str | None, out: str | Path | None,
               defaults: dict[str, Any] | None = None) -> Path:
    """Train ``recipe``'s method and write its run folder ``out``; returns the best checkpoint's path.

    ``options``: ``config`` (a JSON/YAML file), ``preset`` (``default``/``quick``), ``overrides`` (field ->
    value), ``label`` (generated sets: which label), ``on_the_fly`` (a reference folder, instead of
    ``data``), ``resume`` (a ``last.pt``), ``progress`` (bool); ``defaults`` go between preset and
    overrides.
    """
    if not data and not options.get("on_the_fly"):
        raise ConfigError(f"{recipe.method}: give --data DIR (or KIND:PATH), or --on-the-fly REF_DIR")
    if out is None:
        raise ConfigError("--out RUN_DIR is required")
    config = resolve_config(recipe, options, defaults)
    device = resolve_device(config.device)  # type: ignore[attr-defined]
    out_dir = Path(out)
    loaded = recipe.load_data(config, options, data, out_dir, device)
    out_dir.mkdir(parents=True, exist_ok=True)  # the run folder and its config exist before any long step
    if is_main_process():
        config.save(out_dir / "config.yaml")
    torch.manual_seed(config.seed)  # type: ignore[attr-defined]
    trained = recipe.fit(config, loaded, options, out_dir, device)
    report: dict[str, Any] = {"method": recipe.method, "data": loaded.description, "device": str(device),
                              **trained.report}
    report.update(recipe.test(config, loaded, trained, device))
    if is_main_process():
        atomic_write_text(out_dir / "run.json", json.dumps(report, indent=2, default=json_default) + "\n")
    return trained.best_path
