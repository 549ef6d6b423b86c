"""``synthiqa bench train``: training throughput of each method fed on the fly (``DegradedReferences``, as
``synthiqa train --on-the-fly`` feeds it) against the same steps fed from PNG files holding the same
distorted images (written beforehand, decoded per step as a file-fed run does).

Both sides run the method's own training step (forward, loss, backward, optimiser step) on the same
batches; the on-the-fly side pays for cropping and distorting, the file side for decoding. Per side and
run: images/s over the timed steps, and the share of the step time spent getting the batch (generating
it, or decoding it). Sides alternate ``repeat`` times; medians are reported.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthiqa.datasets.builtin import builtin_reference_images
from synthiqa.datasets.degraded import resolve_references
from synthiqa.datasets.references import normalise_reference
from synthiqa.devices import resolve_device
from synthiqa.errors import ConfigError
from synthiqa.models.arniqa.method import ARNIQATask, pair_source
from synthiqa.models.arniqa.method import preset_config as arniqa_preset
from synthiqa.models.ceniqa.config import CENIQAConfig
from synthiqa.models.ceniqa.method import CENIQATask, onthefly_bundle
from synthiqa.models.sind.method import SIND_DEFAULTS
from synthiqa.models.training.loop import to_device
from synthiqa.models.trcnn.method import RegressionTask, training_stream
from synthiqa.models.trcnn.method import preset_config as regression_preset

METHODS = ("ceniqa", "arniqa", "trcnn", "sind")


@dataclass
class TrainBenchConfig:
    """What to time: ``methods`` on ``device``, ``steps`` timed steps per run after one warm-up step, the
    sides alternating ``repeat`` times, on ``ref_dir`` (None: the built-in references shrunk to
    ``max_side`` px), with ``workers`` DataLoader workers on both sides."""

    methods: tuple[str, ...] = ("ceniqa", "arniqa")
    device: str = "cpu"
    steps: int = 6
    repeat: int = 3
    ref_dir: str | None = None
    max_side: int = 384
    workers: int = 0
    seed: int = 0


@dataclass
class TrainBenchRow:
    """One method's medians: images per step, images/s on the fly and from files, and the share of step
    time spent getting batches on each side."""

    method: str
    images_per_step: int
    onthefly_images_per_s: float
    files_images_per_s: float
    generation_share: float
    decode_share: float
    runs: list[dict[str, float]] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.onthefly_images_per_s / self.files_images_per_s


def _reference_folder(config: TrainBenchConfig, tmp: Path) -> Path:
    if config.ref_dir is not None:
        return Path(config.ref_dir)
    import cv2


    root = tmp / "refs"
    root.mkdir()
    for name, arr in builtin_reference_images():
        small = normalise_reference(arr, max_side=config.max_side)
        cv2.imwrite(str(root / f"{name}.png"), np.ascontiguousarray(small[:, :, ::-1]))
    return root


def _task(method: str, refs: Path, device: torch.device, seed: int) -> tuple[Any, Any]:
    """The method's training task and its on-the-fly training stream, default configuration."""
    if method == "ceniqa":
        config = CENIQAConfig(device=str(device), seed=seed)
        bundle = onthefly_bundle(str(refs), config, device)
        return CENIQATask(config, bundle, device), bundle.onthefly[0]
    if method == "arniqa":
        config = arniqa_preset("default", device=str(device), seed=seed)
        pairs = pair_source(resolve_references(refs, config.crop_size)[0], config, device)
        return ARNIQATask(config, [], [], device, pairs), pairs

    config = regression_preset("default", device=str(device), seed=seed,
                               **(SIND_DEFAULTS if method == "sind" else {}))
    stream = training_stream(resolve_references(refs, config.image_size)[0], config)
    return RegressionTask(method, config, [], [], device, stream=stream), stream


def _write_files(stream: Any, n: int, root: Path, device: torch.device) -> list[tuple[list[Path], dict]]:
    """Batches ``0..n-1`` of epoch 0 written as PNG files; per batch the files and the other entries."""
    import cv2

    out = []
    for j in range(n):
        batch = stream.batch(0, j, device)
        images = (batch["image"] * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        images = images.cpu().numpy()
        paths = []
        for i, img in enumerate(images):
            path = root / f"{j:04d}_{i:03d}.png"
            cv2.imwrite(str(path), np.ascontiguousarray(img[:, :, ::-1]))
            paths.append(path)
        rest = {k: v.cpu() for k, v in batch.items() if torch.is_tensor(v) and k != "image"}
        out.append((paths, rest))
    return out


class _FileBatches(torch.utils.data.Dataset):
    """Batch ``j`` decoded from its PNG files (uint8 -> float in [0, 1]) with its other entries."""

    def __init__(self, files: list[tuple[list[Path], dict]]):
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, j: int) -> dict[str, Any]:
        import cv2

        paths, rest = self.files[j]
        arrays = [cv2.imread(str(p), cv2.IMREAD_COLOR)[:, :, ::-1] for p in paths]
        images = torch.from_numpy(np.ascontiguousarray(np.stack(arrays))).permute(0, 3, 1, 2)
        return {**rest, "image": images.float().div_(255.0).contiguous()}  # NCHW, as file-fed training has


def _timed(task: Any, batches: Iterator[dict[str, Any]], steps: int, device: torch.device,
           optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """Run one warm-up step and ``steps`` timed ones; images/s and the share of time spent getting
    batches."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    wait = work = 0.0
    images = 0
    for k in range(steps + 1):
        t0 = time.perf_counter()
        batch = to_device(next(batches), device)
        sync()
        t1 = time.perf_counter()
        loss, _ = task.step(batch, 0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sync()
        t2 = time.perf_counter()
        if k:  # the first step warms caches and allocators
            wait, work, images = wait + t1 - t0, work + t2 - t1, images + int(batch["image"].shape[0])
    return {"images_per_s": images / (wait + work), "wait_share": wait / (wait + work)}


def run_train_benchmark(config: TrainBenchConfig, log: Callable[[str], None] | None = None
                        ) -> list[TrainBenchRow]:
    """Time every method of ``config`` on both sides (see the module docstring)."""

    unknown = [m for m in config.methods if m not in METHODS]
    if unknown:
        raise ConfigError(f"--method {unknown[0]!r} is not trainable; choose from {', '.join(METHODS)}")
    if config.steps < 1 or config.repeat < 1:
        raise ConfigError("--steps and --repeat must be >= 1")
    device = resolve_device(config.device)
    rows = []
    with tempfile.TemporaryDirectory(prefix="synthiqa-bench-train-") as tmp_name:
        tmp = Path(tmp_name)
        refs = _reference_folder(config, tmp)
        for method in config.methods:
            if log:
                log(f"{method}: preparing")
            torch.manual_seed(config.seed)
            task, stream = _task(method, refs, device, config.seed)
            task.model.to(device).train()
            n = min(len(stream), config.steps + 1)
            if n < config.steps + 1:
                raise ConfigError(f"{method}: an epoch has {len(stream)} steps; use --steps "
                                  f"{len(stream) - 1} or fewer")
            root = tmp / method
            root.mkdir()
            files = _write_files(stream, n, root, device)
            optimizer = torch.optim.AdamW(task.model.parameters(), lr=1e-5)
            runs = []
            for r in range(config.repeat):
                stream.set_epoch(0)
                fed = stream.loader(num_workers=config.workers, device=device)
                fly = _timed(task, iter(fed), config.steps, device, optimizer)
                file_loader = torch.utils.data.DataLoader(_FileBatches(files), batch_size=None,
                                                          num_workers=config.workers)
                disk = _timed(task, iter(file_loader), config.steps, device, optimizer)
                runs.append({"onthefly": fly["images_per_s"], "files": disk["images_per_s"],
                             "generation_share": fly["wait_share"], "decode_share": disk["wait_share"]})
                if log:
                    log(f"{method} run {r + 1}/{config.repeat}: on the fly {fly['images_per_s']:.1f} img/s, "
                        f"files {disk['images_per_s']:.1f} img/s")
            per_step = len(files[0][0])
            rows.append(TrainBenchRow(
                method, per_step, statistics.median(x["onthefly"] for x in runs),
                statistics.median(x["files"] for x in runs),
                statistics.median(x["generation_share"] for x in runs),
                statistics.median(x["decode_share"] for x in runs), runs))
    return rows
