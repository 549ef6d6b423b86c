"""Sharpness and contrast distortions: KADID-10k types 24-25 and ARNIQA's non-linear contrast change.

The contrast curve is MATLAB's ``curves`` with 5 knots, a not-a-knot cubic spline through (0, 0),
(0.3, 0.25 - a/4), (0.5, 0.5), (0.7, 0.75 + a/4), (1, 1). Not-a-knot joins the first two and the last two
pieces into one cubic each, and the knots are point-symmetric about (0.5, 0.5), so the whole spline is the
single odd cubic f(x) = 0.5 + c1 u + c3 u^3 with u = x - 0.5: it is evaluated in closed form (exact).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from synthiqa.distortions.base import Distortion, LevelTable
from synthiqa.distortions.brightness import from_lab, lab_options, per_sample, to_lab
from synthiqa.distortions.colorspace import lab_of_uint8, lab_to_rgb_array, srgb_to_linear
from synthiqa.distortions.fastpath import finish_unit, map_images, register_uint8_path, scratch, unit_tables
from synthiqa.distortions.filters import gaussian_kernel1d, separable_filter
from synthiqa.distortions.registry import register_distortion

SHARPEN_KERNEL = 13


@register_distortion
class HighSharpen(Distortion):
    """Unsharp mask on CIELAB L* only: L + a (L - G * L), G a 13x13 Gaussian, replicated borders.

    Options: ``sigma`` of the Gaussian (MATLAB ``imsharpen('Radius', 3)``: 3; ARNIQA: 6), ``lab_bgr`` and
    ``lab_clamp_negative_z`` (see :func:`synthiqa.distortions.brightness.lab_options`).
    """

    name = "high_sharpen"
    kadid_id = 24
    group = "sharpness_contrast"
    aliases = ("highsharpen",)
    _amount = {"amount": (1, 2, 3, 6, 12)}
    tables = {
        "kadid": LevelTable(_amount, {"sigma": 3.0, "lab_clamp_negative_z": False}),
        "arniqa": LevelTable(_amount, {"sigma": 6.0}),
    }
    approximation = ("arniqa: L* is computed in true RGB order; ARNIQA's code converts BGR-ordered data "
                     "(set option lab_bgr=True to copy that quirk)")
    description = ("Unsharp mask of L* with amount a = 1-12 over levels 1-5, 13x13 Gaussian (kadid sigma "
                   "3 px as MATLAB imsharpen, arniqa sigma 6 px as ARNIQA); "
                   "output clipped to [0,1]")

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        bgr, clamp_z = lab_options(self.options)
        lab = to_lab(images, bgr)
        lum = lab[:, :1]
        taps = gaussian_kernel1d(float(self.options.get("sigma", 6.0)), SHARPEN_KERNEL)
        detail = lum - separable_filter(lum, [taps] * lum.shape[0])
        lab[:, :1] = lum + per_sample(params["amount"], images) * detail
        return from_lab(lab, bgr, clamp_z)


@register_uint8_path("high_sharpen")
def _high_sharpen_uint8(dist: Distortion, images: np.ndarray, params: Mapping[str, torch.Tensor], wrap: bool,
                        out: np.ndarray) -> bool | None:
    """uint8 fast path: L* from ``lab_of_uint8`` (linear light as a per-image table), the unsharp mask on
    the L* plane with OpenCV's separable filter (as ``separable_filter``), back through OpenCV's float
    ``Lab2RGB``."""
    import cv2

    bgr, clamp_z = lab_options(dist.options)
    if bgr:
        return False
    linear = srgb_to_linear(unit_tables(images, wrap)).numpy()
    amounts = params["amount"].to(torch.float32).numpy()
    taps = gaussian_kernel1d(float(dist.options.get("sigma", 6.0)), SHARPEN_KERNEL).astype(np.float32)

    def one(i: int) -> None:
        lab = lab_of_uint8(images[i], linear[i])
        lum = cv2.extractChannel(lab, 0, dst=scratch("sharpen.l", lab.shape[:2]))
        detail = cv2.sepFilter2D(lum, -1, taps, taps, dst=scratch("sharpen.detail", lum.shape),
                                 borderType=cv2.BORDER_REPLICATE)
        np.subtract(lum, detail, out=detail)
        detail *= amounts[i]
        np.add(lum, detail, out=lab[..., 0])
        finish_unit(lab_to_rgb_array(lab, clamp_z), wrap, out[i])

    map_images(images.shape[0], one)
    return None


def contrast_coefficients(amount: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(c1, c3) of the contrast spline f(x) = 0.5 + c1 u + c3 u^3, u = x - 0.5, for amounts ``a``.

    From f(0) = 0 and f(0.3) = 0.25 - a/4: c3 = -(0.05 + a/4) / 0.042 and c1 = 1 - c3/4.
    """
    c3 = -(0.05 + 0.25 * amount) / 0.042
    return 1.0 - 0.25 * c3, c3


def contrast_curve(x: torch.Tensor, amount: torch.Tensor) -> torch.Tensor:
    """``clip(f(x), 0, 1)`` for ``[B,...]`` images and per-sample amounts broadcastable to them."""
    c1, c3 = contrast_coefficients(amount)
    u = x - 0.5
    return (u * u).mul_(c3).add_(c1).mul_(u).add_(0.5).clamp_(0.0, 1.0)


@register_distortion
class ContrastChange(Distortion):
    """MATLAB ``imcontrastc``: a 5-knot not-a-knot spline per RGB channel, evaluated in closed form.

    Even a = 0 is a mild S-curve (f(0.1) = 0.0571), not the identity; a > 0 raises contrast.
    """

    name = "contrast_change"
    kadid_id = 25
    group = "sharpness_contrast"
    aliases = ("lincontrchange",)
    tables = {
        "kadid": LevelTable({"amount": (0.3, 0.15, 0.0, -0.4, -0.6)}),
        "arniqa": LevelTable({"amount": (0.0, 0.15, -0.4, 0.3, -0.6)}),
    }
    description = ("S-shaped contrast curve through (0.3, 0.25-a/4) and (0.7, 0.75+a/4); kadid a = 0.3, "
                   "0.15, 0, -0.4, -0.6 over levels 1-5 (MATLAB order), arniqa 0, 0.15, -0.4, 0.3, -0.6; "
                   "clipped to [0,1]")

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return contrast_curve(images, per_sample(params["amount"], images))


@register_distortion
class NonlinearContrastChange(Distortion):
    """ARNIQA's ``non_linear_contrast_change``: despite its name a linear compression towards 0.5,
    y = 0.5 + 2 o (x - 0.5), so the output spans [0.5 - o, 0.5 + o]."""

    name = "nonlinear_contrast_change"
    group = "sharpness_contrast"
    aliases = ("nonlincontrchange",)
    tables = {"arniqa": LevelTable({"half_range": (0.4, 0.3, 0.2, 0.1, 0.05)})}
    description = ("Linear contrast reduction around 0.5 to the output range 0.5 +- o, o = 0.4-0.05 over "
                   "levels 1-5; arniqa profile only")

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        o = per_sample(params["half_range"], images)
        return (images - 0.5).mul_(2.0 * o).add_(0.5)
