"""``synthiqa generate``: a labelled, reproducible distorted dataset from a folder of reference photographs.

Generation is plan -> run -> write, one concept per module:

- ``config``: the options (``GenerateConfig``) and what defines a dataset (resume and merge compare it);
- ``sources``: the references (built-ins or a scanned folder) and their provenance;
- ``modes``: a registry of modes (grid, chains, basic; ``register_mode``): reference + options -> jobs;
- ``plan``: pure: references + options -> fixed chunks and tasks;
- ``chunk``: the step every engine runs: decode, distort + label one chunk, hand it to the output;
- ``engines``: ``local`` (worker processes on the CPU, one threaded process on an accelerator) and
  ``ray`` (Ray Data ``map_batches`` with one chunk runner per actor);
- ``output`` and ``shards``: the folder, temporaries, image files or WebDataset shards, the final files
  rebuilt from the chunk records on disk; ``merge``: shard runs into one folder; ``encoding``: the image
  bytes; ``progress``: the progress bar, warnings and Ctrl-C.

An image depends only on its reference, chain and seed, so the output does not depend on the engine,
the worker count, ``--shard`` runs merged afterwards or an interruption finished with ``--resume``.
"""

from synthiqa.datasets.generation.config import (
    BUILTIN_MAX_SIDE,
    CONTAINERS,
    DEFAULT_PER_IMAGE,
    DEFAULT_SHARD_SIZE,
    ENGINES,
    IDENTITY_KEYS,
    IMAGE_FORMATS,
    GenerateConfig,
    parse_shard,
)
from synthiqa.datasets.generation.encoding import ENCODE_SETTINGS, encode_image, encode_params
from synthiqa.datasets.generation.merge import merge
from synthiqa.datasets.generation.modes import Job, Mode, get_mode, list_modes, register_mode
from synthiqa.datasets.generation.plan import RefPlan, Task, WorkItem, plan_jobs, split_units
from synthiqa.datasets.generation.run import GenerateSummary, generate

__all__ = [
    "BUILTIN_MAX_SIDE", "CONTAINERS", "DEFAULT_PER_IMAGE", "DEFAULT_SHARD_SIZE", "ENCODE_SETTINGS", "ENGINES",
    "IDENTITY_KEYS", "IMAGE_FORMATS", "GenerateConfig", "GenerateSummary", "Job", "Mode", "RefPlan", "Task",
    "WorkItem", "encode_image", "encode_params", "generate", "get_mode", "list_modes", "merge", "parse_shard",
    "plan_jobs", "register_mode", "split_units",
]
