"""Training data for the models: batches of image crops with every label the losses need.

A batch is a dict of tensors: ``image`` (float ``[B,3,S,S]`` in [0, 1]; ``[B,n,3,S,S]`` with ``n`` crops at
evaluation), ``score`` (normalised quality in [0, 1], higher is better; NaN where unknown), ``type`` and
``group`` (ids in the ``LabelSpace``; -1 for pristine or unknown), ``level`` (0 pristine, 1..5, NaN
unknown), ``scene`` (reference id) and ``index`` (position in the record list); with a ``context`` function,
also ``context`` (float ``[B,D]``: features of each whole image).

Files on disk give such batches through ``RecordImages``, a ``DataLoader`` and the ``SceneBatchSampler``
that keeps several images of one reference together so ranking pairs exist; on the fly they come from
``synthiqa.datasets.DegradedReferences`` (reference crops distorted by the engine, labelled by the level
rule). SIND's ``SceneSampler`` draws batches of ``k`` domains (scenes or datasets) x ``n`` images, and
``LocalGlobalImages`` sees each image as one global view plus ``n_local`` full-resolution crops.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Sampler

from synthiqa.datasets.degraded import fit_min_side
from synthiqa.datasets.records import DecodedImage, IQARecord
from synthiqa.datasets.references import read_image
from synthiqa.distortions.fastpath import map_images
from synthiqa.distortions.rng import derive_seed
from synthiqa.errors import ConfigError, DatasetError

PRISTINE = "pristine"
#: JPEG's block grid: crops start on multiples of this so blockwise DCT features see the codec's grid.
CROP_ALIGN = 8


@dataclass
class LabelSpace:
    """Names behind the integer labels: distortion types, groups and scenes (index = id)."""

    types: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    scenes: list[str] = field(default_factory=list)

    @classmethod
    def from_records(cls, records: Sequence[IQARecord]) -> LabelSpace:
        """Sorted type and group names (pristine excluded) and scene names seen in ``records``."""
        types = sorted({r.dist_type for r in records if r.dist_type and r.dist_type != PRISTINE})
        groups = sorted({r.dist_group for r in records if r.dist_group and r.dist_type != PRISTINE})
        scenes = sorted({_scene(r) for r in records})
        return cls(types, groups, scenes)

    def type_id(self, name: str | None) -> int:
        return self.types.index(name) if name in self.types else -1

    def group_id(self, name: str | None) -> int:
        return self.groups.index(name) if name in self.groups else -1

    def to_dict(self) -> dict[str, list[str]]:
        return {"types": list(self.types), "groups": list(self.groups), "scenes": list(self.scenes)}


def _scene(record: IQARecord) -> str:
    if record.scene:
        return record.scene
    return str(record.reference) if record.reference else str(record.image)


def read_rgb(path: str | Path | DecodedImage) -> torch.Tensor:
    """Decode an image file to a uint8 ``[3,H,W]`` RGB tensor (``datasets.references.read_image``; a
    ``DecodedImage``'s pixels as they are); ``DatasetError`` if unreadable."""
    if isinstance(path, DecodedImage):
        return path.pixels
    pixels = read_image(path)
    if not pixels.flags.writeable:  # a view of PIL's buffer: torch wraps only memory it may write
        pixels = pixels.copy()
    return torch.from_numpy(pixels).permute(2, 0, 1)


def crop_origins(h: int, w: int, size: int, n: int) -> list[tuple[int, int]]:
    """``n`` deterministic crop origins spread over the image (the centre for ``n=1``), grid-aligned."""
    if n == 1:
        return [(_align((h - size) // 2), _align((w - size) // 2))]
    rows = math.ceil(math.sqrt(n))
    cols = math.ceil(n / rows)
    origins = []
    for i in range(n):
        r, c = divmod(i, cols)
        y = (h - size) * (r + 0.5) / rows
        x = (w - size) * (c + 0.5) / cols
        origins.append((_align(int(y)), _align(int(x))))
    return origins


def _align(v: int) -> int:
    return max(0, v - v % CROP_ALIGN)


def random_origin(h: int, w: int, size: int, rng: random.Random) -> tuple[int, int]:
    """A random crop origin on the ``CROP_ALIGN`` grid."""
    return (_align(rng.randint(0, h - size)), _align(rng.randint(0, w - size)))


class _ImageCache:
    """Decoded images by index, up to a byte budget (first come, first kept)."""

    def __init__(self, budget: int):
        self.budget = budget
        self.used = 0
        self.images: dict[int, torch.Tensor] = {}

    def add(self, i: int, image: torch.Tensor) -> None:
        if self.used + image.numel() <= self.budget:
            self.images[i] = image
            self.used += image.numel()


class RecordImages(Dataset):
    """Crops of the images of ``records`` with their labels.

    Args:
        records: the images (``score_norm``, ``dist_type``, ``level``, ``scene`` used where present).
        labels: id spaces for types, groups and scenes (usually built from the training records).
        size: crop side, px (images with a shorter side are upscaled first).
        train: random grid-aligned crop per access (``patches`` of them); else ``crops`` fixed crops per
            image.
        crops: number of evaluation crops (``image`` is then ``[crops,3,S,S]``).
        patches: random crops per training item; above 1, ``image`` is ``[patches,3,S,S]`` (a model that
            pools its crops sees several native-resolution parts of one image per step).
        repeats: in training, random crops of every image per epoch: the set then has
            ``repeats * len(records)`` items, item ``i`` being a crop of image ``i % len(records)``.
        seed: base seed of the random crops (combined with the epoch via ``set_epoch``).
        cache_mb: keep decoded images in memory up to this many MiB (decoding a 768x512 PNG costs about
            as much CPU as a third of a training step on it); 0 disables. Per process: with
            ``num_workers > 0`` each worker holds its own cache.
        context: whole-image features, uint8 ``[3,H,W]`` -> a tensor (e.g. ``WholeImageFeatures.of_image``
            -> ``[D]``): each item then has ``context``, computed once per image and kept (a few KiB each).
    """

    def __init__(self, records: Sequence[IQARecord], labels: LabelSpace, size: int, train: bool,
                 crops: int = 1, seed: int = 0, cache_mb: int = 0, repeats: int = 1, patches: int = 1,
                 context: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.records = list(records)
        self.context = context
        self._contexts: dict[int, torch.Tensor] = {}
        self.patches = patches
        self.repeats = repeats
        self._cache = _ImageCache(cache_mb * 2**20)
        self.labels = labels
        self.size = size
        self.train = train
        self.crops = crops
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def evaluation_view(self, crops: int = 1) -> RecordImages:
        """The same images with fixed evaluation crops, sharing this set's decoded-image cache."""
        view = copy.copy(self)
        view.train, view.crops = False, crops
        return view

    def __len__(self) -> int:
        return len(self.records) * (self.repeats if self.train else 1)

    def targets(self, i: int) -> dict[str, Any]:
        """The label tensors of item ``i`` (no image decoding)."""
        i %= len(self.records)
        r = self.records[i]
        pristine = r.dist_type == PRISTINE
        level = 0.0 if pristine else (float(r.level) if r.level is not None else math.nan)
        scene = _scene(r)
        return {
            "score": torch.tensor(float(r.score_norm) if r.score_norm is not None else math.nan),
            "type": torch.tensor(-1 if pristine else self.labels.type_id(r.dist_type)),
            "group": torch.tensor(-1 if pristine else self.labels.group_id(r.dist_group)),
            "level": torch.tensor(level),
            "scene": torch.tensor(self.labels.scenes.index(scene) if scene in self.labels.scenes else -1),
            "index": torch.tensor(i),
        }

    def image(self, i: int) -> torch.Tensor:
        """Decoded image of item ``i`` (uint8 ``[3,H,W]``, at least ``size`` px a side), from the cache if
        there."""
        i %= len(self.records)
        image = self._cache.images.get(i)
        if image is None:
            image = fit_min_side(read_rgb(self.records[i].image), self.size)
            self._cache.add(i, image)
        return image

    def __getitem__(self, i: int) -> dict[str, Any]:
        image = self.image(i)
        h, w = image.shape[-2:]
        s = self.size
        if self.train:
            rng = random.Random(derive_seed(self.seed, self.epoch, i))
            origins = [random_origin(h, w, s, rng) for _ in range(self.patches)]
            crop = torch.stack([image[:, y:y + s, x:x + s] for y, x in origins])
            crop = crop[0] if self.patches == 1 else crop
        else:
            crop = torch.stack([image[:, y:y + s, x:x + s] for y, x in crop_origins(h, w, s, self.crops)])
        out = self.targets(i)
        out["image"] = crop
        if self.context is not None:
            out["context"] = self.context_of(i, image)
        return out

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """Items ``indices`` (a loader's batch), as ``__getitem__`` makes them, side by side on torch's
        threads (``map_images``, each thread's torch operations on itself): decoding and the whole-image
        features run one image per thread."""
        items: list[dict[str, Any]] = [{} for _ in indices]

        def make(k: int) -> None:
            items[k] = self[indices[k]]

        map_images(len(indices), make, one_torch_thread=True)
        return items

    def context_of(self, i: int, image: torch.Tensor | None = None) -> torch.Tensor:
        """The whole-image features of item ``i``'s image (computed once, then kept); ``image``: its
        decoded pixels where the caller has them."""
        if self.context is None:
            raise ValueError("this set computes no whole-image features (context=None)")
        key = i % len(self.records)
        if key not in self._contexts:
            self._contexts[key] = self.context(self.image(key) if image is None else image)
        return self._contexts[key]


class SceneBatchSampler(Sampler[list[int]]):
    """Batches made of groups of ``per_scene`` images of the same scene (so ranking pairs exist).

    Each epoch (``set_epoch``) reshuffles the images within each scene, cuts them into groups, shuffles
    the groups and packs them into batches of ``batch_size``; ``limit`` caps the images per epoch.
    """

    def __init__(self, scenes: Sequence[int], batch_size: int, per_scene: int, seed: int = 0,
                 limit: int | None = None):
        self.scenes = list(scenes)
        self.batch_size = batch_size
        self.per_scene = max(1, min(per_scene, batch_size))
        self.seed = seed
        self.limit = limit
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        rng = random.Random(derive_seed(self.seed, self.epoch, "batches"))
        by_scene: dict[int, list[int]] = {}
        for i, s in enumerate(self.scenes):
            by_scene.setdefault(s, []).append(i)
        groups = []
        for members in by_scene.values():
            rng.shuffle(members)
            groups += [members[j:j + self.per_scene] for j in range(0, len(members), self.per_scene)]
        rng.shuffle(groups)
        order = [i for g in groups for i in g]
        if self.limit is not None:
            order = order[: self.limit]
        return [order[j:j + self.batch_size] for j in range(0, len(order), self.batch_size)
                if len(order[j:j + self.batch_size]) > 1]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        return len(self._batches())


def collate(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack the items of a batch; uint8 images become float in [0, 1]."""
    batch = {k: torch.stack([it[k] for it in items]) for k in items[0]}
    batch["image"] = batch["image"].float().div_(255.0)
    return batch


class SceneSampler(Sampler[list[int]]):
    """Batches of ``scenes_per_batch`` domains x ``images_per_scene`` images.

    Args:
        domains: the domain id of every item (scene or dataset index).
        scenes_per_batch: k, distinct domains per batch (all of them when there are fewer).
        images_per_scene: n, images drawn per domain without replacement (with replacement when a domain
            has fewer than n).
        steps: batches per epoch (default: as many as cover the items once on average).
        seed: with ``set_epoch``, batch ``t`` of epoch ``e`` depends only on (seed, e, t).

    Domains with a single item are never drawn: alignment within them is empty.
    """

    def __init__(self, domains: Sequence[int], scenes_per_batch: int, images_per_scene: int,
                 steps: int | None = None, seed: int = 0):
        if scenes_per_batch < 1 or images_per_scene < 2:
            raise ConfigError(f"scene sampling needs scenes_per_batch >= 1 and images_per_scene >= 2, got "
                              f"{scenes_per_batch} and {images_per_scene}")
        members: dict[int, list[int]] = {}
        for i, d in enumerate(domains):
            members.setdefault(int(d), []).append(i)
        self.members = {d: m for d, m in sorted(members.items()) if len(m) >= 2}
        if not self.members:
            raise DatasetError("scene sampling: no scene (or dataset) has two or more training images")
        self.k = min(scenes_per_batch, len(self.members))
        self.n = images_per_scene
        self.steps = steps or max(1, math.ceil(len(domains) / (self.k * self.n)))
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        keys = list(self.members)
        for step in range(self.steps):
            rng = random.Random(derive_seed(self.seed, self.epoch, step, "scene-sampler"))
            batch = []
            for d in rng.sample(keys, self.k):
                m = self.members[d]
                batch += rng.sample(m, self.n) if len(m) >= self.n else rng.choices(m, k=self.n)
            yield batch


class LocalGlobalImages(RecordImages):
    """Each item's ``image`` is ``[1 + n_local, 3, S, S]``: the whole image resized to ``S x S`` (global
    view, bilinear with antialiasing) followed by ``n_local`` full-resolution ``S`` crops (random in
    training, spread over the image at evaluation)."""

    def __init__(self, records: Sequence[IQARecord], labels: LabelSpace, size: int, train: bool,
                 n_local: int = 3, seed: int = 0):
        super().__init__(records, labels, size, train=train, crops=n_local, seed=seed)
        self.n_local = n_local

    def __getitem__(self, i: int) -> dict[str, Any]:
        image = fit_min_side(read_rgb(self.records[i].image), self.size)
        h, w = image.shape[-2:]
        s = self.size
        whole = F.interpolate(image[None].float(), size=(s, s), mode="bilinear", antialias=True,
                              align_corners=False)[0].round().clamp(0, 255).to(torch.uint8)
        if self.train:
            rng = random.Random(derive_seed(self.seed, self.epoch, i, "local"))
            origins = [random_origin(h, w, s, rng) for _ in range(self.n_local)]
        else:
            origins = crop_origins(h, w, s, self.n_local)
        views = [whole] + [image[:, y:y + s, x:x + s] for y, x in origins]
        out = self.targets(i)
        out["image"] = torch.stack(views)
        return out
