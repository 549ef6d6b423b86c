"""The distortion interface, level tables, and input checks.

A distortion is drawn first, applied second (Kornia's split, with explicit seeds):
``sample(levels, seeds)`` returns every parameter as a per-sample tensor, and ``apply(images, params)``
is pure, so every draw can be logged and replayed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from synthiqa.distortions.rng import SampleRNG, as_seed_tensor
from synthiqa.errors import DistortionInputError

#: ARNIQA's seven distortion groups (KADID-10k types 6 and 15 join colour and noise), plus our own.
GROUPS: tuple[str, ...] = (
    "blur",
    "color_distortion",
    "jpeg",
    "noise",
    "brightness_change",
    "spatial_distortion",
    "sharpness_contrast",
)
EXTRA_GROUP = "extra"
#: Table key that makes a distortion usable under any profile (the ``extra`` group uses it).
ANY_PROFILE = "*"
MIN_SIDE = 32
NUM_LEVELS = 5


@dataclass(frozen=True)
class LevelTable:
    """Parameters of one distortion under one profile.

    ``params`` maps a parameter name to its five values at levels 1..5 (fractional levels interpolate
    linearly). ``options`` holds settings that do not vary with the level (a kernel sigma, a noise law).
    """

    params: Mapping[str, Sequence[float]]
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, values in self.params.items():
            if len(values) != NUM_LEVELS:
                raise ValueError(f"level table for {name!r} needs {NUM_LEVELS} values, got {len(values)}")

    def to_dict(self) -> dict[str, Any]:
        return {"params": {k: list(v) for k, v in self.params.items()}, "options": dict(self.options)}


def interpolate_levels(values: Sequence[float], levels: torch.Tensor) -> torch.Tensor:
    """Value of a 5-entry table at (possibly fractional) levels in [1, 5]; float64 ``[B]`` (float64 NumPy
    arithmetic: on a few samples much cheaper than torch's per-operation cost)."""
    table = np.array([float(v) for v in values], dtype=np.float64)
    pos = levels.detach().to(torch.float64).cpu().numpy() - 1.0
    lo = np.clip(np.floor(pos), 0, NUM_LEVELS - 2)
    frac = pos - lo
    lo_i = lo.astype(np.int64)
    return torch.from_numpy(table[lo_i] * (1 - frac) + table[lo_i + 1] * frac)


def check_levels(levels: torch.Tensor | Sequence[float] | float, n: int, name: str) -> torch.Tensor:
    """Levels as a float64 CPU tensor ``[n]``, each in [1, 5]; a one-line error otherwise."""
    t = torch.as_tensor(levels, dtype=torch.float64).cpu().reshape(-1)
    if t.numel() == 1 and n != 1:
        t = t.expand(n).clone()
    if t.numel() != n:
        raise DistortionInputError(f"{name}: got {t.numel()} levels for a batch of {n} images")
    v = t.numpy()
    inside = (v >= 1) & (v <= NUM_LEVELS)  # NaN is neither
    if not inside.all():
        raise DistortionInputError(f"{name}: level {v[~inside][0]} is outside [1, {NUM_LEVELS}]")
    return t


def check_shape(images: torch.Tensor, what: str = "images") -> torch.Tensor:
    """Validate a batch's type and shape (not its values); a single ``[3,H,W]`` image gets a batch
    dimension. Returns the same data, without conversion."""
    if not isinstance(images, torch.Tensor):
        raise DistortionInputError(f"{what} must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() == 3:
        images = images.unsqueeze(0)
    if images.dim() != 4:
        raise DistortionInputError(f"{what} must have shape [B,3,H,W], got {list(images.shape)}")
    if images.shape[1] != 3:
        raise DistortionInputError(f"{what} must have 3 channels (RGB), got {images.shape[1]}")
    h, w = images.shape[-2:]
    if min(h, w) < MIN_SIDE:
        raise DistortionInputError(f"{what} are {h}x{w} px; each side must be at least {MIN_SIDE} px")
    return images


def check_images(images: torch.Tensor, what: str = "images") -> torch.Tensor:
    """Validate a batch and return it as float32 ``[B,3,H,W]`` in [0, 1] (uint8 is scaled by 1/255).

    A single ``[3,H,W]`` image is accepted and given a batch dimension.
    """
    images = check_shape(images, what)
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    if not images.is_floating_point():
        raise DistortionInputError(f"{what} must be uint8 or floating point, got {images.dtype}")
    lo, hi = torch.stack([images.amin(), images.amax()]).tolist()  # one transfer; NaN propagates into both
    if math.isnan(lo) or math.isnan(hi):
        raise DistortionInputError(f"{what} contain NaN values")
    if lo < -1e-4 or hi > 1 + 1e-4:
        raise DistortionInputError(f"{what} must lie in [0, 1] (got values from {lo:.4g} to {hi:.4g})")
    return images.float().clamp(0.0, 1.0)


class Distortion:
    """Base class: subclass it, set the class attributes, implement ``apply`` (and ``draw`` if random).

    Class attributes:
        name: registry name (snake_case).
        kadid_id: KADID-10k type number 1..25, or None.
        group: one of ``GROUPS`` or ``EXTRA_GROUP``.
        tables: level table per profile name (``"*"`` for any profile).
        aliases: other accepted names (ARNIQA keys such as ``gaublur``).
        exact_on: devices where output equals the reference implementation.
        approximation: what differs from the reference, or None if faithful.
    """

    name: ClassVar[str]
    kadid_id: ClassVar[int | None] = None
    group: ClassVar[str]
    tables: ClassVar[Mapping[str, LevelTable]] = {}
    aliases: ClassVar[tuple[str, ...]] = ()
    exact_on: ClassVar[tuple[str, ...]] = ("cpu", "cuda")
    approximation: ClassVar[str | None] = None
    description: ClassVar[str] = ""

    def __init__(self, profile: str, table: LevelTable):
        self.profile = profile
        self.table = table
        self.options: Mapping[str, Any] = table.options

    # -- drawing -----------------------------------------------------------------------------
    def level_params(self, levels: torch.Tensor) -> dict[str, torch.Tensor]:
        """The table parameters at each sample's level (float64 ``[B]``)."""
        return {k: interpolate_levels(v, levels) for k, v in self.table.params.items()}

    def draw(self, rng: SampleRNG, levels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Random per-sample draws (angles, positions, field seeds). Deterministic ops draw nothing."""
        return {}

    def sample(self, levels: torch.Tensor | Sequence[float] | float,
               seeds: torch.Tensor | Sequence[int] | int) -> dict[str, torch.Tensor]:
        """Every parameter for a batch: ``level``, the table values, and the random draws (CPU tensors)."""
        lv = torch.as_tensor(levels, dtype=torch.float64).reshape(-1)
        n = lv.numel() if not isinstance(seeds, (torch.Tensor, Sequence)) else len(seeds)
        lv = check_levels(lv, n, self.name)
        seed_t = as_seed_tensor(seeds, n)
        params: dict[str, torch.Tensor] = {"level": lv}
        params.update(self.level_params(lv))
        params.update(self.draw(SampleRNG(seed_t), lv))
        return params

    # -- applying ----------------------------------------------------------------------------
    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Distort float ``[B,3,H,W]`` images in [0, 1] with the given per-sample parameters. Pure."""
        raise NotImplementedError

    def __call__(self, images: torch.Tensor, levels: torch.Tensor | Sequence[float] | float,
                 seeds: torch.Tensor | Sequence[int] | int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Validate, sample and apply in one go; returns (distorted images, parameters)."""
        x = check_images(images)
        lv = check_levels(levels, x.shape[0], self.name)
        params = self.sample(lv, as_seed_tensor(seeds, x.shape[0]))
        return self.apply(x, params).clamp_(0.0, 1.0), params

    def info(self) -> dict[str, Any]:
        """Metadata for docs, manifests and reports."""
        return {
            "name": self.name,
            "kadid_id": self.kadid_id,
            "group": self.group,
            "profile": self.profile,
            "exact_on": list(self.exact_on),
            "approximation": self.approximation,
            "description": self.description,
            "table": self.table.to_dict(),
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, profile={self.profile!r})"


class DeviceParams(dict):
    """Parameters moved to a device (``params_to``), with the CPU originals in ``host``: ops read Python
    values (kernel sizes, codec qualities) from ``host`` instead of copying device tensors back."""

    def __init__(self, values: Mapping[str, torch.Tensor], host: Mapping[str, torch.Tensor]):
        super().__init__(values)
        self.host = dict(host)


def host_param(params: Mapping[str, torch.Tensor], key: str) -> torch.Tensor:
    """Parameter ``key`` as a CPU tensor: the CPU original when ``params`` came from ``params_to`` (no
    device round trip), else a copy of the value."""
    host = getattr(params, "host", None)
    if host is not None and key in host:
        return host[key]
    return params[key].detach().cpu()


def upload(tensor: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """A CPU tensor on ``device``: on CUDA from pinned memory with a non-blocking copy (no host sync; the
    caching host allocator keeps the buffer until the copy is done), else a plain ``to``."""
    device = torch.device(device)
    if device.type != "cuda" or tensor.device.type != "cpu":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def params_to(params: Mapping[str, torch.Tensor], device: torch.device | str,
              dtype: torch.dtype = torch.float32) -> DeviceParams:
    """Move parameters to a device; floating values become ``dtype``, integers stay int64.

    CPU values bound for another device travel packed: one buffer per dtype, one non-blocking upload
    (``upload``), split back into views there. The CPU originals stay readable as ``result.host``.
    """
    device = torch.device(device)
    host: dict[str, torch.Tensor] = {}
    out: dict[str, torch.Tensor] = {}
    packs: dict[torch.dtype, list[tuple[str, torch.Tensor]]] = {}
    for k, v in params.items():
        target = dtype if v.is_floating_point() else v.dtype
        if v.device.type == "cpu":
            host[k] = v.detach().to(target)  # the values the device sees
        if device.type == "cpu" or v.device == device:
            out[k] = v.to(device=device, dtype=target)
        else:
            packs.setdefault(target, []).append((k, host.get(k, v)))
    for items in packs.values():
        flat = torch.cat([v.detach().cpu().reshape(-1) for _, v in items])
        moved = upload(flat, device)
        start = 0
        for k, v in items:
            out[k] = moved[start:start + v.numel()].view(v.shape)
            start += v.numel()
    return DeviceParams({k: out[k] for k in params}, host)
