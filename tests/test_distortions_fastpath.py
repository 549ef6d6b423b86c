"""The uint8 CPU fast path (fastpath.py): every registered path against the float reference path."""

import numpy as np
import pytest
import torch

from synthiqa.distortions import (
    ChainOp,
    Distortion,
    LevelTable,
    apply_chains,
    apply_distortion,
    list_distortions,
    parse_chain,
    register_distortion,
    unregister_distortion,
)
from synthiqa.distortions.fastpath import UINT8_PATHS, map_jobs, register_pointwise
from synthiqa.errors import DistortionInputError

list_distortions("kadid")  # import the built-in distortions, which register their paths
FAST = sorted(UINT8_PATHS)
SEEDS = [3, 4, 5]


pytestmark = pytest.mark.usefixtures("one_thread")


def _images(kind: str) -> torch.Tensor:
    """Three 40x48 uint8 images: a smooth photo-like scene, or noise that does not span 0..255."""
    g = torch.Generator().manual_seed(7)
    if kind == "noise":
        return (torch.rand(3, 3, 40, 48, generator=g) * 180 + 30).round().to(torch.uint8)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 40), torch.linspace(0, 1, 48), indexing="ij")
    base = torch.stack([xx, yy, (xx * yy).sqrt()])
    scene = torch.stack([base, base.flip(2) * 0.8 + 0.1, 1 - base])
    scene = scene + 0.05 * torch.rand(scene.shape, generator=g)
    return (scene.clamp(0, 1) * 255).round().to(torch.uint8)


def _profiles(name: str) -> list[str]:
    return [p for p in ("kadid", "arniqa") if name in list_distortions(p)]


def test_fast_paths_cover_the_blur_colour_jpeg_and_tone_ops():
    assert {"gaussian_blur", "lens_blur", "motion_blur", "color_saturation_hsv", "jpeg", "mean_shift",
            "darken", "contrast_change"} <= set(FAST)


@pytest.mark.parametrize("name", FAST)
@pytest.mark.parametrize("kind", ["scene", "noise"])
def test_fast_path_within_one_level_of_the_float_path(name, kind):
    x = _images(kind)
    for profile in _profiles(name):
        for level in (1, 2.5, 4, 5):
            ref, ref_rec = apply_distortion(x, name, level, SEEDS, profile)
            fast, rec = apply_distortion(x, name, level, SEEDS, profile, out_dtype=torch.uint8)
            assert fast.dtype == torch.uint8 and fast.shape == x.shape
            assert rec == ref_rec
            err = (fast.float() / 255 - ref).abs()
            assert err.max().item() <= 1 / 255 + 1e-6, (profile, level, err.max().item() * 255)
            assert (err > 0.5 / 255 + 1e-5).float().mean().item() < 0.01  # nearly all: rounding only


def test_fast_paths_on_worker_threads_in_inference_mode():
    x = _images("scene")
    torch.set_num_threads(2)  # images spread over two threads; the fixture restores the count
    for name in FAST:
        profile = _profiles(name)[0]
        ref, _ = apply_distortion(x, name, 4, SEEDS, profile, out_dtype=torch.uint8)
        with torch.inference_mode():
            out, _ = apply_distortion(x, name, 4, SEEDS, profile, out_dtype=torch.uint8)
        assert torch.equal(out, ref), name


@pytest.mark.parametrize("name", FAST)
def test_fast_path_reads_an_expanded_reference_batch_without_copying_or_writing_it(name):
    one = _images("scene")[1].permute(1, 2, 0).contiguous().permute(2, 0, 1)  # channels-last [3,H,W]
    expanded = one.unsqueeze(0).expand(3, -1, -1, -1)  # stride 0: read as a read-only view
    copies = expanded.contiguous(memory_format=torch.channels_last)
    for profile in _profiles(name):
        ref, ref_rec = apply_distortion(copies, name, [1, 3, 5], SEEDS, profile, out_dtype=torch.uint8)
        out, rec = apply_distortion(expanded, name, [1, 3, 5], SEEDS, profile, out_dtype=torch.uint8)
        assert torch.equal(out, ref) and rec == ref_rec, profile


def test_jpeg_fast_path_is_the_rounded_float_path_exactly():
    x = _images("scene")
    for profile in ("kadid", "arniqa"):
        ref, _ = apply_distortion(x, "jpeg", 4, SEEDS, profile)
        fast, _ = apply_distortion(x, "jpeg", 4, SEEDS, profile, out_dtype=torch.uint8)
        assert torch.equal(fast, (ref * 255).round().to(torch.uint8))


def test_mean_shift_tables_are_the_rounded_float_path_exactly():
    flat = torch.full((1, 3, 40, 48), 77, dtype=torch.uint8)
    x = torch.cat([_images("scene"), _images("noise"), flat])  # full range, 30..210, flat
    for profile in ("kadid", "arniqa"):
        for level in (1, 2, 3, 3.7, 5):  # kadid: +0.15 .. -0.15 through 0 at level 3
            ref, _ = apply_distortion(x, "mean_shift", level, list(range(7)), profile)
            fast, _ = apply_distortion(x, "mean_shift", level, list(range(7)), profile, out_dtype=torch.uint8)
            assert torch.equal(fast, (ref * 255).round().to(torch.uint8)), (profile, level)


def test_noise_stretch_coefficients_give_the_float_path_values():
    from synthiqa.distortions.fastpath import unit_tables
    from synthiqa.distortions.noise import _stretch_coefficients

    flat = np.full((1, 40, 48, 3), 77, dtype=np.uint8)
    images = np.concatenate([_images("scene").permute(0, 2, 3, 1).numpy(),
                             _images("noise").permute(0, 2, 3, 1).numpy(), flat])
    v = np.arange(256, dtype=np.float64)
    for wrap in (True, False):
        tables = unit_tables(images, wrap).numpy()
        for table, (scale, offset) in zip(tables, _stretch_coefficients(images, wrap), strict=True):
            np.testing.assert_allclose(v * scale + offset, table, rtol=0, atol=1e-6)


def test_fast_path_is_batch_independent_and_leaves_the_input_alone():
    x = _images("scene")
    before = x.clone()
    whole, _ = apply_distortion(x, "motion_blur", [2, 4, 5], SEEDS, "kadid", out_dtype=torch.uint8)
    alone, _ = apply_distortion(x[1:2], "motion_blur", 4, SEEDS[1:2], "kadid", out_dtype=torch.uint8)
    assert torch.equal(whole[1:2], alone)
    assert torch.equal(x, before)


def test_uint8_output_of_mixed_and_longer_chains_is_the_rounded_float_output():
    x = _images("scene")
    for chains in ([parse_chain("gaussian_blur:3"), (), parse_chain("white_noise:2")],
                   [parse_chain("darken:2>jpeg:3"), parse_chain("mean_shift:1"), ()]):
        ref, ref_rec = apply_chains(x, chains, 11, "kadid")
        out, rec = apply_chains(x, chains, 11, "kadid", out_dtype=torch.uint8)
        assert rec == ref_rec
        assert (out.float() / 255 - ref).abs().max().item() <= 1 / 255 + 1e-6
    pristine, _ = apply_chains(x, [()] * 3, 0, "kadid", out_dtype=torch.uint8)
    assert torch.equal(pristine, x) and pristine.data_ptr() != x.data_ptr()


def test_float_input_with_uint8_output_and_bad_out_dtype():
    x = _images("scene")
    ref, _ = apply_distortion(x.float() / 255, "gaussian_blur", 3, SEEDS, "kadid")
    out, _ = apply_distortion(x.float() / 255, "gaussian_blur", 3, SEEDS, "kadid", out_dtype=torch.uint8)
    assert torch.equal(out, (ref * 255).round().to(torch.uint8))
    with pytest.raises(DistortionInputError, match="out_dtype"):
        apply_distortion(x, "gaussian_blur", 3, SEEDS, "kadid", out_dtype=torch.float64)


def test_flat_image_stays_flat_under_the_wrap():
    x = torch.full((2, 3, 32, 32), 77, dtype=torch.uint8)
    for name in FAST:
        if "kadid" not in _profiles(name):
            continue
        ref, _ = apply_distortion(x, name, 3, [1, 2], "kadid")
        fast, _ = apply_distortion(x, name, 3, [1, 2], "kadid", out_dtype=torch.uint8)
        assert np.abs(fast.float().numpy() / 255 - ref.numpy()).max() <= 1 / 255 + 1e-6, name


class _Folding(Distortion):
    """A non-monotone curve that differs per channel: the LUT path must fall back to histograms."""

    name = "test_folding_curve"
    group = "extra"
    tables = {"*": LevelTable({"gain": (1.0, 1.5, 2.0, 3.0, 4.0)})}

    def apply(self, images, params):
        gain = params["gain"].view(-1, 1, 1, 1) * torch.tensor([1.0, 0.7, 0.4]).view(1, 3, 1, 1)
        return 4.0 * gain * images * (1.0 - images) - 0.2 * images


def test_pointwise_path_with_non_monotone_per_channel_curves():
    register_distortion(_Folding)
    register_pointwise(_Folding.name)
    try:
        for kind in ("scene", "noise"):
            x = _images(kind)
            for profile in ("kadid", "arniqa"):
                ref, _ = apply_distortion(x, _Folding.name, [1, 3, 5], SEEDS, profile)
                fast, _ = apply_distortion(x, _Folding.name, [1, 3, 5], SEEDS, profile, out_dtype=torch.uint8)
                assert (fast.float() / 255 - ref).abs().max().item() <= 1 / 255 + 1e-6
    finally:
        UINT8_PATHS.pop(_Folding.name, None)
        unregister_distortion(_Folding.name)


@pytest.mark.parametrize("stringzilla", [True, False])
def test_lut_helper_matches_opencv(stringzilla, monkeypatch):
    cv2 = pytest.importorskip("cv2")
    from synthiqa.distortions import fastpath

    if not stringzilla:
        monkeypatch.setattr(fastpath, "_stringzilla", lambda: None)
    image = _images("noise")[0].permute(1, 2, 0).contiguous().numpy()
    table = np.random.default_rng(0).integers(0, 256, 256).astype(np.uint8)
    out = np.empty_like(image)
    fastpath.apply_lut(image, table, out)
    assert np.array_equal(out, cv2.LUT(image, table))
    fastpath.apply_lut(image, table, image)  # in place
    assert np.array_equal(image, out)


def _saturated_pixels() -> np.ndarray:
    """Random 8-bit colours plus the sRGB cube's corners and edges (strong blue-yellow: f(Z) < 0 after
    an L* change), as a 64x64 uint8 image."""
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    corners = np.array(np.meshgrid([0, 255], [0, 128, 255], [0, 255], indexing="ij")).reshape(3, -1).T
    image[0, : len(corners)] = corners
    image[1:5] = np.arange(256).reshape(4, 64, 1)  # the grey ramp, with the CIE linear segment near black
    return image


def test_lab_of_uint8_matches_rgb_to_lab():
    from synthiqa.distortions.colorspace import lab_of_uint8, rgb_to_lab, srgb_to_linear
    from synthiqa.distortions.fastpath import UNIT_VALUES

    image = _saturated_pixels()
    for values in (UNIT_VALUES, (UNIT_VALUES - 0.1) / 0.7):  # raw, and as a min-max stretch sees them
        values = values.astype(np.float32)
        ref = rgb_to_lab(torch.from_numpy(values[image]).permute(2, 0, 1)[None])[0].permute(1, 2, 0)
        linear = srgb_to_linear(torch.from_numpy(values)).numpy()
        assert np.abs(lab_of_uint8(image, linear) - ref.numpy()).max() < 2e-3


@pytest.mark.parametrize("clamp_negative_z", [True, False])
def test_lab_to_rgb_array_matches_lab_to_rgb(clamp_negative_z):
    from synthiqa.distortions.colorspace import lab_to_rgb, lab_to_rgb_array, rgb_to_lab

    rgb = torch.from_numpy(_saturated_pixels()).permute(2, 0, 1)[None].float() / 255
    lab = rgb_to_lab(rgb)
    gain = torch.linspace(0.3, 1.4, 64).view(1, 1, 64, 1)  # darker rows: f(Z) < 0 for yellows; brighter:
    lab[:, :1] = (lab[:, :1] * gain).clamp(0, 100)  # out of gamut
    ref = lab_to_rgb(lab, clamp_negative_z)[0].permute(1, 2, 0).numpy()
    got = lab_to_rgb_array(lab[0].permute(1, 2, 0).contiguous().numpy(), clamp_negative_z)
    assert np.abs(got - ref).max() < 0.2 / 255
    if clamp_negative_z:  # the option matters for these colours, so the cap on b* is exercised
        assert np.abs(ref - lab_to_rgb(lab, False)[0].permute(1, 2, 0).numpy()).max() > 1 / 255


def test_lab_paths_on_alternating_sizes_reuse_scratch_safely():
    """Scratch arrays are per thread and per shape: batches of two sizes in turn give the same bytes."""
    small, large = _images("scene"), torch.from_numpy(_saturated_pixels()).permute(2, 0, 1)[None]
    for name in ("brighten", "high_sharpen"):
        first = [apply_distortion(x, name, 4, [1] * len(x), "kadid", out_dtype=torch.uint8)[0]
                 for x in (small, large)]
        again = [apply_distortion(x, name, 4, [1] * len(x), "kadid", out_dtype=torch.uint8)[0]
                 for x in (large, small)]
        assert torch.equal(first[0], again[1]) and torch.equal(first[1], again[0])


def test_flat_grey_stays_grey_through_lab_round_trips():
    """A flat grey image's float noise after a Lab round trip (about 1e-6) is not stretched to full range."""
    x = torch.full((1, 3, 32, 32), 0.3)
    for name in ("brighten", "high_sharpen"):
        y, _ = apply_distortion(x, name, 5, [0], "kadid")
        assert (y.amax() - y.amin()).item() < 1e-4, name


def test_lab_paths_decline_the_bgr_quirk():
    """ARNIQA's BGR-as-RGB option has no uint8 path: the float path runs (apply_uint8 answers None)."""
    from synthiqa.distortions.brightness import Brighten
    from synthiqa.distortions.fastpath import apply_uint8
    from synthiqa.distortions.sharpness import HighSharpen

    x = _images("scene")
    for cls in (Brighten, HighSharpen):
        dist = cls("arniqa", LevelTable(cls.tables["arniqa"].params, {"lab_bgr": True}))
        assert apply_uint8(dist, x, dist.sample([3, 3, 3], SEEDS), True) is None


def test_scratch_keeps_small_arrays_only(monkeypatch):
    from synthiqa.distortions import fastpath

    small = fastpath.scratch("test.small", (8, 8))
    assert fastpath.scratch("test.small", (8, 8)) is small
    assert fastpath.scratch("test.small", (8, 9)) is not small  # another shape: a new array
    monkeypatch.setattr(fastpath, "SCRATCH_MAX_BYTES", 100)
    big = fastpath.scratch("test.big", (8, 8))  # 256 bytes: not kept
    assert fastpath.scratch("test.big", (8, 8)) is not big


def test_truncated_srgb_table_is_the_float_path_value_for_value():
    from synthiqa.distortions.colorspace import (
        linear_to_srgb,
        linear_to_srgb_truncated,
        srgb_truncation_table,
        truncate_to_8bit,
    )

    _, step = srgb_truncation_table()
    t = np.unique(step[np.isfinite(step)])
    assert len(t) >= 254  # every 8-bit step (255 too where the curve reaches it below 1)
    near = np.concatenate([np.nextafter(t, -1), t, np.nextafter(t, 2)]).astype(np.float32)
    g = torch.Generator().manual_seed(0)
    x = np.concatenate([near, (torch.rand(30000, generator=g) * 1.2 - 0.1).numpy()]).astype(np.float32)
    x = np.resize(x, (len(x) // 3 // 64 * 64, 3))  # whole vector blocks, as on images
    ref = (truncate_to_8bit(linear_to_srgb(torch.from_numpy(x))) * 255).round().to(torch.uint8).numpy()
    out = np.empty(x.shape, np.uint8)
    flagged = linear_to_srgb_truncated(x.reshape(-1, 1, 3), out.reshape(-1, 1, 3))
    assert np.array_equal(out, ref)
    on_edge = np.flatnonzero(np.isin(x, near).any(axis=1))
    assert np.isin(on_edge, flagged).all() and len(flagged) < 0.1 * len(x)


@pytest.mark.parametrize("kind", ["scene", "noise"])
def test_colour_diffusion_fast_path_is_the_rounded_float_path(kind):
    """Its L*a*b* and blur are the float path's own values, so its truncations agree: the rounded float
    output exactly, the wrap's output stretch included (a truncation flip would be amplified by it)."""
    x = _images(kind)
    for profile in ("kadid", "arniqa"):
        for level in (1, 3.5, 5):
            ref, _ = apply_distortion(x, "color_diffusion", level, SEEDS, profile)
            fast, _ = apply_distortion(x, "color_diffusion", level, SEEDS, profile, out_dtype=torch.uint8)
            assert torch.equal(fast, (ref * 255).round().to(torch.uint8)), (profile, level)


def test_mix_of_small_groups_runs_them_side_by_side_with_the_same_output(monkeypatch):
    """A batch of many one- or two-image groups (every kadid distortion with a uint8 path, and one
    without) runs its groups on the threads (``map_jobs``) and gives each image what it gets alone."""
    from synthiqa.distortions import chains as chains_module

    names = [n for n in FAST if "kadid" in _profiles(n)] + ["jpeg2000"]
    base = _images("scene")
    x = base[torch.arange(len(names) + 4) % 3]
    chains = [(ChainOp(names[i % len(names)], float(1 + i % 5)),) for i in range(len(x) - 1)] + [()]
    seeds = list(range(len(x)))
    alone = [apply_chains(x[i:i + 1], chains[i:i + 1], seeds[i:i + 1], "kadid", torch.uint8)
             for i in range(len(x))]
    calls = []
    monkeypatch.setattr(chains_module, "map_jobs", lambda jobs: calls.append(len(jobs)) or map_jobs(jobs))
    torch.set_num_threads(2)  # the fixture restores the count
    out, records = apply_chains(x, chains, seeds, "kadid", torch.uint8)
    assert calls == [len(names)]
    for i, (image, rec) in enumerate(alone):
        assert torch.equal(out[i], image[0]) and records[i] == rec[0], chains[i]


def test_map_jobs_runs_every_job_once_and_raises_the_first_error():
    done = []
    map_jobs([lambda i=i: done.append(i) for i in range(7)])
    assert sorted(done) == list(range(7))

    def fail():
        raise ValueError("job failed")

    with pytest.raises(ValueError, match="job failed"):
        map_jobs([fail, lambda: None, lambda: None])


def test_mix_on_an_expanded_reference_reads_it_in_place():
    """Groups of non-consecutive images on one image expanded (stride 0): each run of a group is read from
    the broadcast view and written to its rows; the same output as on copies of the image."""
    one = _images("scene")[0].permute(1, 2, 0).contiguous().permute(2, 0, 1)  # channels-last [3,H,W]
    names = ["gaussian_blur", "jpeg2000", "darken", "white_noise"]
    chains = [(ChainOp(names[i % len(names)], 3.0),) for i in range(10)]
    expanded = one.unsqueeze(0).expand(len(chains), -1, -1, -1)
    copies = expanded.contiguous(memory_format=torch.channels_last)
    torch.set_num_threads(2)  # the fixture restores the count
    ref, ref_rec = apply_chains(copies, chains, 5, "kadid", torch.uint8)
    out, rec = apply_chains(expanded, chains, 5, "kadid", torch.uint8)
    assert torch.equal(out, ref) and rec == ref_rec


def test_linear_to_lab_into_scratch_is_bit_identical():
    from synthiqa.distortions.colorspace import linear_to_lab, srgb_to_linear

    g = torch.Generator().manual_seed(3)
    for shape in ((1, 3, 40, 48), (2, 3, 37, 41)):
        linear = srgb_to_linear(torch.rand(shape, generator=g) * 1.1 - 0.05)
        assert torch.equal(linear_to_lab(linear, reuse=True), linear_to_lab(linear))


def test_map_jobs_inside_a_job_runs_serially():
    """A nested call (a job that applies another mix) must not wait on the pool its own thread is in."""
    import threading

    torch.set_num_threads(2)  # the fixture restores the count
    done = []

    def outer() -> None:
        seen: list[int] = []
        map_jobs([lambda: seen.append(threading.get_ident())] * 3)
        assert seen == [threading.get_ident()] * 3
        done.append(1)

    map_jobs([outer] * 4)
    assert len(done) == 4


def test_map_images_threads_take_the_next_index_so_a_held_thread_holds_up_nothing():
    """The thread holding an index that waits until every other index is done: the other threads take
    them all (a fixed share per thread would leave the held thread's share undone, so the wait ran out)."""
    import threading

    from synthiqa.distortions.fastpath import map_images

    torch.set_num_threads(2)  # the fixture restores the count
    n = 9
    rest_done = threading.Event()
    done, waited = [], []
    lock = threading.Lock()

    def fn(i: int) -> None:
        if i == 0:
            waited.append(rest_done.wait(timeout=20))
        with lock:
            done.append(i)
            if len(done) == n - 1 and 0 not in done:
                rest_done.set()

    map_images(n, fn)
    assert waited == [True] and sorted(done) == list(range(n))


def test_map_images_one_torch_thread_runs_each_threads_torch_work_alone_and_restores_the_count():
    """With ``one_torch_thread`` every thread doing an index runs torch on one thread (two threads
    doing images side by side do not also split each operation over two); the caller's count comes back."""
    import threading

    from synthiqa.distortions.fastpath import map_images

    torch.set_num_threads(2)  # the fixture restores the count
    seen: dict[int, int] = {}
    lock = threading.Lock()

    def fn(i: int) -> None:
        with lock:
            seen[i] = torch.get_num_threads()

    map_images(6, fn, one_torch_thread=True)
    assert seen == dict.fromkeys(range(6), 1) and torch.get_num_threads() == 2
    map_images(6, fn)
    assert seen == dict.fromkeys(range(6), 2)  # without it the pool's threads keep torch's count
