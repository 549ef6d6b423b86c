"""The four FR label metrics with their reference side computed once per reference.

``synthiqa generate`` scores many distorted images against the same reference. piq's functions
(``haarpsi``, ``mdsi``, ``vsi``, ``multi_scale_gmsd``) recompute the reference's features (colour
conversion, downsampling, wavelet/gradient responses, VSI's saliency map) for every pair; about half of
their work. ``ReferenceFR`` computes those features once and scores each distorted image with the same
formulas, parameters and operation order as piq 0.8 (built from ``piq.functional``'s blocks), so a value
equals piq's for the same pair up to float rounding (tests compare them to 1e-6).

Settings (what ``labels.FR_COMPONENTS`` documents): HaarPSI (3 scales, subsampled, c = 30, alpha = 4.2),
MDSI (``combination="sum"``, c1 = 140, c2 = 55, c3 = 550, alpha = 0.6, rho = 1, q = o = 0.25), VSI (piq's
defaults) and chromatic MS-GMSD (4 scales with weights 0.096, 0.596, 0.289, 0.019, t = 170, alpha = 0.5,
beta1..3 = 0.01, 0.32, 15). Inputs are float ``[B,3,H,W]`` in [0, 1]; every image of a batch is scored
against the one reference independently (per-image reductions only).

References: Reisenhofer et al. 2018 (HaarPSI), Nafchi et al. 2016 (MDSI), Zhang et al. 2014 (VSI),
Zhang et al. 2017 (MS-GMSD); piq (Apache-2.0) for the exact variants.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

HAARPSI_SCALES = 3
HAARPSI_C = 30.0
HAARPSI_ALPHA = 4.2
MDSI_C1, MDSI_C2, MDSI_C3 = 140.0, 55.0, 550.0
MDSI_ALPHA, MDSI_RHO, MDSI_Q, MDSI_O = 0.6, 1.0, 0.25, 0.25
VSI_C1, VSI_C2, VSI_C3 = 1.27, 386.0, 130.0
VSI_ALPHA, VSI_BETA = 0.4, 0.02
GMSD_SCALE_WEIGHTS = (0.096, 0.596, 0.289, 0.019)
GMSD_T, GMSD_ALPHA = 170.0, 0.5
GMSD_BETA1, GMSD_BETA2, GMSD_BETA3 = 0.01, 0.32, 15.0


def _to_255(x: torch.Tensor) -> torch.Tensor:
    return x / 1.0 * 255  # piq's ``x / float(data_range) * 255`` with data_range 1


def _pad_to_even(x: torch.Tensor) -> torch.Tensor:
    down = max(x.shape[2] % 2, x.shape[3] % 2)
    return F.pad(x, pad=[0, down, 0, down])


def _mean_pool_size(h: int, w: int) -> int:
    """MDSI's and VSI's downsampling factor: ``max(1, round(min(H, W) / 256))``."""
    return max(1, round(min(h, w) / 256))


# -- HaarPSI --------------------------------------------------------------------------------------------
def _haar_features(x255: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Haar coefficients of the luma at 3 scales ``[B,6,h,w]``, |2x2 means of I and Q| ``[B,2,h,w]``)."""
    from piq.functional import haar_filter, rgb2yiq

    yiq = F.avg_pool2d(_pad_to_even(rgb2yiq(x255)), kernel_size=2, stride=2, padding=0)
    coeffs = []
    for scale in range(HAARPSI_SCALES):
        size = 2 ** (scale + 1)
        h = haar_filter(size, dtype=x255.dtype, device=x255.device)
        kernels = torch.stack([h, h.transpose(-1, -2)])
        pad = [size // 2 - 1, size // 2, size // 2 - 1, size // 2]
        coeffs.append(F.conv2d(F.pad(yiq[:, :1], pad=pad, mode="constant"), kernels))
    iq = torch.abs(F.avg_pool2d(F.pad(yiq, pad=[0, 1, 0, 1])[:, 1:], kernel_size=2, stride=1, padding=0))
    return torch.cat(coeffs, dim=1), iq


def _haarpsi(x: tuple[torch.Tensor, torch.Tensor], y: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    from piq.functional import similarity_map

    (cx, iq_x), (cy, iq_y) = x, y
    weights = torch.max(torch.abs(cx[:, 4:]), torch.abs(cy[:, 4:]))
    sim = []
    for o in range(2):
        mx, my = torch.abs(cx[:, (o, o + 2)]), torch.abs(cy[:, (o, o + 2)])
        sim.append(similarity_map(mx, my, constant=HAARPSI_C).sum(dim=1, keepdim=True) / 2)
    weights = torch.cat([weights, weights.mean(dim=1, keepdim=True)], dim=1)
    sim.append(similarity_map(iq_x, iq_y, constant=HAARPSI_C).sum(dim=1, keepdim=True) / 2)
    sim_map = torch.cat(sim, dim=1)
    eps = torch.finfo(sim_map.dtype).eps
    score = (((sim_map * HAARPSI_ALPHA).sigmoid() * weights).sum(dim=[1, 2, 3]) + eps) / \
        (torch.sum(weights, dim=[1, 2, 3]) + eps)
    return (torch.log(score / (1 - score)) / HAARPSI_ALPHA) ** 2


# -- MDSI -------------------------------------------------------------------------------------------------
def _mdsi_features(x255: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(LHM image after MDSI's mean pooling, gradient magnitude of its L channel)."""
    from piq.functional import gradient_map, rgb2lhm

    k = _mean_pool_size(*x255.shape[-2:])
    if k // 2:
        x255 = F.pad(x255, pad=[(k - 1) // 2, k // 2, (k - 1) // 2, k // 2])
    lhm = rgb2lhm(F.avg_pool2d(x255, kernel_size=k))
    return lhm, gradient_map(lhm[:, :1], _mdsi_kernels(lhm))


def _mdsi_kernels(like: torch.Tensor) -> torch.Tensor:
    from piq.functional import prewitt_filter

    p = prewitt_filter(device=like.device, dtype=like.dtype)
    return torch.stack([p, p.transpose(1, 2)])


def _mdsi(x: tuple[torch.Tensor, torch.Tensor], y: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    from piq.functional import gradient_map, pow_for_complex, similarity_map

    (x_lhm, gm_x), (y_lhm, gm_y) = x, y
    gm_avg = gradient_map((x_lhm[:, :1] + y_lhm[:, :1]) / 2., _mdsi_kernels(x_lhm))
    gs_total = similarity_map(gm_x, gm_y, MDSI_C1) + similarity_map(gm_x, gm_avg, MDSI_C2) \
        - similarity_map(gm_y, gm_avg, MDSI_C2)
    cs_total = (2 * (x_lhm[:, 1:2] * y_lhm[:, 1:2] + x_lhm[:, 2:] * y_lhm[:, 2:]) + MDSI_C3) / \
        (x_lhm[:, 1:2] ** 2 + y_lhm[:, 1:2] ** 2 + x_lhm[:, 2:] ** 2 + y_lhm[:, 2:] ** 2 + MDSI_C3)
    gcs = MDSI_ALPHA * gs_total + (1 - MDSI_ALPHA) * cs_total
    powered = pow_for_complex(base=gcs, exp=MDSI_Q)
    centre = powered.mean(dim=2, keepdim=True).mean(dim=3, keepdim=True)
    score = (powered - centre).pow(2).sum(dim=-1).sqrt()
    return ((score ** MDSI_RHO).mean(dim=(-1, -2)) ** (MDSI_O / MDSI_RHO)).squeeze(1)


# -- VSI --------------------------------------------------------------------------------------------------
def _vsi_features(x01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(SDSP saliency, LMN image, gradient magnitude of L), after VSI's mean pooling."""
    from piq.functional import gradient_map, rgb2lmn, scharr_filter
    from piq.vsi import sdsp

    x255 = x01 * 255. / 1.0  # piq's ``x * 255. / float(data_range)``
    vs = sdsp(x255, data_range=255)
    lmn = rgb2lmn(x255)
    k = _mean_pool_size(*vs.shape[-2:])
    if k // 2:
        pad = [k // 2, (k - 1) // 2, k // 2, (k - 1) // 2]
        vs, lmn = F.pad(vs, pad=pad, mode="replicate"), F.pad(lmn, pad=pad, mode="replicate")
    vs, lmn = F.avg_pool2d(vs, kernel_size=k), F.avg_pool2d(lmn, kernel_size=k)
    s = scharr_filter(device=lmn.device, dtype=lmn.dtype)
    return vs, lmn, gradient_map(lmn[:, :1], torch.stack([s, s.transpose(1, 2)]))


def _vsi(x: tuple[torch.Tensor, ...], y: tuple[torch.Tensor, ...]) -> torch.Tensor:
    from piq.functional import similarity_map

    (vs_x, x_lmn, gm_x), (vs_y, y_lmn, gm_y) = x, y
    s_vs = similarity_map(vs_x, vs_y, VSI_C1)
    s_gm = similarity_map(gm_x, gm_y, VSI_C2)
    s_c = similarity_map(x_lmn[:, 1:2], y_lmn[:, 1:2], VSI_C3) \
        * similarity_map(x_lmn[:, 2:], y_lmn[:, 2:], VSI_C3)
    phase = torch.atan2(torch.zeros_like(s_c), s_c) * VSI_BETA
    s = s_vs * s_gm.pow(VSI_ALPHA) * (s_c.abs() ** VSI_BETA * torch.cos(phase))
    vs_max = torch.max(vs_x, vs_y)
    eps = torch.finfo(vs_max.dtype).eps
    return (((s * vs_max).sum(dim=(-1, -2)) + eps) / (vs_max.sum(dim=(-1, -2)) + eps)).squeeze(-1)


# -- MS-GMSD (chromatic) --------------------------------------------------------------------------------
def _gmsd_features(x255: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """(gradient magnitude of the luma at each scale, I and Q at the coarsest scale)."""
    from piq.functional import gradient_map, prewitt_filter, rgb2yiq

    p = prewitt_filter(dtype=x255.dtype, device=x255.device)
    kernels = torch.stack([p, p.transpose(-1, -2)])
    x = rgb2yiq(x255)
    grads = []
    for scale in range(len(GMSD_SCALE_WEIGHTS)):
        if scale > 0:
            x = F.avg_pool2d(_pad_to_even(x), kernel_size=2, padding=0)
        grads.append(gradient_map(x[:, :1], kernels))
    return grads, x[:, 1:]


def _ms_gmsd(x: tuple[list[torch.Tensor], torch.Tensor], y: tuple[list[torch.Tensor], torch.Tensor],
             ) -> torch.Tensor:
    from piq.functional import similarity_map

    (grads_x, iq_x), (grads_y, iq_y) = x, y
    scores = []
    for gx, gy in zip(grads_x, grads_y, strict=True):
        gms = similarity_map(gx, gy, constant=GMSD_T, alpha=GMSD_ALPHA)
        mean_gms = torch.mean(gms, dim=[1, 2, 3], keepdim=True)
        scores.append(torch.pow(gms - mean_gms, 2).mean(dim=[1, 2, 3]).sqrt())
    weights = torch.tensor(GMSD_SCALE_WEIGHTS, device=iq_x.device, dtype=iq_x.dtype)
    ms = torch.sqrt(torch.sum(weights.view(1, -1) * (torch.stack(scores, dim=1) ** 2), dim=1))
    rmse_iq = torch.sqrt(torch.mean((iq_x - iq_y) ** 2, dim=[2, 3]))
    rmse_chrome = torch.sqrt(torch.sum(rmse_iq ** 2, dim=1))
    gamma = 2 / (1 + GMSD_BETA2 * torch.exp(-GMSD_BETA3 * ms)) - 1
    return gamma * ms + (1 - gamma) * GMSD_BETA1 * rmse_chrome


class ReferenceFR:
    """The four FR metrics against one reference, whose features are computed once.

    Args:
        reference: float ``[1,3,H,W]`` (or ``[3,H,W]``) in [0, 1].

    Calling it with distorted images (float ``[B,3,H,W]`` in [0, 1], same size and device) returns
    ``{"fr_haarpsi", "fr_mdsi", "fr_vsi", "fr_ms_gmsd"}`` -> float32 ``[B]`` on the images' device.
    """

    def __init__(self, reference: torch.Tensor):
        y = reference if reference.dim() == 4 else reference.unsqueeze(0)
        if y.dim() != 4 or y.shape[:2] != (1, 3):
            raise ValueError(f"reference must be [1,3,H,W], got {tuple(reference.shape)}")
        self.shape = tuple(y.shape[-2:])
        self._features = self._extract(y)

    @staticmethod
    def _extract(x01: torch.Tensor) -> dict[str, tuple]:
        x255 = _to_255(x01)
        return {"fr_haarpsi": _haar_features(x255), "fr_mdsi": _mdsi_features(x255),
                "fr_vsi": _vsi_features(x01), "fr_ms_gmsd": _gmsd_features(x255)}

    @torch.no_grad()
    def __call__(self, distorted: torch.Tensor) -> dict[str, torch.Tensor]:
        if distorted.dim() != 4 or distorted.shape[1] != 3 or tuple(distorted.shape[-2:]) != self.shape:
            raise ValueError(f"distorted images must be [B,3,{self.shape[0]},{self.shape[1]}], "
                             f"got {tuple(distorted.shape)}")
        feats = self._extract(distorted)
        ref = self._features
        return {"fr_haarpsi": _haarpsi(feats["fr_haarpsi"], ref["fr_haarpsi"]),
                "fr_mdsi": _mdsi(feats["fr_mdsi"], ref["fr_mdsi"]),
                "fr_vsi": _vsi(feats["fr_vsi"], ref["fr_vsi"]),
                "fr_ms_gmsd": _ms_gmsd(feats["fr_ms_gmsd"], ref["fr_ms_gmsd"])}
