"""The local engine's output is pinned: a small run of each mode on the built-in references must give the
output recorded in ``data/generate_digest.json`` (rewrite it with ``python tests/test_generate_digest.py``
only for an intended change of output).

Bytes are the first check: on one machine a run is byte-identical whatever the batch, workers or shards.
Across CPUs, OpenCV's and PyTorch's kernels dispatch to other SIMD paths (AVX2 against AVX-512), which may
move a rare pixel by one 8-bit step and float32 labels in their last digits; so a file whose bytes differ
must still match its pinned content: images within one 8-bit step on an 8x8 block-mean thumbnail, label
and manifest tables equal in every text column and within 1e-3 (absolute and relative) in numbers."""

import hashlib
import io
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from synthiqa.datasets.generate import GenerateConfig, generate

FIXTURE = Path(__file__).parent / "data" / "generate_digest.json"
#: One small run per mode (built-in references shrunk to 64 px); grid keeps 2 of the 6 references.
RUNS = {
    "grid": dict(profile="kadid", mode="grid", shard=(1, 3)),
    "chains": dict(profile="arniqa", mode="chains", per_image=3, max_chain=3),
    "basic": dict(profile="basic8", mode="basic", per_image=3),
}
#: Label files pinned as tables (the manifest is pinned as a table too).
PINNED = ("labels.csv", "meta_info.csv", "dmos.csv")
#: Tolerances for a file whose bytes differ: 8-bit steps on the thumbnail, and numbers in the tables.
THUMB_STEPS = 1
NUM_TOL = 1e-3


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _thumbnail(data: bytes) -> np.ndarray:
    """8x8 block means of an image, rounded to uint8 (a ragged edge is dropped)."""
    pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float64)
    h, w = (pixels.shape[0] // 8) * 8, (pixels.shape[1] // 8) * 8
    blocks = pixels[:h, :w].reshape(h // 8, 8, w // 8, 8, 3).mean(axis=(1, 3))
    return np.rint(blocks).astype(np.uint8)


def _table(frame: pd.DataFrame) -> dict:
    return {"columns": list(frame.columns), "rows": json.loads(frame.to_json(orient="values"))}


def run_digest(root: Path, mode: str, **overrides) -> dict:
    """Generate ``RUNS[mode]`` into ``root`` and return what the fixture pins of its outputs."""
    cfg = GenerateConfig(out=str(root), max_side=64, seed=3, batch_size=8, workers=2, device="cpu",
                         **{**RUNS[mode], **overrides})
    generate(cfg)
    images = {p.relative_to(root).as_posix(): p.read_bytes()
              for sub in ("images", "references") for p in sorted((root / sub).glob("*"))}
    tables = {name: _table(pd.read_csv(root / name)) for name in PINNED if (root / name).is_file()}
    tables["manifest"] = _table(pd.read_parquet(root / "manifest.parquet"))
    return {"files": {name: _sha(data) for name, data in images.items()},
            "thumbnails": {name: {"shape": list(t.shape), "hex": t.tobytes().hex()}
                           for name, data in images.items() for t in [_thumbnail(data)]},
            "tables": tables}


def _same_table(got: dict, want: dict) -> bool:
    if got["columns"] != want["columns"] or len(got["rows"]) != len(want["rows"]):
        return False
    g = pd.DataFrame(got["rows"], columns=got["columns"])
    w = pd.DataFrame(want["rows"], columns=want["columns"])
    for column in w.columns:
        a, b = g[column], w[column]
        numeric = pd.api.types.is_numeric_dtype(b) and pd.api.types.is_numeric_dtype(a)
        if numeric and not np.allclose(a.to_numpy(float), b.to_numpy(float), rtol=NUM_TOL, atol=NUM_TOL,
                                       equal_nan=True):
            return False
        if not numeric and not a.astype(str).equals(b.astype(str)):
            return False
    return True


def _compare(got: dict, want: dict) -> None:
    assert sorted(got["files"]) == sorted(want["files"])
    for name, sha in want["files"].items():
        if got["files"][name] == sha:
            continue
        g, w = got["thumbnails"][name], want["thumbnails"][name]
        assert g["shape"] == w["shape"], name
        steps = np.abs(np.frombuffer(bytes.fromhex(g["hex"]), np.uint8).astype(int)
                       - np.frombuffer(bytes.fromhex(w["hex"]), np.uint8).astype(int))
        assert steps.max() <= THUMB_STEPS, f"{name}: {steps.max()} 8-bit steps from the pinned image"
    assert sorted(got["tables"]) == sorted(want["tables"])
    for name, table in want["tables"].items():
        if got["tables"][name] != table:
            assert _same_table(got["tables"][name], table), f"{name} differs from the pinned table"


@pytest.mark.parametrize("mode", sorted(RUNS))
def test_local_engine_reproduces_the_pinned_run(tmp_path, mode):
    want = json.loads(FIXTURE.read_text())[mode]
    _compare(run_digest(tmp_path / mode, mode), want)


def test_the_comparison_catches_a_changed_image_and_label():
    pinned = {"files": {"a.png": "x"}, "thumbnails": {"a.png": {"shape": [1, 1, 3], "hex": "101010"}},
              "tables": {"labels.csv": {"columns": ["mos"], "rows": [[50.0]]}}}
    near = {"files": {"a.png": "z"}, "thumbnails": {"a.png": {"shape": [1, 1, 3], "hex": "111010"}},
            "tables": {"labels.csv": {"columns": ["mos"], "rows": [[50.00001]]}}}
    _compare(near, pinned)
    far_image = {**near, "thumbnails": {"a.png": {"shape": [1, 1, 3], "hex": "131010"}}}
    with pytest.raises(AssertionError):
        _compare(far_image, pinned)
    far_label = {**near, "tables": {"labels.csv": {"columns": ["mos"], "rows": [[50.1]]}}}
    with pytest.raises(AssertionError):
        _compare(far_label, pinned)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        digests = {mode: run_digest(Path(tmp) / mode, mode) for mode in sorted(RUNS)}
    FIXTURE.write_text(json.dumps(digests, sort_keys=True) + "\n")
    print(f"wrote {FIXTURE}", file=sys.stderr)
