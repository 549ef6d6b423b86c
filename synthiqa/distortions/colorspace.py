"""Batched CIELAB conversions (sRGB, D65 white, L* in [0, 100], a*/b* about [-128, 127]) on any device.

``rgb_to_lab`` / ``lab_to_rgb`` take and return ``[B,3,H,W]`` float tensors (RGB in [0, 1]). They use
Kornia's constants (``kornia.color.rgb_to_lab``, the sRGB transfer curve, CIE thresholds 0.008856 and
7.787) and agree with Kornia to about 1e-4 in L*a*b*, but are written as a few fused tensor operations,
about twice as fast on a CPU. Every operation is per pixel, so a sample's result never depends on
its batch mates.

``lab_of_uint8`` / ``lab_to_rgb_array`` are the same conversions on one 8-bit ``[H,W,3]`` NumPy image for
the uint8 fast path: a lookup table to linear light, ``cv2.transform`` for the matrices, ``cv2.pow``; the
way back is OpenCV's float ``Lab2RGB`` (within about 0.1/255 of ``lab_to_rgb``). OpenCV's float
``RGB2Lab`` is not used: its L* differs from the CIE formula by up to 0.2.

Channels are true RGB order: ARNIQA feeds BGR data to Kornia's RGB formulas, a quirk deliberately not
copied here.
"""

from __future__ import annotations

import numpy as np
import torch

#: Linear sRGB -> XYZ (D65), rows X, Y, Z; the same matrix as Kornia's ``rgb_to_xyz``.
RGB_TO_XYZ = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
#: XYZ -> linear sRGB; the same matrix as Kornia's ``xyz_to_rgb``.
XYZ_TO_RGB = (
    (3.2404813432005266, -1.5371515162713185, -0.4985363261688878),
    (-0.9692549499965682, 1.8759900014898907, 0.0415559265582928),
    (0.0556466391351772, -0.2040413383665112, 1.0573110696453443),
)
WHITE_D65 = (0.95047, 1.0, 1.08883)
_EPSILON = 0.008856  # (6/29)^3
_KAPPA = 7.787  # (29/6)^2 / 3


def _mix(matrix: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """3x3 colour matrix times every pixel, as broadcast multiply-adds: unlike a BLAS call, every pixel is
    computed the same way whatever the batch size, so results are bit-identical across batch mates."""
    m = matrix.t().reshape(3, 1, 3, 1, 1)
    out = images[:, 0:1] * m[0]
    out.addcmul_(images[:, 1:2], m[1])
    return out.addcmul_(images[:, 2:3], m[2])


def srgb_to_linear(images: torch.Tensor) -> torch.Tensor:
    """The sRGB transfer curve, inverted: gamma-encoded [0, 1] to linear light."""
    return torch.where(images > 0.04045, ((images + 0.055) / 1.055).pow(2.4), images / 12.92)


def linear_to_srgb(images: torch.Tensor) -> torch.Tensor:
    """Linear light to gamma-encoded sRGB; inputs are clamped to [0, 1] first."""
    x = images.clamp(0.0, 1.0)
    return torch.where(x > 0.0031308, 1.055 * x.pow(1 / 2.4) - 0.055, 12.92 * x)


def rgb_to_lab(images: torch.Tensor) -> torch.Tensor:
    """sRGB ``[B,3,H,W]`` in [0, 1] to CIELAB (D65): L* in [0, 100], a*, b* unbounded (about +-128)."""
    white = torch.tensor(WHITE_D65, dtype=images.dtype, device=images.device)
    m = torch.tensor(RGB_TO_XYZ, dtype=images.dtype, device=images.device) / white[:, None]
    xyz = _mix(m, srgb_to_linear(images))
    f = torch.where(xyz > _EPSILON, xyz.clamp_min(_EPSILON).pow(1 / 3), _KAPPA * xyz + 4 / 29)
    fx, fy, fz = f[:, 0:1], f[:, 1:2], f[:, 2:3]
    return torch.cat([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=1)


def lab_to_rgb(lab: torch.Tensor, clamp_negative_z: bool = True) -> torch.Tensor:
    """CIELAB (D65) ``[B,3,H,W]`` to sRGB, clamped to [0, 1].

    ``clamp_negative_z``: clamp f(Z) at 0 before inverting it, as Kornia (and so ARNIQA) does; MATLAB's
    ``lab2rgb`` does not, which changes strongly saturated blue-yellow colours (b* far above L*).
    Out-of-gamut results are clamped in linear light; MATLAB clamps nothing here, but every caller
    clamps afterwards and clamping is monotone, so the results agree.
    """
    fy = (lab[:, 0:1] + 16.0) / 116.0
    fz = fy - lab[:, 2:3] / 200.0
    if clamp_negative_z:
        fz = fz.clamp_min(0.0)
    f = torch.cat([fy + lab[:, 1:2] / 500.0, fy, fz], dim=1)
    xyz = torch.where(f > 6 / 29, f.pow(3), (f - 4 / 29) / _KAPPA)
    white = torch.tensor(WHITE_D65, dtype=lab.dtype, device=lab.device)
    m = torch.tensor(XYZ_TO_RGB, dtype=lab.dtype, device=lab.device) * white[None, :]
    return linear_to_srgb(_mix(m, xyz))


def truncate_to_8bit(images: torch.Tensor) -> torch.Tensor:
    """``trunc(x * 255) / 255``: drop to the 8-bit grid by truncation, as MATLAB's and ARNIQA's Lab ops do."""
    return torch.trunc(images * 255.0) / 255.0


# -- 8-bit images on the CPU (NumPy/OpenCV), for the uint8 fast path -------------------------------
#: White-normalised linear sRGB -> XYZ, float32 (``rgb_to_lab``'s matrix), for ``cv2.transform``.
_XYZ_OVER_WHITE = (np.array(RGB_TO_XYZ, dtype=np.float32) / np.array(WHITE_D65, dtype=np.float32)[:, None])
#: The CIE linear segment of f below ``_EPSILON``: ``_KAPPA t + 4/29`` per channel.
_LINEAR_SEGMENT = np.hstack([np.eye(3) * _KAPPA, np.full((3, 1), 4 / 29)]).astype(np.float32)
#: (f(X), f(Y), f(Z)) -> (L*, a*, b*): L* = 116 f(Y) - 16, a* = 500 (f(X) - f(Y)), b* = 200 (f(Y) - f(Z)).
_F_TO_LAB = np.array([[0.0, 116.0, 0.0, -16.0], [500.0, -500.0, 0.0, 0.0], [0.0, 200.0, -200.0, 0.0]],
                     dtype=np.float32)


def lab_of_uint8(image: np.ndarray, linear: np.ndarray) -> np.ndarray:
    """CIELAB (as :func:`rgb_to_lab`) float32 ``[H,W,3]`` of a uint8 RGB ``[H,W,3]`` image whose values
    ``v`` stand for linear light ``linear[v]`` (float32 ``[256]``: ``srgb_to_linear`` of the values the
    float path sees, e.g. after a min-max stretch). Within float32 rounding of ``rgb_to_lab``. The result
    is this thread's scratch array ``"lab"`` (see ``fastpath.scratch``)."""
    import cv2

    from synthiqa.distortions.fastpath import scratch

    shape = image.shape
    xyz = cv2.transform(cv2.LUT(image, linear, dst=scratch("lab", shape)), _XYZ_OVER_WHITE,
                        dst=scratch("lab.xyz", shape))
    f = cv2.pow(xyz, 1.0 / 3.0, dst=scratch("lab.f", shape))  # SIMD; within an ulp of the cube root
    # numpy's comparison, not cv2.compare: OpenCV 5 reads a scalar as (s, 0, 0, 0), one channel only
    dark = np.less_equal(xyz, np.float32(_EPSILON), out=scratch("lab.dark", shape, np.bool_))
    np.copyto(f, cv2.transform(xyz, _LINEAR_SEGMENT, dst=scratch("lab", shape)), where=dark)
    return cv2.transform(f, _F_TO_LAB, dst=scratch("lab", shape))


def lab_to_rgb_array(lab: np.ndarray, clamp_negative_z: bool) -> np.ndarray:
    """:func:`lab_to_rgb` of float32 ``[H,W,3]`` CIELAB by OpenCV's ``Lab2RGB`` (D65, sRGB; within about
    0.1/255 of ours), clamped to [0, 1]. ``clamp_negative_z`` caps b* at 200 f(Y) first (f(Z) >= 0);
    ``lab`` is overwritten then. The result is this thread's scratch array ``"rgb"``."""
    import cv2

    from synthiqa.distortions.fastpath import scratch

    if clamp_negative_z:
        cap = np.add(lab[..., 0], np.float32(16.0), out=scratch("rgb.cap", lab.shape[:2]))
        cap *= np.float32(200.0 / 116.0)
        np.minimum(lab[..., 2], cap, out=lab[..., 2])
    rgb = cv2.cvtColor(lab, cv2.COLOR_Lab2RGB, dst=scratch("rgb", lab.shape))
    return np.clip(rgb, 0.0, 1.0, out=rgb)

