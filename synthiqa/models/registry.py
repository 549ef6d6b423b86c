"""The models: one ``Registry`` of model cards, in timm's style (a card per model, one factory).

* A **predictor** is anything that scores images, higher is better: a trained network, a classical
  baseline, a full-reference metric. ``create_model(name, **options)`` builds one from its card; the
  benchmark harness only talks to this interface.
* A **method** is a model whose card can also train (``ceniqa``, ``arniqa``, ``trcnn``, ``sind``): the card
  gives ``synthiqa train --method NAME`` its config class and training function, and
  ``load_predictor(checkpoint)`` its loader (dispatching on the checkpoint's ``method`` entry).

Built-in cards are registered by the modules of this package (imported on the first lookup).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, overload, runtime_checkable

import numpy as np

from synthiqa.datasets.records import IQARecord
from synthiqa.errors import ConfigError, SynthiqaError
from synthiqa.registry import Registry


@runtime_checkable
class QualityPredictor(Protocol):
    """Scores images; higher is better. ``fit`` may be a no-op (full-reference metrics, NIQE pre-fitted).

    Predictors follow scikit-learn's conventions (``models/estimator.py``): the constructor only stores
    its arguments (``get_params``, ``sklearn.base.clone``), ``fit`` checks them and returns self, fitted
    state ends in ``_``.

    Attributes:
        name: registry name.
        needs_reference: True for full-reference metrics (records must carry ``reference``).
        trainable: True if ``fit`` learns from the training split's scores.
    """

    name: str
    needs_reference: bool
    trainable: bool

    def fit(self, train: Sequence[IQARecord], val: Sequence[IQARecord] | None = None) -> QualityPredictor:
        """Learn from records (``score_norm`` is the target, in [0, 1], higher is better); returns self."""

    def predict(self, records: Sequence[IQARecord]) -> np.ndarray:
        """One float per record, higher is better."""

    def embed(self, records: Sequence[IQARecord]) -> np.ndarray | None:
        """Feature vectors ``[N, D]`` for t-SNE and clustering, or None if the model has none."""


@dataclass(frozen=True)
class ModelCard:
    """Everything the package knows about one model.

    Attributes:
        name: registry name (``--model``, ``--method``, suite entries, checkpoints' ``method``).
        build: ``build(**options) -> QualityPredictor`` (a predictor class or a factory function).
        config: the method's configuration dataclass (``MethodConfig``), or None for untrained models.
        train: ``train(options, data, out) -> checkpoint path`` (``synthiqa train``), or None.
        load: ``load(checkpoint path) -> QualityPredictor``, or None.
        description: one line.
    """

    name: str
    build: Callable[..., QualityPredictor]
    config: type | None = None
    train: Callable[..., Path] | None = None
    load: Callable[[Path], QualityPredictor] | None = None
    description: str = ""

    @property
    def trainable(self) -> bool:
        """True for methods (``synthiqa train --method NAME``)."""
        return self.train is not None


#: Every model card by name; built-ins: the modules of ``synthiqa.models``.
MODELS: Registry[ModelCard] = Registry("model", "synthiqa.models", ConfigError)


@overload
def register_model(name: str, build: Callable[..., QualityPredictor], **card: Any) -> ModelCard: ...


@overload
def register_model(name: str, build: None = None, **card: Any
                   ) -> Callable[[Callable[..., QualityPredictor]], Callable[..., QualityPredictor]]: ...


def register_model(name: str, build: Callable[..., QualityPredictor] | None = None, **card: Any):
    """Register the card of model ``name`` (``card``: ``config``, ``train``, ``load``, ``description``).
    Without ``build``, a decorator for the predictor class or factory (which it returns unchanged)."""
    if build is not None:
        return MODELS.register(name, ModelCard(name, build, **card))

    def deco(factory: Callable[..., QualityPredictor]) -> Callable[..., QualityPredictor]:
        MODELS.register(name, ModelCard(name, factory, **card))
        return factory

    return deco


def get_model_card(name: str) -> ModelCard:
    """The card of ``name``; a one-line error with suggestions if unknown."""
    return MODELS.get(name)


def list_models() -> list[str]:
    return MODELS.list()


def create_model(name: str, **options: Any) -> QualityPredictor:
    """Build the predictor registered as ``name`` with ``options``; one-line error if unknown."""
    return get_model_card(name).build(**options)


def list_methods() -> list[str]:
    """The trainable models (``synthiqa train --method``)."""
    return [name for name, card in sorted(MODELS.items()) if card.trainable]


def get_method(name: str) -> ModelCard:
    """The card of a trainable model; a one-line error (with close method names) for any other name."""
    methods = list_methods()
    if name in methods:
        return MODELS.get(name)
    close = difflib.get_close_matches(str(name), methods, n=3, cutoff=0.5)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    what = "not a trainable method" if name in MODELS else "unknown method"
    raise ConfigError(f"{what} {name!r}{hint}; choose one of: {', '.join(methods)}")


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
    card = get_method(str(method))
    assert card.load is not None
    return card.load(path)
