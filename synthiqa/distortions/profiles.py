"""The built-in profiles. A profile is data: which distortions, which tables, which chain rules.
``basic8`` is defined with its tables and label law in ``basic8.py``."""

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
