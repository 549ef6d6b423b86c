"""CENIQA: cluster-enhanced neural IQA. Model, three-stage training, checkpoints and the predictor.

Network (``CENIQANet``): backbone -> feature extractors (multi-scale pooled maps, blockwise DCT
statistics, attention-pooled patch features, global pixel statistics of the crops, and quantile-normalised
pixel, DCT and natural-scene statistics of the whole image) -> projection to ``feature_dim`` (the
embedding) -> Gaussian-mixture posteriors (soft, differentiable) -> regression head on embedding +
posteriors -> sigmoid: the score, in [0, 1], higher is better. A linear head on the embedding predicts the
distortion type (consistency loss). The level head, a multinomial logistic regression on the normalised
whole-image features of each tile of a grid over the image, predicts the (type, level) class from the
tiles' mean log-probabilities; the score blends the regression head's output with the expected training
quality of the predicted classes (the class prior), with a weight fitted on the validation images
(``blend_on_validation``; without them, learned by the quality loss).

Training (``CENIQATask`` in the shared loop of ``training/loop.py``):
1. ``pretrain_epochs`` of self-supervised pre-training, no quality labels: contrastive on distortion type
   (and group), consistency (type classification), ranking by level within a reference.
2. Mixture fitting on the embeddings of the training images: K = ``n_clusters``, or chosen by BIC over
   ``bic_range`` if ``use_bic_selection``.
3. ``epochs`` of end-to-end fine-tuning with all six losses; the mixture is refitted (warm start) every
   ``refit_interval`` epochs; the cluster loss weighs ``lambda_cluster * cluster_loss_weight``. The level
   head is fitted (L-BFGS) on the features of the training images' tiles with the mixture, and refitted
   with it.
Active clusters (holding >= 5% of the images) are logged every fine-tuning epoch and a collapse warns.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from synthiqa.datasets import apply_split, reference_disjoint_splits, stored_split
from synthiqa.datasets.degraded import DegradedLoader, DegradedReferences
from synthiqa.datasets.labels import level_quality
from synthiqa.datasets.records import IQARecord
from synthiqa.datasets.spec import load_data_spec
from synthiqa.devices import resolve_device
from synthiqa.distortions import ChainOp, get_distortion, list_distortions
from synthiqa.errors import ConfigError, DatasetError, SynthiqaError
from synthiqa.models.ceniqa.config import CENIQAConfig
from synthiqa.models.components.backbones import create_backbone
from synthiqa.models.components.features import (
    FrequencyFeatures,
    MultiScaleFeatures,
    PatchQualityFeatures,
    QuantileNormalizer,
    StatisticsFeatures,
    WholeImageFeatures,
)
from synthiqa.models.components.gmm import GaussianMixture, select_by_bic, warn_on_collapse
from synthiqa.models.components.losses import (
    LossWeights,
    cluster_loss,
    combine,
    consistency_loss,
    contrastive_loss,
    monotonic_loss,
    quality_loss,
    ranking_loss,
)
from synthiqa.models.components.regressors import create_regressor
from synthiqa.models.data import LabelSpace, RecordImages, SceneBatchSampler, collate
from synthiqa.models.estimator import MethodPredictor, check_fitted
from synthiqa.models.inference import Outputs, evaluate_outputs, records_scores, run_model
from synthiqa.models.registry import register_model
from synthiqa.models.training.distributed import RankSlice, round_to_ranks
from synthiqa.models.training.loop import LoopSettings, load_checkpoint, run_training
from synthiqa.models.training.onthefly import PARTS, ReferenceParts, split_references
from synthiqa.models.training.recipe import Recipe, Trained, run_recipe

METHOD = "ceniqa"
#: Most training embeddings the mixture is fitted on (a random subset beyond that).
GMM_FIT_SAMPLES = 1000
#: Most training images whose whole-image features fit the ``QuantileNormalizer`` (a random subset).
CONTEXT_FIT_IMAGES = 512
#: Severity levels per distortion type that the level head tells apart (1..5).
N_LEVELS = 5
#: L2 penalty of the level head's logistic regression (on mean cross-entropy; features ~ N(0, 1)).
LEVEL_L2 = 3e-4
#: L-BFGS iterations of one level-head fit.
LEVEL_FIT_ITERATIONS = 200
#: Most training images the level head is fitted on (a random subset beyond that).
LEVEL_FIT_IMAGES = 4000
#: A cluster is active when it holds at least this share of the images.
ACTIVE_FRACTION = 0.05

#: Named settings: ``quick`` is the benchmark harness's fast suite (about 2-3 minutes on two CPU cores
#: for a few thousand images).
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "quick": {"pretrain_epochs": 1, "epochs": 3, "image_size": 96, "test_crops": 2, "patches_per_image": 2,
              "train_crops": 1, "train_samples": 1000, "val_samples": 300},
}


def preset_config(name: str = "default", **overrides: Any) -> CENIQAConfig:
    """The config of a named preset, with ``overrides`` applied."""
    return CENIQAConfig.from_preset(PRESETS, name, "CENIQA", **overrides)


class CENIQANet(nn.Module):
    """The CENIQA network (see the module docstring). ``n_types``: distortion types of the type head.

    Input: ``[B,3,S,S]`` crops, or ``[B,n,3,S,S]``: ``n`` crops of each image, whose extracted features are
    averaged before the projection (one embedding, posterior and score per image; ``pools_crops``).
    """

    #: ``run_model`` passes an image's evaluation crops together rather than averaging their scores.
    pools_crops = True

    def __init__(self, config: CENIQAConfig, n_types: int, n_components: int | None = None):
        super().__init__()
        self.config = config
        self.backbone = create_backbone(config.backbone, pretrained=config.pretrained,
                                        checkpoint=config.backbone_checkpoint, image_size=config.image_size)
        dims = 0
        self.multiscale = MultiScaleFeatures(self.backbone.channels) if config.use_multiscale else None
        self.frequency = FrequencyFeatures(config.dct_block) if config.use_frequency else None
        self.patch_stage = _patch_stage(self.backbone.reductions)
        self.patch = (PatchQualityFeatures(self.backbone.channels[self.patch_stage], config.patch_dim)
                      if config.use_patch else None)
        self.statistics = StatisticsFeatures() if config.use_statistics else None
        scene = config.use_scene_statistics
        self.whole_image = WholeImageFeatures(config.dct_block, scene) if config.use_whole_image else None
        #: What the loaders compute per whole image (uint8 ``[3,H,W]`` -> ``[V, D]``, CPU: the whole image,
        #: then its ``level_tiles`` x ``level_tiles`` tiles), or None.
        self.context_features = (functools.partial(WholeImageFeatures(config.dct_block, scene).views_of_image,
                                                   tiles=config.level_tiles)
                                 if config.use_whole_image else None)
        self.context_norm = (QuantileNormalizer(self.whole_image.out_dim)
                             if self.whole_image is not None and config.normalize_context else None)
        for part in (self.multiscale, self.frequency, self.patch, self.statistics, self.whole_image):
            dims += part.out_dim if part is not None else 0
        hidden = max(2 * config.feature_dim, 256)
        self.project = nn.Sequential(nn.BatchNorm1d(dims), nn.Linear(dims, hidden), nn.GELU(),
                                     nn.Linear(hidden, config.feature_dim), nn.LayerNorm(config.feature_dim))
        self.gmm = GaussianMixture(n_components or config.n_clusters, covariance_type=config.covariance_type,
                                   seed=config.seed, max_iter=200)
        self.regressor = create_regressor(config.regressor_type, config.feature_dim,
                                          n_clusters=config.max_clusters)
        self.type_head = nn.Linear(config.feature_dim, max(n_types, 1))
        #: Linear (type, level) classifier on the normalised features of the whole image's tiles (of the
        #: whole image without tiles); fitted by ``fit_level_head``, not by the optimiser.
        n_classes = 1 + N_LEVELS * max(n_types, 1)
        self.level_head = (nn.Linear(self.whole_image.out_dim, n_classes).requires_grad_(False)
                           if config.use_level_head and self.whole_image is not None else None)
        if self.level_head is not None:
            #: Mean training target of each level class (``level_class``); NaN until set: no blending.
            self.register_buffer("class_quality", torch.full((self.level_head.out_features,), math.nan))
            self.register_buffer("level_fitted", torch.zeros((), dtype=torch.bool))
            #: Logit of the blend weight of the class prior in the score (0: half and half).
            self.prior_weight = nn.Parameter(torch.zeros(()))

    def embed(self, images: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """Embeddings ``[B, feature_dim]`` of [0, 1] RGB images ``[B,3,H,W]`` or crop sets ``[B,n,3,H,W]``
        (features averaged over the ``n`` crops). ``context [B, V, D]``: the whole images' views' features
        (``context_features``; ``[B, D]`` is one view); without it they are taken from the crops
        (averaged)."""
        return self.embed_parts(images, context)[0]

    def embed_parts(self, images: torch.Tensor, context: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(embeddings, the normalised whole-image views' features ``[B, V, D]`` or None without them)."""
        n_crops = images.shape[1] if images.dim() == 5 else 1
        images = images.flatten(0, 1) if images.dim() == 5 else images
        parts = []
        if self.multiscale is not None or self.patch is not None:
            maps = self.backbone(images)
            if self.multiscale is not None:
                parts.append(self.multiscale(maps))
            if self.patch is not None:
                parts.append(self.patch(maps[self.patch_stage]))
        if self.frequency is not None:
            parts.append(self.frequency(images))
        if self.statistics is not None:
            parts.append(self.statistics(images))
        features = torch.cat([p.float() for p in parts], 1) if parts else images.new_zeros(len(images), 0)
        features = features.view(-1, n_crops, features.shape[1]).mean(1)
        if self.whole_image is not None:
            d = self.whole_image.out_dim
            if context is None:
                views = self.whole_image.views(images, self.config.level_tiles)
                context = views.view(-1, n_crops, views.shape[1], d).mean(1)
            context = context.view(len(features), -1, d)
            if self.context_norm is not None:
                context = self.context_norm(context.flatten(0, 1)).view(context.shape)
            context = context.float()
            features = torch.cat([features, context[:, 0]], 1)
        return self.project(features), context

    def posteriors(self, embeddings: torch.Tensor) -> torch.Tensor | None:
        """Mixture posteriors ``[B, max_clusters]`` (unused components 0), or None before fitting.
        Differentiable with respect to the embeddings; computed in float32."""
        if not self.gmm.fitted:
            return None
        with torch.autocast(embeddings.device.type, enabled=False):
            post = self.gmm.predict_proba(embeddings.float())
        width = self.config.max_clusters
        return nn.functional.pad(post, (0, width - post.shape[1])) if post.shape[1] < width else post

    def score(self, embeddings: torch.Tensor, posteriors: torch.Tensor | None,
              context: torch.Tensor | None = None) -> torch.Tensor:
        """Quality ``[B]`` in [0, 1], higher is better: the regression head's sigmoid output, blended (once
        the level head is fitted, given the normalised whole-image views' features ``context [B, V, D]``)
        with the class prior: the expected training quality under the level head's (type, level)
        probabilities (the normalised mean of its tiles' log-probabilities), with the weight
        ``sigmoid(prior_weight)`` (``blend``)."""
        return self.blend(*self.score_parts(embeddings, posteriors, context))

    def blend(self, regression: torch.Tensor, prior: torch.Tensor | None) -> torch.Tensor:
        """The score of its two terms (``score_parts``): ``(1 - a) * regression + a * prior`` with
        ``a = sigmoid(prior_weight)``, or ``regression`` without a prior."""
        if prior is None:
            return regression
        weight = torch.sigmoid(self.prior_weight.float())
        return (1 - weight) * regression + weight * prior

    def score_parts(self, embeddings: torch.Tensor, posteriors: torch.Tensor | None,
                    context: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(the regression head's sigmoid output ``[B]``, the class prior ``[B]`` or None while there is
        none): the two terms ``score`` blends, each in [0, 1]."""
        score = torch.sigmoid(self.regressor(embeddings, posteriors).float())
        if self.level_head is None or context is None or not bool(self.level_fitted):
            return score, None
        log_probs = torch.log_softmax(self.level_head(self.level_views(context).float()), -1)
        return score, torch.softmax(log_probs.mean(1), 1) @ self.class_quality

    @torch.no_grad()
    def fit_prior_weight(self, regression: torch.Tensor, prior: torch.Tensor, target: torch.Tensor) -> float:
        """Set the blend weight to the least-squares fit of ``target ~ (1 - a) * regression + a * prior``
        (``[N]`` each, normalised; non-finite targets ignored), a clipped to [0.001, 0.999]; returns a."""
        ok = torch.isfinite(target)
        r, d = regression[ok].double(), (prior[ok] - regression[ok]).double()
        fit = (d * (target[ok].double() - r)).sum() / d.square().sum().clamp_min(1e-12)
        a = float(fit) if ok.any() else 0.5
        a = min(max(a, 1e-3), 1 - 1e-3)
        self.prior_weight.fill_(math.log(a / (1 - a)))
        return a

    def level_views(self, context: torch.Tensor) -> torch.Tensor:
        """The views the level head reads, ``[B, V', D]``, of whole-image views ``[B, V, D]``: the tiles, or
        the whole image where there are none."""
        return context[:, 1:] if context.shape[1] > 1 else context

    @torch.no_grad()
    def fit_level_head(self, contexts: torch.Tensor, classes: torch.Tensor, quality: torch.Tensor) -> None:
        """Fit the level head on raw whole-image views' features ``[N, V, D]`` of training images and their
        ``level_class`` ids ``[N]`` (-1 ignored): multinomial logistic regression on the normalised
        features of each ``level_views`` view (one sample each), L2 penalty ``LEVEL_L2``, L-BFGS from the
        current weights. ``quality``: the mean normalised training target per class."""
        assert self.level_head is not None and self.whole_image is not None
        keep = classes >= 0
        if not bool(keep.any()):
            return
        device = self.level_head.weight.device
        views = self.level_views(contexts[keep].float().to(device))
        x = views.flatten(0, 1)
        x = self.context_norm(x) if self.context_norm is not None else x
        y = classes[keep].long().to(device).repeat_interleave(views.shape[1])
        head = self.level_head
        head.requires_grad_(True)
        optimiser = torch.optim.LBFGS(head.parameters(), max_iter=LEVEL_FIT_ITERATIONS, history_size=20,
                                      line_search_fn="strong_wolfe")

        def objective() -> torch.Tensor:
            optimiser.zero_grad()
            with torch.enable_grad():
                loss = (nn.functional.cross_entropy(head(x), y)
                        + 0.5 * LEVEL_L2 * head.weight.square().sum())
                loss.backward()
            return loss

        with torch.autocast(device.type, enabled=False):
            optimiser.step(objective)
        head.requires_grad_(False)
        head.weight.grad = head.bias.grad = None
        self.class_quality.copy_(quality.to(self.class_quality))
        self.level_fitted.fill_(True)

    def outputs(self, images: torch.Tensor, context: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor | None]:
        """``score [B]``, ``posterior [B, K]`` (None before fitting), ``embedding [B, D]``,
        ``type_logits [B, n_types]``, and the two terms of the score, ``regression [B]`` and ``prior [B]``
        (None without a fitted level head)."""
        emb, ctx = self.embed_parts(images, context)
        post = self.posteriors(emb)
        regression, prior = self.score_parts(emb, post, ctx)
        return {"score": self.blend(regression, prior), "posterior": post, "embedding": emb,
                "type_logits": self.type_head(emb), "regression": regression, "prior": prior}

    def forward(self, images: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """Scores ``[B]`` in [0, 1], higher is better."""
        emb, ctx = self.embed_parts(images, context)
        return self.score(emb, self.posteriors(emb), ctx)

    def gmm_state(self) -> dict[str, Any]:
        """The mixture for checkpoints: component count, covariance type and fitted tensors (CPU)."""
        g = self.gmm
        state: dict[str, Any] = {"n_components": g.n_components, "covariance_type": g.covariance_type}
        state.update({k: v.detach().cpu() for k, v in g.state_dict().items()})
        return state

    def set_gmm(self, gmm: GaussianMixture) -> None:
        self.gmm = gmm.to(next(self.parameters()).device)


def level_class(dist_type: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """Class ids of the level head: 0 pristine (type -1, level 0), ``1 + N_LEVELS * type + level - 1`` for
    a known type at level 1..5 (rounded), -1 (ignored) otherwise (unknown type or level)."""
    lv = torch.nan_to_num(level.float(), nan=-1.0).round().long()
    known = (dist_type >= 0) & (lv >= 1) & (lv <= N_LEVELS)
    classes = torch.where(known, 1 + N_LEVELS * dist_type.long() + lv - 1, torch.full_like(lv, -1))
    return torch.where((dist_type < 0) & (lv == 0), torch.zeros_like(lv), classes)


def _patch_stage(reductions: Sequence[int]) -> int:
    """The map whose stride is closest to 8 px (16x16 patches on a 128 px crop)."""
    return min(range(len(reductions)), key=lambda i: (abs(math.log2(reductions[i] / 8)), -i))


# ---------------------------------------------------------------------------------------- data
@dataclass
class DataBundle:
    """Where a run's batches come from: files (records) or the engine (on the fly)."""

    labels: LabelSpace
    train_records: list[IQARecord] | None = None
    val_records: list[IQARecord] | None = None
    test_records: list[IQARecord] | None = None
    onthefly: tuple[DegradedReferences, DegradedReferences, DegradedReferences] | None = None
    description: str = ""
    references: ReferenceParts | None = None


def load_record_splits(data: str, label: str | None, seed: int
                       ) -> tuple[list[IQARecord], list[IQARecord], list[IQARecord], str]:
    """(train, val, test) records of ``data``: the manifest's ``split`` column where the set has one,
    else one reference-disjoint 70/10/20 split (seeded)."""
    _, dataset = load_data_spec(data, label)
    if any(r.extra.get("split") in ("train", "val", "test") for r in dataset.records):
        split = stored_split(dataset)
    else:
        split = reference_disjoint_splits(dataset, n_splits=1, seed=seed)[0]
    train, val, test = apply_split(dataset, split)
    if not train:
        raise DatasetError(f"{data}: the split leaves no training images")
    sizes = f"{len(train)}/{len(val)}/{len(test)}"
    desc = f"{data} ({dataset.score_info.name}; split {split.name}: {sizes} train/val/test)"
    return train, val, test, desc


def onthefly_source(parts: ReferenceParts, part: str, config: CENIQAConfig, images: int, seed: int,
                    train: bool = False, distort: str = "worker") -> DegradedReferences:
    """Batches of about ``config.batch_size`` images from ``part``'s references: per item one grid-aligned
    crop, its pristine copy and ``distortions_per_image`` versions, each one ``onthefly_profile`` distortion
    at a level 1..5 (the guide's law), labelled by the level rule; about ``images`` images per epoch.
    Distorted where ``distort`` says (``device``: batched on the training device); the training part is
    split over ``torch.distributed`` ranks."""
    per_item = config.distortions_per_image + 1
    items_per_batch = math.ceil(config.batch_size / per_item)
    steps = max(1, images // (items_per_batch * per_item))
    steps = round_to_ranks(steps) if train else steps
    return DegradedReferences(
        parts.sources_of(part), crop=config.image_size, profile=config.onthefly_profile, law="single",
        versions=config.distortions_per_image, pristine=True, batch_size=items_per_batch,
        items=steps * items_per_batch, seed=seed, labels="level", distort=distort,
        scene_ids=parts.parts[part], cache_mb=max(config.cache_mb, 64),
        **({} if train else {"rank": 0, "world_size": 1}))


def onthefly_bundle(ref_dir: str, config: CENIQAConfig, device: torch.device) -> DataBundle:
    """Reference-disjoint 70/10/20 split of the references of ``ref_dir``; distorted crops made on
    ``device`` each step. Sizes: ``train_samples`` (200 per reference when null) images per epoch,
    ``val_samples`` (default 400) for validation and as many for the test set, both fixed."""
    types = list_distortions(config.onthefly_profile)
    if not types:
        raise ConfigError(f"profile {config.onthefly_profile!r} has no distortions to generate with")
    parts = split_references(ref_dir, config.image_size, config.seed)
    groups = sorted({get_distortion(t, config.onthefly_profile).group for t in types})
    labels = LabelSpace(types, groups, parts.names)
    sizes = {"train": config.train_samples or 200 * len(parts.parts["train"]),
             "val": config.val_samples or 400, "test": config.val_samples or 400}
    where = "worker" if device.type == "cpu" else "device"
    sources = [onthefly_source(parts, p, config, sizes[p], config.seed + 7919 * i, p == "train", where)
               for i, p in enumerate(PARTS)]
    return DataBundle(labels, onthefly=(sources[0], sources[1], sources[2]),
                      description=parts.describe(config.onthefly_profile), references=parts)


def target_scale(bundle: DataBundle, config: CENIQAConfig) -> float:
    """Standard deviation of the training targets (normalised scores), the unit of the quality loss: the
    training records' labels, or on the fly the level rule over every type and level 1..5 with the
    pristine share ``1 / (distortions_per_image + 1)``. 1.0 when the labels do not vary."""
    if bundle.onthefly is None:
        values = np.array([r.score_norm for r in bundle.train_records or [] if r.score_norm is not None],
                          dtype=float)
        weights = np.ones_like(values)
    else:
        profile = config.onthefly_profile
        per_ref = config.distortions_per_image
        values = np.array([level_quality((ChainOp(t, float(v)),), profile) / 100.0
                           for t in bundle.labels.types for v in range(1, 6)] + [1.0])
        weights = np.full(len(values), per_ref / max(1, len(values) - 1))
        weights[-1] = 1.0
    values, weights = values[np.isfinite(values)], weights[np.isfinite(values)]
    if values.size < 2:
        return 1.0
    mean = np.average(values, weights=weights)
    std = float(np.sqrt(np.average((values - mean) ** 2, weights=weights)))
    return std if std > 1e-6 else 1.0


# ---------------------------------------------------------------------------------------- training
class CENIQATask:
    """CENIQA's part of the shared training loop: batches, losses per stage, mixture refits, validation."""

    method = METHOD

    def __init__(self, config: CENIQAConfig, bundle: DataBundle, device: torch.device,
                 progress: bool = False):
        self.config = config
        self.progress = progress
        self.bundle = bundle
        self.device = device
        self.model = CENIQANet(config, len(bundle.labels.types))
        self.bic_table: dict[int, float] = {}
        self.fit_active = 0
        self._eval_sets: dict[str, RecordImages] = {}
        self.target_scale = target_scale(bundle, config)
        if self.model.level_head is not None and config.blend_on_validation and (
                bundle.onthefly is not None or bundle.val_records):
            self.model.prior_weight.requires_grad_(False)  # fitted on the validation images instead
        if bundle.onthefly is None:
            assert bundle.train_records is not None
            self.train_images = RecordImages(bundle.train_records, bundle.labels, config.image_size,
                                             train=True, seed=config.seed, cache_mb=config.cache_mb,
                                             repeats=config.train_crops, patches=config.patches_per_image,
                                             context=self.model.context_features)
            targets = [self.train_images.targets(i) for i in range(len(self.train_images.records))]
            scenes = [int(t["scene"]) for t in targets] * config.train_crops  # item i: image i % n
            self.sampler = SceneBatchSampler(scenes, config.batch_size, config.images_per_scene,
                                             seed=config.seed, limit=config.train_samples)
            #: ``level_class`` id and normalised target of every training image.
            self.record_classes = level_class(torch.stack([t["type"] for t in targets]),
                                              torch.stack([t["level"] for t in targets]))
            self.record_scores = torch.stack([t["score"] for t in targets]).float()
        #: On the fly: (raw whole-image features, level classes) of generated batches ``batch(-1, t)``, kept.
        self._generated: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._train_loader: DegradedLoader | None = None
        if self.model.context_norm is not None:
            self.model.context_norm.fit(self.training_contexts(CONTEXT_FIT_IMAGES)[0][:, 0])
        #: Mean training target per level class, or None when no training image has a (type, level).
        self.class_targets = self._class_targets() if self.model.level_head is not None else None

    # -- loop interface --------------------------------------------------------------------------
    def phase(self, epoch: int) -> tuple[str, int, int]:
        c = self.config
        if epoch < c.pretrain_epochs:
            return "pretrain", 0, c.pretrain_epochs
        return "finetune", c.pretrain_epochs, c.epochs

    def batches(self, epoch: int) -> Iterable[dict[str, torch.Tensor]]:
        if self.bundle.onthefly is not None:
            source = self.bundle.onthefly[0]
            source.set_epoch(epoch)
            if self._train_loader is None:
                self._train_loader = source.loader(num_workers=self.config.num_workers, device=self.device,
                                                   persistent_workers=True)
            return self._train_loader
        self.train_images.set_epoch(epoch)
        self.sampler.set_epoch(epoch)
        return DataLoader(self.train_images, batch_sampler=RankSlice(self.sampler), collate_fn=collate,
                          num_workers=self.config.num_workers, persistent_workers=False,
                          pin_memory=self.device.type == "cuda")

    def start_epoch(self, epoch: int) -> dict[str, float]:
        c = self.config
        phase, start, _ = self.phase(epoch)
        if phase != "finetune" or (epoch - start) % c.refit_interval:
            return {}
        t0 = time.perf_counter()
        emb = self.collect_embeddings()
        self.fit_mixture(emb, warm=self.model.gmm.fitted)
        with torch.no_grad():
            resp = self.model.gmm.predict_proba(emb)
        self.fit_active = warn_on_collapse(resp, ACTIVE_FRACTION, context=f"epoch {epoch + 1} mixture fit")
        row = {"gmm_components": float(self.model.gmm.n_components),
               "gmm_active_train": float(self.fit_active), "gmm_fit_seconds": time.perf_counter() - t0}
        if self.class_targets is not None:  # the level head is refitted with the mixture
            t1 = time.perf_counter()
            contexts, classes = self.training_contexts(LEVEL_FIT_IMAGES)
            self.model.fit_level_head(contexts, classes, self.class_targets)
            row["level_fit_seconds"] = time.perf_counter() - t1
        return row

    def step(self, batch: dict[str, torch.Tensor], epoch: int) -> tuple[torch.Tensor, dict[str, float]]:
        c = self.config
        model = self.model
        emb, context = model.embed_parts(batch["image"], batch.get("context"))
        logits = model.type_head(emb)
        types, level, scene = batch["type"], batch["level"], batch["scene"]
        contrast = contrastive_loss(emb, types, temperature=c.contrast_temperature)
        if c.contrast_groups:
            group_contrast = contrastive_loss(emb, batch["group"], temperature=c.contrast_temperature)
            contrast = 0.5 * (contrast + group_contrast)
        parts = {"contrast": contrast, "consistency": consistency_loss(logits.float(), types)}
        finetune = self.phase(epoch)[0] == "finetune"
        post = model.posteriors(emb) if finetune else None
        scores = model.score(emb, post, context)
        parts["ranking"] = ranking_loss(scores, scene, types, level)
        weights = LossWeights(c.lambda_contrast, c.lambda_consistency, c.lambda_ranking,
                              c.lambda_cluster * c.cluster_loss_weight, c.lambda_quality, c.lambda_monotonic)
        if finetune:
            parts["quality"] = quality_loss(scores, batch["score"], scale=self.target_scale)
            parts["monotonic"] = monotonic_loss(scores, scene, types, level)
            if post is not None:
                k = model.gmm.n_components
                with torch.autocast(emb.device.type, enabled=False):
                    parts["cluster"] = cluster_loss(emb.float(), post[:, :k], model.gmm.means_.float())
        return combine(parts, weights)

    def validate(self, epoch: int) -> dict[str, float]:
        if self.phase(epoch)[0] != "finetune":
            return {}
        out = self.evaluate_split("val")
        if out is None:
            return {}
        row = {}
        if self.config.blend_on_validation and "prior" in out.parts:
            regression, prior = (torch.from_numpy(out.parts[k]) for k in ("regression", "prior"))
            row["prior_weight"] = self.model.fit_prior_weight(regression, prior,
                                                              torch.from_numpy(out.labels["score"]))
            with torch.no_grad():
                out.scores = self.model.blend(regression, prior).numpy()
        metrics = evaluate_outputs(out)
        if out.posteriors is not None:
            warn_on_collapse(torch.from_numpy(out.posteriors), ACTIVE_FRACTION,
                             context=f"epoch {epoch + 1} validation")
        keep = ("srcc", "plcc", "rmse", "active_clusters", "purity")
        row.update({k: float(v) for k, v in metrics.items() if k in keep})
        return row

    def config_dict(self) -> dict[str, Any]:
        return self.config.to_dict()

    def extra_state(self) -> dict[str, Any]:
        return {"gmm": self.model.gmm_state(), "labels": self.bundle.labels.to_dict(),
                "bic": {str(k): v for k, v in self.bic_table.items()}}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        gmm = state.get("gmm") or {}
        self.model.set_gmm(GaussianMixture(int(gmm.get("n_components", self.config.n_clusters)),
                                           covariance_type=self.config.covariance_type, seed=self.config.seed,
                                           max_iter=200))

    # -- helpers ---------------------------------------------------------------------------------
    def _class_targets(self) -> torch.Tensor | None:
        """Mean normalised training target per level class (classes never seen get the overall mean), or
        None when no training image has a known (type, level): then the score does not use the prior.
        On the fly: the level rule per (type, level), 1.0 for pristine."""
        n_classes = 1 + N_LEVELS * max(len(self.bundle.labels.types), 1)
        if self.bundle.onthefly is not None:
            names = self.bundle.labels.types
            types = torch.arange(len(names)).repeat_interleave(N_LEVELS)
            levels = torch.arange(1, N_LEVELS + 1).repeat(len(names))
            quality = torch.ones(n_classes)
            quality[level_class(types, levels)] = torch.tensor([
                level_quality((ChainOp(names[t], float(v)),), self.config.onthefly_profile) / 100
                for t, v in zip(types.tolist(), levels.tolist(), strict=True)])
            return quality
        classes, scores = self.record_classes, self.record_scores
        keep = (classes >= 0) & torch.isfinite(scores)
        if not bool(keep.any()):
            return None
        sums = torch.zeros(n_classes).index_add_(0, classes[keep], scores[keep])
        counts = torch.zeros(n_classes).index_add_(0, classes[keep], torch.ones(int(keep.sum())))
        return torch.where(counts > 0, sums / counts.clamp_min(1), scores[keep].mean())

    @torch.no_grad()
    def training_contexts(self, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw whole-image views' features ``[N, V, D]`` (``CENIQANet.embed_parts``) and ``level_class``
        ids ``[N]`` of up to ``limit`` training images (a seeded random subset; the features stay in the
        loader's cache), or on the fly of as many generated training crops."""
        whole = self.model.whole_image
        assert whole is not None
        if self.bundle.onthefly is not None:
            source = self.bundle.onthefly[0]
            per_batch = source.batch_size * source.images_per_item
            steps = min(source.num_batches, max(1, math.ceil(limit / per_batch)))
            for t in range(len(self._generated), steps):  # the batches are fixed: make each one once
                b = source.batch(-1, t, self.device)
                self._generated.append((whole.views(b["image"], self.config.level_tiles).cpu(),
                                        level_class(b["type"], b["level"]).cpu()))
            return (torch.cat([c for c, _ in self._generated[:steps]]),
                    torch.cat([k for _, k in self._generated[:steps]]))
        from rich.console import Console
        from rich.progress import track

        n = len(self.train_images.records)
        pick = sorted(int(i) for i in np.random.default_rng([self.config.seed, 11]).permutation(n)[:limit])
        images = track(pick, description=f"whole-image features of {len(pick)} training images",
                       disable=not self.progress, console=Console(stderr=True))
        contexts = torch.stack([self.train_images.context_of(i) for i in images])
        return contexts, self.record_classes[pick]

    def eval_batches(self, part: str, limit: int | None = None) -> Iterable[dict[str, torch.Tensor]] | None:
        """Evaluation batches of ``train``/``val``/``test`` (fixed crops), or None when the part is empty."""
        c = self.config
        if self.bundle.onthefly is not None:
            source = self.bundle.onthefly[PARTS.index(part)]
            if part == "train":  # a fixed set of training crops
                assert self.bundle.references is not None
                per_batch = source.batch_size * source.images_per_item
                images = min(GMM_FIT_SAMPLES, source.num_batches * per_batch)
                source = onthefly_source(self.bundle.references, "train", c, images, c.seed + 1,
                                         distort=source.source.distort)
            return source.loader(device=self.device)  # epoch 0 of a set nobody advances: fixed
        records = {"train": self.bundle.train_records, "val": self.bundle.val_records,
                   "test": self.bundle.test_records}[part] or []
        if not records:
            return None
        if part == "train":  # fixed crops, sharing the training set's decoded-image cache
            ds: Dataset = self.train_images.evaluation_view(crops=c.test_crops)
        else:  # validation runs every epoch: cache it; the test set is read once
            if part not in self._eval_sets:
                cache = c.cache_mb if part == "val" else 0
                self._eval_sets[part] = RecordImages(records, self.bundle.labels, c.image_size, train=False,
                                                     crops=c.test_crops, cache_mb=cache,
                                                     context=self.model.context_features)
            ds = self._eval_sets[part]
        if limit is not None and len(records) > limit:
            pick = np.random.default_rng(c.seed).choice(len(records), limit, replace=False)
            ds = Subset(ds, sorted(int(i) for i in pick))
        return DataLoader(ds, batch_size=max(1, 2 * c.batch_size // c.test_crops), collate_fn=collate,
                          num_workers=c.num_workers)

    def evaluate_split(self, part: str) -> Outputs | None:
        limit = self.config.val_samples if part == "val" else None
        batches = self.eval_batches(part, limit)
        if batches is None:
            return None
        return run_model(self.model, batches, self.device, self.config.amp)

    @torch.no_grad()
    def collect_embeddings(self) -> torch.Tensor:
        """Embeddings of (up to ``GMM_FIT_SAMPLES``) training images, ``test_crops`` fixed crops, eval
        mode."""
        was_training = self.model.training
        self.model.eval()
        batches = self.eval_batches("train", GMM_FIT_SAMPLES)
        assert batches is not None
        embs = []
        for batch in batches:
            context = batch.get("context")
            embs.append(self.model.embed(batch["image"].to(self.device),
                                         None if context is None else context.to(self.device)).float())
        self.model.train(was_training)
        return torch.cat(embs)

    def fit_mixture(self, emb: torch.Tensor, warm: bool) -> None:
        """Stage 2 (first fit: BIC selection or K = n_clusters) or a warm-started refit."""
        c = self.config
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # EM not converged within max_iter: still usable
            if warm:
                self.model.gmm.fit(emb, warm_start=True)
            elif c.use_bic_selection:
                lo, hi = c.bic_range
                gmm, table = select_by_bic(emb, range(lo, min(hi, c.max_clusters) + 1), c.covariance_type,
                                           seed=c.seed, max_iter=200)
                self.bic_table = table
                self.model.set_gmm(gmm)
            else:
                self.model.set_gmm(GaussianMixture(c.n_clusters, covariance_type=c.covariance_type,
                                                   seed=c.seed, max_iter=200).fit(emb))


def build_model(state: dict[str, Any]) -> tuple[CENIQANet, CENIQAConfig, LabelSpace]:
    """Rebuild a trained network from a checkpoint dict (no pretrained download: weights come from it)."""
    stored = dict(state["config"])
    # fields newer than some checkpoints: what those checkpoints were trained without
    for name in ("use_whole_image", "use_scene_statistics", "normalize_context", "use_level_head",
                 "contrast_groups"):
        stored.setdefault(name, False)
    stored.setdefault("level_tiles", 0)
    config = CENIQAConfig.from_dict(stored, source="checkpoint config")
    config = dataclasses.replace(config, pretrained=False, backbone_checkpoint=None)
    labels = LabelSpace(**state.get("labels", {}))
    gmm = state.get("gmm") or {}
    model = CENIQANet(config, len(labels.types), n_components=int(gmm.get("n_components", config.n_clusters)))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise SynthiqaError(f"checkpoint weights do not fit the CENIQA network ({str(exc).splitlines()[0]})"
                            ) from None
    model.eval()
    return model, config, labels


def _load_data(config: CENIQAConfig, options: dict[str, Any], data: str | None, out_dir: Path,
               device: torch.device) -> DataBundle:
    if options.get("on_the_fly"):
        return onthefly_bundle(str(options["on_the_fly"]), config, device)
    train, val, test, desc = load_record_splits(str(data), options.get("label"), config.seed)
    return DataBundle(LabelSpace.from_records(train), train, val, test, description=desc)


def _fit(config: CENIQAConfig, bundle: DataBundle, options: dict[str, Any], out_dir: Path,
         device: torch.device) -> Trained:
    progress = bool(options.get("progress", True))
    task = CENIQATask(config, bundle, device, progress=progress)
    settings = LoopSettings(config.total_epochs, config.learning_rate, config.weight_decay, config.scheduler,
                            config.grad_clip, config.seed, device, config.amp, progress=progress)
    t0 = time.perf_counter()
    result = run_training(task, settings, out_dir, resume=options.get("resume"))
    train_seconds = time.perf_counter() - t0
    best = load_checkpoint(result.best_path)
    task.load_extra_state(best)
    task.model.load_state_dict(best["model"])
    report = {"best_epoch": result.best_epoch, "best_val_srcc": result.best_srcc,
              "train_seconds": train_seconds, "train_images_per_s": result.images_per_second,
              "gmm_components": task.model.gmm.n_components,
              "bic": {str(k): v for k, v in task.bic_table.items()}}
    return Trained(result.best_path, report, task)  # type: ignore[arg-type]


def _test(config: CENIQAConfig, bundle: DataBundle, trained: Trained, device: torch.device) -> dict[str, Any]:
    t1 = time.perf_counter()
    test_out = trained.model.evaluate_split("test")
    eval_seconds = time.perf_counter() - t1
    if test_out is None:
        return {}
    return {"test": evaluate_outputs(test_out, bundle.labels.types),
            "test_images_per_s": len(test_out.scores) / max(eval_seconds, 1e-9)}


RECIPE = Recipe(METHOD, CENIQAConfig, preset_config, _load_data, _fit, _test)


def train_ceniqa(options: dict[str, Any], data: str | None, out: str | Path | None) -> Path:
    """``synthiqa train --method ceniqa``: the run recipe (``models/training/recipe.py``) with CENIQA's
    steps; ``run.json`` adds the mixture's components and BIC table, and test throughput."""
    return run_recipe(RECIPE, options, data, out)


# ---------------------------------------------------------------------------------------- predictor
class CENIQAPredictor(MethodPredictor):
    """CENIQA behind the ``QualityPredictor`` interface: ``fit`` trains in memory on the records (no
    files written), ``predict`` gives scores in [0, 1] (higher is better), ``embed`` the embeddings.

    Args:
        preset: ``default`` or ``quick`` (the harness's fast suite).
        config: a full ``CENIQAConfig`` (overrides ``preset``), or None.
        progress: show progress bars while fitting.
        **options: ``CENIQAConfig`` fields to change (None: the preset's value).

    Fitted attributes: ``config_``, ``device_``, ``model_`` (the network), ``labels_`` (its label space),
    ``training_log_`` (per-epoch rows; none for a loaded checkpoint).
    """

    name = METHOD
    label = "CENIQA"
    config_class = CENIQAConfig
    presets = PRESETS

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> CENIQAPredictor:
        state = load_checkpoint(path)
        if state.get("method") != METHOD:
            raise SynthiqaError(f"{path}: a {state.get('method')!r} checkpoint, not a CENIQA one")
        model, config, labels = build_model(state)
        predictor = cls(config=config)
        predictor.config_, predictor.device_ = config, resolve_device(config.device)
        predictor.model_, predictor.labels_ = model.to(predictor.device_), labels
        return predictor

    def to(self, device: str | torch.device) -> CENIQAPredictor:
        self._last = None
        return super().to(device)  # type: ignore[return-value]

    def fit(self, train: Sequence[IQARecord], val: Sequence[IQARecord] | None = None) -> CENIQAPredictor:
        config, device = self.resolve()
        if not train:
            raise DatasetError("CENIQA: no training records")
        bundle = DataBundle(LabelSpace.from_records(train), list(train), list(val or []), [])
        torch.manual_seed(config.seed)  # initial weights from the config's seed, not from earlier work
        task = CENIQATask(config, bundle, device, progress=self.progress)
        c = config
        settings = LoopSettings(c.total_epochs, c.learning_rate, c.weight_decay, c.scheduler, c.grad_clip,
                                c.seed, device, c.amp, progress=self.progress)
        result = run_training(task, settings, out_dir=None)
        task.load_extra_state(result.best_state)
        task.model.load_state_dict(result.best_state["model"])
        self.config_, self.device_, self.labels_ = config, device, bundle.labels
        self.model_ = task.model.eval()
        self.training_log_ = result.rows  # per-epoch rows; the benchmark harness writes them as log.csv
        self._last = None
        return self

    def _outputs(self, records: Sequence[IQARecord]) -> Outputs:
        """The network's outputs for ``records``; the same record objects asked again (``predict``, then
        ``embed`` or ``clusters``) reuse the last pass."""
        check_fitted(self, "CENIQA")
        last = getattr(self, "_last", None)
        if last is not None and len(last[0]) == len(records) and all(
                a is b for a, b in zip(last[0], records, strict=True)):
            return last[1]
        c = self.config_
        out = records_scores(self.model_, records, self.labels_, c.image_size, c.test_crops,
                             max(1, 2 * c.batch_size // c.test_crops), self.device_)
        self._last: tuple[list[IQARecord], Outputs] | None = (list(records), out)
        return out

    def predict(self, records: Sequence[IQARecord]) -> np.ndarray:
        return self._outputs(records).scores

    def embed(self, records: Sequence[IQARecord]) -> np.ndarray | None:
        return self._outputs(records).embeddings

    def clusters(self, records: Sequence[IQARecord]) -> np.ndarray | None:
        """Most probable mixture component per record (for cluster reports)."""
        return self._outputs(records).clusters


def evaluate_checkpoint(checkpoint: str | Path, data: str, label: str | None = None, split: str | None = None,
                        device: str = "auto") -> dict[str, Any]:
    """SRCC, PLCC, RMSE (overall and per distortion type), active clusters and purity against the
    distortion group of a checkpoint on ``data`` (``KIND:PATH`` or a generated folder); ``split`` keeps
    only the manifest's ``train``/``val``/``test`` part."""
    records = load_data_spec(data, label)[1].records
    if split is not None:
        records = [r for r in records if r.extra.get("split") == split]
        if not records:
            raise DatasetError(f"{data}: no images with split {split!r}")
    predictor = CENIQAPredictor.from_checkpoint(checkpoint).to(resolve_device(device))
    labels = LabelSpace.from_records(records)
    c = predictor.config_
    out = records_scores(predictor.model_, records, labels, c.image_size, c.test_crops,
                         max(1, 2 * c.batch_size // c.test_crops), predictor.device_)
    return evaluate_outputs(out, labels.types)


register_model(
    METHOD, CENIQAPredictor, config=CENIQAConfig, train=train_ceniqa, load=CENIQAPredictor.from_checkpoint,
    description="cluster-enhanced neural IQA: backbone + DCT/patch features, GMM posteriors, 3 stages",
)
