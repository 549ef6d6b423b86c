"""Reference scanning and decoding: formats, modes, EXIF, bad files, size limits, names."""

import numpy as np
import pytest
from PIL import Image

from synthiqa.datasets.references import (
    ReferenceSkipped,
    decode_reference,
    normalise_reference,
    parse_crop,
    reference_names,
    scan_references,
)
from synthiqa.errors import ConfigError, DatasetError


def _rgb(w=40, h=36, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_scan_is_recursive_sorted_and_names_are_unique(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / ".hidden").mkdir()
    Image.fromarray(_rgb()).save(tmp_path / "b.png")
    Image.fromarray(_rgb()).save(tmp_path / "a.png")
    Image.fromarray(_rgb()).save(tmp_path / "a.jpg")
    Image.fromarray(_rgb()).save(tmp_path / "sub" / "a.webp")
    Image.fromarray(_rgb()).save(tmp_path / ".hidden" / "x.png")
    res = scan_references(tmp_path)
    assert [r.name for r in res.references] == ["a_jpg", "a_png", "b", "sub__a"]
    assert res.skipped == []
    assert res.references[0].size == (40, 36)


def test_bad_files_are_skipped_with_one_reason_each(tmp_path):
    Image.fromarray(_rgb()).save(tmp_path / "good.png")
    (tmp_path / "zero.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image at all")
    (tmp_path / "readme.md").write_text("# refs")
    Image.fromarray(_rgb(20, 64)).save(tmp_path / "small.png")
    Image.fromarray(_rgb(400, 300)).save(tmp_path / "huge.png")
    lines = []
    res = scan_references(tmp_path, max_pixels=100_000, warn=lines.append)
    reasons = dict(res.skipped)
    assert [r.name for r in res.references] == ["good"]
    assert "0 bytes" in reasons["zero.png"] and "not an image" in reasons["readme.md"]
    assert "minimum side" in reasons["small.png"] and "decompression-bomb" in reasons["huge.png"]
    assert "text.png" in reasons
    assert len(lines) == 5 and all("\n" not in line for line in lines)


def test_missing_folder_and_crop_syntax_give_one_line_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        scan_references(tmp_path / "nope")
    assert parse_crop("64x48") == (64, 48) and parse_crop(None) is None
    for bad in ("64", "64x", "0x48", "axb", "16x16"):
        with pytest.raises(ConfigError, match="--crop"):
            parse_crop(bad)


def test_truncated_file_is_found_at_decode(tmp_path):
    path = tmp_path / "t.png"
    Image.fromarray(_rgb(64, 64)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ReferenceSkipped, match="truncated|corrupt"):
        decode_reference(path)


def test_sixteen_bit_grey_palette_cmyk_alpha_and_exif(tmp_path):
    grey16 = (np.arange(40 * 36, dtype=np.uint16).reshape(36, 40) * 40)
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    out = decode_reference(tmp_path / "g16.png")
    assert out.shape == (36, 40, 3) and out.dtype == np.uint8
    assert np.array_equal(out[..., 0], np.rint(grey16 / 257).astype(np.uint8))
    assert np.array_equal(out[..., 0], out[..., 2])

    pal = Image.fromarray(_rgb()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.save(tmp_path / "p.png")
    assert np.array_equal(decode_reference(tmp_path / "p.png"), np.asarray(pal.convert("RGB")))

    Image.fromarray(_rgb()).convert("CMYK").save(tmp_path / "c.jpg")
    assert decode_reference(tmp_path / "c.jpg").shape == (36, 40, 3)

    rgba = np.zeros((36, 40, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, :20, 3] = 255  # left half opaque red, right half fully transparent -> white
    Image.fromarray(rgba).save(tmp_path / "a.png")
    out = decode_reference(tmp_path / "a.png")
    assert tuple(out[0, 0]) == (200, 0, 0) and tuple(out[0, 39]) == (255, 255, 255)

    img = Image.fromarray(_rgb(40, 36))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    img.save(tmp_path / "r.jpg", exif=exif, quality=95)
    out = decode_reference(tmp_path / "r.jpg")
    assert out.shape == (40, 36, 3)
    res = scan_references(tmp_path, crop=(36, 40))
    assert {r.name: r.size for r in res.references}["r"] == (36, 40)


def test_bmp_and_tiff_decode(tmp_path):
    arr = _rgb()
    Image.fromarray(arr).save(tmp_path / "x.bmp")
    Image.fromarray(arr).save(tmp_path / "x.tif")
    assert np.array_equal(decode_reference(tmp_path / "x.bmp"), arr)
    assert np.array_equal(decode_reference(tmp_path / "x.tif"), arr)


def test_normalise_shrinks_never_enlarges_and_crops_centred():
    arr = _rgb(200, 100)
    out = normalise_reference(arr, max_side=100)
    assert out.shape == (50, 100, 3)
    assert normalise_reference(arr, max_side=400).shape == (100, 200, 3)
    crop = normalise_reference(arr, crop=(64, 64))
    assert crop.shape == (64, 64, 3)
    exact = normalise_reference(arr, crop=(200, 40))
    assert np.array_equal(exact, arr[30:70])
    with pytest.raises(ReferenceSkipped, match="smaller than the crop"):
        normalise_reference(arr, crop=(256, 64))
    with pytest.raises(ReferenceSkipped, match="minimum side"):
        normalise_reference(_rgb(400, 40), max_side=200)


def test_reference_names_are_safe_and_stable():
    from pathlib import Path

    names = reference_names([Path("a b/c.png"), Path("x.PNG"), Path("x.png")])
    assert names[0] == "a_b__c" and len(set(names)) == 3


def test_models_and_grid_decode_files_as_references_are_decoded(tmp_path):
    from synthiqa.models.data import read_rgb
    from synthiqa.reports.grid import load_image

    rgba = np.zeros((40, 48, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, np.linspace(0, 255, 48).astype(np.uint8)  # alpha ramp over red
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(path)
    expected = decode_reference(path)
    assert expected[0, 0].tolist() == [255, 255, 255] and expected[0, -1].tolist() == [200, 0, 0]  # on white
    assert np.array_equal(read_rgb(path).permute(1, 2, 0).numpy(), expected)
    assert np.array_equal((load_image(path) * 255).round().byte().permute(1, 2, 0).numpy(), expected)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match="bad.png: not a readable image"):
        read_rgb(tmp_path / "bad.png")
    with pytest.raises(DatasetError, match="missing.png: image file does not exist"):
        read_rgb(tmp_path / "missing.png")
