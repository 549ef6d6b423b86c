"""Imports the built-in model modules so that each registers itself."""

import importlib

BUILTIN_MODULES: tuple[str, ...] = (
    "baselines", "ceniqa.method", "trcnn.method", "sind.method", "arniqa.method",
)

for _module in BUILTIN_MODULES:
    importlib.import_module(f"synthiqa.models.{_module}")
