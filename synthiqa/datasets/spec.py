"""Dataset specs on the command line: ``KIND:PATH[?option=value&...]`` or a generated folder.

``live:/data/LIVE``, ``kadid10k:/data/kadid10k``, ``runs/kodak-grid`` (a folder made by ``synthiqa
generate``, kind ``synthiqa``) and, for loaders that need options, e.g.
``csv:scores.csv?lower_better=false&mos_range=0,100``. Option values: ``true``/``false``, numbers,
comma-separated numbers (a tuple), anything else a string.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synthiqa.datasets.loaders import load_dataset
from synthiqa.datasets.records import IQADataset
from synthiqa.errors import ConfigError


def parse_data_spec(data: str) -> tuple[str, str, dict[str, Any]]:
    """(kind, path, loader options) of ``data``; one-line ``ConfigError`` for a malformed option."""
    body, _, query = data.partition("?") if not Path(data).exists() else (data, "", "")
    kind, sep, path = body.partition(":")
    if not (sep and len(kind) > 1 and not Path(body).exists()):  # a Windows drive letter is not a kind
        kind, path = "synthiqa", body
    options: dict[str, Any] = {}
    for item in filter(None, query.split("&")):
        name, eq, value = item.partition("=")
        if not eq or not name:
            raise ConfigError(f"{data}: dataset option {item!r} is not NAME=VALUE")
        options[name] = option_value(value)
    return kind, path, options


def option_value(text: str) -> Any:
    """A command-line option value: ``true``/``false``, a number, numbers (a tuple), else the text."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        numbers = [float(v) for v in text.split(",")]
    except ValueError:
        return text
    if len(numbers) > 1:
        return tuple(numbers)
    return int(numbers[0]) if numbers[0].is_integer() and "." not in text else numbers[0]


def load_data_spec(data: str, label: str | None = None) -> tuple[str, IQADataset]:
    """(kind, dataset) of a spec; ``label`` picks a generated set's label column (other kinds refuse
    it)."""
    kind, path, options = parse_data_spec(data)
    if label:
        if kind != "synthiqa":
            raise ConfigError(f"--label only applies to generated sets, not to kind {kind!r}")
        options["label"] = label
    return kind, load_dataset(kind, path, **options)
