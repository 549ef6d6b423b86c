"""synthiqa: synthetic distortion datasets, quality models and benchmarks for IQA research."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("synthiqa")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"



def __getattr__(name: str):
    """``synthiqa.create_metric`` / ``synthiqa.list_metrics`` (``synthiqa.scoring``), imported on first use
    so that ``import synthiqa`` stays light."""
    if name in ("create_metric", "list_metrics"):
        from synthiqa import scoring

        return getattr(scoring, name)
    raise AttributeError(f"module 'synthiqa' has no attribute {name!r}")


__all__ = ["__version__", "create_metric", "list_metrics"]
