"""Distortion example grids: one row per distortion, one column per level, labelled (PNG, via Pillow).

Every cell of a row uses the same seed, so along a row only the level changes (same motion-blur angle,
same rain drops, ...). The image is resized (antialiased) so its shorter side is ``size`` px *before*
distorting, so pixel-sized parameters (blur sigma, jitter, patch size) act on the displayed pixels.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from synthiqa.atomic import atomic_write_bytes
from synthiqa.datasets.builtin import builtin_reference
from synthiqa.datasets.generation.encoding import encode_image
from synthiqa.datasets.references import read_image
from synthiqa.distortions import apply_distortion, derive_seed, get_distortion, list_distortions
from synthiqa.distortions.base import NUM_LEVELS
from synthiqa.distortions.basic8 import level_to_severity, severity_to_level
from synthiqa.errors import DistortionInputError

#: Default columns: the five levels, or for ``basic8`` the guide's severities 0.25, 0.5, 0.75, 1.0.
DEFAULT_BASIC8_SEVERITIES = (0.25, 0.5, 0.75, 1.0)
LABEL_WIDTH = 230
HEADER_HEIGHT = 28
CAPTION_HEIGHT = 18
PAD = 4

ImageLike = str | os.PathLike | np.ndarray | torch.Tensor | None


def default_levels(profile: str) -> list[float]:
    """The grid's default columns for a profile (levels in [1, 5])."""
    if profile == "basic8":
        return [severity_to_level(s) for s in DEFAULT_BASIC8_SEVERITIES]
    return [float(i) for i in range(1, NUM_LEVELS + 1)]


def load_image(image: ImageLike) -> torch.Tensor:
    """An image as float ``[3,H,W]`` in [0, 1]: a file path, a uint8 ``HxWx3`` array, a ``[3,H,W]`` tensor,
    or None for the built-in reference photograph (scikit-image's astronaut)."""
    if image is None:
        image = builtin_reference("astronaut")
    if isinstance(image, (str, os.PathLike)):
        image = read_image(image)
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise DistortionInputError(f"image array must be uint8 HxWx3, got {image.dtype} {image.shape}")
        return torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1).float() / 255.0
    if isinstance(image, torch.Tensor):
        if image.dim() != 3 or image.shape[0] != 3:
            raise DistortionInputError(f"image tensor must be [3,H,W], got {list(image.shape)}")
        return image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
    raise DistortionInputError(f"image must be a path, a numpy array or a tensor, got {type(image).__name__}")


def _resize_short_side(x: torch.Tensor, size: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    new = (max(1, round(h * scale)), max(1, round(w * scale)))
    if new == (h, w):
        return x
    return F.interpolate(x.unsqueeze(0), size=new, mode="bilinear", antialias=True,
                         align_corners=False)[0].clamp(0, 1)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def _column_label(profile: str, level: float) -> str:
    lv = f"{level:g}"
    if profile == "basic8":
        return f"severity {level_to_severity(level):.2f} (level {lv})"
    return f"level {lv}"


def _caption(record: dict) -> str:
    """The level-table values of one cell, e.g. ``sigma=2``."""
    skip = {"name", "group", "level", "seed"}
    parts = []
    for k, v in record.items():
        if k in skip or isinstance(v, list) or "seed" in k:
            continue
        parts.append(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}")
    return " ".join(parts)


def render_distortion_grid(image: ImageLike = None, profile: str = "kadid",
                           levels: Sequence[float] | None = None, out: str | os.PathLike | None = None,
                           *, names: Sequence[str] | None = None, include_extra: bool = False,
                           size: int = 256, seed: int = 0, device: str | torch.device = "cpu",
                           reference_column: bool = True) -> Image.Image:
    """Render distortions (rows) x levels (columns) on one image; write a PNG atomically if ``out`` is set.

    Args:
        image: path, uint8 ``HxWx3`` array, ``[3,H,W]`` tensor, or None for the built-in reference.
        profile: whose distortions and level tables (``kadid``, ``arniqa``, ``basic8``, ...).
        levels: columns, each in [1, 5]; default 1..5, or severities 0.25/0.5/0.75/1.0 for ``basic8``.
        out: PNG path to write (atomically), or None.
        names: rows; default every distortion of the profile (plus the extra group if asked).
        size: the image's shorter side in px after resizing, before distorting.
        seed: run seed; row ``name`` uses seed ``derive_seed(seed, name)`` in every column.
        reference_column: put the undistorted image first.

    Returns the grid as a PIL RGB image.
    """
    if size < 32:
        raise DistortionInputError(f"grid size must be at least 32 px, got {size}")
    cols = list(default_levels(profile) if levels is None else levels)
    if not cols:
        raise DistortionInputError("grid needs at least one level")
    bad = [lv for lv in cols if not 1 <= lv <= NUM_LEVELS]
    if bad:
        raise DistortionInputError(f"grid level {bad[0]:g} is outside [1, {NUM_LEVELS}]")
    rows = list(names) if names is not None else list_distortions(profile, include_extra=include_extra)
    for name in rows:
        get_distortion(name, profile)  # one-line error for a name the profile does not know
    x = _resize_short_side(load_image(image), size).to(device)
    h, w = x.shape[-2:]
    n_cols = len(cols) + int(reference_column)
    cell_h = h + CAPTION_HEIGHT
    canvas = Image.new("RGB", (LABEL_WIDTH + n_cols * (w + PAD), HEADER_HEIGHT + len(rows) * (cell_h + PAD)),
                       "white")
    draw = ImageDraw.Draw(canvas)
    font, small = _font(15), _font(12)
    headers = (["reference"] if reference_column else []) + [_column_label(profile, lv) for lv in cols]
    for j, text in enumerate(headers):
        draw.text((LABEL_WIDTH + j * (w + PAD) + 4, 6), text, fill="black", font=font)
    batch = x.unsqueeze(0).expand(len(cols), -1, -1, -1)
    for i, name in enumerate(rows):
        top = HEADER_HEIGHT + i * (cell_h + PAD)
        dist = get_distortion(name, profile)
        draw.text((6, top + h // 2 - 16), dist.name, fill="black", font=font)
        draw.text((6, top + h // 2 + 4), dist.group, fill="dimgray", font=small)
        row_seed = derive_seed(seed, dist.name)
        imgs, records = apply_distortion(batch, dist.name, cols, [row_seed] * len(cols), profile)
        cells = ([x] if reference_column else []) + list(imgs)
        captions = ([""] if reference_column else []) + [_caption(r[0]) for r in records]
        for j, (cell, caption) in enumerate(zip(cells, captions, strict=True)):
            left = LABEL_WIDTH + j * (w + PAD)
            arr = (cell.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
            canvas.paste(Image.fromarray(arr), (left, top))
            draw.text((left + 2, top + h + 2), caption[: max(8, w // 7)], fill="dimgray", font=small)
    if out is not None:
        atomic_write_bytes(out, encode_image(np.asarray(canvas.convert("RGB")), "png"))
    return canvas
