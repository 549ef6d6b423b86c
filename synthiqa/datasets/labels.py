"""Labels for generated images: level-based quality and a full-reference pseudo-MOS.

Both labels are per-image deterministic functions (of the chain, or of the image and its reference), so
shards, resumed runs and merged runs give the same values.

``level_quality`` (0..100, higher is better): the pristine image is 100. One distortion step has quality
``q`` = the profile's own law where it has one (``Profile.step_quality``; ``basic8``: the CENIQA guide's
range for its type at its severity, ``synthiqa.distortions.basic8.severity_quality(name, level / 5)``),
and ``q = 100 - 16 * level`` (84 at level 1 .. 20 at level 5) under any other profile. A chain multiplies
its steps' qualities as fractions: ``100 * prod(q_i / 100)``. The multiplicative rule for chains is a
heuristic, not fitted to human scores.

``fr_pseudo_mos`` (0..100, higher is better): four full-reference metrics from piq that need no weights,
computed batched on the images' device: HaarPSI (higher is better), MDSI with ``combination="sum"``
(lower is better), VSI (higher is better) and chromatic multi-scale GMSD (MS-GMSDc, lower is better).
Each raw value ``v`` is mapped to ``s = clip((v - worst) / (perfect - worst), 0, 1)``, where ``perfect`` is
the metric's value for identical images and ``worst`` is a fixed anchor (``FR_ANCHORS``); the pseudo-MOS
is ``100 * mean(s)``. The raw values are kept as ``fr_haarpsi``, ``fr_mdsi``, ``fr_vsi``, ``fr_ms_gmsd``.
``fr_components`` calls piq directly; ``synthiqa generate`` computes the same values with
``fr_metrics.ReferenceFR``, which computes each reference's side once (equal to piq's per image).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from synthiqa.datasets.records import ScoreInfo
from synthiqa.distortions.chains import ChainOp
from synthiqa.distortions.registry import get_profile
from synthiqa.errors import ConfigError

LEVEL_QUALITY = "level_quality"
FR_PSEUDO_MOS = "fr_pseudo_mos"
#: Label families a user can ask for with ``--labels``.
LABEL_FAMILIES = ("level", "fr")
#: Per-level quality loss of one step outside ``basic8`` (quality points per level).
QUALITY_PER_LEVEL = 16.0


@dataclass(frozen=True)
class FRAnchor:
    """Affine anchors of one FR metric: its value for identical images and the value mapped to 0."""

    perfect: float
    worst: float


#: ``worst`` anchors: the 1st percentile (99th for lower-is-better metrics), rounded to 2 decimals, of each
#: metric over ``synthiqa generate --mode grid --profile kadid`` on the six built-in references at 384 px
#: (750 images; measured 0.233, 0.625, 0.799, 0.295 with ``fr_anchor_quantiles``). A fixed calibration,
#: not a fit to human scores.
FR_ANCHORS: dict[str, FRAnchor] = {
    "fr_haarpsi": FRAnchor(perfect=1.0, worst=0.23),
    "fr_mdsi": FRAnchor(perfect=0.0, worst=0.63),
    "fr_vsi": FRAnchor(perfect=1.0, worst=0.80),
    "fr_ms_gmsd": FRAnchor(perfect=0.0, worst=0.29),
}


def _haarpsi(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    import piq

    return piq.haarpsi(x, y, reduction="none", data_range=1.0)


def _mdsi(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    import piq

    return piq.mdsi(x, y, reduction="none", data_range=1.0, combination="sum")


def _vsi(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    import piq

    return piq.vsi(x, y, reduction="none", data_range=1.0)


def _ms_gmsd(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    import piq

    return piq.multi_scale_gmsd(x, y, reduction="none", data_range=1.0, chromatic=True)


#: Component name -> (metric on float [B,3,H,W] in [0,1], lower_better).
FR_COMPONENTS: dict[str, tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], bool]] = {
    "fr_haarpsi": (_haarpsi, False),
    "fr_mdsi": (_mdsi, True),
    "fr_vsi": (_vsi, False),
    "fr_ms_gmsd": (_ms_gmsd, True),
}
#: Smallest side the four metrics accept (HaarPSI needs 2^(scales+1) = 16, MS-GMSD 2^4 + 1 = 17).
FR_MIN_SIDE = 17


def parse_label_families(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"level,fr"`` -> ("level", "fr") in canonical order; a one-line error for unknown names."""
    parts = [p.strip() for p in (text.split(",") if isinstance(text, str) else text) if p.strip()]
    bad = [p for p in parts if p not in LABEL_FAMILIES]
    if bad or not parts:
        raise ConfigError(f"--labels {','.join(parts) or text!r}: choose from {', '.join(LABEL_FAMILIES)}")
    return tuple(f for f in LABEL_FAMILIES if f in parts)


def label_columns(families: Sequence[str]) -> list[str]:
    """Manifest label columns for the requested families, in a fixed order."""
    cols = []
    if "level" in families:
        cols.append(LEVEL_QUALITY)
    if "fr" in families:
        cols += [FR_PSEUDO_MOS, *FR_COMPONENTS]
    return cols


def label_infos(families: Sequence[str]) -> dict[str, ScoreInfo]:
    """Range and direction of every label column (what ``dataset.json`` records)."""
    infos = {LEVEL_QUALITY: ScoreInfo(LEVEL_QUALITY, 0.0, 100.0, False),
             FR_PSEUDO_MOS: ScoreInfo(FR_PSEUDO_MOS, 0.0, 100.0, False),
             "fr_haarpsi": ScoreInfo("fr_haarpsi", 0.0, 1.0, False),
             "fr_mdsi": ScoreInfo("fr_mdsi", 0.0, 1.0, True),
             "fr_vsi": ScoreInfo("fr_vsi", 0.0, 1.0, False),
             "fr_ms_gmsd": ScoreInfo("fr_ms_gmsd", 0.0, 1.0, True)}
    return {c: infos[c] for c in label_columns(families)}


def primary_label(families: Sequence[str]) -> str:
    """The label written to ``labels.csv`` and the KADID/pyiqa files: the FR pseudo-MOS if computed."""
    return FR_PSEUDO_MOS if "fr" in families else LEVEL_QUALITY


def step_quality(name: str, level: float, profile: str) -> float:
    """Quality (0..100) of one step at a level in [1, 5]; see the module docstring."""
    law = get_profile(profile).step_quality
    if law is not None:
        return float(law(name, float(level)))
    return 100.0 - QUALITY_PER_LEVEL * float(level)


def level_quality(chain: Sequence[ChainOp], profile: str) -> float:
    """Level-based quality of a chain (0..100; 100 for the empty chain)."""
    q = 100.0
    for op in chain:
        q *= step_quality(op.name, op.level, profile) / 100.0
    return q


@torch.no_grad()
def fr_components(distorted: torch.Tensor, reference: torch.Tensor) -> dict[str, torch.Tensor]:
    """Raw FR metric values, float64 CPU ``[B]`` each, for float ``[B,3,H,W]`` images in [0, 1]."""
    if min(distorted.shape[-2:]) < FR_MIN_SIDE:
        raise ConfigError(f"FR labels need images of at least {FR_MIN_SIDE} px per side")
    x = distorted.float().clamp(0, 1)
    y = reference.float().clamp(0, 1).expand_as(x)
    return {name: fn(x, y).reshape(-1).double().cpu() for name, (fn, _) in FR_COMPONENTS.items()}


def fuse_fr(components: Mapping[str, torch.Tensor],
            anchors: Mapping[str, FRAnchor] = FR_ANCHORS) -> torch.Tensor:
    """Pseudo-MOS (0..100, float64 ``[B]``): the mean of the anchored, clipped components, times 100."""
    parts = []
    for name, values in components.items():
        a = anchors[name]
        parts.append(((values.double() - a.worst) / (a.perfect - a.worst)).clamp(0.0, 1.0))
    return 100.0 * torch.stack(parts).mean(0)


def fr_anchor_quantiles(values: Mapping[str, Sequence[float]], q: float = 0.01) -> dict[str, float]:
    """``worst`` anchors from observed raw values: the q-quantile (1 - q for lower-is-better metrics)."""
    out = {}
    for name, vals in values.items():
        t = torch.as_tensor(list(vals), dtype=torch.float64)
        out[name] = float(torch.quantile(t, 1.0 - q if FR_COMPONENTS[name][1] else q))
    return out
