"""ARNIQA, TRCNN, SIND and the experiment generator: losses against hand/closed-form values, the Ridge
alpha search against a brute-force scikit-learn search, and one-epoch runs on a tiny generated set."""

import math

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.base import clone

from synthiqa.datasets import load_dataset
from synthiqa.datasets.folds import experiment_splits
from synthiqa.datasets.splits import scene_disjoint_folds
from synthiqa.errors import ConfigError, DatasetError
from synthiqa.models.arniqa.method import nt_xent
from synthiqa.models.components.losses import scale_shift_align, sind_loss
from synthiqa.models.components.ridge import alpha_grid_search, fit_ridge, ridge_path
from synthiqa.models.data import SceneSampler

torch.set_num_threads(1)


# ---------------------------------------------------------------------------------------- NT-Xent
def _nt_xent_by_hand(a, b, t):
    z = np.concatenate([a, b]).astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    n = len(a)
    total = 0.0
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        logits = [z[i] @ z[k] / t for k in range(2 * n) if k != i]
        total += -(z[i] @ z[pos] / t) + math.log(sum(math.exp(v) for v in logits))
    return total / (2 * n)


def test_nt_xent_equals_the_hand_computed_value():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    got = float(nt_xent(torch.tensor(a), torch.tensor(b), temperature=0.1))
    assert got == pytest.approx(_nt_xent_by_hand(a, b, 0.1), rel=1e-5)
    # a tiny case written out: two orthogonal pairs, each anchor's positive is identical to it
    e = np.eye(2)
    expected = -1 / 0.5 + math.log(math.exp(1 / 0.5) + 2 * math.exp(0.0))
    assert float(nt_xent(torch.tensor(e), torch.tensor(e), temperature=0.5)) == pytest.approx(expected)


def test_nt_xent_is_lower_when_positives_match():
    rng = np.random.default_rng(1)
    a = torch.tensor(rng.normal(size=(4, 8)))
    matched = a + 0.05 * torch.tensor(rng.normal(size=(4, 8)))
    shuffled = matched[[1, 2, 3, 0]]  # each row's positive now belongs to another anchor
    assert float(nt_xent(a, matched)) < float(nt_xent(a, shuffled)) - 1.0


# ---------------------------------------------------------------------------------------- TRCNN, schedule
def test_ranking_hinge_charges_the_label_gap_and_respects_groups():
    from synthiqa.models.trcnn.method import pairwise_ranking_loss

    y = torch.tensor([0.9, 0.5, 0.2, float("nan")])
    flat = torch.full((4,), 0.5)  # constant predictions cost the mean label gap (0.4, 0.7, 0.3)
    assert float(pairwise_ranking_loss(flat, y)) == pytest.approx((0.4 + 0.7 + 0.3) / 3)
    assert float(pairwise_ranking_loss(2 * y, y)) == 0.0  # gaps wider than the labels' are free
    inverted = 1 - y  # (0.1, 0.5, 0.8): gaps -0.4, -0.7, -0.3 against 0.4, 0.7, 0.3
    assert float(pairwise_ranking_loss(inverted, y)) == pytest.approx((0.8 + 1.4 + 0.6) / 3)
    groups = torch.tensor([0, 0, 1, 1])  # only the (0.9, 0.5) pair is within a group
    assert float(pairwise_ranking_loss(flat, y, groups=groups)) == pytest.approx(0.4)
    assert float(pairwise_ranking_loss(flat, y, margin=0.1, groups=groups)) == pytest.approx(0.5)


def test_mscn_input_is_invariant_to_local_gain_and_offset():
    from synthiqa.models.trcnn.method import TRCNNConfig, TRCNNNet, mscn

    x = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(mscn(0.5 * x + 0.2, c=0.0), mscn(x, c=0.0), atol=1e-4, rtol=1e-4)
    assert float(mscn(torch.full((1, 3, 16, 16), 0.7)).abs().max()) < 1e-3  # flat: no contrast
    net = TRCNNNet(TRCNNConfig(image_size=32, d_model=16, heads=2, layers=1)).eval()
    with torch.no_grad():
        darker = net.embed(0.5 * x) - net.embed(x)  # MSCN hides a gain; the tone token does not
    assert float(darker.abs().max()) > 1e-3


def test_warm_restarts_follow_sgdr_with_t0_1_and_tmult_2():
    from synthiqa.models.training.loop import WARM_RESTART_FLOOR, lr_factor

    lo = WARM_RESTART_FLOOR
    for epoch in (0.0, 1.0, 3.0, 7.0):  # restarts after 1, 1 + 2, 1 + 2 + 4 epochs
        assert lr_factor("warm_restarts", epoch, 0, 10) == pytest.approx(1.0)
    mid = lo + (1 - lo) * 0.5
    assert lr_factor("warm_restarts", 0.5, 0, 10) == pytest.approx(mid)
    assert lr_factor("warm_restarts", 2.0, 0, 10) == pytest.approx(mid)  # half of the 2-epoch period
    assert lr_factor("warm_restarts", 5.0, 0, 10) == pytest.approx(mid)
    assert lr_factor("warm_restarts", 3.0 - 1e-9, 0, 10) == pytest.approx(lo, abs=1e-6)


# ---------------------------------------------------------------------------------------- SIND
def test_scale_shift_alignment_equals_least_squares_per_scene():
    rng = np.random.default_rng(2)
    pred = rng.uniform(size=12)
    domains = np.array([0] * 5 + [3] * 4 + [7] * 3)
    target = np.where(domains == 0, 2 * pred + 1, 0.5 * pred - 0.2) + rng.normal(0, 0.05, 12)
    got = scale_shift_align(torch.tensor(pred), torch.tensor(target), torch.tensor(domains), eps=0.0).numpy()
    for d in np.unique(domains):
        sel = domains == d
        design = np.stack([pred[sel], np.ones(sel.sum())], 1)
        (a, b), *_ = np.linalg.lstsq(design, target[sel], rcond=None)
        assert a > 0
        np.testing.assert_allclose(got[sel], a * pred[sel] + b, atol=1e-5)


def test_sind_loss_is_l1_without_alignment_and_shift_invariant_with_it():
    rng = np.random.default_rng(3)
    y = torch.tensor(rng.uniform(size=8))
    d = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    p = torch.tensor(rng.uniform(size=8))
    assert float(sind_loss(p, y, d, align=False)) == pytest.approx(float((p - y).abs().mean()))
    exact = 3 * y + torch.where(d == 0, 0.4, -0.7)  # a per-scene affine map of the labels
    assert float(sind_loss(exact, y, d, align=True, anchor_weight=0.0)) == pytest.approx(0.0, abs=1e-6)
    inverted = -y  # an inverted ranking is not a perfect fit
    assert float(sind_loss(inverted, y, d, align=True, anchor_weight=0.0)) > 0.05


def test_scene_sampler_draws_k_scenes_of_n_images():
    domains = [i // 6 for i in range(30)] + [9]  # five scenes of 6, one singleton (never drawn)
    sampler = SceneSampler(domains, scenes_per_batch=3, images_per_scene=4, steps=5, seed=1)
    batches = list(sampler)
    assert len(batches) == 5
    for batch in batches:
        scenes = [domains[i] for i in batch]
        assert len(batch) == 12 and len(set(batch)) == 12
        assert len(set(scenes)) == 3
        assert all(scenes.count(s) == 4 for s in set(scenes)) and 9 not in scenes
    assert batches == list(sampler)  # same epoch, same batches
    sampler.set_epoch(1)
    assert batches != list(sampler)


# ---------------------------------------------------------------------------------------- Ridge
def test_ridge_path_equals_scikit_learn():
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(30, 5, 6)), rng.normal(size=30)
    for model in ridge_path(x, y, [0.01, 3.0]):
        ref = Ridge(alpha=model.alpha).fit(x.reshape(-1, 6), np.repeat(y, 5))
        np.testing.assert_allclose(model.coef, ref.coef_, atol=1e-8)
        assert model.intercept == pytest.approx(ref.intercept_)
        np.testing.assert_allclose(model.predict(x), ref.predict(x.reshape(-1, 6)).reshape(30, 5).mean(1))


def test_a_ridge_on_standardised_columns_folds_into_one_on_the_raw_features():
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler

    from synthiqa.models.components.ridge import ColumnScale

    rng = np.random.default_rng(5)
    x = rng.normal(size=(40, 3, 4)) * [1e-3, 1.0, 50.0, 0.0] + [0.0, 5.0, -20.0, 7.0]  # one constant column
    y = x[:, :, 1].mean(1) + rng.normal(scale=0.1, size=40)
    scale = ColumnScale.fit(x)
    assert scale.std[3] == 1.0
    model = scale.fold(fit_ridge(scale.apply(x), y, 2.0))
    flat = x.reshape(-1, 4)
    ref = Ridge(alpha=2.0).fit(StandardScaler().fit_transform(flat[:, :3]), np.repeat(y, 3))
    expected = ref.predict(StandardScaler().fit(flat[:, :3]).transform(flat[:, :3])).reshape(40, 3).mean(1)
    np.testing.assert_allclose(model.predict(x), expected, atol=1e-8)


def _synthetic_references(n: int = 6, side: int = 80) -> list[torch.Tensor]:
    """uint8 [3, side, side] images: a tint, a gradient and smoothed noise each."""
    g = torch.Generator().manual_seed(0)
    ramp = torch.linspace(0, 1, side)
    refs = []
    for _ in range(n):
        grad = ramp[None, :, None] * 60 * torch.rand(1, generator=g) + ramp[None, None, :] * 60
        texture = torch.nn.functional.avg_pool2d(torch.rand(1, 3, side, side, generator=g), 5, 1, 2)[0] * 80
        refs.append((torch.rand(3, 1, 1, generator=g) * 128 + grad + texture).clamp(0, 255).to(torch.uint8))
    return refs


def test_arniqa_nt_xent_falls_below_chance_and_every_step_is_logged(tmp_path):
    import pandas as pd

    from synthiqa.models.arniqa.method import (
        ARNIQATask,
        loop_settings,
        nt_xent_chance,
        pair_source,
        preset_config,
    )
    from synthiqa.models.training.loop import run_training

    config = preset_config(encoder="compact", crop_size=32, batch_size=4, epochs=3, steps_per_epoch=20,
                           val_samples=2, device="cpu")
    cpu = torch.device("cpu")
    task = ARNIQATask(config, [], [], cpu, pairs=pair_source(_synthetic_references(), config, cpu))
    result = run_training(task, loop_settings(config, cpu, False), out_dir=tmp_path)
    steps = pd.read_csv(tmp_path / "steps.csv")
    assert list(steps["step"]) == list(range(1, 61))
    assert list(steps["epoch"]) == [1] * 20 + [2] * 20 + [3] * 20
    assert steps["lr"].iloc[0] == pytest.approx(config.learning_rate)
    chance = nt_xent_chance(2 * config.batch_size)  # pairs: the full and half crops of each item
    assert chance == pytest.approx(math.log(15)) and np.allclose(steps["nt_xent_chance"], chance)
    assert steps["nt_xent"].tail(10).mean() < chance - 0.15
    assert [r["nt_xent"] for r in result.step_rows] == pytest.approx(list(steps["nt_xent"]), rel=1e-5)


def test_alpha_search_matches_a_brute_force_search_and_prefers_shrinkage_on_noise():
    from scipy.stats import spearmanr
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(5)
    n, d = 40, 30  # few images, many noisy features: heavy shrinkage generalises best
    scenes = [f"s{i // 4}" for i in range(n)]
    signal = rng.normal(size=n)
    x = rng.normal(size=(n, 2, d))
    x[:, :, 0] += signal[:, None]
    y = signal + 0.3 * rng.normal(size=n)
    folds = scene_disjoint_folds(scenes, n_splits=4, val_ratio=0.3, seed=0)
    for train, val in folds:
        assert not {scenes[i] for i in train} & {scenes[i] for i in val}
    alphas = np.geomspace(1e-3, 1e3, 7)
    search = alpha_grid_search(x, y, folds, alphas)
    brute = []
    for alpha in alphas:
        per_fold = []
        for train, val in folds:
            ref = Ridge(alpha=alpha).fit(x[train].reshape(-1, d), np.repeat(y[train], 2))
            pred = ref.predict(x[val].reshape(-1, d)).reshape(-1, 2).mean(1)
            per_fold.append(spearmanr(pred, y[val]).statistic)
        brute.append(np.median(per_fold))
    np.testing.assert_allclose(search.median_srcc, brute, atol=1e-9)
    assert search.alpha == alphas[int(np.argmax(brute))]
    assert search.alpha >= 1.0  # the least-squares end of the grid overfits the noise features
    assert fit_ridge(x, y, search.alpha).predict(x).shape == (n,)


# ---------------------------------------------------------------------------------------- runs
@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    """A basic8 set generated from 6 tiny references (64x56 px), 4 images each."""
    from synthiqa.datasets.generate import GenerateConfig, generate

    root = tmp_path_factory.mktemp("tiny")
    refs = root / "refs"
    refs.mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:56, 0:64]
    for i in range(6):
        base = np.stack([128 + 100 * np.sin((xx + 7 * i) / (4 + i)), 255 * xx / 64, 255 * yy / 56], -1)
        arr = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(refs / f"ref{i}.png")
    generate(GenerateConfig(out=str(root / "set"), ref_dir=str(refs), profile="basic8", mode="basic",
                            per_image=4, seed=3, batch_size=8, workers=1, device="cpu", labels=("level",)),
             progress=False)
    return root / "set"


TINY = {
    "trcnn": {"epochs": 1, "image_size": 48, "batch_size": 8, "d_model": 32, "heads": 2, "layers": 1,
              "test_crops": 1, "device": "cpu"},
    "sind": {"epochs": 1, "image_size": 48, "d_model": 32, "heads": 2, "layers": 1, "test_crops": 1,
             "scenes_per_batch": 2, "images_per_scene": 3, "local_global": True, "n_local": 1,
             "device": "cpu"},
    "arniqa": {"epochs": 1, "steps_per_epoch": 1, "batch_size": 2, "encoder": "resnet18", "crop_size": 32,
               "val_samples": 8, "n_splits": 3, "device": "cpu"},
}


@pytest.fixture(scope="module")
def trained(tiny_set, tmp_path_factory):
    """One-epoch runs of each method on the tiny set: method -> best checkpoint."""
    from synthiqa.models.registry import get_method

    runs = tmp_path_factory.mktemp("runs")
    return {m: get_method(m).train({"overrides": TINY[m], "progress": False}, str(tiny_set), runs / m)
            for m in TINY}


@pytest.mark.parametrize("method", list(TINY))
def test_one_epoch_run_saves_a_checkpoint_that_predicts(tiny_set, trained, method):
    import json

    from synthiqa.models.registry import load_predictor

    best = trained[method]
    state = torch.load(best, map_location="cpu", weights_only=True)
    assert state["method"] == method
    report = json.loads((best.parent / "run.json").read_text())
    assert report["test"]["n"] > 0 and np.isfinite(report["test"]["rmse"])
    predictor = load_predictor(best)
    records = load_dataset("synthiqa", tiny_set).records[:5]
    scores = predictor.predict(records)
    assert scores.shape == (5,) and np.isfinite(scores).all()
    assert predictor.embed(records).shape[0] == 5
    again = clone(predictor)  # unfitted, with the same parameters
    assert again.get_params() == predictor.get_params() and not hasattr(again, "model_")
    if method == "arniqa":  # a loaded ARNIQA's clone refits the Ridge on the checkpoint's encoder
        refit = again.fit(load_dataset("synthiqa", tiny_set).records)
        np.testing.assert_allclose(refit.embed(records), predictor.embed(records), rtol=1e-4, atol=1e-5)


def test_arniqa_trains_with_adamw_by_default_and_the_paper_preset_with_sgd(trained):
    from synthiqa.models.arniqa.method import ARNIQAConfig, pair_source, preset_config

    last = torch.load(trained["arniqa"].parent / "last.pt", map_location="cpu", weights_only=True)
    group = last["optimizer"]["param_groups"][0]
    assert group["weight_decay"] == 1e-4 and "betas" in group and "momentum" not in group
    config = ARNIQAConfig()
    assert (config.optimizer, config.scheduler, config.learning_rate, config.temperature) == (
        "adamw", "cosine", 1e-3, 0.1)
    paper = preset_config("paper")
    assert (paper.encoder, paper.crop_size, paper.batch_size) == ("resnet50", 224, 16)
    # pairs: up to 7 distortions at uniform levels by default; the paper's up to 4, mild levels likelier
    assert (config.max_distortions, config.level_law, paper.max_distortions, paper.level_law) == (
        7, "uniform", 4, "half_gaussian")
    refs = [torch.zeros(3, 240, 240, dtype=torch.uint8)] * 2
    degrader = pair_source(refs, config, "cpu").source.degrader
    assert degrader.level_sigma == math.inf and degrader.max_chain == 7
    assert pair_source(refs, paper, "cpu").source.degrader.level_sigma is None
    assert (paper.optimizer, paper.momentum, paper.scheduler, paper.learning_rate) == (
        "sgd", 0.9, "warm_restarts", 1e-3)


@pytest.mark.parametrize("method", ["trcnn", "arniqa"])
def test_cli_predict_and_evaluate_take_the_checkpoints(tiny_set, trained, tmp_path, method):
    import json

    from typer.testing import CliRunner

    from synthiqa.cli import app

    images = tmp_path / "images"
    images.mkdir()
    for src in sorted((tiny_set / "images").rglob("*.png"))[:3]:
        (images / src.name).write_bytes(src.read_bytes())
    (images / "broken.png").write_bytes(b"not an image")
    runner = CliRunner()
    res = runner.invoke(app, ["predict", str(images), "--checkpoint", str(trained[method]), "--out",
                              str(tmp_path / "p.csv"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "image,score,cluster" and len(lines) == 4 and "broken" not in "".join(lines)
    res = runner.invoke(app, ["evaluate", "--checkpoint", str(trained[method]), "--dataset", str(tiny_set),
                              "--split", "test", "--out", str(tmp_path / "m.json"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["mse"] == pytest.approx(metrics["rmse"] ** 2) and -1 <= metrics["srcc"] <= 1


def test_trcnn_predictor_fits_in_memory_and_sind_options_change_training(tiny_set):
    from synthiqa.models.registry import create_model

    records = load_dataset("synthiqa", tiny_set).records
    train, test = [r for r in records if r.scene != "ref0"], [r for r in records if r.scene == "ref0"]
    options = {k: v for k, v in TINY["trcnn"].items()}
    plain = create_model("trcnn", **options)
    aligned = create_model("trcnn", **options, loss="sind", alignment="dataset", scene_sampling=True,
                           scenes_per_batch=2, images_per_scene=3)
    for predictor in (plain, aligned):
        torch.manual_seed(0)
        assert predictor.fit(train) is predictor
    a, b = plain.predict(test), aligned.predict(test)
    assert a.shape == b.shape == (len(test),) and not np.allclose(a, b)
    bad = create_model("trcnn", alignment="scene")  # stored as given; fit checks it
    with pytest.raises(ConfigError, match="alignment=scene needs loss=sind"):
        bad.fit(train)


def test_experiment_types_keep_or_leak_scenes_as_documented(tiny_set):
    ds = load_dataset("synthiqa", tiny_set)
    scene = {str(r.image.relative_to(ds.root)): r.scene for r in ds.records}
    for split in experiment_splits("intra", ds, n_splits=2):
        assert not {scene[k] for k in split.train} & {scene[k] for k in split.test}
    folds = experiment_splits("loro", ds)
    assert len(folds) == 6 and all(len({scene[k] for k in f.test}) == 1 for f in folds)
    assert all(not {scene[k] for k in f.train + f.val} & {scene[k] for k in f.test} for f in folds)
    random_split = experiment_splits("random", ds, n_splits=3)
    assert any({scene[k] for k in s.train} & {scene[k] for k in s.test} for s in random_split)
    with pytest.raises(ConfigError, match="cross needs a test dataset"):
        experiment_splits("cross", ds)


def test_experiment_generator_writes_loadable_configs_and_an_index(tmp_path):
    import yaml
    from typer.testing import CliRunner

    from synthiqa.cli import app
    from synthiqa.models.ceniqa.config import CENIQAConfig
    from synthiqa.models.ceniqa.experiments import write_experiments

    paths = write_experiments(tmp_path / "configs")
    res = CliRunner().invoke(app, ["experiments", "--out", str(tmp_path / "cli"), "--preset", "quick"])
    assert res.exit_code == 0 and len(list((tmp_path / "cli").rglob("*.yaml"))) == len(paths) + 1
    assert CENIQAConfig.load(tmp_path / "cli" / "clusters" / "clusters-k4.yaml").image_size == 96
    index = yaml.safe_load((tmp_path / "configs" / "index.yaml").read_text())
    assert index["format"] == "synthiqa-experiments" and len(index["experiments"]) == len(paths)
    groups = {e["group"] for e in index["experiments"]}
    assert groups == {"backbone", "regressor", "clusters", "features", "components"}
    loaded = {e["name"]: CENIQAConfig.load(tmp_path / "configs" / e["config"]) for e in index["experiments"]}
    assert {c.n_clusters for n, c in loaded.items() if n.startswith("clusters-")} == {4, 6, 8, 10, 12}
    assert {loaded[f"regressor-{r}"].regressor_type for r in ("mlp", "kan", "transformer", "gru", "attention")
            } == {"mlp", "kan", "transformer", "gru", "attention"}
    assert loaded["backbone-swin"].backbone.startswith("swin") and loaded["backbone-unet"].backbone == "unet"
    only_freq = loaded["features-only-frequency"]
    assert only_freq.use_frequency and not (only_freq.use_multiscale or only_freq.use_patch
                                            or only_freq.use_statistics)
    assert not loaded["features-no-statistics"].use_statistics
    assert loaded["components-no-auxiliary-losses"].lambda_contrast == 0.0


def _png_batch(paths):
    return torch.stack([torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1)
                        for p in paths]).float() / 255


@pytest.mark.parametrize("method", ["trcnn", "arniqa"])
def test_create_metric_scores_tensors_as_predict_scores_their_files(tiny_set, trained, tmp_path, method):
    import csv
    from pathlib import Path

    import synthiqa
    from synthiqa.cli import main

    images = sorted((tiny_set / "images").rglob("*.png"))[:4]
    folder = tmp_path / "images"
    folder.mkdir()
    for src in images:
        (folder / src.name).write_bytes(src.read_bytes())
    with pytest.raises(SystemExit) as done:
        main(["predict", str(folder), "--checkpoint", str(trained[method]), "--out", str(tmp_path / "p.csv"),
              "--device", "cpu"])
    assert done.value.code in (0, None)
    with open(tmp_path / "p.csv") as f:
        by_name = {Path(r["image"]).name: float(r["score"]) for r in csv.DictReader(f)}
    metric = synthiqa.create_metric(method, checkpoint=trained[method], device="cpu")
    assert isinstance(metric, torch.nn.Module) and metric.name == method
    assert metric.lower_better is False and metric.score_range == (0.0, 1.0) and not metric.needs_reference
    x = _png_batch(sorted(folder.iterdir()))
    scores = metric(x)
    assert scores.shape == (len(images),) and scores.dtype == torch.float32
    assert scores.tolist() == pytest.approx([by_name[p.name] for p in sorted(folder.iterdir())], abs=1e-5)
    with pytest.raises(ConfigError, match=f"a {method} checkpoint, not a ceniqa one"):
        synthiqa.create_metric("ceniqa", checkpoint=trained[method])


def test_validation_alpha_is_the_best_val_srcc_of_a_train_only_fit():
    from scipy.stats import spearmanr
    from sklearn.linear_model import Ridge

    from synthiqa.models.components.ridge import validation_alpha

    rng = np.random.default_rng(6)
    n, d = 50, 20
    signal = rng.normal(size=n)
    x = rng.normal(size=(n, 3, d))
    x[:, :, 0] += signal[:, None]
    y = signal + 0.3 * rng.normal(size=n)
    train, val = np.arange(35), np.arange(35, n)
    alphas = np.geomspace(1e-3, 1e3, 9)
    search = validation_alpha(x[train], y[train], x[val], y[val], alphas)
    brute = []
    for alpha in alphas:
        ref = Ridge(alpha=alpha).fit(x[train].reshape(-1, d), np.repeat(y[train], 3))
        brute.append(spearmanr(ref.predict(x[val].reshape(-1, d)).reshape(-1, 3).mean(1), y[val]).statistic)
    np.testing.assert_allclose(search.median_srcc, brute, atol=1e-9)
    assert search.alpha == alphas[int(np.argmax(brute))]


@pytest.fixture()
def scored_csv(tiny_set, tmp_path):
    """A tiny ``image,mos`` CSV dataset over the tiny set's images (MOS 0-100, higher is better)."""
    import pandas as pd

    records = load_dataset("synthiqa", tiny_set).records
    rng = np.random.default_rng(1)
    table = pd.DataFrame({"image": [str(r.image.relative_to(tiny_set)) for r in records],
                          "mos": 100 * np.clip(np.array([r.score_norm for r in records]) + 0.05
                                               * rng.normal(size=len(records)), 0, 1)})
    table.to_csv(tmp_path / "labels.csv", index=False)
    return load_dataset("csv", tmp_path / "labels.csv", mos_range=(0, 100), lower_better=False,
                        image_root=str(tiny_set))


def test_frozen_arniqa_picks_alpha_on_val_and_extracts_each_image_once(trained, scored_csv, monkeypatch):
    from synthiqa.benchmarks.protocols import ProtocolSpec, make_tasks
    from synthiqa.models.arniqa import method as arniqa
    from synthiqa.models.components.ridge import fit_ridge, validation_alpha
    from synthiqa.models.registry import load_predictor

    arniqa.FEATURE_CACHE.clear()
    extracted = []
    real = arniqa.extract_features
    monkeypatch.setattr(arniqa, "extract_features",
                        lambda model, paths, *a, **k: extracted.extend(paths) or real(model, paths, *a, **k))
    prototype = load_predictor(trained["arniqa"])
    tasks = make_tasks(ProtocolSpec("intra", n_splits=3), {"csv": scored_csv}, seed=0)
    for task in tasks:
        model = clone(prototype).fit(task.train, task.val)
        x_train, x_val = model._features(task.train), model._features(task.val)
        y = [np.array([r.score_norm for r in part]) for part in (task.train, task.val)]
        alpha = validation_alpha(x_train, y[0], x_val, y[1]).alpha
        assert model.ridge_.alpha == alpha  # chosen on this split's val part, fitted on its train part
        np.testing.assert_allclose(model.ridge_.coef, fit_ridge(x_train, y[0], alpha).coef)
        assert np.isfinite(model.predict(task.test)).all()
    assert sorted(map(str, extracted)) == sorted({str(p) for p in extracted})  # each image once
    assert len(extracted) <= len(scored_csv.records)


def test_hybrid_arniqa_appends_whole_image_statistics_and_fits_a_standardised_ridge(trained, scored_csv):
    from synthiqa.models.arniqa.method import ARNIQAPredictor
    from synthiqa.models.components.features import WholeImageFeatures
    from synthiqa.models.data import read_rgb

    records = scored_csv.records
    plain = ARNIQAPredictor(encoder_checkpoint=str(trained["arniqa"]), device="cpu").fit(records[:12])
    hybrid = ARNIQAPredictor(encoder_checkpoint=str(trained["arniqa"]), device="cpu",
                             scene_statistics=True).fit(records[:12], records[12:16])
    assert hybrid.config_.scene_statistics and not plain.config_.scene_statistics
    x, x_plain = hybrid._features(records[:3]), plain._features(records[:3])
    stats = np.stack([WholeImageFeatures().of_image(read_rgb(r.image)).numpy() for r in records[:3]])
    width = x_plain.shape[-1]
    assert x.shape == (3, 5, width + stats.shape[1])
    np.testing.assert_allclose(x[..., :width], x_plain, rtol=1e-5, atol=1e-6)  # the encoder's, unchanged
    np.testing.assert_allclose(x[..., width:], np.repeat(stats[:, None], 5, 1), rtol=1e-5, atol=1e-6)
    pred = hybrid.predict(records[16:])
    assert pred.shape == (len(records) - 16,) and np.isfinite(pred).all()


def test_ridge_path_falls_back_when_the_svd_does_not_converge(monkeypatch):
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(40, 6)), rng.normal(size=40)
    expected = [m.coef for m in ridge_path(x, y, [0.1])]

    def no_convergence(*args, **kwargs):
        raise np.linalg.LinAlgError("SVD did not converge")

    monkeypatch.setattr(np.linalg, "svd", no_convergence)
    np.testing.assert_allclose(ridge_path(x, y, [0.1])[0].coef, expected[0], rtol=1e-8, atol=1e-10)


def test_ridge_path_names_non_finite_features():
    x = np.ones((5, 3))
    x[2, 1] = np.nan
    with pytest.raises(DatasetError, match="not finite"):
        ridge_path(x, np.arange(5.0), [1.0])
