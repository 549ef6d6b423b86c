"""``synthiqa bench generate``: the whole generation job against the script a user would otherwise write.

Both sides read the same reference PNGs (prepared once, untimed: the built-ins or a folder, shrunk to
``max_side``), make the same number of images (basic recipe: ``per_image`` distortions per reference plus
the pristine copy) and write them as PNG with OpenCV's encoder (``PNG_NOTE``: synthiqa with its own row
filter setting, ``datasets.generation.encoding.ENCODE_SETTINGS``, the baseline with ``cv2.imwrite``'s
defaults; the table reports the megabytes each side wrote):

- synthiqa: ``generate`` with ``workers`` worker processes on the CPU (each running decode, distortion
  and encoding in its one thread, one torch thread), or one process on an accelerator, with the labels
  asked for (level only by default; ``fr`` adds the FR pseudo-MOS, which the baseline does not compute).
- baseline: a ``multiprocessing.Pool(workers)`` over references; each task reads with ``cv2.imread``,
  applies one of eight Albumentations transforms close to ``basic8`` per image and ``cv2.imwrite``s it.

With ``engine="ray"`` the two sides are synthiqa's two engines on the same job: the local engine
(``workers`` processes) and the Ray engine (``workers`` actors on a local Ray instance, started before
the clock, as a cluster would already be running; actor start-up is timed). Their outputs are
byte-identical, so the ratio is the price of running on Ray.

Each side runs in its own child process; the time is measured inside the child around the job (the modules
either side's job uses are imported before the clock on both sides), the peak memory is the largest sum of
resident set sizes of the child and its descendants, sampled from ``/proc`` every 20 ms (Linux; reported
as unknown elsewhere; memory shared between a parent and its forked workers is counted once per process;
Ray's own processes are counted with the Ray side); the driver's peak is the peak resident set size of the
side's main process alone (``getrusage``). The two sides alternate ``repeat`` times and each reports its
median time, so slow drifts of the machine hit both alike. The default size (6 built-in references x 101
images, about two seconds a run) is large enough that process start-up is not what is timed; tiny jobs are
dominated by synthiqa's fixed work (reference scan, forked workers, manifest and label files), which the
baseline script does not do.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from synthiqa.datasets.builtin import builtin_reference_images
from synthiqa.datasets.generation import GenerateConfig, generate
from synthiqa.datasets.references import decode_reference, normalise_reference, scan_references
from synthiqa.distortions.registry import list_distortions
from synthiqa.errors import ConfigError, DatasetError

#: How both sides write PNG.
PNG_NOTE = ("PNG on both sides, OpenCV's encoder at zlib level 1 with the RLE strategy (its defaults); "
            "synthiqa uses the Up row filter, the baseline cv2.imwrite's default Sub filter")
#: Albumentations stand-ins for the eight ``basic8`` types (the nearest transform of each).
BASELINE_TRANSFORMS = ("GaussianBlur", "MotionBlur", "GaussNoise", "ImageCompression",
                       "ColorJitter", "RandomGamma", "RandomBrightnessContrast", "Downscale")


@dataclass
class GenerateBenchConfig:
    """Options of ``synthiqa bench generate``.

    Attributes:
        ref_dir: reference folder, or None for the built-in references.
        per_image: distorted images per reference (plus the pristine copy).
        repeat: runs of each side (alternating); the median time is reported.
        workers: processes on both sides (synthiqa's CPU worker processes; on an accelerator its decode
            and write threads).
        max_side: references are shrunk to this longer side before timing (px).
        labels: label families synthiqa computes (``level``, ``fr``).
        device: synthiqa's device.
        seed: run seed.
        engine: None to time synthiqa against the baseline script; ``ray`` to time the local engine
            against the Ray engine.
    """

    ref_dir: str | None = None
    per_image: int = 100
    repeat: int = 3
    workers: int = 2
    max_side: int = 384
    labels: tuple[str, ...] = ("level",)
    device: str = "cpu"
    seed: int = 0
    engine: str | None = None


@dataclass
class BenchRow:
    """One side of the comparison (median time over its runs, peak memory over all of them); ``error`` is
    set when it could not run."""

    name: str
    images: int = 0
    seconds: float = float("nan")
    peak_rss_mb: float | None = None
    error: str | None = None
    runs: list[float] = field(default_factory=list)
    megabytes: float = float("nan")
    driver_rss_mb: float | None = None

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds and self.seconds > 0 else float("nan")


@dataclass
class GenerateBenchResult:
    config: GenerateBenchConfig
    references: int
    rows: list[BenchRow] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        """First row's images/s divided by the second's (synthiqa / baseline, or Ray / local), or None if
        either did not run."""
        ours, base = self.rows[0], self.rows[1]
        if ours.error or base.error:
            return None
        return ours.images_per_second / base.images_per_second


def _rss_tree_kb(root_pid: int) -> int | None:
    """Sum of VmRSS (kB) of ``root_pid`` and all its descendants, from /proc; None if unavailable."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    parents: dict[int, int] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    tree, frontier = {root_pid}, [root_pid]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in tree:
                tree.add(child)
                frontier.append(child)
    total = 0
    for pid in tree:
        try:
            for line in (proc / str(pid) / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (OSError, ValueError):
            continue
    return total


def _run_child(args: list[str]) -> tuple[dict, float | None]:
    """Run ``python -m synthiqa.benchmarks.generate_speed ARGS``; its JSON line and peak RSS (MB)."""
    proc = subprocess.Popen([sys.executable, "-m", "synthiqa.benchmarks.generate_speed", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]
    available = [True]

    def sample() -> None:
        while proc.poll() is None:
            kb = _rss_tree_kb(proc.pid)
            if kb is None:
                available[0] = False
                return
            peak[0] = max(peak[0], kb)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    sampler.join()
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (err.strip().splitlines() or ["no output"])[-1]
        return {"error": tail}, None
    return json.loads(lines[-1]), (peak[0] / 1024.0 if available[0] else None)


def prepare_references(config: GenerateBenchConfig, folder: Path) -> int:
    """Write the references, shrunk to ``max_side``, as PNG into ``folder``; returns their number."""
    import cv2


    folder.mkdir(parents=True, exist_ok=True)
    if config.ref_dir is None:
        items = builtin_reference_images()
    else:
        refs = scan_references(config.ref_dir).references
        items = [(r.name, decode_reference(r.path)) for r in refs if r.path is not None]
    if not items:
        raise DatasetError(f"bench generate: no usable reference image in {config.ref_dir}")
    for name, arr in items:
        small = normalise_reference(arr, config.max_side)
        cv2.imwrite(str(folder / f"{name}.png"), small[..., ::-1])
    return len(items)


def run_generate_benchmark(config: GenerateBenchConfig) -> GenerateBenchResult:
    """Time synthiqa and the baseline on the same prepared references; see the module docstring."""
    if config.repeat < 1:
        raise ConfigError(f"--repeat must be at least 1, got {config.repeat}")
    if config.engine not in (None, "ray"):
        raise ConfigError(f"--engine {config.engine!r}: give ray (local vs Ray) or leave it out")
    if config.engine == "ray":
        from synthiqa.datasets.generation.engines.ray import _ray

        _ray()  # the missing extra is one line before anything is timed
    with tempfile.TemporaryDirectory(prefix="synthiqa-bench-") as tmp:
        root = Path(tmp)
        n_refs = prepare_references(config, root / "refs")
        common = [str(root / "refs"), str(config.per_image), str(config.workers), str(config.seed)]
        ours = ["synthiqa", *common, "OUT", ",".join(config.labels), config.device]
        if config.engine == "ray":
            sides = {"synthiqa generate --engine ray": [*ours, "ray"],
                     "synthiqa generate --engine local": [*ours, "local"]}
        else:
            sides = {"synthiqa generate": [*ours, "local"],
                     "albumentations + cv2.imwrite pool": ["baseline", *common, "OUT"]}
        rows = {name: BenchRow(name) for name in sides}
        for r in range(config.repeat):
            for k, (name, args) in enumerate(sides.items()):
                row = rows[name]
                if row.error:
                    continue
                out = root / f"out-{k}-{r}"
                res, peak = _run_child([str(out) if a == "OUT" else a for a in args])
                shutil.rmtree(out, ignore_errors=True)
                row.error = res.get("error")
                row.images = res.get("images", 0)
                row.megabytes = res.get("bytes", float("nan")) / 1e6
                row.runs.append(res.get("seconds", float("nan")))
                if res.get("driver_rss_mb") is not None:
                    row.driver_rss_mb = max(row.driver_rss_mb or 0.0, res["driver_rss_mb"])
                if peak is not None:
                    row.peak_rss_mb = max(row.peak_rss_mb or 0.0, peak)
        for row in rows.values():
            row.seconds = statistics.median(row.runs) if row.runs and not row.error else float("nan")
    return GenerateBenchResult(config, n_refs, list(rows.values()))


# -- the two jobs, run in child processes ------------------------------------------------------------
def _child_synthiqa(ref_dir: str, per_image: int, workers: int, seed: int, out: str, labels: str,
                    device: str, engine: str) -> dict:
    import resource

    import torch


    torch.set_num_threads(workers)
    # imports are not part of the job (the baseline imports Albumentations and OpenCV before its clock)
    import multiprocessing.queues  # noqa: F401  (the worker processes' plumbing)
    import multiprocessing.sharedctypes  # noqa: F401
    import multiprocessing.synchronize  # noqa: F401

    import cv2  # noqa: F401
    import pandas.io.formats.csvs  # noqa: F401
    import pyarrow.pandas_compat  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    from PIL import ImageFile, PngImagePlugin  # noqa: F401  (the reference scan)


    with contextlib.suppress(ImportError):
        import multiprocessing.popen_fork  # noqa: F401
    list_distortions("basic8")  # imports the distortion modules
    if "fr" in labels:
        import piq  # noqa: F401
    cfg = GenerateConfig(out=out, ref_dir=ref_dir, profile="basic8", mode="basic", per_image=per_image,
                         seed=seed, labels=tuple(labels.split(",")), device=device, workers=workers,
                         engine=engine)
    if engine == "ray":
        from synthiqa.datasets.generation.engines.ray import connect

        connect(cfg)  # the local Ray instance is up before the clock, as a cluster would be
    t0 = time.perf_counter()
    summary = generate(cfg)
    seconds = time.perf_counter() - t0
    driver_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
    return {"images": summary.images_written, "seconds": seconds, "bytes": _png_bytes(Path(out) / "images"),
            "driver_rss_mb": driver_kb / 1024.0}


def _png_bytes(folder: Path) -> int:
    """Total size of the PNG files in ``folder`` (what a side wrote; counted after its clock)."""
    return sum(p.stat().st_size for p in folder.glob("*.png"))


def _baseline_task(args: tuple[str, str, int, int]) -> list[tuple[str, float]]:
    import albumentations as A
    import cv2
    import numpy as np

    path, out, per_image, seed = args
    rng = np.random.default_rng([zlib.crc32(Path(path).stem.encode()), seed])
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    stem = Path(path).stem
    cv2.imwrite(f"{out}/{stem}__0000.png", img)
    rows = [(f"{stem}__0000.png", 100.0)]
    transforms = {
        "GaussianBlur": lambda s: A.GaussianBlur(blur_limit=(3, 3 + 2 * int(6 * s)), p=1.0),
        "MotionBlur": lambda s: A.MotionBlur(blur_limit=(3, 3 + 2 * int(8 * s)), p=1.0),
        "GaussNoise": lambda s: A.GaussNoise(std_range=(0.02, 0.02 + 0.2 * s), p=1.0),
        "ImageCompression": lambda s: A.ImageCompression(quality_range=(max(1, int(90 - 85 * s)),) * 2,
                                                         p=1.0),
        "ColorJitter": lambda s: A.ColorJitter(brightness=0, contrast=0, saturation=(1 - s, 1 - s), hue=0,
                                               p=1.0),
        "RandomGamma": lambda s: A.RandomGamma(gamma_limit=(100 + int(150 * s),) * 2, p=1.0),
        "RandomBrightnessContrast": lambda s: A.RandomBrightnessContrast(
            brightness_limit=(-0.6 * s, -0.6 * s), contrast_limit=0, p=1.0),
        "Downscale": lambda s: A.Downscale(scale_range=(1 - 0.8 * s, 1 - 0.8 * s), p=1.0),
    }
    names = list(BASELINE_TRANSFORMS)
    for i in range(1, per_image + 1):
        name = names[int(rng.integers(len(names)))]
        severity = float(rng.uniform(0.2, 1.0))
        dist = transforms[name](severity)(image=img)["image"]
        cv2.imwrite(f"{out}/{stem}__{i:04d}.png", dist)
        rows.append((f"{stem}__{i:04d}.png", 100.0 * (1 - 0.8 * severity)))
    return rows


def _child_baseline(ref_dir: str, per_image: int, workers: int, seed: int, out: str) -> dict:
    import multiprocessing as mp
    import multiprocessing.pool  # noqa: F401

    try:
        import albumentations  # noqa: F401
    except ImportError:
        raise SystemExit("albumentations is not installed (pip install 'synthiqa[bench]')") from None
    os.makedirs(out, exist_ok=True)
    paths = sorted(str(p) for p in Path(ref_dir).glob("*.png"))
    t0 = time.perf_counter()
    with mp.Pool(workers) as pool:
        results = pool.map(_baseline_task, [(p, out, per_image, seed) for p in paths])
    with open(f"{out}/labels.csv", "w") as f:
        f.write("image_path,mos\n")
        for rows in results:
            f.writelines(f"{name},{mos}\n" for name, mos in rows)
    seconds = time.perf_counter() - t0
    return {"images": sum(len(r) for r in results), "seconds": seconds, "bytes": _png_bytes(Path(out))}


def _main(argv: list[str]) -> None:
    kind, ref_dir, per_image, workers, seed, out, *rest = argv
    if kind == "synthiqa":
        res = _child_synthiqa(ref_dir, int(per_image), int(workers), int(seed), out, *rest)
    else:
        res = _child_baseline(ref_dir, int(per_image), int(workers), int(seed), out)
    print(json.dumps(res))


if __name__ == "__main__":
    _main(sys.argv[1:])
