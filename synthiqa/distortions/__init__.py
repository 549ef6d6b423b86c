"""The distortion engine: KADID-10k's 25 types, ARNIQA's 24, the eight basic types, and ordered chains.

Batched on any torch device with per-sample parameters; every random draw comes from a per-sample seed
and is returned, so any output can be replayed.
"""

from synthiqa.distortions.base import (
    ANY_PROFILE,
    EXTRA_GROUP,
    GROUPS,
    Distortion,
    LevelTable,
    check_images,
    interpolate_levels,
)
from synthiqa.distortions.chains import (
    Chain,
    ChainOp,
    apply_chains,
    apply_distortion,
    format_chain,
    level_probabilities,
    parse_chain,
    sample_chain,
)
from synthiqa.distortions.module import RandomDegradation
from synthiqa.distortions.registry import (
    Profile,
    add_level_table,
    distortion_groups,
    get_distortion,
    get_profile,
    list_distortions,
    list_profiles,
    register_distortion,
    register_profile,
    resolve_name,
    unregister_distortion,
)
from synthiqa.distortions.rng import SampleRNG, derive_seed, normal_field, uniform_field

__all__ = [
    "ANY_PROFILE", "EXTRA_GROUP", "GROUPS", "Chain", "ChainOp", "Distortion", "LevelTable", "Profile",
    "RandomDegradation", "SampleRNG", "add_level_table", "apply_chains", "apply_distortion", "check_images",
    "derive_seed",
    "distortion_groups", "format_chain", "get_distortion", "get_profile", "interpolate_levels",
    "level_probabilities", "list_distortions", "list_profiles", "normal_field", "parse_chain",
    "register_distortion", "register_profile", "resolve_name", "sample_chain", "uniform_field",
    "unregister_distortion",
]
