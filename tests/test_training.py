"""The shared training loop with CENIQA end to end on a tiny generated-style set: checkpoints, log,
resume, predict (with a corrupt file) and evaluate."""

import csv
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from synthiqa.cli import app
from synthiqa.distortions import ChainOp, apply_chains, get_distortion
from synthiqa.models.ceniqa.method import CENIQAPredictor, CENIQATask, evaluate_checkpoint, train_ceniqa
from synthiqa.models.registry import load_predictor
from synthiqa.models.training.loop import lr_factor

TYPES = ("gaussian_blur", "white_noise", "jpeg")
TINY = {"image_size": 64, "feature_dim": 16, "n_clusters": 2, "patch_dim": 8, "batch_size": 8,
        "test_crops": 1, "patches_per_image": 2, "train_crops": 1, "pretrain_epochs": 1, "epochs": 1,
        "images_per_scene": 4}


def _make_set(root, n_scenes=4, side=72):
    """A generated-style set: per scene the pristine image and one image per type at levels 1..3."""
    (root / "images").mkdir(parents=True)
    rows = []
    g = torch.Generator().manual_seed(0)
    for s in range(n_scenes):
        base = torch.rand(1, 3, side // 8, side // 8, generator=g)
        ref = torch.nn.functional.interpolate(base, size=(side, side), mode="bilinear", align_corners=False)
        chains = [()] + [(ChainOp(t, float(lv)),) for t in TYPES for lv in (1, 3)]
        out, _ = apply_chains(ref.expand(len(chains), -1, -1, -1), chains, seeds=s, profile="basic8")
        split = ["train", "train", "val", "test"][s % 4]
        for i, chain in enumerate(chains):
            name = f"images/s{s}_{i}.png"
            arr = (out[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            Image.fromarray(arr).save(root / name)
            op = chain[0] if chain else None
            rows.append({
                "image": name, "scene": f"s{s}", "dist_type": op.name if op else "pristine",
                "dist_group": get_distortion(op.name, "basic8").group if op else "pristine",
                "level": op.level if op else 0.0, "level_quality": 100.0 - 25 * (op.level if op else 0.0),
                "split": split,
            })
    pd.DataFrame(rows).to_parquet(root / "manifest.parquet")
    (root / "dataset.json").write_text(json.dumps({
        "labels": {"level_quality": {"low": 0, "high": 100, "lower_better": False}},
        "primary_label": "level_quality"}))
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return _make_set(tmp_path_factory.mktemp("set"))


@pytest.fixture(scope="module")
def run(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    best = train_ceniqa({"overrides": TINY, "progress": False}, str(dataset), out)
    return out, best


def test_two_epoch_run_writes_checkpoints_log_and_report(run):
    out, best = run
    assert best == out / "best.pt"
    for name in ("best.pt", "last.pt", "log.csv", "run.json", "config.yaml"):
        assert (out / name).is_file(), name
    with open(out / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["phase"] for r in rows] == ["pretrain", "finetune"]
    assert float(rows[1]["val_active_clusters"]) >= 1 and rows[1]["val_srcc"] != ""
    weight = float(rows[1]["val_prior_weight"])  # the class prior's blend weight, fitted on validation
    model = torch.load(best, weights_only=True)["model"]
    assert torch.sigmoid(model["prior_weight"]).item() == pytest.approx(weight, rel=1e-4)
    assert float(rows[1]["loss_quality"]) >= 0 and float(rows[0]["loss_contrast"]) > 0
    report = json.loads((out / "run.json").read_text())
    assert set(report["test"]) >= {"srcc", "plcc", "rmse", "active_clusters", "purity", "per_type"}
    assert set(report["test"]["per_type"]) == set(TYPES)
    assert report["train_images_per_s"] > 0


def test_checkpoints_load_with_weights_only(run):
    out, _ = run
    for name in ("best.pt", "last.pt"):
        state = torch.load(out / name, map_location="cpu", weights_only=True)
        assert state["method"] == "ceniqa" and state["epoch"] >= 1
        assert state["gmm"]["n_components"] == 2 and state["gmm"]["means_"].shape == (2, 16)
        assert state["config"]["image_size"] == 64 and "metrics" in state
    assert "optimizer" in torch.load(out / "last.pt", weights_only=True)
    assert "optimizer" not in torch.load(out / "best.pt", weights_only=True)


def test_checkpoint_carries_class_prior_and_context_quantiles(run):
    out, _ = run
    model = torch.load(out / "best.pt", weights_only=True)["model"]
    quality = model["class_quality"]  # classes: pristine, then 5 levels of each type (sorted names)
    assert quality.shape == (1 + 5 * len(TYPES),)
    assert quality[0] == pytest.approx(1.0)  # pristine: level_quality 100
    assert quality[1] == pytest.approx(0.75) and quality[3] == pytest.approx(0.25)  # gaussian_blur 1 and 3
    assert quality[2] == pytest.approx(float(np.mean([1.0] + [0.75, 0.25] * 3)))  # level 2 unseen: the mean
    assert bool(model["context_norm.is_fitted"]) and model["context_norm.knots"].shape[1] == 64


def test_on_the_fly_training_uses_the_level_rule_prior(tmp_path):
    refs = tmp_path / "refs"
    refs.mkdir()
    g = torch.Generator().manual_seed(4)
    for i in range(4):
        base = torch.rand(1, 3, 9, 10, generator=g)
        img = torch.nn.functional.interpolate(base, size=(72, 80), mode="bilinear", align_corners=False)[0]
        arr = (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(arr).save(refs / f"r{i}.png")
    overrides = dict(TINY, train_samples=32, val_samples=16, distortions_per_image=3)
    best = train_ceniqa({"overrides": overrides, "progress": False, "on_the_fly": str(refs)}, None,
                        tmp_path / "run")
    model = torch.load(best, weights_only=True)["model"]
    assert model["class_quality"][0] == 1.0 and (model["class_quality"][1:] < 1).all()
    assert bool(model["context_norm.is_fitted"])
    assert "srcc" in json.loads((tmp_path / "run" / "run.json").read_text())["test"]


def test_checkpoint_round_trip_predicts_the_same(run, dataset):
    out, _ = run
    predictor = load_predictor(out / "last.pt")
    assert isinstance(predictor, CENIQAPredictor)
    from synthiqa.datasets import load_dataset

    records = load_dataset("synthiqa", dataset).records[:5]
    a, b = predictor.predict(records), load_predictor(out / "last.pt").predict(records)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    assert ((a >= 0) & (a <= 1)).all()
    assert predictor.embed(records).shape == (5, 16)


def test_checkpoints_from_before_whole_image_features_still_load(dataset, tmp_path):
    old = dict(TINY, use_whole_image=False)
    best = train_ceniqa({"overrides": old, "progress": False}, str(dataset), tmp_path / "old")
    state = torch.load(best, map_location="cpu", weights_only=True)
    del state["config"]["use_whole_image"]  # what checkpoints written before the field hold
    torch.save(state, tmp_path / "old.pt")
    from synthiqa.datasets import load_dataset

    predictor = load_predictor(tmp_path / "old.pt")
    assert predictor.model_.whole_image is None
    assert predictor.predict(load_dataset("synthiqa", dataset).records[:3]).shape == (3,)


def test_checkpoints_from_before_level_tiles_read_the_whole_image(dataset, tmp_path):
    best = train_ceniqa({"overrides": dict(TINY, level_tiles=0), "progress": False}, str(dataset),
                        tmp_path / "untiled")
    state = torch.load(best, map_location="cpu", weights_only=True)
    del state["config"]["level_tiles"]  # what checkpoints written before the field hold
    torch.save(state, tmp_path / "old.pt")
    from synthiqa.datasets import load_dataset

    records = load_dataset("synthiqa", dataset).records[:4]
    old = load_predictor(tmp_path / "old.pt")
    assert old.model_.config.level_tiles == 0 and bool(old.model_.level_fitted)
    np.testing.assert_allclose(old.predict(records), load_predictor(best).predict(records), rtol=1e-6)


def test_resume_continues(run, dataset, tmp_path):
    out, _ = run
    more = dict(TINY, epochs=2)
    train_ceniqa({"overrides": more, "progress": False, "resume": out / "last.pt"}, str(dataset), tmp_path)
    with open(tmp_path / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 3


def test_predict_folder_reports_corrupt_file(run, dataset, tmp_path):
    out, _ = run
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("s0_0.png", "s0_1.png"):
        (folder / name).write_bytes((dataset / "images" / name).read_bytes())
    (folder / "broken.png").write_bytes(b"not a png")
    result = CliRunner().invoke(app, ["predict", str(folder), "--checkpoint", str(out / "best.pt"),
                                      "--out", str(tmp_path / "preds.csv")])
    assert result.exit_code == 0, result.output
    assert "broken.png" in result.output
    with open(tmp_path / "preds.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["image"].rsplit("/", 1)[-1] for r in rows) == ["s0_0.png", "s0_1.png"]
    assert all(0 <= float(r["score"]) <= 1 and r["cluster"] != "" for r in rows)


def test_evaluate_per_type(run, dataset):
    out, _ = run
    result = evaluate_checkpoint(out / "best.pt", f"synthiqa:{dataset}", split="test")
    assert result["n"] == 7 and set(result["per_type"]) == set(TYPES)


def test_train_cli_errors_are_one_line(dataset, tmp_path):
    result = CliRunner().invoke(app, ["train", "--data", str(dataset), "--out", str(tmp_path / "r"),
                                      "--set", "n_cluster=3"])
    assert result.exit_code != 0
    assert "unknown option 'n_cluster'" in str(result.exception)


def test_lr_schedules():
    assert lr_factor("cosine", 0, 0, 4) == 1.0 and lr_factor("cosine", 3, 0, 4) < 0.2
    assert lr_factor("step", 3, 0, 4) == 0.1 and lr_factor("none", 3, 0, 4) == 1.0


@pytest.mark.parametrize("groups", [True, False])
def test_contrastive_loss_pulls_groups_together_when_asked(dataset, groups):
    from synthiqa.datasets import load_dataset
    from synthiqa.models.ceniqa.config import CENIQAConfig
    from synthiqa.models.ceniqa.method import DataBundle
    from synthiqa.models.components.losses import contrastive_loss
    from synthiqa.models.data import LabelSpace

    records = [r for r in load_dataset("synthiqa", dataset).records if r.extra.get("split") == "train"]
    config = CENIQAConfig(**TINY, contrast_groups=groups)
    bundle = DataBundle(LabelSpace.from_records(records), records, [], [])
    task = CENIQATask(config, bundle, torch.device("cpu"))
    batch = next(iter(task.batches(0)))
    batch["group"] = (batch["type"] > 0).long().where(batch["type"] >= 0, -1)  # types 1 and 2 share a group
    task.model.eval()  # batch statistics aside, the step's embedding is the one recomputed here
    _, parts = task.step(batch, 0)
    with torch.no_grad():
        emb = task.model.embed(batch["image"], batch["context"])
        by_type = contrastive_loss(emb, batch["type"], temperature=config.contrast_temperature)
        by_group = contrastive_loss(emb, batch["group"], temperature=config.contrast_temperature)
    assert by_group != pytest.approx(float(by_type))
    want = 0.5 * (by_type + by_group) if groups else by_type
    assert parts["contrast"] == pytest.approx(float(want), rel=1e-4)


def test_create_metric_ceniqa_scores_tensors_as_predict_scores_their_files(run, dataset, tmp_path):
    import numpy as np
    from PIL import Image

    import synthiqa

    out, _ = run
    names = ["s0_0.png", "s0_1.png", "s1_0.png"]
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in names:
        (folder / name).write_bytes((dataset / "images" / name).read_bytes())
    result = CliRunner().invoke(app, ["predict", str(folder), "--checkpoint", str(out / "best.pt"),
                                      "--out", str(tmp_path / "preds.csv"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    with open(tmp_path / "preds.csv") as f:
        rows = {r["image"].rsplit("/", 1)[-1]: r for r in csv.DictReader(f)}
    metric = synthiqa.create_metric("ceniqa", checkpoint=out / "best.pt", device="cpu")
    x = torch.stack([torch.from_numpy(np.array(Image.open(folder / n).convert("RGB"))).permute(2, 0, 1)
                     for n in names]).float() / 255
    assert metric(x).tolist() == pytest.approx([float(rows[n]["score"]) for n in names], abs=1e-5)
    assert metric(x[0]).shape == (1,)                     # one [3,H,W] image is a batch of one
    as_uint8 = (x * 255).round().to(torch.uint8)
    assert metric(as_uint8).tolist() == pytest.approx(metric(x).tolist())


def test_cli_evaluate_ceniqa_reports_the_harness_metrics_and_per_image_scores(run, dataset, tmp_path):
    import json

    out, _ = run
    result = CliRunner().invoke(app, ["evaluate", "--checkpoint", str(out / "best.pt"), "--dataset",
                                      f"synthiqa:{dataset}", "--split", "test", "--out",
                                      str(tmp_path / "m.json"), "--scores", str(tmp_path / "s.csv"),
                                      "--device", "cpu"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["n"] == 7 and set(metrics["per_type"]) == set(TYPES) and "active_clusters" in metrics
    assert {"srcc", "krcc", "plcc", "plcc_fit", "rmse_fit"} <= set(metrics)
    library = evaluate_checkpoint(out / "best.pt", f"synthiqa:{dataset}", split="test", device="cpu")
    assert metrics["srcc"] == pytest.approx(library["srcc"])
    with open(tmp_path / "s.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 7 and all(r["cluster"] != "" for r in rows)


class _ConstantTask:
    """A one-parameter task whose validation SRCC is fixed: the loop's view of a model that did or did
    not learn."""

    method = "toy"

    def __init__(self, srcc: float):
        self.model = torch.nn.Linear(1, 1)
        self.srcc = srcc

    def batches(self, epoch):
        return [{"image": torch.ones(2, 1)}]

    def phase(self, epoch):
        return "train", 0, 1

    def start_epoch(self, epoch):
        return {}

    def step(self, batch, epoch):
        return self.model(batch["image"]).pow(2).mean(), {}

    def validate(self, epoch):
        return {"srcc": self.srcc}

    def config_dict(self):
        return {}

    def extra_state(self):
        return {}

    def load_extra_state(self, state):
        pass


@pytest.mark.parametrize("srcc", [0.02, -0.3])
def test_a_run_that_did_not_learn_warns_instead_of_keeping_its_best_silently(srcc, tmp_path):
    import warnings

    from synthiqa.models.training.loop import LoopSettings, NoLearningWarning, run_training

    settings = LoopSettings(epochs=1, learning_rate=1e-3, device=torch.device("cpu"), progress=False)
    with pytest.warns(NoLearningWarning, match="did not learn"):
        result = run_training(_ConstantTask(srcc), settings, out_dir=tmp_path)
    assert result.best_path.is_file() and result.best_srcc == pytest.approx(srcc)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NoLearningWarning)
        run_training(_ConstantTask(0.5), settings, out_dir=tmp_path / "learned")
