"""KADID-10k blur types 1-3: Gaussian, lens (disk) and motion blur, with MATLAB ``fspecial`` kernels.

Each sample gets its own kernel from its own parameter; samples sharing a kernel are filtered together
(``filters.separable_filter`` / ``filters.filter2d``, replicate border). Integer parameters (radius,
length) are rounded half up after level interpolation, so integer levels give the table values.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from synthiqa.distortions.base import Distortion, LevelTable, host_param
from synthiqa.distortions.fastpath import filter_uint8, register_uint8_path
from synthiqa.distortions.filters import (
    disk_kernel,
    filter2d,
    gaussian_kernel1d,
    motion_kernel,
    separable_filter,
)
from synthiqa.distortions.registry import register_distortion
from synthiqa.distortions.rng import SampleRNG


def round_half_up(values: torch.Tensor) -> list[int]:
    """Nearest integers, halves rounded up (MATLAB's ``round`` for non-negative values)."""
    return [int(v) for v in torch.floor(values.detach().to(torch.float64).cpu() + 0.5).tolist()]


def _motion_kernels(params: Mapping[str, torch.Tensor]) -> list[np.ndarray]:
    angles = [int(a) for a in host_param(params, "angle").round().tolist()]
    lengths = round_half_up(host_param(params, "length"))
    return [motion_kernel(n, a) for n, a in zip(lengths, angles, strict=True)]


def _floats(values: torch.Tensor) -> list[float]:
    return [float(v) for v in values.detach().to(torch.float64).cpu().tolist()]


@register_distortion
class GaussianBlur(Distortion):
    name = "gaussian_blur"
    kadid_id = 1
    group = "blur"
    aliases = ("gaublur",)
    tables = {
        "kadid": LevelTable({"sigma": (0.1, 0.5, 1.0, 2.0, 5.0)}),
        "arniqa": LevelTable({"sigma": (0.1, 0.5, 1.0, 2.0, 5.0)}),
    }
    description = ("Gaussian blur of std sigma px (0.1-5; level 1 is the identity), kernel side "
                   "2*ceil(2*sigma)+1 = 3..21 px with taps cut at that size (fspecial), replicate border")

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        kernels = [gaussian_kernel1d(s) for s in _floats(host_param(params, "sigma"))]
        return separable_filter(images, kernels)


@register_distortion
class LensBlur(Distortion):
    name = "lens_blur"
    kadid_id = 2
    group = "blur"
    aliases = ("lensblur",)
    tables = {
        "kadid": LevelTable({"radius": (1, 2, 4, 6, 8)}),
        "arniqa": LevelTable({"radius": (1, 2, 4, 6, 8)}),
    }
    description = ("lens (defocus) blur: anti-aliased disk of radius 1-8 px (fspecial('disk'), rounded "
                   "half up at fractional levels), replicate border")
    approximation = ("arniqa profile: ARNIQA's Python port of fspecial('disk') drops the anti-aliasing "
                     "square roots for radius >= 2 (its kernels even have negative taps); both profiles "
                     "use MATLAB's kernel")

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        kernels = [disk_kernel(r) for r in round_half_up(host_param(params, "radius"))]
        return filter2d(images, kernels)


@register_distortion
class MotionBlur(Distortion):
    name = "motion_blur"
    kadid_id = 3
    group = "blur"
    aliases = ("motionblur",)
    tables = {
        "kadid": LevelTable({"length": (1, 2, 4, 6, 10)}),
        "arniqa": LevelTable({"length": (1, 2, 4, 6, 10)}),
    }
    description = ("linear motion blur: fspecial('motion') line of 1-10 px (rounded half up at fractional "
                   "levels) at a random integer angle 0-180 degrees per image (param 'angle'), replicate "
                   "border; level 1 is the identity")

    def draw(self, rng: SampleRNG, levels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"angle": rng.randint(0, 181)}

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return filter2d(images, _motion_kernels(params))


# -- uint8 CPU fast paths (fastpath.py): the same kernels on the raw 8-bit values, float32 sums ---------
@register_uint8_path("gaussian_blur")
def _gaussian_uint8(dist: Distortion, images: np.ndarray, params: Mapping[str, torch.Tensor], wrap: bool,
                    out: np.ndarray) -> None:
    filter_uint8(images, [gaussian_kernel1d(s) for s in _floats(params["sigma"])], True, wrap, out)


@register_uint8_path("lens_blur")
def _lens_uint8(dist: Distortion, images: np.ndarray, params: Mapping[str, torch.Tensor], wrap: bool,
                out: np.ndarray) -> None:
    filter_uint8(images, [disk_kernel(r) for r in round_half_up(params["radius"])], False, wrap, out)


@register_uint8_path("motion_blur")
def _motion_uint8(dist: Distortion, images: np.ndarray, params: Mapping[str, torch.Tensor], wrap: bool,
                  out: np.ndarray) -> None:
    filter_uint8(images, _motion_kernels(params), False, wrap, out)
