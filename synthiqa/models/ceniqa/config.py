"""CENIQA's configuration: one dataclass, saved and loaded as JSON or YAML, overridable field by field.

The defaults are the CENIQA guide's published values where the guide fixes them (``n_clusters=8``,
``scheduler='cosine'``, the loss weights) and, elsewhere, a small setting that trains on two CPU cores in
minutes: 128 px crops, the compact CNN backbone, DCT frequency statistics, a few epochs.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from synthiqa.errors import ConfigError
from synthiqa.models.method_config import MethodConfig

SCHEDULERS = ("cosine", "step", "none")
REGRESSORS = ("mlp", "monotonic", "kan", "transformer", "gru", "attention")
COVARIANCES = ("diag", "full")


@dataclass
class CENIQAConfig(MethodConfig):
    """Every setting of a CENIQA model and its three-stage training.

    Model:
        backbone: registry name (``compact``, ``unet``, or any timm name such as ``resnet18``).
        pretrained: load the backbone's published weights through timm (needs a network).
        backbone_checkpoint: local weights file for the backbone (works offline), or None.
        feature_dim: size of the projected feature vector the mixture and the heads see.
        n_clusters: number of mixture components (the maximum when BIC selects).
        use_bic_selection: choose the number of components by BIC over ``bic_range``.
        bic_range: inclusive (low, high) range of component counts BIC tries.
        covariance_type: ``diag`` or ``full``.
        regressor_type: quality head on features + posteriors (mlp, monotonic, kan, transformer, gru,
            attention).
        use_multiscale / use_frequency / use_patch / use_statistics / use_whole_image: feature extractors
            to use (at least one): backbone maps at several scales, blockwise DCT statistics,
            attention-pooled patches, pixel statistics of the crops (luminance, colour, gradient energy per
            scale, blockiness), and pixel + DCT statistics of the whole image (computed once per image by
            the loaders; on the fly, where the whole image is the crop, from the crops).
        use_scene_statistics: add ``SceneStatisticsFeatures`` (MSCN statistics, 8-bit histogram gaps and
            spikes, colour balance) to the whole-image features.
        use_level_head: a multinomial logistic regression on the normalised whole-image features
            classifies (distortion type, level 1..5) or pristine, fitted with the mixture; the score blends
            the regressor's output with the expected training quality of those classes
            (``CENIQANet.score``). Needs ``use_whole_image``; sets without type and level labels skip it.
        level_tiles: the level head classifies each tile of a ``level_tiles x level_tiles`` grid over the
            whole image (and each training tile is one of its training samples) and averages the tiles'
            class log-probabilities; 0 classifies the whole image itself. Tiles multiply the samples the
            head learns from and average out what one part of an unseen scene says about its content.
        blend_on_validation: after each validation pass the blend weight of the class prior is the
            least-squares fit of the validation targets (``CENIQANet.fit_prior_weight``): the regression
            head fits the training scenes far better than unseen ones, so a weight learned on them trusts
            it too much. Without validation images, or False, the quality loss learns the weight.
        normalize_context: map each whole-image feature through its training quantiles to a standard
            normal (``QuantileNormalizer``, fitted on up to ``CONTEXT_FIT_IMAGES`` training images before
            training) instead of feeding the heavy-tailed raw statistics.
        dct_block: block side of the frequency extractor, px.
        patch_dim: width of the patch-wise quality features.
        image_size: training and evaluation crop side, px.
        test_crops: fixed crops per image at evaluation and prediction (1 = centre crop); the network
            averages their features.
        patches_per_image: random native-resolution crops of one training image the network sees
            together (features averaged, as at evaluation): global statistics of a larger part of the
            image than one crop shows, at the cost of that many crops per image.
    Training:
        pretrain_epochs: stage 1, self-supervised (contrastive, consistency, ranking; no MOS).
        epochs: stage 3, end-to-end fine-tuning with every loss.
        learning_rate, weight_decay, scheduler (cosine, step, none), batch_size, grad_clip.
        refit_interval: refit the mixture every this many fine-tuning epochs.
        cluster_loss_weight: multiplies ``lambda_cluster`` during fine-tuning.
        train_crops: training items per image and epoch (files only; each of ``patches_per_image`` crops).
        train_samples / val_samples: cap on training items / validation images per epoch (None = all).
            The default 1536 (of 2 crops each) keeps a fine-tuning epoch within about 1.5 CPU minutes
            whatever the set's size; sets under 768 images use all their ``train_crops`` items.
        distortions_per_image: on-the-fly generation: distorted versions per reference crop and pass.
        onthefly_profile: distortion profile used when generating on the fly.
        images_per_scene: images of one reference drawn together into a batch (ranking pairs).
        lambda_*: loss weights (quality, contrastive, consistency, ranking, cluster, monotonic).
        contrast_temperature: temperature of the contrastive loss.
        contrast_groups: the contrastive loss is the mean of the supervised contrastive losses over
            distortion types and over distortion groups: distortions of one group are pulled together too,
            so the embedding's clusters follow the groups rather than splitting them.
        seed, device (``auto``, ``cpu``, ``cuda``...), amp (mixed precision, used on CUDA only),
        num_workers: image decoding workers.
        cache_mb: decoded training images kept in memory, MiB (0 = decode on every access).
    """

    backbone: str = "compact"
    pretrained: bool = False
    backbone_checkpoint: str | None = None
    feature_dim: int = 128
    n_clusters: int = 8
    use_bic_selection: bool = False
    bic_range: tuple[int, int] = (4, 12)
    covariance_type: str = "diag"
    regressor_type: str = "mlp"
    use_multiscale: bool = True
    use_frequency: bool = True
    use_patch: bool = True
    use_statistics: bool = True
    use_whole_image: bool = True
    use_scene_statistics: bool = True
    normalize_context: bool = True
    use_level_head: bool = True
    level_tiles: int = 2
    blend_on_validation: bool = True
    dct_block: int = 8
    patch_dim: int = 64
    image_size: int = 128
    test_crops: int = 4
    patches_per_image: int = 2

    pretrain_epochs: int = 2
    epochs: int = 8
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    scheduler: str = "cosine"
    batch_size: int = 32
    grad_clip: float = 5.0
    refit_interval: int = 2
    cluster_loss_weight: float = 1.0
    train_crops: int = 2
    train_samples: int | None = 1536
    val_samples: int | None = None
    distortions_per_image: int = 5
    onthefly_profile: str = "basic8"
    images_per_scene: int = 4

    lambda_quality: float = 1.0
    lambda_contrast: float = 1.0
    lambda_consistency: float = 0.5
    lambda_ranking: float = 0.5
    lambda_cluster: float = 0.3
    lambda_monotonic: float = 0.1
    contrast_temperature: float = 0.1
    contrast_groups: bool = True

    seed: int = 0
    device: str = "auto"
    amp: bool = True
    num_workers: int = 0
    cache_mb: int = 2048

    def __post_init__(self) -> None:
        self.bic_range = tuple(int(v) for v in self.bic_range)  # type: ignore[assignment]
        self.validate()

    # -- checks ------------------------------------------------------------------------------------
    def validate(self) -> None:
        """One-line ``ConfigError`` naming the first bad field."""
        positive = ("feature_dim", "n_clusters", "image_size", "batch_size", "refit_interval",
                    "distortions_per_image", "dct_block", "patch_dim", "test_crops", "images_per_scene",
                    "train_crops", "patches_per_image")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("epochs", "pretrain_epochs", "num_workers", "cache_mb", "level_tiles"):
            if int(getattr(self, name)) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("train_samples", "val_samples"):
            v = getattr(self, name)
            if v is not None and int(v) < 1:
                raise ConfigError(f"{name} must be at least 1 (or null for all), got {v}")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"scheduler must be one of {', '.join(SCHEDULERS)}, got {self.scheduler!r}")
        if self.regressor_type not in REGRESSORS:
            raise ConfigError(f"regressor_type must be one of {', '.join(REGRESSORS)}, "
                              f"got {self.regressor_type!r}")
        if self.covariance_type not in COVARIANCES:
            raise ConfigError(f"covariance_type must be diag or full, got {self.covariance_type!r}")
        lo, hi = self.bic_range if len(self.bic_range) == 2 else (0, -1)
        if not 1 <= lo <= hi:
            raise ConfigError(f"bic_range must be two counts 1 <= low <= high, got {list(self.bic_range)}")
        if self.image_size < 32 or self.image_size % self.dct_block:
            raise ConfigError(f"image_size must be >= 32 and a multiple of dct_block={self.dct_block}, "
                              f"got {self.image_size}")
        if not (self.use_multiscale or self.use_frequency or self.use_patch or self.use_statistics
                or self.use_whole_image):
            raise ConfigError("enable at least one of use_multiscale, use_frequency, use_patch, "
                              "use_statistics, use_whole_image")
        for f in fields(self):
            if f.name.startswith("lambda_") and getattr(self, f.name) < 0:
                raise ConfigError(f"{f.name} must be >= 0, got {getattr(self, f.name)}")

    @property
    def max_clusters(self) -> int:
        """Width of the posterior vector the quality head reads (unused components get zero)."""
        return max(self.n_clusters, self.bic_range[1]) if self.use_bic_selection else self.n_clusters

    @property
    def total_epochs(self) -> int:
        return self.pretrain_epochs + self.epochs
