"""Generation modes: a registry (``register_mode``) of planning functions, each (reference name, output
stem, options) -> the reference's jobs, a pure function of its arguments:

- ``grid``: every type of the profile at levels 1..5, named like KADID-10k: ``I{ref}_{type}_{level}.png``
  (type = KADID id under ``kadid``, else the 1-based position in the profile's list); the references are
  numbered ``I01, I02, ...`` in scan order and also copied into ``images/`` as KADID-10k does.
- ``chains``: ``per_image`` chains per reference by ARNIQA's rules (``sample_chain``), ``{ref}__{i:04d}``.
- ``basic``: the CENIQA guide's recipe: image 0 is the pristine copy, images 1..N one distortion each;
  types cycle through a per-reference seeded permutation of the profile's types (balanced), severity is
  uniform in [0.2, 1.0] (3 decimals) and level = 5 * severity.

Image i of reference r has seed ``derive_seed(run seed, r, i)``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from synthiqa.distortions.chains import Chain, ChainOp, sample_chain
from synthiqa.distortions.registry import get_distortion, list_distortions
from synthiqa.distortions.rng import derive_seed
from synthiqa.errors import ConfigError

SEVERITY_RANGE = (0.2, 1.0)


@dataclass(frozen=True)
class Job:
    """One output image: its reference, index, file name, chain, per-image seed and severity."""

    ref: str
    index: int
    file: str
    chain: Chain
    seed: int
    severity: float | None = None


class ModeOptions(Protocol):
    """The options a mode reads (``GenerateConfig`` has them): profile, run seed, image format (file
    suffix), images per reference and the longest chain."""

    profile: str
    seed: int
    image_format: str
    per_image: int
    max_chain: int


@dataclass(frozen=True)
class Mode:
    """A generation mode: its planning function and what it uses.

    Attributes:
        name: the ``--mode`` value.
        plan: (reference name, stem, resolved config) -> the reference's jobs.
        count: resolved config -> images per reference.
        uses_per_image: takes ``--per-image``.
        uses_max_chain: takes ``--max-chain``.
        kadid_layout: references numbered ``I01, I02, ...`` and copied into ``images/``; ``dmos.csv``.
    """

    name: str
    plan: Callable[[str, str, ModeOptions], tuple[Job, ...]]
    count: Callable[[ModeOptions], int]
    uses_per_image: bool = True
    uses_max_chain: bool = False
    kadid_layout: bool = False


_MODES: dict[str, Mode] = {}


def register_mode(mode: Mode) -> Mode:
    """Add a mode to the registry (``--mode NAME``)."""
    _MODES[mode.name] = mode
    return mode


def get_mode(name: str) -> Mode:
    if name not in _MODES:
        raise ConfigError(f"--mode {name!r}: choose one of {', '.join(_MODES)}")
    return _MODES[name]


def list_modes() -> tuple[str, ...]:
    return tuple(_MODES)


def _type_number(name: str, position: int, profile: str) -> int:
    kadid_id = get_distortion(name, profile).kadid_id
    return kadid_id if profile == "kadid" and kadid_id is not None else position


def _plan_grid(ref_name: str, stem: str, cfg: ModeOptions) -> tuple[Job, ...]:
    jobs = []
    for pos, name in enumerate(list_distortions(cfg.profile), start=1):
        t = _type_number(name, pos, cfg.profile)
        for level in range(1, 6):
            index = (pos - 1) * 5 + level - 1
            jobs.append(Job(ref_name, index, f"{stem}_{t:02d}_{level:02d}.{cfg.image_format}",
                            (ChainOp(name, float(level)),), derive_seed(cfg.seed, ref_name, index)))
    return tuple(jobs)


def _plan_chains(ref_name: str, stem: str, cfg: ModeOptions) -> tuple[Job, ...]:
    jobs = []
    for i in range(cfg.per_image):
        seed = derive_seed(cfg.seed, ref_name, i)
        chain = sample_chain(seed, cfg.profile, max_distortions=cfg.max_chain)
        jobs.append(Job(ref_name, i, f"{stem}__{i:04d}.{cfg.image_format}", chain, seed))
    return tuple(jobs)


def _plan_basic(ref_name: str, stem: str, cfg: ModeOptions) -> tuple[Job, ...]:
    ext = cfg.image_format
    order = list(list_distortions(cfg.profile))
    random.Random(derive_seed(cfg.seed, ref_name, "types")).shuffle(order)
    jobs = [Job(ref_name, 0, f"{stem}__0000.{ext}", (), derive_seed(cfg.seed, ref_name, 0), 0.0)]
    for i in range(1, cfg.per_image + 1):
        seed = derive_seed(cfg.seed, ref_name, i)
        severity = round(random.Random(derive_seed(seed, "severity")).uniform(*SEVERITY_RANGE), 3)
        chain = (ChainOp(order[(i - 1) % len(order)], round(5.0 * severity, 6)),)
        jobs.append(Job(ref_name, i, f"{stem}__{i:04d}.{ext}", chain, seed, severity))
    return tuple(jobs)


register_mode(Mode("grid", _plan_grid, lambda cfg: 5 * len(list_distortions(cfg.profile)),
                   uses_per_image=False, kadid_layout=True))
register_mode(Mode("chains", _plan_chains, lambda cfg: cfg.per_image, uses_max_chain=True))
register_mode(Mode("basic", _plan_basic, lambda cfg: cfg.per_image + 1))
