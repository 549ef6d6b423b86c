"""synthiqa: synthetic distortion datasets, quality models and benchmarks for IQA research."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("synthiqa")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
