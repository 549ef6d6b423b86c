"""Shared fixtures."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """Run a test on one torch thread (restored afterwards): on small images the intra-op thread pool
    costs more than it saves, and much more on a loaded machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` skip without a CUDA device."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    """Six 80x72 smooth-plus-noise reference photographs in a folder (training on the fly)."""
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("refs") / "refs"
    root.mkdir()
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:72, 0:80]
    for i in range(6):
        base = np.stack([128 + 100 * np.sin((xx + 5 * i) / (3 + i)), 255 * xx / 80, 255 * yy / 72], -1)
        Image.fromarray(np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)).save(
            root / f"r{i}.png")
    return root
