"""Classical quality predictors that need no downloaded parameters.

* Full-reference metrics through piq (``psnr``, ``ssim``, ``ms_ssim``, ``fsim``, ``vsi``, ``haarpsi``,
  ``mdsi``): RGB in [0, 1], piq defaults, oriented so higher is better (MDSI is negated).
* ``niqe``: Mittal, Soundararajan & Bovik (2013), re-implemented from the paper: MSCN coefficients,
  AGGD fits of the coefficients and of their four neighbour products on 96x96 patches at two scales
  (36 features per patch), a multivariate Gaussian "pristine" model fitted on sharp patches of
  reference images (the training split's references or a folder), and the distance
  ``sqrt((mu1-mu2)^T ((S1+S2)/2)^+ (mu1-mu2))`` to the test image's patch Gaussian. Predictions are the
  negated distance. Approximation: the pristine model is fitted on the references given, not on the
  authors' 125-image corpus, and the half-scale image uses PIL's antialiased bicubic resize in place of
  MATLAB ``imresize``; values therefore differ from the published NIQE parameter file.
  ``sharpness_features=True`` adds three gradient-energy statistics per patch (39 features; not in
  the paper), which make the distance see authentic blur and noise.
* ``brisque``: Mittal, Moorthy & Bovik (2012) 36 features (GGD of MSCN, AGGD of four neighbour
  products, two scales), re-implemented from the paper, with a scikit-learn RBF SVR on features scaled
  to [-1, 1]; C and gamma are chosen on the validation split (SRCC), or by 3-fold scene-grouped
  cross-validation on the training split when no validation split is given.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import piq
import torch
from sklearn.base import BaseEstimator
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import MinMaxScaler
from sklearn.svm import SVR

from synthiqa.datasets.builtin import builtin_reference_images
from synthiqa.datasets.records import DecodedImage, IQARecord
from synthiqa.datasets.references import IMAGE_SUFFIXES
from synthiqa.errors import ConfigError, DatasetError
from synthiqa.models.data import read_rgb
from synthiqa.models.estimator import check_fitted
from synthiqa.models.registry import register_model
from synthiqa.stats import srcc

# --------------------------------------------------------------------------------------------------
# image loading


def load_rgb(path: str | Path | DecodedImage) -> np.ndarray:
    """uint8 ``HxWx3`` RGB array of an image file (or of a ``DecodedImage``), decoded as every model
    decodes (``models.data.read_rgb``); one-line DatasetError if unreadable."""
    return np.ascontiguousarray(read_rgb(path).permute(1, 2, 0).cpu().numpy())


def rgb_to_gray(rgb: np.ndarray) -> np.ndarray:
    """MATLAB ``rgb2gray`` on uint8 (ITU-R BT.601 luma, rounded), as float64 in [0, 255]."""
    weights = np.array([0.298936021293775, 0.587043074451121, 0.114020904255103])
    return np.round(rgb.astype(np.float64) @ weights)


# --------------------------------------------------------------------------------------------------
# full-reference metrics

_FR_METRICS: dict[str, tuple[str, bool, dict]] = {
    # name: (piq function, lower_better, fixed keyword arguments)
    "psnr": ("psnr", False, {}),
    "ssim": ("ssim", False, {}),
    "ms_ssim": ("multi_scale_ssim", False, {}),
    "fsim": ("fsim", False, {"chromatic": True}),
    "vsi": ("vsi", False, {}),
    "haarpsi": ("haarpsi", False, {}),
    "mdsi": ("mdsi", True, {}),
}

#: Smallest image side each metric accepts with piq's defaults.
_FR_MIN_SIDE = {"ms_ssim": 161, "haarpsi": 16}


class FullReferenceMetric(BaseEstimator):
    """A piq full-reference metric behind the predictor interface (higher is better). Nothing to fit:
    ``predict`` works at once.

    Args:
        metric: one of ``psnr, ssim, ms_ssim, fsim, vsi, haarpsi, mdsi``.
        batch_size: image pairs per piq call (pairs of equal size are batched together).
        device: torch device for the computation.
    """

    needs_reference = True
    trainable = False

    def __init__(self, metric: str, batch_size: int = 8, device: str = "cpu") -> None:
        self.metric = metric
        self.batch_size = batch_size
        self.device = device

    @property
    def name(self) -> str:
        return self.metric

    def _piq(self) -> tuple[Any, bool, dict]:
        """(piq function, lower_better, its fixed keyword arguments); one-line error for another name."""
        if self.metric not in _FR_METRICS:
            raise ConfigError(f"unknown full-reference metric {self.metric!r}; known: "
                              f"{', '.join(_FR_METRICS)}")
        fn_name, lower_better, kwargs = _FR_METRICS[self.metric]
        return getattr(piq, fn_name), lower_better, kwargs

    def fit(self, train: Sequence[IQARecord], val: Sequence[IQARecord] | None = None) -> FullReferenceMetric:
        """Nothing to learn (checks the metric's name)."""
        self._piq()
        return self

    def _score_batch(self, dist: list[np.ndarray], ref: list[np.ndarray]) -> np.ndarray:
        fn, lower_better, kwargs = self._piq()
        x = torch.from_numpy(np.stack(dist)).permute(0, 3, 1, 2).float().div(255.0).to(self.device)
        y = torch.from_numpy(np.stack(ref)).permute(0, 3, 1, 2).float().div(255.0).to(self.device)
        with torch.no_grad():
            values = fn(x, y, data_range=1.0, reduction="none", **kwargs)
        values = values.double().cpu().numpy().reshape(-1)
        return -values if lower_better else values

    def predict(self, records: Sequence[IQARecord]) -> np.ndarray:
        """Metric value per record (cached by metric and image/reference path, ``DecodedImage`` s for this
        call only); needs ``record.reference``."""
        self._piq()
        cache: dict[tuple, float] = vars(self).setdefault("_cache", {}).setdefault(self.metric, {})
        todo: dict[tuple[int, ...], list[tuple]] = {}
        images: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        keys = [_pair_key(r) for r in records]
        for r, key in zip(records, keys, strict=True):
            if r.reference is None:
                raise DatasetError(f"{r.image}: {self.name} is full-reference; the record has no reference")
            if key in cache or key in images:
                continue
            dist, ref = load_rgb(r.image), load_rgb(r.reference)
            if dist.shape != ref.shape:
                raise DatasetError(f"{r.image}: size {dist.shape[:2]} differs from its reference's "
                                   f"{ref.shape[:2]}")
            if min(dist.shape[:2]) < _FR_MIN_SIDE.get(self.name, 1):
                raise DatasetError(f"{r.image}: {self.name} needs images of at least "
                                   f"{_FR_MIN_SIDE[self.name]} px per side, got {dist.shape[:2]}")
            images[key] = (dist, ref)
            todo.setdefault(dist.shape, []).append(key)
        for group in todo.values():
            for start in range(0, len(group), int(self.batch_size)):
                chunk = group[start:start + int(self.batch_size)]
                values = self._score_batch([images[k][0] for k in chunk], [images[k][1] for k in chunk])
                cache.update(zip(chunk, values.tolist(), strict=True))
        values = np.array([cache[k] for k in keys], dtype=np.float64)
        for key in keys:
            if key[0] is None:
                cache.pop(key, None)
        return values

    def embed(self, records: Sequence[IQARecord]) -> np.ndarray | None:
        return None


def _pair_key(record: IQARecord) -> tuple:
    """Cache key of an (image, reference) pair: the paths, or the objects' ids for in-memory images."""
    if isinstance(record.image, DecodedImage) or isinstance(record.reference, DecodedImage):
        return (None, id(record.image), id(record.reference))
    return (str(record.image), str(record.reference))


for _name in _FR_METRICS:
    register_model(_name)(functools.partial(FullReferenceMetric, _name))


# --------------------------------------------------------------------------------------------------
# natural scene statistics shared by NIQE and BRISQUE

_GAM = np.arange(0.2, 10.0 + 1e-9, 0.001)


def _gamma(x: np.ndarray) -> np.ndarray:
    from scipy.special import gamma

    return gamma(x)


#: AGGD moment ratio Γ(2/a)^2 / (Γ(1/a)Γ(3/a)), increasing in the shape a.
_R_AGGD = _gamma(2 / _GAM) ** 2 / (_gamma(1 / _GAM) * _gamma(3 / _GAM))


def _nearest_shape(target: np.ndarray) -> np.ndarray:
    """Shape parameter on the 0.2:0.001:10 grid whose AGGD ratio is nearest ``target`` (vectorised)."""
    target = np.asarray(target, dtype=np.float64)
    idx = np.clip(np.searchsorted(_R_AGGD, target), 1, _GAM.size - 1)
    closer_left = np.abs(_R_AGGD[idx - 1] - target) <= np.abs(_R_AGGD[idx] - target)
    return _GAM[np.where(closer_left, idx - 1, idx)]


def mscn(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean-subtracted contrast-normalised coefficients of a [0, 255] image and its local std map.

    7x7 Gaussian window with sigma 7/6, replicate borders, stabilising constant 1 (as in the papers).
    """
    import cv2

    img = gray.astype(np.float64)
    mu = cv2.GaussianBlur(img, (7, 7), 7 / 6, borderType=cv2.BORDER_REPLICATE)
    var = cv2.GaussianBlur(img * img, (7, 7), 7 / 6, borderType=cv2.BORDER_REPLICATE) - mu * mu
    sigma = np.sqrt(np.abs(var))
    return (img - mu) / (sigma + 1.0), sigma


def aggd_fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Asymmetric generalised Gaussian fit by moment matching over the last axis.

    Returns:
        shape ``alpha``, left and right standard deviations (each of shape ``x.shape[:-1]``).
    """
    x = np.asarray(x, dtype=np.float64)
    neg, pos = x < 0, x > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        left = np.sqrt((x * x * neg).sum(-1) / neg.sum(-1))
        right = np.sqrt((x * x * pos).sum(-1) / pos.sum(-1))
        g = left / right
        rhat = np.abs(x).mean(-1) ** 2 / (x * x).mean(-1)
        rnorm = rhat * (g**3 + 1) * (g + 1) / (g**2 + 1) ** 2
    alpha = _nearest_shape(np.nan_to_num(rnorm, nan=0.0))
    bad = ~np.isfinite(rnorm)
    return np.where(bad, np.nan, alpha), left, right


def ggd_fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric generalised Gaussian fit by moment matching over the last axis: (shape, variance)."""
    x = np.asarray(x, dtype=np.float64)
    var = (x * x).mean(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.abs(x).mean(-1) ** 2 / var
    return _nearest_shape(np.nan_to_num(ratio, nan=0.0)), var


#: Neighbour offsets (row, column) of the four pairwise products: horizontal, vertical, two diagonals.
_SHIFTS = ((0, 1), (1, 0), (1, 1), (-1, 1))


def _pair_products(blocks: np.ndarray) -> list[np.ndarray]:
    """Products of each block with its circularly shifted copy, flattened: 4 arrays ``[P, h*w]``."""
    p = blocks.shape[0]
    return [(blocks * np.roll(blocks, s, axis=(1, 2))).reshape(p, -1) for s in _SHIFTS]


def _half(gray: np.ndarray) -> np.ndarray:
    """Half-size image (antialiased bicubic, PIL), the papers' second scale."""
    from PIL import Image

    h, w = gray.shape
    im = Image.fromarray(gray.astype(np.float32), mode="F")
    return np.asarray(im.resize(((w + 1) // 2, (h + 1) // 2), Image.BICUBIC), dtype=np.float64)


def brisque_features(gray: np.ndarray) -> np.ndarray:
    """The 36 BRISQUE features of a [0, 255] grey image (two scales x [GGD 2 + 4 x AGGD 4])."""
    feats: list[float] = []
    img = gray
    for _ in range(2):
        coeffs, _sigma = mscn(img)
        block = coeffs[None]
        shape, var = ggd_fit(block.reshape(1, -1))
        feats += [float(shape[0]), float(var[0])]
        for prod in _pair_products(block):
            alpha, left, right = aggd_fit(prod)
            a = float(alpha[0])
            scale = np.sqrt(_gamma(1 / a) / _gamma(3 / a))
            mean = (float(right[0]) - float(left[0])) * _gamma(2 / a) / _gamma(1 / a) * scale
            feats += [a, float(mean), float(left[0]) ** 2, float(right[0]) ** 2]
        img = _half(img)
    return np.asarray(feats, dtype=np.float64)


def _aggd_scales(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AGGD shape and left/right scale parameters ``beta = std * sqrt(Γ(1/a)/Γ(3/a))``."""
    alpha, left, right = aggd_fit(x)
    factor = np.sqrt(_gamma(1 / alpha) / _gamma(3 / alpha))
    return alpha, left * factor, right * factor


def niqe_patch_features(gray: np.ndarray, patch: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """NIQE features of every non-overlapping patch: ``[P, 36]`` and each patch's sharpness ``[P]``.

    The image is cropped to a whole number of patches; the second scale uses patches of ``patch // 2``.
    """
    rows, cols = gray.shape[0] // patch, gray.shape[1] // patch
    if rows == 0 or cols == 0:
        raise DatasetError(f"NIQE needs images of at least {patch}x{patch} px (patch size), got {gray.shape}")
    img = gray[: rows * patch, : cols * patch]
    per_scale, sharpness = [], None
    for scale in (1, 2):
        size = patch // scale
        coeffs, sigma = mscn(img)
        coeffs = coeffs[: rows * size, : cols * size]
        blocks = coeffs.reshape(rows, size, cols, size).transpose(0, 2, 1, 3).reshape(-1, size, size)
        if scale == 1:
            sharpness = sigma.reshape(rows, size, cols, size).transpose(0, 2, 1, 3).reshape(-1, size * size)
            sharpness = sharpness.mean(-1)
        alpha, bl, br = _aggd_scales(blocks.reshape(blocks.shape[0], -1))
        cols_out = [alpha, (bl + br) / 2]
        for prod in _pair_products(blocks):
            a, bl, br = _aggd_scales(prod)
            cols_out += [a, (br - bl) * _gamma(2 / a) / _gamma(1 / a), bl, br]
        per_scale.append(np.stack(cols_out, axis=1))
        img = _half(img)
    return np.concatenate(per_scale, axis=1), sharpness


def sharpness_patch_features(gray: np.ndarray, patch: int = 96) -> np.ndarray:
    """``[P, 3]`` per non-overlapping patch (the patches of ``niqe_patch_features``, same order) of a
    [0, 255] grey image: log(1 + mean squared Laplacian), log(1 + mean Sobel gradient magnitude) and
    log(1 + its 90th percentile). Blur lowers them, noise raises them; unlike the MSCN statistics they
    keep the image's contrast, so a blurred patch cannot pass as a flat sharp one."""
    import cv2

    rows, cols = gray.shape[0] // patch, gray.shape[1] // patch
    if rows == 0 or cols == 0:
        raise DatasetError(f"NIQE needs images of at least {patch}x{patch} px (patch size), got {gray.shape}")
    img = gray[: rows * patch, : cols * patch].astype(np.float64)
    laplacian = cv2.Laplacian(img, cv2.CV_64F) ** 2
    gradient = np.hypot(cv2.Sobel(img, cv2.CV_64F, 1, 0), cv2.Sobel(img, cv2.CV_64F, 0, 1))

    def blocks(a: np.ndarray) -> np.ndarray:
        return a.reshape(rows, patch, cols, patch).transpose(0, 2, 1, 3).reshape(rows * cols, -1)

    lap, grad = blocks(laplacian), blocks(gradient)
    return np.log1p(np.stack([lap.mean(1), grad.mean(1), np.percentile(grad, 90, axis=1)], axis=1))


def _nan_gaussian(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of rows, ignoring rows with any NaN (MATLAB ``nanmean``/``nancov``)."""
    feats = feats[np.all(np.isfinite(feats), axis=1)]
    if feats.shape[0] < 2:
        raise DatasetError("NIQE: fewer than 2 usable patches to fit a Gaussian")
    return feats.mean(0), np.cov(feats, rowvar=False)


def _list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


class NIQE(BaseEstimator):
    """Natural Image Quality Evaluator (opinion-unaware); predictions are ``-distance`` (higher is better).

    Args:
        reference_dir: fit the pristine model on this folder's images once; otherwise ``fit`` uses the
            distinct references of the training records.
        patch_size: patch side in pixels at full scale (even, >= 16; 96 in the paper).
        sharpness_threshold: keep pristine patches whose sharpness is at least this fraction of the
            image's sharpest patch (0.75 in the paper).
        sharpness_features: add the three gradient-energy statistics of ``sharpness_patch_features`` to
            each patch's 36 (a 39-dimensional pristine model; not in the paper). Authentic blur and noise
            move them where the contrast-normalised statistics alone stay close to the pristine model.

    Fitted attributes: ``mu_``, ``cov_`` (the pristine Gaussian), ``fitted_on_`` (the images it was
    fitted on).
    """

    name = "niqe"
    needs_reference = False
    trainable = False

    def __init__(self, reference_dir: str | Path | None = None, patch_size: int = 96,
                 sharpness_threshold: float = 0.75, sharpness_features: bool = False) -> None:
        self.reference_dir = reference_dir
        self.patch_size = patch_size
        self.sharpness_threshold = sharpness_threshold
        self.sharpness_features = sharpness_features

    def _patch_size(self) -> int:
        if int(self.patch_size) < 16 or int(self.patch_size) % 2:
            raise ConfigError(f"niqe patch_size must be an even number >= 16, got {self.patch_size}")
        return int(self.patch_size)

    def _compute_feats(self, path: str | Path | DecodedImage, size: int) -> tuple[np.ndarray, np.ndarray]:
        gray = rgb_to_gray(load_rgb(path))
        feats, sharp = niqe_patch_features(gray, size)
        if self.sharpness_features:
            feats = np.concatenate([feats, sharpness_patch_features(gray, size)], axis=1)
        return feats, sharp

    def _patch_feats(self, path: str | Path | DecodedImage) -> tuple[np.ndarray, np.ndarray]:
        size = self._patch_size()
        if isinstance(path, DecodedImage):  # in memory: nothing to key a cache by
            return self._compute_feats(path, size)
        cache: dict[tuple, tuple[np.ndarray, np.ndarray]] = vars(self).setdefault("_feats", {})
        key = (str(path), size, bool(self.sharpness_features))
        if key not in cache:
            cache[key] = self._compute_feats(path, size)
        return cache[key]

    def fit_pristine(self, paths: Sequence[str | Path]) -> None:
        """Fit the pristine multivariate Gaussian on the sharp patches of ``paths``."""
        key = (tuple(sorted(str(p) for p in paths)), self._patch_size(), float(self.sharpness_threshold),
               bool(self.sharpness_features))
        if key == getattr(self, "fitted_on_", None):
            return
        if not key[0]:
            raise DatasetError("NIQE: no reference images to fit the pristine model on")
        kept = []
        for p in sorted(paths, key=str):
            feats, sharp = self._patch_feats(p)
            kept.append(feats[sharp >= float(self.sharpness_threshold) * sharp.max()])
        self.mu_, self.cov_ = _nan_gaussian(np.concatenate(kept))
        self.fitted_on_ = key

    def fit_builtin(self) -> None:
        """Fit the pristine model on the built-in reference photographs (``reference_dir`` when given):
        NIQE with no training data, as ``synthiqa predict --model niqe`` and ``create_metric("niqe")``."""
        if self.reference_dir:
            self.fit([])
            return
        self.fit_pristine([DecodedImage(torch.from_numpy(arr).permute(2, 0, 1), f"builtin:{name}")
                           for name, arr in builtin_reference_images()])

    def fit(self, train: Sequence[IQARecord], val: Sequence[IQARecord] | None = None) -> NIQE:
        """Fit on ``reference_dir`` if given, else on the training records' distinct references."""
        if self.reference_dir:
            folder = Path(self.reference_dir)
            if not folder.is_dir():
                raise DatasetError(f"{folder}: NIQE reference folder not found")
            paths = _list_images(folder)
            if not paths:
                raise DatasetError(f"{self.reference_dir}: no images to fit NIQE on")
        else:
            paths = sorted({str(r.reference) for r in train if r.reference is not None})
            if not paths:
                raise DatasetError("NIQE: the training records have no references; give reference_dir")
        self.fit_pristine(paths)
        return self

    def distance(self, path: str | Path) -> float:
        check_fitted(self, "NIQE")
        mu, cov = _nan_gaussian(self._patch_feats(path)[0])
        diff = self.mu_ - mu
        return float(np.sqrt(max(diff @ np.linalg.pinv((self.cov_ + cov) / 2) @ diff, 0.0)))

    def predict(self, records: Sequence[IQARecord]) -> np.ndarray:
        """Negated NIQE distance per record (higher is better)."""
        return np.array([-self.distance(r.image) for r in records], dtype=np.float64)

    def embed(self, records: Sequence[IQARecord]) -> np.ndarray:
        """Mean of each image's patch features (36, or 39 with ``sharpness_features``; NaN patches
        ignored)."""
        out = []
        for r in records:
            feats = self._patch_feats(r.image)[0]
            out.append(np.nanmean(feats, axis=0))
        return np.stack(out)


register_model("niqe")(NIQE)


class BRISQUE(BaseEstimator):
    """BRISQUE features + RBF SVR trained on the training split's ``score_norm`` (higher is better).

    Args:
        c_grid, gamma_grid: SVR hyper-parameters searched (chosen by validation SRCC).
        epsilon: SVR epsilon-tube width on the [0, 1] target.

    Fitted attributes: ``svr_`` (the scaler + SVR pipeline), ``selected_`` (C, gamma and their
    selection SRCC).
    """

    name = "brisque"
    needs_reference = False
    trainable = True

    def __init__(self, c_grid: Sequence[float] = (0.1, 1.0, 10.0, 100.0, 1000.0),
                 gamma_grid: Sequence[float] = (0.01, 0.03, 0.1, 0.3, 1.0), epsilon: float = 0.01) -> None:
        self.c_grid = c_grid
        self.gamma_grid = gamma_grid
        self.epsilon = epsilon

    def features(self, records: Sequence[IQARecord]) -> np.ndarray:
        """``[N, 36]`` BRISQUE features (cached by path)."""
        cache: dict[str, np.ndarray] = vars(self).setdefault("_feats", {})
        for r in records:
            key = str(r.image)
            if key not in cache and not isinstance(r.image, DecodedImage):
                cache[key] = brisque_features(rgb_to_gray(load_rgb(r.image)))
        return np.stack([brisque_features(rgb_to_gray(load_rgb(r.image))) if isinstance(r.image, DecodedImage)
                         else cache[str(r.image)] for r in records])

    def _make(self, c: float, g: float) -> Pipeline:
        svr = SVR(kernel="rbf", C=c, gamma=g, epsilon=float(self.epsilon))
        return make_pipeline(MinMaxScaler((-1, 1)), svr)

    def fit(self, train: Sequence[IQARecord], val: Sequence[IQARecord] | None = None) -> BRISQUE:
        """Grid-search C/gamma on ``val`` (or scene-grouped 3-fold CV on ``train``), then refit on train."""
        c_grid, gamma_grid = [float(c) for c in self.c_grid], [float(g) for g in self.gamma_grid]
        if not c_grid or not gamma_grid:
            raise ConfigError("BRISQUE: c_grid and gamma_grid need at least one value each")
        if len(train) < 3:
            raise DatasetError(f"BRISQUE: need at least 3 training images, got {len(train)}")
        x, y = self.features(train), np.array([r.score_norm for r in train])
        if val is not None and len(val) >= 3:
            folds = [(np.arange(len(train)), None)]
            xv, yv = self.features(val), np.array([r.score_norm for r in val])
        else:
            groups = np.array([r.scene or str(r.image) for r in train])
            n = min(3, len(set(groups)))
            if n < 2:
                folds = [(np.arange(len(train)), np.arange(len(train)))]
            else:
                folds = list(GroupKFold(n_splits=n).split(x, y, groups))
        best, best_score = (c_grid[0], gamma_grid[0]), -np.inf
        for c in c_grid:
            for g in gamma_grid:
                scores = []
                for tr, te in folds:
                    model = self._make(c, g).fit(x[tr], y[tr])
                    if te is None:
                        scores.append(srcc(model.predict(xv), yv))
                    else:
                        scores.append(srcc(model.predict(x[te]), y[te]))
                score = np.nanmean(scores) if np.any(np.isfinite(scores)) else -np.inf
                if score > best_score:
                    best, best_score = (c, g), score
        self.selected_ = {"C": best[0], "gamma": best[1], "selection_srcc": float(best_score)}
        self.svr_ = self._make(*best).fit(x, y)
        return self

    def predict(self, records: Sequence[IQARecord]) -> np.ndarray:
        check_fitted(self, "BRISQUE")
        return self.svr_.predict(self.features(records)).astype(np.float64)

    def embed(self, records: Sequence[IQARecord]) -> np.ndarray:
        """The raw 36 BRISQUE features."""
        return self.features(records)


register_model("brisque")(BRISQUE)
