"""Labels: level-based quality rules, FR components (orientation, batch invariance) and their fusion."""

import pytest
import torch

from synthiqa.datasets.labels import (
    FR_ANCHORS,
    FR_COMPONENTS,
    fr_anchor_quantiles,
    fr_components,
    fuse_fr,
    label_columns,
    label_infos,
    level_quality,
    parse_label_families,
    primary_label,
)
from synthiqa.distortions import list_distortions
from synthiqa.distortions.chains import ChainOp
from synthiqa.errors import ConfigError


def _images(n=3, seed=0, size=(48, 64)):
    g = torch.Generator().manual_seed(seed)
    base = torch.linspace(0, 1, size[1]).view(1, 1, 1, -1).expand(1, 3, *size)
    return (base * 0.8 + 0.2 * torch.rand(1, 3, *size, generator=g)).clamp(0, 1).expand(n, -1, -1, -1)


def test_level_quality_rule_outside_basic8():
    assert level_quality((), "kadid") == 100.0
    assert level_quality((ChainOp("jpeg", 1.0),), "kadid") == pytest.approx(84.0)
    assert level_quality((ChainOp("jpeg", 5.0),), "arniqa") == pytest.approx(20.0)
    chain = (ChainOp("jpeg", 2.0), ChainOp("gaussian_blur", 3.0))
    assert level_quality(chain, "kadid") == pytest.approx(100 * 0.68 * 0.52)


@pytest.mark.skipif(not list_distortions("basic8"), reason="basic8 profile not registered")
def test_level_quality_uses_the_guide_under_basic8():
    from synthiqa.distortions.basic8 import severity_quality

    name = list_distortions("basic8")[0]
    assert level_quality((ChainOp(name, 3.0),), "basic8") == pytest.approx(severity_quality(name, 0.6))
    assert level_quality((ChainOp(name, 1.0),), "basic8") > level_quality((ChainOp(name, 5.0),), "basic8")


def test_fr_components_are_perfect_for_identical_images_and_degrade_with_noise():
    ref = _images(1)
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(1, 3, 48, 64, generator=g)
    dist = torch.cat([ref, (ref + 0.03 * noise).clamp(0, 1), (ref + 0.15 * noise).clamp(0, 1)])
    comps = fr_components(dist, ref)
    assert set(comps) == set(FR_COMPONENTS)
    for name, (_, lower_better) in FR_COMPONENTS.items():
        v = comps[name]
        assert v[0].item() == pytest.approx(FR_ANCHORS[name].perfect, abs=1e-3), name
        worse = v[1] < v[2] if lower_better else v[1] > v[2]
        assert worse and (v[0] < v[1] if lower_better else v[0] > v[1]), name
    fused = fuse_fr(comps)
    assert fused[0] > 99.9 and fused[0] > fused[1] > fused[2] >= 0


def test_fr_components_agree_across_batch_sizes_to_float_precision():
    # piq's reductions may differ in the last bits with the batch size, which is why the generator
    # computes FR labels one image at a time on the CPU (and in fixed sub-batches on CUDA)
    ref = _images(1)
    g = torch.Generator().manual_seed(2)
    dist = (ref + 0.05 * torch.randn(3, 3, 48, 64, generator=g)).clamp(0, 1)
    full = fr_components(dist, ref)
    alone = fr_components(dist[2:3], ref)
    again = fr_components(dist[2:3], ref)
    for k in full:
        assert torch.equal(alone[k], again[k]), k
        assert full[k][2:3].tolist() == pytest.approx(alone[k].tolist(), rel=1e-5), k


def test_fusion_is_clipped_and_anchored():
    comps = {k: torch.tensor([a.perfect, a.worst, a.worst - (a.perfect - a.worst)], dtype=torch.float64)
             for k, a in FR_ANCHORS.items()}
    assert fuse_fr(comps).tolist() == pytest.approx([100.0, 0.0, 0.0])
    anchors = fr_anchor_quantiles({"fr_haarpsi": [0.1, 0.5, 0.9], "fr_mdsi": [0.1, 0.2, 0.3]}, q=0.0)
    assert anchors == pytest.approx({"fr_haarpsi": 0.1, "fr_mdsi": 0.3})


def test_label_families_columns_and_infos():
    assert parse_label_families("fr,level") == ("level", "fr")
    assert label_columns(("level",)) == ["level_quality"]
    assert primary_label(("level",)) == "level_quality" and primary_label(("level", "fr")) == "fr_pseudo_mos"
    infos = label_infos(("level", "fr"))
    assert infos["fr_ms_gmsd"].lower_better and not infos["fr_vsi"].lower_better
    for bad in ("", "mos", "level,psnr"):
        with pytest.raises(ConfigError, match="--labels"):
            parse_label_families(bad)
