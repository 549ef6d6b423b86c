"""Add your own distortion: subclass ``Distortion``, register it, then use it like a built-in one.

Run: ``python examples/custom_distortion.py [OUT_DIR]``. The new ``vignette`` joins the ``kadid`` and
``arniqa`` profiles (it has a table for each and an ARNIQA group), so it works in ``parse_chain`` /
``apply_chains``, in chain sampling and ``synthiqa generate``, and in the example grid.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

from synthiqa.distortions import (
    Distortion,
    LevelTable,
    SampleRNG,
    apply_chains,
    format_chain,
    list_distortions,
    parse_chain,
    register_distortion,
)


@register_distortion
class Vignette(Distortion):
    """Darkened corners: ``y = x (1 - strength * r^2)``, r = distance to a drawn centre (about 1 at corners).

    ``strength`` comes from the profile's level table; the centre offset ``cx, cy`` (in half-widths,
    uniform in [-0.2, 0.2]) is drawn per image, so every draw is recorded and replayable.
    """

    name = "vignette"
    group = "brightness_change"  # an ARNIQA group: chain sampling may pick it from that group
    tables = {  # one table per profile it joins; "*" instead would make it an any-profile extra
        "kadid": LevelTable({"strength": (0.15, 0.3, 0.45, 0.6, 0.8)}),
        "arniqa": LevelTable({"strength": (0.1, 0.2, 0.35, 0.5, 0.7)}),
    }
    description = "radial darkening towards the corners around a drawn centre"

    def draw(self, rng: SampleRNG, levels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"cx": rng.uniform(low=-0.2, high=0.2), "cy": rng.uniform(low=-0.2, high=0.2)}

    def apply(self, images: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        _, _, h, w = images.shape
        ys = torch.linspace(-1, 1, h, device=images.device).view(1, h, 1)
        xs = torch.linspace(-1, 1, w, device=images.device).view(1, 1, w)
        cx = params["cx"].to(images).view(-1, 1, 1)
        cy = params["cy"].to(images).view(-1, 1, 1)
        r2 = ((xs - cx) ** 2 + (ys - cy) ** 2) / 2
        strength = params["strength"].to(images).view(-1, 1, 1, 1)
        return images * (1 - strength * r2.unsqueeze(1)).clamp(0, 1)


def main(out_dir: str | None = None) -> Path:
    """Chains, a grid and a generated dataset with the new distortion; returns the output folder."""
    from PIL import Image

    from synthiqa.datasets.builtin import builtin_reference
    from synthiqa.datasets.generate import GenerateConfig, generate
    from synthiqa.reports.grid import render_distortion_grid

    out = Path(out_dir or tempfile.mkdtemp(prefix="vignette_"))
    print("kadid now has", len(list_distortions("kadid")), "distortions, the last is",
          list_distortions("kadid")[-1])

    # 1. chains: parse, apply on a batch (any device), read back every drawn parameter
    image = torch.from_numpy(builtin_reference("astronaut").copy()).permute(2, 0, 1)  # uint8 [3,H,W]
    batch = image.unsqueeze(0).expand(2, -1, -1, -1)
    chains = [parse_chain("vignette:3>jpeg:2", "arniqa"), parse_chain("gaussian_blur:2>vignette:5", "arniqa")]
    distorted, records = apply_chains(batch, chains, seeds=0, profile="arniqa")
    for chain, steps in zip(chains, records, strict=True):
        print(format_chain(chain), [{k: v for k, v in s.items() if k != "seed"} for s in steps])

    # 2. the example grid (rows: distortions, columns: levels)
    render_distortion_grid(image, "kadid", names=["vignette", "darken"], out=out / "grid.png", size=128)

    # 3. a generated dataset: every kadid type x 5 levels, the vignette included
    refs = out / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    Image.fromarray(builtin_reference("coffee")[100:148, 200:264].copy()).save(refs / "coffee.png")
    summary = generate(GenerateConfig(out=str(out / "dataset"), ref_dir=str(refs), profile="kadid",
                                      mode="grid", labels=("level",), device="cpu"), progress=False)
    print(f"wrote {out / 'grid.png'} and {summary.images_written} images in {out / 'dataset'}")
    return out


if __name__ == "__main__":
    main(*sys.argv[1:2])
