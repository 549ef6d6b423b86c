"""Dataset loaders on tiny fixture trees: LIVE (mat, LIVE.txt), KADID-10k, CSV, generated sets, errors."""

import io
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.io import savemat

from synthiqa.datasets import get_dataset_kind, list_dataset_kinds, load_dataset
from synthiqa.datasets.kinds.kadid import KADID_TYPES, parse_kadid_name
from synthiqa.datasets.kinds.live import LIVE_FOLDERS
from synthiqa.errors import DatasetError


def _bmp() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(buf, format="BMP")
    return buf.getvalue()


BMP = _bmp()
REFS = ("bikes.bmp", "house.bmp", "womanhat.bmp")


def _write(path, data=BMP):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def make_live(root, sizes, seed=0):
    """LIVE release tree with ``sizes[folder]`` entries per folder; every 5th entry is a reference copy."""
    n = sum(sizes.values())
    rng = np.random.default_rng(seed)
    realigned = rng.uniform(-3, 103, n)
    original = rng.uniform(1, 100, n)
    orgs = (np.arange(n) % 5 == 4).astype(np.float64)
    names = np.empty((1, n), dtype=object)
    for i in range(n):
        names[0, i] = REFS[i % len(REFS)]
    savemat(root / "dmos_realigned.mat", {"dmos_new": realigned[None], "orgs": orgs[None],
                                          "dmos_std": np.full((1, n), 7.5)})
    savemat(root / "dmos.mat", {"dmos": original[None], "orgs": orgs[None]})
    savemat(root / "refnames_all.mat", {"refnames_all": names})
    for folder, _ in LIVE_FOLDERS:
        for k in range(1, sizes.get(folder, 0) + 1):
            _write(root / folder / f"img{k}.bmp")
    for ref in REFS:
        _write(root / "refimgs" / ref)
    return realigned, original, orgs


SMALL = {"jp2k": 4, "jpeg": 3, "wn": 3, "gblur": 2, "fastfading": 3}


def test_registry_lists_kinds_and_declares_scores():
    assert {"live", "kadid10k", "csv", "synthiqa"} <= set(list_dataset_kinds())
    live = get_dataset_kind("live").score_info
    assert live.lower_better and (live.low, live.high) == (0.0, 100.0)
    kadid = get_dataset_kind("kadid10k").score_info
    assert not kadid.lower_better and (kadid.low, kadid.high) == (1.0, 5.0)


def test_unknown_kind_and_option_give_one_line_errors(tmp_path):
    with pytest.raises(DatasetError, match="did you mean kadid10k") as err:
        load_dataset("kadid", tmp_path)
    assert "\n" not in str(err.value)
    with pytest.raises(DatasetError, match="no option colour.*dmos"):
        load_dataset("live", tmp_path, colour=1)
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset("kadid10k", tmp_path / "nowhere")


def test_live_full_release_order_realigned_by_default(tmp_path):
    realigned, original, orgs = make_live(tmp_path, dict(LIVE_FOLDERS))
    ds = load_dataset("live", tmp_path)
    assert len(ds) == 982 - int(orgs.sum()) and ds.score_info.name == "dmos_realigned"
    by_index = {r.extra["live_index"]: r for r in ds.records}
    # entry -> file: jp2k 1..227, jpeg 228..460, wn 461..634, gblur 635..808, fastfading 809..982
    for index, path, dtype, group in [(1, "jp2k/img1.bmp", "jpeg2000", "jpeg"),
                                      (227, "jp2k/img227.bmp", "jpeg2000", "jpeg"),
                                      (228, "jpeg/img1.bmp", "jpeg", "jpeg"),
                                      (461, "wn/img1.bmp", "white_noise", "noise"),
                                      (636, "gblur/img2.bmp", "gaussian_blur", "blur"),
                                      (982, "fastfading/img174.bmp", "fast_fading", "jpeg")]:
        rec = by_index[index]
        assert rec.image == tmp_path / path
        assert (rec.dist_type, rec.dist_group, rec.level) == (dtype, group, None)
        assert rec.score == pytest.approx(realigned[index - 1])
        assert rec.score_norm == pytest.approx(1 - realigned[index - 1] / 100)
        assert rec.reference == tmp_path / "refimgs" / REFS[(index - 1) % 3]
        assert rec.scene == REFS[(index - 1) % 3][:-4]
        assert rec.extra["dmos_std"] == 7.5
    assert 5 not in by_index and 10 not in by_index  # orgs == 1: reference copies dropped
    original_ds = load_dataset("live", tmp_path, dmos="original")
    assert original_ds.score_info.name == "dmos"
    assert original_ds.records[0].score == pytest.approx(original[0])


def test_live_lower_is_better_normalises_to_higher_is_better(tmp_path):
    realigned, _, orgs = make_live(tmp_path, SMALL)
    ds = load_dataset("live", tmp_path, folder_sizes=SMALL)
    assert len(ds) == sum(SMALL.values()) - int(orgs.sum())
    best = min(ds.records, key=lambda r: r.score)
    worst = max(ds.records, key=lambda r: r.score)
    assert best.score_norm == max(r.score_norm for r in ds.records)
    assert worst.score_norm == min(r.score_norm for r in ds.records)
    assert any(r.score < 0 and r.score_norm > 1 for r in ds.records) or realigned.min() >= 0


def test_live_small_copy_needs_folder_sizes(tmp_path):
    make_live(tmp_path, SMALL)
    with pytest.raises(DatasetError, match="15 entries, not the published 982"):
        load_dataset("live", tmp_path)
    with pytest.raises(DatasetError, match="add up to 14"):
        load_dataset("live", tmp_path, folder_sizes={**SMALL, "jp2k": 3})


def test_live_missing_images_are_listed_once(tmp_path):
    make_live(tmp_path, SMALL)
    (tmp_path / "jpeg" / "img1.bmp").unlink()  # entry 5: a reference copy (orgs == 1), not needed
    (tmp_path / "jpeg" / "img2.bmp").unlink()
    (tmp_path / "wn" / "img2.bmp").unlink()
    with pytest.raises(DatasetError) as err:
        load_dataset("live", tmp_path, folder_sizes=SMALL)
    assert str(err.value) == "live dmos_realigned.mat: 2 images missing, first: jpeg/img2.bmp, wn/img2.bmp"
    (tmp_path / "refimgs" / "house.bmp").unlink()
    _write(tmp_path / "jpeg" / "img2.bmp")
    _write(tmp_path / "wn" / "img2.bmp")
    with pytest.raises(DatasetError, match="refnames_all.mat: 1 reference images missing, first: refimgs/h"):
        load_dataset("live", tmp_path, folder_sizes=SMALL)


def test_live_txt_form_strips_prefix(tmp_path):
    rows = [("LIVE/jp2k/img1.bmp", "jp2k", "LIVE/refimgs/bikes.bmp", -2.64),
            ("LIVE/wn/img3.bmp", "wn", "LIVE/refimgs/house.bmp", 55.0),
            ("LIVE/fastfading/img2.bmp", "fastfading", "LIVE/refimgs/bikes.bmp", 101.5)]
    for dis, _, ref, _ in rows:
        _write(tmp_path / dis.removeprefix("LIVE/"))
        _write(tmp_path / ref.removeprefix("LIVE/"))
    pd.DataFrame(rows, columns=["dis_img_path", "dis_type", "ref_img_path", "score"]).to_csv(
        tmp_path / "LIVE.txt", index=False)
    ds = load_dataset("live", tmp_path)  # no mat files: auto picks LIVE.txt
    assert [r.image for r in ds.records] == [tmp_path / d.removeprefix("LIVE/") for d, *_ in rows]
    assert [r.dist_type for r in ds.records] == ["jpeg2000", "white_noise", "fast_fading"]
    assert [r.scene for r in ds.records] == ["bikes", "house", "bikes"]
    assert ds.records[0].score_norm == pytest.approx(1.0264)
    with pytest.raises(DatasetError, match="realigned DMOS only"):
        load_dataset("live", tmp_path, dmos="original")


def make_kadid(root, refs=3, types=(1, 10), data=b"not an image"):
    """KADID tree; image files are not images, so loading passes only if nothing is decoded."""
    rows = []
    for r in range(1, refs + 1):
        _write(root / "images" / f"I{r:02d}.png", data)
        for t in types:
            for lv in range(1, 6):
                name = f"I{r:02d}_{t:02d}_{lv:02d}.png"
                _write(root / "images" / name, data)
                rows.append((name, f"I{r:02d}.png", round(5.0 - 0.7 * lv + 0.1 * r, 3), 0.5))
    table = pd.DataFrame(rows, columns=["dist_img", "ref_img", "dmos", "var"])
    table.to_csv(root / "dmos.csv", index=False)
    return table


def test_kadid_types_levels_and_direction(tmp_path):
    table = make_kadid(tmp_path)
    ds = load_dataset("kadid10k", tmp_path)
    assert len(ds) == 3 * 2 * 5 and ds.score_info.name == "mos" and not ds.score_info.lower_better
    rec = next(r for r in ds.records if r.image.name == "I02_10_04.png")
    assert (rec.dist_type, rec.dist_group, rec.level, rec.scene) == ("jpeg", "jpeg", 4.0, "I02")
    assert rec.reference == tmp_path / "images" / "I02.png"
    assert rec.score == pytest.approx(5.0 - 2.8 + 0.2)
    assert rec.score_norm == pytest.approx((rec.score - 1) / 4)
    assert {r.dist_type for r in ds.records} == {"gaussian_blur", "jpeg"}
    assert {r.level for r in ds.records} == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert [r.image.name for r in ds.records] == table["dist_img"].tolist()


def test_kadid_type_table_matches_registry_and_groups():
    assert sorted(KADID_TYPES) == list(range(1, 26))
    assert {g for _, g in KADID_TYPES.values()} == {
        "blur", "color_distortion", "jpeg", "noise", "brightness_change", "spatial_distortion",
        "sharpness_contrast"}
    assert parse_kadid_name("I81_25_05.png") == (81, 25, 5) and parse_kadid_name("I81.png") is None
    from synthiqa.distortions.registry import DISTORTIONS

    for name, cls in DISTORTIONS.items():
        if cls.kadid_id is not None:
            assert KADID_TYPES[cls.kadid_id] == (name, cls.group)


def test_kadid_missing_images_and_columns(tmp_path):
    make_kadid(tmp_path, refs=1)
    for name in ("I01_01_01.png", "I01_01_02.png", "I01_10_05.png", "I01_01_03.png"):
        (tmp_path / "images" / name).unlink()
    with pytest.raises(DatasetError) as err:
        load_dataset("kadid10k", tmp_path)
    assert str(err.value) == ("kadid10k dmos.csv: 4 images missing, first: images/I01_01_01.png, "
                              "images/I01_01_02.png, images/I01_01_03.png, ...")
    pd.DataFrame({"dist_img": ["I01_01_01.png"], "ref_img": ["I01.png"], "mos": [3.0]}).to_csv(
        tmp_path / "dmos.csv", index=False)
    with pytest.raises(DatasetError, match="dmos.csv: missing columns dmos, var"):
        load_dataset("kadid10k", tmp_path)


def test_kadid_bad_names_and_scores(tmp_path):
    make_kadid(tmp_path, refs=1)
    table = pd.read_csv(tmp_path / "dmos.csv")
    table.loc[2, "dist_img"] = "I01_26_01.png"
    table.to_csv(tmp_path / "dmos.csv", index=False)
    with pytest.raises(DatasetError, match=r"1 dist_img names .* row 3 \('I01_26_01.png'\)"):
        load_dataset("kadid10k", tmp_path)
    table = pd.read_csv(tmp_path / "dmos.csv").iloc[:2]
    table["dmos"] = table["dmos"].astype(object)
    table.loc[1, "dmos"] = "n/a"
    table.to_csv(tmp_path / "dmos.csv", index=False)
    with pytest.raises(DatasetError, match=r"1 scores missing or not numbers, first: row 2 \('n/a'\)"):
        load_dataset("kadid10k", tmp_path)


def _csv_tree(root, scores, lower_better_name="mos"):
    rows = []
    for i, s in enumerate(scores):
        _write(root / "imgs" / f"a{i}.bmp")
        rows.append({"image": f"imgs/a{i}.bmp", lower_better_name: s, "ref": f"refs/r{i % 2}.bmp"})
    for j in range(2):
        _write(root / "refs" / f"r{j}.bmp")
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)
    return root / "labels.csv"


def test_csv_mos_and_dmos_directions(tmp_path):
    path = _csv_tree(tmp_path, [1.0, 3.0, 5.0])
    mos = load_dataset("csv", path, mos_range=(1, 5), lower_better=False)
    assert [r.score_norm for r in mos.records] == [0.0, 0.5, 1.0]
    assert mos.root == tmp_path and mos.name == "labels"
    assert mos.records[1].reference == tmp_path / "refs" / "r1.bmp" and mos.records[1].scene == "refs/r1.bmp"
    dmos = load_dataset("csv", path, mos_range=(0, 10), lower_better=True, score_name="dmos")
    assert [r.score_norm for r in dmos.records] == [0.9, 0.7, 0.5]
    assert dmos.score_info.name == "dmos" and dmos.score_info.lower_better
    inferred = load_dataset("csv", path, lower_better=True, infer_range=True)
    assert (inferred.score_info.low, inferred.score_info.high) == (1.0, 5.0)
    assert [r.score_norm for r in inferred.records] == [1.0, 0.5, 0.0]


def test_data_specs_carry_loader_options(tmp_path):
    from synthiqa.datasets.spec import load_data_spec, parse_data_spec
    from synthiqa.errors import ConfigError

    assert parse_data_spec("live:/data/LIVE") == ("live", "/data/LIVE", {})
    assert parse_data_spec("runs/kodak-grid") == ("synthiqa", "runs/kodak-grid", {})
    assert parse_data_spec("csv:s.csv?lower_better=false&mos_range=0,100&score_name=dmos&x=2") == (
        "csv", "s.csv", {"lower_better": False, "mos_range": (0.0, 100.0), "score_name": "dmos", "x": 2})
    odd = tmp_path / "a?b"  # an existing path is taken as it is, even with a '?' in its name
    odd.mkdir()
    assert parse_data_spec(str(odd)) == ("synthiqa", str(odd), {})
    path = _csv_tree(tmp_path, [1.0, 3.0, 5.0])
    kind, ds = load_data_spec(f"csv:{path}?mos_range=1,5&lower_better=false")
    assert kind == "csv" and [r.score_norm for r in ds.records] == [0.0, 0.5, 1.0]
    with pytest.raises(ConfigError, match="not NAME=VALUE"):
        parse_data_spec(f"csv:{path}?lower_better")
    with pytest.raises(DatasetError, match="has no option colour"):
        load_data_spec(f"csv:{path}?colour=1&lower_better=true&infer_range=true")
    with pytest.raises(ConfigError, match="--label only applies to generated sets"):
        load_data_spec(f"csv:{path}?lower_better=true&infer_range=true", label="fr_pseudo_mos")


def test_csv_requires_declared_direction_and_range(tmp_path):
    path = _csv_tree(tmp_path, [1.0, 2.0])
    with pytest.raises(DatasetError, match="declare the score direction"):
        load_dataset("csv", path, mos_range=(1, 5))
    with pytest.raises(DatasetError, match="declare the score range.*infer_range=True"):
        load_dataset("csv", path, lower_better=False)
    with pytest.raises(DatasetError, match="low < high"):
        load_dataset("csv", path, mos_range=(5, 1), lower_better=False)


def test_csv_custom_columns_and_image_root(tmp_path):
    data = tmp_path / "data"
    _write(data / "x" / "p.bmp")
    _write(data / "x" / "q.bmp")
    labels = tmp_path / "meta" / "koniq.csv"
    labels.parent.mkdir()
    pd.DataFrame({"name": ["x/p.bmp", "x/q.bmp"], "MOS_zscore": [40.0, 80.0]}).to_csv(labels, index=False)
    ds = load_dataset("csv", labels, image_col="name", score_col="MOS_zscore", mos_range=(0, 100),
                      lower_better=False, image_root=str(data))
    assert ds.root == data and [r.image for r in ds.records] == [data / "x/p.bmp", data / "x/q.bmp"]
    assert [r.scene for r in ds.records] == ["x/p.bmp", "x/q.bmp"] and ds.records[0].reference is None
    with pytest.raises(DatasetError, match="missing column ref_path"):
        load_dataset("csv", labels, image_col="name", score_col="MOS_zscore", mos_range=(0, 100),
                     lower_better=False, image_root=str(data), ref_col="ref_path")


def test_paths_escaping_the_root_are_refused(tmp_path):
    root = tmp_path / "set"
    _write(tmp_path / "x.png")
    _write(root / "ok.png")
    pd.DataFrame({"image": ["ok.png", "../x.png"], "mos": [1.0, 2.0]}).to_csv(root / "l.csv", index=False)
    with pytest.raises(DatasetError, match=r"csv l.csv line 3: path '../x.png' resolves outside"):
        load_dataset("csv", root / "l.csv", mos_range=(1, 5), lower_better=False)
    pd.DataFrame({"image": ["ok.png", str(tmp_path / "x.png")], "mos": [1.0, 2.0]}).to_csv(
        root / "l.csv", index=False)
    with pytest.raises(DatasetError, match="line 3: path .* resolves outside"):
        load_dataset("csv", root / "l.csv", mos_range=(1, 5), lower_better=False)


def make_generated(root, split=True, extra_columns=True):
    """A generated set per the writer's contract: 2 scenes x (pristine + 2 chains)."""
    rows = []
    for s, scene in enumerate(("astronaut", "coffee")):
        _write(root / "references" / f"{scene}.png")
        for c, (chain, dtype, group, level) in enumerate([
                ("pristine", "pristine", "pristine", 0.0),
                ("gaussian_blur:3", "gaussian_blur", "blur", 3.0),
                ("gaussian_blur:2>jpeg:4", "gaussian_blur>jpeg", "blur>jpeg", 4.0)]):
            image = f"images/{scene}_{c}.png"
            _write(root / image)
            row = {"image": image, "reference": f"references/{scene}.png", "scene": scene, "chain": chain,
                   "dist_type": dtype, "dist_group": group, "level": level,
                   "level_quality": 1.0 - level / 5, "fr_pseudo_mos": 80.0 - 10 * level - s}
            if extra_columns:
                row.update({"n_distortions": chain.count(">") + (chain != "pristine"), "seed": 100 + c,
                            "params_json": "{}", "fr_haarpsi": 0.9 - 0.1 * level,
                            "split": ("train" if s == 0 else "test") if split else ""})
            rows.append(row)
    pd.DataFrame(rows).to_parquet(root / "manifest.parquet", index=False)
    info = {"profile": "kadid", "mode": "chains", "seed": 7, "counts": {"images": 6}, "version": 1,
            "primary_label": "level_quality",
            "labels": {"level_quality": {"low": 0, "high": 1, "lower_better": False},
                       "fr_pseudo_mos": {"low": 0, "high": 100, "lower_better": False}}}
    (root / "dataset.json").write_text(json.dumps(info))


def test_generated_set_labels_and_fields(tmp_path):
    make_generated(tmp_path)
    ds = load_dataset("synthiqa", tmp_path)
    assert len(ds) == 6 and ds.score_info.name == "level_quality"
    rec = ds.records[2]
    assert rec.image == tmp_path / "images/astronaut_2.png"
    assert rec.reference == tmp_path / "references/astronaut.png" and rec.scene == "astronaut"
    assert (rec.dist_type, rec.dist_group, rec.level) == ("gaussian_blur>jpeg", "blur>jpeg", 4.0)
    assert rec.score == pytest.approx(0.2) and rec.score_norm == pytest.approx(0.2)
    assert rec.extra["chain"] == "gaussian_blur:2>jpeg:4" and rec.extra["split"] == "train"
    assert rec.extra["fr_pseudo_mos"] == pytest.approx(40.0) and isinstance(rec.extra["seed"], int)
    fr = load_dataset("synthiqa", tmp_path, label="fr_pseudo_mos")
    assert fr.score_info.high == 100 and fr.records[2].score_norm == pytest.approx(0.4)
    assert "level_quality" in fr.records[2].extra
    with pytest.raises(DatasetError, match="unknown label 'haarpsi'; this set has: level_quality, fr_pseudo"):
        load_dataset("synthiqa", tmp_path, label="haarpsi")


def test_generated_set_without_optional_columns(tmp_path):
    make_generated(tmp_path, extra_columns=False)
    table = pd.read_parquet(tmp_path / "manifest.parquet").drop(columns=["scene", "reference", "dist_group"])
    table.to_parquet(tmp_path / "manifest.parquet", index=False)
    ds = load_dataset("synthiqa", tmp_path)
    assert ds.records[0].reference is None and ds.records[0].dist_group is None
    assert ds.records[0].scene == "images/astronaut_0.png"  # no scene, no reference: the image is its scene
    table.drop(columns=["level_quality"]).to_parquet(tmp_path / "manifest.parquet", index=False)
    with pytest.raises(DatasetError, match="manifest.parquet: missing column level_quality"):
        load_dataset("synthiqa", tmp_path)


def test_generated_set_refuses_escaping_paths_and_missing_json(tmp_path):
    make_generated(tmp_path)
    table = pd.read_parquet(tmp_path / "manifest.parquet")
    table.loc[4, "reference"] = "../../etc/passwd"
    table.to_parquet(tmp_path / "manifest.parquet", index=False)
    with pytest.raises(DatasetError, match="manifest.parquet row 5: path '../../etc/passwd' resolves out"):
        load_dataset("synthiqa", tmp_path)
    (tmp_path / "dataset.json").unlink()
    with pytest.raises(DatasetError, match="dataset.json not found"):
        load_dataset("synthiqa", tmp_path)


def test_symlinked_image_folder_is_allowed(tmp_path):
    elsewhere = tmp_path / "big_disk"
    make_kadid(elsewhere, refs=1)
    root = tmp_path / "kadid"
    root.mkdir()
    (root / "images").symlink_to(elsewhere / "images", target_is_directory=True)
    (root / "dmos.csv").write_bytes((elsewhere / "dmos.csv").read_bytes())
    ds = load_dataset("kadid10k", root)
    assert len(ds) == 10 and ds.records[0].image == root / "images" / "I01_01_01.png"


def test_csv_half_keeps_a_fixed_half_by_the_file_name_digest(tmp_path):
    import hashlib

    names = [f"img{i}.png" for i in range(24)]
    for name in names:
        Image.new("RGB", (8, 8), (len(name), 0, 0)).save(tmp_path / name)
    pd.DataFrame({"image": names, "mos": np.linspace(10, 90, len(names))}).to_csv(tmp_path / "s.csv",
                                                                                  index=False)
    halves = {h: {r.image.name for r in load_dataset("csv", tmp_path / "s.csv", mos_range=(0, 100),
                                                     lower_better=False, half=h).records} for h in "ab"}
    even = {n for n in names if int(hashlib.sha1(n.encode("utf-8")).hexdigest(), 16) % 2 == 0}
    assert halves["a"] == even and halves["b"] == set(names) - even and even and set(names) - even
    with pytest.raises(DatasetError, match="half must be one of a, b"):
        load_dataset("csv", tmp_path / "s.csv", mos_range=(0, 100), lower_better=False, half="c")
