"""The built-in profiles. A profile is data: which distortions, which tables, which chain rules."""

from synthiqa.distortions.registry import Profile, register_profile

KADID = register_profile(Profile(
    name="kadid",
    description="KADID-10k: the 25 MATLAB distortions with their values, level orders and quirks",
    minmax_wrap=True,
))
ARNIQA = register_profile(Profile(
    name="arniqa",
    description="ARNIQA's 24 distortions, values and level order (its degradation model)",
))
BASIC8 = register_profile(Profile(
    name="basic8",
    description="the eight basic types of the CENIQA distorted-dataset guide, severity 0.2-1.0 = level 1-5",
    members=("gaussian_blur", "motion_blur", "white_noise", "jpeg", "color_saturation_hsv",
             "nonlinear_contrast_change", "darken", "pixelate"),  # the guide's order; tables in basic8.py
))
