"""The ``synthiqa`` command line: one module per command group, each only parsing options and calling one
library function per command (``engine``: list, grid; ``data``: generate, merge; ``models``: train,
predict, evaluate, experiments; ``bench``: the benchmarks; ``report``)."""

from __future__ import annotations

import importlib
import sys
import warnings
from typing import Optional

from rich.markup import escape

from synthiqa.cli.app import app, err_console
from synthiqa.errors import SynthiqaError

#: The command modules; each registers its commands when imported, in this order (``synthiqa --help``).
COMMAND_GROUPS = ("engine", "data", "models", "bench", "report")
for _group in COMMAND_GROUPS:
    importlib.import_module(f"synthiqa.cli.{_group}")


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """``warnings.showwarning`` for the command line: one ``warning:`` line, no source path or code."""
    err_console.print(f"warning: {escape(str(message))}", highlight=False, soft_wrap=True)


def main(argv: Optional[list[str]] = None) -> None:  # noqa: UP045 (typer needs Optional on 3.10)
    """Entry point: user mistakes print one line on stderr and exit with status 2; warnings print as
    one line each."""

    warnings.showwarning = _warning_line
    try:
        app(args=argv, prog_name="synthiqa", standalone_mode=True)
    except SynthiqaError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except OSError as exc:  # the system refused a file operation: one line naming the file
        where = f"{exc.filename}: " if exc.filename else ""
        err_console.print(f"[bold red]error:[/] {escape(where + str(exc.strerror or exc))}", highlight=False,
                          soft_wrap=True)
        sys.exit(2)
    except SystemExit as exc:  # typer turns Ctrl-C into a silent exit 130
        if exc.code == 130:
            err_console.print("interrupted; finished outputs are kept (generate: rerun with --resume)")
        raise
    except KeyboardInterrupt:
        err_console.print("interrupted; finished outputs are kept (generate: rerun with --resume)")
        sys.exit(130)


__all__ = ["app", "main"]
