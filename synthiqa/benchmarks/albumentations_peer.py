"""Albumentations' side of ``synthiqa bench speed``: its ops for the kadid distortions and their timing.

Stand-alone on purpose (NumPy, OpenCV and Albumentations only, nothing of synthiqa): ``bench speed
--peer-python PY`` runs this very file with another interpreter, e.g. a virtual environment holding
AlbumentationsX, which installs under the same import name and is AGPL (a benchmark peer only, never a
dependency). Run as a script it reads a JSON request on stdin (``image``: an ``.npy`` uint8 HxWx3 file,
``batch``, ``repeats``, ``threads``, ``ops``: distortion -> level parameters) and prints one JSON line:
``version`` and ``rates`` (distortion -> images/s, median of ``repeats`` after one warm-up).
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

Params = dict[str, float]


def _odd(n: float) -> int:
    k = max(3, int(round(n)))
    return k if k % 2 else k + 1


def _gamma_for(value_at_half: float) -> float:
    """Gamma g with 0.5**g equal to a tone curve's value at 0.5 (how brighten/darken are approximated)."""
    return math.log(min(max(value_at_half, 1e-3), 0.999)) / math.log(0.5)


def _pixelate_scale(p: Params) -> float:
    return 0.95 - p["strength"] ** 0.6


def albumentations_ops() -> dict[str, tuple[str, Callable[[Params], Any]]]:
    """distortion -> (label, transform factory from the level's parameters)."""
    import albumentations as A
    import cv2

    nearest = {"downscale": cv2.INTER_NEAREST, "upscale": cv2.INTER_NEAREST}
    return {
        "gaussian_blur": ("GaussianBlur(sigma, ks 2*ceil(2s)+1)", lambda p: A.GaussianBlur(
            blur_limit=(_odd(2 * math.ceil(2 * p["sigma"]) + 1),) * 2, sigma_limit=(p["sigma"],) * 2, p=1)),
        "lens_blur": ("Defocus(radius)", lambda p: A.Defocus(
            radius=(int(p["radius"]),) * 2, alias_blur=(0.1, 0.1), p=1)),
        "motion_blur": ("MotionBlur(odd length)", lambda p: A.MotionBlur(
            blur_limit=(_odd(p["length"]),) * 2, angle_range=(0, 180), direction_range=(0, 0),
            allow_shifted=False, p=1)),
        "color_saturation_hsv": ("ColorJitter(saturation=max(f,0))", lambda p: A.ColorJitter(
            brightness=(1, 1), contrast=(1, 1), saturation=(max(p["factor"], 0.0),) * 2, hue=(0, 0), p=1)),
        "jpeg": ("ImageCompression(jpeg, quality)", lambda p: A.ImageCompression(
            quality_range=(int(p["quality"]),) * 2, p=1)),
        "white_noise": ("GaussNoise(std=sqrt(var))", lambda p: A.GaussNoise(
            std_range=(math.sqrt(p["variance"]),) * 2, per_channel=True, p=1)),
        "impulse_noise": ("SaltAndPepper(amount=density)", lambda p: A.SaltAndPepper(
            amount=(p["density"],) * 2, salt_vs_pepper=(0.5, 0.5), p=1)),
        "multiplicative_noise": ("MultiplicativeNoise(uniform, same var)", lambda p: A.MultiplicativeNoise(
            multiplier=(1 - math.sqrt(3 * p["variance"]), 1 + math.sqrt(3 * p["variance"])),
            per_channel=True, elementwise=True, p=1)),
        "brighten": ("RandomGamma(same f(0.5))", lambda p: A.RandomGamma(
            gamma_limit=(100 * _gamma_for(0.5 + 0.5 * p["amount"]),) * 2, p=1)),
        "darken": ("RandomGamma(same f(0.5))", lambda p: A.RandomGamma(
            gamma_limit=(100 * _gamma_for(0.5 - 0.5 * p["amount"]),) * 2, p=1)),
        "mean_shift": ("RandomBrightnessContrast(brightness=offset)", lambda p: A.RandomBrightnessContrast(
            brightness_limit=(p["offset"],) * 2, contrast_limit=(0, 0), p=1)),
        "pixelate": ("Downscale(nearest/nearest)", lambda p: A.Downscale(
            scale_range=(_pixelate_scale(p),) * 2, interpolation_pair=nearest, p=1)),
        "quantization": ("Posterize(bits=round(log2 N))", lambda p: A.Posterize(
            num_bits=(max(1, round(math.log2(p["levels"]))),) * 2, p=1)),
        "color_block": ("CoarseDropout(32x32, random_uniform)", lambda p: A.CoarseDropout(
            num_holes_range=(int(p["blocks"]),) * 2, hole_height_range=(32, 32), hole_width_range=(32, 32),
            fill="random_uniform", p=1)),
        "high_sharpen": ("UnsharpMask(13, sigma 3, alpha 1)", lambda p: A.UnsharpMask(
            blur_limit=(13, 13), sigma_limit=(3, 3), alpha=(1.0, 1.0), threshold=0, p=1)),
        "contrast_change": ("RandomBrightnessContrast(contrast=amount)",
                            lambda p: A.RandomBrightnessContrast(brightness_limit=(0, 0),
                                                                 contrast_limit=(p["amount"],) * 2, p=1)),
    }


def time_albumentations(images: list[Any], ops: dict[str, Params], repeats: int,
                        ) -> dict[str, tuple[str, float]]:
    """distortion -> (op label, images/s) of each op Albumentations has, one image at a time."""
    known = albumentations_ops()
    out = {}
    for name, p in ops.items():
        if name not in known:
            continue
        label, make = known[name]
        transform = make(p)

        def run(tr: Any = transform) -> None:
            for im in images:
                tr(image=im)["image"]

        run()  # warm-up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
        out[name] = (label, len(images) / statistics.median(times))
    return out


def main() -> None:
    import albumentations
    import cv2
    import numpy as np

    request = json.load(sys.stdin)
    if request.get("threads") is not None:
        cv2.setNumThreads(int(request["threads"]))
    image = np.load(request["image"])
    images = [image.copy() for _ in range(int(request["batch"]))]
    rates = time_albumentations(images, request["ops"], int(request["repeats"]))
    print(json.dumps({"version": albumentations.__version__,
                      "rates": {k: v[1] for k, v in rates.items()}}))


if __name__ == "__main__":
    main()
