"""The ``synthiqa`` application object, its ``bench`` group, the consoles and the help settings every command
module shares."""

from __future__ import annotations

import dataclasses

import click
import typer
from rich.console import Console
from typer.core import TyperCommand

#: Plain click help (no Rich panels): nothing in brackets is taken for markup, defaults and choices show
#: as ``[default: ...]``, and the text wraps at any width and reads the same when redirected to a file.
_HELP = {"rich_markup_mode": None, "context_settings": {"help_option_names": ["-h", "--help"],
                                                        "max_content_width": 100}}
class _Choices(dict):
    """``{name}`` in option help -> the registered names, looked up only when help is shown."""

    def __missing__(self, key: str) -> str:
        if key.startswith("accepts_"):  # the methods whose config has this field
            from synthiqa.models.registry import MODELS

            field = key.removeprefix("accepts_")
            methods = [name for name, card in sorted(MODELS.items()) if card.config is not None
                       and field in {f.name for f in dataclasses.fields(card.config)}]
            self[key] = f"methods: {', '.join(methods)}" if methods else "no method"
            return self[key]
        from synthiqa.benchmarks.suite import SUITES
        from synthiqa.datasets.generation.config import IMAGE_FORMATS
        from synthiqa.datasets.generation.modes import list_modes
        from synthiqa.datasets.loaders import list_dataset_kinds
        from synthiqa.distortions import list_profiles
        from synthiqa.models.registry import MODELS, list_methods

        names = {
            "methods": list_methods,
            "profiles": list_profiles,
            "modes": list_modes,
            "formats": lambda: (*IMAGE_FORMATS, "webdataset"),
            "kinds": list_dataset_kinds,
            "suites": SUITES.list,
            "untrained": lambda: [n for n, card in sorted(MODELS.items()) if not card.trainable],
        }[key]()
        self[key] = ", ".join(names)
        return self[key]


class ChoicesCommand(TyperCommand):
    """A command whose option help may name ``{methods}``, ``{profiles}``, ``{modes}``, ``{formats}``,
    ``{kinds}``, ``{suites}``, ``{untrained}`` (models that need no checkpoint) or ``{accepts_FIELD}`` (the
    methods whose config card has that field): filled from the registries when help is shown, so ``-h``
    lists every choice and plain runs import nothing for it."""

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        choices = _Choices()
        for param in self.params:
            text = getattr(param, "help", None)
            if isinstance(text, str) and "{" in text:
                param.help = text.format_map(choices)
        super().format_help(ctx, formatter)


app = typer.Typer(
    help="synthiqa: synthetic distortion datasets, quality models and benchmarks for IQA research.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    **_HELP,
)
bench_app = typer.Typer(help="Benchmarks: quality suites and speed of the engine.", no_args_is_help=True,
                        **_HELP)
app.add_typer(bench_app, name="bench")

console = Console()
err_console = Console(stderr=True)
