"""``synthiqa list`` and ``synthiqa grid``: the distortions of a profile, and a distortion x level grid."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from synthiqa.cli.app import ChoicesCommand, app, console
from synthiqa.errors import SynthiqaError
from synthiqa.outputs import check_output_file


@app.command("list", cls=ChoicesCommand)
def list_command(
    profile: str = typer.Option("kadid", help="Profile: {profiles}."),
    extra: bool = typer.Option(False, "--extra", help="Also list the extra group (rain, fog, ...)."),
) -> None:
    """List the distortions of a profile with their KADID id, group and level table."""
    from rich.table import Table

    from synthiqa.distortions import get_distortion, list_distortions

    table = Table(title=f"profile {profile}")
    for col in ("name", "kadid id", "group", "parameters per level 1..5", "exact on"):
        table.add_column(col, no_wrap=col in ("name", "kadid id"), overflow="fold")
    for name in list_distortions(profile, include_extra=extra):
        d = get_distortion(name, profile)
        params = "; ".join(f"{k}={list(v)}" for k, v in d.table.params.items())
        table.add_row(name, str(d.kadid_id or "-"), d.group, params, ",".join(d.exact_on))
    console.print(table)


# --- synthiqa grid (reports/grid.py) ---------------------------------------------------------------
def _float_list(text: str, option: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SynthiqaError(f"{option} must be comma-separated numbers, got {text!r}") from None


@app.command("grid", cls=ChoicesCommand)
def grid_command(
    image: Optional[Path] = typer.Argument(None, help="Reference image; default: the built-in astronaut."),  # noqa: UP045
    profile: str = typer.Option("kadid", help="Profile: {profiles}."),
    out: Path = typer.Option(Path("grid.png"), help="Output PNG (written atomically)."),
    levels: Optional[str] = typer.Option(  # noqa: UP045
        None, help="Comma-separated levels in [1,5]; default 1..5 (basic8: severities .25,.5,.75,1)."),
    extra: bool = typer.Option(False, "--extra", help="Add the extra group (rain, fog, lens, aberration)."),
    size: int = typer.Option(256, help="Shorter image side in px, resized before distorting."),
    seed: int = typer.Option(0, help="Run seed (each row uses one seed in every column)."),
    device: str = typer.Option("cpu", help="torch device, e.g. cpu or cuda."),
) -> None:
    """Render distortions (rows) x levels (columns) on one image as a labelled PNG."""
    from synthiqa.reports.grid import render_distortion_grid

    check_output_file(out, example="grid.png")
    cols = _float_list(levels, "--levels") if levels else None
    grid = render_distortion_grid(image, profile, cols, out, include_extra=extra, size=size, seed=seed,
                                  device=device)
    console.print(f"wrote {out} ({grid.width}x{grid.height} px)")
