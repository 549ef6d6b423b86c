"""Registries in timm's style for quality models (predictors) and trainable methods.

* A **predictor** is anything that scores images, higher is better: a trained network, a classical
  baseline, a full-reference metric. ``@register_model(name)`` registers a factory;
  ``create_model(name, **options)`` builds one. The benchmark harness only talks to this interface.
* A **method** is a trainable model family (``ceniqa``, ``arniqa``, ``trcnn``, ``sind``):
  ``register_method`` gives ``synthiqa train --method NAME`` its training function and
  ``load_predictor(checkpoint)`` its loader (dispatching on the checkpoint's ``method`` entry).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from synthiqa.datasets.records import IQARecord
from synthiqa.errors import ConfigError, SynthiqaError


@runtime_checkable
class QualityPredictor(Protocol):
    """Scores images; higher is better. ``fit`` may be a no-op (full-reference metrics, NIQE pre-fitted).

    Attributes:
        name: registry name.
        needs_reference: True for full-reference metrics (records must carry ``reference``).
        trainable: True if ``fit`` learns from the training split's scores.
    """

    name: str
    needs_reference: bool
    trainable: bool

    def fit(self, train: Sequence[IQARecord], val: Sequence[IQARecord] | None = None) -> None:
        """Learn from records (``score_norm`` is the target, in [0, 1], higher is better)."""

    def predict(self, records: Sequence[IQARecord]) -> np.ndarray:
        """One float per record, higher is better."""

    def embed(self, records: Sequence[IQARecord]) -> np.ndarray | None:
        """Feature vectors ``[N, D]`` for t-SNE and clustering, or None if the model has none."""


_MODELS: dict[str, Callable[..., QualityPredictor]] = {}


def register_model(name: str) -> Callable[[Callable[..., QualityPredictor]], Callable[..., QualityPredictor]]:
    """Decorator: register a predictor factory (a class or a function returning a predictor)."""

    def deco(factory: Callable[..., QualityPredictor]) -> Callable[..., QualityPredictor]:
        _MODELS[name] = factory
        return factory

    return deco


def _ensure_builtin() -> None:
    from synthiqa.models import _builtin  # noqa: F401


def list_models() -> list[str]:
    _ensure_builtin()
    return sorted(_MODELS)


def create_model(name: str, **options: Any) -> QualityPredictor:
    """Build the predictor registered as ``name`` with ``options``; one-line error if unknown."""
    _ensure_builtin()
    if name not in _MODELS:
        close = difflib.get_close_matches(name, list(_MODELS), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"unknown model {name!r}{hint}; known: {', '.join(sorted(_MODELS))}")
    return _MODELS[name](**options)


@dataclass(frozen=True)
class Method:
    """A trainable method: ``train(options, data, out) -> checkpoint path``; ``load(path) -> predictor``."""

    name: str
    train: Callable[..., Path]
    load: Callable[[Path], QualityPredictor]
    description: str = ""


_METHODS: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    _METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    _ensure_builtin()
    if name not in _METHODS:
        raise ConfigError(f"unknown method {name!r}; known: {', '.join(sorted(_METHODS))}")
    return _METHODS[name]


def list_methods() -> list[str]:
    _ensure_builtin()
    return sorted(_METHODS)


def load_predictor(checkpoint: str | Path) -> QualityPredictor:
    """Load any method's checkpoint (``torch.load(weights_only=True)``), dispatching on its ``method``."""
    import torch

    path = Path(checkpoint)
    if not path.is_file():
        raise SynthiqaError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or foreign file
        raise SynthiqaError(f"{path}: not a readable synthiqa checkpoint ({type(exc).__name__})") from None
    method = state.get("method") if isinstance(state, dict) else None
    if method is None:
        raise SynthiqaError(f"{path}: checkpoint has no 'method' entry")
    return get_method(str(method)).load(path)
