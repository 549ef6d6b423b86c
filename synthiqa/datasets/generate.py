"""``synthiqa.datasets.generate``: the public names of ``synthiqa.datasets.generation`` at their first home
(``from synthiqa.datasets.generate import GenerateConfig, generate, merge``)."""

from synthiqa.datasets.generation import *  # noqa: F403
from synthiqa.datasets.generation import __all__  # noqa: F401
