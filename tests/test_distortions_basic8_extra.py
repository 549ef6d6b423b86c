"""The basic8 profile (tables, severity <-> level, quality labels) and the extra group."""

import pytest
import torch
import torch.nn.functional as F

from synthiqa.distortions import apply_chains, get_distortion, list_distortions, parse_chain
from synthiqa.errors import DistortionInputError

EXTRA = ("rain", "fog", "lens_distortion", "chromatic_aberration")


def _photo(n: int = 1, h: int = 48, w: int = 64, seed: int = 0) -> torch.Tensor:
    """Smooth random images with edges (a blurred random field plus a bright square)."""
    g = torch.Generator().manual_seed(seed)
    x = F.interpolate(torch.rand(n, 3, h // 8, w // 8, generator=g), size=(h, w), mode="bilinear")
    x[:, :, h // 4:h // 2, w // 4:w // 2] = 0.9
    return x.clamp(0, 1)


# -- extra ------------------------------------------------------------------------------------------------
def test_extra_group_is_listed_after_every_profile():
    for profile in ("kadid", "arniqa"):
        names = list_distortions(profile, include_extra=True)
        assert names[-4:] == sorted(EXTRA)
        assert not set(EXTRA) & set(list_distortions(profile))
    assert get_distortion("fog", "arniqa").group == "extra"


@pytest.mark.parametrize("name", EXTRA)
def test_extra_severity_grows_with_level(name):
    d = get_distortion(name, "arniqa")
    x = _photo().expand(5, -1, -1, -1)
    out, params = d(x, [1, 2, 3, 4, 5], [7] * 5)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    change = (out - x).abs().mean(dim=(1, 2, 3))
    assert change[0] > 1e-4
    assert torch.all(change[1:] > change[:-1]), change


@pytest.mark.parametrize("name", EXTRA)
def test_extra_is_batch_independent_and_seeded(name):
    d = get_distortion(name, "kadid")
    x = _photo(3, seed=1)
    batch, _ = d(x, [2, 4, 5], [11, 12, 13])
    alone, _ = d(x[1:2], [4], [12])
    assert torch.allclose(batch[1:2], alone, atol=1e-5)
    again, _ = d(x, [2, 4, 5], [11, 12, 13])
    assert torch.equal(batch, again)
    other, _ = d(x, [2, 4, 5], [21, 22, 23])
    if name != "lens_distortion" and name != "chromatic_aberration":  # these only draw a sign
        assert not torch.equal(batch, other)


def test_chromatic_aberration_moves_red_and_blue_but_not_green():
    x = _photo()
    out, p = get_distortion("chromatic_aberration", "kadid")(x, 5, 0)
    assert torch.equal(out[:, 1], x[:, 1])
    assert (out[:, 0] - x[:, 0]).abs().max() > 0.05 and (out[:, 2] - x[:, 2]).abs().max() > 0.05
    assert p["sign"].abs().tolist() == [1.0]


def test_lens_distortion_keeps_the_centre_and_the_frame_full():
    x = _photo()
    d = get_distortion("lens_distortion", "kadid")
    p = d.sample([5, 5], [0, 1])
    for sign in (1.0, -1.0):
        q = dict(p, sign=torch.full((2,), sign, dtype=torch.float64))
        out = d.apply(x.expand(2, -1, -1, -1), q)
        assert not torch.allclose(out, x.expand(2, -1, -1, -1), atol=1e-3)
        # no black border: every output pixel samples inside the image, so the mean stays close
        assert abs(out.mean().item() - x.mean().item()) < 0.05


def test_lens_distortion_direction_option_is_checked():
    from synthiqa.distortions import LevelTable
    from synthiqa.distortions.extra import LensDistortion

    barrel = LensDistortion("custom", LevelTable({"strength": (0.1,) * 5}, options={"direction": "barrel"}))
    assert barrel.sample([1, 2], [3, 4])["sign"].tolist() == [1.0, 1.0]
    bad = LensDistortion("custom", LevelTable({"strength": (0.1,) * 5}, options={"direction": "sideways"}))
    with pytest.raises(DistortionInputError, match="direction"):
        bad.sample([1], [0])


def test_fog_lightens_a_dark_image_and_rain_adds_streaks():
    dark = torch.full((1, 3, 48, 64), 0.1)
    fog, _ = get_distortion("fog", "kadid")(dark, 5, 0)
    assert fog.mean() > 0.4
    rain, _ = get_distortion("rain", "kadid")(dark, 5, 0)
    assert rain.max() > 0.4 and (rain > 0.3).float().mean() < 0.5


def test_extra_works_in_chains_under_any_profile():
    x = _photo(2)
    chains = [parse_chain("fog:2>lens_distortion:3", "arniqa"), parse_chain("rain:4", "arniqa")]
    out, rec = apply_chains(x, chains, 5, "arniqa")
    assert out.shape == x.shape and rec[1][0]["name"] == "rain" and "angle" in rec[1][0]


# -- basic8 -----------------------------------------------------------------------------------------------
BASIC8 = ["gaussian_blur", "motion_blur", "white_noise", "jpeg", "color_saturation_hsv",
          "nonlinear_contrast_change", "darken", "pixelate"]


def test_basic8_lists_the_guide_types_in_order():
    assert list_distortions("basic8") == BASIC8
    assert list_distortions("basic8", include_extra=True)[8:] == sorted(EXTRA)


def test_severity_level_round_trip_and_bounds():
    from synthiqa.distortions.basic8 import level_to_severity, severity_to_level

    assert severity_to_level(0.2) == 1.0 and severity_to_level(1.0) == 5.0
    assert severity_to_level(0.5) == pytest.approx(2.5)
    for s in (0.2, 0.37, 0.8, 1.0):
        assert level_to_severity(severity_to_level(s)) == pytest.approx(s)
    with pytest.raises(DistortionInputError):
        severity_to_level(0.1)
    with pytest.raises(DistortionInputError):
        level_to_severity(6)


def test_severity_quality_is_monotone_hits_the_floors_and_the_bands():
    from synthiqa.distortions.basic8 import QUALITY_FLOORS, severity_quality

    floors = {"gaussian_blur": 40, "motion_blur": 35, "white_noise": 30, "jpeg": 20,
              "color_saturation_hsv": 50, "nonlinear_contrast_change": 50, "darken": 55, "pixelate": 35}
    assert QUALITY_FLOORS == floors
    grid = [i / 100 for i in range(0, 101)]
    for name, floor in floors.items():
        q = [severity_quality(name, s) for s in grid]
        assert q[0] == 100.0 and q[-1] == pytest.approx(floor)
        assert all(a > b for a, b in zip(q, q[1:], strict=False)), name
        assert all(70 <= severity_quality(name, s) <= 100 for s in (0.2, 0.3, 0.4))
        assert all(50 <= severity_quality(name, s) <= 70 for s in (0.5, 0.6, 0.7))
        # the severe band (20-50) wherever the type's floor allows it
        for s in (0.8, 0.9, 1.0):
            v = severity_quality(name, s)
            assert v <= 50 or v <= floor + 20 * (1 - s) + 1e-9
    assert severity_quality("jpeg", 0.9) <= 50
    assert severity_quality("gaublur", 0.5) == severity_quality("gaussian_blur", 0.5)
    with pytest.raises(DistortionInputError, match="basic8"):
        severity_quality("jitter", 0.5)
    with pytest.raises(DistortionInputError):
        severity_quality("jpeg", 1.2)


def test_basic8_tables_grow_in_severity():
    x = _photo().expand(5, -1, -1, -1)
    for name in BASIC8:
        d = get_distortion(name, "basic8")
        assert d.profile == "basic8"
        out, _ = d(x, [1, 2, 3, 4, 5], [3] * 5)
        change = (out - x).abs().mean(dim=(1, 2, 3))
        assert change[0] > 1e-3, name
        assert torch.all(change[1:] > change[:-1] - 1e-4), (name, change)
        assert change[4] > 1.5 * change[0], (name, change)


def test_basic8_fractional_severities_run_in_chains():
    from synthiqa.distortions.basic8 import severity_to_level

    x = _photo(2)
    chain = parse_chain(f"gaussian_blur:{severity_to_level(0.55)}>jpeg:{severity_to_level(0.25)}", "basic8")
    out, rec = apply_chains(x, [chain, ()], 0, "basic8")
    assert rec[0][0]["sigma"] == pytest.approx(1.5 + 0.75 * 1.0)
    assert torch.equal(out[1], x[1])
