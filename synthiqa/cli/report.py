"""``synthiqa report`` (``synthiqa/reports/``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from synthiqa.cli.app import ChoicesCommand, app, console
from synthiqa.outputs import check_output_file, check_output_folder


# --- synthiqa report (reports/) --------------------------------------------------------------------
@app.command("report", cls=ChoicesCommand)
def report_command(
    results: Path = typer.Argument(..., help="Results folder written by synthiqa bench run."),
    out: Optional[Path] = typer.Option(None, "--out", help="HTML file (default RESULTS/report.html)."),  # noqa: UP045
    run: Optional[list[Path]] = typer.Option(  # noqa: UP045
        None, "--run", help="Training run folder with log.csv (repeatable; default: runs found in RESULTS)."),
) -> None:
    """Render the figures (PNG) and one self-contained HTML report from a results folder; never retrains."""
    from synthiqa.reports.html import build_report

    if out is not None:
        check_output_file(out, example="report.html")
    check_output_folder(results / "figures", "RESULTS")
    path = build_report(results, out=out, runs=run or None)
    console.print(f"wrote {path} (figures in {path.parent / 'figures'})", highlight=False)
