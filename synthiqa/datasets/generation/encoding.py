"""Lossless image encoding with OpenCV: the bytes every engine and output container writes."""

from __future__ import annotations

import numpy as np

from synthiqa.errors import DatasetError

#: OpenCV encoder settings by format, as (flag name, value name) pairs: for PNG the Up row filter instead of
#: OpenCV's default Sub (zlib level 1 and the RLE strategy stay OpenCV's defaults). On photographs and
#: their distorted copies it encodes 2-5% faster at about the same size (-6% to +2% measured on the
#: built-in and Kodak references and their distortions).
ENCODE_SETTINGS: dict[str, tuple[tuple[str, str], ...]] = {
    "png": (("IMWRITE_PNG_FILTER", "IMWRITE_PNG_FILTER_UP"),),
}


def encode_params(image_format: str) -> list[int]:
    """The ``cv2.imencode``/``cv2.imwrite`` parameter list synthiqa encodes ``image_format`` with."""
    import cv2

    return [int(getattr(cv2, name)) for pair in ENCODE_SETTINGS.get(image_format, ()) for name in pair]


def encode_image(rgb: np.ndarray, image_format: str) -> bytes:
    """Lossless encoding of an RGB uint8 ``HxWx3`` array with OpenCV (``encode_params``): byte for byte
    what ``cv2.imwrite(path, bgr, encode_params(image_format))`` writes for the same pixels."""
    import cv2

    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(f".{image_format}", bgr, encode_params(image_format))
    if not ok:
        raise DatasetError(f"OpenCV could not encode a {rgb.shape[1]}x{rgb.shape[0]} image as {image_format}")
    return buf.tobytes()
