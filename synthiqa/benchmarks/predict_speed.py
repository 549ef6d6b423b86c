"""``synthiqa bench predict``: images/s of ``synthiqa predict`` for each model, on image files of one size.

Each model is scored through ``synthiqa.scoring.Scorer`` (the code ``synthiqa predict`` runs: decode,
features, score) on ``images`` PNG files of ``size`` (the built-in photographs resized to cover the size,
centre-cropped, JPEG-degraded at levels 1-5 so they differ), after one warm-up image that is not timed.
Models without a checkpoint are fitted first, outside the timing: NIQE on the built-in references (its
default), BRISQUE's SVR on a second set of such images labelled by the level rule. Every model gets a
fresh copy of the timed files, so no feature cache keyed by path carries over between models. Torch and
OpenCV get ``threads`` intra-op threads (default: ``devices.threads_per_worker(1)``, the cores this
process may run on).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from PIL import Image

from synthiqa.datasets.builtin import builtin_reference_images
from synthiqa.datasets.generation.encoding import encode_image
from synthiqa.datasets.labels import level_quality
from synthiqa.devices import threads_per_worker
from synthiqa.distortions import ChainOp, apply_distortion, derive_seed
from synthiqa.errors import ConfigError
from synthiqa.models.predictor_io import checkpoint_method
from synthiqa.scoring import Scorer

#: Models ``bench predict`` times when none is named (those that need no checkpoint).
DEFAULT_MODELS = ("niqe", "brisque")
#: The distortion that makes the benchmark images differ (profile, levels 1..5 in turn).
IMAGE_DISTORTION = ("jpeg", "kadid")


@dataclass
class PredictBenchConfig:
    """What to time: ``models`` (names that need no checkpoint) and ``checkpoints`` (trained models), each
    on ``images`` files of ``size`` (width, height) px, ``batch_size`` images per model call, on
    ``device`` with ``threads`` CPU threads (None: ``threads_per_worker(1)``)."""

    models: tuple[str, ...] = DEFAULT_MODELS
    checkpoints: tuple[str, ...] = ()
    size: tuple[int, int] = (512, 384)
    images: int = 32
    batch_size: int = 32
    device: str = "cpu"
    threads: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.images < 1 or self.batch_size < 1:
            raise ConfigError("--images and --batch-size must be >= 1")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {self.threads}")
        if not self.models and not self.checkpoints:
            raise ConfigError("name a model (--model) or a checkpoint (--checkpoint) to time")


@dataclass
class PredictBenchRow:
    """One model's timing: its name, the images scored and those it could not score (e.g. smaller than
    its patch), the seconds they took and images/s."""

    model: str
    images: int
    skipped: int
    seconds: float
    threads: int

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("inf")


def _cover(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """``rgb`` resized to cover ``width`` x ``height`` (antialiased bicubic) and centre-cropped to it."""
    h, w = rgb.shape[:2]
    scale = max(width / w, height / h)
    size = (max(width, round(w * scale)), max(height, round(h * scale)))
    big = np.asarray(Image.fromarray(rgb).resize(size, Image.BICUBIC))
    y, x = (big.shape[0] - height) // 2, (big.shape[1] - width) // 2
    return np.array(big[y:y + height, x:x + width], copy=True)


def write_images(folder: Path, n: int, size: tuple[int, int], seed: int, stream: str
                 ) -> list[tuple[Path, float]]:
    """``n`` PNG files of ``size`` in ``folder``: built-in photographs, JPEG-degraded at levels 1..5 in turn
    (seeded by ``seed`` and ``stream``); returns (path, level-rule quality) per file."""
    refs = [_cover(rgb, *size) for _, rgb in builtin_reference_images()]
    name, profile = IMAGE_DISTORTION
    out = []
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        level = 1 + i % 5
        x = torch.from_numpy(refs[i % len(refs)]).permute(2, 0, 1)[None].float().div(255.0)
        y, _ = apply_distortion(x, name, [level], [derive_seed(seed, stream, i)], profile)
        arr = y[0].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
        path = folder / f"{stream}_{i:04d}.png"
        path.write_bytes(encode_image(np.ascontiguousarray(arr), "png"))
        out.append((path, level_quality((ChainOp(name, float(level)),), profile)))
    return out


def _scorer(model: str, checkpoint: str | None, device: str, fit_csv: Path) -> Scorer:
    if checkpoint is not None:
        return Scorer(None, checkpoint, device)
    if model == "brisque":
        return Scorer(model, None, device, data=f"csv:{fit_csv}?lower_better=false&mos_range=0,100")
    return Scorer(model, None, device)


def run_predict_benchmark(config: PredictBenchConfig, log: Callable[[str], None] | None = None
                          ) -> list[PredictBenchRow]:
    """Time every model of ``config``; ``log`` gets one line per model as it starts."""
    threads = config.threads or threads_per_worker(1)
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    jobs: list[tuple[str, str | None]] = [(m, None) for m in config.models]
    jobs += [(f"{checkpoint_method(c)} ({Path(c).parent.name or c})", c) for c in config.checkpoints]
    rows = []
    with tempfile.TemporaryDirectory(prefix="synthiqa-predict-") as tmp:
        root = Path(tmp)
        timed = write_images(root / "timed", config.images, config.size, config.seed, "timed")
        warm = write_images(root / "warm", 1, config.size, config.seed, "warm")
        fit = write_images(root / "fit", 40, config.size, config.seed, "fit")
        pd.DataFrame({"image": [p.name for p, _ in fit], "mos": [q for _, q in fit]}).to_csv(
            root / "fit" / "labels.csv", index=False)
        for i, (name, checkpoint) in enumerate(jobs):
            if log is not None:
                log(f"timing {name}")
            scorer = _scorer(name, checkpoint, config.device, root / "fit" / "labels.csv")
            copies = _fresh_copies([p for p, _ in timed], root / f"copy{i}")
            scorer.score([p for p, _ in warm], batch_size=config.batch_size, warn=_ignore)
            start = time.perf_counter()
            scored = scorer.score(copies, batch_size=config.batch_size, warn=_ignore)
            seconds = time.perf_counter() - start
            rows.append(PredictBenchRow(name, len(scored), len(copies) - len(scored), seconds, threads))
    return rows


def _ignore(line: str) -> None:
    """Unscorable images are counted in the row (``skipped``), not printed one by one."""


def _fresh_copies(paths: Sequence[Path], folder: Path) -> list[Path]:
    folder.mkdir(parents=True)
    out = []
    for p in paths:
        shutil.copyfile(p, folder / p.name)
        out.append(folder / p.name)
    return out
