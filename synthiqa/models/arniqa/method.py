"""ARNIQA: self-supervised learning of the image-distortion manifold, then Ridge on frozen features.

Training (re-implemented from the paper and its training-pair recipe, not copied): each item is two
different training references A and B degraded **equally** by one ARNIQA chain (``sample_chain``, profile
``arniqa``; the same drawn parameters for all four crops: ``RandomDegradation``'s ``share``), made by
``synthiqa.datasets.DegradedReferences(pairs=True, half_scale=True)``. Each yields a random crop of the full
image and one of the image downscaled by 2 (bicubic with antialiasing, as Pillow's). NT-Xent (temperature
0.1) between the projections of ``cat(A_full, A_half)`` and ``cat(B_full, B_half)``: the positive of a crop
is the other image's crop at the same scale (same degradation, different content); every other crop of the
4B set is a negative. The encoder is a ResNet (timm, from scratch) with a two-layer projection head.

Quality (``test.py``): the frozen encoder at full and half scale on five crops (centre and the four
corners) of each image; full and half features (L2-normalised) are concatenated; Ridge regression with
the alpha of ``np.geomspace(1e-3, 1e3, 100)`` that has the best median validation SRCC over 10
reference-disjoint splits; an image's score is the mean over its five crops.

Optimiser: the paper's is SGD (momentum 0.9, weight decay 1e-4) with cosine annealing and warm restarts
set every step (T0 = 1 epoch, Tmult = 2, down to 1e-3 of the base rate), no gradient clipping; preset
``paper`` keeps it with the published sizes (ResNet-50, 224 px, batch 16, lr 1e-3, 10 epochs). The best
epoch by validation SRCC is kept (``ARNIQA#26``).

Scaled down for the CPU, on purpose: ResNet-18 on 96 px crops, 4 epochs of 75 steps of 8 pairs (32 crops,
so each anchor has 31 candidates and chance is ``log 31 = 3.43``), AdamW at 1e-3 with a cosine decay over
the epochs, and pairs of up to 7 distortions at uniform levels (``level_law``) instead of the paper's up
to 4 with mild levels likelier. The paper starts from ImageNet weights; from scratch, with a few hundred
steps instead of its 87,500, what the loss can learn is bounded by how many of a batch's 8 chains can be
told apart from two crops of different content. Under the half-Gaussian law most steps are at level 1 or
2, several of them invisible in a 96 px crop (``mean_shift`` and ``contrast_change`` at level 1 are the
identity, ``gaussian_blur`` at 1 is sigma 0.1): with one distortion a chain the loss stayed at chance
(3.38 after 150 steps), with up to 4 it ended 12% below it, with up to 7 at uniform levels 20% below in
the same steps, and the frozen features scored people no worse. The optimiser's settings moved it little:
SGD at 1e-2 under warm restarts (the learning rate falls to 1e-5 within the first 35 steps, then restarts)
left it at chance, AdamW is what moved it, and its learning rate (3e-4 to 3e-3), weight decay, warm-up,
temperature 0.1 to 0.5, a BatchNorm projection head, 64 or 128 px crops, 16 pairs at one scale, pooling
every stage or a smaller encoder did not change how fast it fell.

The encoder learns from the training split's references instead of KADIS-700 (or, with ``--on-the-fly
REF_DIR``, from a reference folder: the Ridge then fits the level rule's scores of fixed degraded crops of
the training references and is tested on held-out references), and the epoch's validation Ridge uses the
centre crop of at most ``val_samples`` images. Every step's loss and its chance level go to ``steps.csv``.

With ``scene_statistics`` the Ridge sees a hybrid: the encoder's features and, appended to each crop's,
the whole image's fixed statistics (``WholeImageFeatures``: tone, colour, DCT energy, MSCN and histogram
statistics, no learned weights), standardised on the Ridge's training images.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from synthiqa.datasets.degraded import DegradedLoader, DegradedReferences
from synthiqa.datasets.folds import EXPERIMENTS, ExperimentData, experiment_records
from synthiqa.datasets.records import IQARecord
from synthiqa.datasets.splits import canonical_protocol, scene_disjoint_folds
from synthiqa.errors import ConfigError, DatasetError, SynthiqaError
from synthiqa.models.components.backbones import create_backbone
from synthiqa.models.components.feature_cache import FeatureCache, file_key
from synthiqa.models.components.features import WholeImageFeatures
from synthiqa.models.components.ridge import (
    ALPHAS,
    ColumnScale,
    RidgeModel,
    alpha_grid_search,
    fit_ridge,
    validation_alpha,
)
from synthiqa.models.data import fit_min_side, read_rgb
from synthiqa.models.estimator import MethodPredictor, check_fitted
from synthiqa.models.method_config import MethodConfig, check_choice, check_positive
from synthiqa.models.registry import register_model
from synthiqa.models.training.distributed import (
    barrier,
    gather_in_order,
    is_main_process,
    round_to_ranks,
    sharded,
)
from synthiqa.models.training.loop import (
    LoopSettings,
    load_checkpoint,
    run_training,
    save_checkpoint,
)
from synthiqa.models.training.onthefly import PARTS, eval_set, split_references
from synthiqa.models.training.recipe import Recipe, Trained, run_recipe
from synthiqa.stats import plcc, quality_summary, quality_table, srcc

METHOD = "arniqa"
#: Evaluation crops per scale: centre, top-left, top-right, bottom-left, bottom-right.
FIVE_CROPS = 5
#: ``level_law`` -> the chain law's ``level_sigma`` (None: the profile's half-Gaussian, ARNIQA's).
LEVEL_SIGMA = {"uniform": math.inf, "half_gaussian": None}


@dataclass
class ARNIQAConfig(MethodConfig):
    """Every setting of ARNIQA.

    Encoder: ``encoder`` (``resnet18``, ``resnet50``, any timm or synthiqa backbone, trained from
    scratch), ``encoder_checkpoint`` (an ARNIQA checkpoint whose encoder to use: no self-supervised
    training), ``projection_dim``, ``crop_size`` (px, both scales), ``normalize_features`` (L2 before
    Ridge), ``scene_statistics`` (a hybrid: the fixed whole-image statistics of ``WholeImageFeatures``,
    no learned weights, appended to every crop's features, and the Ridge fitted on standardised columns).
    Self-supervised training: ``epochs`` x ``steps_per_epoch`` steps of ``batch_size`` items (4 crops
    each), ``optimizer`` (``sgd`` with ``momentum``, or ``adamw``), ``learning_rate``, ``weight_decay``,
    ``scheduler`` (``warm_restarts``: SGDR per step; or ``cosine``, ``step``, ``none`` per epoch),
    ``grad_clip`` (0 = off), ``temperature`` (NT-Xent),
    ``max_distortions``, ``level_law`` (``uniform``, or ``half_gaussian``: ARNIQA's, mild levels likelier)
    and ``pristine_prob`` (the chain law of the training pairs), ``val_samples`` (images of the per-epoch
    validation: Ridge with ``val_alpha`` on that many training images, SRCC on as many val images).
    Quality: ``alpha`` (fixed, or None for the grid search over ``n_splits`` reference-disjoint folds).
    Data: ``experiment``, ``fold``, ``test_data`` as for TRCNN/SIND. ``seed``, ``device``, ``amp``,
    ``num_workers`` (decoding workers), ``eval_batch`` (images per feature batch).
    """

    encoder: str = "resnet18"
    encoder_checkpoint: str | None = None
    projection_dim: int = 128
    crop_size: int = 96
    normalize_features: bool = True
    scene_statistics: bool = False

    epochs: int = 4
    steps_per_epoch: int = 75
    batch_size: int = 8
    optimizer: str = "adamw"
    momentum: float = 0.9
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    scheduler: str = "cosine"
    grad_clip: float = 0.0
    temperature: float = 0.1
    max_distortions: int = 7
    level_law: str = "uniform"
    pristine_prob: float = 0.05
    val_samples: int = 100
    val_alpha: float = 0.1

    alpha: float | None = None
    n_splits: int = 10

    experiment: str = "intra"
    fold: int = 0
    test_data: str | None = None
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    num_workers: int = 0
    eval_batch: int = 16

    def validate(self) -> None:
        check_positive(self, "projection_dim", "steps_per_epoch", "batch_size", "max_distortions",
                       "val_samples", "n_splits", "eval_batch")
        if self.crop_size < 32:
            raise ConfigError(f"crop_size must be >= 32, got {self.crop_size}")
        for name in ("epochs", "fold", "num_workers"):
            if int(getattr(self, name)) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.temperature <= 0 or self.learning_rate <= 0:
            raise ConfigError("temperature and learning_rate must be > 0")
        if not 0 <= self.pristine_prob < 1:
            raise ConfigError(f"pristine_prob must be in [0, 1), got {self.pristine_prob}")
        if self.alpha is not None and self.alpha <= 0:
            raise ConfigError(f"alpha must be > 0 (or null for the grid search), got {self.alpha}")
        check_choice(self, "scheduler", ("warm_restarts", "cosine", "step", "none"))
        check_choice(self, "optimizer", ("sgd", "adamw"))
        check_choice(self, "level_law", tuple(LEVEL_SIGMA))
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum}")
        self.experiment = canonical_protocol(self.experiment)
        check_choice(self, "experiment", EXPERIMENTS)


PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "quick": {"epochs": 1, "steps_per_epoch": 30, "crop_size": 64, "val_samples": 100},
    # KADIS-700k's 140,000 references in batches of 16 per epoch
    "paper": {"encoder": "resnet50", "crop_size": 224, "batch_size": 16, "epochs": 10,
              "steps_per_epoch": 8750, "optimizer": "sgd", "learning_rate": 1e-3,
              "scheduler": "warm_restarts", "max_distortions": 4, "level_law": "half_gaussian"},
}


def preset_config(name: str = "default", **overrides: Any) -> ARNIQAConfig:
    """The config of a named preset, with ``overrides`` applied."""
    return ARNIQAConfig.from_preset(PRESETS, name, "ARNIQA", **overrides)


# ---------------------------------------------------------------------------------------- network
class ARNIQANet(nn.Module):
    """Encoder (backbone, global average pool of its last map) and projection head
    (linear-ReLU-linear to ``projection_dim``)."""

    def __init__(self, config: ARNIQAConfig):
        super().__init__()
        self.backbone = create_backbone(config.encoder, image_size=config.crop_size)
        dim = self.backbone.channels[-1]
        self.feature_dim = dim
        self.projector = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True),
                                       nn.Linear(dim, config.projection_dim))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Encoder features ``[B, C]`` of [0, 1] RGB images."""
        return self.backbone(images)[-1].float().mean((2, 3))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Projections ``[B, projection_dim]`` (the contrastive space)."""
        return self.projector(self.features(images))


def nt_xent_chance(n: int) -> float:
    """NT-Xent of an encoder that knows nothing (every candidate equally similar) for ``n`` pairs:
    ``log(2n - 1)``, the log of the candidates of each anchor (its positive and ``2n - 2`` negatives)."""
    return math.log(2 * n - 1)


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """NT-Xent (SimCLR) between ``a`` and ``b`` (``[N, D]``): row ``i`` of ``a`` and row ``i`` of ``b`` are
    positives, every other row of the ``2N`` set is a negative; cosine similarities over ``temperature``,
    cross-entropy averaged over all ``2N`` anchors."""
    z = F.normalize(torch.cat([a, b]).float(), dim=1)
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(len(z), dtype=torch.bool, device=z.device), float("-inf"))
    n = a.shape[0]
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(sim, target)


# ---------------------------------------------------------------------------------------- training pairs
def downscale_half(image: torch.Tensor) -> torch.Tensor:
    """uint8 ``[3,H,W]`` -> half size, bicubic with antialiasing (Pillow's ``resize`` BICUBIC)."""
    h, w = image.shape[-2:]
    out = F.interpolate(image[None].float(), size=(max(1, h // 2), max(1, w // 2)), mode="bicubic",
                        antialias=True, align_corners=False)
    return out[0].round().clamp(0, 255).to(torch.uint8)


#: Crops per pair item: A full, A half, B full, B half.
PAIR_VIEWS = 4


def pair_source(sources: Sequence[Any], config: ARNIQAConfig, device: torch.device | str
                ) -> DegradedReferences:
    """ARNIQA's training items from reference ``sources`` (paths or uint8 ``[3,H,W]``): ``steps_per_epoch``
    batches of ``batch_size`` pairs; each batch's ``image`` is ``[4B,3,S,S]`` float in [0, 1], item-major
    (A_full, A_half, B_full, B_half). Distorted on ``device`` (in the loader's worker on the CPU); batch ``t``
    of epoch ``e`` depends only on (seed, e, t); split over ``torch.distributed`` ranks."""
    c = config
    if len(sources) < 2:
        raise DatasetError(f"ARNIQA: self-supervised pairs need at least two reference images, got "
                           f"{len(sources)}")
    return DegradedReferences(
        sources, crop=c.crop_size, profile="arniqa", law="chain", max_chain=c.max_distortions,
        level_sigma=LEVEL_SIGMA[c.level_law], pristine_prob=c.pristine_prob, pairs=True, half_scale=True,
        batch_size=c.batch_size, items=round_to_ranks(c.steps_per_epoch) * c.batch_size, seed=c.seed,
        labels=None, out_dtype=torch.float32,
        distort="worker" if torch.device(device).type == "cpu" else "device")


def source_paths(records: Sequence[IQARecord]) -> list[Path]:
    """The pristine images of ``records``: their distinct references, or the images themselves for
    records without one (then already-degraded content is degraded again: an approximation)."""
    return [Path(p) for p in sorted({str(r.reference) if r.reference else str(r.image) for r in records})]


# ---------------------------------------------------------------------------------------- features
def five_crops(image: torch.Tensor, size: int, n: int = FIVE_CROPS) -> torch.Tensor:
    """``[n,3,S,S]``, the first ``n`` of: centre, top-left, top-right, bottom-left, bottom-right crops
    (the image is upscaled first when smaller than ``size``)."""
    image = fit_min_side(image, size)
    h, w = image.shape[-2:]
    origins = [((h - size) // 2, (w - size) // 2), (0, 0), (0, w - size), (h - size, 0), (h - size, w - size)]
    return torch.stack([image[:, y:y + size, x:x + size] for y, x in origins[:n]])


class TwoScaleCrops(Dataset):
    """Per record, ``[2n,3,S,S]`` uint8: ``n`` crops of the image (``five_crops``), then the same crops of
    its half-size copy; with ``statistics``, also the whole image's ``[D]`` statistics."""

    def __init__(self, paths: Sequence[Path | str], size: int, crops: int = FIVE_CROPS,
                 statistics: WholeImageFeatures | None = None):
        self.paths = list(paths)
        self.size = size
        self.crops = crops
        self.statistics = statistics

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        image = read_rgb(self.paths[i])
        crops = torch.cat([five_crops(image, self.size, self.crops),
                           five_crops(downscale_half(image), self.size, self.crops)])
        if self.statistics is None:
            return crops
        return crops, self.statistics.of_image(image)


@torch.no_grad()
def extract_features(model: ARNIQANet, paths: Sequence[Path | str], config: ARNIQAConfig,
                     device: torch.device, crops: int = FIVE_CROPS) -> np.ndarray:
    """``[N, crops, 2C]`` float32: per image and crop (``five_crops`` order), the full-scale and
    half-scale features concatenated (each L2-normalised when ``normalize_features``); with
    ``scene_statistics``, ``[N, crops, 2C + D]``: the image's ``WholeImageFeatures`` after each crop's."""
    model.eval()
    statistics = WholeImageFeatures() if config.scene_statistics else None
    loader = DataLoader(TwoScaleCrops(paths, config.crop_size, crops, statistics),
                        batch_size=config.eval_batch, num_workers=config.num_workers)
    out = []
    use_amp = config.amp and device.type == "cuda"
    for _, batch in sharded(loader):  # under torch.distributed: this rank's batches, gathered below
        batch, stats = batch if statistics is not None else (batch, None)
        images = batch.to(device).flatten(0, 1).float().div_(255.0)
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            feats = model.features(images).float()
        if config.normalize_features:
            feats = F.normalize(feats, dim=1)
        feats = feats.view(batch.shape[0], 2, crops, -1).cpu()
        parts = [feats[:, 0], feats[:, 1]]
        if stats is not None:
            parts.append(stats.float()[:, None].expand(-1, crops, -1))
        out.append(torch.cat(parts, dim=2).numpy())
    out = gather_in_order(out)
    if not out:
        raise SynthiqaError("ARNIQA: no images to extract features from")
    return np.concatenate(out)


def _scores(records: Sequence[IQARecord]) -> np.ndarray:
    return np.array([math.nan if r.score_norm is None else r.score_norm for r in records], dtype=np.float64)


def _subset(records: Sequence[IQARecord], n: int, seed: int) -> list[IQARecord]:
    """At most ``n`` of ``records`` (a seeded random subset, in their order)."""
    if len(records) <= n:
        return list(records)
    return [records[i] for i in sorted(np.random.default_rng(seed).choice(len(records), n, replace=False))]


def _scenes(records: Sequence[IQARecord]) -> list[str]:
    return [r.scene or str(r.reference or r.image) for r in records]


def _scored(features: np.ndarray, records: Sequence[IQARecord]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The features, scores and scenes of the records that have a score."""
    y = _scores(records)
    ok = np.isfinite(y)
    return features[ok], y[ok], [s for s, keep in zip(_scenes(records), ok, strict=True) if keep]


def fit_quality_ridge(features: np.ndarray, records: Sequence[IQARecord], config: ARNIQAConfig,
                      val_features: np.ndarray | None = None, val_records: Sequence[IQARecord] = ()
                      ) -> tuple[RidgeModel, dict[str, Any]]:
    """Ridge on the five-crop features of ``records`` (their normalised scores). The alpha is
    ``config.alpha``; else, with scored validation records, the one with the best SRCC on them (the
    published protocol: alpha on each split's val part, ridge on its train part); else the grid search
    over ``n_splits`` reference-disjoint folds of ``records``. With ``scene_statistics`` the columns are
    standardised on ``records`` first (the returned model takes raw features). Returns the model and a
    summary (alpha, and the validation SRCC of the chosen alpha)."""
    x, y, scenes = _scored(features, records)
    if len(y) < 2:
        raise DatasetError("ARNIQA: fewer than two training images have a score")
    info: dict[str, Any] = {}
    alpha = config.alpha
    xv, yv = (None, None) if val_features is None else _scored(val_features, val_records)[:2]
    scale = ColumnScale.fit(x) if config.scene_statistics else None
    if scale is not None:
        x = scale.apply(x)
        xv = None if xv is None else scale.apply(xv)
    if alpha is None and yv is not None and len(yv) >= 2 and np.ptp(yv) > 0:
        search = validation_alpha(x, y, xv, yv, ALPHAS)
        alpha = search.alpha
        info["alpha_val_srcc"] = search.best_srcc
    elif alpha is None:
        if len(set(scenes)) >= 2:
            search = alpha_grid_search(x, y, scene_disjoint_folds(scenes, config.n_splits, seed=config.seed),
                                       ALPHAS)
            alpha = search.alpha
            info["alpha_search_median_val_srcc"] = search.best_srcc
        else:
            alpha = config.val_alpha
    info["alpha"] = float(alpha)
    ridge = fit_ridge(x, y, alpha)
    return (ridge if scale is None else scale.fold(ridge)), info


# ---------------------------------------------------------------------------------------- loop task
class ARNIQATask:
    """ARNIQA's self-supervised part of the shared training loop; validation fits a Ridge with
    ``val_alpha`` on the centre-crop features of (up to ``val_samples``) training images and reports
    SRCC on as many val images (one crop per scale: cheaper than the final five-crop evaluation)."""

    method = METHOD
    #: Every parameter gets a gradient each step (DistributedDataParallel skips its search).
    unused_parameters = False

    def __init__(self, config: ARNIQAConfig, train: Sequence[IQARecord], val: Sequence[IQARecord],
                 device: torch.device, pairs: DegradedReferences | None = None):
        self.config = config
        self.device = device
        self.model = ARNIQANet(config)
        self.pairs = pairs if pairs is not None else pair_source(source_paths(train), config, device)
        self._loader: DegradedLoader | None = None
        n, seed = config.val_samples, config.seed
        self.val_train = _subset([r for r in train if r.score_norm is not None], n, seed)
        self.val = _subset([r for r in val if r.score_norm is not None], n, seed)

    def phase(self, epoch: int) -> tuple[str, int, int]:
        return "ssl", 0, self.config.epochs

    def batches(self, epoch: int) -> Iterable[dict[str, torch.Tensor]]:
        self.pairs.set_epoch(epoch)
        if self._loader is None:
            self._loader = self.pairs.loader(num_workers=self.config.num_workers, device=self.device,
                                             persistent_workers=True)
        return self._loader

    def start_epoch(self, epoch: int) -> dict[str, float]:
        return {}

    def step(self, batch: dict[str, torch.Tensor], epoch: int) -> tuple[torch.Tensor, dict[str, float]]:
        z = self.model(batch["image"])
        z = z.view(-1, PAIR_VIEWS, z.shape[-1])  # items x (A_full, A_half, B_full, B_half)
        a, b = z[:, :2].reshape(-1, z.shape[-1]), z[:, 2:].reshape(-1, z.shape[-1])
        loss = nt_xent(a, b, self.config.temperature)
        return loss, {"nt_xent": float(loss.detach()), "nt_xent_chance": nt_xent_chance(len(a))}

    def validate(self, epoch: int) -> dict[str, float]:
        if len(self.val) < 2 or len(self.val_train) < 2:
            return {}
        c = self.config.replace(scene_statistics=False)  # the encoder's own features select the epoch
        x_train = extract_features(self.model, [r.image for r in self.val_train], c, self.device, crops=1)
        x_val = extract_features(self.model, [r.image for r in self.val], c, self.device, crops=1)
        pred = fit_ridge(x_train, _scores(self.val_train), c.val_alpha).predict(x_val)
        y = _scores(self.val)
        if np.ptp(pred) == 0 or np.ptp(y) == 0:
            return {}
        return {"srcc": srcc(pred, y), "plcc": plcc(pred, y)}

    def config_dict(self) -> dict[str, Any]:
        return self.config.to_dict()

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        return None


def loop_settings(config: ARNIQAConfig, device: torch.device, progress: bool) -> LoopSettings:
    c = config
    return LoopSettings(c.epochs, c.learning_rate, c.weight_decay, c.scheduler, c.grad_clip, c.seed, device,
                        c.amp, progress=progress, optimizer=c.optimizer, momentum=c.momentum)


def ridge_state(ridge: RidgeModel) -> dict[str, Any]:
    return {"coef": torch.from_numpy(ridge.coef.astype(np.float64)), "intercept": float(ridge.intercept),
            "alpha": float(ridge.alpha)}


def load_encoder(path: str | Path, config: ARNIQAConfig) -> tuple[ARNIQANet, RidgeModel | None, ARNIQAConfig]:
    """The network (and Ridge, when fitted) of an ARNIQA checkpoint; the encoder and feature settings
    come from it (a caller that fits a new Ridge sets ``scene_statistics`` back to its own)."""
    state = load_checkpoint(path)
    if state.get("method") != METHOD:
        raise SynthiqaError(f"{path}: a {state.get('method')!r} checkpoint, not an ARNIQA one")
    saved = ARNIQAConfig.from_dict({**dict(state["config"]), "encoder_checkpoint": None},
                                   source=f"{path} config")
    config = config.replace(encoder=saved.encoder, projection_dim=saved.projection_dim,
                            crop_size=saved.crop_size, normalize_features=saved.normalize_features,
                            scene_statistics=saved.scene_statistics)
    model = ARNIQANet(config)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise SynthiqaError(f"{path}: weights do not fit the ARNIQA network ({first})") from None
    ridge = None
    if isinstance(state.get("ridge"), dict):
        r = state["ridge"]
        ridge = RidgeModel(r["coef"].numpy(), float(r["intercept"]), float(r["alpha"]))
    return model.eval(), ridge, config


@dataclass
class _Experiment:
    """The run recipe's data: an experiment fold and, on the fly, its pair source."""

    exp: ExperimentData
    pairs: DegradedReferences | None = None

    @property
    def description(self) -> str:
        return self.exp.description


def ssl_summary(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """The NT-Xent of the first and the last epoch (means over their steps) and its chance level."""
    losses = [r for r in rows if "loss_nt_xent" in r]
    if not losses:
        return {}
    return {"nt_xent_first_epoch": float(losses[0]["loss_nt_xent"]),
            "nt_xent_last_epoch": float(losses[-1]["loss_nt_xent"]),
            "nt_xent_chance": float(losses[-1]["loss_nt_xent_chance"])}


def _load_data(config: ARNIQAConfig, options: dict[str, Any], data: str | None, out_dir: Path,
               device: torch.device) -> _Experiment:
    if options.get("on_the_fly"):
        return _Experiment(*onthefly_experiment(str(options["on_the_fly"]), config, out_dir, device))
    return _Experiment(experiment_records(str(data), config.experiment, config.fold, config.test_data,
                                          options.get("label"), config.seed))


def _fit(config: ARNIQAConfig, loaded: _Experiment, options: dict[str, Any], out_dir: Path,
         device: torch.device) -> Trained:
    """The self-supervised encoder (or the one in ``encoder_checkpoint``), then the Ridge on train+val;
    ``best.pt`` holds both."""
    exp, report = loaded.exp, {}
    t0 = time.perf_counter()
    if config.encoder_checkpoint:
        model, _, loaded_config = load_encoder(config.encoder_checkpoint, config)
        config = loaded_config.replace(scene_statistics=config.scene_statistics)
        model = model.to(device)
        state: dict[str, Any] = {"method": METHOD, "config": config.to_dict(), "model": model.state_dict(),
                                 "epoch": 0}
        best_path = out_dir / "best.pt"
    else:
        task = ARNIQATask(config, exp.train, exp.val, device, loaded.pairs)
        settings = loop_settings(config, device, bool(options.get("progress", True)))
        result = run_training(task, settings, out_dir, resume=options.get("resume"))
        best_path = result.best_path  # type: ignore[assignment]
        state = load_checkpoint(best_path)
        model = task.model
        model.load_state_dict(state["model"])
        report.update(best_epoch=result.best_epoch, best_val_srcc=result.best_srcc,
                      ssl_images_per_s=result.images_per_second, **ssl_summary(result.rows))
    report["ssl_seconds"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    fit_records = exp.train + exp.val
    ridge, info = fit_quality_ridge(extract_features(model, [r.image for r in fit_records], config, device),
                                    fit_records, config)
    report.update(info, ridge_seconds=time.perf_counter() - t1)
    weights = {k: v.cpu() for k, v in model.state_dict().items()}
    state = {**state, "config": config.to_dict(), "model": weights, "ridge": ridge_state(ridge)}
    if is_main_process():
        save_checkpoint(best_path, state)
    return Trained(best_path, report, (model, ridge, config))


def _test(config: ARNIQAConfig, loaded: _Experiment, trained: Trained, device: torch.device
          ) -> dict[str, Any]:
    if not loaded.exp.test:
        return {}
    model, ridge, config = trained.model
    pred = ridge.predict(extract_features(model, [r.image for r in loaded.exp.test], config, device))
    return {"test": _metrics(pred, loaded.exp.test)}


RECIPE = Recipe(METHOD, ARNIQAConfig, preset_config, _load_data, _fit, _test)


def train_arniqa(options: dict[str, Any], data: str | None, out: str | Path | None) -> Path:
    """``synthiqa train --method arniqa`` through the run recipe (``models/training/recipe.py``):
    self-supervised encoder training on the training split's references (best epoch by validation SRCC),
    then the Ridge (alpha grid search) on train+val, test metrics in ``run.json``; ``best.pt`` holds
    encoder and Ridge. With ``encoder_checkpoint`` set, the self-supervised stage is skipped."""
    return run_recipe(RECIPE, options, data, out)


def onthefly_experiment(ref_dir: str, config: ARNIQAConfig, out_dir: Path, device: torch.device
                        ) -> tuple[ExperimentData, DegradedReferences]:
    """ARNIQA on a reference folder: pairs from the training references; the Ridge's training images (fixed
    degraded crops of the training references), validation and test images (of held-out references)
    labelled by the level rule and written under ``out_dir/onthefly``."""
    parts = split_references(ref_dir, config.crop_size, config.seed)
    pairs = pair_source(parts.sources_of("train"), config, device)
    sets = {part: eval_set(parts, part, out_dir / "onthefly", config.crop_size, "arniqa", "chain",
                           config.seed, max(2 * config.val_samples, 32), max_chain=config.max_distortions,
                           write=is_main_process())
            for part in PARTS}
    barrier()
    exp = ExperimentData(sets["train"], sets["val"], sets["test"], [0] * len(sets["train"]),
                         [0] * len(sets["val"]), [ref_dir], parts.describe("arniqa"))
    return exp, pairs


def _metrics(pred: np.ndarray, records: Sequence[IQARecord]) -> dict[str, Any]:
    """The quality table (``synthiqa.stats.quality_table``, raw metric set) overall and per distortion type,
    with MSE beside each RMSE."""
    result = quality_summary(quality_table(pred, _scores(records), [r.dist_type for r in records]))
    for row in (result, *result.get("per_type", {}).values()):
        if "rmse" in row:
            row["mse"] = float(row["rmse"]) ** 2
    return result


# ---------------------------------------------------------------------------------------- predictor
#: Features of frozen checkpoint encoders, shared by every ARNIQA predictor of this process.
FEATURE_CACHE = FeatureCache()


class ARNIQAPredictor(MethodPredictor):
    """ARNIQA behind the ``QualityPredictor`` interface.

    ``fit`` trains the encoder self-supervised on the training records' references (unless
    ``encoder_checkpoint`` names an ARNIQA checkpoint whose encoder to use; ``from_checkpoint`` sets it)
    and fits the Ridge (alpha grid search) on their five-crop features; ``predict`` gives the Ridge's
    score (mean over the five crops; on the scale of the normalised scores, higher is better); ``embed``
    the crop-averaged features.

    Args:
        preset: ``default``, ``quick`` or ``paper``; config: a full ``ARNIQAConfig`` instead;
        progress: progress bars while fitting; **options: config fields (e.g. ``encoder_checkpoint=PATH``).

    Fitted attributes: ``config_``, ``device_``, ``model_`` (the encoder), ``ridge_`` (None for a loaded
    checkpoint without one).
    """

    name = METHOD
    label = "ARNIQA"
    config_class = ARNIQAConfig
    presets = PRESETS

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> ARNIQAPredictor:
        """The checkpoint's encoder and Ridge; ``fit`` (or a ``clone``'s) refits the Ridge on that encoder."""
        predictor = cls(encoder_checkpoint=str(path), device="auto")
        config, device = predictor.resolve()
        model, predictor.ridge_, predictor.config_ = load_encoder(path, config)
        predictor.device_, predictor.model_ = device, model.to(device)
        return predictor

    def fit(self, train: Sequence[IQARecord], val: Sequence[IQARecord] | None = None) -> ARNIQAPredictor:
        config, device = self.resolve()
        if not train:
            raise DatasetError("ARNIQA: no training records")
        if config.encoder_checkpoint:
            model, _, loaded_config = load_encoder(config.encoder_checkpoint, config)
            config = loaded_config.replace(scene_statistics=config.scene_statistics)
            model.to(device)
        else:
            torch.manual_seed(config.seed)  # initial weights from the config's seed, as in training
            task = ARNIQATask(config, train, val or [], device)
            result = run_training(task, loop_settings(config, device, self.progress), out_dir=None)
            task.model.load_state_dict(result.best_state["model"])
            model = task.model.eval()
        self.config_, self.device_, self.model_ = config, device, model
        val = list(val or [])
        if val and config.alpha is None:
            self.ridge_, _ = fit_quality_ridge(self._features(train), train, config, self._features(val), val)
        else:
            records = list(train) + val
            self.ridge_, _ = fit_quality_ridge(self._features(records), records, config)
        return self

    def _features(self, records: Sequence[IQARecord]) -> np.ndarray:
        """Five-crop features of ``records``; a frozen checkpoint's are extracted once per image file and
        reused by every later split (``FEATURE_CACHE``)."""
        check_fitted(self, "ARNIQA")
        paths = [r.image for r in records]
        c = self.config_
        checkpoint = self.resolve()[0].encoder_checkpoint
        if not checkpoint or not all(isinstance(p, (str, Path)) for p in paths):  # in-memory images
            return extract_features(self.model_, paths, c, self.device_)
        key = (file_key(checkpoint), c.crop_size, c.normalize_features, c.scene_statistics)
        return FEATURE_CACHE.features(key, paths, lambda todo: extract_features(self.model_, todo, c,
                                                                                 self.device_))

    def predict(self, records: Sequence[IQARecord]) -> np.ndarray:
        check_fitted(self, "ARNIQA")
        if self.ridge_ is None:
            raise SynthiqaError("ARNIQA: the Ridge is not fitted; call fit() with scored records")
        return self.ridge_.predict(self._features(records))

    def embed(self, records: Sequence[IQARecord]) -> np.ndarray | None:
        return self._features(records).mean(1)


register_model(
    METHOD, ARNIQAPredictor, config=ARNIQAConfig, train=train_arniqa, load=ARNIQAPredictor.from_checkpoint,
    description="self-supervised distortion-manifold encoder (NT-Xent on same-chain pairs) + Ridge",
)
