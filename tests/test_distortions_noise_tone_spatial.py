"""KADID-10k types 11-25 and ARNIQA's non-linear contrast change, under the kadid and arniqa profiles."""

import itertools
import math

import kornia
import pytest
import torch
from scipy.interpolate import CubicSpline

from synthiqa.distortions import apply_chains, get_distortion, list_distortions, parse_chain
from synthiqa.distortions.base import params_to
from synthiqa.distortions.brightness import bend
from synthiqa.distortions.colorspace import lab_to_rgb, rgb_to_lab
from synthiqa.distortions.noise import YCBCR_CONVENTIONS, _pointwise_matrix
from synthiqa.distortions.sharpness import contrast_curve
from synthiqa.distortions.spatial import Pixelate, multi_otsu_bins, round_count

NAMES = (
    "white_noise", "white_noise_color_component", "impulse_noise", "multiplicative_noise", "denoise",
    "brighten", "darken", "mean_shift", "jitter", "non_eccentricity_patch", "pixelate", "quantization",
    "color_block", "high_sharpen", "contrast_change", "nonlinear_contrast_change",
)
KADID_ONLY, ARNIQA_ONLY = {"denoise"}, {"nonlinear_contrast_change"}
CASES = [(n, p) for p in ("kadid", "arniqa") for n in NAMES
         if not (p == "kadid" and n in ARNIQA_ONLY) and not (p == "arniqa" and n in KADID_ONLY)]
# Level orders with the zero amount inside (severity is not monotone in the level); pixelate's error on
# a tiny image depends on the sampling phase, so its severity is checked by resolution instead.
NOT_MONOTONE = {("mean_shift", "kadid"), ("contrast_change", "kadid"), ("mean_shift", "arniqa"),
                ("contrast_change", "arniqa"), ("pixelate", "kadid"), ("pixelate", "arniqa")}


pytestmark = pytest.mark.usefixtures("one_thread")


def textured(n: int = 1, h: int = 48, w: int = 64, seed: int = 0) -> torch.Tensor:
    """Smooth colour ramps plus sinusoidal texture and a sharp edge, in [0.05, 0.95]."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    out = []
    for _ in range(n):
        ph = torch.rand(3, generator=g) * 6.28
        fr = 3 + torch.rand(3, generator=g) * 10
        img = torch.stack([0.5 + 0.25 * torch.sin(fr[c] * (xx + 0.6 * yy) * 3.14 + ph[c]) + 0.15 * (xx - yy)
                           for c in range(3)])
        img[:, : h // 2, w // 2:] += 0.1
        out.append(img.clamp(0.05, 0.95))
    return torch.stack(out)


def run(name, profile, images, levels, seeds):
    d = get_distortion(name, profile)
    params = d.sample(torch.as_tensor(levels, dtype=torch.float64), torch.as_tensor(seeds))
    return d.apply(images, params_to(params, images.device)), params


def test_profile_membership():
    kadid, arniqa = set(list_distortions("kadid")), set(list_distortions("arniqa"))
    assert set(NAMES) - ARNIQA_ONLY <= kadid and not (ARNIQA_ONLY & kadid)
    assert set(NAMES) - KADID_ONLY <= arniqa and not (KADID_ONLY & arniqa)
    for name, alias in [("white_noise_color_component", "whitenoiseCC"),
                        ("contrast_change", "lincontrchange"),
                        ("nonlinear_contrast_change", "nonlincontrchange"),
                        ("non_eccentricity_patch", "noneccpatch")]:
        assert get_distortion(alias, "arniqa").name == name


@pytest.mark.parametrize(("name", "profile"), CASES)
def test_shape_dtype_range_and_metadata(name, profile):
    x = textured(3)
    before = x.clone()
    y, _ = run(name, profile, x, [1, 3, 5], [1, 2, 3])
    assert torch.equal(x, before)  # apply is pure
    assert y.shape == x.shape and y.dtype == torch.float32
    assert torch.isfinite(y).all()
    assert y.min() >= 0.0 and y.max() <= 1.0
    info = get_distortion(name, profile).info()
    assert info["description"] and info["kadid_id"] in (None, *range(11, 26))


@pytest.mark.parametrize(("name", "profile"), [c for c in CASES if c not in NOT_MONOTONE])
def test_severity_grows_with_level(name, profile):
    x = textured(1).expand(5, -1, -1, -1).contiguous()
    y, _ = run(name, profile, x, [1, 2, 3, 4, 5], [7] * 5)
    if name == "color_block":  # a later block may repaint an earlier one closer to the image: use coverage
        dist = (y != x).any(1).flatten(1).float().mean(1).tolist()
    elif name == "quantization":  # ARNIQA's min-max stretch also moves values: count grey levels instead
        dist = [-len(v.unique()) for v in y]
    else:
        dist = (y - x).abs().flatten(1).mean(1).tolist()
    assert all(a < b for a, b in itertools.pairwise(dist)), dist


@pytest.mark.parametrize(("name", "profile"), CASES)
def test_same_seed_same_output_whatever_the_batch(name, profile):
    x = textured(4, seed=3)
    levels, seeds = [1.0, 2.5, 4.0, 5.0], [11, 12, 13, 14]
    full, _ = run(name, profile, x, levels, seeds)
    again, _ = run(name, profile, x, levels, seeds)
    assert torch.equal(full, again)
    part, _ = run(name, profile, x[[2, 0]], [levels[2], levels[0]], [seeds[2], seeds[0]])
    assert torch.equal(part, full[[2, 0]])
    other, _ = run(name, profile, x[:1], [1.0], [99])
    if name not in ("mean_shift", "contrast_change", "darken", "brighten", "high_sharpen", "pixelate",
                    "quantization", "nonlinear_contrast_change"):
        assert not torch.equal(other, full[:1])  # the seed matters for random distortions


def test_level_tables_differ_where_matlab_does():
    def table(name, profile):
        return get_distortion(name, profile).table

    assert table("mean_shift", "kadid").params["offset"] == (0.15, 0.08, 0.0, -0.08, -0.15)
    assert table("mean_shift", "arniqa").params["offset"] == (0.0, 0.08, -0.08, 0.15, -0.15)
    assert table("contrast_change", "kadid").params["amount"] == (0.3, 0.15, 0.0, -0.4, -0.6)
    assert table("contrast_change", "arniqa").params["amount"] == (0.0, 0.15, -0.4, 0.3, -0.6)
    expected = {
        "white_noise_color_component": ("ycbcr", "studio", "full"),
        "multiplicative_noise": ("law", "uniform", "gaussian"),
        "jitter": ("interpolation", "bicubic", "bilinear"),
        "quantization": ("method", "otsu", "uniform"),
        "high_sharpen": ("sigma", 3.0, 6.0),
        "pixelate": ("resize", "matlab", "torch"),
    }
    for name, (key, kadid, arniqa) in expected.items():
        assert table(name, "kadid").options[key] == kadid
        assert table(name, "arniqa").options[key] == arniqa
    for name in ("white_noise", "impulse_noise", "brighten", "darken", "jitter", "non_eccentricity_patch",
                 "pixelate", "quantization", "color_block", "high_sharpen"):
        assert table(name, "kadid").params == table(name, "arniqa").params


def test_mean_shift_is_an_offset_with_level_3_zero_in_kadid():
    x = textured(1).expand(5, -1, -1, -1).contiguous()
    y, p = run("mean_shift", "kadid", x, [1, 2, 3, 4, 5], [0] * 5)
    for i, m in enumerate((0.15, 0.08, 0.0, -0.08, -0.15)):
        assert torch.allclose(y[i], (x[i] + m).clamp(0, 1), atol=1e-6)
    dist = (y - x).abs().flatten(1).mean(1).tolist()
    assert dist[2] == 0.0 and dist[0] > dist[1] > 0 and dist[4] > dist[3] > 0


GOLDEN_CONTRAST = {
    0.0: (0.0571, 0.1429, 0.25, 0.3714),
    0.15: (0.025, 0.1, 0.2125, 0.35),
    -0.4: (0.1429, 0.2571, 0.35, 0.4286),
    0.3: (0.0, 0.0571, 0.175, 0.3286),
    -0.6: (0.1857, 0.3143, 0.4, 0.4571),
}


@pytest.mark.parametrize("profile", ["kadid", "arniqa"])
def test_contrast_spline_golden_values(profile):
    amounts = get_distortion("contrast_change", profile).table.params["amount"]
    x = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.6, 0.9]).view(1, 1, 1, 6).expand(5, 3, 32, 6).contiguous()
    x = torch.nn.functional.pad(x, (0, 26), value=0.5)
    y, _ = run("contrast_change", profile, x, [1, 2, 3, 4, 5], [0] * 5)
    for i, a in enumerate(amounts):
        got = y[i, 0, 0, :4].tolist()
        assert got == pytest.approx(GOLDEN_CONTRAST[a], abs=1e-4)
        # f is odd about 0.5
        assert y[i, 1, 5, 4].item() == pytest.approx(1 - y[i, 1, 5, 3].item(), abs=1e-6)


def test_contrast_closed_form_equals_not_a_knot_spline():
    grid = torch.linspace(0, 1, 2001, dtype=torch.float64)
    for a in (-1.0, -0.6, -0.4, 0.0, 0.15, 0.3, 0.77, 1.0):
        spline = CubicSpline([0, 0.3, 0.5, 0.7, 1], [0, 0.25 - a / 4, 0.5, 0.75 + a / 4, 1],
                             bc_type="not-a-knot")
        ref = torch.from_numpy(spline(grid.numpy())).clamp(0, 1)
        got = contrast_curve(grid.clone(), torch.tensor(a, dtype=torch.float64))
        assert (got - ref).abs().max().item() < 1e-12


def test_brighten_darken_curve_is_matlab_three_knot_spline():
    grid = torch.linspace(0, 1, 501, dtype=torch.float64)
    for a in (0.05, 0.4, 1.1, -0.8):
        spline = CubicSpline([0, 0.5, 1], [0, 0.5 + a / 2, 1], bc_type="not-a-knot")
        ref = torch.from_numpy(spline(grid.numpy())).clamp(0, 1)
        assert (bend(grid.clone(), torch.tensor(a, dtype=torch.float64)) - ref).abs().max() < 1e-12


@pytest.mark.parametrize("profile", ["kadid", "arniqa"])
def test_darken_and_brighten_closed_forms(profile):
    x = textured(1).expand(5, -1, -1, -1).contiguous()
    y, p = run("darken", profile, x, [1, 2, 3, 4, 5], [0] * 5)
    a = p["amount"].float().view(-1, 1, 1, 1)
    assert torch.allclose(y, (x - 2 * a * x * (1 - x)).clamp(0, 1), atol=1e-6)
    y, p = run("brighten", profile, x, [1, 2, 3, 4, 5], [0] * 5)
    a = p["amount"].float().view(-1, 1, 1, 1)
    lab = rgb_to_lab(x)
    lum = lab[:, :1] / 100
    lab = torch.cat([100 * (lum + 2 * a * lum * (1 - lum)).clamp(0, 1), lab[:, 1:]], 1)
    via_lab = lab_to_rgb(lab, profile == "arniqa")
    assert torch.allclose(y, (2 * (x + 2 * a * x * (1 - x)).clamp(0, 1) + via_lab) / 3, atol=1e-5)
    assert (y >= x - 1e-4).all()


def test_brighten_lab_bgr_option_changes_only_the_lab_part():
    x = textured(2)
    base = get_distortion("brighten", "arniqa")
    swapped = type(base)("arniqa", type(base.table)(base.table.params, {"lab_bgr": True}))
    p = params_to(base.sample([4, 4], [0, 1]), "cpu")
    a, b = base.apply(x, p), swapped.apply(x, p)
    assert not torch.equal(a, b) and (a - b).abs().max() < 0.1


def test_white_and_multiplicative_noise_statistics():
    grey = torch.full((2, 3, 128, 128), 0.5)
    y, p = run("white_noise", "kadid", grey, [5, 3], [1, 2])
    assert (y - grey).flatten(1).std(1).tolist() == pytest.approx([0.1, math.sqrt(0.003)], rel=0.05)
    for profile in ("kadid", "arniqa"):
        y, p = run("multiplicative_noise", profile, grey, [5, 5], [3, 4])
        n = (y - grey) / grey
        assert n.flatten(1).var(1).tolist() == pytest.approx([0.05, 0.05], rel=0.06)
        bound = n.abs().max().item()
        if profile == "kadid":  # uniform law: |n| <= sqrt(3 v)
            assert bound <= math.sqrt(3 * 0.05) + 1e-5
        else:
            assert bound > math.sqrt(3 * 0.05)


def test_impulse_noise_hits_channel_elements_half_salt_half_pepper():
    grey = torch.full((1, 3, 160, 160), 0.5)
    y, _ = run("impulse_noise", "kadid", grey, [5], [5])
    salt, pepper = (y == 1).float().mean().item(), (y == 0).float().mean().item()
    assert salt == pytest.approx(0.015, rel=0.15) and pepper == pytest.approx(0.015, rel=0.15)
    hit = (y != 0.5).sum(1)  # channels hit per pixel
    assert (hit == 1).sum() > 10 * (hit == 3).sum()


def test_ycbcr_conventions():
    x = textured(2)
    for kind, (m, off) in YCBCR_CONVENTIONS.items():
        ycc = _pointwise_matrix(x, m, off)
        inv = torch.linalg.inv(m)
        assert torch.allclose(_pointwise_matrix(ycc, inv, -(inv @ off)), x, atol=1e-5)
        if kind == "full":
            assert torch.allclose(ycc, kornia.color.rgb_to_ycbcr(x), atol=1e-6)
        else:  # MATLAB rgb2ycbcr: black -> (16, 128, 128)/255, white -> (235, 128, 128)/255
            ends = _pointwise_matrix(torch.tensor([0.0, 1.0]).view(2, 1, 1, 1).expand(2, 3, 1, 1), m, off)
            expected = [16, 128, 128, 235, 128, 128]
            assert (ends.flatten() * 255).tolist() == pytest.approx(expected, abs=1e-3)


def test_denoise_removes_most_of_the_noise_it_adds():
    x = textured(1, 64, 64).expand(2, -1, -1, -1).contiguous()
    d = get_distortion("denoise", "kadid")
    assert d.approximation and "DnCNN" in d.approximation
    y, p = run("denoise", "kadid", x, [3, 5], [1, 1])
    mse = ((y - x) ** 2).flatten(1).mean(1)
    assert (mse < p["variance"].float() / 5).all()


def test_jitter_keeps_constant_images_and_moves_textured_ones():
    flat = torch.full((2, 3, 40, 40), 0.3)
    for profile in ("kadid", "arniqa"):
        y, _ = run("jitter", profile, flat, [5, 5], [1, 2])
        assert torch.allclose(y, flat, atol=1e-5)


def test_non_eccentricity_patch_only_copies_pixels():
    h, w = 48, 64
    code = torch.arange(h * w, dtype=torch.float32).view(1, 1, h, w) / (h * w)
    x = torch.cat([code, 1 - code, code.flip(-1)], 1)
    y, p = run("non_eccentricity_patch", "kadid", x, [5], [3])
    src = {tuple(v) for v in x[0].flatten(1).T.tolist()}
    assert all(tuple(v) in src for v in y[0].flatten(1).T.tolist())
    changed = (y != x).any(1).sum().item()
    assert 0 < changed <= 100 * 256


def test_color_block_paints_n_constant_blocks():
    x = textured(3)
    y, p = run("color_block", "arniqa", x, [1, 3, 5], [4, 5, 6])
    for i, n in enumerate((2, 6, 10)):
        changed = (y[i] != x[i]).any(0).sum().item()
        assert 32 * 32 * 0.9 <= changed <= n * 32 * 32
        colours = {tuple(v) for v in y[i].flatten(1).T[(y[i] != x[i]).any(0).flatten()].tolist()}
        assert len(colours) <= n


def test_pixelate_scales_and_matches_kornia_nearest():
    z = Pixelate.scale(torch.tensor([0.01, 0.05, 0.1, 0.2, 0.5], dtype=torch.float64))
    assert z.tolist() == pytest.approx([0.887, 0.784, 0.699, 0.569, 0.290], abs=1e-3)
    h, w = 48, 64
    code = torch.arange(h * w, dtype=torch.float32).view(1, 1, h, w).expand(5, 3, h, w) / (h * w)
    for profile, size in (("arniqa", torch.floor), ("kadid", torch.ceil)):
        y, p = run("pixelate", profile, code.contiguous(), [1, 2, 3, 4, 5], [0] * 5)
        rows = []
        for i in range(5):
            zi = Pixelate.scale(p["strength"][i : i + 1].float())
            rows.append(y[i, 0].unique(dim=0).shape[0])
            cols = y[i, 0].unique(dim=1).shape[1]
            if profile == "arniqa":  # distinct rows/columns = low-resolution size
                assert (rows[-1], cols) == (int(size(zi * h)), int(size(zi * w)))
            else:  # MATLAB's pixel-centre sampling may replicate the border row/column of the low image
                assert int(size(zi * h)) - 1 <= rows[-1] <= int(size(zi * h))
                assert int(size(zi * w)) - 1 <= cols <= int(size(zi * w))
            if profile == "arniqa":
                lo = kornia.geometry.transform.resize(code[i:i + 1], (int(zi * h), int(zi * w)), "nearest")
                assert torch.equal(kornia.geometry.transform.resize(lo, (h, w), "nearest")[0], y[i])
        assert all(a > b for a, b in itertools.pairwise(rows))  # severity: resolution falls with the level


def test_quantization_uniform_matches_arniqa_rule():
    x = textured(2)
    y, p = run("quantization", "arniqa", x, [1, 5], [0, 0])
    for i, n in enumerate((20, 7)):
        bins = torch.tensor([0] + [int(255 * k / n) for k in range(1, n)] + [256])
        q = torch.bucketize(x[i] * 255, bins).float()
        q = (q - q.min()) / (q.max() - q.min())
        assert torch.equal(y[i], q)


def test_multi_otsu_dynamic_programme_is_exhaustively_optimal():
    g = torch.Generator().manual_seed(1)
    hist = torch.randint(0, 50, (3, 12), generator=g)

    def score(h, cuts):
        p = h.double() / h.sum()
        v = torch.arange(len(h), dtype=torch.float64)
        bounds = [-1, *cuts, len(h) - 1]
        total = 0.0
        for a, b in itertools.pairwise(bounds):
            w = p[a + 1 : b + 1].sum()
            s = (p[a + 1 : b + 1] * v[a + 1 : b + 1]).sum()
            total += (s * s / w).item() if w > 0 else 0.0
        return total

    classes = torch.tensor([2, 3, 4])
    got = multi_otsu_bins(hist, classes)
    for i, k in enumerate(classes.tolist()):
        best = max(score(hist[i], list(c)) for c in itertools.combinations(range(11), k - 1))
        assert score(hist[i], got[i, : k - 1].tolist()) == pytest.approx(best, rel=1e-12)
        assert (got[i, k - 1 :] == 12).all()


def test_quantization_of_flat_images_stays_in_range():
    flat = torch.full((2, 3, 32, 32), 0.4)
    assert torch.equal(run("quantization", "kadid", flat, [1, 5], [0, 0])[0], flat)
    assert torch.equal(run("quantization", "arniqa", flat, [1, 5], [0, 0])[0], torch.ones_like(flat))


def test_quantization_otsu_uses_matlab_values():
    x = textured(2)
    y, p = run("quantization", "kadid", x, [1, 5], [0, 0])
    for i, n in enumerate((20, 7)):
        vals = y[i].unique()
        assert len(vals) <= n + 1 and vals[-1] == 1.0
        assert vals[0] == 0.0 or vals[0] >= x[i].min() - 1e-6


def test_high_sharpen_flat_images_and_sigma():
    flat = torch.full((2, 3, 40, 40), 0.4)
    for profile in ("kadid", "arniqa"):
        y, _ = run("high_sharpen", profile, flat, [5, 5], [0, 0])
        assert torch.allclose(y, flat, atol=1e-4)
    x = textured(1)
    k, a = run("high_sharpen", "kadid", x, [3], [0])[0], run("high_sharpen", "arniqa", x, [3], [0])[0]
    assert not torch.allclose(k, a, atol=1e-3)  # sigma 3 vs 6
    lab = rgb_to_lab(x)
    blur = kornia.filters.gaussian_blur2d(lab[:, :1], (13, 13), (3.0, 3.0), border_type="replicate")
    lab = torch.cat([lab[:, :1] + 3 * (lab[:, :1] - blur), lab[:, 1:]], 1)
    assert torch.allclose(k, lab_to_rgb(lab, False), atol=1e-4)  # unsharp mask of L* only


def test_nonlinear_contrast_range():
    x = torch.zeros(5, 3, 32, 32)
    x[..., 16:] = 1.0
    y, _ = run("nonlinear_contrast_change", "arniqa", x, [1, 2, 3, 4, 5], [0] * 5)
    for i, o in enumerate((0.4, 0.3, 0.2, 0.1, 0.05)):
        assert y[i].min().item() == pytest.approx(0.5 - o) and y[i].max().item() == pytest.approx(0.5 + o)


def test_fractional_levels_interpolate_and_round_counts():
    assert round_count(torch.tensor([2.5, 8.5, 49.9, 50.0])).tolist() == [3, 9, 50, 50]
    d = get_distortion("white_noise", "kadid")
    assert d.sample([1.5], [0])["variance"].item() == pytest.approx(0.0015)
    x = textured(2)
    for name, profile in CASES:
        y, _ = run(name, profile, x, [1.5, 4.25], [0, 1])
        assert y.min() >= 0 and y.max() <= 1


def test_kadid_chain_with_minmax_wrap():
    x = textured(2)
    chains = [parse_chain("quantization:2>contrast_change:3", "kadid"), parse_chain("denoise:1", "kadid")]
    out, rec = apply_chains(x, chains, seeds=[1, 2], profile="kadid")
    assert out.flatten(1).amin(1).tolist() == pytest.approx([0, 0]) and rec[0][1]["amount"] == 0.0


@pytest.mark.cuda
@pytest.mark.parametrize(("name", "profile"), CASES)
def test_cuda_batch_independent_and_close_to_cpu_when_deterministic(name, profile):
    x = textured(3).cuda()
    full, _ = run(name, profile, x, [1, 3, 5], [1, 2, 3])
    part, _ = run(name, profile, x[1:2], [3], [2])
    assert full.device.type == "cuda" and torch.equal(part[0], full[1])
    assert full.min() >= 0 and full.max() <= 1
    deterministic = ("mean_shift", "contrast_change", "darken", "brighten", "high_sharpen", "pixelate",
                     "nonlinear_contrast_change", "non_eccentricity_patch", "color_block")
    if name in deterministic or (name, profile) == ("quantization", "arniqa"):
        cpu, _ = run(name, profile, x.cpu(), [1, 3, 5], [1, 2, 3])
        assert (full.cpu() - cpu).abs().max() < 2e-3


def test_noise_uint8_paths_are_registered_and_impulse_bounds_match_the_division():
    from synthiqa.distortions.fastpath import UINT8_PATHS
    from synthiqa.distortions.noise import _first_at_least

    noise_ops = {"white_noise", "white_noise_color_component", "impulse_noise", "multiplicative_noise"}
    assert noise_ops <= set(UINT8_PATHS)
    g = torch.Generator().manual_seed(0)
    for d in (0.001, 0.005, 0.0123, 0.03, 1 / 3):
        d32 = torch.tensor(d, dtype=torch.float32)
        for target in (0.5, 1.0):
            b = _first_at_least(target, d32.numpy())
            b_t = torch.tensor(b)
            edge = torch.stack([b_t, *(torch.nextafter(b_t, torch.tensor(v)) for v in (0.0, 1.0))])
            u = torch.cat([torch.rand(20000, generator=g) * 2 * d32, edge])
            assert torch.equal(u / d32 >= target, u >= b_t), (d, target)


def test_pixelate_uint8_matches_the_float_path_with_and_without_a_stretch_table():
    from synthiqa.distortions.chains import apply_distortion
    from synthiqa.distortions.spatial import pick_lut

    full = (textured(2, 40, 48) * 255).round().to(torch.uint8)
    full[:, :, 0, 0], full[:, :, -1, -1] = 0, 255  # a full range, its extremes picked at some levels only
    narrow = (textured(2, 40, 48) * 150 + 60).round().to(torch.uint8)  # a range the wrap stretches
    for x in (full, narrow):
        for profile in ("kadid", "arniqa"):
            for level in (1, 2, 3, 4, 5):
                ref, _ = apply_distortion(x, "pixelate", level, [0, 1], profile)
                fast, _ = apply_distortion(x, "pixelate", level, [0, 1], profile, out_dtype=torch.uint8)
                assert torch.equal(fast, (ref * 255).round().to(torch.uint8)), (profile, level)
    assert pick_lut(0, 255, 0, 255) is None
    assert pick_lut(60, 210, 61, 209) is not None and pick_lut(60, 210, 61, 209)[61] == 0


def test_multi_otsu_cpu_and_batched_torch_programmes_agree_bin_for_bin():
    from synthiqa.distortions.spatial import _multi_otsu_torch, otsu_prefix_sums

    g = torch.Generator().manual_seed(3)
    sparse = torch.zeros(4, 256, dtype=torch.long)
    sparse[:, ::17] = torch.randint(1, 900, (4, 16), generator=g)  # ties: thresholds anywhere in a gap
    for hist in (torch.randint(0, 5000, (5, 256), generator=g), sparse,
                 torch.randint(0, 3, (5, 256), generator=g) * torch.randint(0, 99, (5, 256), generator=g)):
        classes = torch.randint(2, 22, (len(hist),), generator=g)
        got = multi_otsu_bins(hist, classes)
        assert torch.equal(got, _multi_otsu_torch(*otsu_prefix_sums(hist), classes, int(classes.max())))
        assert (got.diff(dim=1) >= 0).all()


def test_color_block_uint8_with_the_extreme_pixels_covered_or_not():
    from synthiqa.distortions.chains import apply_distortion

    x = (textured(1, 96, 128) * 200 + 20).round().to(torch.uint8)
    x[0, :, 70, 100], x[0, 1, 5, 120] = 2, 250  # one darkest and one brightest pixel
    covered = set()
    for seed in range(12):
        for level in (1, 5):
            ref, rec = apply_distortion(x, "color_block", level, [seed], "kadid")
            fast, _ = apply_distortion(x, "color_block", level, [seed], "kadid", out_dtype=torch.uint8)
            assert torch.equal(fast, (ref * 255).round().to(torch.uint8)), (seed, level)
            n = round_count(torch.tensor([rec[0][0]["blocks"]])).item()
            tops = [(int(u * (96 - 32)), int(v * (128 - 32))) for u, v in rec[0][0]["positions"][:n]]
            covered.add(any(r <= 70 < r + 32 and c <= 100 < c + 32 for r, c in tops))
    assert covered == {True, False}


def test_fields_drawn_into_a_given_tensor_are_the_same_draws():
    from synthiqa.distortions.rng import normal_field, uniform_field

    seeds = torch.tensor([5, 2**40 + 3])
    for draw in (normal_field, uniform_field):
        buf = torch.full((2, 3, 8, 9), float("nan"))
        assert draw(seeds, (3, 8, 9), "cpu", out=buf) is buf
        assert torch.equal(buf, draw(seeds, (3, 8, 9), "cpu"))


def test_pixelate_uint8_on_an_image_wider_than_opencv_remap_allows():
    from synthiqa.distortions.chains import apply_distortion

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (1, 3, 32, 32767), dtype=torch.uint8, generator=g)
    ref, _ = apply_distortion(x, "pixelate", 3, [0], "kadid")
    fast, _ = apply_distortion(x, "pixelate", 3, [0], "kadid", out_dtype=torch.uint8)
    assert torch.equal(fast, (ref * 255).round().to(torch.uint8))
