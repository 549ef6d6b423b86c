"""Noise distortions, KADID-10k types 11-15: white noise (RGB, YCbCr), impulse, multiplicative, denoise.

Every noise field is drawn on the image's device from the sample's own seed (``rng.seeds_for_fields``),
so an image's output never depends on its batch mates. Noise is added in [0, 1] units and the result is
clipped to [0, 1], as MATLAB's ``imnoise`` does.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from synthiqa.distortions.base import Distortion, LevelTable
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
        noise = normal_field(params["field_seed"], images.shape[1:], images.device, images.dtype)
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
        noise = normal_field(params["field_seed"], images.shape[1:], images.device, images.dtype)
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
        r = uniform_field(params["field_seed"], images.shape[1:], images.device, images.dtype)
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
            n = uniform_field(params["field_seed"], images.shape[1:], images.device, images.dtype)
            n.sub_(0.5).mul_((12.0 * var).sqrt_())
        elif law == "gaussian":
            n = normal_field(params["field_seed"], images.shape[1:], images.device, images.dtype)
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
    b, c = noisy.shape[:2]
    box = [np.full(2 * radius + 1, 1.0 / (2 * radius + 1))] * b
    guide = separable_filter(noisy, [gaussian_kernel1d(guide_sigma)] * b)
    stats = separable_filter(torch.cat([guide, noisy, guide * noisy, guide * guide], 1), box)
    mean_g, mean_x, corr, sq = stats.split(c, 1)
    a = corr.sub_(mean_g * mean_x).div_(sq.sub_(mean_g * mean_g).add_(eps_scale * noise_var))
    coef = separable_filter(torch.cat([a, mean_x.sub_(a * mean_g)], 1), box)
    return coef[:, :c].mul_(guide).add_(coef[:, c:])


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
        noisy = normal_field(params["field_seed"], images.shape[1:], images.device, images.dtype)
        noisy.mul_(var.sqrt()).add_(images).clamp_(0.0, 1.0)
        out = guided_denoise(noisy, var, radius=int(self.options.get("radius", 3)),
                             eps_scale=float(self.options.get("eps_scale", 0.25)),
                             guide_sigma=float(self.options.get("guide_sigma", 1.0)))
        return out.clamp_(0.0, 1.0)
