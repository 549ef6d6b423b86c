"""The scikit-learn conventions every predictor follows, and ``MethodPredictor``, the base of the methods'.

* The constructor only stores its arguments, under their own names (``get_params``, ``set_params`` and
  ``sklearn.base.clone`` come from ``BaseEstimator``); values are checked and resolved by ``fit`` (or by
  ``predict``, for a model that learns nothing).
* ``fit(train, val=None)`` returns the predictor; what it learns (and what it resolved: the config, the
  device) ends in ``_``.
* Predicting before fitting (or loading a checkpoint) is a one-line ``NotFittedError``.

A method's predictor (``MethodPredictor``) takes ``preset``, ``config`` (a full config instead of the
preset), ``progress`` and one keyword per field of its config dataclass, None meaning the preset's value;
its signature lists them all, so ``clone`` and ``get_params`` keep every option.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Callable
from typing import Any, ClassVar

import sklearn.exceptions
import torch
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from synthiqa.devices import resolve_device
from synthiqa.errors import ConfigError, SynthiqaError
from synthiqa.models.method_config import MethodConfig


class NotFittedError(SynthiqaError, sklearn.exceptions.NotFittedError):
    """A predictor asked to predict before ``fit`` (or before loading a checkpoint)."""


def check_fitted(predictor: Any, what: str) -> None:
    """``NotFittedError`` naming ``what`` unless ``predictor`` has fitted state (attributes ending in
    ``_``, scikit-learn's ``check_is_fitted``)."""
    try:
        check_is_fitted(predictor)
    except sklearn.exceptions.NotFittedError:
        raise NotFittedError(f"{what}: call fit() or load a checkpoint before predicting") from None


class MethodPredictor(BaseEstimator):
    """Base of a trainable method's predictor (see the module docstring).

    A subclass sets ``name`` (registry name), ``label`` (how messages name it), ``config_class`` (its
    ``MethodConfig`` dataclass) and ``presets``; ``defaults`` are config fields applied on top of the
    preset (SIND's on TRCNN's config). ``resolve()`` gives the config and device ``fit`` uses.
    """

    name: ClassVar[str]
    label: ClassVar[str]
    config_class: ClassVar[type[MethodConfig]]
    presets: ClassVar[dict[str, dict[str, Any]]]
    defaults: ClassVar[dict[str, Any]] = {}
    needs_reference: ClassVar[bool] = False
    trainable: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "config_class" in vars(cls):
            cls.__init__ = _method_init(cls.config_class)  # type: ignore[method-assign]

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """The config fields the constructor takes as keywords."""
        return config_field_names(cls.config_class)

    def resolve(self) -> tuple[Any, torch.device]:
        """The config ``fit`` trains with (``config`` or ``preset``, then ``defaults``, then every option
        that is not None) and its device; one-line ``ConfigError`` for a bad value or an unknown preset."""
        if self.config is not None and not isinstance(self.config, self.config_class):
            raise ConfigError(f"{self.label}: config must be a {self.config_class.__name__}, got "
                              f"{type(self.config).__name__}")
        base = self.config if self.config is not None else self.config_class.from_preset(
            self.presets, self.preset, self.label)
        options = {k: getattr(self, k) for k in self.option_names() if getattr(self, k) is not None}
        config = base.replace(**self.defaults).replace(**options)
        return config, resolve_device(config.device)

    def to(self, device: str | torch.device) -> MethodPredictor:
        """Run on ``device`` from now on: moves a fitted or loaded network; an unfitted predictor fits
        there."""
        self.device = str(device)
        if getattr(self, "model_", None) is not None:
            self.device_ = torch.device(device)
            self.model_.to(self.device_)
        return self


def config_field_names(config_class: type) -> tuple[str, ...]:
    """The field names of a method's config dataclass, in order: the options its predictor takes."""
    return tuple(f.name for f in dataclasses.fields(config_class))


def _method_init(config_class: type) -> Callable[..., None]:
    """A constructor that stores ``preset``, ``config``, ``progress`` and every field of
    ``config_class`` (keyword-only, default None), with that signature."""
    names = config_field_names(config_class)

    def __init__(self: MethodPredictor, preset: str = "default", config: Any = None, progress: bool = False,
                 **options: Any) -> None:
        unknown = [k for k in options if k not in names]
        if unknown:
            close = difflib.get_close_matches(unknown[0], names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{type(self).label}: unknown option {unknown[0]!r}{hint}")
        self.preset = preset
        self.config = config
        self.progress = progress
        for name in names:
            setattr(self, name, options.get(name))

    P = inspect.Parameter
    __init__.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [P("self", P.POSITIONAL_OR_KEYWORD),
         P("preset", P.POSITIONAL_OR_KEYWORD, default="default", annotation=str),
         P("config", P.POSITIONAL_OR_KEYWORD, default=None, annotation=f"{config_class.__name__} | None"),
         P("progress", P.POSITIONAL_OR_KEYWORD, default=False, annotation=bool),
         *[P(f.name, P.KEYWORD_ONLY, default=None,
             annotation=str(f.type) if "None" in str(f.type) else f"{f.type} | None")
           for f in dataclasses.fields(config_class)]])
    __init__.__doc__ = (f"Store the preset, a full ``{config_class.__name__}`` (instead of the preset), "
                        "progress output, and config fields to change (None: the preset's value).")
    return __init__
