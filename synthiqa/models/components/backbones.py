"""Feature backbones behind one registry: ours (``compact``, ``unet``) and any timm model by name.

``create_backbone(name, pretrained=False, checkpoint=None, **kw)`` returns a ``Backbone``: a module that
takes RGB images in [0, 1] (``[B,3,H,W]``), normalises them with the ImageNet statistics, and returns the
feature maps of several stages, finest first (``channels`` and ``reductions`` describe them). timm models
are built with ``features_only=True``; the few that do not support it give their pooled features as a
single ``[B,C,1,1]`` map.

Weights: ``pretrained=True`` downloads the published timm weights exactly as ``timm.create_model`` does
(a connected machine); ``checkpoint=PATH`` loads a local weights file anywhere. Nothing needs weights by
default.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from synthiqa.errors import ConfigError
from synthiqa.models.components.unet import UNetEncoder

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_BACKBONES: dict[str, Callable[..., nn.Module]] = {}


def register_backbone(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register a builder ``(**kw) -> module`` whose forward returns a list of feature maps
    and which has ``channels`` and ``reductions`` lists."""

    def deco(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _BACKBONES[name] = builder
        return builder

    return deco


def list_backbones(include_timm: bool = False) -> list[str]:
    """Our backbone names, plus every timm model name if asked."""
    names = sorted(_BACKBONES)
    if include_timm:
        import timm

        names += timm.list_models()
    return names


class Backbone(nn.Module):
    """Normalises [0, 1] RGB input and returns a list of NCHW feature maps, finest first.

    On the CPU the batch goes to the body in channels-last memory (the maps' shapes and values are those
    of NCHW, to float rounding) without gradients, and in training too where ``nhwc_training`` (ours:
    their CPU training steps are faster so; timm's ResNets train slower so).

    Attributes:
        name: registry name.
        channels: channels of each returned map.
        reductions: stride of each returned map relative to the input, px.
    """

    def __init__(self, name: str, body: nn.Module, channels: list[int], reductions: list[int],
                 pooled: bool = False, channels_last_output: bool = False, nhwc_training: bool = False,
                 mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD):
        super().__init__()
        self.nhwc_training = nhwc_training
        self.name = name
        self.body = body
        self.channels = list(channels)
        self.reductions = list(reductions)
        self.pooled = pooled
        self.channels_last_output = channels_last_output
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = (images - self.mean) / self.std
        if x.device.type == "cpu" and x.dim() == 4 and (self.nhwc_training or not torch.is_grad_enabled()):
            x = x.contiguous(memory_format=torch.channels_last)  # oneDNN's faster layout on the CPU
        out = self.body(x)
        if self.pooled:
            return [out.reshape(out.shape[0], -1, 1, 1)]
        if self.channels_last_output:  # Swin and friends return NHWC maps
            return [o.permute(0, 3, 1, 2) for o in out]
        return list(out)


class _ResidualStage(nn.Module):
    """Stride-2 residual block: conv3x3(s2)-BN-ReLU-conv3x3-BN plus a 1x1 strided shortcut."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
        )
        self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=2, bias=False), nn.BatchNorm2d(c_out))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class CompactCNN(nn.Module):
    """A small residual CNN (about 0.8 M parameters, ~0.25 GFLOPs at 128 px) that trains on a CPU.

    A 3x3 stem at full resolution (distortions live in fine detail), then stride-2 residual stages.
    Returns each stage's map: strides 2, 4, 8, 16 px with the default ``widths``.
    """

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 192), stem_width: int = 24):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem_width, 3, padding=1, bias=False), nn.BatchNorm2d(stem_width),
            nn.ReLU(inplace=True),
        )
        chans = [stem_width, *widths]
        self.stages = nn.ModuleList(_ResidualStage(chans[i], chans[i + 1]) for i in range(len(widths)))
        self.channels = list(widths)
        self.reductions = [2 ** (i + 1) for i in range(len(widths))]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps


@register_backbone("compact")
def _compact(**kw: Any) -> nn.Module:
    return CompactCNN(**kw)


@register_backbone("unet")
def _unet(**kw: Any) -> nn.Module:
    return UNetEncoder(**kw)


def _load_local_weights(module: nn.Module, checkpoint: Path, name: str) -> None:
    """Load a state dict (plain, or under ``state_dict``/``model``) into ``module``.

    ``module.`` (DataParallel) and ``body.`` (a saved ``Backbone``) prefixes are stripped; keys the module
    does not have (a classifier head) are ignored; every key it has must be present with the same shape.
    """
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"{checkpoint}: not a readable weights file ({type(exc).__name__})") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{checkpoint}: expected a state dict of tensors")
    state = {k.removeprefix("module.").removeprefix("body."): v for k, v in state.items()}
    own = module.state_dict()
    if not own.keys() & state.keys():  # timm's FeatureGetterNet holds the model as ``model``
        state = {f"model.{k}": v for k, v in state.items()}
    missing = [k for k in own if k not in state]
    wrong = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or wrong:
        what = f"{len(missing)} missing keys, e.g. {missing[0]}" if missing else (
            f"{len(wrong)} keys of another shape, e.g. {wrong[0]} {list(state[wrong[0]].shape)} "
            f"vs {list(own[wrong[0]].shape)}")
        raise ConfigError(f"{checkpoint}: weights do not fit backbone {name!r} ({what})")
    module.load_state_dict({k: state[k] for k in own}, strict=True)


def _timm_backbone(name: str, pretrained: bool, checkpoint: Path | None, image_size: int | None,
                   **kw: Any) -> Backbone:
    import timm

    if image_size is not None and ("vit" in name or "swin" in name):
        default = timm.get_pretrained_cfg_value(name, "input_size")
        if default is not None and default[-1] != image_size:
            kw.setdefault("img_size", image_size)

    def build(**extra: Any) -> nn.Module:
        try:
            return timm.create_model(name, pretrained=pretrained, **kw, **extra)
        except OSError as exc:
            if not pretrained:
                raise
            first = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
            raise ConfigError(
                f"backbone {name!r}: cannot fetch pretrained weights ({first}); on an offline machine "
                f"download them elsewhere and pass --backbone-checkpoint PATH"
            ) from None

    try:
        body = build(features_only=True)
    except (RuntimeError, TypeError, AttributeError):  # no features_only support: pooled features
        body = build(num_classes=0)
        channels, reductions, pooled = [body.num_features], [image_size or 224], True
    else:
        channels, reductions, pooled = body.feature_info.channels(), body.feature_info.reduction(), False
    if checkpoint is not None:
        _load_local_weights(body, checkpoint, name)
    cfg = getattr(body, "pretrained_cfg", None) or {}
    nhwc = str(getattr(body, "output_fmt", "NCHW")).endswith("NHWC")
    return Backbone(name, body, channels, reductions, pooled=pooled, channels_last_output=nhwc,
                    mean=tuple(cfg.get("mean", IMAGENET_MEAN)), std=tuple(cfg.get("std", IMAGENET_STD)))


def create_backbone(name: str, pretrained: bool = False, checkpoint: str | Path | None = None,
                    image_size: int | None = None, **kw: Any) -> Backbone:
    """Build backbone ``name`` (ours or timm's).

    Args:
        name: ``compact``, ``unet`` or a timm model name (``resnet18``, ``efficientnet_b0``,
            ``vit_tiny_patch16_224``, ``swin_tiny_patch4_window7_224``...).
        pretrained: timm's published weights (downloaded; a one-line error when they cannot be fetched).
        checkpoint: a local weights file; works offline. A missing file or weights of another shape give
            a one-line ``ConfigError``.
        image_size: input side, px; ViT/Swin are built for it (timm's ``img_size``).
        **kw: passed to the builder (e.g. ``widths`` for ``compact``, ``base_width`` for ``unet``).
    """
    ckpt = Path(checkpoint) if checkpoint else None
    if ckpt is not None and not ckpt.is_file():
        raise ConfigError(f"{ckpt}: backbone checkpoint not found")
    if name in _BACKBONES:
        if pretrained:
            raise ConfigError(f"backbone {name!r} has no published weights; train it, or pass a checkpoint")
        body = _BACKBONES[name](**kw)
        if ckpt is not None:
            _load_local_weights(body, ckpt, name)
        return Backbone(name, body, body.channels, body.reductions, nhwc_training=True)
    import timm

    if not timm.is_model(name):
        close = difflib.get_close_matches(name, list_backbones(include_timm=True), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"unknown backbone {name!r}{hint}; ours: {', '.join(sorted(_BACKBONES))} "
                          f"or any timm model name")
    return _timm_backbone(name, pretrained, ckpt, image_size, **kw)
