"""Spatial distortions, KADID-10k types 19-23: jitter, non-eccentricity patches, pixelate, quantization,
colour blocks.

Patch and block sizes, counts and jitter displacements are in pixels and are NOT rescaled with the image
size: ARNIQA applies them to 224x224 crops, KADID to 512x384 images, so the same level covers a smaller
fraction of a larger image. Integer parameters (patch, block and level counts) are rounded half up at
fractional levels, so integer levels give the table values exactly.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from synthiqa.distortions.base import Distortion, LevelTable
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
        shifts = normal_field(params["field_seed"], (JITTER_ITERATIONS, h, w, 2), images.device, images.dtype)
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

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        b, _, h, w = images.shape
        dev = images.device
        u = self.positions(params["field_seed"]).to(dev)
        n = round_count(params["patches"]).to(dev)
        src, dst = [], []
        for k, size in enumerate((h, w)):
            lo, hi = PATCH_MARGIN, size - PATCH - PATCH_MARGIN
            s = torch.round(u[..., k] * max(hi - lo, 0)) + lo
            d = torch.round((u[..., k + 2] - 0.5) * PATCH_MARGIN + s)
            src.append(s.clamp(0, size - PATCH).long())
            dst.append(d.clamp(0, size - PATCH).long())
        active = torch.arange(MAX_PATCHES, device=dev).view(1, -1) < n.view(-1, 1)
        dst = [torch.where(active, d, s) for d, s in zip(dst, src, strict=True)]
        out = images.clone()
        bi = torch.arange(b, device=dev).view(-1, 1, 1)
        offs = torch.arange(PATCH, device=dev)
        for k in range(int(n.max().item()) if b else 0):
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
        z = self.scale(params["strength"])
        rule = self.options.get("resize", "torch")
        rows = _pixelate_maps(z, h, rule).to(images.device)
        cols = _pixelate_maps(z, w, rule).to(images.device)
        index = (rows[:, :, None] * w + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
        return images.reshape(b, c, h * w).gather(2, index).view(b, c, h, w)


def multi_otsu_bins(hist: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Exact multi-level Otsu on histograms by dynamic programming, batched.

    Args:
        hist: ``[B, L]`` bin counts (bin i has value i).
        classes: ``[B]`` int64, number of classes K_b >= 2 per sample (K_b - 1 thresholds).

    Returns:
        ``[B, max K - 1]`` int64 threshold bins t (class j holds bins t_{j-1} < i <= t_j), ascending;
        slots beyond a sample's K_b - 1 thresholds hold L (past the last bin).

    Maximises the between-class variance sum_j S_j^2 / W_j (W = class mass, S = class first moment)
    over all partitions of the bins into K contiguous classes, in O(K L^2).
    """
    bsz, nbins = hist.shape
    dev = hist.device
    p = hist.double() / hist.double().sum(1, keepdim=True).clamp_min(1.0)
    v = torch.arange(nbins, device=dev, dtype=torch.float64)
    zero = torch.zeros(bsz, 1, device=dev, dtype=torch.float64)
    mass = torch.cat([zero, p.cumsum(1)], 1)  # [B, L+1] prefix sums
    moment = torch.cat([zero, (p * v).cumsum(1)], 1)
    dw = mass[:, None, :] - mass[:, :, None]  # [B, i, j]: class = bins i..j-1
    ds = moment[:, None, :] - moment[:, :, None]
    cost = torch.where(dw > 1e-15, ds * ds / dw.clamp_min(1e-15), torch.zeros_like(dw))
    upper = torch.ones(nbins + 1, nbins + 1, dtype=torch.bool, device=dev).triu(1)
    cost = cost.masked_fill(~upper, float("-inf"))
    best = cost[:, 0, :]  # one class covering bins 0..j-1
    kmax = int(classes.max().item())
    choices = []
    for _ in range(2, kmax + 1):
        best, arg = (best[:, :, None] + cost).max(1)
        choices.append(arg)
    pos = torch.full((bsz,), nbins, dtype=torch.long, device=dev)
    out = torch.full((bsz, kmax - 1), nbins, dtype=torch.long, device=dev)
    rows = torch.arange(bsz, device=dev)
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
        n = round_count(params["levels"]).to(images.device).clamp_min(2)
        if method == "uniform":
            return self._uniform(images, n)
        if method == "otsu":
            return self._otsu(images, n)
        raise ValueError(f"quantization: unknown option method={method!r} (use 'uniform' or 'otsu')")

    @staticmethod
    def _uniform(images: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        # With integer thresholds, t < v  <=>  t < ceil(v): the class is a per-sample lookup table on
        # ceil(255 x) in 0..255, exactly ARNIQA's bucketize on 255 x. The min-max stretch of the class
        # image is folded into the table (the table is monotone, so its extremes sit at ceil's extremes).
        b = images.shape[0]
        dev = images.device
        k = torch.arange(int(n.max().item()), device=dev).view(1, -1)
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
    def _otsu(images: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
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
        t_bins = multi_otsu_bins(hist, n + 1)  # N thresholds, N + 1 classes; padding slots hold 256
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
        n = round_count(params["blocks"]).to(dev)
        out = images.clone()
        bi = torch.arange(b, device=dev).view(-1, 1, 1)
        offs = torch.arange(BLOCK, device=dev)
        for k in range(int(n.max().item()) if b else 0):
            rr = (rows[:, k, None] + offs)[:, :, None]
            cc = (cols[:, k, None] + offs)[:, None, :]
            current = out[bi, :, rr, cc]  # [B, 32, 32, C]
            fill = colors[:, k].view(b, 1, 1, c).expand_as(current)
            out[bi, :, rr, cc] = torch.where((k < n).view(-1, 1, 1, 1), fill, current)
        return out
