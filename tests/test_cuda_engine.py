"""CUDA checks of the whole engine (they skip without a GPU; ``scripts/device-check`` runs ``-m cuda``):
blur, colour, JPEG / nvJPEG, JPEG2000, the extra group, ``apply_chains`` and the device pipeline of
``synthiqa generate``. Each asserts batch independence on the device, agreement with the CPU where the
op is deterministic, and the records (parameters are drawn on the CPU, so they match exactly)."""

from __future__ import annotations

import warnings

import pytest
import torch

from synthiqa.distortions import apply_chains, get_distortion, list_distortions, parse_chain
from synthiqa.distortions.base import params_to
from synthiqa.distortions.rng import as_seed_tensor

pytestmark = pytest.mark.cuda

BLUR_COLOR = [("gaussian_blur", "kadid"), ("lens_blur", "kadid"), ("motion_blur", "kadid"),
              ("color_diffusion", "kadid"), ("color_shift", "kadid"), ("color_saturation_hsv", "kadid"),
              ("color_saturation_lab", "kadid"), ("color_diffusion", "arniqa"), ("color_shift", "arniqa"),
              ("color_saturation_lab", "arniqa")]
EXTRA = [(n, "arniqa") for n in ("rain", "fog", "lens_distortion", "chromatic_aberration")]
#: Ops whose CUDA output should equal the CPU's up to float32 rounding (no device random field, no codec
#: difference); truncation to the 1/255 grid (Lab ops) can flip one step.
DETERMINISTIC = {"gaussian_blur", "lens_blur", "motion_blur", "color_diffusion", "color_shift",
                 "color_saturation_hsv", "color_saturation_lab", "lens_distortion", "chromatic_aberration",
                 "jpeg2000"}


def _images(n: int, h: int = 64, w: int = 80) -> torch.Tensor:
    g = torch.Generator().manual_seed(n)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = torch.stack([xx, yy, (xx * yy).sqrt()]).clamp(0.05, 0.95)
    x = base + 0.08 * torch.rand(n, 3, h, w, generator=g)
    x[:, :, h // 4:h // 2, w // 4:w // 2] = 0.9  # a sharp edge
    return x.clamp(0, 1)


def _apply(name: str, profile: str, x: torch.Tensor, levels, seeds) -> torch.Tensor:
    d = get_distortion(name, profile)
    params = d.sample(torch.tensor(levels, dtype=torch.float64), torch.tensor(seeds))
    return d.apply(x, params_to(params, x.device)).clamp(0, 1)


def _close(a: torch.Tensor, b: torch.Tensor, steps: float = 1.0, share: float = 1e-3) -> bool:
    """All but ``share`` of the values within ``steps``/255 (plus float rounding), none beyond 2 steps
    more."""
    d = (a.float().cpu() - b.float().cpu()).abs()
    return bool((d > steps / 255 + 1e-4).float().mean() <= share and d.max() <= (steps + 2) / 255)


@pytest.mark.parametrize(("name", "profile"), BLUR_COLOR + EXTRA + [("jpeg2000", "kadid"),
                                                                     ("jpeg2000", "arniqa")])
def test_cuda_op_is_batch_independent_and_matches_the_cpu(name, profile):
    x = _images(3).cuda()
    full = _apply(name, profile, x, [1.0, 3.0, 5.0], [1, 2, 3])
    part = _apply(name, profile, x[1:2], [3.0], [2])
    assert full.device.type == "cuda" and full.shape == x.shape
    assert torch.equal(part[0], full[1])
    if name in DETERMINISTIC:
        cpu = _apply(name, profile, x.cpu(), [1.0, 3.0, 5.0], [1, 2, 3])
        assert _close(full, cpu), (full.cpu() - cpu).abs().max().item() * 255


def test_cuda_color_quantization_methods():
    d = get_distortion("color_quantization", "kadid")
    x = _images(2).cuda()
    params = d.sample(torch.tensor([2.0, 5.0]), torch.tensor([1, 2]))
    wu = d.apply(x, params_to(params, "cuda"))
    assert wu.device.type == "cuda" and torch.equal(wu.cpu(), d.apply(x.cpu(), params_to(params, "cpu")))
    from synthiqa.distortions import LevelTable
    from synthiqa.distortions.color import ColorQuantization

    km = ColorQuantization("kadid", LevelTable(d.table.params, {"method": "kmeans"}))
    out = km.apply(x, params_to(params, "cuda"))
    cpu = km.apply(x.cpu(), params_to(params, "cpu"))
    assert out.device.type == "cuda" and (out.cpu() - cpu).abs().max() <= 1 / 255 + 1e-6
    for i, n in enumerate((48, 8)):
        assert torch.unique(out[i].flatten(1), dim=1).shape[1] <= n


def test_cuda_nvjpeg_groups_by_quality_is_batch_independent_and_close_to_libjpeg():
    from synthiqa.distortions.compression import _libjpeg_roundtrip, batched_jpeg_roundtrip

    x = _images(4, 96, 128).cuda()
    qualities = [24, 7, 24, 43]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback: nvJPEG itself ran
        out = batched_jpeg_roundtrip(x, qualities)
        alone = batched_jpeg_roundtrip(x[2:3], [24])
    assert out.device.type == "cuda" and torch.equal(alone[0], out[2])
    ref = _libjpeg_roundtrip(x.cpu(), qualities)
    mse = (out.cpu() - ref).square().mean(dim=(1, 2, 3))
    psnr = 10 * torch.log10(1 / mse.clamp_min(1e-12))
    assert (psnr > 28).all(), psnr  # 4:4:4 chroma against 4:2:0: close, not equal
    jpeg = get_distortion("jpeg", "kadid")
    params = jpeg.sample(torch.tensor([1.0, 3.0, 4.0, 5.0]), torch.arange(4))
    default = jpeg.apply(x, params_to(params, "cuda"))
    assert default.device.type == "cuda"


def test_cuda_apply_chains_float_and_uint8_match_records_and_are_batch_independent():
    names = list_distortions("kadid")
    chains = [parse_chain(f"{names[i % len(names)]}:{1 + i % 5}>{names[(7 * i + 3) % len(names)]}:2",
                          "kadid") for i in range(12)]
    x = _images(1).expand(12, -1, -1, -1).contiguous()
    out, rec = apply_chains(x.cuda(), chains, 5, "kadid")
    cpu_out, cpu_rec = apply_chains(x, chains, 5, "kadid")
    assert out.device.type == "cuda" and rec == cpu_rec
    seeds = as_seed_tensor(5, 12)
    part, part_rec = apply_chains(x[3:5].cuda(), chains[3:5], seeds[3:5], "kadid")
    assert torch.equal(part, out[3:5]) and part_rec == rec[3:5]
    u8 = (x * 255).round().to(torch.uint8).cuda()
    out_u8, rec_u8 = apply_chains(u8, chains, 5, "kadid", out_dtype=torch.uint8)
    assert out_u8.dtype == torch.uint8 and out_u8.device.type == "cuda" and rec_u8 == cpu_rec


def test_cuda_host_syncs_do_not_grow_with_the_batch():
    """torch's sync-debug mode warns at each host synchronisation; the count per ``apply_chains`` call
    must not depend on the number of samples (no per-sample ``.item()``, ``.cpu()`` or blocking copy)."""
    chains = [parse_chain(c, "kadid") for c in ("gaussian_blur:3", "lens_blur:2", "motion_blur:4",
                                                 "color_shift:2", "white_noise:3", "pixelate:4",
                                                 "quantization:3", "color_block:2", "jitter:2")]

    def syncs(repeat: int) -> int:
        x = _images(1).expand(len(chains) * repeat, -1, -1, -1).contiguous().cuda()
        seeds = torch.arange(len(chains)).repeat(repeat)
        apply_chains(x, chains * repeat, seeds, "kadid")  # warm-up: lazy initialisation syncs
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                apply_chains(x, chains * repeat, seeds, "kadid")
        finally:
            torch.cuda.set_sync_debug_mode("default")
        return sum("synchroniz" in str(w.message) for w in caught)

    assert syncs(1) == syncs(4)


def test_cuda_generate_matches_the_cpu_run_per_distortion(tmp_path):
    """The device pipeline of ``generate`` (one process, batches on CUDA) against the CPU workers, by the
    rules of ``scripts/device-check``."""
    from synthiqa.benchmarks.device_check import compare_runs
    from synthiqa.datasets.generate import GenerateConfig, generate

    for device in ("cuda", "cpu"):
        generate(GenerateConfig(out=str(tmp_path / device), profile="kadid", mode="grid", max_side=64,
                                labels=("level",), device=device, workers=2), progress=False)
    result = compare_runs(tmp_path / "cuda", tmp_path / "cpu")
    assert result["rows"] and not result["missing"] and result["failed"] == [], result["rows"]
