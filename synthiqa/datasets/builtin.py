"""Built-in reference photographs: scikit-image's bundled colour samples (no download needed)."""

from __future__ import annotations

import numpy as np

from synthiqa.errors import DatasetError

#: scikit-image sample names that ship inside the wheel, all RGB photographs.
BUILTIN_NAMES: tuple[str, ...] = (
    "astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field",
)


def builtin_reference_images() -> list[tuple[str, np.ndarray]]:
    """(name, uint8 ``HxWx3`` array) for each built-in reference, in a fixed order."""
    from skimage import data

    return [(name, np.ascontiguousarray(getattr(data, name)()[..., :3])) for name in BUILTIN_NAMES]


def builtin_reference(name: str = "astronaut") -> np.ndarray:
    """One built-in reference by name, uint8 ``HxWx3``."""
    from skimage import data

    if name not in BUILTIN_NAMES:
        raise DatasetError(f"unknown built-in image {name!r}; choose one of: {', '.join(BUILTIN_NAMES)}")
    return np.ascontiguousarray(getattr(data, name)()[..., :3])
