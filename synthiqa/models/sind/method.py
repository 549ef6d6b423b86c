"""SIND, scene-invariant distribution learning: TRCNN's network trained so that a quality regressor learns
what is shared across scenes rather than each scene's absolute level.

Its parts live where any method can reuse them:

* ``SceneSampler`` (``models/data.py``): every batch holds ``k`` domains (scenes, i.e. references, or
  whole datasets) with ``n`` images each, so each domain's predictions can be compared with its labels
  inside the batch.
* ``scale_shift_align`` / ``sind_loss`` (``models/components/losses.py``): per domain of the batch, the
  affine map ``a*p + b`` of the predictions that best fits the labels is applied before an L1 loss.
* ``LocalGlobalImages`` (``models/data.py``): one global view plus ``n_local`` full-resolution crops.
* ``experiment_splits`` (``datasets/folds.py``): ``random``, ``intra``, ``loro`` and ``cross`` (SIND's
  ``random-split``, ``reference-split``, ``leave-one-out`` and ``cross-set``).

``synthiqa train --method sind`` is TRCNN's trainer with all of the above switched on (scene sampling,
scene alignment); every option is also a field of the TRCNN config (``--method trcnn --set
alignment=scene``...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synthiqa.models.registry import register_model
from synthiqa.models.trcnn.method import TRCNNConfig, TRCNNPredictor, train_regressor

METHOD = "sind"

#: SIND's defaults on top of the TRCNN config.
SIND_DEFAULTS: dict[str, Any] = {"scene_sampling": True, "alignment": "scene", "loss": "sind"}


def train_sind(options: dict[str, Any], data: str | None, out: str | Path | None) -> Path:
    """``synthiqa train --method sind``: TRCNN's trainer with ``SIND_DEFAULTS`` (see ``train_trcnn``)."""
    return train_regressor(METHOD, options, data, out, defaults=SIND_DEFAULTS)


class SINDPredictor(TRCNNPredictor):
    """A TRCNN predictor trained the SIND way: ``SIND_DEFAULTS`` (scene sampling and scene alignment)
    on top of the preset or config, then the options given."""

    name = METHOD
    label = "SIND"
    defaults = SIND_DEFAULTS


register_model(
    METHOD, SINDPredictor, config=TRCNNConfig, train=train_sind, load=SINDPredictor.from_checkpoint,
    description="scene-invariant training (scene sampling, per-scene scale-shift alignment) of TRCNN",
)
