"""KADID-10k types 1-10 (blur, colour, compression) under the kadid and arniqa profiles."""

import io

import kornia
import numpy as np
import pytest
import torch
from PIL import Image

from synthiqa.distortions import LevelTable, apply_distortion, get_distortion, list_distortions
from synthiqa.distortions.color import quantize_palette_dither, wu_palette
from synthiqa.distortions.colorspace import lab_to_rgb, rgb_to_lab
from synthiqa.distortions.compression import JPEG, decode_image, encode_jpeg2000, encode_jpeg_libjpeg
from synthiqa.distortions.filters import (
    disk_kernel,
    filter2d,
    gaussian_kernel1d,
    gaussian_size,
    motion_kernel,
    separable_filter,
)
from synthiqa.errors import DistortionInputError

NAMES = ["gaussian_blur", "lens_blur", "motion_blur", "color_diffusion", "color_shift", "color_quantization",
         "color_saturation_hsv", "color_saturation_lab", "jpeg2000", "jpeg"]
CASES = [(n, p) for p in ("kadid", "arniqa") for n in NAMES
         if not (p == "arniqa" and n == "color_quantization")]
FILTER_BASED = ["gaussian_blur", "lens_blur", "motion_blur", "color_diffusion", "color_shift",
                "color_saturation_lab"]


def _texture(h=48, w=64, seed=0):
    """A colourful textured image: a red chirp, a smooth green wave (so a larger colour shift always
    moves green further from itself), a blue ramp, a sharp edge and a little noise."""
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    r = 0.5 + 0.35 * torch.sin(xx * xx / 60.0) * torch.cos(yy * yy / 50.0)
    g = 0.5 + 0.4 * torch.sin(xx / 23.0 + yy / 31.0)
    b = (xx / w) * 0.8 + 0.1
    img = torch.stack([r, g, b])
    img[:, :, w // 2:] = img[:, :, w // 2:] * 0.6 + 0.3 * (yy[:, w // 2:] > h / 2)
    noise = torch.rand(3, h, w, generator=torch.Generator().manual_seed(seed))
    return (img + 0.05 * (noise - 0.5)).clamp(0, 1)


@pytest.fixture(scope="module")
def image():
    return _texture()


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny tensors: one intra-op thread avoids OpenMP stalls on a busy shared machine (results do not
    depend on the thread count; test_codec_thread_pool checks the threaded codec path)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_registry_and_tables():
    assert set(NAMES) <= set(list_distortions("kadid"))
    assert set(NAMES) - {"color_quantization"} <= set(list_distortions("arniqa"))
    assert "color_quantization" not in list_distortions("arniqa")
    assert get_distortion("gaublur", "arniqa").name == "gaussian_blur"
    assert get_distortion("colorsat2", "arniqa").name == "color_saturation_lab"
    j2k_kadid = get_distortion("jpeg2000", "kadid").table.params["ratio"]
    j2k_arniqa = get_distortion("jpeg2000", "arniqa").table.params["ratio"]
    assert list(j2k_kadid) == [16, 32, 45, 120, 400]
    assert list(j2k_arniqa) == [16, 32, 45, 120, 170]
    assert list(get_distortion("jpeg", "kadid").table.params["quality"]) == [43, 36, 24, 7, 4]
    hsv = get_distortion("color_saturation_hsv", "kadid").table.params["factor"]
    assert list(hsv) == [.4, .2, .1, 0, -.4]
    assert list(get_distortion("color_quantization", "kadid").table.params["colors"]) == [64, 48, 32, 16, 8]
    for name in NAMES:
        info = get_distortion(name, "kadid").info()
        assert info["description"] and isinstance(info["exact_on"], list)


def test_kernel_golden_values():
    sizes = [gaussian_kernel1d(s).size for s in (0.1, 0.5, 1, 2, 5)]
    assert sizes == [3, 3, 5, 9, 21]
    assert gaussian_kernel1d(0.1).tolist() == [0.0, 1.0, 0.0]  # eps-cut taps: level 1 is the identity
    assert [gaussian_size(1.5 * a + 2) for a in (1, 3, 6, 8, 12)] == [15, 27, 45, 57, 81]
    # fspecial('disk', 1) as printed by MATLAB
    np.testing.assert_allclose(disk_kernel(1), [[.0251, .1453, .0251], [.1453, .3183, .1453],
                                                [.0251, .1453, .0251]], atol=1e-4)
    np.testing.assert_allclose(disk_kernel(2)[:3, :3], [[0, .0170, .0381], [.0170, .0784, .0796],
                                                        [.0381, .0796, .0796]], atol=1e-4)
    assert [disk_kernel(r).shape[0] for r in (1, 2, 4, 6, 8)] == [3, 5, 9, 13, 17]
    assert all((disk_kernel(r) >= 0).all() for r in (1, 2, 4, 6, 8))
    # fspecial('motion', 3, 45) as printed by MATLAB; ('motion', 4, 0) by hand from its definition
    np.testing.assert_allclose(motion_kernel(3, 45), [[0, .0754, .1883], [.0754, .3215, .0754],
                                                      [.1883, .0754, 0]], atol=1e-4)
    np.testing.assert_allclose(motion_kernel(4, 0), [[.125, .25, .25, .25, .125]], atol=1e-12)
    assert motion_kernel(1, 37).shape == (1, 1)
    np.testing.assert_allclose(motion_kernel(10, 90), motion_kernel(10, 0).T, atol=1e-9)
    for k in (disk_kernel(6), motion_kernel(10, 33), gaussian_kernel1d(2)):
        assert abs(k.sum() - 1) < 1e-9
        np.testing.assert_allclose(k, k[::-1, ::-1] if k.ndim == 2 else k[::-1], atol=1e-12)


@pytest.mark.parametrize(("name", "profile"), CASES)
def test_shape_range_and_severity_grows(image, name, profile):
    d = get_distortion(name, profile)
    h, w = (96, 128) if name == "jpeg2000" else (48, 64)
    ref = _texture(h, w) if name == "jpeg2000" else image
    x = ref.expand(5, -1, -1, -1)
    out, params = d(x, [1, 2, 3, 4, 5], [11] * 5)  # same seed: same angle / direction at every level
    assert out.shape == x.shape and out.dtype == torch.float32
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    mad = (out - x).abs().mean(dim=(1, 2, 3)).tolist()
    if name == "jpeg2000":  # a 96x128 image reaches OpenJPEG's minimum stream size before ratio 120
        assert mad[0] < mad[1] < mad[2] <= mad[3] + 1e-6 and mad[3] <= mad[4] + 1e-6
    else:
        assert all(a < b for a, b in zip(mad, mad[1:], strict=False)), mad
    if name in ("gaussian_blur", "motion_blur"):
        assert mad[0] == 0.0  # sigma 0.1 / length 1 are the identity


@pytest.mark.parametrize(("name", "profile"), CASES)
def test_deterministic_and_independent_of_batch_mates(image, name, profile):
    d = get_distortion(name, profile)
    x = torch.stack([image, image.flip(-1), image.flip(-2), 1 - image])
    levels, seeds = [1.5, 3.0, 4.25, 5.0], [5, 6, 7, 8]
    full, params = d(x, levels, seeds)
    again, _ = d(x, levels, seeds)
    alone, p_alone = d(x[2:3], levels[2:3], seeds[2:3])
    assert torch.equal(full, again)
    assert torch.equal(full[2], alone[0])
    assert all(torch.equal(v[2], p_alone[k][0]) for k, v in params.items())


def test_codec_thread_pool_matches_serial(image):
    x = torch.stack([image, image.flip(-1), 1 - image, image.flip(-2)])
    for name in ("jpeg", "jpeg2000", "color_quantization"):
        d = get_distortion(name, "kadid")
        params = d.sample([1, 2, 4, 5], [0, 1, 2, 3])
        serial = d.apply(x, params)
        torch.set_num_threads(2)
        try:
            threaded = d.apply(x, params)
        finally:
            torch.set_num_threads(1)
        assert torch.equal(serial, threaded)


def test_fractional_levels_interpolate(image):
    blur = get_distortion("gaussian_blur", "kadid")
    assert blur.sample([2.5], [0])["sigma"].item() == pytest.approx(0.75)
    x = image.expand(3, -1, -1, -1)
    out, _ = blur(x, [2, 2.5, 3], [0, 0, 0])
    mad = (out - x).abs().mean(dim=(1, 2, 3)).tolist()
    assert mad[0] < mad[1] < mad[2]
    # integer parameters round half up: quality (7+4)/2 = 5.5 -> 6, radius (2+4)/2 = 3
    assert get_distortion("jpeg", "kadid").sample([4.5], [0])["quality"].item() == pytest.approx(5.5)
    jpeg = get_distortion("jpeg", "kadid")
    q6 = jpeg.apply(image[None], {"quality": torch.tensor([5.5])})
    ref = decode_image(encode_jpeg_libjpeg(_to_u8(image), 6))
    assert torch.equal(q6[0], torch.from_numpy(ref.copy()).permute(2, 0, 1).float() / 255)
    lens = get_distortion("lens_blur", "kadid")
    r3 = lens.apply(image[None], {"radius": torch.tensor([3.0])})
    r25 = lens.apply(image[None], {"radius": torch.tensor([2.5])})
    assert torch.equal(r3, r25)


def _to_u8(img):
    return (img * 255).round().to(torch.uint8).permute(1, 2, 0).numpy().copy()


def test_jpeg_bytes_equal_pillow_and_roundtrip(image):
    u8 = _to_u8(image)
    for q in (43, 36, 24, 7, 4):
        buf = io.BytesIO()
        Image.fromarray(u8).save(buf, format="JPEG", quality=q)
        assert encode_jpeg_libjpeg(u8, q) == buf.getvalue()
    out = get_distortion("jpeg", "kadid").apply(image[None], {"quality": torch.tensor([24.0])})
    buf = io.BytesIO()
    Image.fromarray(u8).save(buf, format="JPEG", quality=24)
    pil = np.array(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    assert torch.equal((out[0] * 255).round().to(torch.uint8), torch.from_numpy(pil).permute(2, 0, 1))


def test_torchvision_list_path_groups_by_quality(image):
    """The nvJPEG code path (list encode per quality, batched decode) run on the CPU, where torchvision
    uses libjpeg: it must equal the libjpeg codec sample by sample."""
    from synthiqa.distortions.compression import _libjpeg_roundtrip, batched_jpeg_roundtrip

    x = torch.stack([image, image.flip(-1), 1 - image, image.flip(-2)])
    qualities = [24, 7, 24, 43]
    assert torch.equal(batched_jpeg_roundtrip(x, qualities), _libjpeg_roundtrip(x, qualities))


def test_jpeg_codec_options(image):
    base = get_distortion("jpeg", "kadid").table
    kornia_jpeg = JPEG("kadid", LevelTable(base.params, {"codec": "kornia"}))
    exact, _ = get_distortion("jpeg", "kadid")(image[None], [3], [0])
    approx, _ = kornia_jpeg(image[None], [3], [0])
    assert approx.shape == exact.shape and (approx - exact).abs().mean() < 0.03
    with pytest.raises(DistortionInputError, match="nvjpeg"):
        JPEG("kadid", LevelTable(base.params, {"codec": "nvjpeg"}))(image[None], [3], [0])
    with pytest.raises(DistortionInputError, match="unknown codec"):
        JPEG("kadid", LevelTable(base.params, {"codec": "webp"}))(image[None], [3], [0])


def test_jpeg2000_equals_pillow_openjpeg(image):
    u8 = _to_u8(image)
    buf = io.BytesIO()
    Image.fromarray(u8).save(buf, format="JPEG2000", quality_mode="rates", quality_layers=[32.0],
                             num_resolutions=6, prog_order="LRCP")
    assert encode_jpeg2000(u8, 32) == buf.getvalue()
    pil = np.array(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    out = get_distortion("jpeg2000", "arniqa").apply(image[None], {"ratio": torch.tensor([32.0])})
    assert torch.equal((out[0] * 255).round().to(torch.uint8), torch.from_numpy(pil).permute(2, 0, 1))
    assert get_distortion("jpeg2000", "kadid").options["irreversible"] is True  # 9/7 wavelet for MATLAB
    assert encode_jpeg2000(u8, 32, irreversible=True) != buf.getvalue()


@pytest.mark.parametrize("name", FILTER_BASED)
def test_opencv_fast_path_matches_torch_reference(image, name):
    """float32 CPU input takes the OpenCV filters; float64 takes the batched torch reference."""
    d = get_distortion(name, "kadid")
    x = torch.stack([image, image.flip(-1)])
    params = d.sample([2, 5], [3, 4])
    fast = d.apply(x, params).clamp(0, 1)
    ref = d.apply(x.double(), {k: v.double() if v.is_floating_point() else v for k, v in params.items()})
    assert (fast.double() - ref.clamp(0, 1)).abs().max() <= 1 / 255 + 1e-6


def test_filters_backends_agree(image):
    x = torch.stack([image, image.flip(-1), 1 - image])
    disks = [disk_kernel(r) for r in (1, 4, 8)]
    lines = [motion_kernel(n, a) for n, a in ((2, 10), (6, 95), (10, 180))]
    gauss = [gaussian_kernel1d(s) for s in (0.5, 2, 20)]
    for f, ks in ((filter2d, disks), (filter2d, lines), (separable_filter, gauss)):
        assert (f(x, ks, "torch") - f(x, ks, "opencv")).abs().max() < 1e-5
        assert torch.equal(f(x, ks, "opencv")[1], f(x[1:2], ks[1:2], "opencv")[0])
    # the tall-stack OpenCV path equals OpenCV on each plane alone, bit for bit (odd sizes too)
    import cv2

    from synthiqa.distortions.filters import _cv2_planes

    planes = np.random.default_rng(0).random((5, 37, 50), dtype=np.float32)
    for k, sep in ((disk_kernel(8), False), (motion_kernel(10, 33), False), (gaussian_kernel1d(20.0), True)):
        k32 = k.astype(np.float32)
        for i in (0, 2, 4):
            alone = (cv2.sepFilter2D(planes[i], -1, k32, k32, borderType=cv2.BORDER_REPLICATE) if sep
                     else cv2.filter2D(planes[i], -1, k32, borderType=cv2.BORDER_REPLICATE))
            assert np.array_equal(_cv2_planes(planes, k, sep)[i], alone)
    k2d = np.outer(gaussian_kernel1d(2), gaussian_kernel1d(2))
    assert (filter2d(x, [k2d] * 3, "torch") - separable_filter(x, gauss[1:2] * 3, "torch")).abs().max() < 1e-5


def test_hsv_closed_form_equals_hsv_round_trip(image):
    d = get_distortion("color_saturation_hsv", "arniqa")
    x = torch.stack([image, 1 - image])
    for f in (0.4, 0.0, -0.4):
        ours = d.apply(x, {"factor": torch.tensor([f, f])}).clamp(0, 1)
        hsv = kornia.color.rgb_to_hsv(x)
        hsv = torch.cat([hsv[:, :1], hsv[:, 1:2] * f, hsv[:, 2:]], dim=1)
        assert (ours - kornia.color.hsv_to_rgb(hsv).clamp(0, 1)).abs().max() < 1e-5


def test_lab_helpers_match_kornia(image):
    x = torch.stack([image, 1 - image])
    lab = rgb_to_lab(x)
    assert (lab - kornia.color.rgb_to_lab(x)).abs().max() < 1e-3
    assert (lab_to_rgb(lab) - x).abs().max() < 1e-4
    lab[:, 1:] *= 5
    assert (lab_to_rgb(lab) - kornia.color.lab_to_rgb(lab)).abs().max() < 1e-4
    assert (lab_to_rgb(lab, clamp_negative_z=False) - lab_to_rgb(lab)).abs().max() > 0.01


def test_color_shift_arniqa_index_arithmetic(image):
    """ARNIQA pads by one component, rolls by the other and crops; check against that recipe."""
    d = get_distortion("color_shift", "arniqa")
    amount = torch.tensor([12.0])
    direction = torch.tensor([[0.8, 0.6]])  # shift (10, 7): the roll wraps around
    out = d.apply(image[None], {"amount": amount, "direction": direction})
    g = image[1]
    a0, a1 = 10, 7
    y = torch.nn.functional.pad(g[None, None], (a0, a0, a1, a1), mode="replicate")[0, 0]
    y = torch.roll(y, (a0, a1), dims=(0, 1))[a1:-a1, a0:-a0]
    moved_green = out[0, 1]
    # where the edge weight is 1 the output green is the moved green
    from synthiqa.distortions.color import edge_weight

    e = edge_weight(image[None], clip_and_stretch=False)[0, 0]
    assert torch.allclose(moved_green, y * e + g * (1 - e), atol=1e-6)
    assert torch.equal(out[0, 0], image[0]) and torch.equal(out[0, 2], image[2])


def test_color_shift_kadid_edge_weight_is_stretched(image):
    from synthiqa.distortions.color import _percentile, edge_weight

    ramp = torch.arange(1.0, 11.0).view(1, -1)  # MATLAB: prctile(1:10, [50 1 99 30]) = 5.5 1 10 3.5
    assert [_percentile(ramp, p).item() for p in (50, 1, 99, 30)] == pytest.approx([5.5, 1, 10, 3.5])

    e = edge_weight(image[None], clip_and_stretch=True)
    frac_lo = (e == 0).float().mean().item()
    frac_hi = (e == 1).float().mean().item()
    assert 0.005 <= frac_lo <= 0.05 and 0.005 <= frac_hi <= 0.05
    assert e.min() == 0 and e.max() == 1


def test_color_quantization_palette_size(image):
    d = get_distortion("color_quantization", "kadid")
    out, _ = d(image.expand(2, -1, -1, -1), [4, 5], [0, 1])
    for img, n in zip(out, (16, 8), strict=True):
        colours = torch.unique((img * 255).round().reshape(3, -1), dim=1)
        assert colours.shape[1] <= n


def test_color_quantization_kmeans_option(image):
    base = get_distortion("color_quantization", "kadid")
    kmeans = type(base)("kadid", LevelTable(base.table.params, {"method": "kmeans"}))
    x = torch.stack([image, image.flip(-1), 1 - image])
    out, _ = kmeans(x, [1, 4, 5], [0, 1, 2])
    alone, _ = kmeans(x[2:], [5], [2])
    assert torch.equal(out[2], alone[0])
    exact, _ = base(x, [1, 4, 5], [0, 1, 2])
    for i, n in enumerate((64, 16, 8)):
        assert torch.unique((out[i] * 255).round().reshape(3, -1), dim=1).shape[1] <= n
        err, ref = (out[i] - x[i]).abs().mean(), (exact[i] - x[i]).abs().mean()
        assert 0.5 * ref < err < 2 * ref
    with pytest.raises(DistortionInputError, match="unknown method"):
        type(base)("kadid", LevelTable(base.table.params, {"method": "octree"}))(x, [1, 1, 1], [0, 1, 2])


def test_wu_palette_recovers_a_few_colours_exactly():
    cols = np.array([[10, 20, 30], [200, 40, 90], [90, 250, 5], [0, 0, 0]], dtype=np.uint8)
    img = cols[np.random.default_rng(0).integers(0, 4, (40, 48))]
    assert sorted(map(tuple, wu_palette(img, 8).tolist())) == sorted(map(tuple, cols.tolist()))
    assert np.array_equal(quantize_palette_dither(img, 8), img)  # nothing to diffuse
    two = wu_palette(img, 2)
    assert len(two) == 2 and len(wu_palette(np.full((8, 8, 3), 77, np.uint8), 8)) == 1


def test_lab_ops_truncate_to_8bit_grid(image):
    for name in ("color_diffusion", "color_saturation_lab"):
        out, _ = get_distortion(name, "arniqa")(image[None], [3], [0])
        assert torch.equal(out * 255, (out * 255).round())


def test_through_the_kadid_chain_engine(image):
    x = image.expand(2, -1, -1, -1)
    for name in NAMES:
        out, rec = apply_distortion(x, name, [2, 4], seeds=3, profile="kadid")
        assert out.shape == x.shape and rec[0][0]["name"] == name
