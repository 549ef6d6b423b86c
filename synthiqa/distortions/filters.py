"""Per-sample linear filters with replicate borders, and MATLAB ``fspecial`` kernels.

Kernels are built on the CPU in float64 (``gaussian_kernel1d``, ``disk_kernel``, ``motion_kernel``, all
cached) and applied per sample with ``separable_filter`` (one 1-D kernel per sample, used along both
axes) or ``filter2d`` (one 2-D kernel per sample). Filtering is correlation, as in MATLAB ``imfilter``
and ``cv2.filter2D``; the kernels here are point-symmetric, so it equals convolution.

Two backends give the same result within float32 rounding:

- ``"torch"`` (any device): a weighted sum of shifted views of the padded batch, one fused
  multiply-add per kernel tap that is non-zero for some sample. Every output element is the same
  sequence of operations whatever the batch holds, so a sample's output is bit-identical alone or in
  any batch. Used on GPUs and as the reference.
- ``"opencv"`` (CPU, float32): the channel planes of the samples that share a kernel are filtered as
  one tall image in one ``cv2.sepFilter2D`` / ``cv2.filter2D`` call, and the few rows at each plane's
  top and bottom are redone from replicate-padded strips (see ``_cv2_planes``). Each output row is
  computed as if its plane were alone, so this path is batch-independent too; it is several times
  faster than the torch path on a CPU.

``backend="auto"`` picks OpenCV for CPU float32 tensors and torch otherwise.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from synthiqa.distortions.base import upload

EPS = float(np.finfo(np.float64).eps)
BACKENDS = ("auto", "torch", "opencv")


# -- kernels (MATLAB fspecial semantics) -----------------------------------------------------------
def gaussian_size(sigma: float) -> int:
    """Default Gaussian kernel side used by KADID and ARNIQA: ``2*ceil(2*sigma)+1`` px."""
    return 2 * math.ceil(2 * sigma) + 1


@lru_cache(maxsize=512)
def gaussian_kernel1d(sigma: float, size: int | None = None) -> np.ndarray:
    """Normalised 1-D Gaussian of std ``sigma`` px and odd ``size`` (default ``gaussian_size``).

    Like ``fspecial('gaussian')``, taps below ``eps * max`` are zeroed and the taps are cut at the
    kernel's own size before normalising (its outer product is the 2-D fspecial kernel).
    """
    n = gaussian_size(sigma) if size is None else int(size)
    x = np.arange(n, dtype=np.float64) - (n - 1) / 2
    h = np.exp(-(x * x) / (2.0 * sigma * sigma))
    h[h < EPS * h.max()] = 0.0
    h /= h.sum()
    h.setflags(write=False)
    return h


@lru_cache(maxsize=64)
def disk_kernel(radius: float) -> np.ndarray:
    """``fspecial('disk', radius)``: a pill-box of ``radius`` px with anti-aliased edges, side 2r+1."""
    rad = float(radius)
    crad = math.ceil(rad - 0.5)
    ax = np.abs(np.arange(-crad, crad + 1, dtype=np.float64))
    xx, yy = np.meshgrid(ax, ax)
    maxxy = np.maximum(xx, yy)
    minxy = np.minimum(xx, yy)
    r2 = rad * rad

    def _sqrt(v: np.ndarray) -> np.ndarray:  # MATLAB takes complex roots where masked out below
        return np.sqrt(np.maximum(v, 0.0))

    m1 = np.where(r2 < (maxxy + 0.5) ** 2 + (minxy - 0.5) ** 2, minxy - 0.5, _sqrt(r2 - (maxxy + 0.5) ** 2))
    m2 = np.where(r2 > (maxxy - 0.5) ** 2 + (minxy + 0.5) ** 2, minxy + 0.5, _sqrt(r2 - (maxxy - 0.5) ** 2))
    a1 = np.arcsin(np.clip(m1 / rad, -1, 1))
    a2 = np.arcsin(np.clip(m2 / rad, -1, 1))
    edge = (((r2 < (maxxy + 0.5) ** 2 + (minxy + 0.5) ** 2) & (r2 > (maxxy - 0.5) ** 2 + (minxy - 0.5) ** 2))
            | ((minxy == 0) & (maxxy - 0.5 < rad) & (maxxy + 0.5 >= rad)))
    sgrid = (r2 * (0.5 * (a2 - a1) + 0.25 * (np.sin(2 * a2) - np.sin(2 * a1)))
             - (maxxy - 0.5) * (m2 - m1) + (m1 - minxy + 0.5)) * edge
    sgrid = sgrid + ((maxxy + 0.5) ** 2 + (minxy + 0.5) ** 2 < r2)
    c = crad
    sgrid[c, c] = min(math.pi * r2, math.pi / 2)
    if crad > 0 and rad > crad - 0.5 and r2 < (crad - 0.5) ** 2 + 0.25:
        m1s = math.sqrt(r2 - (crad - 0.5) ** 2)
        m1n = m1s / rad
        sg0 = 2 * (r2 * (0.5 * math.asin(m1n) + 0.25 * math.sin(2 * math.asin(m1n))) - m1s * (crad - 0.5))
        for i, j in ((2 * c, c), (c, 2 * c), (c, 0), (0, c)):
            sgrid[i, j] = sg0
        for i, j in ((2 * c - 1, c), (c, 2 * c - 1), (c, 1), (1, c)):
            sgrid[i, j] -= sg0
    sgrid[c, c] = min(sgrid[c, c], 1.0)
    h = sgrid / sgrid.sum()
    h.setflags(write=False)
    return h


@lru_cache(maxsize=4096)
def motion_kernel(length: float, angle: float) -> np.ndarray:
    """``fspecial('motion', length, angle)``: a 1-px-wide line of ``length`` px at ``angle`` degrees
    (counter-clockwise from the x axis), anti-aliased at its ends; odd side, at most length+2 px."""
    length = max(1.0, float(length))
    half = (length - 1) / 2
    phi = (float(angle) % 180) / 180 * math.pi
    cosphi, sinphi = math.cos(phi), math.sin(phi)
    xsign = 1 if cosphi >= 0 else -1
    linewdt = 1.0
    sx = math.trunc(half * cosphi + linewdt * xsign - length * EPS)
    sy = math.trunc(half * sinphi + linewdt - length * EPS)
    xs = np.arange(0, sx + xsign, xsign, dtype=np.float64)
    ys = np.arange(0, sy + 1, dtype=np.float64)
    x, y = np.meshgrid(xs, ys)
    dist2line = y * cosphi - x * sinphi
    rad = np.sqrt(x * x + y * y)
    last = (rad >= half) & (np.abs(dist2line) <= linewdt)
    x2last = half - np.abs((x[last] + dist2line[last] * sinphi) / cosphi)
    dist2line[last] = np.sqrt(dist2line[last] ** 2 + x2last**2)
    dist2line = linewdt + EPS - np.abs(dist2line)
    dist2line[dist2line < 0] = 0
    rows, cols = dist2line.shape
    h = np.zeros((2 * rows - 1, 2 * cols - 1))
    h[:rows, :cols] = np.rot90(dist2line, 2)
    h[rows - 1:, cols - 1:] = dist2line
    h /= h.sum() + EPS * length * length
    if cosphi > 0:
        h = np.flipud(h)
    h = np.ascontiguousarray(h)
    h.setflags(write=False)
    return h


# -- application ----------------------------------------------------------------------------------
def _pick_backend(images: torch.Tensor, backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "opencv" if images.device.type == "cpu" and images.dtype == torch.float32 else "torch"
    if backend == "opencv" and images.device.type != "cpu":
        raise ValueError("the opencv backend needs CPU tensors")
    return backend


def _groups(kernels: Sequence[np.ndarray]) -> list[tuple[np.ndarray, list[int]]]:
    """Samples grouped by identical kernel, in order of first appearance."""
    seen: dict[tuple[tuple[int, ...], bytes], int] = {}
    out: list[tuple[np.ndarray, list[int]]] = []
    for i, k in enumerate(kernels):
        key = (k.shape, np.ascontiguousarray(k).tobytes())
        if key not in seen:
            seen[key] = len(out)
            out.append((k, []))
        out[seen[key]][1].append(i)
    return out


def _cv2_planes(planes: np.ndarray, kernel: np.ndarray, separable: bool) -> np.ndarray:
    """Filter each plane of ``planes`` [N,H,W] (float32, contiguous) with one kernel, replicate border.

    The planes are filtered as one tall image (a zero-copy reshape); rows within ``r`` of a plane's top
    or bottom, which saw the neighbouring plane, are then recomputed from strips padded with replicated
    rows. Every output row is computed by the same OpenCV row routine on the same inputs as if its plane
    were filtered alone, so the result does not depend on the other planes.
    """
    import cv2

    n, h, w = planes.shape
    k = np.asarray(kernel, dtype=np.float32)
    r = k.shape[0] // 2

    def run(a: np.ndarray) -> np.ndarray:
        if separable:
            return cv2.sepFilter2D(a, -1, k, k, borderType=cv2.BORDER_REPLICATE)
        return cv2.filter2D(a, -1, k, borderType=cv2.BORDER_REPLICATE)

    if r == 0:
        return run(planes.reshape(n * h, w)).reshape(n, h, w)
    if h < 2 * r:  # tiny planes: pad each one fully
        padded = np.pad(planes, ((0, 0), (r, r), (0, 0)), mode="edge")
        return run(padded.reshape(-1, w)).reshape(n, h + 2 * r, w)[:, r:r + h]
    out = run(planes.reshape(n * h, w)).reshape(n, h, w)
    top = np.concatenate([np.repeat(planes[:, :1], r, axis=1), planes[:, :2 * r]], axis=1)
    bottom = np.concatenate([planes[:, h - 2 * r:], np.repeat(planes[:, h - 1:], r, axis=1)], axis=1)
    strips = run(np.stack([top, bottom], axis=1).reshape(-1, w)).reshape(n, 2, 3 * r, w)
    out[:, :r] = strips[:, 0, r:2 * r]
    out[:, h - r:] = strips[:, 1, r:2 * r]
    return out


def _opencv_filter(images: torch.Tensor, kernels: Sequence[np.ndarray], separable: bool) -> torch.Tensor:
    b, c, h, w = images.shape
    x = images.detach().contiguous().numpy()
    groups = _groups(kernels)
    if len(groups) == 1:
        out = _cv2_planes(x.reshape(b * c, h, w), groups[0][0], separable)
        return torch.from_numpy(out.reshape(b, c, h, w))
    out = np.empty_like(x)
    for k, idx in groups:
        out[idx] = _cv2_planes(x[idx].reshape(-1, h, w), k, separable).reshape(len(idx), c, h, w)
    return torch.from_numpy(out)


def _stack_kernels(kernels: Sequence[np.ndarray]) -> np.ndarray:
    """Zero-pad kernels (odd sides) around their centres to a common shape; ``[B, kh, kw]``."""
    kh = max(k.shape[0] for k in kernels)
    kw = max(k.shape[-1] for k in kernels)
    bank = np.zeros((len(kernels), kh, kw), dtype=np.float64)
    for i, k in enumerate(kernels):
        k2 = k.reshape(-1, k.shape[-1])
        oy, ox = (kh - k2.shape[0]) // 2, (kw - k2.shape[1]) // 2
        bank[i, oy:oy + k2.shape[0], ox:ox + k2.shape[1]] = k2
    return bank


#: Kernel banks kept on their devices, most recently used last: (kernel ids, axis, device, dtype) ->
#: (the kernels, so their ids stay theirs; taps in use; the bank on the device).
_BANKS: OrderedDict[tuple[Any, ...], tuple[Sequence[np.ndarray], np.ndarray, torch.Tensor]] = OrderedDict()
BANK_CACHE_SIZE = 64


def _device_bank(kernels: Sequence[np.ndarray], axis: str, device: torch.device,
                 dtype: torch.dtype) -> tuple[np.ndarray, torch.Tensor]:
    """The taps in use ``[kh, kw]`` and the bank ``[B, kh, kw]`` of ``kernels`` on ``device``: ``axis``
    ``"2d"`` (2-D kernels), ``"rows"`` or ``"cols"`` (1-D kernels along that axis). Banks of the same
    read-only kernel objects (the cached ``fspecial`` kernels) are reused per device; a new bank travels
    with one non-blocking upload."""

    key = (tuple(id(k) for k in kernels), axis, str(device), dtype)
    hit = _BANKS.get(key)
    if hit is not None:
        _BANKS.move_to_end(key)
        return hit[1], hit[2]
    if axis == "2d":
        bank = _stack_kernels(kernels)
    else:
        bank = _stack_kernels([np.asarray(k).reshape(1, -1) for k in kernels])  # [B, 1, K]
        if axis == "cols":
            bank = bank.transpose(0, 2, 1).copy()
    used = np.abs(bank).max(axis=0) > 0
    weights = upload(torch.from_numpy(bank).to(dtype), device)
    if not any(np.asarray(k).flags.writeable for k in kernels):  # only kernels that cannot change
        _BANKS[key] = (tuple(kernels), used, weights)
        while len(_BANKS) > BANK_CACHE_SIZE:
            _BANKS.popitem(last=False)
    return used, weights


def _torch_taps(images: torch.Tensor, used: np.ndarray, weights: torch.Tensor) -> torch.Tensor:
    """Correlate each sample with its kernel ``weights[b]`` [kh, kw] (on the images' device; replicate
    border), tap by tap over the taps ``used`` by some sample."""
    b, c, h, w = images.shape
    kh, kw = used.shape
    ry, rx = kh // 2, kw // 2
    xp = F.pad(images, (rx, rx, ry, ry), mode="replicate") if (rx or ry) else images
    out = torch.zeros_like(images)
    for dy, dx in zip(*np.nonzero(used), strict=True):
        out.addcmul_(xp[:, :, dy:dy + h, dx:dx + w], weights[:, dy, dx].view(b, 1, 1, 1))
    return out


def separable_filter(images: torch.Tensor, kernels: Sequence[np.ndarray],
                     backend: str = "auto") -> torch.Tensor:
    """Filter each sample of ``images`` [B,C,H,W] with ``kernels[b]`` (odd 1-D) along rows and columns.

    Replicate border. Returns a new tensor on the images' device and dtype.
    """
    if len(kernels) != images.shape[0]:
        raise ValueError(f"got {len(kernels)} kernels for {images.shape[0]} images")
    if _pick_backend(images, backend) == "opencv":
        return _opencv_filter(images, kernels, separable=True)
    rows = _torch_taps(images, *_device_bank(kernels, "rows", images.device, images.dtype))
    return _torch_taps(rows, *_device_bank(kernels, "cols", images.device, images.dtype))


def filter2d(images: torch.Tensor, kernels: Sequence[np.ndarray], backend: str = "auto") -> torch.Tensor:
    """Filter each sample of ``images`` [B,C,H,W] with its own odd-sided 2-D kernel ``kernels[b]``.

    Replicate border. Returns a new tensor on the images' device and dtype.
    """
    if len(kernels) != images.shape[0]:
        raise ValueError(f"got {len(kernels)} kernels for {images.shape[0]} images")
    if _pick_backend(images, backend) == "opencv":
        return _opencv_filter(images, kernels, separable=False)
    return _torch_taps(images, *_device_bank(kernels, "2d", images.device, images.dtype))
