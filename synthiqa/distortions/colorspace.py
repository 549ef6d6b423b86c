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

from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch

from synthiqa.distortions.fastpath import scratch

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


def _mix(matrix: torch.Tensor, images: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """3x3 colour matrix times every pixel, as broadcast multiply-adds: unlike a BLAS call, every pixel is
    computed the same way whatever the batch size, so results are bit-identical across batch mates
    (into ``out``, of the images' shape, when given)."""
    m = matrix.t().reshape(3, 1, 3, 1, 1)
    out = images[:, 0:1] * m[0] if out is None else torch.mul(images[:, 0:1], m[0], out=out)
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
    return linear_to_lab(srgb_to_linear(images))


def linear_to_lab(linear: torch.Tensor, reuse: bool = False) -> torch.Tensor:
    """Linear-light RGB ``[B,3,H,W]`` to CIELAB (D65): :func:`rgb_to_lab` after the transfer curve.

    ``reuse=True`` (CPU float32, for the uint8 fast path): the result and every intermediate are this
    thread's scratch arrays (``fastpath.scratch``; the result is overwritten by the next call), the same
    operations into reused memory instead of fresh multi-megabyte tensors (a page fault per 4 KiB)."""
    shape = tuple(linear.shape)

    def buffer(key: str, dtype: torch.dtype = linear.dtype) -> torch.Tensor:
        if not reuse:
            return torch.empty(shape, dtype=dtype, device=linear.device)
        return torch.from_numpy(scratch(f"lab.torch.{key}", shape, np.bool_ if dtype == torch.bool
                                        else np.float32))

    white = torch.tensor(WHITE_D65, dtype=linear.dtype, device=linear.device)
    m = torch.tensor(RGB_TO_XYZ, dtype=linear.dtype, device=linear.device) / white[:, None]
    xyz = _mix(m, linear, buffer("xyz"))
    bright = torch.gt(xyz, _EPSILON, out=buffer("bright", torch.bool))
    root = torch.clamp_min(xyz, _EPSILON, out=buffer("root")).pow_(1 / 3)
    dark = torch.mul(xyz, _KAPPA, out=xyz).add_(4 / 29)  # the CIE linear segment
    f = torch.where(bright, root, dark, out=buffer("f"))
    fx, fy, fz = f[:, 0:1], f[:, 1:2], f[:, 2:3]
    lab = buffer("lab")
    torch.mul(fy, 116.0, out=lab[:, 0:1]).sub_(16.0)
    torch.sub(fx, fy, out=lab[:, 1:2]).mul_(500.0)
    torch.sub(fy, fz, out=lab[:, 2:3]).mul_(200.0)
    return lab


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


    if clamp_negative_z:
        cap = np.add(lab[..., 0], np.float32(16.0), out=scratch("rgb.cap", lab.shape[:2]))
        cap *= np.float32(200.0 / 116.0)
        np.minimum(lab[..., 2], cap, out=lab[..., 2])
    rgb = cv2.cvtColor(lab, cv2.COLOR_Lab2RGB, dst=scratch("rgb", lab.shape))
    return np.clip(rgb, 0.0, 1.0, out=rgb)



#: Bins per unit of linear light in the truncated sRGB table (a power of two: ``x * N`` is exact); much
#: finer than the closest two 8-bit thresholds (1 / (255 * 12.92) apart at the dark end), so a bin and its
#: ``SRGB_NEAR`` margins hold at most one threshold.
SRGB_BINS = 8192
#: Linear light this close to an 8-bit threshold (a few float32 ulps at 1, about the rounding a Lab round
#: trip computed in another order picks up) is recomputed by the float path's own operations.
SRGB_NEAR = 4e-6


@lru_cache(maxsize=1)
def srgb_truncation_table() -> tuple[np.ndarray, np.ndarray]:
    """``truncate_to_8bit(linear_to_srgb(x))`` of linear light as a step function: per bin of
    ``SRGB_BINS``, the one threshold within the bin or its ``SRGB_NEAR`` margins (float32 ``[N]``, ``inf``
    where there is none) and the 8-bit value below it (uint8 ``[N]``): the value at x is
    ``below + (x >= threshold)``.

    The 255 thresholds are the smallest float32 values at which the float path's own torch operations
    reach each 8-bit value (bisection on float32 bit patterns, the curve being non-decreasing), so the
    table reproduces those operations value for value."""
    def steps(x: torch.Tensor) -> torch.Tensor:  # each value in a row of 64: torch's vectorised loop, as
        rows = x.view(-1, 1).expand(-1, 64).contiguous()  # on images (a lone value may round otherwise)
        return truncate_to_8bit(linear_to_srgb(rows))[:, 32].mul_(255.0).round_()

    targets = torch.arange(1, 256, dtype=torch.float32)
    one = int(np.float32(1.0).view(np.int32))
    lo = torch.zeros(255, dtype=torch.int64)  # bit patterns: steps(lo) < target <= steps(hi), if reached
    hi = torch.full((255,), one, dtype=torch.int64)
    reached = steps(torch.ones(255)) >= targets
    while bool((hi - lo > 1).any()):
        mid = (lo + hi) // 2
        up = steps(mid.to(torch.int32).view(torch.float32)) >= targets
        hi, lo = torch.where(up, mid, hi), torch.where(up, lo, mid)
    thresholds = hi.to(torch.int32).view(torch.float32).numpy()[reached.numpy()]
    if np.diff(thresholds).min() <= 1.0 / SRGB_BINS + 2 * SRGB_NEAR:
        raise AssertionError("two 8-bit thresholds share a bin: raise SRGB_BINS")
    starts = np.arange(SRGB_BINS, dtype=np.float64) / SRGB_BINS
    value = np.searchsorted(thresholds, starts.astype(np.float32), side="right")  # the value at each start
    step = np.full(SRGB_BINS, np.inf, dtype=np.float32)
    below = value.copy()
    for t in thresholds:
        for j in {int((t - SRGB_NEAR) * SRGB_BINS), int(t * SRGB_BINS), int((t + SRGB_NEAR) * SRGB_BINS)}:
            if 0 <= j < SRGB_BINS:
                step[j] = t
                below[j] = value[j] - (t <= np.float32(starts[j]))  # counted at the start already
    below = below.astype(np.uint8)
    for table in (below, step):
        table.setflags(write=False)
    return below, step


def linear_to_srgb_truncated(linear: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``255 * truncate_to_8bit(linear_to_srgb(x))`` of float32 linear light ``[H,W,3]`` (unclamped) into
    the uint8 ``out`` of its shape by ``srgb_truncation_table`` (the float path's values exactly for the
    same ``x``); returns the flat indices of the pixels with a value within ``SRGB_NEAR`` of a threshold,
    for the caller to recompute exactly. Work arrays are this thread's scratch arrays ``"srgb.*"``."""

    below, step = srgb_truncation_table()
    pos = np.multiply(linear, np.float32(SRGB_BINS), out=scratch("srgb.pos", linear.shape))
    np.clip(pos, 0.0, SRGB_BINS - 1, out=pos)  # below 0: the first bin; from 1 up: the last bin
    idx = scratch("srgb.idx", linear.shape, np.intp)
    np.copyto(idx, pos, casting="unsafe")  # truncation: the bin
    np.take(below, idx, out=out)
    t = np.take(step, idx, out=pos)
    up = np.greater_equal(linear, t, out=scratch("srgb.up", linear.shape, np.bool_))
    np.add(out, up, out=out, casting="unsafe")
    gap = np.subtract(linear, t, out=t)
    near = np.less_equal(np.abs(gap, out=gap), np.float32(SRGB_NEAR), out=up)
    pixels = np.flatnonzero(near) // 3  # few: the values near a threshold, as pixels (rising)
    return pixels[np.flatnonzero(np.diff(pixels, prepend=-1))]  # each pixel once (np.unique hashes: slow)


#: Pixels per ``exact_truncated_rgb`` call are padded to a multiple of this: torch's element-wise loops
#: then run vectorised throughout, as on whole images (a loop's scalar tail may round differently).
EXACT_PAD = 64


def exact_truncated_rgb(fn: Callable[[torch.Tensor], torch.Tensor], values: np.ndarray) -> np.ndarray:
    """``fn`` (a float path's torch operations on ``[1,3,1,N]``, ending in ``truncate_to_8bit``) of the
    pixels ``values`` (float32 ``[N,3]``) as uint8 ``[N,3]``."""
    n = values.shape[0]
    padded = np.zeros((3, -(-n // EXACT_PAD) * EXACT_PAD), dtype=np.float32)
    padded[:, :n] = values.T
    rows = torch.from_numpy(padded).view(1, 3, 1, -1)
    return fn(rows)[0, :, 0, :n].T.mul(255.0).round_().to(torch.uint8).numpy()


#: (L*, a*, b*, 1) -> (f(X), f(Y), f(Z)): f(Y) = (L* + 16) / 116, f(X) = f(Y) + a*/500, f(Z) = f(Y) - b*/200.
_LAB_TO_F = np.array([[1 / 116, 1 / 500, 0.0, 16 / 116], [1 / 116, 0.0, 0.0, 16 / 116],
                      [1 / 116, 0.0, -1 / 200, 16 / 116]], dtype=np.float64)
#: XYZ (white-normalised) -> linear sRGB: ``lab_to_rgb``'s matrix.
_WHITE_TO_RGB = (np.array(XYZ_TO_RGB, dtype=np.float64) * np.array(WHITE_D65)[None, :]).astype(np.float32)


def lab_to_linear_array(lab: np.ndarray, clamp_negative_z: bool, ab_scale: float = 1.0) -> np.ndarray:
    """The linear light (unclamped) that :func:`lab_to_rgb` computes from float32 ``[H,W,3]`` CIELAB with
    a*, b* multiplied by ``ab_scale``, within float32 rounding; feed it to ``linear_to_srgb_truncated``.
    The result is this thread's scratch array ``"lin"``."""
    import cv2


    m = _LAB_TO_F.copy()
    m[:, 1:3] *= ab_scale
    f = cv2.transform(lab, m.astype(np.float32), dst=scratch("lin.f", lab.shape))
    if clamp_negative_z:
        np.maximum(f[..., 2], np.float32(0.0), out=f[..., 2])
    cube = cv2.multiply(f, f, dst=scratch("lin.cube", lab.shape))
    cv2.multiply(cube, f, dst=cube)
    low = np.less_equal(f, np.float32(6 / 29), out=scratch("lin.low", lab.shape, np.bool_))
    if low.any():  # the CIE linear segment (f - 4/29) / kappa below 6/29
        seg = np.subtract(f, np.float32(4 / 29), out=f)
        seg /= np.float32(_KAPPA)
        np.copyto(cube, seg, where=low)
    return cv2.transform(cube, _WHITE_TO_RGB, dst=scratch("lin", lab.shape))
