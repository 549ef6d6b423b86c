"""The ``basic8`` profile: the eight basic types of the CENIQA distorted-dataset guide, as data.

The guide's eight types map onto registered distortions, which receive a ``basic8`` level table here:
Gaussian blur, motion blur, Gaussian noise (``white_noise``), JPEG, colour saturation
(``color_saturation_hsv``, saturation falling to grey), contrast (``nonlinear_contrast_change``, a linear
squeeze towards mid-grey), brightness (``darken``, the mid-tone darkening curve) and pixelation.
A guide severity s in [0.2, 1.0] is level 5 s (0.2 -> 1, 1.0 -> 5); fractional levels interpolate the
tables linearly. ``severity_quality`` turns a (type, severity) into the guide's 0-100 quality label.
"""

from __future__ import annotations

# the modules defining the eight distortions given ``basic8`` tables below
from synthiqa.distortions import blur, brightness, color, compression, noise, sharpness, spatial  # noqa: F401
from synthiqa.distortions.base import NUM_LEVELS, LevelTable
from synthiqa.distortions.registry import Profile, add_level_table, register_profile, resolve_name
from synthiqa.errors import DistortionInputError

MIN_SEVERITY = 0.2
MAX_SEVERITY = 1.0

#: The guide's order, each with its ``basic8`` table (level 1..5 = severity 0.2, 0.4, 0.6, 0.8, 1.0).
BASIC8_TABLES: dict[str, LevelTable] = {
    # Gaussian sigma in px
    "gaussian_blur": LevelTable({"sigma": (0.8, 1.5, 2.5, 3.5, 5.0)}),
    # line length in px (angle drawn per image)
    "motion_blur": LevelTable({"length": (2, 4, 6, 8, 10)}),
    # additive Gaussian noise variance on [0, 1] RGB (sigma 0.045 .. 0.19)
    "white_noise": LevelTable({"variance": (0.002, 0.005, 0.01, 0.02, 0.035)}),
    # libjpeg quality
    "jpeg": LevelTable({"quality": (50, 30, 18, 10, 5)}),
    # HSV saturation factor, down to grey
    "color_saturation_hsv": LevelTable({"factor": (0.8, 0.6, 0.4, 0.2, 0.0)}),
    # output half-range around 0.5 (0.5 would be the identity): contrast x 0.8 .. x 0.2
    "nonlinear_contrast_change": LevelTable({"half_range": (0.4, 0.325, 0.25, 0.175, 0.1)}),
    # darkening curve x - 2a x (1 - x): mid-grey 0.5 becomes 0.46 .. 0.30
    "darken": LevelTable({"amount": (0.08, 0.16, 0.24, 0.32, 0.4)}),
    # pixelate strength s: scale 0.95 - s^0.6 = 0.67, 0.40, 0.29, 0.20, 0.13 (blocks ~1.5, 2.5, 3.5, 5, 8 px)
    "pixelate": LevelTable({"strength": (0.12, 0.37, 0.5, 0.62, 0.73)}),
}

#: The guide's quality at severity 1.0 per type (its range is floor..100; pristine is 100).
QUALITY_FLOORS: dict[str, float] = {
    "gaussian_blur": 40.0, "motion_blur": 35.0, "white_noise": 30.0, "jpeg": 20.0,
    "color_saturation_hsv": 50.0, "nonlinear_contrast_change": 50.0, "darken": 55.0, "pixelate": 35.0,
}

#: Reference curve (severity, quality) through the guide's bands: mild 0.2-0.4 -> 100-70,
#: medium 0.5-0.7 -> 70-50, severe 0.8-1.0 -> 50-20; piecewise linear between the knots.
REFERENCE_CURVE: tuple[tuple[float, float], ...] = (
    (0.0, 100.0), (0.2, 96.0), (0.4, 72.0), (0.5, 68.0), (0.7, 52.0), (0.8, 48.0), (1.0, 20.0),
)
#: Quality a type keeps above its floor per unit of remaining severity (slope of the floor-bound tail).
TAIL_SLOPE = 20.0


def severity_to_level(severity: float) -> float:
    """Guide severity in [0.2, 1.0] -> engine level in [1, 5] (level = 5 x severity)."""
    s = float(severity)
    if not MIN_SEVERITY - 1e-9 <= s <= MAX_SEVERITY + 1e-9:
        raise DistortionInputError(f"severity {s:g} is outside [{MIN_SEVERITY}, {MAX_SEVERITY}]")
    return min(max(NUM_LEVELS * s, 1.0), float(NUM_LEVELS))


def level_to_severity(level: float) -> float:
    """Engine level in [1, 5] -> guide severity in [0.2, 1.0] (severity = level / 5)."""
    lv = float(level)
    if not 1 - 1e-9 <= lv <= NUM_LEVELS + 1e-9:
        raise DistortionInputError(f"level {lv:g} is outside [1, {NUM_LEVELS}]")
    return lv / NUM_LEVELS


def _reference_quality(severity: float) -> float:
    for (s0, q0), (s1, q1) in zip(REFERENCE_CURVE, REFERENCE_CURVE[1:], strict=False):
        if severity <= s1:
            return q0 + (q1 - q0) * (severity - s0) / (s1 - s0)
    return REFERENCE_CURVE[-1][1]


def severity_quality(name: str, severity: float) -> float:
    """Quality label in [0, 100] of a ``basic8`` type at a severity in [0, 1] (0 = pristine = 100).

    Rule: ``q(s) = max(R(s), floor + 20 (1 - s))``, where ``R`` is the piecewise-linear reference curve
    through (0, 100), (0.2, 96), (0.4, 72), (0.5, 68), (0.7, 52), (0.8, 48), (1.0, 20), which lies in the
    guide's bands (mild 0.2-0.4 -> 70-100, medium 0.5-0.7 -> 50-70, severe 0.8-1.0 -> 20-50), and
    ``floor`` is the type's guide minimum (blur 40, motion blur 35, noise 30, JPEG 20, saturation 50,
    contrast 50, brightness 55, pixelation 35). Both terms fall strictly with s, so q does; q(1) is
    exactly the floor; and q equals the band curve wherever the type's range allows, leaving it only
    where the band lies below what the floor permits (e.g. brightness at severity 0.8 gets 59, not <= 50).
    Accepts ARNIQA aliases; raises ``DistortionInputError`` for a non-basic8 type or a severity outside
    [0, 1].
    """
    canonical = resolve_name(name)
    if canonical not in QUALITY_FLOORS:
        raise DistortionInputError(
            f"{name!r} is not a basic8 type; choose one of: {', '.join(QUALITY_FLOORS)}")
    s = float(severity)
    if not 0.0 <= s <= 1.0:
        raise DistortionInputError(f"severity {s:g} is outside [0, 1]")
    return max(_reference_quality(s), QUALITY_FLOORS[canonical] + TAIL_SLOPE * (1.0 - s))


def step_quality(name: str, level: float) -> float:
    """The ``basic8`` label of one step at a level in [1, 5]: ``severity_quality(name, level / 5)``."""
    return float(severity_quality(name, level / NUM_LEVELS))


BASIC8 = register_profile(Profile(
    name="basic8",
    description="the eight basic types of the CENIQA distorted-dataset guide, severity 0.2-1.0 = level 1-5",
    members=tuple(BASIC8_TABLES),  # the guide's order
    step_quality=step_quality,
))
for _name, _table in BASIC8_TABLES.items():
    add_level_table(_name, "basic8", _table)
