"""The GPU paths' structure, checked on the CPU: every op's float path runs a batch with per-sample
parameters without a Python loop of torch work over samples, reads no device parameter back to the host,
syncs with the host a number of times that does not grow with the batch, and the batched nvJPEG wrapper
(one encode call per quality, one host copy, one decode call, fallbacks) runs with torchvision's CPU
encoder."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from synthiqa.distortions import (
    apply_chains,
    compression,
    filters,
    get_distortion,
    list_distortions,
    parse_chain,
    rng,
)
from synthiqa.distortions.base import DeviceParams, host_param, params_to

pytestmark = pytest.mark.usefixtures("one_thread")

CASES = sorted({(n, p) for p in ("kadid", "arniqa") for n in list_distortions(p, include_extra=True)})
#: Per-image CPU codecs: the float path hands each image to a library (libjpeg, OpenJPEG, Pillow's
#: quantizer) one at a time by nature (``color.map_uint8_images``).
PER_IMAGE_CODECS = {"jpeg", "jpeg2000", "color_quantization"}


def _images(n: int, h: int = 40, w: int = 48) -> torch.Tensor:
    g = torch.Generator().manual_seed(n)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = torch.stack([xx, yy, (xx * yy).sqrt()]).clamp(0.05, 0.95)
    return (base + 0.1 * torch.rand(n, 3, h, w, generator=g)).clamp(0, 1)


class _CountTorch(TorchFunctionMode):
    """Counts torch function calls, except inside ``rng._field`` (the per-sample generator launches that
    per-sample seeding needs), which counts as one call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.paused = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if not self.paused:
            self.calls += 1
        return func(*args, **(kwargs or {}))


def _count_calls(monkeypatch, name: str, profile: str, repeat: int) -> int:
    """Torch calls of one float-path ``apply`` on two samples with different levels and seeds, the pair
    repeated ``repeat`` times (so the distinct parameters, kernels included, are the same)."""
    dist = get_distortion(name, profile)
    levels = torch.tensor([2.0, 5.0] * repeat, dtype=torch.float64)
    params = dist.sample(levels, torch.tensor([3, 8] * repeat))
    params = params_to(params, "cpu")
    x = _images(1).expand(2 * repeat, -1, -1, -1).contiguous()
    mode = _CountTorch()
    field = rng._field

    def paused_field(*args, **kwargs):
        mode.calls += 1
        mode.paused += 1
        try:
            return field(*args, **kwargs)
        finally:
            mode.paused -= 1

    monkeypatch.setattr(rng, "_field", paused_field)
    monkeypatch.setattr(filters, "_pick_backend", lambda images, backend: "torch")  # the GPU backend
    with mode:
        dist.apply(x, params)
    return mode.calls


@pytest.mark.parametrize(("name", "profile"), CASES)
def test_float_path_has_no_python_loop_over_samples(monkeypatch, name, profile):
    assert _count_calls(monkeypatch, name, profile, 1) == _count_calls(monkeypatch, name, profile, 4)


def test_only_the_cpu_codecs_go_image_by_image(monkeypatch):
    from synthiqa.distortions import color

    seen = set()
    real = color.map_uint8_images

    def spy(images, fn, bgr=False):
        seen.add(current)
        return real(images, fn, bgr)

    for module in (color, compression):
        monkeypatch.setattr(module, "map_uint8_images", spy)
    for current, profile in CASES:
        dist = get_distortion(current, profile)
        dist.apply(_images(2), params_to(dist.sample(torch.tensor([2.0, 4.0]), torch.tensor([1, 2])), "cpu"))
    assert seen == PER_IMAGE_CODECS


#: Tensor methods that read values to the host (a blocking copy on CUDA).
HOST_READS = {"item", "tolist", "numpy", "cpu", "__bool__", "__int__", "__float__", "__index__"}


class _Taint(TorchFunctionMode):
    """Follows the values of watched tensors through every torch call (anything computed from them is
    watched too) and records each host read of a watched value: on a GPU those are the parameters'
    device round trips."""

    def __init__(self, watched):
        super().__init__()
        self.keep = list(watched)
        self.ids = {id(t) for t in self.keep}
        self.reads: list[str] = []

    def _tainted(self, obj) -> bool:
        if isinstance(obj, torch.Tensor):
            return id(obj) in self.ids
        if isinstance(obj, (list, tuple)):
            return any(self._tainted(o) for o in obj)
        if isinstance(obj, dict):
            return any(self._tainted(o) for o in obj.values())
        return False

    def _mark(self, obj) -> None:
        if isinstance(obj, torch.Tensor):
            self.keep.append(obj)
            self.ids.add(id(obj))
        elif isinstance(obj, (list, tuple)):
            for o in obj:
                self._mark(o)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        tainted = self._tainted(args) or self._tainted(kwargs)
        # the literal "cpu" is the host; a torch.device (the images' own, here the CPU) is the device
        to_cpu = name == "to" and any(isinstance(a, str) and a == "cpu"
                                      for a in (*args[1:], kwargs.get("device")))
        if tainted and (name in HOST_READS or to_cpu):
            self.reads.append(name)
        out = func(*args, **kwargs)
        if tainted:
            self._mark(out)
        return out


@pytest.mark.parametrize(("name", "profile"), CASES)
def test_ops_never_read_device_parameters_back(monkeypatch, name, profile):
    """``params_to`` keeps the CPU originals (``host_param``): an op that needs Python values (kernel
    sizes, counts, qualities) reads those, never the device copies or anything computed from them (a
    blocking round trip on CUDA)."""
    dist = get_distortion(name, profile)
    params = params_to(dist.sample(torch.tensor([2.0, 4.5]), torch.tensor([5, 6])), "cpu")
    monkeypatch.setattr(filters, "_pick_backend", lambda images, backend: "torch")  # the GPU backend
    mode = _Taint(params.values())
    with mode:
        dist.apply(_images(2), params)
    assert mode.reads == []


class _ReadCounter:
    """Counts every host read of any tensor (the methods of ``HOST_READS``)."""

    def __init__(self, monkeypatch):
        self.total = 0
        for m in HOST_READS:
            real = getattr(torch.Tensor, m)
            monkeypatch.setattr(torch.Tensor, m, self._wrap(real))

    def _wrap(self, real):
        def read(t, *args, **kwargs):
            self.total += 1
            return real(t, *args, **kwargs)
        return read


def test_host_reads_of_apply_chains_do_not_grow_with_the_batch(monkeypatch):
    chains = [parse_chain(c, "kadid") for c in ("gaussian_blur:3>jpeg:2", "white_noise:4", "color_shift:2",
                                                 "quantization:3>lens_blur:2", "pixelate:4>denoise:1")]

    def reads(repeat: int) -> int:
        counter = _ReadCounter(monkeypatch)
        x = _images(1).expand(len(chains) * repeat, -1, -1, -1).contiguous()
        seeds = torch.arange(len(chains)).repeat(repeat)
        apply_chains(x, chains * repeat, seeds, "kadid")
        monkeypatch.undo()
        return counter.total

    small, large = reads(1), reads(4)
    assert small == large, (small, large)


def test_params_to_packs_one_buffer_per_dtype_and_keeps_the_host_values():
    dist = get_distortion("color_block", "kadid")
    params = dist.sample(torch.tensor([1.0, 3.0, 5.0]), torch.tensor([1, 2, 3]))
    moved = params_to(params, "cpu")
    assert isinstance(moved, DeviceParams) and list(moved) == list(params)
    for k, v in params.items():
        assert moved[k].dtype == (torch.float32 if v.is_floating_point() else v.dtype)
        assert torch.equal(host_param(moved, k), moved[k])
    assert torch.equal(host_param({"a": torch.ones(2)}, "a"), torch.ones(2))


# -- the batched JPEG wrapper ------------------------------------------------------------------------------
class _Counting(compression.TorchvisionJpeg):
    def __init__(self, fail_encode: bool = False, fail_decode_once: bool = False):
        self.encodes: list[tuple[int, int]] = []
        self.decodes: list[tuple[int, str]] = []
        self.fail_encode, self.fail_decode_once = fail_encode, fail_decode_once

    def encode(self, images, quality):
        if self.fail_encode:
            raise RuntimeError("no nvJPEG in this build")
        self.encodes.append((len(images), quality))
        return super().encode(images, quality)

    def decode(self, data, device):
        self.decodes.append((len(data), str(device)))
        if self.fail_decode_once:
            self.fail_decode_once = False
            raise RuntimeError("decoder unavailable")
        return super().decode(data, device)


def test_batched_jpeg_calls_encode_once_per_quality_and_decode_once():
    x = _images(5, 48, 64)
    qualities = [24, 7, 24, 43, 7]
    backend = _Counting()
    out = compression.batched_jpeg_roundtrip(x, qualities, backend)
    assert sorted(backend.encodes) == [(1, 43), (2, 7), (2, 24)] and backend.decodes == [(5, "cpu")]
    assert torch.equal(out, compression._libjpeg_roundtrip(x, qualities))  # torchvision's CPU codec: libjpeg
    single = compression.batched_jpeg_roundtrip(x[3:4], [43], _Counting())
    assert torch.equal(single[0], out[3])  # batch mates change nothing


def test_batched_jpeg_fallbacks_warn_once(monkeypatch):
    monkeypatch.setattr(compression, "_FALLBACK_WARNED", set())
    x = _images(3, 48, 64)
    reference = compression._libjpeg_roundtrip(x, [24, 7, 24])
    with pytest.warns(RuntimeWarning, match="encoder failed"):
        assert torch.equal(compression.batched_jpeg_roundtrip(x, [24, 7, 24], _Counting(fail_encode=True)),
                           reference)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compression.batched_jpeg_roundtrip(x, [24, 7, 24], _Counting(fail_encode=True))  # warned already
    backend = _Counting(fail_decode_once=True)
    with pytest.warns(RuntimeWarning, match="decoder failed"):
        out = compression.batched_jpeg_roundtrip(x, [24, 7, 24], backend)
    assert torch.equal(out, reference) and backend.decodes == [(3, "cpu"), (3, "cpu")]


def test_gather_to_host_splits_the_streams_back():
    parts = [torch.arange(n, dtype=torch.uint8) for n in (3, 0, 5)]
    assert [p.tolist() for p in compression.gather_to_host(parts)] == [p.tolist() for p in parts]
    assert compression.gather_to_host([]) == []


def test_kernel_banks_are_cached_per_device_for_read_only_kernels(monkeypatch):
    from synthiqa.distortions.filters import _BANKS, filter2d, gaussian_kernel1d, separable_filter

    monkeypatch.setattr(filters, "_BANKS", type(_BANKS)())
    x = _images(2)
    kernels = [gaussian_kernel1d(1.0), gaussian_kernel1d(2.0)]
    first = separable_filter(x, kernels, backend="torch")
    assert len(filters._BANKS) == 2  # rows and columns
    assert torch.equal(separable_filter(x, kernels, backend="torch"), first) and len(filters._BANKS) == 2
    assert torch.allclose(first, separable_filter(x, kernels, backend="opencv"), atol=1e-5)
    writable = [np.ones((3, 3)) / 9, np.ones((3, 3)) / 9]
    filter2d(x, writable, backend="torch")
    assert len(filters._BANKS) == 2  # writable kernels could change: not cached
