"""The local engine's output is pinned: a small run of each mode on the built-in references must give the
bytes recorded in ``data/generate_digest.json`` (made before generation became a package; rewrite it
with ``python tests/test_generate_digest.py`` only for an intended change of output)."""

import hashlib
import json
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from synthiqa.datasets.generate import GenerateConfig, generate

FIXTURE = Path(__file__).parent / "data" / "generate_digest.json"
#: One small run per mode (built-in references shrunk to 64 px); grid keeps 2 of the 6 references.
RUNS = {
    "grid": dict(profile="kadid", mode="grid", shard=(1, 3)),
    "chains": dict(profile="arniqa", mode="chains", per_image=3, max_chain=3),
    "basic": dict(profile="basic8", mode="basic", per_image=3),
}
#: Files that must stay byte-identical (the manifest is compared as a table).
PINNED = ("labels.csv", "meta_info.csv", "dmos.csv")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def run_digest(root: Path, mode: str, **overrides) -> dict:
    """Generate ``RUNS[mode]`` into ``root`` and return the digest of its outputs."""
    cfg = GenerateConfig(out=str(root), max_side=64, seed=3, batch_size=8, workers=2, device="cpu",
                         **{**RUNS[mode], **overrides})
    generate(cfg)
    files = {p.relative_to(root).as_posix(): _sha(p.read_bytes())
             for sub in ("images", "references") for p in sorted((root / sub).glob("*"))}
    files.update({name: _sha((root / name).read_bytes()) for name in PINNED if (root / name).is_file()})
    frame = pd.read_parquet(root / "manifest.parquet")
    return {"files": files, "manifest_columns": list(frame.columns), "manifest_rows": len(frame),
            "manifest_csv_sha256": _sha(frame.to_csv(index=False, lineterminator="\n").encode())}


def _compare(got: dict, want: dict) -> None:
    assert got["files"] == want["files"]
    assert got["manifest_rows"] == want["manifest_rows"]
    frame_cols = want["manifest_columns"]
    assert [c for c in got["manifest_columns"] if c in frame_cols] == frame_cols


@pytest.mark.parametrize("mode", sorted(RUNS))
def test_local_engine_reproduces_the_pinned_run(tmp_path, mode):
    want = json.loads(FIXTURE.read_text())[mode]
    got = run_digest(tmp_path / mode, mode)
    _compare(got, want)
    frame = pd.read_parquet(tmp_path / mode / "manifest.parquet")[want["manifest_columns"]]
    assert _sha(frame.to_csv(index=False, lineterminator="\n").encode()) == want["manifest_csv_sha256"]


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        digests = {mode: run_digest(Path(tmp) / mode, mode) for mode in sorted(RUNS)}
    FIXTURE.write_text(json.dumps(digests, indent=1, sort_keys=True) + "\n")
    print(f"wrote {FIXTURE}", file=sys.stderr)
