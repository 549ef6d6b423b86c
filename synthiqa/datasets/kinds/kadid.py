"""KADID-10k: 81 references x 25 distortion types x 5 levels = 10,125 images, MOS on 1..5, higher is better.

Layout: ``images/`` holds ``I01.png ... I81.png`` and ``I{ref:02d}_{type:02d}_{level:02d}.png``;
``dmos.csv`` has the columns ``dist_img, ref_img, dmos, var``. Despite its name the ``dmos`` column is a
MOS in [1, 5] where higher means better (the KADID site; pyiqa ``mos_range [1,5]``, ``lower_better
false``; ARNIQA ``mos_type="mos"``). ``var`` is the rating variance, kept in ``extra``.

Type and level come from the file name; type ids map to synthiqa's registry names and ARNIQA's seven
groups (``KADID_TYPES``), so the labels serve directly as ground truth for per-type metrics and cluster
purity.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from synthiqa.datasets.loaders import (
    dataset_root,
    listing,
    numeric_scores,
    read_label_table,
    register_dataset,
    require_files,
    resolve_all,
)
from synthiqa.datasets.records import IQADataset, IQARecord, ScoreInfo
from synthiqa.errors import DatasetError

#: KADID type id (1..25) -> (synthiqa registry name, ARNIQA group).
KADID_TYPES: dict[int, tuple[str, str]] = {
    1: ("gaussian_blur", "blur"),
    2: ("lens_blur", "blur"),
    3: ("motion_blur", "blur"),
    4: ("color_diffusion", "color_distortion"),
    5: ("color_shift", "color_distortion"),
    6: ("color_quantization", "color_distortion"),
    7: ("color_saturation_hsv", "color_distortion"),
    8: ("color_saturation_lab", "color_distortion"),
    9: ("jpeg2000", "jpeg"),
    10: ("jpeg", "jpeg"),
    11: ("white_noise", "noise"),
    12: ("white_noise_color_component", "noise"),
    13: ("impulse_noise", "noise"),
    14: ("multiplicative_noise", "noise"),
    15: ("denoise", "noise"),
    16: ("brighten", "brightness_change"),
    17: ("darken", "brightness_change"),
    18: ("mean_shift", "brightness_change"),
    19: ("jitter", "spatial_distortion"),
    20: ("non_eccentricity_patch", "spatial_distortion"),
    21: ("pixelate", "spatial_distortion"),
    22: ("quantization", "spatial_distortion"),
    23: ("color_block", "spatial_distortion"),
    24: ("high_sharpen", "sharpness_contrast"),
    25: ("contrast_change", "sharpness_contrast"),
}
KADID_SCORE = ScoreInfo("mos", 1.0, 5.0, lower_better=False)
KADID_NAME = re.compile(r"^I(\d+)_(\d+)_(\d+)\.png$", re.IGNORECASE)


def parse_kadid_name(name: str) -> tuple[int, int, int] | None:
    """(reference id, type id, level) from ``I{ref}_{type}_{level}.png``, or None for another name."""
    match = KADID_NAME.match(Path(name).name)
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


@register_dataset("kadid10k", score_info=KADID_SCORE)
def load_kadid10k(root: Path, *, label_file: str = "dmos.csv", image_dir: str = "images") -> IQADataset:
    """KADID-10k (MOS 1..5, higher is better; 25 types x 5 levels parsed from the file names).

    Args:
        root: the KADID-10k folder.
        label_file: the score file inside ``root``.
        image_dir: the folder inside ``root`` holding both distorted and reference images.
    """
    root = dataset_root(root, "kadid10k")
    source = f"kadid10k {label_file}"
    table = read_label_table(root / label_file, ("dist_img", "ref_img", "dmos", "var"), source)
    scores = numeric_scores(table["dmos"], source)
    variances = pd.to_numeric(table["var"], errors="coerce").to_numpy(dtype=np.float64)
    dist_names = [str(v).strip() for v in table["dist_img"]]
    parsed = [parse_kadid_name(n) for n in dist_names]
    bad = [f"row {i + 1} ({n!r})" for i, (n, p) in enumerate(zip(dist_names, parsed, strict=True))
           if p is None or p[1] not in KADID_TYPES or not 1 <= p[2] <= 5]
    if bad:
        raise DatasetError(
            f"{source}: {len(bad)} dist_img names are not I<ref>_<type 01-25>_<level 01-05>.png, "
            f"first: {listing(bad)}"
        )
    images = resolve_all(root, [f"{image_dir}/{n}" for n in dist_names], source)
    refs = resolve_all(root, [f"{image_dir}/{str(v).strip()}" for v in table["ref_img"]], source)
    require_files(images, root, source, "images")
    require_files(set(refs), root, source, "reference images")
    records = []
    for i, (image, ref) in enumerate(zip(images, refs, strict=True)):
        _, type_id, level = parsed[i]
        name, group = KADID_TYPES[type_id]
        records.append(IQARecord(
            image=image, score=float(scores[i]), score_norm=KADID_SCORE.normalise(float(scores[i])),
            reference=ref, scene=ref.stem, dist_type=name, dist_group=group, level=float(level),
            extra={"var": float(variances[i]), "kadid_type_id": type_id},
        ))
    return IQADataset("kadid10k", root, KADID_SCORE, records)
