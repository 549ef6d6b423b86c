"""Ordered chains of distortions (ARNIQA's degradation model): sample, parse, and apply in batches.

Applying a batch walks the chain positions; at each position the samples are grouped by distortion and
each distortion runs once on its sub-batch, so kernel launches scale with positions x types, not samples.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch

from synthiqa.distortions.base import (
    NUM_LEVELS,
    Distortion,
    check_images,
    check_levels,
    check_shape,
    params_to,
    upload,
)
from synthiqa.distortions.fastpath import FLAT_SPAN, apply_uint8_array, hwc_array, map_jobs
from synthiqa.distortions.registry import distortion_groups, get_distortion, get_profile, resolve_name
from synthiqa.distortions.rng import as_seed_tensor, derive_seed, derive_seeds
from synthiqa.errors import DistortionInputError


@dataclass(frozen=True)
class ChainOp:
    """One step of a chain: a registered distortion name and a level in [1, 5]."""

    name: str
    level: float

    def __str__(self) -> str:
        lv = int(self.level) if float(self.level).is_integer() else self.level
        return f"{self.name}:{lv}"


Chain = tuple[ChainOp, ...]
PRISTINE = "pristine"


def format_chain(chain: Sequence[ChainOp]) -> str:
    """``gaussian_blur:3>jpeg:2``; the empty chain is ``pristine``."""
    return ">".join(str(op) for op in chain) if chain else PRISTINE


def parse_chain(text: str, profile: str = "kadid") -> Chain:
    """Parse ``name:level>name:level``; ``pristine`` or an empty string is the empty chain."""
    text = text.strip()
    if text in ("", PRISTINE):
        return ()
    ops = []
    for part in text.split(">"):
        name, sep, level = part.strip().partition(":")
        if not sep:
            raise DistortionInputError(f"chain step {part.strip()!r} must be NAME:LEVEL (e.g. jpeg:3)")
        try:
            lv = float(level)
        except ValueError:
            raise DistortionInputError(
                f"chain step {part.strip()!r}: level {level!r} is not a number"
            ) from None
        canonical = resolve_name(name.strip())
        get_distortion(canonical, profile)  # the profile must know it
        check_levels(lv, 1, canonical)
        ops.append(ChainOp(canonical, lv))
    return tuple(ops)


def level_probabilities(num_levels: int = NUM_LEVELS, sigma: float = 2.5) -> list[float]:
    """ARNIQA's half-Gaussian level law: P(level i+1) ~ exp(-i^2 / (2 sigma^2)), i = 0..num_levels-1;
    ``sigma=math.inf`` gives uniform levels."""
    w = [math.exp(-(i**2) / (2 * sigma**2)) for i in range(num_levels)]
    total = sum(w)
    return [x / total for x in w]


def sample_chain(seed: int, profile: str = "arniqa", max_distortions: int | None = None,
                 pristine_prob: float | None = None, num_levels: int = NUM_LEVELS,
                 include_extra: bool = False, level_sigma: float | None = None) -> Chain:
    """One chain by ARNIQA's rules, from one sample's seed.

    The length is uniform in 1..max_distortions; that many distinct groups are drawn in random order
    (the application order), one type uniformly within each group, and each level independently from
    the half-Gaussian law of width ``level_sigma`` (None: the profile's; ``math.inf``: uniform levels).
    With probability ``pristine_prob`` the chain is empty.
    """
    prof = get_profile(profile)
    max_d = prof.max_distortions if max_distortions is None else max_distortions
    p0 = prof.pristine_prob if pristine_prob is None else pristine_prob
    groups = distortion_groups(profile, include_extra)
    if not 1 <= max_d <= len(groups):
        raise DistortionInputError(f"max_distortions must lie in 1..{len(groups)} for profile {profile!r}")
    if not 1 <= num_levels <= NUM_LEVELS:
        raise DistortionInputError(f"num_levels must lie in 1..{NUM_LEVELS}")
    sigma = prof.level_sigma if level_sigma is None else level_sigma
    if not sigma > 0:
        raise DistortionInputError(f"level_sigma must be > 0 (math.inf: uniform levels), got {sigma}")
    rng = random.Random(derive_seed(seed, "chain"))
    if rng.random() < p0:
        return ()
    n = rng.randint(1, max_d)
    probs = level_probabilities(num_levels, sigma)
    chain = []
    for group in rng.sample(sorted(groups), n):
        name = rng.choice(groups[group])
        level = rng.choices(range(1, num_levels + 1), weights=probs)[0]
        chain.append(ChainOp(name, float(level)))
    return tuple(chain)


def minmax_stretch(images: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """Stretch each image (all channels together) to [0, 1]; flat images (a span of at most ``FLAT_SPAN``:
    float rounding, such as a grey image's a*/b* noise after a Lab round trip) are left as they are.

    ``inplace=True`` overwrites ``images`` (no full-size allocation).
    """
    lo = images.amin(dim=(1, 2, 3), keepdim=True)  # no flatten: that copies a channels-last batch
    hi = images.amax(dim=(1, 2, 3), keepdim=True)
    span = hi - lo
    flat_image = span <= FLAT_SPAN  # per-sample [B,1,1,1]: decide on the small tensors, one pass over pixels
    offset = torch.where(flat_image, 0.0, lo)
    shifted = images.sub_(offset) if inplace else images - offset
    return shifted.div_(torch.where(flat_image, 1.0, span))


def apply_chains(images: torch.Tensor, chains: Sequence[Sequence[ChainOp]],
                 seeds: torch.Tensor | Sequence[int] | int, profile: str = "kadid",
                 out_dtype: torch.dtype = torch.float32,
                 ) -> tuple[torch.Tensor, list[list[dict[str, Any]]]]:
    """Apply one chain per image; return the images and, per image, the parameters of each step.

    Args:
        images: ``[B,3,H,W]`` float in [0, 1] or uint8, on any device.
        chains: B chains (the empty chain leaves an image pristine).
        seeds: per-image seeds (``[B]``), or one run seed from which image i gets seed (run, i).
        profile: whose level tables (and min-max wrapping) to use.
        out_dtype: ``torch.float32`` (in [0, 1]) or ``torch.uint8`` (rounded to nearest). A uint8 CPU
            batch with uint8 output runs single-step chains through the per-image OpenCV fast path
            (``fastpath.py``) where the distortion has one: within 1/255 of the rounded float path.

    The output of image i depends only on its image, chain, seed and device, never on its batch mates.
    """
    if out_dtype not in (torch.float32, torch.uint8):
        raise DistortionInputError(f"out_dtype must be torch.float32 or torch.uint8, got {out_dtype}")
    x = check_shape(images)
    if out_dtype == torch.uint8 and x.dtype == torch.uint8 and x.device.type == "cpu" \
            and all(len(c) <= 1 for c in chains):
        return _apply_single_uint8(x, chains, seeds, profile)
    out, records = _apply_checked(check_images(x), chains, seeds, profile)
    return (_to_uint8_(out) if out_dtype == torch.uint8 else out), records


def _to_uint8_(images: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] to uint8, rounded to nearest; ``images`` (the caller's own) is overwritten."""
    return images.mul_(255.0).round_().clamp_(0.0, 255.0).to(torch.uint8)


def _draw_step(dist: Distortion, chains: Sequence[Sequence[ChainOp]], pos: int, idx_list: list[int],
               seed_t: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The step seeds and drawn parameters of the samples ``idx_list`` at chain position ``pos``."""
    levels = torch.tensor([chains[i][pos].level for i in idx_list], dtype=torch.float64)
    sample_seeds = seed_t.tolist()  # Python ints once: indexing a tensor per sample is slow
    step_seeds = derive_seeds([sample_seeds[i] for i in idx_list], pos, dist.name)
    return step_seeds, dist.sample(levels, step_seeds)


def _float_step(dist: Distortion, sub: torch.Tensor, params: dict[str, torch.Tensor],
                wrap: bool) -> torch.Tensor:
    """One distortion on a float batch the caller lets it overwrite: min-max wrap, apply, clamp."""
    if wrap:
        sub = minmax_stretch(sub, inplace=True)
    sub = dist.apply(sub, params).clamp_(0.0, 1.0)
    return minmax_stretch(sub, inplace=True) if wrap else sub


def _column(v: torch.Tensor) -> list[Any]:
    """Per-sample Python values of a parameter in one conversion: a number where a sample has one value,
    else a (nested) list."""
    return v.reshape(-1).tolist() if v[0].numel() == 1 else v.tolist()


def _record(records: list[list[dict[str, Any]]], dist: Distortion, chains: Sequence[Sequence[ChainOp]],
            pos: int, idx_list: list[int], step_seeds: torch.Tensor, params: dict[str, torch.Tensor]) -> None:
    columns = {k: _column(v) for k, v in params.items() if k != "level"}
    for j, (i, seed) in enumerate(zip(idx_list, step_seeds.tolist(), strict=True)):
        rec = {"name": dist.name, "group": dist.group, "level": chains[i][pos].level, "seed": seed}
        rec.update({k: col[j] for k, col in columns.items()})
        records[i].append(rec)


#: Images per float-path call in the uint8 fallback: a few megabytes of floats stay in cache and reuse the
#: allocator's memory, about twice as fast on a CPU as one batch-sized pass per operation.
FALLBACK_CHUNK = 4


def _float_fallback_uint8(dist: Distortion, images: np.ndarray, params: dict[str, torch.Tensor], wrap: bool,
                          out: np.ndarray) -> None:
    """The float path for uint8 ``[B,H,W,3]`` images into ``out``, ``FALLBACK_CHUNK`` images at a time
    (outputs never depend on batch mates), rounded to uint8."""
    for start in range(0, images.shape[0], FALLBACK_CHUNK):
        part = slice(start, start + FALLBACK_CHUNK)
        chunk = np.ascontiguousarray(images[part])
        if not chunk.flags.writeable:  # one image of an expanded batch: torch wants writable memory
            chunk = chunk.copy()
        planar = check_images(torch.from_numpy(chunk).permute(0, 3, 1, 2).contiguous())  # the float layout
        chunk_params = params_to({k: v[part] for k, v in params.items()}, "cpu")
        out[part] = _to_uint8_(_float_step(dist, planar, chunk_params, wrap)).permute(0, 2, 3, 1).numpy()


def _uint8_group(dist: Distortion, chains: Sequence[Sequence[ChainOp]], idx_list: list[int],
                 seed_t: torch.Tensor, hwc: np.ndarray, out: np.ndarray, wrap: bool,
                 records: list[list[dict[str, Any]]]) -> None:
    """Draw and record the single-step parameters of the images ``idx_list`` (rising), then apply ``dist``
    to those images of ``hwc`` into the same rows of ``out``, one run of consecutive images at a time:
    each run is read and written in place (no gather or scatter)."""
    step_seeds, params = _draw_step(dist, chains, 0, idx_list, seed_t)
    _record(records, dist, chains, 0, idx_list, step_seeds, params)
    start = 0  # position in the group of the current run's first image
    for end in range(1, len(idx_list) + 1):
        if end < len(idx_list) and idx_list[end] == idx_list[end - 1] + 1:
            continue
        rows = slice(idx_list[start], idx_list[end - 1] + 1)
        part = params if end - start == len(idx_list) else {k: v[start:end] for k, v in params.items()}
        if not apply_uint8_array(dist, hwc[rows], part, wrap, out[rows]):
            _float_fallback_uint8(dist, hwc[rows], part, wrap, out[rows])
        start = end


def _apply_single_uint8(x: torch.Tensor, chains: Sequence[Sequence[ChainOp]],
                        seeds: torch.Tensor | Sequence[int] | int, profile: str,
                        ) -> tuple[torch.Tensor, list[list[dict[str, Any]]]]:
    """Chains of at most one step on a uint8 CPU batch, to uint8: the fast path where there is one, the
    float path (rounded) otherwise; the output is channels-last.

    The batch is handled as NumPy ``[B,H,W,3]`` arrays, one group of images per distortion, each drawn
    then applied. Many small groups of about equal size run side by side on the threads (one group per
    thread at a time), otherwise one group after another, each spreading its images over the threads.
    Draws depend on the seeds only and each image has one group, so the order never matters."""
    if len(chains) != x.shape[0]:
        raise DistortionInputError(f"got {len(chains)} chains for a batch of {x.shape[0]} images")
    prof = get_profile(profile)
    seed_t = as_seed_tensor(seeds, x.shape[0])
    records: list[list[dict[str, Any]]] = [[] for _ in chains]
    hwc = hwc_array(x)
    out = np.empty(hwc.shape, np.uint8)
    by_name: dict[str, list[int]] = {}
    for i, chain in enumerate(chains):
        if chain:
            by_name.setdefault(chain[0].name, []).append(i)
        else:  # pristine: the image as it is
            out[i] = hwc[i]
    jobs = [partial(_uint8_group, get_distortion(name, profile), chains, idx_list, seed_t, hwc, out,
                    prof.minmax_wrap, records) for name, idx_list in by_name.items()]
    largest = max(map(len, by_name.values()), default=0)
    if len(jobs) >= torch.get_num_threads() and largest * len(jobs) <= 2 * len(chains):
        map_jobs(jobs)  # many small groups (a mix): the threads share out the groups
    else:
        for job in jobs:  # few or uneven groups: the threads share out each group's images
            job()
    return torch.from_numpy(out).permute(0, 3, 1, 2), records


def _apply_checked(x: torch.Tensor, chains: Sequence[Sequence[ChainOp]],
                   seeds: torch.Tensor | Sequence[int] | int, profile: str,
                   ) -> tuple[torch.Tensor, list[list[dict[str, Any]]]]:
    """``apply_chains`` on a batch fresh from ``check_images`` (its own tensor, so it is overwritten)."""
    if len(chains) != x.shape[0]:
        raise DistortionInputError(f"got {len(chains)} chains for a batch of {x.shape[0]} images")
    prof = get_profile(profile)
    seed_t = as_seed_tensor(seeds, x.shape[0])
    records: list[list[dict[str, Any]]] = [[] for _ in chains]
    out = x
    depth = max((len(c) for c in chains), default=0)
    for pos in range(depth):
        by_name: dict[str, list[int]] = {}
        for i, chain in enumerate(chains):
            if pos < len(chain):
                by_name.setdefault(chain[pos].name, []).append(i)
        for name, idx_list in by_name.items():
            dist = get_distortion(name, profile)
            idx = upload(torch.tensor(idx_list, dtype=torch.long), out.device)
            step_seeds, params = _draw_step(dist, chains, pos, idx_list, seed_t)
            whole = len(idx_list) == out.shape[0]  # indices rise, so this is the batch in order
            sub = out if whole else out.index_select(0, idx)
            sub = _float_step(dist, sub, params_to(params, out.device), prof.minmax_wrap)
            if whole:
                out = sub.to(out.dtype)
            else:
                out.index_copy_(0, idx, sub.to(out.dtype))
            _record(records, dist, chains, pos, idx_list, step_seeds, params)
    return out, records


def apply_distortion(images: torch.Tensor, name: str, levels: float | Sequence[float] | torch.Tensor,
                     seeds: torch.Tensor | Sequence[int] | int, profile: str = "kadid",
                     out_dtype: torch.dtype = torch.float32,
                     ) -> tuple[torch.Tensor, list[list[dict[str, Any]]]]:
    """Apply one distortion at per-image levels: a chain of length one, with the profile's wrapping
    (``out_dtype`` as in ``apply_chains``: uint8 in and out on the CPU takes the fast path)."""
    x = check_shape(images)
    lv = check_levels(levels, x.shape[0], name)
    canonical = resolve_name(name)
    return apply_chains(x, [(ChainOp(canonical, float(v)),) for v in lv.tolist()], seeds, profile, out_dtype)
