"""synthiqa: synthetic distortion datasets, quality models and benchmarks for IQA research."""

from synthiqa.version import __version__


def __getattr__(name: str):
    """``synthiqa.create_metric`` / ``synthiqa.list_metrics`` (``synthiqa.scoring``), imported on first use
    so that ``import synthiqa`` stays light."""
    if name in ("create_metric", "list_metrics"):
        from synthiqa import scoring

        return getattr(scoring, name)
    raise AttributeError(f"module 'synthiqa' has no attribute {name!r}")


__all__ = ["__version__", "create_metric", "list_metrics"]
