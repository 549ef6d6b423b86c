"""KADID-10k compression types 9-10: JPEG 2000 (OpenJPEG via Pillow) and JPEG (libjpeg, nvJPEG or Kornia).

Both are real codecs. Images go to 8 bits by rounding to nearest (ARNIQA truncates with ``.byte()``,
a -0.5/255 bias we do not copy). The exact paths run one image at a time on the CPU; CUDA batches make
a transparent round trip through the CPU unless a GPU codec is chosen.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Mapping
from typing import Protocol

import numpy as np
import torch

from synthiqa.distortions.base import Distortion, LevelTable, host_param
from synthiqa.distortions.blur import round_half_up
from synthiqa.distortions.color import map_uint8_images
from synthiqa.distortions.fastpath import (
    apply_lut,
    image_range,
    map_images,
    register_uint8_path,
    stretch_lut,
)
from synthiqa.distortions.registry import register_distortion
from synthiqa.errors import DistortionInputError

JPEG_CODECS = ("libjpeg", "nvjpeg", "kornia")
JPEG2000_MAX_RESOLUTIONS = 8


# -- JPEG -----------------------------------------------------------------------------------------
def encode_jpeg_libjpeg(image: np.ndarray, quality: int) -> bytes:
    """Baseline JPEG of a uint8 RGB ``[H,W,3]`` image with libjpeg defaults (4:2:0, IJG tables scaled
    by ``quality`` 1-100); byte-identical to Pillow's ``save(format="JPEG", quality=quality)``."""
    import cv2

    bgr = np.ascontiguousarray(image[..., ::-1])
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    return buf.tobytes()


def _libjpeg_roundtrip(images: torch.Tensor, qualities: list[int]) -> torch.Tensor:
    import cv2

    def roundtrip(i: int, bgr: np.ndarray) -> np.ndarray:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, qualities[i]])
        return cv2.imdecode(buf, cv2.IMREAD_COLOR)

    return map_uint8_images(images, roundtrip, bgr=True)


class JpegBackend(Protocol):
    """A batched JPEG codec as the round trip uses it (torchvision's list API): ``encode`` one quality
    for a list of uint8 ``[3,H,W]`` images on one device, returning the encoded bytes as uint8 tensors on
    that device; ``decode`` a list of encoded uint8 CPU tensors to uint8 ``[3,H,W]`` images on
    ``device``."""

    def encode(self, images: list[torch.Tensor], quality: int) -> list[torch.Tensor]: ...

    def decode(self, data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]: ...


class TorchvisionJpeg:
    """``torchvision.io.encode_jpeg`` / ``decode_jpeg`` on lists: nvJPEG for CUDA tensors (4:4:4 chroma),
    libjpeg for CPU ones (4:2:0, the ``libjpeg`` codec's bytes). torchvision >= 0.29 marks these functions
    deprecated in favour of TorchCodec; the warning is silenced because callers cannot act on it."""

    def encode(self, images: list[torch.Tensor], quality: int) -> list[torch.Tensor]:
        from torchvision.io import encode_jpeg

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return list(encode_jpeg(images, quality=quality))

    def decode(self, data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
        from torchvision.io import decode_jpeg

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return list(decode_jpeg(data, device=device))


def gather_to_host(parts: list[torch.Tensor]) -> list[torch.Tensor]:
    """Encoded streams (1-D uint8, one device) as CPU tensors with one copy: concatenated where they
    are, copied once (into pinned memory, the only wait of the batch on CUDA), split back into views.
    Lengths are tensor metadata, so nothing is read from the device before the copy."""
    if not parts:
        return []
    lengths = [p.numel() for p in parts]
    flat = torch.cat([p.reshape(-1) for p in parts])
    if flat.device.type == "cuda":
        host = torch.empty(flat.numel(), dtype=torch.uint8, pin_memory=True)
        host.copy_(flat, non_blocking=True)
        torch.cuda.current_stream(flat.device).synchronize()
    else:
        host = flat
    return list(host.split(lengths))


_FALLBACK_WARNED: set[str] = set()


def _warn_once(key: str, text: str) -> None:
    if key not in _FALLBACK_WARNED:
        _FALLBACK_WARNED.add(key)
        warnings.warn(text, RuntimeWarning, stacklevel=3)


def batched_jpeg_roundtrip(images: torch.Tensor, qualities: list[int],
                           backend: JpegBackend | None = None) -> torch.Tensor:
    """JPEG round trip of float ``[B,3,H,W]`` images in [0, 1] through a batched codec on their device:
    one ``encode`` call per distinct quality, one copy of all encoded streams to the host
    (``gather_to_host``), one ``decode`` call for the batch. Fallbacks: when the device encoder fails
    (no nvJPEG in this build, out of device memory) the batch takes the CPU ``libjpeg`` codec; when the
    decoder fails, the streams are decoded (again) on the CPU and uploaded; each warns once."""
    backend = TorchvisionJpeg() if backend is None else backend
    device = images.device
    u8 = (images.detach() * 255.0).round_().clamp_(0, 255).to(torch.uint8).contiguous()
    encoded: list[torch.Tensor | None] = [None] * len(qualities)
    try:
        for q in sorted(set(qualities)):
            idx = [i for i, qi in enumerate(qualities) if qi == q]
            for i, data in zip(idx, backend.encode([u8[i] for i in idx], q), strict=True):
                encoded[i] = data
    except RuntimeError as exc:
        _warn_once(f"encode:{device.type}", f"jpeg: the {device.type} encoder failed ({exc}); using libjpeg "
                                            "on the CPU for such batches")
        return _libjpeg_roundtrip(images, qualities)
    host = gather_to_host([e for e in encoded if e is not None])
    try:
        decoded = backend.decode(host, device)
    except RuntimeError as exc:
        _warn_once(f"decode:{device.type}", f"jpeg: the {device.type} decoder failed ({exc}); decoding on "
                                            "the CPU")
        decoded = [d.to(device) for d in backend.decode(host, torch.device("cpu"))]
    return torch.stack(decoded).to(images.dtype).div_(255.0)


def _kornia_jpeg(images: torch.Tensor, qualities: list[int]) -> torch.Tensor:
    import kornia

    q = torch.tensor(qualities, dtype=images.dtype, device=images.device)
    return kornia.enhance.jpeg_codec_differentiable(images, q)


@register_distortion
class JPEG(Distortion):
    name = "jpeg"
    kadid_id = 10
    group = "jpeg"
    tables = {
        "kadid": LevelTable({"quality": (43, 36, 24, 7, 4)}),
        "arniqa": LevelTable({"quality": (43, 36, 24, 7, 4)}),
    }
    exact_on = ("cpu",)
    approximation = ("8-bit conversion rounds (ARNIQA truncates); option codec='nvjpeg' (default on CUDA) "
                     "is real JPEG with 4:4:4 chroma, so fewer colour artefacts; codec='kornia' is "
                     "Kornia's differentiable approximation; codec='libjpeg' (default on CPU) is exact")
    description = ("JPEG compression at quality 43, 36, 24, 7, 4 (IJG scale 1-100, rounded half up at "
                   "fractional levels); libjpeg baseline 4:2:0 as Pillow/torchvision/MATLAB imwrite")

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        qualities = [max(1, min(100, q)) for q in round_half_up(host_param(params, "quality"))]
        codec = self.options.get("codec") or ("nvjpeg" if images.is_cuda else "libjpeg")
        if codec == "libjpeg":
            return _libjpeg_roundtrip(images, qualities)
        if codec == "nvjpeg":
            if not images.is_cuda:
                raise DistortionInputError("jpeg: codec 'nvjpeg' needs CUDA images")
            return batched_jpeg_roundtrip(images, qualities)
        if codec == "kornia":
            return _kornia_jpeg(images, qualities)
        raise DistortionInputError(f"jpeg: unknown codec {codec!r}; choose one of {', '.join(JPEG_CODECS)}")


@register_uint8_path("jpeg")
def _jpeg_uint8(dist: Distortion, images: np.ndarray, params: Mapping[str, torch.Tensor], wrap: bool,
                out: np.ndarray) -> bool:
    """uint8 fast path of the libjpeg codec: the wrap's two stretches are lookup tables around it."""
    import cv2

    if dist.options.get("codec") not in (None, "libjpeg"):
        return False  # other codecs take the float path
    qualities = [max(1, min(100, q)) for q in round_half_up(params["quality"])]

    def one(i: int) -> None:
        bgr = cv2.cvtColor(images[i], cv2.COLOR_RGB2BGR)
        lut = stretch_lut(*image_range(bgr), "opencv") if wrap else None
        if lut is not None:
            apply_lut(bgr, lut, bgr)
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, qualities[i]])
        if not ok:
            raise RuntimeError("OpenCV could not encode a JPEG")
        decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR_RGB)
        lut = stretch_lut(*image_range(decoded), "nearest") if wrap else None
        if lut is not None:
            apply_lut(decoded, lut, out[i])
        else:
            out[i] = decoded

    map_images(images.shape[0], one)
    return True


# -- JPEG 2000 ------------------------------------------------------------------------------------
def jpeg2000_resolutions(height: int, width: int) -> int:
    """Wavelet resolution count: 8 (ARNIQA's setting), fewer when the image is too small for OpenJPEG
    (it needs min side >= 2**(resolutions-1))."""
    return max(1, min(JPEG2000_MAX_RESOLUTIONS, int(math.floor(math.log2(min(height, width)))) + 1))


def encode_jpeg2000(image: np.ndarray, ratio: float, irreversible: bool = False) -> bytes:
    """JPEG 2000 codestream of a uint8 RGB ``[H,W,3]`` image at compression ratio ``ratio`` (one quality
    layer, OpenJPEG via Pillow, LRCP progression). ``irreversible`` selects the 9/7 wavelet instead of
    Pillow's default reversible 5/3 (which ARNIQA uses)."""
    from PIL import Image

    h, w = image.shape[:2]
    buf = io.BytesIO()
    Image.fromarray(image, "RGB").save(
        buf, format="JPEG2000", quality_mode="rates", quality_layers=[float(ratio)],
        num_resolutions=jpeg2000_resolutions(h, w), prog_order="LRCP", irreversible=irreversible,
    )
    return buf.getvalue()


def decode_image(data: bytes) -> np.ndarray:
    """Decode an encoded image with Pillow to uint8 RGB ``[H,W,3]``."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.array(im.convert("RGB"))


@register_distortion
class JPEG2000(Distortion):
    name = "jpeg2000"
    kadid_id = 9
    group = "jpeg"
    tables = {
        "kadid": LevelTable({"ratio": (16, 32, 45, 120, 400)}, {"irreversible": True}),
        "arniqa": LevelTable({"ratio": (16, 32, 45, 120, 170)}),
    }
    exact_on = ("cpu",)
    approximation = ("OpenJPEG (Pillow) for both profiles; arniqa uses ARNIQA's exact settings (reversible "
                     "5/3 wavelet); MATLAB imwrite's encoder is not OpenJPEG, so kadid only approximates it "
                     "(option irreversible=True: the 9/7 wavelet of lossy JPEG 2000, assumed for MATLAB's "
                     "lossy mode); 8-bit conversion rounds (ARNIQA truncates); GPU batches run on the CPU")
    description = ("JPEG 2000 at compression ratio 16, 32, 45, 120, 400 (kadid; arniqa level 5 = 170), "
                   "i.e. 24/ratio bits per pixel; one quality layer, 8 wavelet resolutions (fewer below "
                   "128 px), LRCP")

    def apply(self, images: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        ratios = host_param(params, "ratio").to(torch.float64).tolist()
        irreversible = bool(self.options.get("irreversible", False))

        def roundtrip(i: int, image: np.ndarray) -> np.ndarray:
            return decode_image(encode_jpeg2000(image, ratios[i], irreversible))

        return map_uint8_images(images, roundtrip)
