"""``DegradedReferences``: reference crops degraded on the fly, with exact seeding across workers and ranks.

Item ``k`` of epoch ``e`` is a pure function of ``(seed, e, k)``: which reference (each epoch visits every
reference ``per_reference`` times, in an order drawn from ``(seed, e)``), where it is cropped, and every
chain and parameter drawn for it. Batches are cut from the item sequence (batch ``j`` holds items
``j*batch_size`` ..), rank ``r`` of ``W`` takes batches ``j = r, r+W, ...`` and DataLoader worker ``w`` of
``n`` takes every ``n``-th of its rank's batches, which is the order the DataLoader reads workers in. So the
stream is the same for any ``num_workers``, with or without ``persistent_workers`` (the epoch lives in
shared memory, so ``set_epoch`` reaches workers that were started earlier), and the ranks' slices are
disjoint and together the whole epoch.

Decoding happens where items are made (DataLoader workers); the distortion runs there too
(``distort="worker"``) or, with ``distort="device"``, the batches come undistorted and ``degrade(batch,
device)`` (the collate hook ``loader`` calls) distorts them batched on the training device.
"""

from __future__ import annotations

import math
import random
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from synthiqa.datasets.labels import level_quality
from synthiqa.datasets.records import IQARecord
from synthiqa.datasets.references import ReferenceSkipped, decode_reference, probe_reference, scan_references
from synthiqa.distortions.base import MIN_SIDE
from synthiqa.distortions.module import RandomDegradation
from synthiqa.distortions.registry import get_distortion
from synthiqa.distortions.rng import derive_seed
from synthiqa.errors import ConfigError, DatasetError

#: Crop origins are multiples of this (JPEG's block grid).
CROP_ALIGN = 8
DISTORT_WHERE = ("worker", "device")
LABELS = ("level", "none")
#: Batch entries that are per image tensors (the rest: ``params``, a list of records).
TENSOR_KEYS = ("image", "score", "type", "group", "level", "scene", "item", "view", "version")


def resolve_references(refs: str | Path | Sequence[Any], crop: int
                       ) -> tuple[list[Path | torch.Tensor], list[str]]:
    """The usable sources of ``refs`` (file paths or uint8 ``[3,H,W]`` tensors) at least ``crop`` px a side
    and their names; smaller ones are skipped with a warning, one-line errors when none is usable."""
    if isinstance(refs, (str, Path)):
        scan = scan_references(refs, min_side=MIN_SIDE, warn=lambda m: warnings.warn(m, stacklevel=3))
        entries: list[tuple[Any, str, tuple[int, int]]] = [(r.path, r.name, r.size) for r in scan.references]
        where = str(refs)
        if not entries:
            raise DatasetError(f"{where}: no usable reference image ({len(scan.skipped)} files skipped)")
    else:
        entries = []
        where = "refs"
        for i, r in enumerate(refs):
            if isinstance(r, torch.Tensor):
                if r.dim() != 3 or r.shape[0] != 3 or r.dtype != torch.uint8:
                    raise DatasetError(f"refs[{i}]: an in-memory reference must be uint8 [3,H,W], got "
                                       f"{r.dtype} {list(r.shape)}")
                entries.append((r, f"ref{i:05d}", (int(r.shape[2]), int(r.shape[1]))))
                continue
            path = Path(r.reference or r.image) if isinstance(r, IQARecord) else Path(r)
            try:
                entries.append((path, path.stem, probe_reference(path, MIN_SIDE)))
            except ReferenceSkipped as exc:
                warnings.warn(f"skipped {path}: {exc}", stacklevel=3)
        if not entries:
            raise DatasetError("refs: no usable reference image")
    fits = [(src, name) for src, name, (w, h) in entries if min(w, h) >= crop]
    if not fits:
        big = max(entries, key=lambda e: min(e[2]))[2]
        raise DatasetError(f"{where}: crop {crop} px is larger than every reference (largest shorter side "
                           f"{min(big)} px, in a {big[0]}x{big[1]} image)")
    for _, name, (w, h) in entries:
        if min(w, h) < crop:
            warnings.warn(f"skipped {name}: {w}x{h} px is smaller than the {crop} px crop", stacklevel=3)
    return [s for s, _ in fits], [n for _, n in fits]


def fit_min_side(image: torch.Tensor, size: int) -> torch.Tensor:
    """Upscale (bilinear) an image whose shorter side is below ``size`` px; others are returned as is."""
    h, w = image.shape[-2:]
    if min(h, w) >= size:
        return image
    scale = size / min(h, w)
    out = F.interpolate(image[None].float(), size=(max(size, round(h * scale)), max(size, round(w * scale))),
                        mode="bilinear", align_corners=False)
    return out[0].round().clamp(0, 255).to(torch.uint8)


def _half(image: torch.Tensor) -> torch.Tensor:
    """uint8 ``[3,H,W]`` at half size, bicubic with antialiasing (ARNIQA's downscaled view)."""
    h, w = image.shape[-2:]
    out = F.interpolate(image[None].float(), size=(h // 2, w // 2), mode="bicubic", antialias=True,
                        align_corners=False)
    return out[0].round().clamp(0, 255).to(torch.uint8)


def _crop(image: torch.Tensor, size: int, rng: random.Random) -> torch.Tensor:
    h, w = image.shape[-2:]
    y, x = rng.randint(0, h - size), rng.randint(0, w - size)
    y, x = y - y % CROP_ALIGN, x - x % CROP_ALIGN
    return image[:, y:y + size, x:x + size]


class _Source:
    """What both dataset kinds share: references, the item recipe, the degradation and the labels."""

    def __init__(self, refs: str | Path | Sequence[Any], crop: int, per_reference: int, profile: str,
                 seed: int, labels: str | None, max_chain: int, law: str, pristine_prob: float | None,
                 versions: int, pristine: bool, pairs: bool, half_scale: bool, distort: str,
                 items: int | None, cache_mb: int, out_dtype: torch.dtype,
                 scene_ids: Sequence[int] | None = None, level_sigma: float | None = None):
        if crop < MIN_SIDE:
            raise ConfigError(f"crop must be at least {MIN_SIDE} px, got {crop}")
        if per_reference < 1 or versions < 0 or (versions == 0 and not pristine):
            raise ConfigError("per_reference must be >= 1 and versions >= 1 (or 0 with pristine=True)")
        if distort not in DISTORT_WHERE:
            raise ConfigError(f"distort must be one of {', '.join(DISTORT_WHERE)}, got {distort!r}")
        labels = "none" if labels is None else labels
        if labels not in LABELS:
            raise ConfigError(f"labels must be one of {', '.join(LABELS)} (or None), got {labels!r}")
        if items is not None and items < 1:
            raise ConfigError(f"items must be >= 1, got {items}")
        self.degrader = RandomDegradation(profile, max_chain=max_chain, law=law, pristine_prob=pristine_prob,
                                          out_dtype=out_dtype, level_sigma=level_sigma)
        self.sources, self.names = resolve_references(refs, crop)
        if pairs and len(self.sources) < 2:
            raise DatasetError("pairs need at least two usable references")
        self.crop, self.per_reference, self.profile, self.seed = crop, per_reference, profile, seed
        self.labels, self.versions, self.pristine = labels, versions, pristine
        self.pairs, self.half_scale, self.distort = pairs, half_scale, distort
        self.items = items if items is not None else len(self.sources) * per_reference
        self.scene_ids = list(range(len(self.sources))) if scene_ids is None else [int(i) for i in scene_ids]
        if len(self.scene_ids) != len(self.sources):
            raise ConfigError(f"got {len(self.scene_ids)} scene ids for {len(self.sources)} usable "
                              "references")
        self.types = list(self.degrader.types)
        self.groups = sorted({get_distortion(t, profile).group for t in self.types})
        self.cache_bytes = cache_mb * 2**20
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}
        self._cached = 0
        self._order: tuple[int, int, list[int]] | None = None
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()

    # -- epoch (shared with workers) ---------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next iteration (or ``__getitem__``) makes; reaches running workers too."""
        self._epoch[0] = int(epoch)

    # -- item recipe -------------------------------------------------------------------------------------
    @property
    def views(self) -> int:
        """Images per version of an item: 1, 2 with ``pairs``, doubled with ``half_scale``."""
        return (2 if self.pairs else 1) * (2 if self.half_scale else 1)

    @property
    def images_per_item(self) -> int:
        return self.views * (self.versions + int(self.pristine))

    def reference_of(self, epoch: int, k: int) -> int:
        """Which reference item ``k`` of ``epoch`` crops: round ``k // n`` is a permutation of them."""
        n = len(self.sources)
        r = k // n
        if self._order is None or self._order[:2] != (epoch, r):
            order = random.Random(derive_seed(self.seed, "order", epoch, r)).sample(range(n), n)
            self._order = (epoch, r, order)
        return self._order[2][k % n]

    def _image(self, i: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Reference ``i`` at full scale (and half scale with ``half_scale``), decoded once while the
        per-process cache has room."""
        if i in self._cache:
            return self._cache[i]
        src = self.sources[i]
        if isinstance(src, torch.Tensor):
            full = src
        else:
            try:
                full = torch.from_numpy(decode_reference(src).copy()).permute(2, 0, 1).contiguous()
            except ReferenceSkipped as exc:
                raise DatasetError(f"{src}: {exc}") from None
        if self.half_scale:
            full = fit_min_side(full, 2 * self.crop)
        entry = (full, _half(full) if self.half_scale else None)
        size = sum(t.numel() for t in entry if t is not None)
        if self._cached + size <= self.cache_bytes:
            self._cache[i] = entry
            self._cached += size
        return entry

    def raw_item(self, epoch: int, k: int) -> dict[str, Any]:
        """Item ``k`` of ``epoch`` before distortion: uint8 crops ``[M,3,S,S]`` (version-major, views within)
        and the seed of each version's chain (-1: pristine)."""
        rng = random.Random(derive_seed(self.seed, "item", epoch, k))
        ref = self.reference_of(epoch, k)
        refs = [ref]
        if self.pairs:
            other = rng.randrange(len(self.sources) - 1)
            refs.append(other + (other >= ref))
        views: list[torch.Tensor] = []
        for r in refs:
            full, half = self._image(r)
            views.append(_crop(full, self.crop, rng))
            if half is not None:
                views.append(_crop(half, self.crop, rng))
        seeds = ([-1] if self.pristine else []) + [derive_seed(self.seed, "chain", epoch, k, v)
                                                   for v in range(self.versions)]
        v = len(views)
        return {
            "image": torch.stack(views * len(seeds)),
            "chain_seed": torch.tensor(seeds, dtype=torch.int64),
            "scene": torch.tensor([self.scene_ids[refs[(i % v) // (v // len(refs))]]
                                   for i in range(v * len(seeds))]),
            "item": torch.full((v * len(seeds),), k, dtype=torch.int64),
            "view": torch.arange(v).repeat(len(seeds)),
            "version": torch.arange(len(seeds)).repeat_interleave(v) - int(self.pristine),
        }

    def collate_raw(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Undistorted items into one batch (images flattened to ``[B*M,3,S,S]``)."""
        return {key: torch.cat([it[key] for it in items]) for key in items[0]}

    def degrade(self, batch: dict[str, Any], device: torch.device | str | None = None) -> dict[str, Any]:
        """Distort a raw batch (on ``device``, default where its images are) and add the labels: ``image``
        float ``[N,3,S,S]`` in [0, 1], ``score`` (level rule, [0, 1]; with ``labels="level"``), ``type`` and
        ``group`` (ids in ``types``/``groups`` for one-step chains, else -1), ``level`` (0 pristine, the
        step's level, NaN for longer chains), ``params`` (each image's record)."""
        if "chain_seed" not in batch:
            return batch  # already distorted (a worker did it)
        images = batch["image"]
        if device is not None:
            images = images.to(device, non_blocking=True)
        seeds = batch["chain_seed"].tolist()
        v = self.views
        distorted = [j for j, s in enumerate(seeds) if s >= 0]  # groups of ``v`` consecutive images
        out = images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()
        params: list[dict[str, Any]] = [{"chain": "pristine", "seed": -1, "steps": []}
                                        for _ in range(images.shape[0])]
        if distorted:
            idx = torch.tensor([j * v + i for j in distorted for i in range(v)], device=images.device)
            result, recs = self.degrader(images.index_select(0, idx), [seeds[j] for j in distorted], share=v)
            result = result.float().div_(255.0) if result.dtype == torch.uint8 else result
            out.index_copy_(0, idx, result.to(out.dtype))
            for i, rec in zip(idx.tolist(), recs, strict=True):
                params[i] = rec
        chains = [self.degrader.sample(seeds[i // v]) if seeds[i // v] >= 0 else ()
                  for i in range(len(params))]
        one = [c[0] if len(c) == 1 else None for c in chains]
        result_batch = {k: val for k, val in batch.items() if k != "chain_seed"}
        result_batch.update({
            "image": out,
            "type": torch.tensor([self.types.index(o.name) if o else -1 for o in one]),
            "group": torch.tensor([self.groups.index(get_distortion(o.name, self.profile).group) if o else -1
                                   for o in one]),
            "level": torch.tensor([0.0 if not c else (o.level if o else math.nan) for c, o in zip(chains, one,
                                                                                                  strict=True)]),
            "params": params,
        })
        if self.labels == "level":
            result_batch["score"] = torch.tensor([level_quality(c, self.profile) / 100.0 for c in chains])
        return result_batch


class _SourceView:
    """What both datasets read from their ``_Source``: the reference names, the label vocabularies, the
    epoch, and the collate hook."""

    source: _Source

    @property
    def names(self) -> list[str]:
        return self.source.names

    @property
    def types(self) -> list[str]:
        return self.source.types

    @property
    def groups(self) -> list[str]:
        return self.source.groups

    @property
    def images_per_item(self) -> int:
        return self.source.images_per_item

    @property
    def epoch(self) -> int:
        return self.source.epoch

    def set_epoch(self, epoch: int) -> None:
        self.source.set_epoch(epoch)

    def degrade(self, batch: dict[str, Any], device: torch.device | str | None = None) -> dict[str, Any]:
        """The collate hook: distort an undistorted batch on ``device`` (a no-op on a distorted one)."""
        return self.source.degrade(batch, device)


class DegradedReferences(_SourceView, IterableDataset):
    """Batches of degraded reference crops with their labels and parameters; exact under any number of
    DataLoader workers and ``torch.distributed`` ranks (see the module docstring).

    Args:
        refs: a reference folder, or a list of image paths, ``IQARecord`` (their reference, else the image)
            or uint8 ``[3,H,W]`` tensors. References smaller than ``crop`` are skipped with a warning.
        crop: crop side, px.
        per_reference: items per reference and epoch (``items`` overrides the epoch's item count).
        profile, max_chain, law, pristine_prob, level_sigma: the ``RandomDegradation`` drawing the chains.
        seed: the run's seed.
        labels: ``level`` (score by ``level_quality``, normalised to [0, 1]) or None.
        batch_size: items per batch; each item holds ``images_per_item`` images.
        versions: distorted versions of each item, each with its own chain; ``pristine`` adds the
            undistorted crop first (CENIQA's ranking groups).
        pairs: each item crops two different references and applies each version's chain to both
            (ARNIQA's positives); ``half_scale`` adds a crop of each reference at half size.
        distort: ``worker`` (in the DataLoader worker, on the CPU) or ``device`` (batches come undistorted;
            ``degrade`` distorts them where the training runs).
        rank, world_size: this process's slice (default: from ``torch.distributed`` when initialised).
        drop_last: drop the epoch's last, incomplete batch.
        items: items per epoch (default ``per_reference`` x the references).
        cache_mb: decoded references kept per process, MiB.
        scene_ids: the ``scene`` id of each usable reference (default: its position).
        out_dtype: ``torch.uint8`` rounds the distorted images as files would store them (then turned to
            float), ``torch.float32`` keeps the engine's floats.

    Each batch is a dict: ``image`` ``[B*M,3,S,S]`` (item-major; within an item version-major, views
    within), ``score``, ``type``, ``group``, ``level``, ``scene`` (reference id, ``names[id]``), ``item``
    (k), ``view``, ``version`` (-1 pristine) and ``params``.
    """

    def __init__(self, refs: str | Path | Sequence[Any], crop: int = 224, per_reference: int = 1,
                 profile: str = "arniqa", seed: int = 0, labels: str | None = "level", batch_size: int = 16,
                 max_chain: int = 4, law: str = "chain", pristine_prob: float | None = None,
                 versions: int = 1, pristine: bool = False, pairs: bool = False, half_scale: bool = False,
                 distort: str = "worker", rank: int | None = None, world_size: int | None = None,
                 drop_last: bool = False, items: int | None = None, cache_mb: int = 512,
                 out_dtype: torch.dtype = torch.uint8, scene_ids: Sequence[int] | None = None,
                 level_sigma: float | None = None):
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.source = _Source(refs, crop, per_reference, profile, seed, labels, max_chain, law, pristine_prob,
                              versions, pristine, pairs, half_scale, distort, items, cache_mb, out_dtype,
                              scene_ids, level_sigma)
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.rank, self.world_size = _rank_world(rank, world_size)

    @property
    def num_batches(self) -> int:
        """Batches of the whole epoch (all ranks)."""
        n = self.source.items
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def rank_batches(self) -> list[int]:
        """The global batch indices this rank iterates, in order."""
        return list(range(self.rank, self.num_batches, self.world_size))

    def __len__(self) -> int:
        return len(self.rank_batches())

    def raw_batch(self, epoch: int, j: int) -> dict[str, Any]:
        """Global batch ``j`` of ``epoch``, undistorted."""
        start = j * self.batch_size
        stop = min(start + self.batch_size, self.source.items)
        return self.source.collate_raw([self.source.raw_item(epoch, k) for k in range(start, stop)])

    def batch(self, epoch: int, j: int, device: torch.device | str | None = None) -> dict[str, Any]:
        """Global batch ``j`` of ``epoch``, distorted (on ``device``): a pure function of (seed, epoch, j)."""
        return self.degrade(self.raw_batch(epoch, j), device)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        epoch = self.epoch
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        for j in self.rank_batches()[wid::nw]:
            raw = self.raw_batch(epoch, j)
            yield self.source.degrade(raw, "cpu") if self.source.distort == "worker" else raw

    def loader(self, num_workers: int = 0, persistent_workers: bool = False, device: torch.device | str | None
               = None, pin_memory: bool = False, prefetch_factor: int | None = None) -> DegradedLoader:
        """A DataLoader over this set (``batch_size=None``: the set makes the batches) that distorts on
        ``device`` when ``distort="device"``; reuse it across epochs (``set_epoch`` before each)."""
        return DegradedLoader(self, num_workers, persistent_workers, device, pin_memory, prefetch_factor)


class DegradedLoader:
    """Iterates a ``DegradedReferences`` through one DataLoader, applying ``degrade`` on the device."""

    def __init__(self, dataset: DegradedReferences, num_workers: int, persistent_workers: bool,
                 device: torch.device | str | None, pin_memory: bool, prefetch_factor: int | None):
        if num_workers < 0:
            raise ConfigError(f"num_workers must be >= 0, got {num_workers}")
        self.dataset = dataset
        self.device = device
        extra = {"prefetch_factor": prefetch_factor} if num_workers and prefetch_factor else {}
        self.dataloader = DataLoader(dataset, batch_size=None, num_workers=num_workers,
                                     persistent_workers=persistent_workers and num_workers > 0,
                                     pin_memory=pin_memory, **extra)

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for batch in self.dataloader:
            yield self.dataset.degrade(batch, self.device)


class DegradedReferencesMap(_SourceView, Dataset):
    """The map-style twin: item ``k`` (``len`` = the epoch's items) of the epoch set by ``set_epoch``, for any
    sampler (``DistributedSampler`` for ranks). Use ``collate`` as the DataLoader's ``collate_fn``; with
    ``distort="device"`` call ``degrade(batch, device)`` on each batch. Arguments as ``DegradedReferences``
    (without the batching ones)."""

    def __init__(self, refs: str | Path | Sequence[Any], crop: int = 224, per_reference: int = 1,
                 profile: str = "arniqa", seed: int = 0, labels: str | None = "level", max_chain: int = 4,
                 law: str = "chain", pristine_prob: float | None = None, versions: int = 1,
                 pristine: bool = False, pairs: bool = False, half_scale: bool = False,
                 distort: str = "worker", items: int | None = None, cache_mb: int = 512,
                 out_dtype: torch.dtype = torch.uint8, scene_ids: Sequence[int] | None = None,
                 level_sigma: float | None = None):
        self.source = _Source(refs, crop, per_reference, profile, seed, labels, max_chain, law, pristine_prob,
                              versions, pristine, pairs, half_scale, distort, items, cache_mb, out_dtype,
                              scene_ids, level_sigma)

    def __len__(self) -> int:
        return self.source.items

    def __getitem__(self, k: int) -> dict[str, Any]:
        if not 0 <= k < len(self):
            raise IndexError(k)
        raw = self.source.raw_item(self.epoch, int(k))
        return self.source.degrade(raw, "cpu") if self.source.distort == "worker" else raw

    def collate(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Items into one batch: tensors concatenated (``[B*M, ...]``), ``params`` joined."""
        out = {k: torch.cat([it[k] for it in items]) for k in items[0] if k != "params"}
        if "params" in items[0]:
            out["params"] = [p for it in items for p in it["params"]]
        return out


def _rank_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is None or world_size is None:
        import torch.distributed as dist

        on = dist.is_available() and dist.is_initialized()
        rank = (dist.get_rank() if on else 0) if rank is None else rank
        world_size = (dist.get_world_size() if on else 1) if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"rank {rank} is not in 0..{world_size - 1}")
    return rank, world_size

