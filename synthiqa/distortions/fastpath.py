"""CPU fast path for one distortion step on 8-bit images: uint8 in, uint8 out, per image with OpenCV.

The float path (``Distortion.apply`` on float ``[B,3,H,W]``) is the reference. When a caller hands
``apply_chains`` a uint8 CPU batch and asks for uint8 output (``out_dtype=torch.uint8``), each
single-step chain whose distortion has an entry in ``UINT8_PATHS`` runs here instead: every output
pixel is within 1/255 of ``round(255 * reference)`` (in practice within rounding, 0.5/255), KADID's
min-max wrap included. Images are processed one at a time as contiguous ``H x W x 3`` arrays (the
memory of a channels-last tensor), spread over ``torch.get_num_threads()`` threads (OpenCV releases
the GIL), so a sample's output never depends on its batch mates.

How the wrap is folded in (``lo``, ``hi``: the image's min and max over all channels):

- pointwise curves (``register_pointwise``): the whole step is a per-image, per-channel lookup table
  of 256 entries, computed by running the distortion's own ``apply`` on a ramp of the 256 stretched
  input values; the output stretch uses the curve at the image's extremes when the curve is monotone,
  else the values present in the image (its histograms).
- linear filters with non-negative unit-sum kernels and the HSV saturation scale commute with the
  input stretch (an increasing affine map), so they run on the raw 8-bit values (in float32) and only
  the final clamp to [lo, hi] and the output stretch remain.
- steps that only pick or replace pixels (pixelate, colour blocks) and histogram-driven curves
  (quantization) become one lookup table per image (``spatial.py``).
- JPEG is 8-bit by nature: the input stretch and the output stretch are lookup tables around the codec.
- CIELAB steps on L* (brighten, high sharpen): the stretched values and their linear light are
  per-image tables of 256 entries (``unit_tables``), L* a*b* come from ``colorspace.lab_of_uint8``, the
  step changes L* in float32, OpenCV's float ``Lab2RGB`` converts back, and ``finish_unit`` clamps,
  stretches by the result's range and rounds.
- CIELAB steps that truncate to the 8-bit grid (Lab saturation): the way back stops at linear light
  (``colorspace.lab_to_linear_array``) and ``colorspace.linear_to_srgb_truncated`` turns it into 8-bit
  values by a table of the float path's own thresholds; the few pixels within float32 rounding of a
  threshold are recomputed by the distortion's torch operations, so truncation flips stay rare. Colour
  diffusion blurs a* and b*, so a flip cannot be recomputed per pixel: its L*a*b* are the float path's
  own (``colorspace.linear_to_lab`` on the table's linear light) and its blur the float path's OpenCV
  filter, so its truncations agree with the float path's.
- noise (white, colour-component, impulse, multiplicative; ``noise.py``): the very per-sample torch
  fields the float path draws (same seeds, same stream, drawn into scratch arrays), the stretched input
  as a per-image float table, OpenCV arithmetic, one clamp, stretch and rounding at the end.

Distortions without a path run the float path on the uint8 batch a few images at a time
(``chains.FALLBACK_CHUNK``) and are rounded. Lookup tables use StringZilla's SIMD byte translation
when it is installed (Albumentations depends on it), else OpenCV's ``LUT``.

Speed notes: per-batch bookkeeping (tables of 256 values per sample) is NumPy float32, not torch, whose
tiny element-wise ops can wake its intra-op thread pool (milliseconds on a busy machine); per-image work
arrays come from ``scratch`` (a fresh multi-megabyte array costs a page fault per 4 KiB).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from types import ModuleType

import numpy as np
import torch

from synthiqa.distortions.base import Distortion

#: A uint8 path: (distortion, images ``[B,H,W,3]`` uint8 RGB, CPU parameters, min-max wrap, output array);
#: it fills the output, or returns False without touching it to decline (an option it does not cover).
Uint8Path = Callable[[Distortion, np.ndarray, Mapping[str, torch.Tensor], bool, np.ndarray], "bool | None"]
UINT8_PATHS: dict[str, Uint8Path] = {}
#: ``minmax_stretch``'s flat-image threshold in [0, 1] units: far below one 8-bit step, far above the float32
#: noise of flat inputs (a grey image through a Lab round trip varies by up to about 6e-6).
FLAT_SPAN = 1e-4


def register_uint8_path(*names: str) -> Callable[[Uint8Path], Uint8Path]:
    """Register ``fn`` as the uint8 path of the distortions called ``names`` (canonical names)."""
    def deco(fn: Uint8Path) -> Uint8Path:
        for n in names:
            UINT8_PATHS[n] = fn
        return fn
    return deco


def apply_uint8(dist: Distortion, images: torch.Tensor, params: Mapping[str, torch.Tensor],
                wrap: bool) -> torch.Tensor | None:
    """``dist`` on uint8 CPU images ``[B,3,H,W]`` as uint8 ``[B,3,H,W]`` (channels-last memory), with the
    min-max wrap when ``wrap``; None when ``dist`` has no uint8 path (use the float path). A batch that
    is one channels-last image expanded (stride 0) is read as it is (the paths never write their input)."""
    if images.dtype != torch.uint8 or images.device.type != "cpu":
        return None
    hwc = hwc_array(images)
    out = np.empty(hwc.shape, np.uint8)
    if not apply_uint8_array(dist, hwc, params, wrap, out):
        return None
    return torch.from_numpy(out).permute(0, 3, 1, 2)


def hwc_array(images: torch.Tensor) -> np.ndarray:
    """uint8 CPU images ``[B,3,H,W]`` as a NumPy ``[B,H,W,3]`` array: the tensor's own memory when it is
    channels-last, a read-only broadcast of the first image when the batch is one image expanded
    (stride 0), else a contiguous copy."""
    hwc_t = images.permute(0, 2, 3, 1)
    if hwc_t.shape[0] > 1 and hwc_t.stride(0) == 0 and hwc_t[0].is_contiguous():
        return np.broadcast_to(hwc_t[0].numpy(), hwc_t.shape)  # copies of one image: read, never copied
    return hwc_t.contiguous().numpy()


def apply_uint8_array(dist: Distortion, images: np.ndarray, params: Mapping[str, torch.Tensor], wrap: bool,
                      out: np.ndarray) -> bool:
    """``dist`` on uint8 ``[B,H,W,3]`` arrays into ``out`` (same shape, not overlapping ``images``); False
    when ``dist`` has no uint8 path or its path declines these options (``out`` is then untouched)."""
    fn = UINT8_PATHS.get(dist.name)
    return fn is not None and fn(dist, images, params, wrap, out) is not False


@lru_cache(maxsize=4)
def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="synthiqa-uint8")


_SERIAL = threading.local()


def map_images(n: int, fn: Callable[[int], None], one_torch_thread: bool = False) -> None:
    """Run ``fn(i)`` for i in 0..n-1 on ``torch.get_num_threads()`` threads, the calling thread included:
    each thread takes the next index when it is done with one, so a thread the system holds back (a busy
    machine) leaves its share to the others instead of holding up the call. Calls made inside ``fn``
    (nested calls) run serially. The first error is raised once every thread has stopped.

    With ``one_torch_thread`` each thread runs torch's operations on itself alone, and the caller's
    thread count is restored at the end: for work of many small torch operations per image, which torch
    would otherwise split over its own threads too (threads x threads on the cores, each operation ending
    in a wait for the others)."""
    threads = torch.get_num_threads()
    workers = 1 if getattr(_SERIAL, "active", False) else min(threads, n)
    if workers <= 1:
        for i in range(n):
            fn(i)
        return
    indices = iter(range(n))
    lock = threading.Lock()

    def run() -> None:
        before = getattr(_SERIAL, "active", False)
        _SERIAL.active = True
        if one_torch_thread and torch.get_num_threads() != 1:
            torch.set_num_threads(1)  # this thread's count (torch keeps one per thread under OpenMP)
        try:
            while True:
                with lock:
                    i = next(indices, None)
                if i is None:
                    return
                fn(i)
        finally:
            _SERIAL.active = before

    pool = _pool(workers - 1)
    others = [pool.submit(run) for _ in range(1, workers)]
    try:
        run()
    finally:
        for f in others:
            f.result()
        if one_torch_thread:
            torch.set_num_threads(threads)


def map_jobs(jobs: Sequence[Callable[[], None]]) -> None:
    """Run independent jobs (one distortion's group of images each) as ``map_images`` runs its indices:
    ``map_images`` runs serially inside a job, so the threads share out the jobs instead of the images
    of each (a batch of many small groups, such as a mix of every distortion, uses every thread)."""
    map_images(len(jobs), lambda i: jobs[i]())


_SCRATCH = threading.local()
#: Largest work array ``scratch`` keeps between calls (bytes): a 512x384 float32 RGB image is 2.4 MB, a
#: 4K one 100 MB, which is allocated afresh each time rather than held by every worker thread.
SCRATCH_MAX_BYTES = 32 << 20


def scratch(key: str, shape: tuple[int, ...], dtype: type = np.float32) -> np.ndarray:
    """This thread's work array for ``key`` (uninitialised; kept for the next call with the same shape, up
    to ``SCRATCH_MAX_BYTES``): a fresh multi-megabyte array costs a page fault per 4 KiB on first touch,
    several milliseconds per image. A caller must not hand the array out, nor hold two with the same key."""
    arrays = _SCRATCH.__dict__.setdefault("arrays", {})
    a = arrays.get(key)
    if a is None or a.shape != shape or a.dtype != dtype:
        a = np.empty(shape, dtype)
        if a.nbytes <= SCRATCH_MAX_BYTES:
            arrays[key] = a
        else:
            arrays.pop(key, None)
    return a


def image_range(image: np.ndarray) -> tuple[float, float]:
    """(min, max) of a uint8 ``[H,W,3]`` image over all channels."""
    import cv2

    lo, hi, _, _ = cv2.minMaxLoc(image.reshape(image.shape[0], -1))
    return lo, hi


def image_ranges(images: np.ndarray) -> np.ndarray:
    """[min, max] of each uint8 ``[B,H,W,3]`` image over all channels, ``[B,2]`` integers (spread over the
    threads of ``map_images``: a pass over every pixel)."""
    ranges = np.empty((images.shape[0], 2), dtype=np.intp)

    def one(i: int) -> None:
        ranges[i] = image_range(images[i])

    map_images(images.shape[0], one)
    return ranges


def apply_lut(image: np.ndarray, table: np.ndarray, out: np.ndarray) -> None:
    """``out = table[image]`` for uint8 arrays (``out`` may be ``image`` itself) with one 256-entry uint8
    table: OpenCV's ``LUT``, or the SIMD byte translation of StringZilla (which Albumentations uses too)
    when it is installed; the same bytes either way."""
    sz = _stringzilla()
    if sz is None or not (image.flags.c_contiguous and out.flags.c_contiguous and table.flags.c_contiguous):
        import cv2

        cv2.LUT(image, table, dst=out)
    elif np.may_share_memory(out, image):  # the same buffer (partial overlaps are not supported)
        sz.translate(memoryview(out), memoryview(table), inplace=True)
    else:
        sz.translate(memoryview(image), memoryview(table), out=memoryview(out))


@lru_cache(maxsize=1)
def _stringzilla() -> ModuleType | None:
    """StringZilla when it is installed and its ``translate`` writes into a given buffer (``out=``)."""
    try:
        import stringzilla
    except ImportError:
        return None
    probe = bytearray(1)
    try:
        stringzilla.translate(b"\x00", bytes(range(256)), out=memoryview(probe))
    except (TypeError, ValueError):  # an older StringZilla without ``out=``
        return None
    return stringzilla


def unit_values() -> torch.Tensor:
    """The 256 uint8 values as the float path sees them: ``v / 255`` in float32."""
    return torch.arange(256, dtype=torch.uint8).float().div_(255.0)


def stretch(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """``minmax_stretch``'s arithmetic with given per-row float32 ``lo``/``hi`` (flat rows unchanged)."""
    span = hi - lo
    flat = span <= FLAT_SPAN
    return (x - torch.where(flat, 0.0, lo)).div_(torch.where(flat, 1.0, span))


@lru_cache(maxsize=1024)
def stretch_lut(lo: float, hi: float, rounding: str) -> np.ndarray | None:
    """uint8 -> uint8 table of the min-max stretch by (lo, hi) (8-bit values), with the float path's float32
    arithmetic; ``rounding`` "opencv" as ``map_uint8_images`` (convertScaleAbs) or "nearest". None when it
    is the identity (an image that already spans 0..255)."""
    import cv2

    bounds = torch.tensor([lo, hi], dtype=torch.uint8).float().div_(255.0)
    unit = stretch(unit_values(), bounds[0], bounds[1]).clamp_(0.0, 1.0)
    if rounding == "opencv":
        lut = cv2.convertScaleAbs(unit.numpy().reshape(1, 256), alpha=255.0).reshape(256)
    else:
        lut = unit.mul_(255.0).round_().to(torch.uint8).numpy()
    if np.array_equal(lut, np.arange(256)):
        return None
    lut.setflags(write=False)
    return lut


def stretch_array(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """:func:`stretch` on float32 NumPy arrays (the same float32 operations, so the same values): small
    per-sample tables are cheaper in NumPy than in torch, whose tiny ops can wake its thread pool."""
    span = hi - lo
    flat = span <= FLAT_SPAN
    return (x - np.where(flat, np.float32(0.0), lo)) / np.where(flat, np.float32(1.0), span)


def to_uint8_table(unit: np.ndarray) -> np.ndarray:
    """float32 values in [0, 1] to uint8 by rounding to nearest (half to even, as ``torch.round``)."""
    return np.rint(unit * np.float32(255.0)).clip(0.0, 255.0).astype(np.uint8)


#: ``unit_values()`` as a NumPy float32 array ``[256]``.
UNIT_VALUES = np.arange(256, dtype=np.float32) / np.float32(255.0)


def unit_tables(images: np.ndarray, wrap: bool) -> torch.Tensor:
    """The values the float path sees for each uint8 value of each image: float32 ``[B,256]``, ``v/255``
    min-max stretched per image under the wrap (its arithmetic, value for value)."""
    b = images.shape[0]
    ramp = np.broadcast_to(UNIT_VALUES, (b, 256))
    if wrap:
        ranges = image_ranges(images)
        ramp = stretch_array(ramp, UNIT_VALUES[ranges[:, :1]], UNIT_VALUES[ranges[:, 1:]])
    return torch.from_numpy(np.array(ramp, dtype=np.float32))  # a writable copy (a broadcast view is not)


# -- pointwise curves ------------------------------------------------------------------------------
def register_pointwise(*names: str) -> None:
    """Mark distortions whose ``apply`` maps every channel value independently (the same curve at every
    pixel of a sample, possibly per channel), so a 256-entry lookup table per sample is exact."""
    register_uint8_path(*names)(_pointwise_path)


def _pointwise_path(dist: Distortion, images: np.ndarray, params: Mapping[str, torch.Tensor], wrap: bool,
                    out: np.ndarray) -> None:
    """One lookup table per sample from the distortion's own ``apply`` on a ``[B,3,1,256]`` ramp; the
    tables' arithmetic around it is NumPy float32 (the float path's operations, value for value)."""
    import cv2

    b = images.shape[0]
    ramp = np.broadcast_to(UNIT_VALUES, (b, 1, 1, 256))
    if wrap:
        ranges = image_ranges(images)
        bounds = UNIT_VALUES[ranges].reshape(b, 2, 1, 1, 1)
        ramp = stretch_array(ramp, bounds[:, 0], bounds[:, 1])
    ramp_t = torch.from_numpy(np.ascontiguousarray(np.broadcast_to(ramp, (b, 3, 1, 256)), dtype=np.float32))
    curve = dist.apply(ramp_t, params).clamp_(0.0, 1.0)[:, :, 0].numpy()  # [B,3,256]
    if wrap:
        curve = stretch_array(curve, *_output_range(images, curve, ranges))
    luts = to_uint8_table(curve)  # [B,3,256]
    shared = (luts == luts[:, :1]).all(axis=(1, 2))  # one curve for all three channels: a 1-channel table
    tables = [luts[i, 0] if shared[i] else np.ascontiguousarray(luts[i].T).reshape(256, 1, 3)
              for i in range(b)]

    def one(i: int) -> None:
        if shared[i]:
            apply_lut(images[i], tables[i], out[i])
        else:
            cv2.LUT(images[i], tables[i], dst=out[i])

    map_images(b, one)


def _output_range(images: np.ndarray, curve: np.ndarray, ranges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample min and max ``[B,1,1]`` of ``curve`` [B,3,256] over the values present in each image
    (``ranges``: its [min, max] values, ``[B,2]``).

    Where a sample's three channel curves are equal and monotone over its [min, max] value range (the
    tone curves), the extremes are the curve at the image's min and max values; otherwise the image's
    channel histograms say which values are present.
    """
    import cv2

    b = curve.shape[0]
    rows = np.arange(b)
    lo_v, hi_v = ranges[:, 0], ranges[:, 1]
    at_lo, at_hi = curve[rows, 0, lo_v], curve[rows, 0, hi_v]
    lo2, hi2 = np.minimum(at_lo, at_hi), np.maximum(at_lo, at_hi)
    steps = np.diff(curve[:, 0], axis=1)  # [B,255]; step k goes from value k to k+1
    k = np.arange(255)
    outside = (k < lo_v[:, None]) | (k >= hi_v[:, None])
    rising = ((steps >= 0) | outside).all(axis=1)
    falling = ((steps <= 0) | outside).all(axis=1)
    same = (curve == curve[:, :1]).all(axis=(1, 2))
    for i in np.flatnonzero(~(same & (rising | falling))):
        present = np.stack([cv2.calcHist([images[i]], [c], None, [256], [0, 256]).reshape(-1) > 0
                            for c in range(3)])
        lo2[i], hi2[i] = curve[i][present].min(), curve[i][present].max()
    return lo2.reshape(b, 1, 1), hi2.reshape(b, 1, 1)


# -- ops that commute with the input stretch -------------------------------------------------------
def finish_float(image: np.ndarray, result: np.ndarray, wrap: bool, out: np.ndarray,
                 clip: bool = True) -> None:
    """Write the rounded 8-bit result of a step that commutes with the input stretch.

    ``result`` is float32 ``[H,W,3]`` on the 0..255 scale of the raw ``image``; it is clamped (to the
    image's own [min, max] under the wrap, as the float path clamps the stretched values to [0, 1]; to
    [0, 255] otherwise), stretched to [0, 255] by its own range under the wrap, and rounded. ``clip=False``
    skips the clamp for results that stay within the image's range (a convex combination of its pixels)
    up to float rounding.
    """
    import cv2

    if not wrap:
        if clip:
            np.clip(result, 0.0, 255.0, out=result)
        cv2.convertScaleAbs(result, dst=out)
        return
    if clip:
        np.clip(result, *image_range(image), out=result)
    lo2, hi2 = cv2.minMaxLoc(result.reshape(result.shape[0], -1))[:2]
    if hi2 - lo2 > 255.0 * FLAT_SPAN:
        lo, span = lo2, hi2 - lo2
    else:  # a flat result: the input stretch alone, where the image is not flat
        lo1, hi1 = image_range(image)
        lo, span = (lo1, hi1 - lo1) if hi1 - lo1 > 255.0 * FLAT_SPAN else (0.0, 255.0)
    cv2.convertScaleAbs(result, dst=out, alpha=255.0 / span, beta=-lo * 255.0 / span)


def finish_unit(result: np.ndarray, wrap: bool, out: np.ndarray) -> None:
    """Write the rounded 8-bit form of a float32 ``[H,W,3]`` or 2-D step result on the [0, 1] scale to
    ``out`` of its shape (``result`` is overwritten): clamped to [0, 1] as the float path clamps, and under
    the wrap stretched to [0, 1] by its own range (a flat result is left as it is, as ``minmax_stretch``
    leaves it)."""
    import cv2

    lo, hi = cv2.minMaxLoc(result.reshape(result.shape[0], -1))[:2]
    if lo < 0.0:  # below-zero values to 0; values above 1 saturate in the 8-bit conversion (the clamp)
        cv2.threshold(result, 0.0, 0.0, cv2.THRESH_TOZERO, dst=result)
    lo, hi = min(max(lo, 0.0), 1.0), min(max(hi, 0.0), 1.0)  # the range of the clamped result
    if wrap and hi - lo > FLAT_SPAN:
        alpha, beta = 255.0 / (hi - lo), -lo * 255.0 / (hi - lo)
    else:
        alpha, beta = 255.0, 0.0
    cv2.convertScaleAbs(result, dst=out, alpha=alpha, beta=beta)


#: OpenCV correlates float32 images by DFT when the kernel has this many taps or more (its
#: ``dftFilter2D`` rule on SSE3 machines), which is slower than direct sums for kernels up to ~17x17.
DFT_TAPS = 130


def filter2d_direct(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``cv2.filter2D`` of a float32 image with an odd float32 kernel (replicate border) by direct sums:
    a kernel of ``DFT_TAPS`` taps or more is cut into bands of rows, each below OpenCV's DFT rule, run on
    the image padded by replication (each band's window then never leaves the padded image) and added:
    the same sum in another order, so the same values up to float32 rounding."""
    import cv2

    kh, kw = kernel.shape
    rows = max(1, (DFT_TAPS - 1) // kw)
    if kh * kw < DFT_TAPS:
        return cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REPLICATE)
    h, w = image.shape[:2]
    r, c = kh // 2, kw // 2
    padded = cv2.copyMakeBorder(image, r, r, c, c, cv2.BORDER_REPLICATE)
    out = None
    for top in range(0, kh, rows):
        band = np.ascontiguousarray(kernel[top:top + rows])
        part = cv2.filter2D(padded, -1, band, anchor=(0, 0), borderType=cv2.BORDER_REPLICATE)[top:top + h, :w]
        out = part.copy() if out is None else cv2.add(out, part, dst=out)
    return out


def filter_uint8(images: np.ndarray, kernels: list[np.ndarray], separable: bool, wrap: bool,
                 out: np.ndarray) -> None:
    """Correlate image i with ``kernels[i]`` (replicate border; 1-D kernels along both axes when
    ``separable``) in float32 and finish it. Kernels must have unit sum (it commutes with the stretch);
    non-negative ones make each output a convex combination of the image's pixels, with no clamp."""
    import cv2

    def one(i: int) -> None:
        k = np.asarray(kernels[i], dtype=np.float32)
        if separable:
            f = cv2.sepFilter2D(images[i], cv2.CV_32F, k, k, borderType=cv2.BORDER_REPLICATE)
        else:  # float32 in: OpenCV's 8-bit-to-float 2-D filter is about 3x slower than converting first
            f = filter2d_direct(images[i].astype(np.float32), k)
        finish_float(images[i], f, wrap, out[i], clip=bool((k < 0).any()))

    map_images(images.shape[0], one)


#: Distortions whose ``apply`` is one curve per sample and channel (tone curves, offsets); each is
#: checked against its float path in tests/test_distortions_fastpath.py.
register_pointwise("darken", "contrast_change", "nonlinear_contrast_change")
