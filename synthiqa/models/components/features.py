"""Feature extractors that CENIQA concatenates before its projection: multi-scale, frequency, patch-wise,
image statistics.

* ``MultiScaleFeatures``: the backbone's maps at several resolutions (strides 2..32 px), each pooled to
  its spatial mean and standard deviation, concatenated.
* ``FrequencyFeatures``: blockwise DCT statistics of the image, computed for the whole batch with one
  matrix product (no learned weights). Blur removes high frequencies, noise adds them, JPEG zeroes
  quantised coefficients, colour distortions move chroma energy: cheap and distortion-sensitive.
* ``PatchQualityFeatures``: one backbone map read as a grid of patches; each patch gets a feature vector
  and an attention logit, and a softmax over the patches pools them (local distortions weigh in).
* ``StatisticsFeatures``: fixed global statistics of the pixels (no learned weights): luminance
  quantiles, saturation and chroma, gradient and Laplacian energy at four scales, flat-neighbour share,
  8-px blockiness, chroma detail. Global tone and colour changes (darkening, contrast, saturation) are
  read off these directly; a small CNN on a crop learns them slowly from a few hundred images.
* ``SceneStatisticsFeatures``: natural-scene statistics (MSCN coefficients, as BRISQUE reads them), the
  8-bit histograms' gaps and spikes (a tone curve applied to an 8-bit image leaves them whatever the
  scene: their share grows with the curve's slope away from 1) and colour balance, of whole images.
* ``QuantileNormalizer``: a per-feature rank-Gauss map fitted on training features, so that heavy-tailed
  fixed statistics reach the network on one scale.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from synthiqa.distortions.filters import gaussian_kernel1d, separable_filter


class MultiScaleFeatures(nn.Module):
    """Spatial mean and standard deviation of every map, concatenated: ``[B, 2 * sum(channels)]``."""

    def __init__(self, channels: list[int]):
        super().__init__()
        self.out_dim = 2 * sum(channels)

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        parts = []
        for m in maps:
            flat = m.float().flatten(2)
            parts += [flat.mean(2), flat.std(2, unbiased=False)]
        return torch.cat(parts, 1)


def dct_matrix(n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Orthonormal DCT-II matrix ``[n, n]``: ``coeffs = D @ block @ D.T``."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d.to(dtype)


def rgb_to_ycbcr(images: torch.Tensor) -> torch.Tensor:
    """ITU-R BT.601 full-range YCbCr of [0, 1] RGB (Y in [0, 1], Cb/Cr centred on 0)."""
    r, g, b = images.unbind(1)
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = (b - y) * 0.564
    cr = (r - y) * 0.713
    return torch.stack([y, cb, cr], 1)


class FrequencyFeatures(nn.Module):
    """Blockwise DCT statistics of a batch of [0, 1] RGB images (no learned weights).

    The image is cut into ``block x block`` tiles (aligned to its top-left corner, as JPEG's grid is; a
    remainder at the right/bottom is dropped) and each tile is transformed with the orthonormal DCT-II.
    Per luma frequency (``block**2`` of them): log mean magnitude, standard deviation of the log
    magnitude over tiles, and the share of tiles where the coefficient is below 1/255 (JPEG's zeros).
    Per chroma channel: log mean energy of each anti-diagonal band ``u + v`` (``2 * block - 1`` bands).
    Output ``[B, 3 * block**2 + 2 * (2 * block - 1)]`` (222 for 8 px blocks).
    """

    def __init__(self, block: int = 8):
        super().__init__()
        self.block = block
        self.register_buffer("dct", dct_matrix(block), persistent=False)
        u, v = torch.meshgrid(torch.arange(block), torch.arange(block), indexing="ij")
        band = (u + v).flatten()
        self.register_buffer("bands", F.one_hot(band, 2 * block - 1).float(), persistent=False)
        self.out_dim = 3 * block * block + 2 * (2 * block - 1)

    def coefficients(self, channel: torch.Tensor) -> torch.Tensor:
        """``[B, H, W]`` -> DCT coefficients of every tile ``[B, tiles, block * block]``."""
        b = self.block
        h, w = (channel.shape[1] // b) * b, (channel.shape[2] // b) * b
        tiles = channel[:, :h, :w].unfold(1, b, b).unfold(2, b, b).reshape(channel.shape[0], -1, b, b)
        return (self.dct @ tiles @ self.dct.T).flatten(2)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        ycc = rgb_to_ycbcr(images.float())
        mag = self.coefficients(ycc[:, 0]).abs()
        log_mag = torch.log(mag + 1e-3)
        zeros = (mag < 1 / 255).float().mean(1)
        luma = [torch.log(mag.mean(1) + 1e-4), log_mag.std(1, unbiased=False), zeros]
        chroma = []
        for c in (1, 2):
            energy = self.coefficients(ycc[:, c]).square().mean(1)  # [B, block*block]
            chroma.append(torch.log(energy @ self.bands + 1e-6))
        return torch.cat(luma + chroma, 1)


class PatchQualityFeatures(nn.Module):
    """Per-patch features of one backbone map, pooled with learned attention: ``[B, dim]``.

    Each spatial position of the map is a patch (its receptive field); a 1x1 conv gives its ``dim``
    features, another its attention logit; the softmax over positions weights the average.
    """

    def __init__(self, in_channels: int, dim: int = 64):
        super().__init__()
        self.embed = nn.Sequential(nn.Conv2d(in_channels, dim, 1), nn.GELU())
        self.attend = nn.Conv2d(dim, 1, 1)
        self.out_dim = dim

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        patches = self.embed(feature_map)
        weights = torch.softmax(self.attend(patches).flatten(1).float(), dim=1)
        return torch.einsum("bcn,bn->bc", patches.flatten(2).float(), weights)


#: Luminance quantiles ``StatisticsFeatures`` reports.
LUMA_QUANTILES = (0.005, 0.02, 0.1, 0.25, 0.5, 0.75, 0.9, 0.98, 0.995)
#: Saturation and chroma quantiles it reports.
COLOUR_QUANTILES = (0.5, 0.9, 0.99)
#: Scales of the gradient and Laplacian energies (the image is halved between them).
GRADIENT_SCALES = 4
_LOG_EPS = 1e-4


def _quantiles(values: torch.Tensor, qs: tuple[float, ...]) -> torch.Tensor:
    """Quantiles (nearest rank) of each row of ``values [B, N]``: ``[B, len(qs)]``. On the CPU the ranks
    are selected (NumPy's introselect, no full sort), elsewhere the rows are sorted: the same values."""
    ranks = [round(q * (values.shape[1] - 1)) for q in qs]
    if values.device.type == "cpu":
        picked = np.partition(values.detach().numpy(), ranks, axis=1)[:, ranks]
        return torch.from_numpy(picked)
    return values.sort(1).values[:, torch.tensor(ranks, device=values.device)]


def _laplacian(channel: torch.Tensor) -> torch.Tensor:
    """3x3 second difference ``[[1,-2,1],[-2,4,-2],[1,-2,1]]`` (Immerkaer's noise operator) of
    ``[..., H, W]``, valid part ``[..., H-2, W-2]``; computed separably (the kernel is ``[1,-2,1]`` outer
    itself)."""
    rows = channel[..., :, :-2] - 2 * channel[..., :, 1:-1] + channel[..., :, 2:]
    return rows[..., :-2, :] - 2 * rows[..., 1:-1, :] + rows[..., 2:, :]


def _log_mean(values: torch.Tensor) -> torch.Tensor:
    return torch.log(values.flatten(1).mean(1) + _LOG_EPS)


class StatisticsFeatures(nn.Module):
    """Global pixel statistics of a batch of [0, 1] RGB images (no learned weights): ``[B, 44]``.

    * Luminance (BT.601 Y): the ``LUMA_QUANTILES``, mean and standard deviation (11).
    * Colour: HSV saturation ``(max - min) / max`` and chroma ``max - min``, each at ``COLOUR_QUANTILES``
      plus its mean, and the standard deviations of Cb and Cr (10).
    * Per scale (full, 1/2, 1/4, 1/8 by 2x2 averaging): log mean absolute difference of neighbours over
      the four directions, the log spread between the strongest and weakest direction (motion blur is
      directional), and log mean and log median absolute Laplacian (noise, blur) (16).
    * Full scale only: share of horizontal and vertical neighbours equal within 0.5/255 (pixelation,
      clipping); log ratio of the differences across 8-px grid lines to those elsewhere, per direction
      (JPEG blocking; crops are taken on the 8-px grid) (4).
    * Chroma detail: log mean absolute Laplacian of each RGB channel minus that of Y (3).
    """

    out_dim = len(LUMA_QUANTILES) + 2 + 2 * (len(COLOUR_QUANTILES) + 1) + 2 + 4 * GRADIENT_SCALES + 4 + 3

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float()
        b = x.shape[0]
        y = rgb_to_ycbcr(x)
        luma = y[:, :1]
        flat = luma.flatten(1)
        hi, lo = x.amax(1).flatten(1), x.amin(1).flatten(1)
        chroma = hi - lo
        saturation = chroma / (hi + 1e-3)
        parts = [_quantiles(flat, LUMA_QUANTILES), flat.mean(1, keepdim=True), flat.std(1, keepdim=True)]
        for v in (saturation, chroma):
            parts += [_quantiles(v, COLOUR_QUANTILES), v.mean(1, keepdim=True)]
        parts.append(y[:, 1:].flatten(2).std(2))
        cur = luma
        for scale in range(GRADIENT_SCALES):
            diffs = [cur[..., :, 1:] - cur[..., :, :-1], cur[..., 1:, :] - cur[..., :-1, :],
                     cur[..., 1:, 1:] - cur[..., :-1, :-1], cur[..., 1:, :-1] - cur[..., :-1, 1:]]
            energy = torch.stack([_log_mean(d.abs()) for d in diffs], 1)
            lap = _laplacian(cur).abs().flatten(1)
            parts += [energy.mean(1, keepdim=True), (energy.amax(1) - energy.amin(1))[:, None],
                      _log_mean(lap)[:, None], torch.log(lap.median(1).values + _LOG_EPS)[:, None]]
            if scale == 0:
                dx, dy = diffs[0].abs(), diffs[1].abs()
                parts += [(dx < 0.5 / 255).flatten(1).float().mean(1, keepdim=True),
                          (dy < 0.5 / 255).flatten(1).float().mean(1, keepdim=True)]
                for profile in (dx.mean(2).flatten(1), dy.mean(3).flatten(1)):  # per column / per row
                    grid = torch.arange(profile.shape[1], device=x.device) % 8 == 7
                    across = profile[:, grid].mean(1) + _LOG_EPS
                    parts.append(torch.log(across / (profile[:, ~grid].mean(1) + _LOG_EPS))[:, None])
            cur = F.avg_pool2d(cur, 2)
        lap_rgb = _laplacian(x).reshape(b, 3, -1)
        lap_y = _laplacian(luma).reshape(b, 1, -1)
        parts.append(torch.log((lap_rgb - lap_y).abs().mean(2) + _LOG_EPS))
        return torch.cat(parts, 1)


class WholeImageFeatures(nn.Module):
    """Fixed statistics of a whole image, however large (no learned weights): ``StatisticsFeatures`` of the
    image halved by 2x2 averaging (tone, colour, detail per scale), ``FrequencyFeatures`` at full
    resolution (the codec's 8 px grid is kept) and, with ``scene_statistics``, ``SceneStatisticsFeatures``
    at full resolution: ``[B, 44 + 222 (+ 80)]`` for 8 px blocks.

    Crops show a few parts of an image; global tone and colour changes (darkening, contrast, saturation)
    and directional blur are read more reliably off the whole picture. The data loaders compute it once
    per image (``of_image``, or ``views_of_image`` with its tiles) and cache it; images of different sizes
    are fine.
    """

    def __init__(self, block: int = 8, scene_statistics: bool = True):
        super().__init__()
        self.statistics = StatisticsFeatures()
        self.frequency = FrequencyFeatures(block)
        self.scene = SceneStatisticsFeatures() if scene_statistics else None
        self.out_dim = (self.statistics.out_dim + self.frequency.out_dim
                        + (self.scene.out_dim if self.scene is not None else 0))

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``[B,3,H,W]`` [0, 1] RGB -> ``[B, out_dim]`` (images under 64 px a side are not halved)."""
        x = images.float()
        half = F.avg_pool2d(x, 2) if min(x.shape[-2:]) >= 64 else x
        parts = [self.statistics(half), self.frequency(x)]
        if self.scene is not None:
            parts.append(self.scene(x))
        return torch.cat(parts, 1)

    def of_image(self, image: torch.Tensor) -> torch.Tensor:
        """One uint8 ``[3,H,W]`` image -> float32 ``[out_dim]`` on the CPU."""
        return self(image[None].float().div(255.0))[0].cpu()

    @torch.no_grad()
    def views(self, images: torch.Tensor, tiles: int = 0) -> torch.Tensor:
        """Features of each ``[B,3,H,W]`` [0, 1] image and of the tiles of a ``tiles x tiles`` grid over
        it: ``[B, 1 + tiles**2, out_dim]``, view 0 the whole image, then the tiles row by row (each
        ``H // tiles`` x ``W // tiles`` px; the remainder rows and columns are left out). The tiles, all of
        one size, go through as one batch: each tile's features are its own (to float rounding)."""
        whole = self(images)
        if not tiles:
            return whole[:, None]
        th, tw = images.shape[-2] // tiles, images.shape[-1] // tiles
        grid = torch.cat([images[..., i * th:(i + 1) * th, j * tw:(j + 1) * tw]
                          for i in range(tiles) for j in range(tiles)])  # [tiles**2 * B, 3, th, tw]
        parts = self(grid).view(tiles * tiles, images.shape[0], -1).transpose(0, 1)
        return torch.cat([whole[:, None], parts], 1)

    def views_of_image(self, image: torch.Tensor, tiles: int = 0) -> torch.Tensor:
        """One uint8 ``[3,H,W]`` image -> float32 ``[1 + tiles**2, out_dim]`` on the CPU (``views``)."""
        return self.views(image[None].float().div(255.0), tiles)[0].cpu()


#: Scales of the MSCN statistics (the luminance is halved between them).
MSCN_SCALES = 2
#: Gaussian window of the MSCN local mean and deviation: std and side, px (BRISQUE's).
MSCN_SIGMA, MSCN_WINDOW = 7 / 6, 7
#: Neighbour offsets (dy, dx) whose MSCN products are summarised: horizontal, vertical, two diagonals.
MSCN_NEIGHBOURS = ((0, 1), (1, 0), (1, 1), (1, -1))
#: Local-contrast quantiles reported per scale.
SIGMA_QUANTILES = (0.1, 0.5, 0.9)
#: Luminance standard deviations (0-255 units) below which an 8x8 block counts as flat.
FLAT_BLOCK_STD = (0.5, 1.5, 4.0)


def _shape_moments(v: torch.Tensor) -> torch.Tensor:
    """``[B, N]`` -> log variance, skewness, log kurtosis and E|x - mean| / std (a GGD shape proxy)."""
    c = v - v.mean(1, keepdim=True)
    var = c.square().mean(1)
    sd = var.sqrt() + 1e-6
    skew, kurt = (c**3).mean(1) / sd**3, (c**4).mean(1) / sd**4
    return torch.stack([torch.log(var + 1e-6), skew, torch.log(kurt + 1e-6), c.abs().mean(1) / sd], 1)


class SceneStatisticsFeatures(nn.Module):
    """Scene-independent distortion statistics of [0, 1] RGB images (no learned weights): ``[B, 80]``.

    * Per scale (full, 1/2): MSCN coefficients ``(Y - mu) / (sigma + 1)`` of the luminance in 0-255 units
      (7-tap Gaussian window, replicate borders, as BRISQUE): their shape moments (4); for each of the four
      neighbour directions the products of neighbouring coefficients: mean, log mean square, share
      positive (12); and quantiles of ``log(sigma + 1)``, the local contrast (3). 38 in all.
    * Per channel (R, G, B, Y rounded to 8-bit codes): among the codes between the 1% and 99% points of
      the histogram, the share that is empty (gaps) and the share that holds over three times its
      neighbours' mean (spikes); histogram entropy, nats; the 1% and 99% codes / 255; the share of pixels
      at 0 or 255 (24).
    * Distinct colours at 6 and 5 bits per channel, log share of the pixel count (2).
    * Colour balance: opponent means and standard deviations (R - G, (R + G)/2 - B), RGB means and
      standard deviations, the three inter-channel correlations (13), and the share of 8x8 blocks whose
      luminance standard deviation is below each of ``FLAT_BLOCK_STD`` (3).
    """

    out_dim = MSCN_SCALES * (4 + 3 * len(MSCN_NEIGHBOURS) + len(SIGMA_QUANTILES)) + 4 * 6 + 2 + 13 + 3

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float().clamp(0.0, 1.0)
        codes = x.mul(255.0).round().to(torch.int64)
        luma = rgb_to_ycbcr(x)[:, :1] * 255.0
        return torch.cat([self._mscn(luma), self._histograms(codes), self._colour(x, luma)], 1)

    @staticmethod
    def _mscn(y: torch.Tensor) -> torch.Tensor:
        window = [gaussian_kernel1d(MSCN_SIGMA, MSCN_WINDOW)] * len(y)  # BRISQUE's 7-tap window
        parts = []
        for _ in range(MSCN_SCALES):
            mu = separable_filter(y, window)
            sigma = (separable_filter(y * y, window) - mu * mu).clamp_min(0).sqrt()
            m = ((y - mu) / (sigma + 1.0))[:, 0]
            parts.append(_shape_moments(m.flatten(1)))
            h, w = m.shape[-2:]
            for dy, dx in MSCN_NEIGHBOURS:
                a = m[:, dy:, max(dx, 0):w + min(dx, 0)]
                b = m[:, :h - dy, max(-dx, 0):w - max(dx, 0)]
                p = (a * b).flatten(1)
                parts.append(torch.stack([p.mean(1), torch.log(p.square().mean(1) + 1e-6),
                                          (p > 0).float().mean(1)], 1))
            spread = torch.log(sigma.flatten(1)[:, ::7] + 1.0)
            parts.append(torch.quantile(spread, torch.tensor(SIGMA_QUANTILES, device=y.device), dim=1).T)
            y = F.avg_pool2d(y, 2)
        return torch.cat(parts, 1)

    @staticmethod
    def _histograms(codes: torch.Tensor) -> torch.Tensor:
        b = codes.shape[0]
        r, g, bl = codes.unbind(1)
        y = (0.299 * r + 0.587 * g + 0.114 * bl).round().long()
        idx = torch.arange(256, device=codes.device)
        offsets = torch.arange(b, device=codes.device)[:, None] * 256
        parts = []
        for c in (r, g, bl, y):  # one bincount per channel for the whole batch: image i's codes + 256 i
            hist = torch.bincount((c.flatten(1) + offsets).flatten(), minlength=256 * b).view(b, 256).float()
            p = hist / hist.sum(1, keepdim=True)
            cdf = p.cumsum(1)
            lo, hi = (cdf < 0.01).sum(1), (cdf < 0.99).sum(1)
            inside = (idx >= lo[:, None]) & (idx <= hi[:, None])
            n_inside = inside.float().sum(1).clamp_min(1)
            padded = F.pad(hist[:, None], (1, 1), mode="replicate")[:, 0]
            neighbours = (padded[:, :-2] + padded[:, 2:]) / 2
            parts += [((hist == 0) & inside).float().sum(1) / n_inside,
                      ((hist > 3 * neighbours + 5) & inside).float().sum(1) / n_inside,
                      -(p * torch.log(p + 1e-12)).sum(1), lo.float() / 255, hi.float() / 255,
                      p[:, 0] + p[:, 255]]
        for bits in (6, 5):
            q = codes >> (8 - bits)
            colour = (q[:, 0] << (2 * bits)) + (q[:, 1] << bits) + q[:, 2]
            used = torch.stack([torch.bincount(v, minlength=1 << (3 * bits)).count_nonzero()
                                for v in colour.flatten(1)]).float()
            parts.append(torch.log(used / colour[0].numel()))
        return torch.stack(parts, 1)

    @staticmethod
    def _colour(x: torch.Tensor, luma: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)
        r, g, b = flat.unbind(1)
        rg, yb = r - g, 0.5 * (r + g) - b
        parts = [torch.stack([rg.mean(1), yb.mean(1), rg.std(1), yb.std(1)], 1), flat.mean(2), flat.std(2)]
        centred = flat - flat.mean(2, keepdim=True)
        sd = centred.square().mean(2).sqrt() + 1e-6
        corr = [(centred[:, i] * centred[:, j]).mean(1) / (sd[:, i] * sd[:, j])
                for i, j in ((0, 1), (1, 2), (0, 2))]
        parts.append(torch.stack(corr, 1))
        block_var = F.avg_pool2d(luma.square(), 8) - F.avg_pool2d(luma, 8).square()
        block_sd = block_var.clamp_min(0).sqrt().flatten(1)
        parts.append(torch.stack([(block_sd < t).float().mean(1) for t in FLAT_BLOCK_STD], 1))
        return torch.cat(parts, 1)


class QuantileNormalizer(nn.Module):
    """Per-feature rank-Gauss map fitted on training features (``fit``): each feature goes through its
    ``n_quantiles`` training quantiles to the standard normal's, piecewise linearly (ties take their mean
    rank; values beyond the training range map to the end points, +-3.1). Identity until fitted. The
    quantiles are buffers, so checkpoints carry them."""

    def __init__(self, dim: int, n_quantiles: int = 64):
        super().__init__()
        self.register_buffer("knots", torch.zeros(dim, n_quantiles))
        self.register_buffer("is_fitted", torch.zeros((), dtype=torch.bool))
        probs = torch.linspace(0.001, 0.999, n_quantiles)
        self.register_buffer("targets", math.sqrt(2.0) * torch.erfinv(2 * probs - 1), persistent=False)

    @torch.no_grad()
    def fit(self, features: torch.Tensor) -> QuantileNormalizer:
        """Fit on ``[N, dim]`` training features (N >= 2; non-finite values are ignored)."""
        x = features.float().to(self.knots.device)
        finite = torch.isfinite(x)
        x = torch.where(finite, x, torch.where(finite, x, math.nan).nanmedian(0).values.nan_to_num(0.0))
        probs = torch.linspace(0.0, 1.0, self.knots.shape[1], device=x.device)
        self.knots.copy_(torch.quantile(x, probs, dim=0).T)
        self.is_fitted.fill_(True)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not bool(self.is_fitted):
            return x
        v = x.float().T.contiguous()  # [dim, B]
        z = 0.5 * (self._position(v, right=False) + self._position(v, right=True))
        return z.T.nan_to_num(0.0)

    def _position(self, v: torch.Tensor, right: bool) -> torch.Tensor:
        k = self.knots
        q = k.shape[1]
        i = torch.searchsorted(k, v, right=right)
        lo = (i - 1).clamp(0, q - 2)
        k_lo, k_hi = k.gather(1, lo), k.gather(1, lo + 1)
        span = k_hi - k_lo
        tied = torch.full_like(v, 0.0 if right else 1.0)
        t = torch.where(span > 0, (v - k_lo) / span.clamp_min(1e-12), tied).clamp(0.0, 1.0)
        return self.targets[lo] + t * (self.targets[lo + 1] - self.targets[lo])
