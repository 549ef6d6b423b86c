"""The engine's core: registry, levels, seeds, chains and input checks, with a distortion defined here."""

import math

import numpy as np
import pytest
import torch

from synthiqa.distortions import (
    Distortion,
    LevelTable,
    RandomDegradation,
    SampleRNG,
    apply_chains,
    format_chain,
    get_distortion,
    level_probabilities,
    list_distortions,
    parse_chain,
    register_distortion,
    sample_chain,
    unregister_distortion,
)
from synthiqa.distortions.base import check_images, interpolate_levels
from synthiqa.distortions.rng import derive_seed, normal_field
from synthiqa.errors import DistortionInputError


class _TestNoise(Distortion):
    name = "test_noise_core"
    group = "extra"
    tables = {"*": LevelTable({"sigma": (0.01, 0.02, 0.04, 0.08, 0.16)})}

    def draw(self, rng: SampleRNG, levels):
        return {"field_seed": rng.seeds_for_fields(), "offset": rng.uniform(low=-0.01, high=0.01)}

    def apply(self, images, params):
        noise = normal_field(params["field_seed"], images.shape[1:], images.device)
        shift = params["offset"].view(-1, 1, 1, 1)
        return images + params["sigma"].view(-1, 1, 1, 1) * noise + shift


@pytest.fixture(autouse=True)
def _registered_test_noise():
    register_distortion(_TestNoise)
    yield
    unregister_distortion(_TestNoise.name)


def _images(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 40, 48, generator=g)


def test_interpolate_levels_is_exact_on_integers_and_linear_between():
    levels = torch.tensor([1.0, 2.0, 2.5, 5.0])
    out = interpolate_levels((0, 10, 20, 30, 40), levels)
    assert out.tolist() == [0.0, 10.0, 15.0, 40.0]


def test_derive_seed_is_stable_and_key_sensitive():
    assert derive_seed(1, "a") == derive_seed(1, "a")
    assert derive_seed(1, "a") != derive_seed(1, "b")
    assert derive_seed(1, 2) != derive_seed(12)
    assert 0 <= derive_seed(7) < 2**63


def test_sample_records_every_parameter():
    d = get_distortion("test_noise_core", "kadid")
    p = d.sample([1, 3, 5], [11, 12, 13])
    assert set(p) == {"level", "sigma", "field_seed", "offset"}
    assert p["sigma"].tolist() == pytest.approx([0.01, 0.04, 0.16])


def test_output_independent_of_batch_size_and_batch_mates():
    d = get_distortion("test_noise_core", "kadid")
    x = _images(6)
    seeds = torch.arange(100, 106)
    full, _ = d(x, [1, 2, 3, 4, 5, 5], seeds)
    part, _ = d(x[2:4].flip(0), [4, 3], seeds[2:4].flip(0))
    assert torch.equal(full[2:4].flip(0), part)


def test_chains_group_by_op_and_replay():
    chains = [parse_chain("test_noise_core:2"), (), parse_chain("test_noise_core:5>test_noise_core:1")]
    x = _images(3)
    out, rec = apply_chains(x, chains, seeds=[1, 2, 3], profile="arniqa")
    assert torch.equal(out[1], x[1])
    assert [r["name"] for r in rec[2]] == ["test_noise_core", "test_noise_core"]
    again, _ = apply_chains(x[2:], chains[2:], seeds=[3], profile="arniqa")
    assert torch.equal(again[0], out[2])
    assert format_chain(chains[2]) == "test_noise_core:5>test_noise_core:1"


def test_kadid_profile_stretches_before_and_after():
    x = _images(2) * 0.5 + 0.2
    out, _ = apply_chains(x, [parse_chain("test_noise_core:1")] * 2, seeds=5, profile="kadid")
    assert out.flatten(1).amin(1).tolist() == pytest.approx([0.0, 0.0])
    assert out.flatten(1).amax(1).tolist() == pytest.approx([1.0, 1.0])


def test_level_probabilities_match_arniqa():
    assert level_probabilities() == pytest.approx([0.2929, 0.2704, 0.2127, 0.1426, 0.0814], abs=1e-4)


def test_level_sigma_sets_the_chain_law_and_infinity_makes_levels_uniform():
    assert level_probabilities(sigma=math.inf) == [0.2] * 5
    draws = [op.level for s in range(3000) for op in sample_chain(s, "arniqa", 4, 0.0, level_sigma=math.inf)]
    counts = np.bincount(np.array(draws, dtype=int), minlength=6)[1:] / len(draws)
    assert np.allclose(counts, 0.2, atol=0.02)
    mild = [op.level for s in range(3000) for op in sample_chain(s, "arniqa", 4, 0.0)]
    assert np.mean(mild) < np.mean(draws) - 0.3  # the profile's half-Gaussian: mild levels likelier
    assert sample_chain(7, "arniqa", level_sigma=2.5) == sample_chain(7, "arniqa")
    degrade = RandomDegradation("arniqa", max_chain=7, pristine_prob=0.0, level_sigma=math.inf)
    assert degrade.sample(11) == sample_chain(11, "arniqa", 7, 0.0, level_sigma=math.inf)
    with pytest.raises(DistortionInputError, match="level_sigma must be > 0"):
        RandomDegradation("arniqa", level_sigma=0.0)


def test_sample_chain_rules():
    for s in range(200):
        chain = sample_chain(s, "kadid", max_distortions=4, pristine_prob=0.0)
        groups = [get_distortion(op.name, "kadid").group for op in chain]
        assert 1 <= len(chain) <= 4
        assert len(set(groups)) == len(groups)
    assert sample_chain(3, "kadid") == sample_chain(3, "kadid")
    assert all(sample_chain(s, "kadid", pristine_prob=1.0) == () for s in range(5))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (torch.rand(2, 1, 40, 40), "3 channels"),
        (torch.rand(2, 3, 16, 40), "at least 32"),
        (torch.full((1, 3, 40, 40), float("nan")), "NaN"),
        (torch.rand(3, 40), "shape"),
        (torch.rand(1, 3, 40, 40) * 255, "[0, 1]"),
    ],
)
def test_bad_images_give_one_line_errors(bad, message):
    with pytest.raises(DistortionInputError, match=message.replace("[", r"\[").replace("]", r"\]")) as e:
        check_images(bad)
    assert "\n" not in str(e.value)


def test_uint8_is_accepted_and_scaled():
    x = torch.full((1, 3, 32, 32), 255, dtype=torch.uint8)
    assert check_images(x).max().item() == 1.0


def test_unknown_names_and_levels_are_clear():
    with pytest.raises(DistortionInputError, match="unknown distortion"):
        parse_chain("no_such_thing:2")
    with pytest.raises(DistortionInputError, match="outside"):
        parse_chain("test_noise_core:7")
    with pytest.raises(DistortionInputError, match="NAME:LEVEL"):
        parse_chain("test_noise_core")


def test_extra_group_listed_only_on_request():
    assert "test_noise_core" not in list_distortions("kadid")
    assert "test_noise_core" in list_distortions("kadid", include_extra=True)


def test_atomic_write_gives_a_normal_file_mode(tmp_path):
    import os
    import stat

    from synthiqa.atomic import atomic_path, atomic_write_text

    atomic_write_text(tmp_path / "a.txt", "x")
    with atomic_path(tmp_path / "b.txt") as tmp:
        tmp.write_text("y")
    umask = os.umask(0)
    os.umask(umask)
    for name in ("a.txt", "b.txt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


def test_atomic_write_makes_folders_and_replaces_a_stale_temporary(tmp_path):
    import os
    import threading

    from synthiqa.atomic import atomic_write_bytes

    target = tmp_path / "new" / "x.bin"
    atomic_write_bytes(target, b"first")
    stale = target.parent / f".x.bin.{os.getpid()}-{threading.get_ident()}.tmp"
    stale.write_bytes(b"left by a killed run")
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second" and sorted(p.name for p in target.parent.iterdir()) == ["x.bin"]
