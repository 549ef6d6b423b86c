"""Throughput of the distortion engine against Albumentations and Kornia, op by op, in one run.

For each ``kadid`` distortion at one level (default 4, where no KADID amount is zero), images/s of:
- synthiqa: ``apply_distortion`` (sampling, checks, KADID's min-max wrap and records included) on a
  ``[B,3,H,W]`` batch on the chosen device. ``input="uint8"`` (the default on the CPU) hands it the very
  uint8 ``HxWx3`` arrays Albumentations gets, stacked (a channels-last uint8 tensor, no copy), and asks
  for uint8 output as Albumentations returns, so the CPU fast path runs where an op has one (every
  conversion is timed); ``input="float"`` (the default on CUDA) times the float path on a float batch;
- Albumentations (optional extra ``bench``): its nearest op with the same parameter, CPU, one uint8
  ``HxWx3`` NumPy image at a time;
- Kornia: its nearest batched op on the same device and float batch.
Each timing is the median of ``repeats`` runs after one warm-up run.

Peer ops are of two kinds. An *equivalent* op computes the same distortion with the same parameter
(Gaussian blur, JPEG, salt-and-pepper, ...): only these enter the headline geometric mean. An *approximate
stand-in* computes a related but different, usually cheaper, distortion (a gamma curve for KADID's
Lab-space brighten, power-of-two posterisation for multi-Otsu quantization, ...): it is timed and shown
with its ratio marked ``~`` and enters a second geometric mean over all mapped ops, so nothing is hidden.
"""

from __future__ import annotations

import json
import math
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthiqa.atomic import atomic_write_text
from synthiqa.benchmarks import albumentations_peer
from synthiqa.benchmarks.albumentations_peer import (
    Params,
    _gamma_for,
    _odd,
    _pixelate_scale,
    albumentations_ops,
)
from synthiqa.datasets.builtin import builtin_reference
from synthiqa.devices import resolve_device
from synthiqa.distortions import ChainOp, apply_chains, apply_distortion, get_distortion, list_distortions
from synthiqa.distortions.base import NUM_LEVELS
from synthiqa.errors import ConfigError


@dataclass(frozen=True)
class SpeedConfig:
    """What to measure. ``size`` is (width, height) in px; ``level`` in 1..5; ``threads`` caps torch's and
    OpenCV's CPU threads during the run (None: the libraries' defaults); ``input`` is synthiqa's input
    and output dtype: ``uint8``, ``float`` or ``auto``; ``peer_python`` is another interpreter whose
    Albumentations (e.g. AlbumentationsX in its own virtual environment) is timed as a second peer."""

    device: str = "cpu"
    size: tuple[int, int] = (512, 384)
    batch: int = 32
    repeats: int = 3
    level: int = 4
    only: tuple[str, ...] = ()
    seed: int = 0
    threads: int | None = None
    input: str = "auto"
    peer_python: str | None = None

    def input_dtype(self) -> str:
        """``uint8`` or ``float``: what synthiqa is fed (``auto``: uint8 on the CPU, float on CUDA)."""
        if self.input == "auto":
            return "uint8" if self.device == "cpu" else "float"
        return self.input


@dataclass
class SpeedRow:
    """One distortion's throughputs (images/s; None where the peer has no equivalent or is missing)."""

    name: str
    synthiqa: float
    albumentations: float | None = None
    albumentations_op: str | None = None
    albumentations_equivalent: bool = False
    kornia: float | None = None
    kornia_op: str | None = None
    kornia_equivalent: bool = False
    albumentationsx: float | None = None

    @property
    def albumentationsx_equivalent(self) -> bool:
        """AlbumentationsX runs Albumentations' ops, so the same ops are equivalent, whether or not
        Albumentations itself is installed here."""
        return self.albumentationsx is not None and self.name not in ALBUMENTATIONS_APPROXIMATE

    @property
    def ratio_albumentationsx(self) -> float | None:
        return self.synthiqa / self.albumentationsx if self.albumentationsx else None

    @property
    def ratio_albumentations(self) -> float | None:
        return self.synthiqa / self.albumentations if self.albumentations else None

    @property
    def ratio_kornia(self) -> float | None:
        return self.synthiqa / self.kornia if self.kornia else None


@dataclass
class SpeedResult:
    config: SpeedConfig
    rows: list[SpeedRow]
    kadid_mix: float | None
    environment: dict[str, Any] = field(default_factory=dict)

    def geomean_ratio(self, peer: str, equivalent_only: bool = True) -> float | None:
        """Geometric mean of synthiqa/peer over the ops the peer has an equivalent of (or, with
        ``equivalent_only=False``, over every op with a peer, approximate stand-ins included)."""
        ratios = [getattr(r, f"ratio_{peer}") for r in self.rows
                  if not equivalent_only or getattr(r, f"{peer}_equivalent")]
        ratios = [x for x in ratios if x]
        return math.exp(sum(math.log(x) for x in ratios) / len(ratios)) if ratios else None

    def count(self, peer: str, equivalent_only: bool = True) -> int:
        """Number of ops in :meth:`geomean_ratio`'s mean."""
        return sum(1 for r in self.rows if getattr(r, f"ratio_{peer}")
                   and (not equivalent_only or getattr(r, f"{peer}_equivalent")))

    def to_dict(self) -> dict[str, Any]:
        rows = []
        for r in self.rows:
            d = asdict(r)
            d["ratio_albumentations"], d["ratio_kornia"] = r.ratio_albumentations, r.ratio_kornia
            d["ratio_albumentationsx"] = r.ratio_albumentationsx
            rows.append(d)
        return {
            "config": asdict(self.config), "environment": self.environment, "unit": "images/s", "rows": rows,
            "geomean_ratio_albumentations": self.geomean_ratio("albumentations"),
            "geomean_ratio_kornia": self.geomean_ratio("kornia"),
            "geomean_ratio_albumentations_all": self.geomean_ratio("albumentations", False),
            "geomean_ratio_kornia_all": self.geomean_ratio("kornia", False),
            "geomean_ratio_albumentationsx": self.geomean_ratio("albumentationsx"),
            "kadid_mix_without_jpeg2000": self.kadid_mix,
        }


# -- peer ops ------------------------------------------------------------------------------------------
#: Ops whose Albumentations peer is an approximate stand-in, not the same distortion, and why.
ALBUMENTATIONS_APPROXIMATE = {
    "lens_blur": "Defocus adds an alias blur to the disk kernel",
    "color_saturation_hsv": "ColorJitter blends with grey instead of scaling HSV saturation",
    "brighten": "a gamma curve on RGB instead of KADID's curve on RGB and Lab L*",
    "darken": "a gamma curve instead of KADID's quadratic curve",
    "quantization": "power-of-two posterisation instead of multi-Otsu thresholds",
    "high_sharpen": "unsharp mask on RGB instead of on Lab L*",
    "contrast_change": "a linear contrast scale instead of KADID's cubic spline",
}
#: Ops whose Kornia peer is an approximate stand-in, and why.
KORNIA_APPROXIMATE = {
    "jpeg": "a differentiable approximation of the codec",
    "brighten": "a gamma curve on RGB instead of KADID's curve on RGB and Lab L*",
    "darken": "a gamma curve instead of KADID's quadratic curve",
    "quantization": "power-of-two posterisation instead of multi-Otsu thresholds",
    "high_sharpen": "unsharp mask on RGB with a fixed amount instead of on Lab L*",
    "contrast_change": "a linear contrast scale instead of KADID's cubic spline",
}


def _kornia_ops() -> dict[str, tuple[str, Callable[[torch.Tensor, Params], torch.Tensor]]]:
    """distortion -> (label, batched function of the float batch and the level's parameters)."""
    import kornia
    from kornia import enhance, filters

    def per_sample(x: torch.Tensor, v: float) -> torch.Tensor:
        return torch.full((x.shape[0],), float(v), device=x.device)

    def gaussian(x: torch.Tensor, p: Params) -> torch.Tensor:
        k = 2 * math.ceil(2 * p["sigma"]) + 1
        return filters.gaussian_blur2d(x, (k, k), per_sample(x, p["sigma"]).unsqueeze(1).expand(-1, 2),
                                       border_type="replicate")

    def motion(x: torch.Tensor, p: Params) -> torch.Tensor:
        angle = torch.linspace(0, 180, x.shape[0], device=x.device)
        return filters.motion_blur(x, _odd(p["length"]), angle, per_sample(x, 0.0), border_type="replicate")

    def pixelate(x: torch.Tensor, p: Params) -> torch.Tensor:
        h, w = x.shape[-2:]
        z = _pixelate_scale(p)
        small = kornia.geometry.transform.resize(x, (int(z * h), int(z * w)), interpolation="nearest")
        return kornia.geometry.transform.resize(small, (h, w), interpolation="nearest")

    def unsharp(x: torch.Tensor, p: Params) -> torch.Tensor:
        return filters.unsharp_mask(x, (13, 13), (3.0, 3.0), border_type="replicate")

    noise_cache: dict[float, Any] = {}

    def gauss_noise(x: torch.Tensor, p: Params) -> torch.Tensor:
        std = math.sqrt(p["variance"])
        aug = noise_cache.setdefault(std, kornia.augmentation.RandomGaussianNoise(std=std, p=1.0))
        return aug(x).clamp(0, 1)

    def salt_pepper(x: torch.Tensor, p: Params) -> torch.Tensor:
        key = -p["density"]
        aug = noise_cache.setdefault(key, kornia.augmentation.RandomSaltAndPepperNoise(
            amount=(p["density"],) * 2, salt_vs_pepper=(0.5, 0.5), p=1.0))
        return aug(x)

    return {
        "gaussian_blur": ("filters.gaussian_blur2d(per-sample sigma)", gaussian),
        "motion_blur": ("filters.motion_blur(odd length, per-sample angle)", motion),
        "color_saturation_hsv": ("enhance.adjust_saturation (clamps S)",
                                 lambda x, p: enhance.adjust_saturation(x, per_sample(x, p["factor"]))),
        "jpeg": ("enhance.jpeg_codec_differentiable",
                 lambda x, p: enhance.jpeg_codec_differentiable(x, per_sample(x, p["quality"]))),
        "white_noise": ("RandomGaussianNoise(std) + clamp", gauss_noise),
        "impulse_noise": ("RandomSaltAndPepperNoise (per pixel)", salt_pepper),
        "brighten": ("enhance.adjust_gamma(same f(0.5))", lambda x, p: enhance.adjust_gamma(
            x, per_sample(x, _gamma_for(0.5 + 0.5 * p["amount"])))),
        "darken": ("enhance.adjust_gamma(same f(0.5))", lambda x, p: enhance.adjust_gamma(
            x, per_sample(x, _gamma_for(0.5 - 0.5 * p["amount"])))),
        "mean_shift": ("enhance.adjust_brightness(offset)", lambda x, p: enhance.adjust_brightness(
            x, per_sample(x, p["offset"]))),
        "pixelate": ("geometry.resize nearest down + up", pixelate),
        "quantization": ("enhance.posterize(round(log2 N))", lambda x, p: enhance.posterize(
            x, max(1, round(math.log2(p["levels"]))))),
        "high_sharpen": ("filters.unsharp_mask(13, sigma 3)", unsharp),
        "contrast_change": ("enhance.adjust_contrast(1+amount)",
                            lambda x, p: enhance.adjust_contrast(x, per_sample(x, 1 + p["amount"]))),
    }


# -- timing -------------------------------------------------------------------------------------------
def _median_seconds(fn: Callable[[], Any], repeats: int, device: torch.device) -> float:
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()  # warm-up: kernel caches, lazy imports, allocator
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _inputs(config: SpeedConfig, device: torch.device) -> tuple[torch.Tensor, list[np.ndarray]]:
    """The built-in photograph resized to the configured size: float batch on device, uint8 HWC list."""

    w, h = config.size
    ref = torch.from_numpy(np.array(builtin_reference("astronaut"))).permute(2, 0, 1).float() / 255
    img = torch.nn.functional.interpolate(ref[None], size=(h, w), mode="bilinear", antialias=True,
                                          align_corners=False).clamp(0, 1)
    x = img.expand(config.batch, -1, -1, -1).contiguous().to(device)
    u8 = (img[0] * 255).round().byte().permute(1, 2, 0).numpy()
    return x, [u8.copy() for _ in range(config.batch)]


def peer_availability() -> dict[str, str | None]:
    """Library -> version, or None when it cannot be imported."""
    out: dict[str, str | None] = {}
    for lib in ("albumentations", "kornia"):
        try:
            out[lib] = __import__(lib).__version__
        except ImportError:
            out[lib] = None
    return out


def run_speed_benchmark(config: SpeedConfig, progress: Callable[[str], None] | None = None) -> SpeedResult:
    """Measure every requested ``kadid`` distortion, its peers, and the whole kadid mix (no JPEG2000)."""
    resolve_device(config.device)  # one-line error for an unknown device or CUDA without a GPU
    if not 1 <= config.level <= NUM_LEVELS:
        raise ConfigError(f"--level must lie in 1..{NUM_LEVELS}, got {config.level}")
    if config.batch < 1 or config.repeats < 1:
        raise ConfigError("--batch and --repeats must be at least 1")
    if config.input not in ("auto", "uint8", "float"):
        raise ConfigError(f"--input must be auto, uint8 or float, got {config.input!r}")
    if config.threads is not None and config.threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {config.threads}")
    if config.peer_python is not None and not Path(config.peer_python).is_file():
        raise ConfigError(f"--peer-python {config.peer_python}: no such interpreter")
    import cv2

    previous = torch.get_num_threads(), cv2.getNumThreads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
        cv2.setNumThreads(config.threads)
    try:
        return _run(config, progress)
    finally:
        torch.set_num_threads(previous[0])
        cv2.setNumThreads(previous[1])


def _run(config: SpeedConfig, progress: Callable[[str], None] | None = None) -> SpeedResult:
    device = torch.device(config.device)
    names = list_distortions("kadid")
    if config.only:
        names = [get_distortion(n, "kadid").name for n in config.only]
    versions = peer_availability()
    alb_ops = albumentations_ops() if versions["albumentations"] else {}
    kor_ops = _kornia_ops() if versions["kornia"] else {}
    x, u8_images = _inputs(config, device)
    seeds = list(range(config.seed, config.seed + config.batch))
    if config.input_dtype() == "uint8":  # the arrays Albumentations gets, as one channels-last tensor
        ours = torch.from_numpy(np.stack(u8_images)).permute(0, 3, 1, 2).to(device)
        out_dtype = torch.uint8
    else:
        ours, out_dtype = x, torch.float32
    rows = []
    alb_params: dict[str, Params] = {}
    with torch.inference_mode():
        for name in names:
            if progress:
                progress(name)
            dist = get_distortion(name, "kadid")
            p = {k: float(v[config.level - 1]) for k, v in dist.table.params.items()}
            alb_params[name] = p
            t = _median_seconds(lambda n=name: apply_distortion(ours, n, float(config.level), seeds, "kadid",
                                                                out_dtype), config.repeats, device)
            row = SpeedRow(name, config.batch / t)
            if name in alb_ops:
                label, make = alb_ops[name]
                transform = make(p)
                t = _median_seconds(lambda tr=transform: [tr(image=im)["image"] for im in u8_images],
                                    config.repeats, torch.device("cpu"))
                row.albumentations, row.albumentations_op = config.batch / t, label
                row.albumentations_equivalent = name not in ALBUMENTATIONS_APPROXIMATE
            if name in kor_ops:
                label, fn = kor_ops[name]
                t = _median_seconds(lambda f=fn, q=p: f(x, q), config.repeats, device)
                row.kornia, row.kornia_op = config.batch / t, label
                row.kornia_equivalent = name not in KORNIA_APPROXIMATE
            rows.append(row)
        peer = _peer_rates(config, u8_images[0], alb_params) if config.peer_python else None
        for row in rows:
            row.albumentationsx = (peer or {}).get("rates", {}).get(row.name)
        mix = None
        if not config.only:
            if progress:
                progress("kadid mix")
            pool = [n for n in list_distortions("kadid") if n != "jpeg2000"]
            chains = [(ChainOp(pool[i % len(pool)], float(1 + i % NUM_LEVELS)),) for i in range(config.batch)]
            mix = config.batch / _median_seconds(
                lambda: apply_chains(ours, chains, seeds, "kadid", out_dtype), config.repeats, device)
    env = {"torch": torch.__version__, "threads": torch.get_num_threads(),
           "synthiqa_input": config.input_dtype(),
           "python": platform.python_version(), "machine": platform.machine(),
           "albumentations": versions["albumentations"], "kornia": versions["kornia"],
           "albumentationsx": None if peer is None else peer.get("version"),
           "peer_python": config.peer_python,
           "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                           else platform.processor())}
    return SpeedResult(config, rows, mix, env)


def _peer_rates(config: SpeedConfig, image: np.ndarray, ops: dict[str, Params]) -> dict[str, Any]:
    """Run ``albumentations_peer.py`` with ``config.peer_python`` on the same image, batch, repeats and
    threads; its JSON answer (``version``, ``rates``), or a one-line error."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "image.npy"
        np.save(path, image)
        request = {"image": str(path), "batch": config.batch, "repeats": config.repeats,
                   "threads": config.threads, "ops": ops}
        done = subprocess.run([config.peer_python or sys.executable, albumentations_peer.__file__],
                              input=json.dumps(request), capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigError(f"--peer-python {config.peer_python}: the peer failed: {last}")
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError:
        raise ConfigError(f"--peer-python {config.peer_python}: the peer's answer is not JSON") from None


def write_speed_json(result: SpeedResult, path: str) -> None:
    """The result as JSON, written atomically."""
    atomic_write_text(path, json.dumps(result.to_dict(), indent=2) + "\n")


def parse_size(text: str) -> tuple[int, int]:
    """``512x384`` -> (512, 384) (width x height); a one-line error otherwise."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--size must be WIDTHxHEIGHT such as 512x384, got {text!r}") from None
    if min(w, h) < 32:
        raise ConfigError(f"--size {text}: each side must be at least 32 px")
    return w, h


def peer_label(op: str | None, approximate_because: str | None) -> str:
    """A peer op's label for the table, with ``~ (approx: why)`` for an approximate stand-in."""
    if op is None:
        return "-"
    return op if approximate_because is None else f"~ {op} (approx: {approximate_because})"


def format_rate(v: float | None) -> str:
    return "-" if v is None else f"{v:,.1f}"


def format_ratio(v: float | None, equivalent: bool = True) -> str:
    """``1.23x``; ``~1.23x`` against an approximate stand-in; ``-`` without a peer."""
    return "-" if v is None else f"{'' if equivalent else '~'}{v:.2f}x"


def summary_lines(result: SpeedResult) -> Sequence[str]:
    """The lines printed under the table."""
    lines = []
    peers = ["albumentations", "kornia"]
    if any(r.albumentationsx for r in result.rows):
        peers.append("albumentationsx")
    for peer in peers:
        lines.append(f"geometric mean synthiqa/{peer} over the {result.count(peer)} ops it has an "
                     f"equivalent of: {format_ratio(result.geomean_ratio(peer))}; over all "
                     f"{result.count(peer, False)} mapped ops, approximate stand-ins (~) included: "
                     f"{format_ratio(result.geomean_ratio(peer, False))}")
    if result.kadid_mix is not None:
        lines.append(f"whole kadid mix without jpeg2000 (one op per image, levels 1..5): "
                     f"{format_rate(result.kadid_mix)} images/s")
    if result.config.peer_python is None:
        lines.append("AlbumentationsX: not timed (give --peer-python with an interpreter that has it)")
    if result.environment.get("albumentations") is None:
        lines.append("albumentations is not installed: pip install 'synthiqa[bench]' to compare with it")
    return lines
