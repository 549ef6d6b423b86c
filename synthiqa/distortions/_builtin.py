"""Imports every built-in distortion module, in dependency order, so that each registers itself."""

import importlib

#: Profiles first, then the distortion families, then modules that add tables to existing distortions.
BUILTIN_MODULES = (
    "profiles", "blur", "color", "compression", "noise", "brightness", "spatial", "sharpness", "extra",
    "basic8",
)

for _module in BUILTIN_MODULES:
    importlib.import_module(f"synthiqa.distortions.{_module}")
