"""Batch order and crops must not depend on the process's string-hash seed (PYTHONHASHSEED)."""

import os
import subprocess
import sys

SCRIPT = """
from synthiqa.models.data import SceneBatchSampler, SceneSampler
s = SceneBatchSampler([0, 0, 1, 1, 2, 2, 3, 3, 4, 4], batch_size=4, per_scene=2, seed=3)
s.set_epoch(2)
print(list(iter(s)))
print(SceneSampler.__name__)
"""


def _run(hash_seed: str) -> str:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    return subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                          check=True).stdout


def test_scene_batches_do_not_depend_on_the_string_hash_seed():
    assert _run("1") == _run("2")
