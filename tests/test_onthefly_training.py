"""Every method trains on the fly (``synthiqa train --method M --on-the-fly REF_DIR``) through
DegradedReferences; ARNIQA's pairs are two different references degraded equally, with half-scale views."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from synthiqa.cli import app

SETS = {
    "ceniqa": ["--set", "image_size=64", "--set", "feature_dim=16", "--n_clusters", "2", "--set",
               "patch_dim=8", "--batch_size", "8", "--set", "test_crops=1", "--set", "patches_per_image=1",
               "--pretrain_epochs", "1", "--epochs", "1", "--train_samples", "16", "--val_samples", "16",
               "--distortions_per_image", "3"],
    "arniqa": ["--epochs", "1", "--set", "steps_per_epoch=2", "--batch_size", "2", "--set", "crop_size=32",
               "--val_samples", "8", "--set", "n_splits=3"],
    "trcnn": ["--epochs", "1", "--set", "image_size=48", "--batch_size", "8", "--set", "d_model=32",
              "--set", "heads=2", "--set", "layers=1", "--set", "test_crops=1", "--train_samples", "16",
              "--val_samples", "12", "--set", "scene_sampling=false"],
    "sind": ["--epochs", "1", "--set", "image_size=48", "--set", "d_model=32", "--set", "heads=2",
             "--set", "layers=1", "--set", "test_crops=1", "--set", "scenes_per_batch=2", "--set",
             "images_per_scene=3", "--train_samples", "12", "--val_samples", "12"],
}


@pytest.mark.parametrize("method", list(SETS))
def test_every_method_trains_on_the_fly(refs, tmp_path, method, one_thread):
    out = tmp_path / method
    res = CliRunner().invoke(app, ["train", "--method", method, "--on-the-fly", str(refs), "--out", str(out),
                                   "--device", "cpu", "--quiet", *SETS[method]])
    assert res.exit_code == 0, res.output
    state = torch.load(out / "best.pt", weights_only=True)
    assert state["method"] == method
    report = json.loads((out / "run.json").read_text())
    assert "on the fly from" in report["data"] and report["test"]["n"] > 0
    assert np.isfinite(report["test"]["srcc"]) or report["test"]["n"] < 3


def test_arniqa_pairs_follow_the_paper_scheme(refs):
    from synthiqa.models.arniqa.method import PAIR_VIEWS, ARNIQAConfig, pair_source

    config = ARNIQAConfig(crop_size=32, batch_size=3, steps_per_epoch=2, pristine_prob=0.0)
    pairs = pair_source(sorted(refs.glob("*.png")), config, "cpu")
    batch = pairs.batch(0, 1)
    assert batch["image"].shape == (3 * PAIR_VIEWS, 3, 32, 32) and len(pairs) == 2
    for g in range(0, 3 * PAIR_VIEWS, PAIR_VIEWS):
        a_full, a_half, b_full, b_half = batch["scene"][g:g + PAIR_VIEWS].tolist()
        assert a_full == a_half != b_full == b_half  # two different references
        steps = [p["steps"] for p in batch["params"][g:g + PAIR_VIEWS]]
        assert steps[0] and all(s == steps[0] for s in steps)  # one chain, the same parameters
