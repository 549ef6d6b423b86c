"""Reports: every figure of a tiny results folder is rendered and embedded in one offline HTML file."""

import base64
import json
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter
from sklearn.base import BaseEstimator

from synthiqa.benchmarks.suite import Suite, run_suite
from synthiqa.cli import main
from synthiqa.models.registry import register_model
from synthiqa.reports.figures import plot_step_losses, plot_training_curves
from synthiqa.reports.html import build_report


@register_model("test_report_mixture")
class _MixtureModel(BaseEstimator):
    """A trainable stand-in with a training log, embeddings and its own clusters (one per level)."""

    name = "test_report_mixture"
    needs_reference = False
    trainable = True

    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, train, val=None):
        self.training_log_ = [{"epoch": e, "phase": "pretrain" if e < 2 else "finetune",
                               "loss_total": 1 / e, "val_srcc": 0.5 + 0.1 * e, "val_active_clusters": 3}
                              for e in range(1, 4)]
        return self

    def predict(self, records):
        return np.array([-r.level + 0.01 * i for i, r in enumerate(records)])

    def embed(self, records):
        rng = np.random.default_rng(self.seed)
        noise = rng.normal(0, 0.1, (len(records), 2))
        return np.array([[r.level, len(r.dist_type)] for r in records]) + noise

    def clusters(self, records):
        return np.array([int(r.level) for r in records])


def _texture(seed, size=64):
    rng = np.random.default_rng(seed)
    img = gaussian_filter(rng.uniform(0, 255, (size, size, 3)), sigma=(2, 2, 0)) * 3 - 255
    return np.clip(img, 0, 255).astype(np.uint8)


def make_set(root):
    rows = []
    for r in range(4):
        ref = _texture(r)
        (root / "references").mkdir(parents=True, exist_ok=True)
        Image.fromarray(ref).save(root / "references" / f"r{r}.png")
        for kind in ("white_noise", "gaussian_blur"):
            for lv in (1, 2, 3):
                x = ref.astype(float)
                if kind == "white_noise":
                    x = x + np.random.default_rng(r * 7 + lv).normal(0, 8 * lv, x.shape)
                else:
                    x = gaussian_filter(x, (lv, lv, 0))
                rel = f"images/r{r}_{kind}_{lv}.png"
                (root / "images").mkdir(exist_ok=True)
                Image.fromarray(np.clip(x, 0, 255).astype(np.uint8)).save(root / rel)
                rows.append({"image": rel, "reference": f"references/r{r}.png", "scene": f"r{r}",
                             "dist_type": kind, "dist_group": kind.split("_")[-1], "level": float(lv),
                             "q": 100.0 - 25 * lv})
    pd.DataFrame(rows).to_parquet(root / "manifest.parquet", index=False)
    (root / "dataset.json").write_text(json.dumps(
        {"labels": {"q": {"low": 0, "high": 100, "lower_better": False}}, "primary_label": "q"}))


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    base = tmp_path_factory.mktemp("report")
    make_set(base / "set")
    suite = Suite.from_dict({
        "name": "tiny_report", "n_boot": 0,
        "models": ["psnr", {"name": "brisque", "options": {"c_grid": [1], "gamma_grid": [0.1]}},
                   "test_report_mixture"],
        "datasets": [{"name": "tiny", "kind": "synthiqa", "root": str(base / "set")}],
        "protocols": [{"name": "intra", "n_splits": 1, "ratios": [0.5, 0.25, 0.25]}],
    })
    run_suite(suite, base / "res", log=lambda m: None, progress=False)
    return base / "res"


def test_report_embeds_every_figure_and_needs_no_network(results):
    path = build_report(results)
    text = path.read_text()
    figures = {p.name for p in (results / "figures").glob("*.png")}
    assert {"distortion_grid.png", "pred_vs_true_tiny.png", "tsne_brisque_tiny.png",
            "clusters_brisque_tiny.png", "tsne_test_report_mixture_tiny.png",
            "clusters_test_report_mixture_tiny.png"} <= figures
    assert any(name.startswith("training_") for name in figures)  # from runs/…/log.csv of the mixture model
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(images) == len(figures)
    assert all(base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n" for b in images)
    assert not re.search(r'(src|href)="(https?:|//|file:)', text)
    for section in ("Distortions", "Results", "Predicted against true quality", "Embeddings (t-SNE)",
                    "Cluster distribution", "Training curves"):
        assert f">{section}</h2>" in text
    assert "the model&#x27;s own mixture components" in text  # cluster source named for the reader
    assert "diagonal GMM with 2 components" in text
    assert "<td>psnr</td><td>tiny</td><td>intra</td>" in text


def test_report_cli_writes_where_asked_and_fails_in_one_line(results, tmp_path, capsys):
    out = tmp_path / "r.html"
    with pytest.raises(SystemExit) as done:
        main(["report", str(results), "--out", str(out)])
    assert done.value.code == 0 and out.read_text().startswith("<!DOCTYPE html>")
    with pytest.raises(SystemExit) as done:
        main(["report", str(tmp_path / "nothing")])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "not a results folder" in err and "Traceback" not in err


def test_training_curves_from_a_log_file(tmp_path):
    log = tmp_path / "run" / "log.csv"
    log.parent.mkdir()
    pd.DataFrame({"epoch": [1, 2, 3], "phase": ["pretrain", "finetune", "finetune"],
                  "loss_total": [3.0, 2.0, 1.5], "val_srcc": ["", 0.4, 0.6],
                  "val_active_clusters": ["", 5, 6]}).to_csv(log, index=False)
    png = plot_training_curves(log, tmp_path / "curves.png", "run")
    assert Image.open(png).size[0] > 800
    log.write_text("epoch,lr\n1,0.1\n")
    with pytest.raises(Exception, match="no loss"):
        plot_training_curves(log, tmp_path / "c2.png", "run")


def test_step_losses_draw_each_loss_and_its_chance_level(tmp_path):
    steps = tmp_path / "run" / "steps.csv"
    steps.parent.mkdir()
    n = 60
    log = pd.DataFrame({"epoch": np.repeat([1, 2], n // 2), "step": np.arange(1, n + 1), "lr": 1e-3,
                        "nt_xent": np.linspace(3.4, 2.0, n), "nt_xent_chance": np.log(31)})
    log.to_csv(steps, index=False)
    png = plot_step_losses(steps, tmp_path / "steps.png", "run")
    assert Image.open(png).size[0] > 500
    steps.write_text("epoch,step,lr\n1,1,0.1\n")
    with pytest.raises(Exception, match="no loss columns"):
        plot_step_losses(steps, tmp_path / "s2.png", "run")
