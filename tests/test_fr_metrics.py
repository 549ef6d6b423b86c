"""ReferenceFR: the four FR label metrics with the reference side computed once equal piq's functions."""

import pytest
import torch

from synthiqa.datasets.fr_metrics import ReferenceFR
from synthiqa.datasets.labels import FR_COMPONENTS, fr_components

pytestmark = pytest.mark.usefixtures("one_thread")


def _pair(n, size, seed):
    """A smooth textured reference ``[1,3,H,W]`` and ``n`` differently degraded copies, in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    yy, xx = torch.meshgrid(torch.linspace(0, 6, h), torch.linspace(0, 9, w), indexing="ij")
    base = torch.stack([torch.sin(xx) * torch.cos(yy), torch.cos(xx + yy), torch.sin(2 * yy)]) * 0.3 + 0.5
    ref = (base + 0.05 * torch.rand(3, h, w, generator=g)).clamp(0, 1).unsqueeze(0)
    sigma = torch.linspace(0.01, 0.2, n).view(n, 1, 1, 1)
    blur = torch.nn.functional.avg_pool2d(ref, 3, 1, 1, count_include_pad=False)
    dist = torch.cat([blur, ref * 0.7] + [ref] * (n - 2))[:n]
    return ref, (dist + sigma * torch.randn(n, 3, h, w, generator=g)).clamp(0, 1)


@pytest.mark.parametrize("size", [(48, 64), (45, 61), (385, 390)])  # no pooling; odd sides; 2x2 pooling
def test_reference_fr_equals_piq_image_by_image(size):
    ref, dist = _pair(3 if size[0] < 100 else 2, size, seed=size[1])
    scorer = ReferenceFR(ref)
    for i in range(dist.shape[0]):
        ours = scorer(dist[i:i + 1])
        theirs = fr_components(dist[i:i + 1], ref)
        assert set(ours) == set(FR_COMPONENTS)
        for k in FR_COMPONENTS:
            assert ours[k].shape == (1,)
            assert ours[k].item() == pytest.approx(theirs[k].item(), rel=1e-6, abs=1e-7), (k, size, i)


def test_a_batch_scores_each_image_as_alone_and_the_reference_scores_perfect():
    ref, dist = _pair(4, (40, 56), seed=3)
    scorer = ReferenceFR(ref)
    batch = scorer(torch.cat([dist, ref]))
    for i in range(dist.shape[0]):
        alone = scorer(dist[i:i + 1])
        for k in FR_COMPONENTS:  # spatial means may round differently with the batch size (values ~0..1)
            assert batch[k][i].item() == pytest.approx(alone[k].item(), rel=0, abs=1e-6), (k, i)
    perfect = {"fr_haarpsi": 1.0, "fr_mdsi": 0.0, "fr_vsi": 1.0, "fr_ms_gmsd": 0.0}
    for k, v in perfect.items():
        assert batch[k][-1].item() == pytest.approx(v, abs=1e-3), k


def test_reference_fr_rejects_other_shapes():
    ref, dist = _pair(2, (40, 56), seed=4)
    with pytest.raises(ValueError, match="distorted images must be"):
        ReferenceFR(ref)(dist[:, :, :32])
    with pytest.raises(ValueError, match="reference must be"):
        ReferenceFR(torch.cat([ref, ref]))
