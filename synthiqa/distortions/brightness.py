"""Brightness distortions, KADID-10k types 16-18: brighten, darken, mean shift.

Brighten and darken use MATLAB's ``curves``: a 3-knot ``spline`` through (0, 0), (0.5, c), (1, 1), which is
the parabola f(x) = (2 - 4c) x^2 + (4c - 1) x. With c = 0.5 +- a/2 this is f(x) = x +- 2a x (1 - x);
it is evaluated in closed form and clipped to [0, 1].
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

import numpy as np
import torch

from synthiqa.distortions.base import Distortion, LevelTable
from synthiqa.distortions.colorspace import (
    lab_of_uint8,
    lab_to_rgb,
    lab_to_rgb_array,
    rgb_to_lab,
    srgb_to_linear,
)
from synthiqa.distortions.fastpath import (
    UNIT_VALUES,
    apply_lut,
    finish_unit,
    image_range,
    map_images,
    register_uint8_path,
    scratch,
    stretch_array,
    to_uint8_table,
    unit_tables,
)
from synthiqa.distortions.registry import register_distortion


def per_sample(values: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """A ``[B]`` parameter as ``[B,1,1,1]`` on ``ref``'s device and dtype."""
    return values.to(device=ref.device, dtype=ref.dtype).view(-1, 1, 1, 1)


def bend(x: torch.Tensor, amount: torch.Tensor) -> torch.Tensor:
    """The curve ``clip(x + 2 a x (1 - x), 0, 1)`` with per-sample ``a`` (``[B,1,1,1]``); a < 0 darkens."""
    return (1.0 - x).mul_(2.0 * amount).add_(1.0).mul_(x).clamp_(0.0, 1.0)


def to_lab(rgb: torch.Tensor, bgr: bool = False) -> torch.Tensor:
    """CIELAB (D65, L* in 0..100) of ``[B,3,H,W]`` RGB. ``bgr=True`` reproduces ARNIQA's quirk of converting
    channel-reversed data (a "BGR-as-RGB" Lab space); off by default, as in the colour distortions."""
    return rgb_to_lab(rgb.flip(1) if bgr else rgb)


def from_lab(lab: torch.Tensor, bgr: bool = False, clamp_negative_z: bool = True) -> torch.Tensor:
    """Inverse of :func:`to_lab`, clipped to [0, 1]; ``clamp_negative_z`` as Kornia/ARNIQA (MATLAB: False)."""
    rgb = lab_to_rgb(lab, clamp_negative_z)
    return rgb.flip(1) if bgr else rgb


def lab_options(options: Mapping[str, object]) -> tuple[bool, bool]:
    """(``lab_bgr``, ``lab_clamp_negative_z``) from a level table's options, ARNIQA's Kornia defaults
    except the channel swap, which no profile copies by default."""
    return bool(options.get("lab_bgr", False)), bool(options.get("lab_clamp_negative_z", True))


@register_distortion
class Brighten(Distortion):
    """MATLAB ``imbrighten``: (2 f(RGB) + lab2rgb(L* replaced by 100 f(L*/100))) / 3, f(x) = x + 2a x(1-x).

    Options: ``lab_bgr`` (default False) runs the L* part on the channel-reversed image as ARNIQA's code
    does; ``lab_clamp_negative_z`` (kadid False, as MATLAB's lab2rgb).
    """

    name = "brighten"
    kadid_id = 16
    group = "brightness_change"
    _amount = {"amount": (0.1, 0.2, 0.4, 0.7, 1.1)}
    tables = {
        "kadid": LevelTable(_amount, {"lab_clamp_negative_z": False}),
        "arniqa": LevelTable(_amount),
    }
    approximation = ("arniqa: L* is computed in true RGB order; ARNIQA's code converts BGR-ordered data "
                     "(set option lab_bgr=True to copy that quirk)")
    description = ("Brightening tone curve f(x) = x + 2a x(1-x) with a = 0.1-1.1 over levels 1-5, applied "
                   "to RGB and to L*/100 and blended 2:1; output in [0,1]")

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        a = per_sample(params["amount"], images)
        bgr, clamp_z = lab_options(self.options)
        lab = to_lab(images, bgr)
        lab[:, :1] = bend(lab[:, :1].div(100.0), a).mul_(100.0)
        return bend(images.clone(), a).mul_(2.0).add_(from_lab(lab, bgr, clamp_z)).div_(3.0)


def bend_array(x: np.ndarray, twice_amount: np.float32, out: np.ndarray) -> np.ndarray:
    """:func:`bend` on a float32 array into ``out`` with ``2 a`` given (the same float32 operations)."""
    np.subtract(np.float32(1.0), x, out=out)
    out *= twice_amount
    out += np.float32(1.0)
    out *= x
    return np.clip(out, 0.0, 1.0, out=out)


@register_uint8_path("brighten")
def _brighten_uint8(dist: Distortion, images: np.ndarray, params: Mapping[str, torch.Tensor], wrap: bool,
                    out: np.ndarray) -> bool | None:
    """uint8 fast path: the RGB curve and linear light are per-image lookup tables of the 256 values;
    L* comes from ``lab_of_uint8``, is bent in place, and goes back through OpenCV's ``Lab2RGB``."""
    import cv2

    bgr, clamp_z = lab_options(dist.options)
    if bgr:
        return False
    unit = unit_tables(images, wrap)
    amount = params["amount"].to(torch.float32).view(-1, 1)
    linear = srgb_to_linear(unit).numpy()
    rgb_part = bend(unit.clone(), amount).mul_(2.0).numpy()  # 2 f(x) of each value
    twice = (2.0 * amount).view(-1).numpy()

    def one(i: int) -> None:
        lab = lab_of_uint8(images[i], linear[i])
        lum = lab[..., 0]
        plane = np.divide(lum, np.float32(100.0), out=scratch("brighten.l", lum.shape))
        bent = bend_array(plane, twice[i], scratch("brighten.bent", lum.shape))
        np.multiply(bent, np.float32(100.0), out=lum)
        lab_part = lab_to_rgb_array(lab, clamp_z)
        rgb_curve = cv2.LUT(images[i], rgb_part[i], dst=scratch("brighten.rgb", lab.shape))
        third = 1.0 / 3.0  # (2 f(RGB) + Lab part) / 3 in one pass, within float rounding of the division
        finish_unit(cv2.addWeighted(lab_part, third, rgb_curve, third, 0.0, dst=lab_part), wrap, out[i])

    map_images(images.shape[0], one)
    return None


@register_distortion
class Darken(Distortion):
    """Darkening curve on RGB only: f(x) = clip(x - 2a x(1 - x)) (ARNIQA's ``darken`` with dolab=False)."""

    name = "darken"
    kadid_id = 17
    group = "brightness_change"
    _table = LevelTable({"amount": (0.05, 0.1, 0.2, 0.4, 0.8)})
    tables = {"kadid": _table, "arniqa": _table}
    approximation = ("kadid: MATLAB's imdarken body is not public; ARNIQA's port (RGB-only curve) is used, "
                     "so KADID's darken may differ if MATLAB also blends an L* curve like imbrighten")
    description = ("Darkening tone curve f(x) = x - 2a x(1-x) per RGB channel, a = 0.05-0.8 over levels "
                   "1-5, clipped to [0,1]")

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return bend(images.clone(), -per_sample(params["amount"], images))


@register_distortion
class MeanShift(Distortion):
    """Add a constant offset to every RGB element and clip: ``clip(x + m, 0, 1)``."""

    name = "mean_shift"
    kadid_id = 18
    group = "brightness_change"
    aliases = ("meanshift",)
    tables = {
        "kadid": LevelTable({"offset": (0.15, 0.08, 0.0, -0.08, -0.15)}),
        "arniqa": LevelTable({"offset": (0.0, 0.08, -0.08, 0.15, -0.15)}),
    }
    description = ("Offset m added to all RGB values then clipped to [0,1]; kadid levels 1-5: +0.15 +0.08 0 "
                   "-0.08 -0.15 (zero at level 3, MATLAB order); arniqa: 0 +0.08 -0.08 +0.15 -0.15")

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return images.add(per_sample(params["offset"], images)).clamp_(0.0, 1.0)


@lru_cache(maxsize=4096)
def shift_lut(offset: float, lo: int, hi: int, wrap: bool) -> np.ndarray:
    """uint8 table of mean shift by ``offset`` (a float32 value) on an image whose 8-bit values span
    [lo, hi], with the float path's float32 operations: under the wrap, the values stretched by the
    image's range, shifted and clamped, then stretched by the range of the result, which is the curve at
    lo and hi (it rises with the value)."""
    x = stretch_array(UNIT_VALUES, UNIT_VALUES[lo], UNIT_VALUES[hi]) if wrap else UNIT_VALUES
    y = np.clip(x + np.float32(offset), np.float32(0.0), np.float32(1.0))
    if wrap:
        y = stretch_array(y, y[lo], y[hi])
    lut = to_uint8_table(y)
    lut.setflags(write=False)
    return lut


@register_uint8_path("mean_shift")
def _mean_shift_uint8(dist: Distortion, images: np.ndarray, params: Mapping[str, torch.Tensor], wrap: bool,
                      out: np.ndarray) -> None:
    """One pass per image: its range (under the wrap), then its table (``shift_lut``) while the image is
    still in cache."""
    offsets = params["offset"].to(torch.float32).tolist()

    def one(i: int) -> None:
        lo, hi = image_range(images[i]) if wrap else (0, 255)
        apply_lut(images[i], shift_lut(offsets[i], int(lo), int(hi), wrap), out[i])

    map_images(images.shape[0], one)
