"""Spatial distortions, KADID-10k types 19-23: jitter, non-eccentricity patches, pixelate, quantization,
colour blocks.

Patch and block sizes, counts and jitter displacements are in pixels and are NOT rescaled with the image
size: ARNIQA applies them to 224x224 crops, KADID to 512x384 images, so the same level covers a smaller
fraction of a larger image. Integer parameters (patch, block and level counts) are rounded half up at
fractional levels, so integer levels give the table values exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from synthiqa.distortions.base import Distortion, LevelTable, host_param, upload
from synthiqa.distortions.fastpath import (
    UNIT_VALUES,
    apply_lut,
    finish_unit,
    image_range,
    map_images,
    register_uint8_path,
    scratch,
    stretch,
    stretch_array,
    to_uint8_table,
    unit_tables,
    unit_values,
)
from synthiqa.distortions.registry import register_distortion
from synthiqa.distortions.rng import SampleRNG, normal_field, uniform_field

JITTER_ITERATIONS = 5
PATCH = 16
PATCH_MARGIN = 16
BLOCK = 32
MAX_PATCHES = 100
MAX_BLOCKS = 10


def round_count(values: torch.Tensor) -> torch.Tensor:
    """Round interpolated counts half up to int64."""
    return torch.floor(values.double() + 0.5).long()


@register_distortion
class Jitter(Distortion):
    """Five rounds of per-pixel random displacement (MATLAB ``imscatter``): each round draws an
    independent N(0, std^2) shift in x and y for every pixel and resamples with replicated borders.

    Option ``interpolation``: ``"bilinear"`` (ARNIQA) or ``"bicubic"`` (MATLAB's ``imwarpmap``).
    """

    name = "jitter"
    kadid_id = 19
    group = "spatial_distortion"
    _std = {"std": (0.05, 0.1, 0.2, 0.5, 1.0)}
    tables = {
        "kadid": LevelTable(_std, {"interpolation": "bicubic"}),
        "arniqa": LevelTable(_std, {"interpolation": "bilinear"}),
    }
    approximation = ("kadid: PyTorch's bicubic kernel (a = -0.75) stands in for MATLAB's bicubic warp "
                     "(a = -0.5); differences are far below the jitter itself")
    description = ("5 iterations of per-pixel Gaussian displacement with std 0.05-1 px over levels 1-5, "
                   "resampled with border replication (kadid bicubic, arniqa bilinear)")

    def draw(self, rng: SampleRNG, levels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"field_seed": rng.seeds_for_fields()}

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        b, _, h, w = images.shape
        mode = self.options.get("interpolation", "bilinear")
        shifts = normal_field(host_param(params, "field_seed"), (JITTER_ITERATIONS, h, w, 2), images.device,
                              images.dtype)
        # Pixel displacements -> normalised grid units (align_corners=True: pixel centres at -1..1).
        unit = torch.tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)], device=images.device,
                            dtype=images.dtype)
        shifts.mul_(params["std"].to(images.device, images.dtype).view(-1, 1, 1, 1, 1) * unit)
        ys = torch.linspace(-1.0, 1.0, h, device=images.device, dtype=images.dtype)
        xs = torch.linspace(-1.0, 1.0, w, device=images.device, dtype=images.dtype)
        base = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # [H,W,2] as (x, y)
        out = images
        for i in range(JITTER_ITERATIONS):
            grid = shifts[:, i].neg_().add_(base)
            out = F.grid_sample(out, grid, mode=mode, padding_mode="border", align_corners=True)
        return out.clamp_(0.0, 1.0)


@register_distortion
class NonEccentricityPatch(Distortion):
    """Copy n 16x16 patches, one after the other on the same image, from a random source (16 px from the
    border) to a destination shifted uniformly by up to +-8 px (ARNIQA's port of KADID's generator).

    Vectorised over the batch: a loop over the patch slots, where slots beyond a sample's count copy a
    patch onto itself. Images under 48 px on a side get their positions clamped into the image.
    """

    name = "non_eccentricity_patch"
    kadid_id = 20
    group = "spatial_distortion"
    aliases = ("noneccpatch",)
    _table = LevelTable({"patches": (20, 40, 60, 80, 100)})
    tables = {"kadid": _table, "arniqa": _table}
    approximation = ("kadid: KADID's MATLAB source for this distortion is not public; ARNIQA's port "
                     "(same levels) is followed")
    description = ("n = 20-100 (levels 1-5) 16x16 patches copied sequentially from random sources to "
                   "destinations within +-8 px; counts are absolute, not scaled with image size")

    def draw(self, rng: SampleRNG, levels: torch.Tensor) -> dict[str, torch.Tensor]:
        # One seed instead of 400 numbers keeps records small; positions are expanded on the CPU in
        # ``positions`` so they are the same on every device.
        return {"field_seed": rng.seeds_for_fields()}

    @staticmethod
    def positions(field_seed: torch.Tensor) -> torch.Tensor:
        """Per slot: source row, source column, destination row and column jitter, uniform in [0, 1);
        float64 ``[B, 100, 4]`` on the CPU."""
        return uniform_field(field_seed.cpu(), (MAX_PATCHES, 4), "cpu", torch.float64)

    @staticmethod
    def corners(u: torch.Tensor, n: torch.Tensor, h: int,
                w: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Top-left corners ``[B, 100]`` int64 of each slot's source and destination, ([rows, cols],
        [rows, cols]), on ``u``'s device, from the slot positions ``u`` and the patch counts ``n``; slots
        beyond a sample's count have the destination equal to the source."""
        src, dst = [], []
        for k, size in enumerate((h, w)):
            lo, hi = PATCH_MARGIN, size - PATCH - PATCH_MARGIN
            s = torch.round(u[..., k] * max(hi - lo, 0)) + lo
            d = torch.round((u[..., k + 2] - 0.5) * PATCH_MARGIN + s)
            src.append(s.clamp(0, size - PATCH).long())
            dst.append(d.clamp(0, size - PATCH).long())
        active = torch.arange(MAX_PATCHES, device=u.device).view(1, -1) < n.view(-1, 1)
        return src, [torch.where(active, d, s) for d, s in zip(dst, src, strict=True)]

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        b, _, h, w = images.shape
        dev = images.device
        u = upload(self.positions(host_param(params, "field_seed")), dev)
        n_host = round_count(host_param(params, "patches"))
        src, dst = self.corners(u, upload(n_host, dev), h, w)
        out = images.clone()
        bi = torch.arange(b, device=dev).view(-1, 1, 1)
        offs = torch.arange(PATCH, device=dev)
        for k in range(int(n_host.max()) if b else 0):
            rs, cs = src[0][:, k, None] + offs, src[1][:, k, None] + offs
            rd, cd = dst[0][:, k, None] + offs, dst[1][:, k, None] + offs
            patch = out[bi, :, rs[:, :, None], cs[:, None, :]]
            out[bi, :, rd[:, :, None], cd[:, None, :]] = patch
        return out


def _pixelate_maps(z: torch.Tensor, size: int, rule: str) -> torch.Tensor:
    """Per-sample source index ``[B, size]`` of nearest-neighbour down- then up-sampling by scale ``z``.

    ``torch``: ARNIQA (Kornia resize, i.e. PyTorch ``interpolate(mode='nearest')``) to floor(z n): the
    indices come from running ``interpolate`` on an index ramp once per distinct low size, so they are
    PyTorch's own, rounding included. ``matlab``: ``imresize(I, z, 'nearest')`` then back to n: low size
    ceil(z n), index floor((i + 0.5) / s) with s = z going down and s = n / low going up.
    """
    z = z.double().cpu().view(-1, 1)
    if rule == "torch":
        low = torch.floor(z * size).clamp_min(1).long().view(-1)
        ramp = torch.arange(size, dtype=torch.float32).view(1, 1, size, 1)
        out = torch.empty(len(low), size, dtype=torch.long)
        for n in low.unique().tolist():
            down = F.interpolate(ramp, size=(n, 1), mode="nearest")
            out[low == n] = F.interpolate(down, size=(size, 1), mode="nearest").view(-1).long()
        return out
    if rule == "matlab":
        i = torch.arange(size, dtype=torch.float64).view(1, -1)
        low = torch.ceil(z * size).clamp_min(1)
        up = torch.floor((i + 0.5) * low / size).clamp(max=low - 1)
        return torch.floor((up + 0.5) / z).clamp(0, size - 1).long()
    raise ValueError(f"pixelate: unknown option resize={rule!r} (use 'torch' or 'matlab')")


@register_distortion
class Pixelate(Distortion):
    """Nearest-neighbour downscale by z = 0.95 - s^0.6, then nearest-neighbour back to full size.

    One gather with per-sample row/column index maps, whatever the levels. Option ``resize``: ``"torch"``
    (ARNIQA: Kornia resize to (floor(zH), floor(zW))) or ``"matlab"`` (MATLAB ``imresize(I, z,
    'nearest')``: ceil(zH) x ceil(zW), pixel-centre sampling).
    """

    name = "pixelate"
    kadid_id = 21
    group = "spatial_distortion"
    _strength = {"strength": (0.01, 0.05, 0.1, 0.2, 0.5)}
    tables = {
        "kadid": LevelTable(_strength, {"resize": "matlab"}),
        "arniqa": LevelTable(_strength, {"resize": "torch"}),
    }
    approximation = ("kadid: MATLAB's imresize index rule (output ceil(z n), scale used as given, "
                     "pixel-centre nearest sampling) is reproduced from its documented algorithm and was "
                     "not compared with MATLAB output")
    description = ("Nearest down/up-sampling by scale z = 0.95 - s^0.6 = 0.887-0.290 (s = 0.01-0.5 over "
                   "levels 1-5); kadid: MATLAB imresize sizes/sampling, arniqa: Kornia/PyTorch nearest")

    @staticmethod
    def scale(strength: torch.Tensor) -> torch.Tensor:
        """The downscale factor z = 0.95 - s^0.6 (float64)."""
        return 0.95 - strength.double().pow(0.6)

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        b, c, h, w = images.shape
        z = self.scale(host_param(params, "strength"))
        rule = self.options.get("resize", "torch")
        rows = upload(_pixelate_maps(z, h, rule), images.device)
        cols = upload(_pixelate_maps(z, w, rule), images.device)
        index = (rows[:, :, None] * w + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
        return images.reshape(b, c, h * w).gather(2, index).view(b, c, h, w)


def multi_otsu_bins(hist: torch.Tensor, classes: torch.Tensor,
                    max_classes: int | None = None) -> torch.Tensor:
    """Exact multi-level Otsu on histograms by dynamic programming, batched.

    Args:
        hist: ``[B, L]`` bin counts (bin i has value i).
        classes: ``[B]`` int64, number of classes K_b >= 2 per sample (K_b - 1 thresholds).
        max_classes: max K_b when the caller knows it (saves reading ``classes`` back from a device).

    Returns:
        ``[B, max K - 1]`` int64 threshold bins t (class j holds bins t_{j-1} < i <= t_j), ascending;
        slots beyond a sample's K_b - 1 thresholds hold L (past the last bin).

    Maximises the between-class variance sum_j S_j^2 / W_j (W = class mass, S = class first moment)
    over all partitions of the bins into K contiguous classes, in O(K L^2); ties go to the lowest
    threshold bins. On the CPU each histogram runs on its own in NumPy (its [L+1, L+1] float64 tables
    stay in cache; histograms spread over ``torch.get_num_threads()`` threads); elsewhere the batch runs
    at once in torch. Both evaluate the same float64 expressions, so they agree bin for bin.
    """
    bsz, nbins = hist.shape
    mass, moment = otsu_prefix_sums(hist)
    kmax = max_classes if max_classes is not None else (int(classes.max().item()) if bsz else 2)
    if hist.device.type != "cpu":
        return _multi_otsu_torch(mass, moment, classes, kmax)
    out = np.full((bsz, kmax - 1), nbins, dtype=np.int64)
    mass_np, moment_np, counts = mass.numpy(), moment.numpy(), classes.tolist()

    def one(b: int) -> None:
        out[b, :counts[b] - 1] = _multi_otsu_numpy(mass_np[b], moment_np[b], counts[b])

    map_images(bsz, one)
    return torch.from_numpy(out)


def otsu_prefix_sums(hist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Prefix sums ``[B, L+1]`` float64 of the normalised histograms: class mass and first moment."""
    p = hist.double() / hist.double().sum(1, keepdim=True).clamp_min(1.0)
    zero = torch.zeros(hist.shape[0], 1, device=hist.device, dtype=torch.float64)
    values = torch.arange(hist.shape[1], device=hist.device, dtype=torch.float64)
    return torch.cat([zero, p.cumsum(1)], 1), torch.cat([zero, (p * values).cumsum(1)], 1)


def _otsu_costs(dw: torch.Tensor | np.ndarray, ds: torch.Tensor | np.ndarray) -> None:
    """In place: ``ds`` becomes the class score S^2 / W (0 for empty classes), from the class masses ``dw``
    and first moments ``ds``; the same float64 operations in NumPy and torch."""
    ds *= ds
    ds /= dw.clip(min=1e-15)
    ds[dw <= 1e-15] = 0.0


@lru_cache(maxsize=4)
def _otsu_infeasible(n: int) -> np.ndarray:
    """``[n, n]`` bool: True where class end j <= class start i (upper triangle with the diagonal)."""
    return ~np.tri(n, n, -1, dtype=bool)


def _multi_otsu_numpy(mass: np.ndarray, moment: np.ndarray, classes: int) -> np.ndarray:
    """The ``classes - 1`` threshold bins of one histogram from its prefix sums ``[L+1]``."""
    nbins = len(mass) - 1
    cost = moment[:, None] - moment[None, :]  # [j, i]: class = bins i..j-1
    _otsu_costs(mass[:, None] - mass[None, :], cost)
    cost[_otsu_infeasible(nbins + 1)] = -np.inf
    best = cost[:, 0].copy()  # one class covering bins 0..j-1
    rows = np.arange(nbins + 1)
    total = np.empty_like(cost)
    starts = []  # per class count k: where the last class starts, for every end j
    for k in range(2, classes + 1):
        if k < classes:
            np.add(cost, best, out=total)
            arg = total.argmax(1)  # the first maximum: ties go to the lowest bin
            best = total[rows, arg]
        else:  # the last class only ever ends at bin L: one row
            arg = np.zeros(nbins + 1, dtype=np.int64)
            arg[nbins] = (cost[nbins] + best).argmax()
        starts.append(arg)
    out = np.empty(classes - 1, dtype=np.int64)
    pos = nbins
    for k in range(classes, 1, -1):
        pos = starts[k - 2][pos]  # first bin of class k, so the threshold bin is pos - 1
        out[k - 2] = pos - 1
    return out


def _multi_otsu_torch(mass: torch.Tensor, moment: torch.Tensor, classes: torch.Tensor,
                      kmax: int) -> torch.Tensor:
    """``multi_otsu_bins`` for the whole batch at once in torch (accelerators), from prefix sums."""
    n, nbins = mass.shape[0], mass.shape[1] - 1
    dev = mass.device
    cost = moment[:, :, None] - moment[:, None, :]  # [n, j, i]: class = bins i..j-1
    _otsu_costs(mass[:, :, None] - mass[:, None, :], cost)
    cost.masked_fill_(torch.from_numpy(_otsu_infeasible(nbins + 1)).to(dev), float("-inf"))
    best = cost[:, :, 0]
    choices = []
    for _ in range(2, kmax + 1):
        best, arg = (cost + best[:, None, :]).max(2)
        choices.append(arg)
    pos = torch.full((n,), nbins, dtype=torch.long, device=dev)
    out = torch.full((n, kmax - 1), nbins, dtype=torch.long, device=dev)
    rows = torch.arange(n, device=dev)
    for k in range(kmax, 1, -1):
        active = classes >= k
        start = choices[k - 2][rows, pos]  # first bin of class k, so the threshold bin is start - 1
        pos = torch.where(active, start, pos)
        out[:, k - 2] = torch.where(active, start - 1, out[:, k - 2])
    return out


@register_distortion
class Quantization(Distortion):
    """Grey-level quantization of the RGB values into N classes.

    Option ``method``:
      - ``"uniform"`` (ARNIQA): thresholds floor(255 k/N), k = 1..N-1 on x*255, plus a class of exact
        zeros; the class index image is min-max stretched to [0, 1] per image.
      - ``"otsu"`` (MATLAB ``multithresh(I, N)`` + ``imquantize``): N multi-Otsu thresholds t_1..t_N from a
        256-bin histogram of the whole RGB array over its [min, max] range; values map to
        [0, t_2, ..., t_N, 1].
    """

    name = "quantization"
    kadid_id = 22
    group = "spatial_distortion"
    _levels = {"levels": (20, 16, 13, 10, 7)}
    tables = {
        "kadid": LevelTable(_levels, {"method": "otsu"}),
        "arniqa": LevelTable(_levels, {"method": "uniform"}),
    }
    approximation = ("kadid: thresholds are the exact (global) multi-Otsu optimum on the 256-bin "
                     "histogram, found by dynamic programming; MATLAB's multithresh searches for N > 2 "
                     "thresholds numerically and may settle a bin or so away")
    description = ("N = 20, 16, 13, 10, 7 grey levels over levels 1-5 applied to every RGB value; kadid: "
                   "multi-Otsu thresholds (MATLAB imquantize values), arniqa: uniform thresholds + "
                   "per-image min-max stretch")

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        method = self.options.get("method", "uniform")
        n = round_count(host_param(params, "levels")).clamp_min(2)  # CPU: its maximum needs no sync
        if method == "uniform":
            return self._uniform(images, n)
        if method == "otsu":
            return self._otsu(images, n)
        raise ValueError(f"quantization: unknown option method={method!r} (use 'uniform' or 'otsu')")

    @staticmethod
    def _uniform(images: torch.Tensor, n_host: torch.Tensor) -> torch.Tensor:
        # With integer thresholds, t < v  <=>  t < ceil(v): the class is a per-sample lookup table on
        # ceil(255 x) in 0..255, exactly ARNIQA's bucketize on 255 x. The min-max stretch of the class
        # image is folded into the table (the table is monotone, so its extremes sit at ceil's extremes).
        b = images.shape[0]
        dev = images.device
        k = torch.arange(int(n_host.max()), device=dev).view(1, -1)
        n = upload(n_host, dev)
        bounds = torch.div(255 * k, n.view(-1, 1), rounding_mode="floor")  # 0, t_1..t_{N-1}
        bounds = torch.where(k < n.view(-1, 1), bounds, torch.full_like(bounds, 1 << 20))
        grid = torch.arange(256, device=dev).view(1, -1, 1)
        lut = (bounds[:, None, :] < grid).sum(-1).to(images.dtype)  # [B, 256] class of ceil(255 x)
        code = images.reshape(b, -1).mul(255.0).ceil_().clamp_(0, 255).long()
        lo = lut.gather(1, code.amin(1, keepdim=True))
        hi = lut.gather(1, code.amax(1, keepdim=True))
        lut = torch.where(hi > lo, (lut - lo) / (hi - lo).clamp_min(1.0), lut)
        # A flat image keeps its raw class index (ARNIQA's mapmm skips it); ARNIQA then clips to [0, 1].
        return lut.gather(1, code).clamp_(0.0, 1.0).view_as(images)

    @staticmethod
    def _otsu(images: torch.Tensor, n_host: torch.Tensor) -> torch.Tensor:
        # MATLAB: a 256-bin histogram over [min, max] (bin = round(255 s), s = (x - min)/(max - min)),
        # thresholds at bin values t_k, x <= threshold goes to the lower class. On the histogram scale
        # t_k < 255 s  <=>  t_k < ceil(255 s), so class and output value are a lookup on ceil(255 s).
        b = images.shape[0]
        dev = images.device
        flat = images.reshape(b, -1)
        lo, hi = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
        span = (hi - lo).clamp_min(1e-12)
        scaled = (flat - lo).mul_(255.0 / span)
        offset = torch.arange(b, device=dev).view(-1, 1) * 256
        hist = torch.bincount((scaled.round().long() + offset).view(-1), minlength=256 * b).view(b, 256)
        n = upload(n_host, dev)
        t_bins = multi_otsu_bins(hist, n + 1, int(n_host.max()) + 1)  # N thresholds, N + 1 classes; padding
        # slots hold 256
        grid = torch.arange(256, device=dev).view(1, -1, 1)
        cls = (t_bins[:, None, :] < grid).sum(-1)  # [B, 256] class of ceil(255 s)
        thresholds = lo + t_bins.to(images.dtype) / 255.0 * span
        ones = torch.ones_like(lo)
        values = torch.cat([torch.zeros_like(lo), thresholds[:, 1:], ones], 1)
        idx = torch.arange(values.shape[1], device=dev).view(1, -1)
        values = torch.where(idx >= n.view(-1, 1), ones, values)  # class N (above t_N) maps to 1
        lut = values.gather(1, cls)
        code = scaled.ceil_().clamp_(0, 255).long()
        out = lut.gather(1, code).view_as(images)
        return torch.where((hi > lo).view(-1, 1, 1, 1), out, images)  # a flat image has no thresholds


@register_distortion
class ColorBlock(Distortion):
    """Paste n 32x32 blocks of uniform random RGB colour at uniform random positions; later blocks cover
    earlier ones. Vectorised over the batch with one small scatter per block slot."""

    name = "color_block"
    kadid_id = 23
    group = "spatial_distortion"
    aliases = ("colorblock",)
    _table = LevelTable({"blocks": (2, 4, 6, 8, 10)})
    tables = {"kadid": _table, "arniqa": _table}
    approximation = ("kadid: KADID's MATLAB source for this distortion is not public; ARNIQA's port "
                     "(same levels) is followed")
    description = ("n = 2-10 (levels 1-5) 32x32 blocks of a random uniform RGB colour in [0,1) at random "
                   "positions inside the image; counts are absolute, not scaled with image size")

    def draw(self, rng: SampleRNG, levels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"positions": rng.uniform(MAX_BLOCKS, 2), "colors": rng.uniform(MAX_BLOCKS, 3)}

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        b, c, h, w = images.shape
        dev = images.device
        u = params["positions"].to(dev, torch.float64)
        rows = torch.floor(u[..., 0] * max(h - BLOCK, 0)).long()
        cols = torch.floor(u[..., 1] * max(w - BLOCK, 0)).long()
        colors = params["colors"].to(dev, images.dtype)
        n_host = round_count(host_param(params, "blocks"))
        n = upload(n_host, dev)
        out = images.clone()
        bi = torch.arange(b, device=dev).view(-1, 1, 1)
        offs = torch.arange(BLOCK, device=dev)
        for k in range(int(n_host.max()) if b else 0):
            rr = (rows[:, k, None] + offs)[:, :, None]
            cc = (cols[:, k, None] + offs)[:, None, :]
            current = out[bi, :, rr, cc]  # [B, 32, 32, C]
            fill = colors[:, k].view(b, 1, 1, c).expand_as(current)
            out[bi, :, rr, cc] = torch.where((k < n).view(-1, 1, 1, 1), fill, current)
        return out


# -- uint8 CPU fast paths (fastpath.py): these steps only pick or replace pixels, so the wrap's two
# stretches become one lookup table per image (the float path's float32 arithmetic, in NumPy) ---------
def _unit(values: list[tuple[float, float]]) -> np.ndarray:
    """8-bit (min, max) pairs as the float path sees them: ``[B, 2]`` float32 in [0, 1]."""
    return UNIT_VALUES[np.asarray(values).astype(np.uint8)]


def _wrap_luts(inputs: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """``[B, 256]`` uint8 tables v -> round(255 * stretch2(stretch1(v / 255))): ``inputs`` [B, 2] is each
    image's range (8-bit units / 255), ``outputs`` [B, 2] the step's output range in stretched units."""
    ramp = stretch_array(UNIT_VALUES[None, :], inputs[:, :1], inputs[:, 1:])
    return to_uint8_table(stretch_array(ramp, outputs[:, :1], outputs[:, 1:]).clip(0.0, 1.0))


@lru_cache(maxsize=4096)
def pick_lut(lo1: int, hi1: int, lo2: int, hi2: int) -> np.ndarray | None:
    """The wrap of a step that only picks pixels, as one uint8 table (``_wrap_luts``): the image's 8-bit
    range (lo1, hi1) fixes the input stretch, the picked pixels' 8-bit range (lo2, hi2) the output
    stretch. None when it is the identity (an image spanning 0..255 whose extremes were picked)."""
    inputs = _unit([(lo1, hi1)])
    lut = _wrap_luts(inputs, stretch_array(_unit([(lo2, hi2)]), inputs[:, :1], inputs[:, 1:]))[0]
    if np.array_equal(lut, np.arange(256)):
        return None
    lut.setflags(write=False)
    return lut


def _apply_pick_lut(source: np.ndarray, picked: np.ndarray) -> None:
    """Under the wrap: ``picked`` (pixels of ``source`` only) through :func:`pick_lut`, in place."""
    lut = pick_lut(*(int(v) for v in (*image_range(source), *image_range(picked))))
    if lut is not None:
        apply_lut(picked, lut, picked)


@lru_cache(maxsize=32)
def _pixelate_plan(z: float, h: int, w: int, rule: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixelate at scale ``z`` on ``h`` x ``w`` images as index gathers: the distinct source rows, the
    column index map, and the output's row index into those rows (rows repeat: the way up only copies
    rows), each an ``intp`` array."""
    zt = torch.tensor([z], dtype=torch.float64)
    src_r, up_r = np.unique(_pixelate_maps(zt, h, rule)[0].numpy(), return_inverse=True)
    cols = _pixelate_maps(zt, w, rule)[0].numpy()
    plan = tuple(np.ascontiguousarray(a, dtype=np.intp) for a in (src_r, cols, up_r))
    for a in plan:
        a.setflags(write=False)
    return plan


@register_uint8_path("pixelate")
def _pixelate_uint8(dist: Distortion, images: np.ndarray, params: Mapping[str, torch.Tensor], wrap: bool,
                    out: np.ndarray) -> bool:
    """The float path's index maps as gathers (``_pixelate_plan``): the distinct source rows are taken,
    their pixels padded to 4 bytes (RGBA) so that the column gather moves one 32-bit word per pixel,
    and converted back (the distinct output rows, a scratch array); then each output row is a copy of one
    of them. Under the wrap, the picked rows' min and max fix the output stretch and its table is
    applied to them (``pick_lut``). Pixels are only moved, so the output is the float path's exactly."""
    import cv2

    b, h, w, _ = images.shape
    rule = dist.options.get("resize", "torch")
    strength = params["strength"].to(torch.float32)  # as the float path gets it (params_to), so the same z
    plans = [_pixelate_plan(zi, h, w, rule) for zi in Pixelate.scale(strength).tolist()]

    def one(i: int) -> None:
        src_r, cols, up_r = plans[i]
        n = len(src_r)  # work arrays keyed by their height: a batch of mixed levels alternates them
        picked = np.take(images[i], src_r, axis=0, mode="clip",
                         out=scratch(f"pixelate_rows{n}", (n, w, 3), np.uint8))
        rgba = cv2.cvtColor(picked, cv2.COLOR_RGB2RGBA, dst=scratch(f"pixelate_rgba{n}", (n, w, 4), np.uint8))
        words = np.take(rgba.view(np.uint32).reshape(n, w), cols, axis=1, mode="clip",
                        out=scratch(f"pixelate_words{n}", (n, w), np.uint32))
        rows = cv2.cvtColor(words.view(np.uint8).reshape(n, w, 4), cv2.COLOR_RGBA2RGB, dst=picked)
        if wrap:
            _apply_pick_lut(images[i], rows)
        np.take(rows, up_r, axis=0, out=out[i], mode="clip")

    map_images(b, one)
    return True


@register_uint8_path("color_block")
def _color_block_uint8(dist: Distortion, images: np.ndarray, params: Mapping[str, torch.Tensor], wrap: bool,
                       out: np.ndarray) -> None:
    """Blocks drawn into the 8-bit image by OpenCV, one pass per image (its range, its table, then the
    blocks, while the image is still in cache). Under the wrap, the output range comes from the uncovered
    pixels and the colours of the blocks still visible: where the image's min and max pixels (the first
    of each) are uncovered, the uncovered pixels stretch to exactly 0 and 1 and no colour in [0, 1] can
    widen that, so the table is the input stretch alone (``pick_lut``) and the colours are kept;
    otherwise a masked min/max and the blocks' visibility decide (``_covered_block_wrap``)."""
    import cv2

    b, h, w, _ = images.shape
    u = params["positions"].to(torch.float64)
    rows = torch.floor(u[..., 0] * max(h - BLOCK, 0)).long().tolist()
    cols = torch.floor(u[..., 1] * max(w - BLOCK, 0)).long().tolist()
    counts = round_count(params["blocks"]).tolist()
    colors = params["colors"].to(torch.float32).numpy().clip(0.0, 1.0)  # [B, MAX_BLOCKS, 3], stretched units
    plain = to_uint8_table(colors).tolist()

    def one(i: int) -> None:
        image, dst = images[i], out[i]
        blocks = list(zip(rows[i][:counts[i]], cols[i][:counts[i]], strict=True))
        fills, lut = plain[i], None
        if wrap:
            lo, hi, *extremes = cv2.minMaxLoc(image.reshape(h, -1))
            if hi > lo and not any(r <= y < r + BLOCK and c <= x // 3 < c + BLOCK
                                   for x, y in extremes for r, c in blocks):
                lut = pick_lut(int(lo), int(hi), int(lo), int(hi))
            else:
                lut, fills = _covered_block_wrap(image, blocks, colors[i], (lo, hi))
        if lut is None:
            np.copyto(dst, image)
        else:
            apply_lut(image, lut, dst)
        for (r, c), fill in zip(blocks, fills, strict=False):  # later blocks cover earlier ones
            cv2.rectangle(dst, (c, r), (c + BLOCK - 1, r + BLOCK - 1), fill, thickness=-1)

    map_images(b, one)


def _covered_block_wrap(image: np.ndarray, blocks: list[tuple[int, int]], colors: np.ndarray,
                        image_range: tuple[float, float]) -> tuple[np.ndarray, list[list[int]]]:
    """Colour blocks under the wrap on one image whose extreme pixels may be covered (or which is flat):
    the output range from the pixels no block covers and the colours of the blocks still visible; the
    image's table and the blocks' 8-bit colours (``colors``: ``[MAX_BLOCKS, 3]`` in stretched units)."""
    import cv2

    h, w = image.shape[:2]
    mask = np.full((h, w * 3), 255, dtype=np.uint8)
    top = np.full((h, w), -1, dtype=np.int16)  # the last block covering each pixel
    for k, (r, c) in enumerate(blocks):
        mask[r:r + BLOCK, 3 * c:3 * (c + BLOCK)] = 0
        top[r:r + BLOCK, c:c + BLOCK] = k
    visible = np.zeros(colors.shape[0], dtype=bool)
    for k, (r, c) in enumerate(blocks):
        visible[k] = bool((top[r:r + BLOCK, c:c + BLOCK] == k).any())
    if mask.any():
        uncovered = cv2.minMaxLoc(image.reshape(h, -1), mask=mask)[:2]
    else:  # every pixel covered: only the block colours count
        uncovered = (255.0, 0.0)
    inputs = _unit([image_range])
    seen = stretch_array(_unit([uncovered]), inputs[:, :1], inputs[:, 1:])  # [1, 2]
    lo = np.where(visible[:, None], colors, np.inf).min()
    hi = np.where(visible[:, None], colors, -np.inf).max()
    outputs = np.stack([np.minimum(seen[:, 0], lo), np.maximum(seen[:, 1], hi)], 1)
    fills = stretch_array(colors, outputs[:, :1], outputs[:, 1:])
    return _wrap_luts(inputs, outputs)[0], to_uint8_table(fills.clip(0.0, 1.0)).tolist()


@register_uint8_path("quantization")
def _quantization_uint8(dist: Distortion, images: np.ndarray, params: Mapping[str, torch.Tensor], wrap: bool,
                        out: np.ndarray) -> bool:
    """One lookup table per image: the float path's own arithmetic on the 256 possible values, with the
    image's 8-bit histogram (all channels) standing in for its pixels (Otsu's thresholds and every
    min/max depend on nothing else)."""
    import cv2

    method = dist.options.get("method", "uniform")
    if method not in ("uniform", "otsu"):
        return False
    b, h = images.shape[:2]
    counts = np.empty((b, 256, 1), dtype=np.float32)
    map_images(b, lambda i: cv2.calcHist([images[i].reshape(h, -1)], [0], None, [256], [0, 256],
                                         hist=counts[i]))
    hist = torch.from_numpy(counts.reshape(b, 256))
    present = hist > 0  # [B, 256]
    v = torch.arange(256).view(1, 256)
    lo_v = torch.where(present, v, 256).amin(1, keepdim=True)
    hi_v = torch.where(present, v, -1).amax(1, keepdim=True)
    x = unit_values().view(1, 256).expand(b, 256)
    if wrap:
        x = stretch(x, x.gather(1, lo_v), x.gather(1, hi_v))
    n = round_count(params["levels"]).clamp_min(2)
    if method == "uniform":  # depends on the image only through its min and max: a clamped ramp has them
        ramp = x.gather(1, v.clamp(lo_v, hi_v)).view(b, 1, 1, 256)
        curve = Quantization._uniform(ramp, n).view(b, 256)
    else:
        curve = _otsu_curve(x, hist, lo_v, hi_v, n)
    curve = curve.clamp(0.0, 1.0)
    if wrap:
        lo2 = torch.where(present, curve, float("inf")).amin(1, keepdim=True)
        hi2 = torch.where(present, curve, float("-inf")).amax(1, keepdim=True)
        curve = stretch(curve, lo2, hi2)
    luts = curve.mul(255.0).round_().clamp_(0, 255).to(torch.uint8).numpy()
    map_images(b, lambda i: apply_lut(images[i], luts[i], out[i]))
    return True


def _otsu_curve(x: torch.Tensor, hist: torch.Tensor, lo_v: torch.Tensor, hi_v: torch.Tensor,
                n: torch.Tensor) -> torch.Tensor:
    """``Quantization._otsu`` on the 256 values ``x`` [B, 256] of images with 8-bit histograms ``hist``."""
    b = x.shape[0]
    lo, hi = x.gather(1, lo_v), x.gather(1, hi_v)
    span = (hi - lo).clamp_min(1e-12)
    scaled = (x - lo).mul_(255.0 / span)
    bins = scaled.round().long().clamp(0, 255)  # present values land in 0..255 exactly as in the float path
    counts = torch.zeros(b, 256, dtype=torch.float64).scatter_add_(1, bins, hist.double())
    t_bins = multi_otsu_bins(counts.round().long(), n + 1)
    grid = torch.arange(256).view(1, -1, 1)
    cls = (t_bins[:, None, :] < grid).sum(-1)
    thresholds = lo + t_bins.to(x.dtype) / 255.0 * span
    ones = torch.ones_like(lo)
    values = torch.cat([torch.zeros_like(lo), thresholds[:, 1:], ones], 1)
    idx = torch.arange(values.shape[1]).view(1, -1)
    values = torch.where(idx >= n.view(-1, 1), ones, values)
    out = values.gather(1, cls).gather(1, scaled.ceil_().clamp_(0, 255).long())
    return torch.where(hi > lo, out, x)


@lru_cache(maxsize=1)
def remap_is_exact() -> bool:
    """Whether OpenCV's float32 ``remap`` interpolates at the given coordinates (OpenCV 5) rather than on
    its 1/32 px grid (OpenCV 4): checked once on a ramp sampled 0.01 px off the pixel centres."""
    import cv2

    ramp = np.tile(np.arange(8, dtype=np.float32) ** 2, (4, 1))
    map_x = np.tile(np.arange(8, dtype=np.float32) + np.float32(0.01), (4, 1))
    map_y = np.tile(np.arange(4, dtype=np.float32)[:, None], (1, 8))
    got = cv2.remap(ramp, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)[:, 1:6]
    want = ramp[:, 1:6] * np.float32(0.99) + ramp[:, 2:7] * np.float32(0.01)
    return bool(np.abs(got - want).max() < 1e-4)


@lru_cache(maxsize=8)
def _pixel_grid(h: int, w: int) -> np.ndarray:
    """Pixel centres ``[H,W,2]`` float32 as (x, y): OpenCV's interleaved remap map of the identity."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    grid = np.stack([xs, ys], axis=-1)
    grid.flags.writeable = False
    return grid


@register_uint8_path("jitter")
def _jitter_uint8(dist: Distortion, images: np.ndarray, params: Mapping[str, torch.Tensor], wrap: bool,
                  out: np.ndarray) -> bool:
    """The same per-sample displacement fields (drawn from the same seeds into a scratch tensor), five
    OpenCV float32 ``remap`` rounds (bicubic with a = -0.75 as PyTorch, or bilinear; replicated border,
    each tap clamped into the image as ``grid_sample``'s border padding does) on the stretched values of a
    lookup table, then one clamp, stretch and rounding (``finish_unit``). Declines where OpenCV's remap
    snaps coordinates to its 1/32 px grid (before OpenCV 5) or images of 32767 px or more on a side."""
    import cv2


    b, h, w, _ = images.shape
    mode = dist.options.get("interpolation", "bilinear")
    if mode not in ("bilinear", "bicubic") or max(h, w) >= np.iinfo(np.int16).max or not remap_is_exact():
        return False
    flag = cv2.INTER_CUBIC if mode == "bicubic" else cv2.INTER_LINEAR
    unit = unit_tables(images, wrap).numpy()
    stds = params["std"].to(torch.float32).tolist()
    seeds = params["field_seed"].reshape(-1, 1)
    grid = _pixel_grid(h, w)

    def one(i: int) -> None:
        field = torch.from_numpy(scratch("jitter.field", (1, JITTER_ITERATIONS, h, w, 2)))
        shifts = normal_field(seeds[i], (JITTER_ITERATIONS, h, w, 2), "cpu", torch.float32, out=field)[0]
        shifts = shifts.numpy()
        cur = cv2.LUT(images[i], unit[i], dst=scratch("jitter.a", (h, w, 3)))
        nxt = scratch("jitter.b", (h, w, 3))
        where = scratch("jitter.map", (h, w, 2))
        for k in range(JITTER_ITERATIONS):  # source = pixel - std * N(0, 1), as the float path's grid
            np.multiply(shifts[k], np.float32(-stds[i]), out=where)
            where += grid
            cv2.remap(cur, where, None, flag, dst=nxt, borderMode=cv2.BORDER_REPLICATE)
            cur, nxt = nxt, cur
        finish_unit(cur, wrap, out[i])

    map_images(b, one)
    return True


@register_uint8_path("non_eccentricity_patch")
def _non_eccentricity_uint8(dist: Distortion, images: np.ndarray, params: Mapping[str, torch.Tensor],
                            wrap: bool, out: np.ndarray) -> None:
    """The same patch copies, one after the other, on the 8-bit image; copying commutes with the input
    stretch, so under the wrap one lookup table per image (both stretches) follows the copies."""
    b, h, w, _ = images.shape
    n = round_count(params["patches"])
    src, dst = NonEccentricityPatch.corners(NonEccentricityPatch.positions(params["field_seed"]), n, h, w)
    src_r, src_c, dst_r, dst_c = (v.tolist() for v in (*src, *dst))
    counts = n.tolist()

    def one(i: int) -> None:
        image = out[i]
        np.copyto(image, images[i])
        for k in range(counts[i]):
            rs, cs, rd, cd = src_r[i][k], src_c[i][k], dst_r[i][k], dst_c[i][k]
            image[rd:rd + PATCH, cd:cd + PATCH] = image[rs:rs + PATCH, cs:cs + PATCH].copy()
        if wrap:
            _apply_pick_lut(images[i], image)

    map_images(b, one)
