"""The training loop every trainable method reuses: device, seeding, mixed precision, learning-rate
schedule, progress bar, a CSV log per epoch (``log.csv``) and per step (``steps.csv``: the learning rate
and every value the task's step logs, so a loss curve is drawn from it), checkpoints (best validation SRCC
and last) and resume.

A method contributes a ``TrainingTask``: its model, its batches, one step's losses, what to do at the
start of an epoch (CENIQA refits its mixture) and its validation. The loop does the rest.

Under ``torch.distributed`` (torchrun, ``synthiqa train --nproc N``) the loop trains through
``DistributedDataParallel`` (a task's step runs inside its ``forward``, so methods that call several
submodules are synchronised too), each rank iterating its own slice of the batches; logged losses and
throughput are averaged/summed over ranks and only rank 0 writes files.

Checkpoints are plain dicts of tensors and primitive containers, loadable with
``torch.load(path, weights_only=True)``: ``method``, ``config``, ``model`` (state dict), ``epoch``
(number of finished epochs), ``metrics``, ``best_srcc``, the task's ``extra_state()`` entries, and in
``last.pt`` only, ``optimizer`` (its state dict) for resuming.

A run whose best validation SRCC stays under ``NO_LEARNING_SRCC`` still writes its checkpoints but warns
(``NoLearningWarning``) that the model did not learn, so such a "best" is never kept silently.
"""

from __future__ import annotations

import csv
import io
import math
import random
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from synthiqa.atomic import atomic_path, atomic_write_text
from synthiqa.errors import SynthiqaError
from synthiqa.models.training.distributed import barrier, is_distributed, is_main_process

#: Best validation SRCC below which a run is reported as not having learned (chance is 0).
NO_LEARNING_SRCC = 0.1


class NoLearningWarning(UserWarning):
    """A training run whose best validation SRCC stayed near zero or below."""


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


#: ``warm_restarts`` decays to this fraction of the base rate (ARNIQA: eta_min 1e-6 over lr 1e-3).
WARM_RESTART_FLOOR = 1e-3


def lr_factor(schedule: str, epoch: float, phase_start: int, phase_epochs: int, floor: float = 0.02) -> float:
    """Learning-rate multiplier of ``epoch`` within a phase: ``cosine`` (1 down to ``floor``), ``step``
    (x0.1 after two thirds of the phase), ``none``, or ``warm_restarts`` (SGDR, set every step from the
    fractional epoch: cosine from 1 to ``WARM_RESTART_FLOOR`` over periods of 1, 2, 4... epochs)."""
    if schedule == "warm_restarts":
        since = max(0.0, epoch - phase_start)
        cycle = math.floor(math.log2(since + 1))  # periods 2**cycle, starting at epoch 2**cycle - 1
        t_cur, period = since - (2**cycle - 1), 2**cycle
        return WARM_RESTART_FLOOR + (1 - WARM_RESTART_FLOOR) * 0.5 * (1 + math.cos(math.pi * t_cur / period))
    t = (epoch - phase_start) / max(1, phase_epochs)
    if schedule == "cosine":
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
    if schedule == "step":
        return 0.1 if t >= 2 / 3 else 1.0
    return 1.0


class TrainingTask(Protocol):
    """What a method gives the loop."""

    method: str
    model: nn.Module

    def batches(self, epoch: int) -> Iterable[dict[str, torch.Tensor]]:
        """The training batches of ``epoch`` (tensors; the loop moves them to the device)."""

    def phase(self, epoch: int) -> tuple[str, int, int]:
        """(name, first epoch, number of epochs) of the phase ``epoch`` is in (the LR restarts per phase)."""

    def start_epoch(self, epoch: int) -> dict[str, float]:
        """Work before an epoch's steps (refits...); returns values to log."""

    def step(self, batch: dict[str, torch.Tensor], epoch: int) -> tuple[torch.Tensor, dict[str, float]]:
        """(loss to minimise, values to log) for one batch, under the loop's autocast."""

    def validate(self, epoch: int) -> dict[str, float]:
        """Validation metrics (``srcc`` selects ``best.pt``); empty to skip this epoch."""

    def config_dict(self) -> dict[str, Any]:
        """The run's configuration (saved in checkpoints)."""

    def extra_state(self) -> dict[str, Any]:
        """More checkpoint entries (tensors and primitives only)."""

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what ``extra_state`` saved."""


@dataclass
class LoopSettings:
    """Optimisation settings of the loop.

    Attributes:
        epochs: total epochs over all phases.
        learning_rate, weight_decay: the optimiser's.
        scheduler: ``cosine``, ``step``, ``none`` (restarted at each phase) or ``warm_restarts`` (per step).
        optimizer: ``adamw`` or ``sgd`` (with ``momentum``).
        grad_clip: max gradient norm (0 = off).
        seed: each epoch reseeds with (seed, epoch), so a resumed run equals an uninterrupted one.
        device: torch device.
        amp: float16 autocast with gradient scaling (used on CUDA only).
        progress: show a rich progress bar.
    """

    epochs: int
    learning_rate: float
    weight_decay: float = 1e-4
    scheduler: str = "cosine"
    grad_clip: float = 5.0
    seed: int = 0
    device: torch.device | str = "cpu"
    amp: bool = True
    progress: bool = True
    optimizer: str = "adamw"
    momentum: float = 0.9


@dataclass
class TrainResult:
    """What a run produced: the checkpoints written (None when not writing files), the best validation
    SRCC and its epoch, the per-epoch log rows, the per-step rows (``epoch``, ``step`` counted from 1 over
    the run, ``lr`` and the step's logged values), the last epoch's training throughput (images/s), and
    the best checkpoint's dict (CPU tensors) for in-memory use."""

    best_path: Path | None
    last_path: Path | None
    best_srcc: float
    best_epoch: int
    rows: list[dict[str, Any]]
    images_per_second: float
    best_state: dict[str, Any]
    step_rows: list[dict[str, Any]] = field(default_factory=list)


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """``torch.save`` under a temporary name, then rename."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint dict, read with ``weights_only=True``; one-line errors for missing/foreign files."""
    p = Path(path)
    if not p.is_file():
        raise SynthiqaError(f"{p}: checkpoint not found")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise SynthiqaError(f"{p}: not a readable synthiqa checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict) or "model" not in state:
        raise SynthiqaError(f"{p}: not a synthiqa checkpoint (no 'model' entry)")
    return state


def epoch_line(row: dict[str, Any], epochs: int) -> str:
    """One line per epoch: phase, mean total loss (or the method's loss terms), validation SRCC/PLCC
    (and active clusters), training images/s (images of the training steps over their wall time, the
    number ``run.json`` reports) and seconds; every other number is in ``log.csv``."""
    parts = [f"epoch {row['epoch']}/{epochs} {row['phase']}"]
    losses = {k.removeprefix("loss_"): v for k, v in row.items() if k.startswith("loss_")}
    if "total" in losses:
        parts.append(f"loss {losses['total']:.4f}")
    elif losses:  # the method's terms (unweighted), as it logs them
        parts.append("loss " + " ".join(f"{k} {v:.4f}" for k, v in losses.items()))
    val = [f"{name} {row[key]:.3f}" for key, name in (("val_srcc", "SRCC"), ("val_plcc", "PLCC"))
           if isinstance(row.get(key), float) and math.isfinite(row[key])]
    if val:
        parts.append("val " + " ".join(val))
    if isinstance(row.get("val_active_clusters"), float):
        parts.append(f"{int(row['val_active_clusters'])} clusters")
    parts.append(f"{row.get('train_images_per_s', 0.0):.1f} img/s")
    parts.append(f"{row.get('seconds', 0.0):.1f} s")
    return ", ".join(parts)


def _write_log(path: Path, rows: list[dict[str, Any]]) -> None:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(path, buf.getvalue())


class _TaskStep(nn.Module):
    """The task's step as a module's ``forward``, for ``DistributedDataParallel`` (which synchronises the
    gradients of every parameter of ``model`` that the step used)."""

    def __init__(self, task: TrainingTask):
        super().__init__()
        self.model = task.model
        self.task = task

    def forward(self, batch: dict[str, torch.Tensor], epoch: int) -> tuple[torch.Tensor, dict[str, float]]:
        return self.task.step(batch, epoch)


def _reduce_epoch(sums: dict[str, float], n_images: int, device: torch.device
                  ) -> tuple[dict[str, float], int]:
    """Loss sums averaged over ranks, images summed (unchanged in one process)."""
    if not is_distributed():
        return sums, n_images
    import torch.distributed as dist

    keys = sorted(sums)
    t = torch.tensor([sums[k] for k in keys] + [float(n_images)], dtype=torch.float64,
                     device=device if device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    world = dist.get_world_size()
    return {k: float(t[i]) / world for i, k in enumerate(keys)}, int(t[-1])


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def run_training(task: TrainingTask, settings: LoopSettings, out_dir: str | Path | None = None,
                 resume: str | Path | None = None) -> TrainResult:
    """Train ``task`` for ``settings.epochs`` epochs.

    With ``out_dir``, writes ``log.csv`` (one row per epoch: phase, lr, mean losses, validation metrics,
    throughput, seconds), ``steps.csv`` (one row per step: epoch, step, lr, the step's values; rank 0's
    under ``torch.distributed``), ``last.pt`` after every epoch and ``best.pt`` whenever validation SRCC
    improves.
    ``resume`` (a ``last.pt``) restores model, optimizer, log and best score and continues with the next
    epoch.
    """
    device = torch.device(settings.device)
    model = task.model.to(device)
    use_amp = settings.amp and device.type == "cuda"
    if settings.optimizer == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(
            model.parameters(), lr=settings.learning_rate, momentum=settings.momentum,
            weight_decay=settings.weight_decay)
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate,
                                      weight_decay=settings.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    ddp: nn.Module | None = None
    if is_distributed():
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        ddp = DistributedDataParallel(_TaskStep(task), device_ids=ids,
                                      find_unused_parameters=getattr(task, "unused_parameters", True))
    writes = is_main_process()
    out = Path(out_dir) if out_dir is not None else None
    rows: list[dict[str, Any]] = []
    step_rows: list[dict[str, Any]] = []
    best_srcc, best_epoch, start = -math.inf, -1, 0
    best_state: dict[str, Any] = {}
    if resume is not None:
        state = load_checkpoint(resume)
        if state.get("method") != task.method:
            raise SynthiqaError(f"{resume}: a {state.get('method')!r} checkpoint, not {task.method!r}")
        if "optimizer" not in state:
            raise SynthiqaError(f"{resume}: has no optimizer state; resume from last.pt")
        task.load_extra_state(state)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["epoch"])
        best_srcc = float(state.get("best_srcc", -math.inf))
        best_epoch = int(state.get("best_epoch", -1))
        rows = [dict(r) for r in state.get("log", [])]
        step_rows = [dict(r) for r in state.get("steps", [])]
        best_file = Path(resume).with_name("best.pt")
        if best_file.is_file():
            best_state = load_checkpoint(best_file)
    images_per_second = 0.0
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
                        disable=not settings.progress or not writes, console=Console(stderr=True))
    with progress:
        for epoch in range(start, settings.epochs):
            t0 = time.perf_counter()
            seed_everything(settings.seed * 1000 + epoch)
            phase, phase_start, phase_epochs = task.phase(epoch)
            lr = settings.learning_rate * lr_factor(settings.scheduler, epoch, phase_start, phase_epochs)
            for group in optimizer.param_groups:
                group["lr"] = lr
            row: dict[str, Any] = {"epoch": epoch + 1, "phase": phase, "lr": lr}
            row.update(task.start_epoch(epoch))
            model.train()
            batches = task.batches(epoch)
            bar = progress.add_task(f"epoch {epoch + 1}/{settings.epochs} {phase}",
                                    total=len(batches) if hasattr(batches, "__len__") else None, info="")
            sums: dict[str, float] = {}
            n_steps, n_images, t_train = 0, 0, time.perf_counter()
            per_step = settings.scheduler == "warm_restarts" and hasattr(batches, "__len__")
            for batch in batches:
                if per_step:
                    f = lr_factor(settings.scheduler, epoch + n_steps / max(1, len(batches)), phase_start,
                                  phase_epochs)
                    for group in optimizer.param_groups:
                        group["lr"] = settings.learning_rate * f
                batch = to_device(batch, device)
                with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                    loss, parts = ddp(batch, epoch) if ddp is not None else task.step(batch, epoch)
                if not torch.isfinite(loss):
                    raise SynthiqaError(f"epoch {epoch + 1}: the loss became {float(loss)}; lower the "
                                        f"learning rate (now {lr:.3g})")
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if settings.grad_clip > 0:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + v
                step_rows.append({"epoch": epoch + 1, "step": len(step_rows) + 1,
                                  "lr": optimizer.param_groups[0]["lr"], **parts})
                n_steps += 1
                n_images += int(batch["image"].shape[0])
                rate = n_images / max(time.perf_counter() - t_train, 1e-9)  # as train_images_per_s below
                progress.update(bar, advance=1, info=f"loss {float(loss.detach()):.4f}, {rate:.1f} img/s")
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            sums, n_images = _reduce_epoch({**sums, "_steps": float(n_steps)}, n_images, device)
            n_steps = round(sums.pop("_steps"))
            images_per_second = n_images / max(time.perf_counter() - t_train, 1e-9)
            progress.remove_task(bar)
            row.update({f"loss_{k}": v / max(n_steps, 1) for k, v in sums.items()})
            row["train_images_per_s"] = images_per_second
            model.eval()
            metrics = task.validate(epoch)
            row.update({f"val_{k}": v for k, v in metrics.items()})
            row["seconds"] = time.perf_counter() - t0
            rows.append(row)
            improved = "srcc" in metrics and math.isfinite(metrics["srcc"]) and metrics["srcc"] > best_srcc
            if improved:
                best_srcc, best_epoch = float(metrics["srcc"]), epoch + 1
            state = {"method": task.method, "config": task.config_dict(), "model": _cpu_state(model),
                     "epoch": epoch + 1, "metrics": {k: float(v) for k, v in metrics.items()},
                     "best_srcc": best_srcc, "best_epoch": best_epoch, **task.extra_state()}
            if improved:
                best_state = dict(state)
            if writes:
                progress.console.print(epoch_line(row, settings.epochs), highlight=False, soft_wrap=True)
            if out is not None and writes:
                out.mkdir(parents=True, exist_ok=True)
                if improved:
                    save_checkpoint(out / "best.pt", state)
                save_checkpoint(out / "last.pt", {**state, "optimizer": optimizer.state_dict(),
                                                  "log": [dict(r) for r in rows],
                                                  "steps": [dict(r) for r in step_rows]})
                _write_log(out / "log.csv", rows)
                _write_log(out / "steps.csv", step_rows)
    if not best_state:  # no validation ran: the last epoch is the best we have
        best_state = {"method": task.method, "config": task.config_dict(), "model": _cpu_state(model),
                      "epoch": settings.epochs, "metrics": {}, "best_srcc": best_srcc,
                      "best_epoch": best_epoch, **task.extra_state()}
    if out is not None and writes and not (out / "best.pt").is_file():
        save_checkpoint(out / "best.pt", best_state)
    if math.isfinite(best_srcc) and best_srcc < NO_LEARNING_SRCC and is_main_process():
        where = f" ({out / 'best.pt'})" if out is not None else ""
        warnings.warn(NoLearningWarning(
            f"{task.method}: the model did not learn: best validation SRCC {best_srcc:.3f} (epoch "
            f"{best_epoch}) is below {NO_LEARNING_SRCC}; its 'best' checkpoint{where} is no better than "
            "chance"), stacklevel=2)
    barrier()  # the other ranks read what rank 0 wrote
    return TrainResult(
        best_path=out / "best.pt" if out is not None else None,
        last_path=out / "last.pt" if out is not None else None,
        best_srcc=best_srcc, best_epoch=best_epoch, rows=rows, images_per_second=images_per_second,
        best_state=best_state, step_rows=step_rows,
    )
