"""Reference photographs for ``synthiqa generate``: scan a folder robustly and decode to RGB uint8; the
package's one image decoder (``read_image``: models, baselines and the grid read files through it).

Scanning is cheap (file headers only) and decides which files are usable; decoding happens later, in a
worker pool. Every file that cannot be used is skipped with one warning line, never a traceback.

Normalisation of what PIL opens (documented, deterministic):
- EXIF orientation is applied (``ImageOps.exif_transpose``).
- 16-bit greyscale (``I;16``, ``I``) is scaled to 8 bits by ``round(v / 257)``; float (``F``) images are
  taken as [0, 1] when their maximum is at most 1, else as [0, 255]; 16-bit colour that PIL cannot open
  is read with OpenCV and scaled the same way.
- Greyscale and bilevel are replicated to three channels; palette images are expanded (with their
  transparency); CMYK, YCbCr, LAB and HSV are converted by PIL's formulas (no ICC colour management).
- Alpha (RGBA, LA, PA, palette transparency) is composited onto a white background.
- ``max_side`` shrinks the image (Lanczos, aspect kept) so that its longer side is at most that many px;
  ``crop`` (W, H) shrinks it just enough to cover W x H and takes the centred W x H crop. Images are
  never enlarged: one smaller than the crop, or with a side under ``min_side`` (32 px), is skipped.
- Images over the decompression-bomb guard (``max_pixels``, PIL's 89.5 MP by default) are skipped unless
  ``max_side`` or ``crop`` asks for a smaller image: then they are decoded, JPEGs at a reduced DCT scale
  (``Image.draft``: 1/2, 1/4 or 1/8, never below the target size) before the Lanczos shrink; other
  formats are decoded at full size. Images under the guard always decode at full size.
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from synthiqa.errors import ConfigError, DatasetError

#: File suffixes read as references (lower case).
IMAGE_SUFFIXES: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
#: Smallest accepted side in px (the distortion engine's minimum).
MIN_SIDE = 32
#: Default decompression-bomb guard: PIL's own limit (about 89.5 megapixels).
DEFAULT_MAX_PIXELS = int(Image.MAX_IMAGE_PIXELS or 89_478_485)
_EXIF_ORIENTATION = 0x0112
#: Serialises lifting PIL's own pixel limit (a module global) around ``Image.open``; PIL checks it there
#: only, so pixels are still decoded in parallel.
_PIL_LIMIT_LOCK = threading.Lock()


class ReferenceSkipped(Exception):
    """A reference that cannot be used; the message is the one-line reason."""


@dataclass(frozen=True)
class Reference:
    """One usable reference: a stable name, its source file (None for built-ins), its oriented size.

    Attributes:
        name: file-system-safe id, unique in the run (used in output names and as the scene id).
        path: source file, or None for an in-memory built-in image.
        size: (width, height) in px after EXIF orientation, before resizing.
    """

    name: str
    path: Path | None
    size: tuple[int, int]


@dataclass(frozen=True)
class ScanResult:
    """Usable references in a fixed order, and (file, reason) for every file skipped at scan time."""

    references: list[Reference]
    skipped: list[tuple[str, str]]


def parse_crop(text: str | None) -> tuple[int, int] | None:
    """``"512x384"`` -> (512, 384); None stays None; a one-line error otherwise."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m or int(m.group(1)) < MIN_SIDE or int(m.group(2)) < MIN_SIDE:
        raise ConfigError(f"--crop {text!r} must be WIDTHxHEIGHT in px, each at least {MIN_SIDE} "
                          "(e.g. 512x384)")
    return int(m.group(1)), int(m.group(2))


def _safe_name(rel: Path) -> str:
    stem = "__".join((*rel.parent.parts, rel.stem))
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "image"


def reference_names(rel_paths: Sequence[Path]) -> list[str]:
    """Stable unique names from relative paths (``sub/a.png`` -> ``sub__a``); clashes get the suffix."""
    base = [_safe_name(p) for p in rel_paths]
    counts: dict[str, int] = {}
    for b in base:
        counts[b] = counts.get(b, 0) + 1
    names = [f"{b}_{p.suffix.lstrip('.').lower()}" if counts[b] > 1 else b
             for b, p in zip(base, rel_paths, strict=True)]
    seen: dict[str, int] = {}
    out = []
    for n in names:  # still clashing (a.PNG and a.png): number them in sorted-path order
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}_{seen[n]}")
    return out


def _oriented_size(img: Image.Image) -> tuple[int, int]:
    w, h = img.size
    try:
        orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # a broken EXIF block: PIL's exif_transpose will ignore it too
        orientation = 1
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def _guard_message(w: int, h: int, max_pixels: int) -> str:
    return (f"{w}x{h} px exceeds the decompression-bomb guard of {max_pixels} pixels; pass --max-side "
            "(e.g. --max-side 2048) or --crop to shrink it while decoding")


def _check_size(size: tuple[int, int], min_side: int, crop: tuple[int, int] | None,
                max_pixels: int, shrunk: bool = False) -> None:
    w, h = size
    if w * h > max_pixels and not shrunk:
        raise ReferenceSkipped(_guard_message(w, h, max_pixels))
    if min(w, h) < min_side:
        raise ReferenceSkipped(f"{w}x{h} px is below the minimum side of {min_side} px")
    if crop is not None and (w < crop[0] or h < crop[1]):
        raise ReferenceSkipped(f"{w}x{h} px is smaller than the crop {crop[0]}x{crop[1]}")


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[Image.Image]:
    """``Image.open(path)`` (the header) without PIL's own pixel limit: the callers apply ``max_pixels``
    themselves, before any pixel is decoded, and admit large images that will be shrunk."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with _PIL_LIMIT_LOCK:
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                img = Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = saved
        with img:
            yield img


def probe_reference(path: Path, min_side: int = MIN_SIDE, crop: tuple[int, int] | None = None,
                    max_pixels: int = DEFAULT_MAX_PIXELS, max_side: int | None = None) -> tuple[int, int]:
    """Oriented (width, height) from the header alone; raises ``ReferenceSkipped`` with the reason. With
    ``max_side`` or ``crop`` an image over ``max_pixels`` is accepted (it is shrunk while decoding)."""
    shrunk = max_side is not None or crop is not None
    try:
        if path.stat().st_size == 0:
            raise ReferenceSkipped("empty file (0 bytes)")
        with _opened(path) as img:
            size = _oriented_size(img)
    except ReferenceSkipped:
        raise
    except UnidentifiedImageError:
        size = _probe_with_opencv(path)
    except (OSError, ValueError, SyntaxError) as exc:
        raise ReferenceSkipped(f"unreadable image header ({exc})") from None
    _check_size(size, min_side, crop, max_pixels, shrunk)
    return size


def _probe_with_opencv(path: Path) -> tuple[int, int]:
    arr = _read_with_opencv(path)
    return arr.shape[1], arr.shape[0]


def scan_references(root: str | Path, min_side: int = MIN_SIDE, crop: tuple[int, int] | None = None,
                    max_pixels: int = DEFAULT_MAX_PIXELS,
                    warn: Callable[[str], None] | None = None, max_side: int | None = None) -> ScanResult:
    """Every usable image under ``root`` (recursive, sorted by relative path; hidden entries ignored).
    ``max_side`` / ``crop``: the size the images will be shrunk to (admits images over ``max_pixels``).

    Non-image files, empty, corrupt, too small and too large images are reported through ``warn``
    (one line each) and listed in ``skipped``. Truncated pixel data is only found when decoding.
    """
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"reference folder {str(root)!r} does not exist")
    if not root.is_dir():
        raise DatasetError(f"reference folder {str(root)!r} is not a folder")
    files = sorted(
        (p for p in root.rglob("*")
         if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    skipped: list[tuple[str, str]] = []

    def skip(rel: str, reason: str) -> None:
        skipped.append((rel, reason))
        if warn is not None:
            warn(f"skipped {rel}: {reason}")

    candidates: list[tuple[Path, tuple[int, int]]] = []
    for path in files:
        rel = path.relative_to(root).as_posix()
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            skip(rel, f"not an image file (suffix {path.suffix or 'none'!r})")
            continue
        try:
            candidates.append((path, probe_reference(path, min_side, crop, max_pixels, max_side)))
        except ReferenceSkipped as exc:
            skip(rel, str(exc))
    names = reference_names([p.relative_to(root) for p, _ in candidates])
    refs = [Reference(name, path, size) for name, (path, size) in zip(names, candidates, strict=True)]
    return ScanResult(refs, skipped)


def _read_with_opencv(path: Path) -> np.ndarray:
    import cv2

    data = np.fromfile(str(path), dtype=np.uint8)
    arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    if arr is None:
        raise ReferenceSkipped("not a readable image (corrupt or unknown format)")
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA)
    elif arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
    return arr


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        a = arr.astype(np.float64)
        scale = 255.0 if np.nanmax(a) <= 1.0 else 1.0
        return np.clip(np.rint(np.nan_to_num(a) * scale), 0, 255).astype(np.uint8)
    # 16-bit (and 32-bit integer images holding 16-bit values, PIL mode "I")
    return np.clip(np.rint(arr.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)


def _composite_white(arr: np.ndarray) -> np.ndarray:
    """RGBA or LA uint8 -> RGB uint8 over a white background."""
    colour = arr[..., :-1].astype(np.float32)
    alpha = arr[..., -1:].astype(np.float32) / 255.0
    out = np.rint(colour * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    return np.repeat(out, 3, axis=2) if out.shape[2] == 1 else out


def _pil_to_rgb(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode == "P" or mode == "PA":
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("1", "L", "RGB"):
        arr = np.asarray(img.convert("L") if mode == "1" else img)
    elif mode in ("RGBA", "LA"):
        arr = np.asarray(img)
    elif mode == "La":
        arr = np.asarray(img.convert("LA"))
    elif mode == "RGBa":
        arr = np.asarray(img.convert("RGBA"))
    elif mode in ("I", "F") or mode.startswith("I;16"):
        arr = np.asarray(img)
        if mode.startswith("I;16") and arr.dtype.byteorder not in ("=", "|"):
            arr = arr.astype(arr.dtype.newbyteorder("="))
    else:  # CMYK, YCbCr, LAB, HSV, RGBX ...
        arr = np.asarray(img.convert("RGB"))
    return _array_to_rgb(arr)


def _array_to_rgb(arr: np.ndarray) -> np.ndarray:
    arr = _to_uint8(arr)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.shape[2] in (2, 4):
        return _composite_white(arr)
    if arr.shape[2] == 1:
        return np.repeat(arr, 3, axis=2)
    return arr[..., :3]


def _draft_size(size: tuple[int, int], max_side: int | None, crop: tuple[int, int] | None,
                oriented: tuple[int, int]) -> tuple[int, int]:
    """The smallest (width, height) in file orientation that ``max_side`` / ``crop`` still shrink from."""
    w, h = size
    scale = 1.0
    if crop is not None:
        scale = max(crop[0] / oriented[0], crop[1] / oriented[1])
    elif max_side is not None:
        scale = max_side / max(w, h)
    return max(1, math.ceil(w * min(scale, 1.0))), max(1, math.ceil(h * min(scale, 1.0)))


def decode_reference(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS, max_side: int | None = None,
                     crop: tuple[int, int] | None = None) -> np.ndarray:
    """Decode one file to RGB uint8 ``HxWx3`` (EXIF orientation applied); ``ReferenceSkipped`` on failure.
    An image over ``max_pixels`` is decoded only when ``max_side`` or ``crop`` will shrink it (a JPEG at
    the coarsest DCT scale that keeps it at least that large; ``normalise_reference`` shrinks it after)."""
    shrunk = max_side is not None or crop is not None
    try:
        with _opened(path) as img:
            w, h = img.size
            if w * h > max_pixels:
                if not shrunk:
                    raise ReferenceSkipped(_guard_message(w, h, max_pixels))
                if img.format == "JPEG":
                    img.draft(img.mode, _draft_size((w, h), max_side, crop, _oriented_size(img)))
            img.load()
            img = ImageOps.exif_transpose(img)
            try:
                return np.ascontiguousarray(_pil_to_rgb(img))
            except (OSError, ValueError, TypeError):  # a pixel layout PIL cannot convert
                return np.ascontiguousarray(_array_to_rgb(_read_with_opencv(path)))
    except ReferenceSkipped:
        raise
    except UnidentifiedImageError:
        return np.ascontiguousarray(_array_to_rgb(_read_with_opencv(path)))
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ReferenceSkipped(f"corrupt or truncated image ({exc})") from None


def read_image(path: str | Path) -> np.ndarray:
    """An image file as RGB uint8 ``HxWx3``, normalised as a reference is (``decode_reference``); a missing
    or unreadable file is a one-line ``DatasetError`` naming it."""
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"{p}: image file does not exist")
    try:
        return decode_reference(p)
    except ReferenceSkipped as exc:
        raise DatasetError(f"{p}: not a readable image ({exc})") from None


def normalise_reference(arr: np.ndarray, max_side: int | None = None, crop: tuple[int, int] | None = None,
                        min_side: int = MIN_SIDE) -> np.ndarray:
    """Shrink (never enlarge) to ``max_side`` or to cover ``crop`` and centre-crop; RGB uint8 ``HxWx3``."""
    h, w = arr.shape[:2]
    if crop is not None:
        _check_size((w, h), min_side, crop, w * h)
        cw, ch = crop
        scale = max(cw / w, ch / h)
        if scale < 1.0:
            nw, nh = max(cw, round(w * scale)), max(ch, round(h * scale))
            arr = _resize(arr, nw, nh)
            h, w = nh, nw
        top, left = (h - ch) // 2, (w - cw) // 2
        return np.ascontiguousarray(arr[top:top + ch, left:left + cw])
    if max_side is not None and max(h, w) > max_side:
        scale = max_side / max(h, w)
        arr = _resize(arr, max(1, round(w * scale)), max(1, round(h * scale)))
    _check_size((arr.shape[1], arr.shape[0]), min_side, None, arr.shape[0] * arr.shape[1])
    return np.ascontiguousarray(arr)


def _resize(arr: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.asarray(Image.fromarray(arr).resize((width, height), Image.Resampling.LANCZOS))
