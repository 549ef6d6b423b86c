"""The distortions and profiles: two ``synthiqa.registry.Registry`` instances, in timm's style (a decorator
registers, a factory builds). Built-ins are the modules of this package, imported on the first lookup."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

from synthiqa.distortions.base import ANY_PROFILE, EXTRA_GROUP, GROUPS, Distortion, LevelTable
from synthiqa.errors import DistortionInputError
from synthiqa.registry import Registry

#: Every registered ``Distortion`` subclass by name (and alias); built-ins: this package's modules.
DISTORTIONS: Registry[type[Distortion]] = Registry("distortion", "synthiqa.distortions", DistortionInputError)
_EXTRA_TABLES: dict[tuple[str, str], LevelTable] = {}


@dataclass(frozen=True)
class Profile:
    """A named set of distortions with its own level tables and chain rules (data, not code).

    Attributes:
        name: profile name.
        description: one line.
        minmax_wrap: stretch each image to [0, 1] before and after every distortion (KADID's MATLAB).
        max_distortions: default maximum chain length when sampling chains (ARNIQA: 4).
        pristine_prob: probability that a sampled chain is empty (ARNIQA: 0.05).
        level_sigma: half-Gaussian width of the level probabilities P(i) ~ exp(-i^2 / (2 sigma^2)).
        members: explicit member list; empty means every distortion with a table for this profile.
        step_quality: ``step_quality(name, level) -> quality`` (0..100, level in [1, 5]) where the profile
            defines its own label law (``basic8``: the guide's ranges); None for the generic level law of
            ``synthiqa.datasets.labels``.
    """

    name: str
    description: str = ""
    minmax_wrap: bool = False
    max_distortions: int = 4
    pristine_prob: float = 0.05
    level_sigma: float = 2.5
    members: tuple[str, ...] = field(default_factory=tuple)
    step_quality: Callable[[str, float], float] | None = None


#: Every registered profile by name; the built-ins are in ``profiles.py``.
PROFILES: Registry[Profile] = Registry("profile", "synthiqa.distortions", DistortionInputError)


def register_profile(profile: Profile) -> Profile:
    """Register (or replace) a profile."""
    return PROFILES.register(profile.name, profile)


def get_profile(name: str) -> Profile:
    """The profile called ``name``; a one-line error for an unknown one."""
    return PROFILES.get(name)


def list_profiles() -> list[str]:
    return PROFILES.list()


def register_distortion(cls: type[Distortion]) -> type[Distortion]:
    """Class decorator: make a ``Distortion`` subclass available by name to chains, generate and grid."""
    for attr in ("name", "group"):
        if not getattr(cls, attr, None):
            raise TypeError(f"{cls.__name__} must set the class attribute {attr!r}")
    if cls.group not in GROUPS and cls.group != EXTRA_GROUP:
        raise TypeError(f"{cls.__name__}.group must be one of {GROUPS + (EXTRA_GROUP,)}, got {cls.group!r}")
    return DISTORTIONS.register(cls.name, cls, aliases=cls.aliases)


def unregister_distortion(name: str) -> None:
    """Remove a registered distortion (and its aliases and added tables); for plugins and tests."""
    cls = DISTORTIONS.unregister(name)
    for key in [k for k in _EXTRA_TABLES if k[0] == cls.name]:
        del _EXTRA_TABLES[key]


def add_level_table(name: str, profile: str, table: LevelTable) -> None:
    """Give an existing distortion a level table for another profile without touching its code."""
    _EXTRA_TABLES[(resolve_name(name), profile)] = table
    _instance.cache_clear()


def resolve_name(name: str) -> str:
    """Canonical name for a registered name or alias; a one-line error with suggestions otherwise."""
    return DISTORTIONS.resolve(name)


def _table_for(name: str, profile: str) -> LevelTable | None:
    cls = DISTORTIONS.get(name)
    if (name, profile) in _EXTRA_TABLES:
        return _EXTRA_TABLES[(name, profile)]
    if profile in cls.tables:
        return cls.tables[profile]
    return cls.tables.get(ANY_PROFILE)


@cache
def _instance(name: str, profile: str) -> Distortion:
    table = _table_for(name, profile)
    if table is None:
        raise DistortionInputError(f"distortion {name!r} has no level table for profile {profile!r}")
    return DISTORTIONS.get(name)(profile, table)


def get_distortion(name: str, profile: str = "kadid") -> Distortion:
    """The distortion ``name`` configured with ``profile``'s level table."""
    get_profile(profile)
    return _instance(resolve_name(name), profile)


def _order_key(name: str) -> tuple[int, int, str]:
    cls = DISTORTIONS.get(name)
    return (cls.group == EXTRA_GROUP, cls.kadid_id if cls.kadid_id is not None else 99, name)


def list_distortions(profile: str = "kadid", include_extra: bool = False) -> list[str]:
    """Names of the profile's distortions in KADID order, then the ``extra`` group if asked for."""
    prof = get_profile(profile)
    if prof.members:
        names = [resolve_name(n) for n in prof.members]
    else:
        names = sorted(
            (n for n, c in DISTORTIONS.items()
             if c.group != EXTRA_GROUP and (profile in c.tables or (n, profile) in _EXTRA_TABLES)),
            key=_order_key,
        )
    if include_extra:
        names += sorted((n for n, c in DISTORTIONS.items() if c.group == EXTRA_GROUP), key=_order_key)
    return names


def distortion_groups(profile: str = "kadid", include_extra: bool = False) -> dict[str, list[str]]:
    """Group name -> member names, for the profile, in ``GROUPS`` order."""
    groups: dict[str, list[str]] = {}
    for name in list_distortions(profile, include_extra):
        groups.setdefault(DISTORTIONS.get(name).group, []).append(name)
    order = {g: i for i, g in enumerate(GROUPS + (EXTRA_GROUP,))}
    return dict(sorted(groups.items(), key=lambda kv: order[kv[0]]))


DISTORTIONS.on_change(_instance.cache_clear)
PROFILES.on_change(_instance.cache_clear)
