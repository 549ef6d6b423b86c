"""Add your own distortion: subclass ``Distortion``, register it, then use it like a built-in one.

Run: ``python examples/custom_distortion.py [grid.png]``. The new ``vignette`` works in chains
(``parse_chain``/``apply_chains``, so also ``synthiqa generate``), and in the example grid.
"""

from __future__ import annotations

import sys

import torch

from synthiqa.distortions import (
    Distortion,
    LevelTable,
    SampleRNG,
    apply_chains,
    format_chain,
    parse_chain,
    register_distortion,
)
from synthiqa.reports.grid import render_distortion_grid


@register_distortion
class Vignette(Distortion):
    """Darkened corners: ``y = x (1 - strength * r^2)``, r = distance to a drawn centre (about 1 at corners).

    ``strength`` comes from the level table; the centre offset ``cx, cy`` (in half-widths, uniform in
    [-0.2, 0.2]) is drawn per image, so it is recorded and replayable.
    """

    name = "vignette"
    group = "extra"  # or one of the ARNIQA groups, with "kadid"/"arniqa" tables, to join those profiles
    tables = {"*": LevelTable({"strength": (0.15, 0.3, 0.45, 0.6, 0.8)})}  # "*": usable in any profile
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


def main(out: str = "vignette_grid.png") -> None:
    from synthiqa.datasets.builtin import builtin_reference

    image = torch.from_numpy(builtin_reference("astronaut").copy()).permute(2, 0, 1)  # uint8 [3,H,W]
    batch = image.unsqueeze(0).expand(2, -1, -1, -1)
    chains = [parse_chain("vignette:3>jpeg:2", "kadid"), parse_chain("gaussian_blur:2>vignette:5", "kadid")]
    distorted, records = apply_chains(batch, chains, seeds=0, profile="kadid")
    for chain, steps in zip(chains, records, strict=True):
        print(format_chain(chain), [{k: v for k, v in step.items() if k != "seed"} for step in steps])
    render_distortion_grid(image, "kadid", names=["vignette", "gaussian_blur"], out=out, size=192)
    print(f"wrote {out}; distorted batch {tuple(distorted.shape)}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
