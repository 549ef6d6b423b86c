"""Classical baselines: piq FR metrics oriented higher-better, NSS fits, NIQE and BRISQUE behaviour."""

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats
from scipy.ndimage import gaussian_filter

from synthiqa.datasets.records import IQARecord
from synthiqa.errors import DatasetError
from synthiqa.models.baselines import (
    BRISQUE,
    NIQE,
    aggd_fit,
    brisque_features,
    ggd_fit,
    mscn,
    niqe_patch_features,
    sharpness_patch_features,
)
from synthiqa.models.registry import create_model, list_models

FR = ("psnr", "ssim", "ms_ssim", "fsim", "vsi", "haarpsi", "mdsi")


def texture(seed, size):
    rng = np.random.default_rng(seed)
    img = gaussian_filter(rng.uniform(0, 255, (size, size, 3)), sigma=(2, 2, 0)) * 3 - 255
    return np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)


def noisy(ref, sigma, seed):
    x = ref.astype(float) + np.random.default_rng(seed).normal(0, sigma, ref.shape)
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def _save(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def _record(image, ref=None, score=0.0, scene=None):
    return IQARecord(image=image, score=score, score_norm=score, reference=ref, scene=scene)


def test_every_fr_metric_is_registered_full_reference_and_higher_is_better(tmp_path):
    assert set(FR) | {"niqe", "brisque"} <= set(list_models())
    sets = {}
    for size in (64, 168):  # ms_ssim needs >= 161 px
        ref = texture(0, size)
        ref_path = _save(tmp_path / f"ref{size}.png", ref)
        sets[size] = [_record(_save(tmp_path / f"d{size}_{s}.png", noisy(ref, s, s)), ref_path)
                      for s in (2, 8, 24)]
    for name in FR:
        model = create_model(name)
        recs = sets[168 if name == "ms_ssim" else 64]
        assert model.needs_reference and not model.trainable
        scores = model.predict(recs)
        assert scores[0] > scores[1] > scores[2], name


def test_fr_values_match_piq_and_the_psnr_formula(tmp_path):
    import piq

    ref = texture(1, 64)
    dist = noisy(ref, 10, 1)
    rec = _record(_save(tmp_path / "d.png", dist), _save(tmp_path / "r.png", ref))
    mse = np.mean((dist.astype(float) - ref.astype(float)) ** 2)
    assert create_model("psnr").predict([rec])[0] == pytest.approx(10 * np.log10(255**2 / mse), abs=1e-3)
    x = torch.from_numpy(dist).permute(2, 0, 1)[None].float() / 255
    y = torch.from_numpy(ref).permute(2, 0, 1)[None].float() / 255
    assert create_model("mdsi").predict([rec])[0] == pytest.approx(-piq.mdsi(x, y).item(), abs=1e-6)
    assert create_model("haarpsi").predict([rec])[0] == pytest.approx(piq.haarpsi(x, y).item(), abs=1e-6)


def test_fr_errors_are_one_line(tmp_path):
    img = _save(tmp_path / "a.png", texture(2, 64))
    with pytest.raises(DatasetError, match="no reference"):
        create_model("psnr").predict([_record(img)])
    small = _save(tmp_path / "b.png", texture(3, 32))
    with pytest.raises(DatasetError, match="differs"):
        create_model("psnr").predict([_record(img, small)])
    with pytest.raises(DatasetError, match="at least 161"):
        create_model("ms_ssim").predict([_record(small, small)])


@pytest.mark.parametrize("shape", [0.8, 2.0, 3.0])
def test_ggd_fit_recovers_shape_and_variance(shape):
    x = stats.gennorm.rvs(shape, scale=1.5, size=(1, 200_000), random_state=0)
    alpha, var = ggd_fit(x)
    assert alpha[0] == pytest.approx(shape, rel=0.06)
    assert var[0] == pytest.approx(np.mean(x**2), rel=1e-9)


def test_aggd_fit_recovers_asymmetric_scales():
    rng = np.random.default_rng(0)
    magnitude = np.abs(stats.gennorm.rvs(1.2, size=400_000, random_state=1))
    left_side = rng.uniform(size=magnitude.size) < 0.5 / (0.5 + 2.0)  # AGGD: side mass ~ its scale
    x = np.where(left_side, -0.5 * magnitude, 2.0 * magnitude)[None]
    alpha, left, right = aggd_fit(x)
    assert alpha[0] == pytest.approx(1.2, rel=0.06)
    assert right[0] / left[0] == pytest.approx(4.0, rel=0.03)
    sym = rng.normal(size=(3, 50_000))
    a, lft, rgt = aggd_fit(sym)
    np.testing.assert_allclose(a, 2.0, rtol=0.05)
    np.testing.assert_allclose(lft / rgt, 1.0, rtol=0.03)


def test_mscn_is_zero_mean_unit_scale_and_features_have_paper_sizes():
    gray = texture(4, 96).astype(float).mean(-1)
    coeffs, sigma = mscn(gray)
    assert coeffs.shape == gray.shape and sigma.min() >= 0
    assert abs(coeffs.mean()) < 0.1
    feats = brisque_features(gray)
    assert feats.shape == (36,) and np.isfinite(feats).all()
    patches, sharp = niqe_patch_features(gray, patch=32)
    assert patches.shape == (9, 36) and sharp.shape == (9,)
    with pytest.raises(DatasetError, match="at least 128x128"):
        niqe_patch_features(gray, patch=128)


def test_niqe_distance_grows_with_noise(tmp_path):
    refs = [_save(tmp_path / f"ref{i}.png", texture(10 + i, 128)) for i in range(3)]
    niqe = NIQE(patch_size=32)
    niqe.fit([_record(tmp_path / "x.png", r) for r in refs])
    test_ref = texture(20, 128)
    recs = [_record(_save(tmp_path / f"t{s}.png", noisy(test_ref, s, s))) for s in (0, 10, 40)]
    scores = niqe.predict(recs)
    assert scores[0] > scores[1] > scores[2]
    assert niqe.embed(recs).shape == (3, 36)
    folder = NIQE(reference_dir=tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="not found"):
        folder.fit([])
    with pytest.raises(DatasetError, match="no references"):
        NIQE().fit([_record(refs[0])])


def test_sharpness_features_fall_with_blur_and_niqe_with_them_ranks_blur(tmp_path):
    gray = texture(5, 96).astype(float).mean(-1)
    sharp = sharpness_patch_features(gray, patch=32)
    blurred = sharpness_patch_features(gaussian_filter(gray, 2.0), patch=32)
    assert sharp.shape == (9, 3) and np.all(blurred < sharp)
    with pytest.raises(DatasetError, match="at least 128x128"):
        sharpness_patch_features(gray, patch=128)
    refs = [_save(tmp_path / f"ref{i}.png", texture(30 + i, 128)) for i in range(3)]
    niqe = NIQE(patch_size=32, sharpness_features=True)
    niqe.fit([_record(tmp_path / "x.png", r) for r in refs])
    assert niqe.mu_.shape == (39,)
    test_ref = texture(40, 128)
    recs = [_record(_save(tmp_path / f"b{s}.png", np.round(gaussian_filter(test_ref.astype(float), (s, s, 0)))
                          .astype(np.uint8))) for s in (0.01, 1.5, 3.0)]
    scores = niqe.predict(recs)
    assert scores[0] > scores[1] > scores[2]
    assert niqe.embed(recs).shape == (3, 39)


def test_brisque_svr_learns_noise_level_and_selects_on_val(tmp_path):
    recs = []
    for scene in range(6):
        ref = texture(30 + scene, 64)
        for lv, sigma in enumerate((0, 5, 12, 25, 45)):
            path = _save(tmp_path / f"s{scene}_{lv}.png", noisy(ref, sigma, scene * 10 + lv))
            recs.append(IQARecord(path, 1 - lv / 4, 1 - lv / 4, scene=f"s{scene}"))
    train, val, test = recs[:20], recs[20:25], recs[25:]
    model = BRISQUE(c_grid=(1, 10), gamma_grid=(0.1, 1.0))
    model.fit(train, val)
    assert set(model.selected_) == {"C", "gamma", "selection_srcc"}
    pred = model.predict(test)
    assert stats.spearmanr(pred, [r.score_norm for r in test])[0] > 0.8
    cv = BRISQUE(c_grid=(1,), gamma_grid=(0.1,))
    cv.fit(train)  # no val: scene-grouped cross-validation on train
    assert np.isfinite(cv.selected_["selection_srcc"])
    assert model.embed(test).shape == (5, 36)
