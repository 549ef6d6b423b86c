"""``generate``: scan -> plan -> run (an engine) -> write the final files."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthiqa.atomic import atomic_write_text
from synthiqa.datasets.generation.config import GenerateConfig
from synthiqa.datasets.generation.engines import get_engine
from synthiqa.datasets.generation.output import finalize, prepare_out, read_shard_records, remove_temporaries
from synthiqa.datasets.generation.plan import plan_work, stems
from synthiqa.datasets.generation.progress import Reporter, interrupt_at_safe_points
from synthiqa.datasets.generation.sources import scan_sources
from synthiqa.datasets.manifest import CONFIG_FILE, dumps, read_parts
from synthiqa.devices import resolve_device
from synthiqa.errors import ConfigError, DatasetError


@dataclass
class GenerateSummary:
    """What a run did: counts, skipped files, time."""

    out: Path
    references: int
    images_total: int
    images_written: int
    skipped: list[tuple[str, str]]
    seconds: float
    device: str

    @property
    def images_per_second(self) -> float:
        return self.images_written / self.seconds if self.seconds > 0 else 0.0


def generate(config: GenerateConfig, console: Any = None, progress: bool = True) -> GenerateSummary:
    """Run (or resume) a generation job; returns what was done.

    A Ctrl-C stops the run between chunks (KeyboardInterrupt); ``--resume`` finishes it.
    """
    with interrupt_at_safe_points() as check:
        return _generate(config, console, progress, check)


def _generate(config: GenerateConfig, console: Any, progress: bool, check: Callable[[], None],
              ) -> GenerateSummary:
    t0 = time.perf_counter()
    reporter = Reporter(console, progress)
    cfg = config.resolved()
    device = resolve_device(cfg.device)
    engine = get_engine(cfg.engine)
    if cfg.engine == "ray":
        from synthiqa.datasets.generation.engines.ray import connect

        connect(cfg)  # the extra and the address are checked before anything is scanned or written
    out = Path(cfg.out)
    cfg = prepare_out(out, cfg)
    sources = scan_sources(cfg.ref_dir, cfg.crop, cfg.max_pixels, warn=reporter.warn, max_side=cfg.max_side)
    refs, skipped = sources.references, sources.skipped
    if not refs:
        raise DatasetError(f"no usable reference image in {cfg.ref_dir} ({len(skipped)} files skipped)")
    names = stems(refs, cfg.mode)
    mine = list(enumerate(refs))
    if cfg.shard is not None:
        i, n = cfg.shard
        mine = [(k, r) for k, r in mine if k % n == i - 1]
        if not mine:
            raise ConfigError(f"--shard {i}/{n}: no reference falls in this shard ({len(refs)} references)")
    out.mkdir(parents=True, exist_ok=True)
    remove_temporaries(out)
    atomic_write_text(out / CONFIG_FILE, dumps(cfg.run_record()))
    work = plan_work(mine, names, cfg, out, set(read_parts(out)), set(read_shard_records(out)))
    check()
    written, late_skips = engine(work, cfg, device, out, sources.arrays, reporter, check)
    remove_temporaries(out)  # a worker that died mid-task (Ray retries it elsewhere) left its temporaries
    skipped += late_skips
    if not read_parts(out):
        raise DatasetError(f"no usable reference image in {cfg.ref_dir or 'the built-in set'} "
                           f"({len(skipped)} files skipped)")
    frame = finalize(out, cfg.run_record(), skipped)
    return GenerateSummary(out, int(frame["scene"].nunique()), len(frame), written, skipped,
                           time.perf_counter() - t0, str(device))
