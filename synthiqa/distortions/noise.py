"""Noise distortions, KADID-10k types 11-15: white noise (RGB, YCbCr), impulse, multiplicative, denoise.

Every noise field is drawn on the image's device from the sample's own seed (``rng.seeds_for_fields``),
so an image's output never depends on its batch mates. Noise is added in [0, 1] units and the result is
clipped to [0, 1], as MATLAB's ``imnoise`` does.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from synthiqa.distortions.base import Distortion, LevelTable, host_param
from synthiqa.distortions.fastpath import (
    UNIT_VALUES,
    apply_lut,
    finish_unit,
    image_range,
    image_ranges,
    map_images,
    register_uint8_path,
    scratch,
    stretch_array,
    to_uint8_table,
    unit_tables,
)
from synthiqa.distortions.filters import gaussian_kernel1d, separable_filter
from synthiqa.distortions.registry import register_distortion
from synthiqa.distortions.rng import SampleRNG, normal_field, uniform_field


def _per_sample(values: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """A ``[B]`` parameter as a ``[B,1,1,1]`` tensor on ``ref``'s device and dtype."""
    return values.to(device=ref.device, dtype=ref.dtype).view(-1, 1, 1, 1)


def _field_seed(rng: SampleRNG, levels: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"field_seed": rng.seeds_for_fields()}


# --- YCbCr conventions --------------------------------------------------------------------------------
# Studio-range BT.601 as MATLAB's rgb2ycbcr for floating-point images: Y in [16, 235]/255, Cb/Cr in
# [16, 240]/255. Full range as Kornia's rgb_to_ycbcr (what ARNIQA uses): Y = .299R + .587G + .114B,
# Cb = .564(B - Y) + .5, Cr = .713(R - Y) + .5.
_STUDIO = (
    torch.tensor([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]],
                 dtype=torch.float64) / 255.0,
    torch.tensor([16.0, 128.0, 128.0], dtype=torch.float64) / 255.0,
)
_Y = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64)
_FULL = (
    torch.stack([_Y, 0.564 * (torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64) - _Y),
                 0.713 * (torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64) - _Y)]),
    torch.tensor([0.0, 0.5, 0.5], dtype=torch.float64),
)
YCBCR_CONVENTIONS = {"studio": _STUDIO, "full": _FULL}


def _pointwise_matrix(x: torch.Tensor, matrix: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``matrix @ pixel + bias`` for every pixel of ``[B,3,H,W]``.

    Written as per-channel multiply-adds with Python-scalar weights, so every element sees the same
    operations on any device and in any batch (a batched matmul may change its algorithm with the batch).
    """
    m, off = matrix.tolist(), bias.tolist()
    out = torch.empty_like(x)
    for c in range(3):
        torch.mul(x[:, 0], m[c][0], out=out[:, c])
        out[:, c].add_(x[:, 1], alpha=m[c][1]).add_(x[:, 2], alpha=m[c][2]).add_(off[c])
    return out


@register_distortion
class WhiteNoise(Distortion):
    """Additive white Gaussian noise on RGB: ``clip(x + sqrt(v) n)``, n ~ N(0, 1) per channel element."""

    name = "white_noise"
    kadid_id = 11
    group = "noise"
    aliases = ("whitenoise",)
    _table = LevelTable({"variance": (0.001, 0.002, 0.003, 0.005, 0.01)})
    tables = {"kadid": _table, "arniqa": _table}
    description = ("Gaussian noise added to each RGB element; variance (in [0,1] units^2) "
                   "0.001-0.01 over levels 1-5 (std 0.032-0.1); result clipped to [0,1]")

    draw = staticmethod(_field_seed)

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        noise = normal_field(host_param(params, "field_seed"), images.shape[1:], images.device, images.dtype)
        sigma = _per_sample(params["variance"], images).sqrt()
        return noise.mul_(sigma).add_(images).clamp_(0.0, 1.0)


@register_distortion
class WhiteNoiseColorComponent(Distortion):
    """Gaussian noise added to Y, Cb and Cr, then back to RGB and clipped.

    Options: ``ycbcr`` = ``"full"`` (Kornia/ARNIQA full range) or ``"studio"`` (MATLAB ``rgb2ycbcr``,
    BT.601 studio range); ``clip_ycbcr`` clips the noisy YCbCr to [0, 1] before converting back, as
    MATLAB's ``imnoise`` does on the YCbCr array (KADID).
    """

    name = "white_noise_color_component"
    kadid_id = 12
    group = "noise"
    aliases = ("whitenoiseCC",)
    _variance = {"variance": (0.0001, 0.0005, 0.001, 0.002, 0.003)}
    tables = {
        "kadid": LevelTable(_variance, {"ycbcr": "studio", "clip_ycbcr": True}),
        "arniqa": LevelTable(_variance, {"ycbcr": "full", "clip_ycbcr": False}),
    }
    description = ("Gaussian noise with variance 0.0001-0.003 (levels 1-5, [0,1] units^2) added to the "
                   "three YCbCr channels; kadid: MATLAB studio-range BT.601 with imnoise's clip in YCbCr; "
                   "arniqa: Kornia full-range YCbCr; result clipped to [0,1]")

    draw = staticmethod(_field_seed)

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        matrix, offset = YCBCR_CONVENTIONS[self.options.get("ycbcr", "full")]
        ycc = _pointwise_matrix(images, matrix, offset)
        noise = normal_field(host_param(params, "field_seed"), images.shape[1:], images.device, images.dtype)
        ycc.add_(noise.mul_(_per_sample(params["variance"], images).sqrt_()))
        if self.options.get("clip_ycbcr", False):
            ycc.clamp_(0.0, 1.0)
        inverse = torch.linalg.inv(matrix)
        return _pointwise_matrix(ycc, inverse, -(inverse @ offset)).clamp_(0.0, 1.0)


@register_distortion
class ImpulseNoise(Distortion):
    """Salt and pepper noise on each channel element independently (MATLAB ``imnoise 'salt & pepper'``).

    With u ~ U[0, 1) per element: u < d/2 becomes 0, d/2 <= u < d becomes 1.
    """

    name = "impulse_noise"
    kadid_id = 13
    group = "noise"
    aliases = ("impulsenoise",)
    _table = LevelTable({"density": (0.001, 0.005, 0.01, 0.02, 0.03)})
    tables = {"kadid": _table, "arniqa": _table}
    approximation = ("arniqa: ARNIQA hits exactly floor(d*3HW) elements drawn with replacement; here each "
                     "element is hit with probability d (same expected density, MATLAB's rule)")
    description = ("Each RGB element independently set to 0 (prob. d/2) or 1 (prob. d/2); "
                   "density d 0.001-0.03 over levels 1-5")

    draw = staticmethod(_field_seed)

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        r = uniform_field(host_param(params, "field_seed"), images.shape[1:], images.device, images.dtype)
        r.div_(_per_sample(params["density"], images))  # r = u / d: hit when r < 1, salt when r >= 1/2
        return torch.where(r < 1.0, (r >= 0.5).to(images.dtype), images)


@register_distortion
class MultiplicativeNoise(Distortion):
    """Speckle noise ``clip(x + x n)`` with zero-mean n of variance v per element.

    Option ``law``: ``"gaussian"`` (ARNIQA) or ``"uniform"`` (MATLAB ``imnoise 'speckle'``:
    n = sqrt(12 v) (u - 1/2), u ~ U[0, 1)).
    """

    name = "multiplicative_noise"
    kadid_id = 14
    group = "noise"
    aliases = ("multnoise",)
    _variance = {"variance": (0.001, 0.005, 0.01, 0.02, 0.05)}
    tables = {
        "kadid": LevelTable(_variance, {"law": "uniform"}),
        "arniqa": LevelTable(_variance, {"law": "gaussian"}),
    }
    description = ("x + x*n, n zero-mean with variance 0.001-0.05 over levels 1-5 ([0,1] units^2); "
                   "kadid: uniform n (MATLAB speckle), arniqa: Gaussian n; clipped to [0,1]")

    draw = staticmethod(_field_seed)

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        var = _per_sample(params["variance"], images)
        law = self.options.get("law", "gaussian")
        if law == "uniform":
            n = uniform_field(host_param(params, "field_seed"), images.shape[1:], images.device, images.dtype)
            n.sub_(0.5).mul_((12.0 * var).sqrt_())
        elif law == "gaussian":
            n = normal_field(host_param(params, "field_seed"), images.shape[1:], images.device, images.dtype)
            n.mul_(var.sqrt())
        else:
            raise ValueError(f"multiplicative_noise: unknown option law={law!r} (use gaussian or uniform)")
        return n.mul_(images).add_(images).clamp_(0.0, 1.0)


def guided_denoise(noisy: torch.Tensor, noise_var: torch.Tensor, radius: int = 3,
                   eps_scale: float = 0.25, guide_sigma: float = 1.0) -> torch.Tensor:
    """Classical per-channel denoiser: a guided filter whose guide is the Gaussian-smoothed noisy image.

    Each channel is filtered on its own (like MATLAB's per-channel DnCNN call). The regularisation is
    ``eps = eps_scale * noise_var`` per sample, so flat areas are averaged over a (2r+1)^2 window while
    edges stronger than the noise survive. ``noise_var`` is ``[B,1,1,1]`` in [0,1] units^2. All box and
    Gaussian filters use replicated borders (``filters.separable_filter``).
    """
    b = noisy.shape[0]
    box = [np.full(2 * radius + 1, 1.0 / (2 * radius + 1))] * b
    guide = separable_filter(noisy, [gaussian_kernel1d(guide_sigma)] * b)
    mean_g, mean_x = separable_filter(guide, box), separable_filter(noisy, box)
    corr, sq = separable_filter(guide * noisy, box), separable_filter(guide * guide, box)
    a = corr.sub_(mean_g * mean_x).div_(sq.sub_(mean_g * mean_g).add_(eps_scale * noise_var))
    mean_b = separable_filter(mean_x.sub_(a * mean_g), box)
    return separable_filter(a, box).mul_(guide).add_(mean_b)


@register_distortion
class Denoise(Distortion):
    """KADID's denoise artefacts: Gaussian noise of variance v (clipped), then a denoiser per channel.

    KADID runs MATLAB's pretrained DnCNN; no weights are needed here: a guided filter stands in for it
    (guide = noisy image smoothed with a Gaussian of std 1 px, 7x7 window, eps = v/4; these settings gave
    the best PSNR on photographs among those tried).
    """

    name = "denoise"
    kadid_id = 15
    group = "noise"
    tables = {"kadid": LevelTable({"variance": (0.01, 0.03, 0.05, 0.1, 0.15)},
                                  {"radius": 3, "eps_scale": 0.25, "guide_sigma": 1.0})}
    exact_on = ()
    approximation = ("DnCNN replaced by a classical guided filter (per channel, guide = Gaussian-smoothed "
                     "noisy image, eps proportional to the noise variance): smooth, edge-preserving "
                     "residual like DnCNN's, but not DnCNN's output")
    description = ("Gaussian noise with variance 0.01-0.15 over levels 1-5 ([0,1] units^2), clipped, then "
                   "denoised per channel by a guided filter (DnCNN in KADID); kadid profile only")

    draw = staticmethod(_field_seed)

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        var = _per_sample(params["variance"], images)
        noisy = normal_field(host_param(params, "field_seed"), images.shape[1:], images.device, images.dtype)
        noisy.mul_(var.sqrt()).add_(images).clamp_(0.0, 1.0)
        out = guided_denoise(noisy, var, radius=int(self.options.get("radius", 3)),
                             eps_scale=float(self.options.get("eps_scale", 0.25)),
                             guide_sigma=float(self.options.get("guide_sigma", 1.0)))
        return out.clamp_(0.0, 1.0)


# -- uint8 CPU fast paths (fastpath.py) ------------------------------------------------------------------
# The noise field is the float path's own (the sample's torch generator, planar [3,H,W] order), so the
# 8-bit image is split into planes, the planes become the float path's stretched float32 values through a
# per-image table, and the result is merged back; the cost is mostly the generator itself. Work arrays are
# the thread's ``scratch`` arrays.
def _field_planes(kind: str, seed: torch.Tensor, h: int, w: int) -> np.ndarray:
    """The sample's ``normal``/``uniform`` field (``rng.normal_field``/``uniform_field`` for the one
    ``seed`` ``[1]``) as ``[3H, W]`` float32 planes, in this thread's scratch array."""
    planes = scratch("noise_field", (3 * h, w))
    draw = normal_field if kind == "normal" else uniform_field
    draw(seed, (3, h, w), "cpu", out=torch.from_numpy(planes).view(1, 3, h, w))
    return planes


def _planes(image: np.ndarray) -> np.ndarray:
    """An ``[H,W,3]`` uint8 image as one ``[3H, W]`` array of its three planes (a scratch array)."""
    import cv2

    h, w = image.shape[:2]
    planes = scratch("noise_planes", (3 * h, w), np.uint8)
    cv2.mixChannels([image], [planes[c * h:(c + 1) * h] for c in range(3)], [0, 0, 1, 1, 2, 2])
    return planes


def _finish_planes(result: np.ndarray, wrap: bool, out: np.ndarray) -> None:
    """``finish_unit`` for float32 planes ``[3H, W]``, merged into ``out`` [H,W,3]."""
    import cv2

    h = out.shape[0]
    planes = scratch("noise_out", result.shape, np.uint8)
    finish_unit(result, wrap, planes)
    cv2.merge([planes[c * h:(c + 1) * h] for c in range(3)], dst=out)


def _stretch_coefficients(images: np.ndarray, wrap: bool) -> list[tuple[float, float]]:
    """Per image (scale, offset) with ``v * scale + offset`` the float path's stretched value of the 8-bit
    value v: ``v / 255``, min-max stretched under the wrap to (v - lo) / (hi - lo) (lo, hi: the image's
    8-bit range; a flat image is left as it is), equal up to float32 rounding."""
    if not wrap:
        return [(1.0 / 255.0, 0.0)] * images.shape[0]
    return [(1.0 / (hi - lo), -lo / (hi - lo)) if hi > lo else (1.0 / 255.0, 0.0)
            for lo, hi in image_ranges(images).tolist()]


def _scaled_noise_uint8(images: np.ndarray, params: Mapping[str, torch.Tensor], wrap: bool, out: np.ndarray,
                        field: str, gains: list[tuple[float, float]], multiplicative: bool) -> None:
    """``x + a f`` (additive) or ``x + x (a f + c)`` (multiplicative) per element, f the sample's ``field``
    (``normal`` or ``uniform``), (a, c) = ``gains[i]``, x the stretched input (``_stretch_coefficients``,
    from the 8-bit planes in the same OpenCV pass); the float path's clamp and wrap."""
    import cv2

    b, h, w, _ = images.shape
    coefficients = _stretch_coefficients(images, wrap)
    seeds = params["field_seed"]

    def one(i: int) -> None:
        noise = _field_planes(field, seeds[i:i + 1], h, w)
        (scale, offset), (a, c) = coefficients[i], gains[i]
        for k, plane in enumerate(cv2.split(images[i])):
            f = noise[k * h:(k + 1) * h]
            if multiplicative:  # x + x (a f + c) = a (f x) + (1 + c) x
                x = cv2.addWeighted(plane, scale, plane, 0.0, offset, dtype=cv2.CV_32F,
                                    dst=scratch("noise_unit", f.shape))
                cv2.multiply(f, x, dst=f, scale=a)
                cv2.scaleAdd(x, 1.0 + c, f, dst=f)
            else:
                cv2.addWeighted(f, a, plane, scale, offset, dtype=cv2.CV_32F, dst=f)
        _finish_planes(noise, wrap, out[i])

    map_images(b, one)


def _f32(values: torch.Tensor) -> torch.Tensor:
    """A parameter as the float path sees it (``params_to``: float32)."""
    return values.to(torch.float32)


@register_uint8_path("white_noise")
def _white_noise_uint8(dist: Distortion, images: np.ndarray, params: Mapping[str, torch.Tensor], wrap: bool,
                       out: np.ndarray) -> None:
    sigma = _f32(params["variance"]).sqrt()
    _scaled_noise_uint8(images, params, wrap, out, "normal", [(s, 0.0) for s in sigma.tolist()], False)


@register_uint8_path("multiplicative_noise")
def _multiplicative_noise_uint8(dist: Distortion, images: np.ndarray, params: Mapping[str, torch.Tensor],
                                wrap: bool, out: np.ndarray) -> bool:
    law = dist.options.get("law", "gaussian")
    var = _f32(params["variance"])
    if law == "uniform":  # n = sqrt(12 v) (u - 1/2)
        k = (12.0 * var).sqrt_().tolist()
        gains = [(a, -0.5 * a) for a in k]
        field = "uniform"
    elif law == "gaussian":
        gains = [(s, 0.0) for s in var.sqrt().tolist()]
        field = "normal"
    else:
        return False
    _scaled_noise_uint8(images, params, wrap, out, field, gains, True)
    return True


@register_uint8_path("white_noise_color_component")
def _white_noise_color_component_uint8(dist: Distortion, images: np.ndarray,
                                       params: Mapping[str, torch.Tensor], wrap: bool,
                                       out: np.ndarray) -> None:
    """Per image in ``[H,W,3]`` float32: the stretched values by table, OpenCV's per-pixel 3x4 transform to
    YCbCr and back, the planar noise field merged to pixels."""
    import cv2

    b, h, w, _ = images.shape
    matrix, offset = YCBCR_CONVENTIONS[dist.options.get("ycbcr", "full")]
    inverse = torch.linalg.inv(matrix)
    forward = torch.cat([matrix, offset[:, None]], 1).numpy()  # [3, 4]: y = M x + offset
    backward = torch.cat([inverse, -(inverse @ offset)[:, None]], 1).numpy()
    clip = bool(dist.options.get("clip_ycbcr", False))
    tables = unit_tables(images, wrap).numpy()
    sigma = _f32(params["variance"]).sqrt().tolist()
    seeds = params["field_seed"]

    def one(i: int) -> None:
        noise = _field_planes("normal", seeds[i:i + 1], h, w)
        x = cv2.LUT(images[i], tables[i], dst=scratch("noise_unit", (h, w, 3)))
        ycc = cv2.transform(x, forward, dst=scratch("noise_ycc", (h, w, 3)))
        cv2.merge([noise[c * h:(c + 1) * h] for c in range(3)], dst=x)  # the field, pixel by pixel
        cv2.scaleAdd(x, sigma[i], ycc, dst=ycc)
        if clip:
            np.clip(ycc, 0.0, 1.0, out=ycc)
        rgb = cv2.transform(ycc, backward, dst=x)
        finish_unit(rgb.reshape(h, -1), wrap, out[i].reshape(h, -1))

    map_images(b, one)


def _first_at_least(target: float, density: np.float32) -> np.float32:
    """The smallest float32 u in [0, 1] with ``float32(u / density) >= target`` (u / d rises with u), so
    that comparing u with it gives the float path's comparison of ``u / d`` bit for bit."""
    def reaches(u: np.float32) -> bool:
        return bool(np.float32(u) / density >= np.float32(target))

    u = np.float32(target) * density
    while u > 0 and reaches(np.nextafter(u, np.float32(0.0))):
        u = np.nextafter(u, np.float32(0.0))
    while not reaches(u):
        u = np.nextafter(u, np.float32(2.0))
    return np.float32(u)


@register_uint8_path("impulse_noise")
def _impulse_noise_uint8(dist: Distortion, images: np.ndarray, params: Mapping[str, torch.Tensor], wrap: bool,
                         out: np.ndarray) -> None:
    """Hits replace 8-bit values by 0 (pepper) and 255 (salt). Under the wrap the stretched pepper and salt
    are exactly 0 and 1, the stretched image's own extremes, so one table per image maps the raw values
    through both stretches, with its 0 and 255 entries set to the stretched 0 and 1 (an unhit 0 or 255
    can only be the image's min or max, whose stretched values are those too)."""
    import cv2

    b, h, w, _ = images.shape
    seeds = params["field_seed"]
    density = _f32(params["density"]).numpy()
    bounds = [(_first_at_least(0.5, d), _first_at_least(1.0, d)) for d in density]  # salt from, hit below
    ranges = [((0.0, 0.0), (0.0, 0.0))] * b

    def hit(i: int) -> None:
        u = _field_planes("uniform", seeds[i:i + 1], h, w)
        salt_from, hit_below = bounds[i]
        kept = cv2.compare(u, float(salt_from), cv2.CMP_GE, dst=scratch("impulse_kept", u.shape, np.uint8))
        salt = cv2.inRange(u, float(salt_from), float(np.nextafter(hit_below, np.float32(0.0))),
                           dst=scratch("impulse_salt", u.shape, np.uint8))  # 255 where salt
        masks = [scratch(f"impulse_mask{k}", images[i].shape, np.uint8) for k in range(2)]
        for m, planes in zip(masks, (kept, salt), strict=True):
            cv2.merge([planes[c * h:(c + 1) * h] for c in range(3)], dst=m)
        cv2.bitwise_and(images[i], masks[0], dst=out[i])
        cv2.bitwise_or(out[i], masks[1], dst=out[i])
        if wrap:
            ranges[i] = (image_range(images[i]), image_range(out[i]))

    map_images(b, hit)
    if not wrap:
        return
    inputs = UNIT_VALUES[np.array([r[0] for r in ranges], dtype=np.uint8)]
    ramp = stretch_array(UNIT_VALUES[None, :], inputs[:, :1], inputs[:, 1:])  # [B, 256] stretched values
    ramp[:, 0], ramp[:, 255] = 0.0, 1.0  # pepper and salt
    present = np.array([r[1] for r in ranges], dtype=np.int64)  # raw range of the result
    lo2, hi2 = (np.take_along_axis(ramp, present[:, k:k + 1], 1) for k in (0, 1))
    luts = to_uint8_table(stretch_array(ramp, lo2, hi2).clip(0.0, 1.0))
    map_images(b, lambda i: apply_lut(out[i], luts[i], out[i]))


@register_uint8_path("denoise")
def _denoise_uint8(dist: Distortion, images: np.ndarray, params: Mapping[str, torch.Tensor], wrap: bool,
                   out: np.ndarray) -> None:
    """The float path's noise (the sample's own field) and guided filter per image in ``[H,W,3]`` float32
    with OpenCV: the Gaussian guide by ``sepFilter2D`` with the same taps, the (2r+1)^2 means by
    ``boxFilter`` (replicate border, double-precision running sums: the same means within float32
    rounding, at a cost that does not grow with the window), then the clamp and wrap of ``finish_unit``."""
    import cv2

    b, h, w, _ = images.shape
    tables = unit_tables(images, wrap).numpy()
    var = _f32(params["variance"])
    sigma = var.sqrt().tolist()
    eps = (float(dist.options.get("eps_scale", 0.25)) * var).tolist()
    side = 2 * int(dist.options.get("radius", 3)) + 1
    guide_k = gaussian_kernel1d(float(dist.options.get("guide_sigma", 1.0))).astype(np.float32)
    seeds = params["field_seed"]
    shape = (h, w, 3)

    def box(src: np.ndarray, key: str) -> np.ndarray:
        return cv2.boxFilter(src, -1, (side, side), dst=scratch(key, shape), normalize=True,
                             borderType=cv2.BORDER_REPLICATE)

    def one(i: int) -> None:
        noise = _field_planes("normal", seeds[i:i + 1], h, w)
        x = cv2.LUT(_planes(images[i]), tables[i], dst=scratch("noise_unit", noise.shape))
        cv2.scaleAdd(noise, sigma[i], x, dst=noise)
        np.clip(noise, 0.0, 1.0, out=noise)
        noisy = cv2.merge([noise[c * h:(c + 1) * h] for c in range(3)], dst=scratch("dn.noisy", shape))
        guide = cv2.sepFilter2D(noisy, -1, guide_k, guide_k, dst=scratch("dn.guide", shape),
                                borderType=cv2.BORDER_REPLICATE)
        mean_g, mean_x = box(guide, "dn.mg"), box(noisy, "dn.mx")
        corr = box(cv2.multiply(guide, noisy, dst=scratch("dn.t", shape)), "dn.corr")
        sq = box(cv2.multiply(guide, guide, dst=scratch("dn.t", shape)), "dn.sq")
        prod = cv2.multiply(mean_g, mean_x, dst=scratch("dn.t", shape))
        a = cv2.subtract(corr, prod, dst=corr)
        den = cv2.subtract(sq, cv2.multiply(mean_g, mean_g, dst=scratch("dn.t", shape)), dst=sq)
        cv2.divide(a, cv2.add(den, eps[i], dst=den), dst=a)
        mean_b = box(cv2.subtract(mean_x, cv2.multiply(a, mean_g, dst=scratch("dn.t", shape)), dst=mean_x),
                     "dn.mb")
        result = cv2.multiply(box(a, "dn.ma"), guide, dst=guide)
        cv2.add(result, mean_b, dst=result)
        finish_unit(result.reshape(h, -1), wrap, out[i].reshape(h, -1))

    map_images(b, one)
