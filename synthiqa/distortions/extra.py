"""The ``extra`` group: rain, fog, lens distortion and chromatic aberration (the CENIQA guide's custom types).

They are not part of KADID-10k or ARNIQA, so they carry one level table under ``"*"`` and work with any
profile. Every op is batched: per-sample parameters are tensors, random fields come from per-sample seeds
(``uniform_field``/``normal_field``), so an image's output never depends on its batch mates.
Geometry is in normalised coordinates, so a level looks alike at any resolution.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F

from synthiqa.distortions.base import ANY_PROFILE, EXTRA_GROUP, Distortion, LevelTable, host_param
from synthiqa.distortions.registry import register_distortion
from synthiqa.distortions.rng import SampleRNG, normal_field, uniform_field
from synthiqa.errors import DistortionInputError


def _col(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-sample ``[B]`` parameter as ``[B,1,1,1]`` with the dtype and device of ``like``."""
    return v.to(like).reshape(-1, 1, 1, 1)


def _fft_conv_same(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Convolve ``x [B,1,H,W]`` with one odd ``[B,K,K]`` kernel per sample, zero border, same size.

    FFT convolution: cost does not grow with the kernel side (rain streaks need kernels of 50+ px).
    """
    b, _, h, w = x.shape
    k = kernels.shape[-1]
    fh, fw = h + k - 1, w + k - 1
    spec = torch.fft.rfft2(x[:, 0], s=(fh, fw)) * torch.fft.rfft2(kernels, s=(fh, fw))
    full = torch.fft.irfft2(spec, s=(fh, fw))
    r = k // 2
    return full[:, r:r + h, r:r + w].unsqueeze(1)


def _line_kernels(lengths: torch.Tensor, angles_deg: torch.Tensor, device: torch.device,
                  side: int | None = None) -> torch.Tensor:
    """Anti-aliased line kernels ``[B,K,K]`` (peak 1), one per sample; angle 0 is vertical. ``side``: K
    (odd, at least the longest length) when the caller knows it, else read from ``lengths``."""
    k = side if side is not None else int(lengths.max().ceil().item()) | 1
    r = k // 2
    coords = torch.arange(-r, r + 1, device=device, dtype=torch.float32)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    theta = torch.deg2rad(angles_deg.to(device=device, dtype=torch.float32)).view(-1, 1, 1)
    dy, dx = torch.cos(theta), torch.sin(theta)
    along = yy * dy + xx * dx
    across = (-yy * dx + xx * dy).abs()
    half = lengths.to(device=device, dtype=torch.float32).view(-1, 1, 1) / 2
    taper = (half + 0.5 - along.abs()).clamp(0, 1)
    return (1 - across).clamp(0, 1) * taper


@register_distortion
class Rain(Distortion):
    """Rain streaks: sparse drops smeared along one slanted direction, blended towards a light colour.

    Level table: ``density`` = fraction of pixels that seed a drop; ``length`` = streak length as a
    fraction of the shorter image side; ``opacity`` = blend weight of a full streak. Drawn per sample:
    ``angle`` (degrees from vertical, uniform in [-25, 25]), ``brightness`` (streak colour, uniform in
    [0.75, 0.95]) and ``field_seed`` (drop positions and strengths). The scene is dimmed by
    ``dim * opacity`` (option ``dim``, default 0.25) as under an overcast sky.
    """

    name = "rain"
    group = EXTRA_GROUP
    tables = {ANY_PROFILE: LevelTable(
        {"density": (0.003, 0.005, 0.008, 0.012, 0.016), "length": (0.03, 0.045, 0.06, 0.08, 0.1),
         "opacity": (0.35, 0.45, 0.55, 0.65, 0.75)},
        options={"dim": 0.25},
    )}
    description = "rain streaks: random drops motion-blurred along a per-sample slant, blended light"

    def draw(self, rng: SampleRNG, levels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"angle": rng.uniform(low=-25.0, high=25.0), "brightness": rng.uniform(low=0.75, high=0.95),
                "field_seed": rng.seeds_for_fields()}

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        b, _, h, w = images.shape
        u = uniform_field(host_param(params, "field_seed"), (1, h, w), images.device)
        density = _col(params["density"], images)
        # a drop where u < density; its strength (0.5..1) reuses u's position inside [0, density)
        drops = torch.where(u < density, 0.5 + 0.5 * u / density.clamp_min(1e-8), torch.zeros_like(u))
        lengths = (params["length"] * min(h, w)).clamp_min(3.0)
        # One kernel side for any batch (the table's longest streak): FFT sizes, and so each sample's
        # rounding, do not depend on the batch mates.
        longest = max(float(host_param(params, "length").max()), max(self.table.params["length"]))
        side = math.ceil(max(longest * min(h, w), 3.0)) | 1
        kernels = _line_kernels(lengths, params["angle"], images.device, side)
        streaks = _fft_conv_same(drops, kernels).clamp(0, 1)
        alpha = _col(params["opacity"], images) * streaks
        dimmed = images * (1 - float(self.options.get("dim", 0.25)) * _col(params["opacity"], images))
        return dimmed * (1 - alpha) + _col(params["brightness"], images) * alpha


@register_distortion
class Fog(Distortion):
    """Fog: a fractal haze (sum of 6 octaves of smooth value noise, amplitude halving per octave).

    ``y = x (1 - t) + A t`` with per-pixel thickness ``t = thickness * (0.4 + 0.6 n)``, ``n`` the
    per-image min-max normalised noise, ``A`` the airlight drawn uniformly in [0.78, 0.95] per sample.
    Level table: ``thickness`` = the largest fog weight. An approximation of ImageNet-C's plasma-fractal
    fog (bicubic value noise instead of diamond-square), in the same spirit.
    """

    name = "fog"
    group = EXTRA_GROUP
    tables = {ANY_PROFILE: LevelTable({"thickness": (0.35, 0.5, 0.62, 0.74, 0.86)})}
    approximation = "fractal value noise instead of ImageNet-C's diamond-square plasma fractal"
    description = "fractal haze blended towards a light airlight"
    octaves = 6

    def draw(self, rng: SampleRNG, levels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"airlight": rng.uniform(low=0.78, high=0.95),
                "field_seeds": rng.randint(0, 2**62, self.octaves)}

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        b, _, h, w = images.shape
        noise = torch.zeros(b, 1, h, w, device=images.device)
        seeds = host_param(params, "field_seeds")
        for octave in range(self.octaves):
            cells = 2 ** (octave + 1)
            gh, gw = cells + 1, max(2, math.ceil(cells * w / h)) + 1
            grid = normal_field(seeds[:, octave], (1, gh, gw), images.device)
            noise += 0.5**octave * F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=True)
        lo = noise.amin(dim=(1, 2, 3), keepdim=True)
        hi = noise.amax(dim=(1, 2, 3), keepdim=True)
        n = (noise - lo) / (hi - lo).clamp_min(1e-6)
        t = _col(params["thickness"], images) * (0.4 + 0.6 * n)
        return images * (1 - t) + _col(params["airlight"], images) * t


def _base_grid(b: int, h: int, w: int, device: torch.device) -> torch.Tensor:
    """Identity sampling grid ``[B,H,W,2]`` in grid_sample's normalised (x, y) coordinates."""
    ys = torch.linspace(-1, 1, h, device=device)
    xs = torch.linspace(-1, 1, w, device=device)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((xx, yy), dim=-1).unsqueeze(0).expand(b, h, w, 2)


@register_distortion
class LensDistortion(Distortion):
    """Radial lens distortion, barrel (k > 0) or pincushion (k < 0), with the frame kept full.

    An output pixel at normalised position p (radius r, r = 1 at the corners) samples the input at
    ``p (1 + k r^2) / s``, where ``s`` is the largest coordinate the boundary would reach, so no pixel
    samples outside the image (no black borders). Level table: ``strength`` = |k|. The sign comes from
    option ``direction``: "random" (default; barrel or pincushion with probability 1/2 per sample),
    "barrel" or "pincushion". The drawn ``sign`` (+1 barrel, -1 pincushion) is recorded; k = sign x strength.
    """

    name = "lens_distortion"
    group = EXTRA_GROUP
    tables = {ANY_PROFILE: LevelTable({"strength": (0.04, 0.08, 0.14, 0.22, 0.3)},
                                      options={"direction": "random"})}
    description = "barrel or pincushion radial warp (grid_sample, bilinear)"

    def draw(self, rng: SampleRNG, levels: torch.Tensor) -> dict[str, torch.Tensor]:
        coin = rng.uniform()
        direction = self.options.get("direction", "random")
        if direction == "random":
            sign = torch.where(coin < 0.5, 1.0, -1.0).to(torch.float64)
        elif direction in ("barrel", "pincushion"):
            sign = torch.full_like(coin, 1.0 if direction == "barrel" else -1.0)
        else:
            raise DistortionInputError(
                f"lens_distortion: option direction={direction!r}; use random, barrel or pincushion")
        return {"sign": sign}

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        b, _, h, w = images.shape
        k = _col(params["sign"] * params["strength"], images)
        grid = _base_grid(b, h, w, images.device)
        ax, ay = w / math.hypot(w, h), h / math.hypot(w, h)  # half-sides in units of the half-diagonal
        r2 = (grid[..., :1] * ax) ** 2 + (grid[..., 1:] * ay) ** 2
        scale = torch.maximum(1 + k, torch.maximum(1 + k * ax**2, 1 + k * ay**2))
        src = grid * (1 + k * r2) / scale
        return F.grid_sample(images, src, mode="bilinear", padding_mode="border", align_corners=True)


@register_distortion
class ChromaticAberration(Distortion):
    """Lateral chromatic aberration: R and B radially rescaled relative to G, in opposite directions.

    Output R at normalised position p samples the input R at ``p (1 - sign * shift)`` and B at
    ``p (1 + sign * shift)``; G is untouched. ``shift`` (level table) is the relative magnification, so
    colour fringes grow linearly towards the corners (shift x half-diagonal px there). ``sign`` (drawn
    per sample, +1 or -1) says which channel is magnified. Border pixels are replicated.
    """

    name = "chromatic_aberration"
    group = EXTRA_GROUP
    tables = {ANY_PROFILE: LevelTable({"shift": (0.003, 0.006, 0.01, 0.015, 0.022)})}
    description = "radial scale of R and B against G (grid_sample, bilinear)"

    def draw(self, rng: SampleRNG, levels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"sign": torch.where(rng.uniform() < 0.5, 1.0, -1.0).to(torch.float64)}

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        b, _, h, w = images.shape
        grid = _base_grid(b, h, w, images.device)
        s = _col(params["sign"] * params["shift"], images)
        red = F.grid_sample(images[:, :1], grid * (1 - s), mode="bilinear", padding_mode="border",
                            align_corners=True)
        blue = F.grid_sample(images[:, 2:], grid * (1 + s), mode="bilinear", padding_mode="border",
                             align_corners=True)
        return torch.cat((red, images[:, 1:2], blue), dim=1)
