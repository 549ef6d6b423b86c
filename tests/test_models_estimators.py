"""Every predictor follows scikit-learn's conventions: the constructor stores its arguments, ``clone``
gives an unfitted copy with the same parameters, values are checked by ``fit``, which returns the
predictor, and predicting before fitting is a one-line error."""

import inspect

import numpy as np
import pytest
from PIL import Image
from sklearn.base import clone

from synthiqa.datasets.records import IQARecord
from synthiqa.errors import ConfigError, SynthiqaError
from synthiqa.models.estimator import MethodPredictor, NotFittedError
from synthiqa.models.registry import MODELS, create_model, list_methods

#: Options of each registered model that differ from its defaults (every model's clone must keep them).
CHANGED = {"arniqa": {"epochs": 2, "crop_size": 48}, "brisque": {"c_grid": (1.0,), "epsilon": 0.05},
           "ceniqa": {"preset": "quick", "n_clusters": 3}, "niqe": {"patch_size": 32},
           "sind": {"epochs": 1, "d_model": 32}, "trcnn": {"layers": 1}, "psnr": {"batch_size": 2}}


@pytest.mark.parametrize("name", MODELS.list())
def test_clone_of_every_registered_model_keeps_its_parameters(name):
    model = create_model(name, **CHANGED.get(name, {}))
    copy = clone(model)
    assert type(copy) is type(model) and copy is not model
    assert copy.get_params() == model.get_params()
    for key, value in CHANGED.get(name, {}).items():
        assert copy.get_params()[key] == value
    # the constructor stores exactly its parameters: nothing fitted, nothing resolved
    assert set(vars(copy)) == set(copy.get_params())


@pytest.mark.parametrize("method", list_methods())
def test_method_constructor_stores_and_fit_checks(method):
    predictor = create_model(method, device="not-a-device", preset="nonexistent")
    assert predictor.get_params()["device"] == "not-a-device"
    with pytest.raises(ConfigError, match="unknown .* preset 'nonexistent'"):
        predictor.fit([])
    predictor.set_params(preset="default")
    with pytest.raises(ConfigError, match="--device 'not-a-device'"):
        predictor.fit([])
    with pytest.raises(NotFittedError, match="call fit"):
        predictor.predict([])
    with pytest.raises(ConfigError, match="unknown option 'epochz' \\(did you mean 'epochs'\\?\\)"):
        create_model(method, epochz=3)


@pytest.mark.parametrize("method", list_methods())
def test_method_signature_lists_every_config_field(method):
    card = MODELS.get(method)
    params = inspect.signature(card.build).parameters
    fields = [f for f in card.config.__dataclass_fields__]
    assert ["preset", "config", "progress", *fields] == list(params)
    assert all(params[f].default is None and params[f].kind is params[f].KEYWORD_ONLY for f in fields)
    assert issubclass(card.build, MethodPredictor)


def test_resolved_config_is_preset_then_defaults_then_options():
    sind = create_model("sind", preset="quick", loss="mse_rank", alignment="none")
    config, device = sind.resolve()
    assert (config.epochs, config.scene_sampling) == (4, True)  # the preset's, SIND's
    assert (config.loss, config.alignment) == ("mse_rank", "none")  # the options given
    assert device.type in ("cpu", "cuda")
    trcnn = create_model("trcnn", config=config.replace(epochs=7), epochs=None)
    assert trcnn.resolve()[0].epochs == 7
    with pytest.raises(ConfigError, match="config must be a TRCNNConfig"):
        create_model("trcnn", config={"epochs": 2}).resolve()


def _record(path, reference=None, score=0.5, scene="a"):
    return IQARecord(image=path, score=score, score_norm=score, reference=reference, scene=scene)


def _images(tmp_path, n=6, size=64):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        arr = np.clip(rng.normal(128, 20 + 10 * i, (size, size, 3)), 0, 255).astype(np.uint8)
        paths.append(tmp_path / f"i{i}.png")
        Image.fromarray(arr).save(paths[-1])
    return paths


def test_baselines_check_in_fit_and_fit_returns_self(tmp_path):
    paths = _images(tmp_path)
    records = [_record(p, reference=paths[0], score=i / 5, scene=f"s{i % 3}") for i, p in enumerate(paths)]
    niqe = create_model("niqe", patch_size=15)  # odd: stored, rejected by fit
    with pytest.raises(ConfigError, match="patch_size must be an even number"):
        niqe.fit(records)
    with pytest.raises(NotFittedError, match="NIQE: call fit"):
        niqe.predict(records)
    niqe.set_params(patch_size=32)
    assert niqe.fit(records) is niqe and niqe.mu_.shape == (36,)
    assert np.isfinite(niqe.predict(records)).all()
    brisque = create_model("brisque", c_grid=())
    with pytest.raises(ConfigError, match="c_grid and gamma_grid"):
        brisque.fit(records)
    with pytest.raises(NotFittedError, match="BRISQUE: call fit"):
        brisque.predict(records)
    brisque.set_params(c_grid=(1.0,), gamma_grid=(0.1,))
    assert brisque.fit(records) is brisque and set(brisque.selected_) == {"C", "gamma", "selection_srcc"}
    psnr = create_model("psnr")
    assert psnr.fit(records) is psnr
    first = psnr.predict(records)
    psnr.set_params(metric="ssim")  # a changed metric is not answered from the first one's cache
    assert not np.allclose(psnr.predict(records)[1:], first[1:])
    bad = create_model("psnr").set_params(metric="nope")
    with pytest.raises(SynthiqaError, match="unknown full-reference metric 'nope'"):
        bad.fit(records)
