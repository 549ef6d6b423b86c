"""CENIQA's parts on tiny inputs: config files, backbone registry, feature extractors, network, batches."""

import json
import math

import numpy as np
import pytest
import torch

from synthiqa.errors import ConfigError
from synthiqa.models.ceniqa.config import CENIQAConfig
from synthiqa.models.ceniqa.method import N_LEVELS, CENIQANet, level_class, preset_config
from synthiqa.models.components.backbones import create_backbone
from synthiqa.models.components.features import (
    FrequencyFeatures,
    MultiScaleFeatures,
    PatchQualityFeatures,
    QuantileNormalizer,
    SceneStatisticsFeatures,
    StatisticsFeatures,
    WholeImageFeatures,
    dct_matrix,
)
from synthiqa.models.data import LabelSpace, SceneBatchSampler, crop_origins

TINY = {"image_size": 64, "feature_dim": 16, "n_clusters": 3, "patch_dim": 8, "batch_size": 8}


# ------------------------------------------------------------------------------------------- config
@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_config_round_trip(tmp_path, suffix):
    cfg = CENIQAConfig(backbone="unet", n_clusters=5, bic_range=(3, 6), train_samples=100, lambda_cluster=0.7)
    path = tmp_path / f"cfg{suffix}"
    cfg.save(path)
    assert CENIQAConfig.load(path) == cfg


def test_config_published_defaults():
    cfg = CENIQAConfig()
    assert (cfg.n_clusters, cfg.scheduler) == (8, "cosine")
    assert (cfg.lambda_contrast, cfg.lambda_consistency, cfg.lambda_ranking, cfg.lambda_cluster,
            cfg.lambda_quality, cfg.lambda_monotonic) == (1.0, 0.5, 0.5, 0.3, 1.0, 0.1)


def test_config_errors_are_one_line(tmp_path):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"epochs": 2, "n_cluster": 4}))
    with pytest.raises(ConfigError, match=r"unknown option 'n_cluster' \(did you mean 'n_clusters'\?\)") as e:
        CENIQAConfig.load(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)
    with pytest.raises(ConfigError, match="epochs"):
        CENIQAConfig().replace(epochs="many")
    with pytest.raises(ConfigError, match="regressor_type"):
        CENIQAConfig(regressor_type="svm")
    with pytest.raises(ConfigError, match="not found"):
        CENIQAConfig.load(tmp_path / "missing.yaml")


def test_config_overrides_from_strings():
    cfg = CENIQAConfig().replace(epochs="3", use_bic_selection="true", bic_range="2,5", train_samples="none")
    assert (cfg.epochs, cfg.use_bic_selection, cfg.bic_range, cfg.train_samples) == (3, True, (2, 5), None)
    assert cfg.max_clusters == 8


# ------------------------------------------------------------------------------------------- backbones
@pytest.mark.parametrize("name", ["compact", "unet", "resnet18"])
def test_backbone_maps(name):
    bb = create_backbone(name).eval()
    maps = bb(torch.rand(2, 3, 64, 64))
    assert [m.shape[1] for m in maps] == bb.channels
    assert [64 // m.shape[-1] for m in maps] == bb.reductions


@pytest.mark.parametrize("name", ["compact", "resnet18"])
def test_backbone_maps_on_channels_last_input_match_nchw(name):
    """On the CPU the body gets the batch channels-last (without gradients; ours in training too): the
    maps are those of NCHW input to float rounding."""
    bb = create_backbone(name).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        plain = [m.contiguous() for m in bb.body((x - bb.mean) / bb.std)]
    seen = []
    bb.body.register_forward_pre_hook(
        lambda m, a: seen.append(a[0].is_contiguous(memory_format=torch.channels_last)))
    with torch.no_grad():
        fast = bb(x)
    bb(x)  # with gradients
    assert seen == [True, name == "compact"]
    for a, b in zip(fast, plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_backbone_pretrained_without_network_is_one_line(monkeypatch):
    import timm

    def offline(*args, **kwargs):
        if kwargs.get("pretrained"):
            raise FileNotFoundError("An error happened while trying to locate the file on the Hub\nmore")
        raise AssertionError("expected pretrained=True")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(ConfigError, match="cannot fetch pretrained weights") as e:
        create_backbone("resnet18", pretrained=True)
    assert "\n" not in str(e.value) and "--backbone-checkpoint" in str(e.value)
    with pytest.raises(ConfigError, match="no published weights"):
        create_backbone("compact", pretrained=True)


def test_backbone_checkpoint_loads_and_mismatch_errors(tmp_path):
    src = create_backbone("compact")
    torch.nn.init.constant_(src.body.stem[0].weight, 0.25)
    path = tmp_path / "compact.pt"
    torch.save({"state_dict": src.state_dict()}, path)
    loaded = create_backbone("compact", checkpoint=path)
    assert torch.equal(loaded.body.stem[0].weight, src.body.stem[0].weight)
    with pytest.raises(ConfigError, match="checkpoint not found"):
        create_backbone("compact", checkpoint=tmp_path / "nope.pt")
    with pytest.raises(ConfigError, match="do not fit backbone 'unet'"):
        create_backbone("unet", checkpoint=path)
    with pytest.raises(ConfigError, match="unknown backbone 'resnt18'.*resnet18"):
        create_backbone("resnt18")


# ------------------------------------------------------------------------------------------- features
def test_dct_matrix_matches_scipy():
    from scipy.fft import dctn

    block = np.random.default_rng(0).random((8, 8))
    d = dct_matrix(8, torch.float64)
    ours = (d @ torch.from_numpy(block) @ d.T).numpy()
    np.testing.assert_allclose(ours, dctn(block, norm="ortho"), atol=1e-12)


def test_frequency_features_shape_and_sensitivity():
    f = FrequencyFeatures(8)
    flat = torch.full((1, 3, 64, 64), 0.5)
    noisy = (flat + 0.1 * torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    out = f(torch.cat([flat, noisy]))
    assert out.shape == (2, f.out_dim) == (2, 222)
    hf = slice(1, 64)  # luma AC log magnitudes
    assert (out[1, hf] > out[0, hf]).all()  # noise raises every AC frequency
    assert out[0, 128 + 1:128 + 64].eq(1).all()  # a flat image has all AC coefficients zero


def test_statistics_features_read_tone_colour_noise_and_blocks():
    g = torch.Generator().manual_seed(0)
    base = torch.rand(1, 3, 64, 64, generator=g)
    base = torch.nn.functional.avg_pool2d(base, 5, 1, 2)  # some texture, not white noise
    stretched = ((base - base.amin()) / (base.amax() - base.amin()))
    squeezed = 0.5 + 0.2 * (stretched - 0.5)  # contrast x0.2 around mid-grey
    grey = stretched.mean(1, keepdim=True).expand(-1, 3, -1, -1)
    noisy = (stretched + 0.1 * torch.randn(1, 3, 64, 64, generator=g)).clamp(0, 1)
    blocky = stretched.reshape(1, 3, 8, 8, 8, 8).mean((3, 5), keepdim=True).expand(-1, -1, -1, 8, -1, 8)
    blocky = blocky.reshape(1, 3, 64, 64)
    f = StatisticsFeatures()
    out = f(torch.cat([stretched, squeezed, grey, noisy, blocky]))
    assert out.shape == (5, f.out_dim) == (5, 44) and torch.isfinite(out).all()
    luma_range = out[:, 8] - out[:, 0]  # 0.5% .. 99.5% quantiles
    torch.testing.assert_close(luma_range[1], 0.2 * luma_range[0], atol=0.01, rtol=0)
    assert out[2, 11:21].abs().max() < 1e-6 < out[0, 12]  # grey: no saturation, chroma, Cb/Cr spread
    assert out[3, 23] > out[0, 23] + 0.5  # noise: log mean |Laplacian| at full scale rises
    assert out[4, 25] > 0.5 and out[4, 27] > 2 and abs(out[0, 27]) < 0.5  # flat neighbours, 8-px edges
    assert not out.requires_grad


def test_multiscale_and_patch_features():
    maps = [torch.rand(2, 4, 16, 16), torch.rand(2, 6, 8, 8)]
    ms = MultiScaleFeatures([4, 6])
    assert ms(maps).shape == (2, ms.out_dim) == (2, 20)
    patch = PatchQualityFeatures(6, dim=5)
    out = patch(maps[1])
    assert out.shape == (2, 5)
    out.sum().backward()
    assert patch.attend.weight.grad is not None and patch.attend.weight.grad.abs().sum() > 0


def test_whole_image_features_any_size_and_uint8_path():
    f = WholeImageFeatures(8)
    g = torch.Generator().manual_seed(0)
    image = (torch.rand(3, 72, 136, generator=g) * 255).round().to(torch.uint8)
    one = f.of_image(image)
    assert one.shape == (f.out_dim,) == (44 + 222 + 80,) and one.dtype == torch.float32
    assert WholeImageFeatures(8, scene_statistics=False).out_dim == 44 + 222
    assert torch.isfinite(one).all()
    torch.testing.assert_close(one, f(image[None].float() / 255)[0])
    halved = torch.nn.functional.avg_pool2d(image[None].float() / 255, 2)
    torch.testing.assert_close(one[:44], StatisticsFeatures()(halved)[0])  # statistics of the halved image
    darker = f.of_image((image.float() * 0.5).round().to(torch.uint8))
    assert darker[4] < one[4] - 0.1  # median luminance falls


def test_whole_image_views_are_the_image_then_its_tiles_row_by_row():
    f = WholeImageFeatures(8)
    g = torch.Generator().manual_seed(1)
    image = (torch.rand(3, 101, 150, generator=g) * 255).round().to(torch.uint8)
    views = f.views_of_image(image, tiles=2)
    assert views.shape == (5, f.out_dim)
    torch.testing.assert_close(views[0], f.of_image(image))
    torch.testing.assert_close(views[2], f.of_image(image[:, :50, 75:150]))  # top right; row 100 left out
    torch.testing.assert_close(views[3], f.of_image(image[:, 50:100, :75]))
    assert f.views_of_image(image, tiles=0).shape == (1, f.out_dim)


def _photo_like(h: int = 96, w: int = 128) -> torch.Tensor:
    """A smooth uint8 test picture (gradients and blobs) whose 8-bit histogram has no gaps."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = torch.stack([0.2 + 0.6 * xx, 0.3 + 0.5 * yy, 0.5 + 0.3 * torch.sin(6 * xx * yy)])
    noise = torch.randn(3, h, w, generator=torch.Generator().manual_seed(0)) * 0.02
    return ((base + noise).clamp(0, 1) * 255).round().to(torch.uint8)


def test_scene_statistics_read_tone_curves_noise_and_colour_depth():
    f = SceneStatisticsFeatures()
    image = _photo_like()
    x = image[None].float() / 255
    out = f(x)[0]
    assert out.shape == (f.out_dim,) == (80,) and torch.isfinite(out).all()
    # a contrast stretch (slope 1.6) leaves empty codes in every channel's histogram; the original has none
    stretched = ((image.float() - 128) * 1.6 + 128).round().clamp(0, 255) / 255
    gaps = slice(38, 38 + 24, 6)  # the 'empty share' entry of R, G, B, Y
    assert (f(stretched[None])[0][gaps][:3] > out[gaps][:3] + 0.2).all()  # Y mixes channels: no gaps
    # darkening (slope 0.5) maps two codes onto one: spikes
    spikes = slice(39, 39 + 24, 6)
    darker = (image.float() * 0.5).round() / 255
    assert (f(darker[None])[0][spikes][:3] > out[spikes][:3]).all()
    # white noise: MSCN variance (first entry) rises; colour depth cut to 3 bits: far fewer distinct colours
    noisy = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    assert f(noisy)[0][0] > out[0]
    posterised = ((image >> 5) << 5).float()[None] / 255
    assert f(posterised)[0][62] < out[62] - 1.0  # log share of distinct 6-bit colours


def test_batched_statistics_are_each_images_own():
    """A batch's quantiles (selected on the CPU, sorted elsewhere) and histograms (one bincount for the
    batch) are each image's alone: the statistics of a batch of two are those of each image by itself."""
    from synthiqa.models.components.features import _quantiles

    g = torch.Generator().manual_seed(2)
    values = torch.cat([torch.rand(3, 500, generator=g), torch.full((1, 500), 0.25)]).round(decimals=2)
    qs = (0.0, 0.005, 0.1, 0.5, 0.9, 0.995, 1.0)
    ranks = [round(q * 499) for q in qs]
    torch.testing.assert_close(_quantiles(values, qs), values.sort(1).values[:, ranks], rtol=0, atol=0)
    images = torch.stack([_photo_like().float() / 255, (_photo_like().float() * 0.5).round() / 255])
    for f in (SceneStatisticsFeatures(), StatisticsFeatures()):
        both = f(images)
        for i in range(2):
            torch.testing.assert_close(both[i], f(images[i:i + 1])[0], rtol=1e-5, atol=1e-5)


def test_quantile_normalizer_maps_training_features_to_standard_normal():
    g = torch.Generator().manual_seed(0)
    train = torch.cat([torch.randn(2000, 1, generator=g).exp(), torch.rand(2000, 1, generator=g) * 10,
                       torch.full((2000, 1), 3.0)], 1)  # heavy-tailed, uniform, constant
    norm = QuantileNormalizer(3)
    torch.testing.assert_close(norm(train[:4]), train[:4])  # identity before fitting
    norm.fit(train)
    z = norm(train)
    assert abs(float(z[:, 0].mean())) < 0.05 and abs(float(z[:, 0].std()) - 1) < 0.1
    assert abs(float(z[:, 1].mean())) < 0.05 and abs(float(z[:, 1].std()) - 1) < 0.1
    assert float(z[:, 2].abs().max()) < 1e-5  # a constant feature carries nothing
    order = train[:, 0].argsort()
    assert (z[order, 0].diff() >= 0).all()  # monotonic
    far = norm(torch.tensor([[1e6, -1e6, 3.0]]))
    assert far[0, 0] == pytest.approx(3.09, abs=0.01) and far[0, 1] == pytest.approx(-3.09, abs=0.01)
    restored = QuantileNormalizer(3)
    restored.load_state_dict(norm.state_dict())  # the fitted quantiles travel in checkpoints
    torch.testing.assert_close(restored(train[:10]), z[:10])


# ------------------------------------------------------------------------------------------- network
def test_network_forward_embed_and_posteriors():
    cfg = CENIQAConfig(**TINY)
    net = CENIQANet(cfg, n_types=4).eval()
    x = torch.rand(6, 3, 64, 64)
    with torch.no_grad():
        emb = net.embed(x)
        assert emb.shape == (6, 16)
        assert net.posteriors(emb) is None  # mixture not fitted yet
        scores = net(x)
    assert scores.shape == (6,) and ((scores >= 0) & (scores <= 1)).all()
    net.gmm.fit(torch.randn(40, 16), warm_start=False)
    out = net.outputs(x)
    assert out["posterior"].shape == (6, 3)
    torch.testing.assert_close(out["posterior"].sum(1), torch.ones(6))
    assert out["type_logits"].shape == (6, 4)


def test_level_class_ids():
    types = torch.tensor([-1, 0, 2, 1, -1, 1])
    levels = torch.tensor([0.0, 1.0, 5.0, float("nan"), float("nan"), 2.2])
    assert level_class(types, levels).tolist() == [0, 1, 1 + 2 * N_LEVELS + 4, -1, -1, 1 + N_LEVELS + 1]


def test_score_blends_the_fitted_level_heads_class_prior():
    net = CENIQANet(CENIQAConfig(**TINY), n_types=2).eval()
    assert net.level_head.out_features == 1 + 2 * N_LEVELS
    assert not any(p.requires_grad for p in net.level_head.parameters())  # fitted, not trained by SGD
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        emb, context = net.embed_parts(x)
        plain = torch.sigmoid(net.regressor(emb, None).float())
        torch.testing.assert_close(net.score(emb, None, context), plain)  # no prior before fitting
    # two well separated groups of whole-image features: classes 0 (pristine) and 3 (type 0, level 3)
    g = torch.Generator().manual_seed(3)
    d = net.whole_image.out_dim
    views = 1 + net.config.level_tiles ** 2
    assert context.shape == (4, views, d)
    contexts = torch.cat([torch.randn(40, views, d, generator=g),
                          torch.randn(40, views, d, generator=g) + 3.0])
    classes = torch.cat([torch.zeros(40, dtype=torch.long), torch.full((40,), 3)])
    contexts[:, 0] = -contexts[:, 0]  # the whole-image view is not what the head learns from: its tiles are
    quality = torch.linspace(0.05, 0.95, net.level_head.out_features)
    net.fit_level_head(torch.cat([contexts, torch.zeros(1, views, d)]),
                       torch.cat([classes, torch.tensor([-1])]), quality)
    probs = torch.softmax(net.level_head(contexts[:, 1:]), 2)
    assert (probs.argmax(2) == classes[:, None]).all() and probs.max(2).values.min() > 0.8
    with torch.no_grad():
        emb = net.embed(x)
        ctx = torch.full((4, views, d), 3.0)  # already normalised features of the class-3 kind
        ctx[:, 0] = -3.0
        prior = torch.softmax(net.level_head(ctx[:, 1]), 1) @ quality
        assert (prior - quality[3]).abs().max() < 0.1
        torch.testing.assert_close(net.score(emb, None, ctx), 0.5 * plain + 0.5 * prior)
        net.prior_weight.fill_(30.0)
        torch.testing.assert_close(net.score(emb, None, ctx), prior)
        # the tiles' log-probabilities are averaged: one tile of another class pulls the prior its way
        ctx[:, 1] = 0.0
        logp = torch.log_softmax(net.level_head(ctx[:, 1:]), 2).mean(1)
        torch.testing.assert_close(net.score(emb, None, ctx), torch.softmax(logp, 1) @ quality)
    assert CENIQANet(CENIQAConfig(**TINY, use_level_head=False), n_types=2).level_head is None


def test_prior_weight_is_the_least_squares_blend():
    net = CENIQANet(CENIQAConfig(**TINY), n_types=2)
    g = torch.Generator().manual_seed(5)
    regression, prior = torch.rand(50, generator=g), torch.rand(50, generator=g)
    target = 0.3 * regression + 0.7 * prior
    target[3] = math.nan  # unlabelled: ignored
    assert net.fit_prior_weight(regression, prior, target) == pytest.approx(0.7)
    assert torch.sigmoid(net.prior_weight).item() == pytest.approx(0.7)
    assert net.fit_prior_weight(regression, prior, regression - 0.5 * (prior - regression)) == 1e-3  # clipped
    assert CENIQANet(CENIQAConfig(**TINY, use_whole_image=False), n_types=2).level_head is None


def test_network_pools_the_crops_of_an_image():
    from synthiqa.models.inference import run_model

    cfg = CENIQAConfig(**TINY)
    net = CENIQANet(cfg, n_types=2).eval()
    crops = torch.rand(2, 3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        pooled = net.embed(crops)
        assert pooled.shape == (2, 16)
        torch.testing.assert_close(pooled[1], net.embed(crops[1:]).squeeze(0))  # images independent
        assert not torch.allclose(pooled[0], net.embed(crops[0, :1])[0])  # all crops count, not the first
        scores = net(crops)
    out = run_model(net, [{"image": crops, "score": torch.tensor([0.1, 0.9])}], torch.device("cpu"))
    np.testing.assert_allclose(out.scores, scores.numpy(), rtol=1e-5)  # one score per image, pooled


def test_network_reads_whole_image_context(tmp_path):
    import cv2

    from synthiqa.datasets.records import IQARecord
    from synthiqa.models.data import RecordImages, collate
    from synthiqa.models.inference import records_scores, run_model

    cfg = CENIQAConfig(**TINY)
    net = CENIQANet(cfg, n_types=2).eval()
    rng = np.random.default_rng(3)
    records, calls = [], []
    for i in range(2):
        path = tmp_path / f"im{i}.png"
        cv2.imwrite(str(path), rng.integers(0, 256, (80, 144, 3), dtype=np.uint8))
        records.append(IQARecord(image=path, score=0.5, score_norm=0.5, scene=f"s{i}"))

    def counted(image):
        calls.append(1)
        return net.context_features(image)

    ds = RecordImages(records, LabelSpace.from_records(records), 64, train=True, patches=2, context=counted)
    first, view = ds[0], ds.evaluation_view(crops=2)[0]
    assert torch.equal(ds[0]["context"], first["context"]) and torch.equal(view["context"], first["context"])
    assert len(calls) == 1  # computed once per image, shared with the evaluation view
    assert first["context"].shape == (1 + net.config.level_tiles ** 2, net.whole_image.out_dim)
    batch = collate([ds.evaluation_view(crops=2)[i] for i in range(2)])
    with torch.no_grad():
        with_context = net(batch["image"], batch["context"])
        from_crops = net(batch["image"])
    assert not torch.allclose(with_context, from_crops)  # the whole image is not its crops
    np.testing.assert_allclose(run_model(net, [batch], torch.device("cpu")).scores, with_context.numpy(),
                               rtol=1e-5)
    out = records_scores(net, records, LabelSpace.from_records(records), 64, 2, 2, torch.device("cpu"))
    np.testing.assert_allclose(out.scores, with_context.numpy(), rtol=1e-5)


def test_bic_selection_pads_posteriors():
    cfg = CENIQAConfig(**{**TINY, "use_bic_selection": True, "bic_range": (2, 5)})
    net = CENIQANet(cfg, n_types=2, n_components=2).eval()
    net.gmm.fit(torch.randn(30, 16))
    post = net.posteriors(torch.randn(4, 16))
    assert post.shape == (4, cfg.max_clusters) == (4, 5)
    assert post[:, 2:].eq(0).all()


def test_quick_preset():
    cfg = preset_config("quick", seed=3)
    assert cfg.epochs < CENIQAConfig().epochs and cfg.seed == 3
    with pytest.raises(ConfigError, match="unknown CENIQA preset"):
        preset_config("huge")


# ------------------------------------------------------------------------------------------- batches
def test_scene_batches_keep_scenes_together():
    scenes = [i // 6 for i in range(24)]
    sampler = SceneBatchSampler(scenes, batch_size=8, per_scene=4, seed=1)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(24))
    assert all(sum(scenes[i] == scenes[b[0]] for i in b) >= 2 for b in batches)
    sampler.set_epoch(1)
    assert list(sampler) != batches
    assert sum(len(b) for b in SceneBatchSampler(scenes, 8, 4, limit=10)) == 10


def test_record_images_repeat_crops_of_each_image(tmp_path):
    import cv2

    from synthiqa.datasets.records import IQARecord
    from synthiqa.models.data import RecordImages

    records = []
    for i in range(2):
        path = tmp_path / f"im{i}.png"
        cv2.imwrite(str(path), np.random.default_rng(i).integers(0, 256, (96, 120, 3), dtype=np.uint8))
        records.append(IQARecord(image=path, score=0.2 + 0.5 * i, score_norm=0.2 + 0.5 * i, scene=f"s{i}"))
    labels = LabelSpace.from_records(records)
    train = RecordImages(records, labels, size=32, train=True, repeats=3)
    assert len(train) == 6 and len(train.evaluation_view()) == 2
    items = [train[i] for i in range(6)]
    assert [int(it["index"]) for it in items] == [0, 1, 0, 1, 0, 1]
    assert [float(it["score"]) for it in items[:2]] == pytest.approx([0.2, 0.7])
    crops_of_first = {items[i]["image"].numpy().tobytes() for i in (0, 2, 4)}
    assert len(crops_of_first) > 1  # repeats are different random crops
    patched = RecordImages(records, labels, size=32, train=True, patches=3)
    item = patched[0]
    assert item["image"].shape == (3, 3, 32, 32) and len(patched) == 2
    assert len({item["image"][k].numpy().tobytes() for k in range(3)}) > 1  # independent random crops


def test_record_images_make_a_loaders_batch_side_by_side_as_one_by_one(tmp_path):
    """A loader's batch (``__getitems__``: images decoded and whole-image features computed on torch's
    threads) holds the items ``ds[i]`` gives, decoding each image once per item."""
    import cv2
    from torch.utils.data import DataLoader

    from synthiqa.datasets.records import IQARecord
    from synthiqa.models.components.features import WholeImageFeatures
    from synthiqa.models.data import RecordImages, collate

    records = []
    for i in range(5):
        path = tmp_path / f"im{i}.png"
        cv2.imwrite(str(path), np.random.default_rng(i).integers(0, 256, (96, 120, 3), dtype=np.uint8))
        records.append(IQARecord(image=path, score=0.1 * i, score_norm=0.1 * i, scene=f"s{i}"))
    labels = LabelSpace.from_records(records)
    features = WholeImageFeatures()
    torch.set_num_threads(2)  # the fixture restores the count

    def make() -> RecordImages:
        return RecordImages(records, labels, 32, train=False, crops=2,
                            context=lambda im: features.views_of_image(im, 2))

    one_by_one = collate([make()[i] for i in range(5)])
    ds = make()
    reads = []
    ds.image = lambda i, _image=ds.image: reads.append(i) or _image(i)  # count the decodes
    batch = next(iter(DataLoader(ds, batch_size=5, collate_fn=collate)))
    assert sorted(reads) == list(range(5)) and torch.get_num_threads() == 2
    assert batch.keys() == one_by_one.keys()
    for key in batch:
        torch.testing.assert_close(batch[key], one_by_one[key], rtol=0, atol=0, equal_nan=True)


def test_crop_origins_are_grid_aligned():
    origins = crop_origins(100, 90, 32, 4)
    assert len(set(origins)) == 4 and all(y % 8 == 0 and x % 8 == 0 for y, x in origins)


def test_onthefly_batches_labels():
    from synthiqa.models.ceniqa.method import onthefly_source
    from synthiqa.models.training.onthefly import ReferenceParts

    refs = [torch.randint(0, 256, (3, 72, 80), dtype=torch.uint8, generator=torch.Generator().manual_seed(i))
            for i in range(2)]
    parts = ReferenceParts("mem", refs, ["a", "b"], {"train": [0, 1], "val": [], "test": []})
    config = CENIQAConfig(image_size=64, batch_size=6, distortions_per_image=2, onthefly_profile="basic8")
    src = onthefly_source(parts, "train", config, images=12, seed=5)
    batch = src.batch(0, 0)
    assert batch["image"].shape == (6, 3, 64, 64) and len(src) == 2
    pristine = batch["level"] == 0
    assert pristine.sum() == 2
    assert batch["score"][pristine].eq(1).all() and batch["type"][pristine].eq(-1).all()
    assert (batch["score"][~pristine] < 1).all() and (batch["type"][~pristine] >= 0).all()
    assert torch.equal(src.batch(0, 0)["image"], batch["image"])  # deterministic
    codes = batch["image"] * 255
    torch.testing.assert_close(codes, codes.round(), atol=1e-3, rtol=0)  # 8-bit images, as files hold
