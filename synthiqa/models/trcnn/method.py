"""TRCNN: a CNN extracts a feature map, a transformer encoder reads its patch tokens together with a
learned quality token, and the quality token's output gives the score (sigmoid: [0, 1], higher is better).

Training (shared loop of ``training/loop.py``): MSE on the normalised MOS plus ``lambda_rank`` times a
pairwise hinge on every pair of a scene whose predicted gap falls short of its label gap
(``loss="mse_rank"``), or SIND's loss (``loss="sind"``: L1 after per-domain scale-shift alignment, see
``components/losses.py``). SIND's scene sampling,
alignment domain, local-global patches and experiment types are config fields here, so TRCNN trains
with or without them; ``synthiqa train --method sind`` is this trainer with SIND's defaults.
Evaluation: SRCC, PLCC (raw) and MSE/RMSE on the [0, 1] scale.

Checkpoints: the loop's dict (``method`` = ``trcnn`` or ``sind``, ``config``, ``model``...) plus
``labels``; loadable with ``torch.load(weights_only=True)``.
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
from synthiqa.datasets.splits import canonical_protocol
from synthiqa.devices import resolve_device
from synthiqa.errors import ConfigError, DatasetError, SynthiqaError
from synthiqa.models.components.backbones import create_backbone
from synthiqa.models.components.losses import sind_loss
from synthiqa.models.data import LabelSpace, LocalGlobalImages, RecordImages, SceneSampler, collate
from synthiqa.models.estimator import MethodPredictor, check_fitted
from synthiqa.models.inference import Outputs, evaluate_outputs, run_model
from synthiqa.models.method_config import MethodConfig, check_choice, check_positive
from synthiqa.models.registry import register_model
from synthiqa.models.training.distributed import RankSlice, barrier, is_main_process, round_to_ranks
from synthiqa.models.training.loop import LoopSettings, load_checkpoint, run_training
from synthiqa.models.training.onthefly import eval_set, split_references
from synthiqa.models.training.recipe import Recipe, Trained, run_recipe

METHOD = "trcnn"
LOSSES = ("mse_rank", "sind")
ALIGNMENTS = ("none", "scene", "dataset")


@dataclass
class TRCNNConfig(MethodConfig):
    """Every setting of TRCNN (and of SIND, which shares the network and the trainer).

    Model:
        backbone: ``compact``, ``unet`` or a timm name; pretrained / backbone_checkpoint as for CENIQA.
        token_stride: the backbone map whose stride (px) is closest to this gives the tokens.
        d_model, layers, heads, dropout: the transformer encoder (pre-norm, GELU, feed-forward 2*d_model).
        image_size: crop side, px; test_crops: crops averaged per image at evaluation.
        input_norm: ``local`` feeds the CNN mean-subtracted contrast-normalised (MSCN) channels, as the
            from-scratch IQA CNNs do (Kang et al. 2014), and adds a token of the crop's per-channel mean
            and standard deviation (the global tone MSCN removes); ``none`` feeds the RGB crop.
    Training:
        epochs, learning_rate, weight_decay, scheduler (cosine, step, none), batch_size, grad_clip,
        train_samples / val_samples: random crops per epoch (drawn without replacement, repeating the
            images when it exceeds them) / validation images (None = all).
        loss: ``mse_rank`` (MSE + lambda_rank * pairwise hinge with ``rank_margin``) or ``sind``.
    SIND options:
        scene_sampling: batches of ``scenes_per_batch`` domains x ``images_per_scene`` images (on by
            default: the ranking term then compares images of one scene only, whose label gap is the
            distortion's, not the content's).
        alignment: ``none`` (plain L1), ``scene`` or ``dataset``: the domain of the scale-shift alignment
            (and of scene sampling); anchor_weight: weight of the unaligned L1 term.
        local_global: one global view plus ``n_local`` local crops per image, scores averaged.
        experiment: ``intra``, ``random``, ``loro`` or ``cross`` (the older ``reference-split``,
            ``random-split``, ``leave-one-out``, ``cross-set`` are read as these); ``fold``:
            which fold; ``test_data``: the test set of ``cross`` (``KIND:PATH``).
    On the fly (``--on-the-fly REF_DIR``):
        onthefly_profile: each training crop gets one distortion of this profile at a level 1..5 (the
            level rule gives its label); with scene_sampling each item is ``images_per_scene`` versions of
            one crop. Validation and test sets are fixed crops of held-out references.
    seed, device (auto, cpu, cuda...), amp (CUDA only), num_workers.
    """

    backbone: str = "compact"
    pretrained: bool = False
    backbone_checkpoint: str | None = None
    token_stride: int = 16
    d_model: int = 96
    layers: int = 2
    heads: int = 4
    dropout: float = 0.1
    image_size: int = 64
    test_crops: int = 8
    input_norm: str = "local"

    epochs: int = 10
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    scheduler: str = "cosine"
    batch_size: int = 16
    grad_clip: float = 5.0
    train_samples: int | None = 1024
    val_samples: int | None = None
    loss: str = "mse_rank"
    lambda_rank: float = 1.0
    rank_margin: float = 0.0

    scene_sampling: bool = True
    scenes_per_batch: int = 4
    images_per_scene: int = 8
    alignment: str = "none"
    anchor_weight: float = 0.1
    local_global: bool = False
    n_local: int = 3
    experiment: str = "intra"
    fold: int = 0
    test_data: str | None = None
    onthefly_profile: str = "kadid"

    seed: int = 0
    device: str = "auto"
    amp: bool = True
    num_workers: int = 0

    def validate(self) -> None:
        check_positive(self, "token_stride", "d_model", "layers", "heads", "image_size", "test_crops",
                       "batch_size", "scenes_per_batch", "images_per_scene", "n_local")
        for name in ("epochs", "fold", "num_workers"):
            if int(getattr(self, name)) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.d_model % self.heads:
            raise ConfigError(f"d_model ({self.d_model}) must be a multiple of heads ({self.heads})")
        if self.image_size < 32:
            raise ConfigError(f"image_size must be >= 32, got {self.image_size}")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}")
        check_choice(self, "scheduler", ("cosine", "step", "none"))
        check_choice(self, "input_norm", ("local", "none"))
        check_choice(self, "loss", LOSSES)
        check_choice(self, "alignment", ALIGNMENTS)
        self.experiment = canonical_protocol(self.experiment)
        check_choice(self, "experiment", EXPERIMENTS)
        if self.alignment != "none" and self.loss != "sind":
            raise ConfigError(f"alignment={self.alignment} needs loss=sind (the aligned L1), "
                              f"got loss={self.loss}")
        if self.scene_sampling and self.images_per_scene < 2:
            raise ConfigError("images_per_scene must be at least 2 with scene_sampling")


#: Named settings: ``quick`` is the harness's fast suite.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "quick": {"epochs": 4, "test_crops": 4, "train_samples": 1024, "val_samples": 400},
}


def preset_config(name: str = "default", **overrides: Any) -> TRCNNConfig:
    """The config of a named preset, with ``overrides`` applied."""
    return TRCNNConfig.from_preset(PRESETS, name, "TRCNN", **overrides)


# ---------------------------------------------------------------------------------------- network
def mscn(images: torch.Tensor, sigma: float = 7 / 6, c: float = 1 / 255) -> torch.Tensor:
    """Mean-subtracted contrast-normalised channels ``(x - mu) / (sd + c)`` of ``[B,3,H,W]`` images in
    [0, 1], ``mu`` and ``sd`` the local Gaussian-weighted mean and deviation (7x7, sigma 7/6: BRISQUE's
    window; ``c`` is BRISQUE's constant 1 on the 0-255 scale)."""
    from kornia.filters import gaussian_blur2d

    x = images.float()
    mu = gaussian_blur2d(x, (7, 7), (sigma, sigma), border_type="replicate")
    var = gaussian_blur2d(x * x, (7, 7), (sigma, sigma), border_type="replicate") - mu * mu
    return (x - mu) / (var.clamp_min(0).sqrt() + c)


class TRCNNNet(nn.Module):
    """CNN feature map -> 1x1 projection to ``d_model`` tokens (+ learned 2D position embedding,
    resized to the map) -> [quality token, tokens] -> transformer encoder -> the quality token's output
    (the embedding) -> linear -> sigmoid."""

    def __init__(self, config: TRCNNConfig):
        super().__init__()
        self.config = config
        self.backbone = create_backbone(config.backbone, pretrained=config.pretrained,
                                        checkpoint=config.backbone_checkpoint, image_size=config.image_size)
        reductions = self.backbone.reductions
        self.stage = min(range(len(reductions)),
                         key=lambda i: (abs(math.log2(reductions[i] / config.token_stride)), -i))
        d = config.d_model
        self.project = nn.Conv2d(self.backbone.channels[self.stage], d, 1)
        grid = max(1, config.image_size // reductions[self.stage])
        self.position = nn.Parameter(torch.zeros(1, d, grid, grid))
        self.quality_token = nn.Parameter(torch.zeros(1, 1, d))
        self.tone = nn.Linear(6, d) if config.input_norm == "local" else None
        nn.init.trunc_normal_(self.position, std=0.02)
        nn.init.trunc_normal_(self.quality_token, std=0.02)
        layer = nn.TransformerEncoderLayer(d, config.heads, dim_feedforward=2 * d, dropout=config.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, 1)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Quality-token embeddings ``[B, d_model]`` of [0, 1] RGB images ``[B,3,H,W]``."""
        local = self.tone is not None
        fmap = self.project(self.backbone(mscn(images) if local else images)[self.stage])
        pos = self.position
        if pos.shape[-2:] != fmap.shape[-2:]:
            pos = F.interpolate(pos, size=fmap.shape[-2:], mode="bilinear", align_corners=False)
        tokens = (fmap + pos).flatten(2).transpose(1, 2)
        parts = [self.quality_token.expand(tokens.shape[0], -1, -1), tokens]
        if self.tone is not None:
            stats = torch.cat([images.float().mean((2, 3)), images.float().std((2, 3))], 1)
            parts.insert(1, self.tone(stats)[:, None])
        x = torch.cat(parts, 1)
        return self.norm(self.encoder(x)[:, 0])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Scores ``[B]`` in [0, 1], higher is better."""
        return torch.sigmoid(self.head(self.embed(images)).squeeze(1).float())

    def outputs(self, images: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """``score [B]``, ``embedding [B, d_model]`` and ``posterior`` None (no mixture)."""
        emb = self.embed(images)
        return {"score": torch.sigmoid(self.head(emb).squeeze(1).float()), "embedding": emb,
                "posterior": None}


# ---------------------------------------------------------------------------------------- losses
def pairwise_ranking_loss(pred: torch.Tensor, target: torch.Tensor, margin: float = 0.0,
                          groups: torch.Tensor | None = None) -> torch.Tensor:
    """Mean hinge ``relu((y_i - y_j) + margin - (p_i - p_j))`` over the pairs of the batch with
    ``y_i > y_j`` (only pairs of the same ``groups`` id when given: same scene, so the label gap is the
    distortion's alone); 0 when no such pair exists. NaN labels are ignored.

    The margin grows with the label gap, so equal predictions cost as much as the gap: a fixed margin of
    0 would make constant predictions a perfect score and pull the network towards the label mean."""
    ok = torch.isfinite(target)
    p, y = pred[ok].float(), target[ok].float()
    dp = p[:, None] - p[None, :]
    dy = y[:, None] - y[None, :]
    higher = dy > 1e-6
    if groups is not None:
        g = groups[ok]
        higher &= g[:, None] == g[None, :]
    if not bool(higher.any()):
        return pred.sum() * 0.0
    return F.relu(dy[higher] + margin - dp[higher]).mean()


def regression_loss(pred: torch.Tensor, target: torch.Tensor, domains: torch.Tensor | None,
                    config: TRCNNConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """The configured loss and its parts: ``mse_rank`` or SIND's (aligned) L1."""
    if config.loss == "sind":
        loss = sind_loss(pred, target, domains, align=config.alignment != "none",
                         anchor_weight=config.anchor_weight)
        return loss, {"sind": float(loss.detach())}
    ok = torch.isfinite(target)
    mse = F.mse_loss(pred[ok].float(), target[ok].float()) if bool(ok.any()) else pred.sum() * 0.0
    rank = pairwise_ranking_loss(pred, target, config.rank_margin,
                                 domains if config.scene_sampling else None)
    return mse + config.lambda_rank * rank, {"mse": float(mse.detach()), "rank": float(rank.detach())}


# ---------------------------------------------------------------------------------------- data
def eval_images(records: Sequence[IQARecord], labels: LabelSpace, config: TRCNNConfig) -> RecordImages:
    """Evaluation views of ``records``: ``test_crops`` crops, or the local-global views."""
    if config.local_global:
        return LocalGlobalImages(records, labels, config.image_size, train=False, n_local=config.n_local)
    return RecordImages(records, labels, config.image_size, train=False, crops=config.test_crops)


def eval_loader(records: Sequence[IQARecord], labels: LabelSpace, config: TRCNNConfig) -> DataLoader:
    ds = eval_images(records, labels, config)
    views = config.n_local + 1 if config.local_global else config.test_crops
    return DataLoader(ds, batch_size=max(1, 2 * config.batch_size // views), collate_fn=collate,
                      num_workers=config.num_workers)


def score_records(model: nn.Module, records: Sequence[IQARecord], labels: LabelSpace, config: TRCNNConfig,
                  device: torch.device) -> Outputs:
    """Scores (view means), embeddings and labels of ``records``."""
    return run_model(model, eval_loader(records, labels, config), device, config.amp)


class CropRounds(Dataset):
    """Item ``r * N + i`` of ``N`` images is image ``i`` cropped as in round ``r`` of ``epoch``, so an
    epoch longer than the image list shows each image several times, each time cropped elsewhere."""

    def __init__(self, images: RecordImages, epoch: int):
        self.images = images
        self.epoch = epoch

    def __getitem__(self, k: int) -> dict[str, Any]:
        r, i = divmod(int(k), len(self.images))
        self.images.set_epoch(self.epoch * 10_000 + r)
        return self.images[i]


# ---------------------------------------------------------------------------------------- training
class RegressionTask:
    """TRCNN's (and SIND's) part of the shared training loop.

    Args:
        method: ``trcnn`` or ``sind`` (recorded in checkpoints).
        train, val: records; ``train_source``: dataset index of each training record (dataset-domain
            alignment and sampling).
    """

    #: Every parameter gets a gradient each step (DistributedDataParallel skips its search).
    unused_parameters = False

    def __init__(self, method: str, config: TRCNNConfig, train: Sequence[IQARecord], val: Sequence[IQARecord],
                 device: torch.device, train_source: Sequence[int] | None = None,
                 stream: DegradedReferences | None = None):
        if not train and stream is None:
            raise DatasetError(f"{method}: no training records")
        self.method = method
        self.config = config
        self.device = device
        self.labels = LabelSpace.from_records(list(train) + list(val))
        self.val = list(val)
        self.model = TRCNNNet(config)
        self.stream = stream
        self._loader: DegradedLoader | None = None
        self.sampler: SceneSampler | None = None
        if stream is not None:
            return
        c = config
        self.images = (LocalGlobalImages(train, self.labels, c.image_size, train=True, n_local=c.n_local,
                                         seed=c.seed) if c.local_global
                       else RecordImages(train, self.labels, c.image_size, train=True, seed=c.seed))
        if c.alignment == "dataset":
            domains = list(train_source) if train_source is not None else [0] * len(train)
        else:
            domains = [int(self.images.targets(i)["scene"]) for i in range(len(train))]
        self.domains = torch.tensor(domains, dtype=torch.long)
        if c.scene_sampling:
            steps = math.ceil((c.train_samples or len(train)) / (c.scenes_per_batch * c.images_per_scene))
            self.sampler = SceneSampler(domains, c.scenes_per_batch, c.images_per_scene, steps=steps,
                                        seed=c.seed)

    def phase(self, epoch: int) -> tuple[str, int, int]:
        return "train", 0, self.config.epochs

    def batches(self, epoch: int) -> Iterable[dict[str, torch.Tensor]]:
        c = self.config
        if self.stream is not None:
            self.stream.set_epoch(epoch)
            if self._loader is None:
                self._loader = self.stream.loader(num_workers=c.num_workers, device=self.device,
                                                  persistent_workers=True)
            return self._loader
        n_images = len(self.images)
        if self.sampler is not None:  # step t crops as round t: repeats within an epoch differ
            self.sampler.set_epoch(epoch)
            order = [[i + n_images * t for i in batch] for t, batch in enumerate(self.sampler)]
        else:
            n = c.train_samples or n_images
            rounds = math.ceil(n / n_images)
            perm = torch.randperm(rounds * n_images)[:n].tolist()  # the loop seeds torch per epoch
            order = [perm[j:j + c.batch_size] for j in range(0, n, c.batch_size)
                     if len(perm[j:j + c.batch_size]) > 1]
        return DataLoader(CropRounds(self.images, epoch), batch_sampler=RankSlice(order), collate_fn=collate,
                          num_workers=c.num_workers, pin_memory=self.device.type == "cuda")

    def start_epoch(self, epoch: int) -> dict[str, float]:
        return {}

    def step(self, batch: dict[str, torch.Tensor], epoch: int) -> tuple[torch.Tensor, dict[str, float]]:
        images = batch["image"]
        views = images.shape[1] if images.dim() == 5 else 1
        pred = self.model(images.flatten(0, 1) if images.dim() == 5 else images).view(-1, views).mean(1)
        if "index" in batch:
            domains = self.domains.to(pred.device)[batch["index"]]
        else:  # on the fly: the reference is the scene; one dataset
            domains = batch["scene"] if self.config.alignment == "scene" else torch.zeros_like(batch["scene"])
        return regression_loss(pred, batch["score"], domains, self.config)

    def validate(self, epoch: int) -> dict[str, float]:
        if not self.val:
            return {}
        records = self.val
        limit = self.config.val_samples
        if limit is not None and len(records) > limit:
            pick = np.random.default_rng(self.config.seed).choice(len(records), limit, replace=False)
            records = [records[i] for i in sorted(pick)]
        out = score_records(self.model, records, self.labels, self.config, self.device)
        m = evaluate_outputs(out)
        return {"srcc": float(m["srcc"]), "plcc": float(m["plcc"]), "mse": float(m["rmse"]) ** 2}

    def config_dict(self) -> dict[str, Any]:
        return self.config.to_dict()

    def extra_state(self) -> dict[str, Any]:
        return {"labels": self.labels.to_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        return None


def loop_settings(config: TRCNNConfig, device: torch.device, progress: bool) -> LoopSettings:
    c = config
    return LoopSettings(c.epochs, c.learning_rate, c.weight_decay, c.scheduler, c.grad_clip, c.seed, device,
                        c.amp, progress=progress)


def regression_metrics(out: Outputs, type_names: Sequence[str] | None = None) -> dict[str, Any]:
    """SRCC, PLCC (raw), RMSE and MSE overall and per distortion type (MSE on the [0, 1] scale)."""
    metrics = evaluate_outputs(out, type_names)
    metrics["mse"] = float(metrics["rmse"]) ** 2
    for m in metrics.get("per_type", {}).values():
        if "rmse" in m:
            m["mse"] = float(m["rmse"]) ** 2
    return metrics


@dataclass
class _Experiment:
    """The run recipe's data: an experiment fold and, on the fly, its training stream."""

    exp: ExperimentData
    stream: DegradedReferences | None = None

    @property
    def description(self) -> str:
        return self.exp.description


def _load_data(config: TRCNNConfig, options: dict[str, Any], data: str | None, out_dir: Path,
               device: torch.device) -> _Experiment:
    if options.get("on_the_fly"):
        return _Experiment(*onthefly_experiment(str(options["on_the_fly"]), config, out_dir))
    return _Experiment(experiment_records(str(data), config.experiment, config.fold, config.test_data,
                                          options.get("label"), config.seed))


def _recipe(method: str) -> Recipe:
    def fit(config: TRCNNConfig, loaded: _Experiment, options: dict[str, Any], out_dir: Path,
            device: torch.device) -> Trained:
        exp = loaded.exp
        task = RegressionTask(method, config, exp.train, exp.val, device, exp.train_source, loaded.stream)
        t0 = time.perf_counter()
        result = run_training(task, loop_settings(config, device, bool(options.get("progress", True))),
                              out_dir, resume=options.get("resume"))
        train_seconds = time.perf_counter() - t0
        task.model.load_state_dict(load_checkpoint(result.best_path)["model"])
        report = {"best_epoch": result.best_epoch, "best_val_srcc": result.best_srcc,
                  "train_seconds": train_seconds, "train_images_per_s": result.images_per_second}
        return Trained(result.best_path, report, task.model)  # type: ignore[arg-type]

    def test(config: TRCNNConfig, loaded: _Experiment, trained: Trained, device: torch.device
             ) -> dict[str, Any]:
        if not loaded.exp.test:
            return {}
        labels = LabelSpace.from_records(loaded.exp.test)
        return {"test": regression_metrics(score_records(trained.model, loaded.exp.test, labels, config,
                                                         device), labels.types)}

    return Recipe(method, TRCNNConfig, preset_config, _load_data, fit, test)


def train_regressor(method: str, options: dict[str, Any], data: str | None, out: str | Path | None,
                    defaults: dict[str, Any] | None = None) -> Path:
    """Train TRCNN (or SIND) through the run recipe (``models/training/recipe.py``): ``best.pt``,
    ``last.pt``, ``log.csv``, ``config.yaml`` and ``run.json`` (test SRCC/PLCC/RMSE/MSE) in ``out``;
    ``defaults`` are applied between the preset and the overrides. Returns the best checkpoint's path."""
    return run_recipe(_recipe(method), options, data, out, defaults)


def training_stream(sources: Sequence[Any], config: TRCNNConfig, scene_ids: Sequence[int] | None = None
                    ) -> DegradedReferences:
    """The on-the-fly training batches of TRCNN/SIND from reference ``sources``: one ``onthefly_profile``
    distortion per crop at a level 1..5, labelled by the level rule; with ``scene_sampling``,
    ``scenes_per_batch`` items of ``images_per_scene`` versions of one crop each. About ``train_samples``
    images per epoch, split over ``torch.distributed`` ranks."""
    c = config
    if c.local_global:
        raise ConfigError("local_global needs whole images; it is not available with --on-the-fly")
    versions, per_batch = (c.images_per_scene, c.scenes_per_batch) if c.scene_sampling else (1, c.batch_size)
    steps = round_to_ranks(max(1, math.ceil((c.train_samples or 1024) / (versions * per_batch))))
    on_cpu = resolve_device(c.device).type == "cpu"
    return DegradedReferences(sources, crop=c.image_size, profile=c.onthefly_profile, law="single",
                              versions=versions, batch_size=per_batch, items=steps * per_batch, seed=c.seed,
                              labels="level", scene_ids=scene_ids, distort="worker" if on_cpu else "device")


def onthefly_experiment(ref_dir: str, config: TRCNNConfig, out_dir: Path
                        ) -> tuple[ExperimentData, DegradedReferences]:
    """TRCNN/SIND on a reference folder: the training stream (``training_stream``) from the training
    references; fixed validation and test crops of held-out references, written under ``out_dir/onthefly``."""
    c = config
    parts = split_references(ref_dir, c.image_size, c.seed)
    stream = training_stream(parts.sources_of("train"), c, parts.parts["train"])
    sets = {part: eval_set(parts, part, out_dir / "onthefly", c.image_size, c.onthefly_profile, "single",
                           c.seed, c.val_samples or 200, write=is_main_process())
            for part in ("val", "test")}
    barrier()
    exp = ExperimentData([], sets["val"], sets["test"], [], [0] * len(sets["val"]), [ref_dir],
                         parts.describe(c.onthefly_profile))
    return exp, stream


def train_trcnn(options: dict[str, Any], data: str | None, out: str | Path | None) -> Path:
    """``synthiqa train --method trcnn`` (see ``train_regressor``)."""
    return train_regressor(METHOD, options, data, out)


# ---------------------------------------------------------------------------------------- predictor
class TRCNNPredictor(MethodPredictor):
    """TRCNN behind the ``QualityPredictor`` interface (``SINDPredictor``: trained the SIND way):
    ``fit`` trains in memory, ``predict`` gives scores in [0, 1] (higher is better, mean over the
    evaluation views), ``embed`` the quality-token embeddings.

    Args:
        preset: ``default`` or ``quick``; config: a full ``TRCNNConfig`` instead; progress: progress bars
        while fitting; **options: config fields (None: the preset's value).

    Fitted attributes: ``config_``, ``device_``, ``model_`` (the network).
    """

    name = METHOD
    label = "TRCNN"
    config_class = TRCNNConfig
    presets = PRESETS

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> TRCNNPredictor:
        state = load_checkpoint(path)
        if state.get("method") != cls.name:
            raise SynthiqaError(f"{path}: a {state.get('method')!r} checkpoint, not a {cls.name} one")
        # the weights come from the checkpoint: no download, no backbone file needed
        saved = {**dict(state["config"]), "pretrained": False, "backbone_checkpoint": None}
        config = TRCNNConfig.from_dict(saved, source=f"{path} config")
        model = TRCNNNet(config)
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise SynthiqaError(f"{path}: weights do not fit the TRCNN network ({str(exc).splitlines()[0]})"
                                ) from None
        predictor = cls(config=config)
        predictor.config_, predictor.device_ = config, resolve_device(config.device)
        predictor.model_ = model.to(predictor.device_).eval()
        return predictor

    def fit(self, train: Sequence[IQARecord], val: Sequence[IQARecord] | None = None) -> TRCNNPredictor:
        config, device = self.resolve()
        torch.manual_seed(config.seed)  # initial weights from the config's seed, as in training
        task = RegressionTask(self.name, config, train, val or [], device)
        result = run_training(task, loop_settings(config, device, self.progress), out_dir=None)
        task.model.load_state_dict(result.best_state["model"])
        self.config_, self.device_, self.model_ = config, device, task.model.eval()
        return self

    def _outputs(self, records: Sequence[IQARecord]) -> Outputs:
        check_fitted(self, self.name)
        return score_records(self.model_, records, LabelSpace.from_records(records), self.config_,
                             self.device_)

    def predict(self, records: Sequence[IQARecord]) -> np.ndarray:
        return self._outputs(records).scores

    def embed(self, records: Sequence[IQARecord]) -> np.ndarray | None:
        return self._outputs(records).embeddings


register_model(
    METHOD, TRCNNPredictor, config=TRCNNConfig, train=train_trcnn, load=TRCNNPredictor.from_checkpoint,
    description="CNN feature map + transformer over patch tokens with a quality token; MSE + ranking",
)
