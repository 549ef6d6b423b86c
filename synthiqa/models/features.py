"""Feature extractors that CENIQA concatenates before its projection: multi-scale, frequency, patch-wise.

* ``MultiScaleFeatures``: the backbone's maps at several resolutions (strides 2..32 px), each pooled to
  its spatial mean and standard deviation, concatenated.
* ``FrequencyFeatures``: blockwise DCT statistics of the image, computed for the whole batch with one
  matrix product (no learned weights). Blur removes high frequencies, noise adds them, JPEG zeroes
  quantised coefficients, colour distortions move chroma energy: cheap and distortion-sensitive.
* ``PatchQualityFeatures``: one backbone map read as a grid of patches; each patch gets a feature vector
  and an attention logit, and a softmax over the patches pools them (local distortions weigh in).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


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
