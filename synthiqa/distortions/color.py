"""KADID-10k colour types 4-8: colour diffusion, colour shift, colour quantization, HSV and Lab saturation.

All Lab work uses ``colorspace`` (true RGB channel order: ARNIQA's BGR-as-RGB quirk is not copied, so
ARNIQA's Lab-based pixels differ from ours in hue; we follow the formulas it was meant to compute).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F

from synthiqa.distortions.base import Distortion, LevelTable, host_param, upload
from synthiqa.distortions.blur import round_half_up
from synthiqa.distortions.colorspace import (
    exact_truncated_rgb,
    lab_of_uint8,
    lab_to_linear_array,
    lab_to_rgb,
    linear_to_lab,
    linear_to_srgb_truncated,
    rgb_to_lab,
    srgb_to_linear,
    truncate_to_8bit,
)
from synthiqa.distortions.fastpath import (
    FLAT_SPAN,
    apply_lut,
    finish_unit,
    image_range,
    map_images,
    register_uint8_path,
    scratch,
    stretch_lut,
    unit_tables,
)
from synthiqa.distortions.filters import gaussian_kernel1d, separable_filter
from synthiqa.distortions.registry import register_distortion
from synthiqa.distortions.rng import SampleRNG
from synthiqa.errors import DistortionInputError

#: Luma weights of Kornia's ``rgb_to_grayscale`` (MATLAB's ``rgb2gray`` rounds them to 0.2989/0.5870/0.1140).
GRAY_WEIGHTS = (0.299, 0.587, 0.114)
EDGE_SIGMA = 4.0
EDGE_PERCENTILE = 1.0


def _view(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.to(device=like.device, dtype=like.dtype).view(-1, 1, 1, 1)


@register_distortion
class ColorDiffusion(Distortion):
    name = "color_diffusion"
    kadid_id = 4
    group = "color_distortion"
    aliases = ("colordiff",)
    tables = {
        "kadid": LevelTable({"amount": (1, 3, 6, 8, 12)}, {"lab_clamp_negative_z": False}),
        "arniqa": LevelTable({"amount": (1, 3, 6, 8, 12)}),
    }
    description = ("colour diffusion: CIELAB a*, b* blurred with a Gaussian of sigma = 1.5*amount+2 px "
                   "(amount 1-12: sigma 3.5-20, kernel 15-81 px, replicate border), multiplied by amount, "
                   "back to RGB and truncated to the 1/255 grid")
    approximation = ("true RGB Lab (ARNIQA converts BGR-ordered data); float32 instead of MATLAB's float64; "
                     "option lab_clamp_negative_z: Kornia/ARNIQA clamp f(Z) at 0, MATLAB (kadid) does not")

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        amount = params["amount"]
        sigmas = (1.5 * host_param(params, "amount").to(torch.float64) + 2.0).tolist()
        lab = rgb_to_lab(images)
        ab = separable_filter(lab[:, 1:3].contiguous(), [gaussian_kernel1d(s) for s in sigmas])
        lab = torch.cat([lab[:, :1], ab.to(lab.device) * _view(amount, lab)], dim=1)
        rgb = lab_to_rgb(lab, self.options.get("lab_clamp_negative_z", True))
        return truncate_to_8bit(rgb)


def _percentile(flat: torch.Tensor, p: float) -> torch.Tensor:
    """MATLAB ``prctile`` per row of ``flat`` [B, N]: sorted values at position N*p/100 + 0.5 (1-based),
    linearly interpolated and clamped to the ends (two order statistics by selection, no full sort)."""
    n = flat.shape[1]
    pos = min(max(n * p / 100.0 + 0.5, 1.0), float(n)) - 1.0
    lo = int(np.floor(pos))
    hi = min(lo + 1, n - 1)
    frac = pos - lo
    v_lo = flat.kthvalue(lo + 1, dim=1).values
    v_hi = flat.kthvalue(hi + 1, dim=1).values if frac > 0 else v_lo
    return v_lo * (1 - frac) + v_hi * frac


def edge_weight(images: torch.Tensor, clip_and_stretch: bool) -> torch.Tensor:
    """Colour shift's blend weight ``[B,1,H,W]`` in [0, 1]: gradient magnitude of grey (central
    differences, replicate border), Gaussian sigma 4 px, per-image min-max.

    ``clip_and_stretch`` (KADID's MATLAB): then clamp to [0.1, 1] and stretch the 1st..99th percentiles
    to [0, 1] (ARNIQA's percentile clamp is a no-op because of a bug, so it skips this).
    """
    w = torch.tensor(GRAY_WEIGHTS, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    gray = (images * w).sum(dim=1, keepdim=True)
    p = F.pad(gray, (1, 1, 1, 1), mode="replicate")
    gx = 0.5 * (p[:, :, 1:-1, 2:] - p[:, :, 1:-1, :-2])
    gy = 0.5 * (p[:, :, 2:, 1:-1] - p[:, :, :-2, 1:-1])
    mag = torch.sqrt(gx * gx + gy * gy)
    e = separable_filter(mag, [gaussian_kernel1d(EDGE_SIGMA)] * mag.shape[0]).to(images.device)

    def stretch(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        lo, hi = lo.view(-1, 1, 1, 1), hi.view(-1, 1, 1, 1)
        span = hi - lo
        return torch.where(span > 0, (x.clamp(lo, hi) - lo) / span.clamp_min(1e-12), x)

    flat = e.flatten(1)
    e = stretch(e, flat.amin(1), flat.amax(1))
    if clip_and_stretch:
        e = e.clamp(0.1, 1.0)
        flat = e.flatten(1)
        e = stretch(e, _percentile(flat, EDGE_PERCENTILE), _percentile(flat, 100 - EDGE_PERCENTILE))
    return e


def _shift_index(n: int, shift: torch.Tensor, other: torch.Tensor, mode: str) -> torch.Tensor:
    """Source index ``[B, n]`` of a shift by ``shift`` px along an axis of length n.

    ``replicate``: content moves by +shift, edges repeat. ``arniqa``: ARNIQA's pad-roll-crop, which pads
    this axis by the *other* component and so wraps around when the two components differ.
    """
    i = torch.arange(n, device=shift.device).view(1, -1)
    s, o = shift.view(-1, 1), other.view(-1, 1)
    if mode == "replicate":
        return (i - s).clamp(0, n - 1)
    return (torch.remainder(i + o - s, n + 2 * o) - o).clamp(0, n - 1)


@register_distortion
class ColorShift(Distortion):
    name = "color_shift"
    kadid_id = 5
    group = "color_distortion"
    aliases = ("colorshift",)
    tables = {
        "kadid": LevelTable({"amount": (1, 3, 6, 8, 12)},
                            {"edge_clip_stretch": True, "shift_border": "replicate"}),
        "arniqa": LevelTable({"amount": (1, 3, 6, 8, 12)}),
    }
    description = ("colour shift: the green channel moved by round(amount*u) px (amount 1-12, u a random "
                   "unit vector in the first quadrant, param 'direction' = (down, right)) and blended back "
                   "with an edge weight (grey gradient magnitude, Gaussian sigma 4, normalised to [0, 1])")
    approximation = ("kadid: MATLAB's gradient and imshift helpers are not public; central differences and a "
                     "replicate-border shift are assumed")

    def draw(self, rng: SampleRNG, levels: torch.Tensor) -> dict[str, torch.Tensor]:
        u = rng.uniform(2)
        return {"direction": u / u.norm(dim=1, keepdim=True).clamp_min(1e-12)}

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        b, _, h, w = images.shape
        amount = host_param(params, "amount").to(torch.float64).view(-1, 1)
        shift = torch.floor(amount * host_param(params, "direction").to(torch.float64) + 0.5).long()
        shift = upload(shift, images.device)
        mode = self.options.get("shift_border", "arniqa")
        rows = _shift_index(h, shift[:, 0], shift[:, 1], mode)
        cols = _shift_index(w, shift[:, 1], shift[:, 0], mode)
        g = images[:, 1]
        moved = g.gather(1, rows.view(b, h, 1).expand(b, h, w)).gather(2, cols.view(b, 1, w).expand(b, h, w))
        e = edge_weight(images, self.options.get("edge_clip_stretch", False))[:, 0]
        out = images.clone()
        out[:, 1] = moved * e + g * (1 - e)
        return out


def map_uint8_images(images: torch.Tensor, fn: Callable[[int, np.ndarray], np.ndarray],
                     bgr: bool = False) -> torch.Tensor:
    """Run ``fn(i, image)`` on each image of a batch as contiguous uint8 ``[H,W,3]`` (RGB, or BGR for
    OpenCV codecs) on the CPU, for sequential codecs; ``fn`` returns the same layout.

    Pixels go to 8 bits by rounding to nearest; the result is float ``[B,3,H,W]`` in [0, 1] on the
    images' device (a CUDA batch makes a round trip through the CPU). Images are independent, so they
    are spread over ``torch.get_num_threads()`` threads (the codecs release the GIL); OpenCV's per-plane
    conversions avoid strided whole-batch copies.
    """
    import cv2

    x = images.detach().to("cpu", torch.float32).contiguous().numpy()
    out = np.empty_like(x)
    order = (2, 1, 0) if bgr else (0, 1, 2)
    scale = np.float32(255.0)

    def one(i: int) -> None:
        result = fn(i, cv2.merge([cv2.convertScaleAbs(x[i, c], alpha=255.0) for c in order]))
        for c, plane in zip(order, cv2.split(result), strict=True):
            np.divide(plane, scale, out=out[i, c], dtype=np.float32)

    workers = min(torch.get_num_threads(), x.shape[0])
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(one, range(x.shape[0])))
    else:
        for i in range(x.shape[0]):
            one(i)
    return torch.from_numpy(out).to(device=images.device, dtype=images.dtype)


#: Histogram levels per channel (the top 5 bits), as in Wu's paper.
_WU_LEVELS = 32
#: Per channel, each 8-bit value's share of the flat index of its histogram cell (cell 0 is the zero border
#: of the cumulative moments), and each value's square.
_WU_INDEX = [(((np.arange(256) >> 3) + 1) * (_WU_LEVELS + 1) ** (2 - c)).astype(np.int32) for c in range(3)]
_SQUARES = np.arange(256, dtype=np.float64) ** 2


def _box_moments(m: np.ndarray, box: tuple[int, ...]) -> np.ndarray:
    """Moments [5] of the box (r0, r1] x (g0, g1] x (b0, b1] from cumulative moments ``m``."""
    r0, r1, g0, g1, b0, b1 = box
    return (m[:, r1, g1, b1] - m[:, r1, g1, b0] - m[:, r1, g0, b1] + m[:, r1, g0, b0]
            - m[:, r0, g1, b1] + m[:, r0, g1, b0] + m[:, r0, g0, b1] - m[:, r0, g0, b0])


def _axis_moments(m: np.ndarray, box: tuple[int, ...], axis: int) -> np.ndarray:
    """Cumulative moments ``[5, n+1]`` of the box's slabs along ``axis`` (0, 1, 2: r, g, b): column t is
    the moments of the box cut to (lo, lo + t] on that axis, so column 0 is zero and the last the box."""
    r0, r1, g0, g1, b0, b1 = box
    if axis == 0:
        s = slice(r0, r1 + 1)
        line = m[:, s, g1, b1] - m[:, s, g1, b0] - m[:, s, g0, b1] + m[:, s, g0, b0]
    elif axis == 1:
        s = slice(g0, g1 + 1)
        line = m[:, r1, s, b1] - m[:, r1, s, b0] - m[:, r0, s, b1] + m[:, r0, s, b0]
    else:
        s = slice(b0, b1 + 1)
        line = m[:, r1, g1, s] - m[:, r1, g0, s] - m[:, r0, g1, s] + m[:, r0, g0, s]
    return line - line[:, :1]


def _variance(mom: np.ndarray) -> float:
    w = mom[0]
    return float(mom[4] - (mom[1:4] ** 2).sum() / w) if w > 0 else 0.0


def wu_palette(image: np.ndarray, colors: int) -> np.ndarray:
    """Minimum-variance palette (Wu 1991, the method MATLAB's ``rgb2ind(I, n)`` documents) of a uint8
    RGB image: ``[k, 3]`` uint8 colours, k <= ``colors``, each the mean of its histogram box.

    Every moment is an integer below 2**53 (pixel values, their squares and counts), so the float64 sums
    are exact whatever their order: a cut's moments come from one slab line per axis."""
    import cv2

    size = _WU_LEVELS + 1
    planes = cv2.split(np.ascontiguousarray(image).reshape(-1, 1, 3))
    flat = cv2.LUT(planes[0], _WU_INDEX[0])  # table lookups by OpenCV, sums in place
    squares = cv2.LUT(planes[0], _SQUARES)
    for c in (1, 2):
        cv2.add(flat, cv2.LUT(planes[c], _WU_INDEX[c]), dst=flat)
        cv2.add(squares, cv2.LUT(planes[c], _SQUARES), dst=squares)
    flat = flat.reshape(-1)
    m = np.empty((5, size**3))
    for k, w in enumerate((None, *planes, squares)):
        m[k] = np.bincount(flat, weights=None if w is None else w.reshape(-1), minlength=size**3)
    m = m.reshape(5, size, size, size)
    for axis in (1, 2, 3):
        np.cumsum(m, axis=axis, out=m)

    def split(box):
        cums, cuts = [], []  # per axis with room for a cut: the cumulative moments, (axis, first cut)
        for axis in range(3):
            lo, hi = box[2 * axis], box[2 * axis + 1]
            if hi - lo >= 2:
                cum = _axis_moments(m, box, axis)[:4]  # [4, hi - lo + 1]
                cums.append(np.concatenate([cum[:, 1:-1], cum[:, -1:] - cum[:, 1:-1]]))
                cuts.append((axis, lo + 1))
        if not cums:
            return None
        both = np.concatenate(cums, axis=1)
        half, other = both[:4], both[4:]  # the cuts (lo, pos] and (pos, hi], axis after axis
        ok = (half[0] > 0) & (other[0] > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            score = (half[1:] ** 2).sum(0) / half[0] + (other[1:] ** 2).sum(0) / other[0]
        score[~ok] = -np.inf
        i = int(np.argmax(score))  # the first best: axes r, g, b, then the lowest cut
        if not score[i] > 0.0:
            return None
        k = 0
        while i >= cums[k].shape[1]:
            i -= cums[k].shape[1]
            k += 1
        axis, pos = cuts[k][0], cuts[k][1] + i
        a, b = list(box), list(box)
        a[2 * axis + 1] = pos
        b[2 * axis] = pos
        return tuple(a), tuple(b)

    boxes = [(0, _WU_LEVELS, 0, _WU_LEVELS, 0, _WU_LEVELS)]
    var = [_variance(_box_moments(m, boxes[0]))]
    while len(boxes) < colors:
        k = int(np.argmax(var))
        if var[k] <= 0:
            break
        parts = split(boxes[k])
        if parts is None:
            var[k] = 0.0
            continue
        boxes[k] = parts[0]
        boxes.append(parts[1])
        var[k] = _variance(_box_moments(m, parts[0]))
        var.append(_variance(_box_moments(m, parts[1])))
    mom = np.stack([_box_moments(m, b) for b in boxes])
    mom = mom[mom[:, 0] > 0]
    return np.clip(np.rint(mom[:, 1:4] / mom[:, :1]), 0, 255).astype(np.uint8)


def quantize_palette_dither(image: np.ndarray, colors: int) -> np.ndarray:
    """One uint8 ``[H,W,3]`` image reduced to at most ``colors`` colours: Wu's minimum-variance palette,
    then Floyd-Steinberg error diffusion onto it (Pillow), as MATLAB ``rgb2ind(I, n)`` + ``ind2rgb``."""
    from PIL import Image

    palette = Image.new("P", (1, 1))
    palette.putpalette(wu_palette(image, colors).reshape(-1).tolist())
    dithered = Image.fromarray(image, "RGB").quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG)
    return np.asarray(dithered.convert("RGB"))


#: Ordered-dither amplitude in units of the per-channel RMS quantization error of the undithered mapping.
DITHER_SPREAD = 2.0


def bayer_matrix(size: int = 8) -> torch.Tensor:
    """Ordered-dither thresholds ``[size, size]`` in (-0.5, 0.5) from the recursive Bayer index matrix."""
    m = torch.zeros(1, 1, dtype=torch.int64)
    while m.shape[0] < size:
        m = torch.cat([torch.cat([4 * m, 4 * m + 2], 1), torch.cat([4 * m + 3, 4 * m + 1], 1)], 0)
    return (m.to(torch.float32) + 0.5) / m.numel() - 0.5


def _nearest_colour(pixels: torch.Tensor, palette: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Index ``[B, N]`` of the nearest valid palette colour (squared RGB distance, first on ties)."""
    b, n, _ = pixels.shape
    k = palette.shape[1]
    chunk = max(1024, (1 << 24) // max(1, b * k))
    out = torch.empty(b, n, dtype=torch.int64, device=pixels.device)
    for start in range(0, n, chunk):  # bounded memory: a chunk of pixels at a time, every sample at once
        p = pixels[:, start:start + chunk]
        d = torch.zeros(b, p.shape[1], k, dtype=pixels.dtype, device=pixels.device)
        for c in range(3):
            d.add_((p[:, :, None, c] - palette[:, None, :, c]).square())
        out[:, start:start + chunk] = d.masked_fill_(~valid[:, None, :], float("inf")).argmin(dim=2)
    return out


def kmeans_ordered_dither(images: torch.Tensor, colors: list[int], iterations: int = 10) -> torch.Tensor:
    """Batched palette quantization on any device: per-sample k-means (``colors[b]`` centres, fixed
    iterations, initialised at luma quantiles) on 8-bit pixels, then Bayer 8x8 ordered dithering onto
    the rounded palette. Centre sums are integer, so the result is bit-reproducible and independent of
    batch mates on every device."""
    b, _, h, w = images.shape
    dev = images.device
    pix = (images.detach() * 255.0).round().clamp(0, 255).flatten(2).transpose(1, 2).contiguous()  # [B,N,3]
    pix_int = pix.to(torch.int64)
    n, kmax = h * w, max(colors)
    k = torch.tensor(colors, device=dev)
    valid = torch.arange(kmax, device=dev)[None, :] < k[:, None]
    luma = sum(pix[..., c] * wt for c, wt in enumerate(GRAY_WEIGHTS))  # elementwise: no BLAS reduction
    order = luma.argsort(dim=1, stable=True)
    ranks = ((torch.arange(kmax, device=dev)[None, :] + 0.5) / k[:, None] * n).long().clamp(max=n - 1)
    centres = pix.gather(1, order.gather(1, ranks)[..., None].expand(-1, -1, 3))
    for _ in range(iterations):
        labels = _nearest_colour(pix, centres, valid)
        sums = torch.zeros(b, kmax, 3, dtype=torch.int64, device=dev)
        sums.scatter_add_(1, labels[..., None].expand(-1, -1, 3), pix_int)
        counts = torch.zeros(b, kmax, dtype=torch.int64, device=dev)
        counts.scatter_add_(1, labels, torch.ones_like(labels))
        means = (sums.to(torch.float64) / counts.clamp_min(1)[..., None].to(torch.float64)).to(pix.dtype)
        centres = torch.where(counts[..., None] > 0, means, centres)
    palette = centres.round()
    thresholds = bayer_matrix(8).to(dev).repeat((h + 7) // 8, (w + 7) // 8)[:h, :w].reshape(1, n, 1)
    nearest = palette.gather(1, _nearest_colour(pix, palette, valid)[..., None].expand(-1, -1, 3))
    spread = DITHER_SPREAD * (pix - nearest).square().mean(dim=(1, 2)).sqrt().view(b, 1, 1)
    labels = _nearest_colour(pix + spread * thresholds.to(pix.dtype), palette, valid)
    out = palette.gather(1, labels[..., None].expand(-1, -1, 3))
    return (out / 255.0).transpose(1, 2).reshape(b, 3, h, w).to(images.dtype)


@register_distortion
class ColorQuantization(Distortion):
    name = "color_quantization"
    kadid_id = 6
    group = "color_distortion"
    tables = {"kadid": LevelTable({"colors": (64, 48, 32, 16, 8)})}
    exact_on = ()
    approximation = ("method='wu' (default): Wu's minimum-variance palette as MATLAB rgb2ind documents, but "
                     "palette colours rounded to 8 bits and Pillow's Floyd-Steinberg pass (MATLAB's dither "
                     "maps through a 5-bit inverse colour map); input rounded to 8 bits; CPU only (GPU "
                     "batches make a round trip). method='kmeans': batched k-means + Bayer ordered "
                     "dithering on the images' device, a further approximation (different palette, "
                     "patterned rather than diffused dither)")
    description = ("colour quantization: minimum-variance palette of 64, 48, 32, 16, 8 colours (rounded "
                   "half up at fractional levels) with Floyd-Steinberg dithering, as MATLAB rgb2ind(I, n) "
                   "+ ind2rgb")

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        colors = [max(2, min(256, n)) for n in round_half_up(host_param(params, "colors"))]
        method = self.options.get("method", "wu")
        if method == "kmeans":
            return kmeans_ordered_dither(images, colors)
        if method != "wu":
            raise DistortionInputError(f"color_quantization: unknown method {method!r}; choose wu or kmeans")
        return map_uint8_images(images, lambda i, im: quantize_palette_dither(im, colors[i]))


@register_distortion
class ColorSaturationHSV(Distortion):
    name = "color_saturation_hsv"
    kadid_id = 7
    group = "color_distortion"
    aliases = ("colorsat1",)
    tables = {
        "kadid": LevelTable({"factor": (0.4, 0.2, 0.1, 0.0, -0.4)}),
        "arniqa": LevelTable({"factor": (0.4, 0.2, 0.1, 0.0, -0.4)}),
    }
    description = ("HSV saturation multiplied by factor (0.4, 0.2, 0.1, 0, -0.4; negative allowed, not "
                   "clamped), then RGB clamped to [0, 1]; computed in closed form as V + factor*(RGB - V), "
                   "V = max(R,G,B), which equals the rgb2hsv -> hsv2rgb round trip")

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        v = images.amax(dim=1, keepdim=True)
        return (images - v).mul_(_view(params["factor"], images)).add_(v)


@register_distortion
class ColorSaturationLab(Distortion):
    name = "color_saturation_lab"
    kadid_id = 8
    group = "color_distortion"
    aliases = ("colorsat2",)
    tables = {
        "kadid": LevelTable({"factor": (1, 2, 3, 6, 9)}, {"lab_clamp_negative_z": False}),
        "arniqa": LevelTable({"factor": (1, 2, 3, 6, 9)}),
    }
    description = ("CIELAB saturation: a*, b* multiplied by factor (1-9; level 1 only re-quantizes), back to "
                   "RGB and truncated to the 1/255 grid")
    approximation = ColorDiffusion.approximation

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        lab = rgb_to_lab(images)
        f = _view(params["factor"], lab)
        lab = torch.cat([lab[:, :1], lab[:, 1:] * f], dim=1)
        return truncate_to_8bit(lab_to_rgb(lab, self.options.get("lab_clamp_negative_z", True)))


@register_uint8_path("color_saturation_hsv")
def _saturation_hsv_uint8(dist: Distortion, images: np.ndarray, params: Mapping[str, torch.Tensor],
                          wrap: bool, out: np.ndarray) -> None:
    """uint8 fast path: one saturating ``addWeighted`` of RGB and V = max(R,G,B) per image.

    The step commutes with the input stretch. Its output range needs no full-size pass: per pixel the
    channels lie between V and W = (1-f) V + f min(R,G,B), so the range is [min W, max V] for f >= 0 and
    [min V, max W] for f < 0, clamped to the image's range (the float path's clamp to [0, 1]); the stretch
    to that range maps clamped values to 0 or 255, which the saturating 8-bit output reproduces.
    """
    import cv2

    factors = params["factor"].detach().to(torch.float64).cpu().tolist()

    def one(i: int) -> None:  # every plane in this thread's scratch arrays: no page faults per image
        plane = images[i].shape[:2]
        r, g, b = cv2.split(images[i], [scratch(f"hsv.{c}", plane, np.uint8) for c in "rgb"])
        v = scratch("hsv.v", plane, np.uint8)
        cv2.max(cv2.max(r, g, dst=v), b, dst=v)
        f = factors[i]
        lo, span = 0.0, 255.0
        if wrap:
            low = cv2.min(cv2.min(r, g, dst=r), b, dst=r)
            v_lo, hi1 = cv2.minMaxLoc(v)[:2]  # the image's range: max V and min of min(R,G,B)
            lo1 = cv2.minMaxLoc(low)[0]
            w = cv2.addWeighted(v, 1.0 - f, low, f, 0.0, dst=scratch("hsv.w", plane), dtype=cv2.CV_32F)
            w_lo, w_hi = cv2.minMaxLoc(w)[:2]
            out_lo, out_hi = (w_lo, hi1) if f >= 0 else (v_lo, w_hi)
            lo2, hi2 = max(out_lo, lo1), min(out_hi, hi1)
            if hi2 - lo2 > 255.0 * FLAT_SPAN:
                lo, span = lo2, hi2 - lo2
            elif hi1 - lo1 > 255.0 * FLAT_SPAN:  # a flat result of a non-flat image
                lo, span = lo1, hi1 - lo1
        a = 255.0 / span
        v3 = cv2.cvtColor(v, cv2.COLOR_GRAY2RGB, dst=scratch("hsv.v3", images[i].shape, np.uint8))
        cv2.addWeighted(images[i], a * f, v3, a * (1.0 - f), -lo * a, dst=out[i], dtype=cv2.CV_8U)

    map_images(images.shape[0], one)


@register_uint8_path("color_quantization")
def _color_quantization_uint8(dist: Distortion, images: np.ndarray, params: Mapping[str, torch.Tensor],
                              wrap: bool, out: np.ndarray) -> bool:
    """uint8 fast path of ``method='wu'``: the codec already works on 8-bit images, so the wrap's two
    stretches are lookup tables around it (as for JPEG): the float path's values exactly."""
    if dist.options.get("method", "wu") != "wu":
        return False
    colors = [max(2, min(256, n)) for n in round_half_up(params["colors"])]

    def one(i: int) -> None:
        image = images[i]
        lut = stretch_lut(*image_range(image), "opencv") if wrap else None
        if lut is not None:
            stretched = scratch("cq.in", image.shape, np.uint8)
            apply_lut(image, lut, stretched)
            image = stretched
        result = quantize_palette_dither(np.ascontiguousarray(image), colors[i])
        lut = stretch_lut(*image_range(result), "nearest") if wrap else None
        if lut is not None:
            apply_lut(np.ascontiguousarray(result), lut, out[i])
        else:
            out[i] = result

    map_images(images.shape[0], one)
    return True


def _edge_stretch(e: np.ndarray, lo: float, hi: float) -> None:
    """In place: ``edge_weight``'s stretch of ``e`` from [lo, hi] to [0, 1] (unchanged when hi <= lo)."""
    span = np.float32(hi) - np.float32(lo)
    if span > 0:
        np.clip(e, np.float32(lo), np.float32(hi), out=e)
        e -= np.float32(lo)
        e /= max(span, np.float32(1e-12))


def _percentiles_array(flat: np.ndarray, ps: tuple[float, ...]) -> list[float]:
    """``_percentile`` of one flat float32 array at each of ``ps`` (the same two order statistics each, all
    found by one partition)."""
    n = flat.size
    picks = []
    for p in ps:
        pos = min(max(n * p / 100.0 + 0.5, 1.0), float(n)) - 1.0
        lo = int(np.floor(pos))
        picks.append((lo, min(lo + 1, n - 1), pos - lo))
    part = np.partition(flat, sorted({k for lo, hi, _ in picks for k in (lo, hi)}))
    out = []
    for lo, hi, frac in picks:
        v_lo = np.float32(part[lo])
        v_hi = np.float32(part[hi]) if frac > 0 else v_lo
        out.append(float(v_lo * np.float32(1 - frac) + v_hi * np.float32(frac)))
    return out


def edge_weight_array(image: np.ndarray, clip_and_stretch: bool) -> np.ndarray:
    """:func:`edge_weight` of one float32 ``[H,W,3]`` image as float32 ``[H,W]`` (OpenCV and NumPy; within
    float32 rounding of the torch version)."""
    import cv2

    gray = cv2.transform(image, np.array([GRAY_WEIGHTS], dtype=np.float32))
    p = cv2.copyMakeBorder(gray, 1, 1, 1, 1, cv2.BORDER_REPLICATE)
    gx = np.subtract(p[1:-1, 2:], p[1:-1, :-2])
    gy = np.subtract(p[2:, 1:-1], p[:-2, 1:-1])
    gx *= np.float32(0.5)
    gy *= np.float32(0.5)
    k = gaussian_kernel1d(EDGE_SIGMA).astype(np.float32)
    e = cv2.sepFilter2D(cv2.magnitude(gx, gy), cv2.CV_32F, k, k, borderType=cv2.BORDER_REPLICATE)
    lo, hi = cv2.minMaxLoc(e)[:2]
    _edge_stretch(e, lo, hi)
    if clip_and_stretch:
        np.clip(e, np.float32(0.1), np.float32(1.0), out=e)
        flat = e.reshape(-1)
        _edge_stretch(e, *_percentiles_array(flat, (EDGE_PERCENTILE, 100 - EDGE_PERCENTILE)))
    return e


@register_uint8_path("color_shift")
def _color_shift_uint8(dist: Distortion, images: np.ndarray, params: Mapping[str, torch.Tensor],
                       wrap: bool, out: np.ndarray) -> None:
    """uint8 fast path: the stretched values from a per-image float table, the green plane moved by the
    same integer index maps, the edge weight in OpenCV (``edge_weight_array``), the blend in float32,
    then one clamp, stretch and rounding (``finish_unit``)."""
    import cv2

    b, h, w, _ = images.shape
    amount = params["amount"].to(torch.float64).view(-1, 1)
    shift = torch.floor(amount * params["direction"].to(torch.float64) + 0.5).long()
    mode = dist.options.get("shift_border", "arniqa")
    rows = _shift_index(h, shift[:, 0], shift[:, 1], mode).numpy()
    cols = _shift_index(w, shift[:, 1], shift[:, 0], mode).numpy()
    unit = unit_tables(images, wrap).numpy()
    clip = bool(dist.options.get("edge_clip_stretch", False))

    def one(i: int) -> None:
        x = cv2.LUT(images[i], unit[i], dst=scratch("shift.x", (h, w, 3)))
        g = np.ascontiguousarray(x[..., 1])
        moved = g[rows[i]][:, cols[i]]
        e = edge_weight_array(x, clip)
        # moved * e + g * (1 - e), the float path's order
        blend = np.multiply(moved, e, out=moved)
        blend += g * (np.float32(1.0) - e)
        x[..., 1] = blend
        finish_unit(x, wrap, out[i])

    map_images(b, one)


def _finish_truncated(linear: np.ndarray, exact: Callable[[np.ndarray], np.ndarray], wrap: bool,
                      out: np.ndarray) -> None:
    """Write a Lab step's 8-bit result from its linear light ``[H,W,3]``: ``truncate_to_8bit(linear_to_srgb)``
    by table, the pixels near an 8-bit threshold replaced by ``exact(flat indices)`` (uint8 ``[N,3]``: the
    float path's own operations), then under the wrap the output stretch by the result's own range as a
    lookup table with the float path's float32 arithmetic."""
    steps = scratch("lab.steps", linear.shape, np.uint8)
    near = linear_to_srgb_truncated(linear, steps)
    if near.size:
        steps.reshape(-1, 3)[near] = exact(near)
    lut = stretch_lut(*image_range(steps), "nearest") if wrap else None
    if lut is None:
        np.copyto(out, steps)
    else:
        apply_lut(steps, lut, out)


@register_uint8_path("color_saturation_lab")
def _saturation_lab_uint8(dist: Distortion, images: np.ndarray, params: Mapping[str, torch.Tensor],
                          wrap: bool, out: np.ndarray) -> None:
    """uint8 fast path: the stretched values and their linear light as per-image tables, L*a*b* from
    ``lab_of_uint8``, a*, b* scaled inside ``lab_to_linear_array``'s one colour transform, and
    ``_finish_truncated`` (the pixels near a threshold through ``apply`` itself: the step is per pixel)."""
    clamp_z = bool(dist.options.get("lab_clamp_negative_z", True))
    factors = params["factor"].to(torch.float32)
    unit = unit_tables(images, wrap).numpy()
    linear = srgb_to_linear(torch.from_numpy(unit)).numpy()

    def one(i: int) -> None:
        lab = lab_of_uint8(images[i], linear[i])
        values = images[i].reshape(-1, 3)

        def exact(near: np.ndarray) -> np.ndarray:
            rgb = unit[i][values[near]]  # [N,3] the stretched values the float path sees
            return exact_truncated_rgb(lambda x: dist.apply(x, {"factor": factors[i:i + 1]}), rgb)

        _finish_truncated(lab_to_linear_array(lab, clamp_z, float(factors[i])), exact, wrap, out[i])

    map_images(images.shape[0], one)


@register_uint8_path("color_diffusion")
def _color_diffusion_uint8(dist: Distortion, images: np.ndarray, params: Mapping[str, torch.Tensor],
                           wrap: bool, out: np.ndarray) -> None:
    """uint8 fast path: the float path's own L*a*b* (``linear_to_lab`` on the planes of the stretched
    values' linear light, looked up in per-image tables), a* and b* blurred plane by plane with its kernel
    by ``cv2.sepFilter2D`` (replicate border, as its OpenCV filter backend: the same values), scaled by
    the amount inside ``lab_to_linear_array``'s colour transform, and ``_finish_truncated`` (the pixels
    near a threshold through ``lab_to_rgb`` on their blurred, scaled L*a*b*)."""
    import cv2

    clamp_z = bool(dist.options.get("lab_clamp_negative_z", True))
    amounts = params["amount"].to(torch.float32)  # the float path's values: float32 parameters
    sigmas = (1.5 * amounts.to(torch.float64) + 2.0).tolist()
    unit = unit_tables(images, wrap).numpy()
    linear = srgb_to_linear(torch.from_numpy(unit)).numpy()

    def to_rgb(lab: torch.Tensor) -> torch.Tensor:
        return truncate_to_8bit(lab_to_rgb(lab, clamp_z))

    def one(i: int) -> None:
        h, w, _ = images[i].shape
        planes = scratch("diffusion.linear", (3, h, w))
        for c, plane in enumerate(cv2.split(images[i])):
            cv2.LUT(plane, linear[i], dst=planes[c])
        lab = linear_to_lab(torch.from_numpy(planes)[None], reuse=True)[0].numpy()  # [3,H,W]
        k = gaussian_kernel1d(sigmas[i]).astype(np.float32)
        ab = [cv2.sepFilter2D(lab[c], -1, k, k, borderType=cv2.BORDER_REPLICATE) for c in (1, 2)]
        hwc = cv2.merge([lab[0], *ab], dst=scratch("diffusion.lab", (h, w, 3)))
        amount = amounts[i:i + 1].numpy()

        def exact(near: np.ndarray) -> np.ndarray:
            values = hwc.reshape(-1, 3)[near]  # [N,3] a copy: L*, blurred a*, b*
            values[:, 1:] *= amount  # as the float path scales them, in float32
            return exact_truncated_rgb(to_rgb, values)

        _finish_truncated(lab_to_linear_array(hwc, clamp_z, float(amounts[i])), exact, wrap, out[i])

    map_images(images.shape[0], one)
