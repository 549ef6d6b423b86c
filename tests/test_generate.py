"""synthiqa generate / merge: outputs, manifest contract, resume, shards, bad input (own tiny profile)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from synthiqa.datasets.generate import GenerateConfig, generate, merge, plan_jobs
from synthiqa.datasets.generation import chunk, encoding, output
from synthiqa.datasets.generation import plan as planning
from synthiqa.datasets.references import Reference
from synthiqa.distortions import Distortion, LevelTable, Profile, register_distortion, register_profile
from synthiqa.distortions.registry import unregister_distortion
from synthiqa.distortions.rng import normal_field
from synthiqa.errors import ConfigError, DatasetError

PROFILE = "test_gen"


class _Blur(Distortion):
    name = "test_gen_blur"
    group = "blur"
    tables = {PROFILE: LevelTable({"radius": (1, 2, 3, 4, 5)})}

    def apply(self, images, params):
        out = []
        for img, r in zip(images, params["radius"].round().long().tolist(), strict=True):
            k = 2 * r + 1
            out.append(torch.nn.functional.avg_pool2d(img[None], k, 1, r, count_include_pad=False))
        return torch.cat(out)


class _Noise(Distortion):
    name = "test_gen_noise"
    group = "noise"
    tables = {PROFILE: LevelTable({"sigma": (0.02, 0.04, 0.08, 0.12, 0.2)})}

    def draw(self, rng, levels):
        return {"field_seed": rng.seeds_for_fields()}

    def apply(self, images, params):
        noise = normal_field(params["field_seed"], images.shape[1:], images.device)
        return images + params["sigma"].view(-1, 1, 1, 1).to(images) * noise


class _Dark(Distortion):
    name = "test_gen_dark"
    group = "brightness_change"
    tables = {PROFILE: LevelTable({"gain": (0.9, 0.8, 0.7, 0.6, 0.5)})}

    def apply(self, images, params):
        return images * params["gain"].view(-1, 1, 1, 1).to(images)


@pytest.fixture(scope="module", autouse=True)
def _test_profile():
    """A three-type profile registered only while this module's tests run."""
    from synthiqa.distortions import registry

    register_profile(Profile(name=PROFILE, description="tests of synthiqa generate"))
    for cls in (_Blur, _Noise, _Dark):
        register_distortion(cls)
    yield
    for cls in (_Blur, _Noise, _Dark):
        unregister_distortion(cls.name)
    registry.PROFILES.unregister(PROFILE)


def _refs(folder, n=3, size=(48, 40)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        base = np.linspace(0, 255, size[0] * size[1] * 3).reshape(size[1], size[0], 3)
        arr = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"ref{i}.png")
    return folder


def _cfg(tmp_path, refs, out="out", **kw):
    base = dict(out=str(tmp_path / out), ref_dir=str(refs), profile=PROFILE, mode="basic", per_image=3,
                seed=7, batch_size=3, workers=2, device="cpu", labels=("level", "fr"))
    base.update(kw)
    return GenerateConfig(**base)


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    return _refs(tmp_path_factory.mktemp("refs"))


@pytest.fixture(scope="module")
def basic_run(tmp_path_factory, refs):
    tmp = tmp_path_factory.mktemp("basic")
    summary = generate(_cfg(tmp, refs))
    return tmp / "out", summary


def test_basic_mode_writes_every_file_with_the_contract_columns(basic_run):
    out, summary = basic_run
    assert summary.images_total == 3 * (3 + 1) and summary.references == 3
    for name in ("manifest.parquet", "labels.csv", "meta_info.csv", "dataset.json"):
        assert (out / name).is_file()
    assert not (out / "dmos.csv").exists()
    m = pd.read_parquet(out / "manifest.parquet")
    expected = ["image", "reference", "scene", "source_file", "image_id", "chain", "dist_type", "dist_group",
                "level", "n_distortions", "seed", "params_json", "severity", "level_quality", "fr_pseudo_mos",
                "fr_haarpsi", "fr_mdsi", "fr_vsi", "fr_ms_gmsd", "split"]
    assert list(m.columns) == expected
    assert all((out / p).is_file() for p in m["image"]) and all((out / p).is_file() for p in m["reference"])
    pristine = m[m["n_distortions"] == 0]
    assert len(pristine) == 3 and set(pristine["chain"]) == {"pristine"}
    assert (pristine["level"] == 0).all() and (pristine["level_quality"] == 100).all()
    assert pristine["fr_pseudo_mos"].min() > 99.9
    dist = m[m["n_distortions"] == 1]
    assert dist["severity"].between(0.2, 1.0).all()
    assert np.allclose(dist["level"], 5 * dist["severity"])
    assert (dist["fr_pseudo_mos"] < 100).all()
    # pristine copy equals the reference pixels
    row = pristine.iloc[0]
    pixels = [np.asarray(Image.open(out / row[c])) for c in ("image", "reference")]
    assert np.array_equal(*pixels)
    # every drawn parameter is recorded and types cycle without repeats (3 draws from 3 types)
    params = [json.loads(p) for p in dist["params_json"]]
    noise = [p[0] for p in params if p[0]["name"] == "test_gen_noise"]
    assert noise and all("field_seed" in p and "sigma" in p for p in noise)
    for _, group in dist.groupby("scene"):
        assert group["dist_type"].nunique() == 3


def test_splits_are_reference_disjoint_and_label_files_agree(basic_run):
    out, _ = basic_run
    m = pd.read_parquet(out / "manifest.parquet")
    assert (m.groupby("scene")["split"].nunique() == 1).all()
    assert set(m["split"]) <= {"train", "val", "test"}
    labels = pd.read_csv(out / "labels.csv")
    assert list(labels.columns) == ["image_path", "mos"]
    assert labels["image_path"].tolist() == m["image"].tolist()
    assert np.allclose(labels["mos"], m["fr_pseudo_mos"])
    meta = pd.read_csv(out / "meta_info.csv")
    assert list(meta.columns) == ["ref_name", "dist_name", "mos"]
    info = json.loads((out / "dataset.json").read_text())
    assert info["primary_label"] == "fr_pseudo_mos" and info["mode"] == "basic" and info["seed"] == 7
    assert info["labels"]["fr_mdsi"]["lower_better"] is True
    assert info["labels"]["level_quality"] == {"low": 0.0, "high": 100.0, "lower_better": False}
    assert info["counts"]["images"] == 12 and info["counts"]["pristine"] == 3


def test_generated_set_loads_with_the_synthiqa_loader(basic_run):
    from synthiqa.datasets.kinds.generated import load_generated

    out, _ = basic_run
    ds = load_generated(out)
    assert len(ds) == 12 and ds.score_info.name == "fr_pseudo_mos"


def test_grid_mode_is_kadid_shaped(tmp_path, refs):
    summary = generate(_cfg(tmp_path, refs, mode="grid", labels=("level",), batch_size=4))
    out = summary.out
    assert summary.images_total == 3 * 3 * 5
    dmos = pd.read_csv(out / "dmos.csv")
    assert list(dmos.columns) == ["dist_img", "ref_img", "dmos", "var"]
    assert dmos["dist_img"].iloc[0] == "I01_01_01.png" and dmos["ref_img"].iloc[0] == "I01.png"
    assert dmos["dmos"].between(1, 5).all()
    assert (out / "images" / dmos["ref_img"].iloc[0]).is_file()
    m = pd.read_parquet(out / "manifest.parquet")
    assert sorted(m["level"].unique()) == [1, 2, 3, 4, 5]
    assert np.allclose(m["level_quality"], 100 - 16 * m["level"])
    assert m["scene"].iloc[0] == "ref0" and m["reference"].iloc[0] == "references/I01.png"


def test_chains_mode_respects_max_chain_and_distinct_groups(tmp_path, refs):
    cfg = _cfg(tmp_path, refs, mode="chains", per_image=6, max_chain=2, labels=("level",))
    summary = generate(cfg)
    m = pd.read_parquet(summary.out / "manifest.parquet")
    assert len(m) == 18 and m["n_distortions"].max() <= 2
    for groups in m["dist_group"]:
        parts = groups.split(">")
        assert len(parts) == len(set(parts))
    multi = m[m["n_distortions"] == 2]
    if len(multi):
        row = multi.iloc[0]
        q = 1.0
        for step in json.loads(row["params_json"]):
            q *= (100 - 16 * step["level"]) / 100
        assert row["level_quality"] == pytest.approx(100 * q)


def test_jobs_depend_only_on_reference_name_and_options(tmp_path, refs):
    cfg = _cfg(tmp_path, refs).resolved()
    a = plan_jobs("ref1", "ref1", cfg)
    b = plan_jobs("ref1", "ref1", cfg)
    assert a == b and a != plan_jobs("ref2", "ref2", cfg)
    assert [j.index for j in a] == [0, 1, 2, 3]


def test_shards_merged_equal_a_single_run_byte_for_byte(tmp_path, refs, basic_run):
    single, _ = basic_run
    for i in (1, 2):
        generate(_cfg(tmp_path, refs, out=f"shard{i}", shard=(i, 2), workers=3 - i))  # processes, pipeline
    merge([tmp_path / "shard1", tmp_path / "shard2"], tmp_path / "merged")
    assert _files(tmp_path / "merged") == _files(single)


def test_resume_after_interruption_equals_an_uninterrupted_run(tmp_path, refs, basic_run, monkeypatch):
    single, _ = basic_run
    calls = {"n": 0}
    real = output.write_part

    def crash_after_two(root, part, rows):
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt
        real(root, part, rows)

    monkeypatch.setattr(output, "write_part", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        generate(_cfg(tmp_path, refs, workers=1))  # in-process pipeline, so the patch applies
    monkeypatch.setattr(output, "write_part", real)
    assert not (tmp_path / "out" / "manifest.parquet").exists()
    # a temporary file left by a hard kill is cleaned up on resume
    (tmp_path / "out" / "images" / ".x.png.abc.tmp").write_bytes(b"partial")
    summary = generate(_cfg(tmp_path, refs, resume=True, batch_size=5))  # stored batch size wins
    assert summary.images_written == 12 - (3 + 1)  # two chunks (3 and 1 images of ref0) were done
    assert _files(tmp_path / "out") == _files(single)


def test_output_does_not_depend_on_workers(tmp_path, refs, basic_run):
    single, _ = basic_run
    generate(_cfg(tmp_path, refs, out="w1", workers=1, batch_size=1, labels=("level",)))
    a, b = _files(tmp_path / "w1"), _files(single)
    images = sorted(k for k in b if k.startswith(("images/", "references/")))
    assert sorted(k for k in a if k.startswith(("images/", "references/"))) == images
    assert all(a[k] == b[k] for k in images)


def test_bad_files_are_skipped_and_counted(tmp_path, refs):
    folder = _refs(tmp_path / "mixed", n=2)
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.txt").write_text("hello")
    (folder / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    Image.fromarray(np.zeros((16, 64, 3), np.uint8)).save(folder / "tiny.png")
    summary = generate(_cfg(tmp_path, folder, labels=("level",)))
    assert summary.references == 2
    assert {s[0] for s in summary.skipped} == {"empty.png", "notes.txt", "bad.jpg", "tiny.png"}


def test_resume_refuses_changed_options_and_a_used_folder(tmp_path, refs, basic_run):
    out, _ = basic_run
    with pytest.raises(ConfigError, match="--resume"):
        generate(_cfg(out.parent, refs))
    with pytest.raises(ConfigError, match="seed"):
        generate(_cfg(out.parent, refs, seed=8, resume=True))


def test_bad_input_gives_one_line_errors(tmp_path, refs, capsys):
    from synthiqa.cli import main

    cases = [
        ([str(tmp_path / "missing"), "--out", str(tmp_path / "o1")], "does not exist"),
        ([str(refs), "--out", str(tmp_path / "o2"), "--crop", "12by4"], "--crop"),
        ([str(refs), "--out", str(tmp_path / "o3"), "--shard", "3/2"], "--shard"),
        ([str(refs), "--out", str(tmp_path / "o4"), "--profile", "nope"], "unknown profile"),
        ([str(refs), "--out", str(tmp_path / "o5"), "--mode", "nope"], "--mode"),
        ([str(refs), "--out", str(tmp_path / "o6"), "--labels", "level,mos"], "--labels"),
    ]
    for args, text in cases:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            main(["generate", *args])
        err = capsys.readouterr().err.strip()
        assert exc.value.code == 2 and text in err and "\n" not in err and "Traceback" not in err, (args, err)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "a.txt").write_text("x")
    with pytest.raises(DatasetError, match="no usable reference"):
        generate(_cfg(tmp_path, empty, out="o7"))


@pytest.mark.parametrize("image_format", ["png", "bmp"])
def test_images_are_encoded_as_cv2_imwrite_writes_them_with_our_settings(tmp_path, image_format):
    import cv2

    rgb = np.random.default_rng(5).integers(0, 256, (21, 34, 3), dtype=np.uint8)
    path = str(tmp_path / f"cv2.{image_format}")
    cv2.imwrite(path, np.ascontiguousarray(rgb[..., ::-1]), encoding.encode_params(image_format))
    data = encoding.encode_image(rgb, image_format)
    assert data == (tmp_path / f"cv2.{image_format}").read_bytes()
    assert (cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[..., ::-1] == rgb).all()


def test_split_units_cover_every_chunk_once_in_order(tmp_path, refs):
    cfg = _cfg(tmp_path, refs, mode="grid", batch_size=2).resolved()
    work = []
    for k, name in enumerate(("a", "b")):
        plan = planning.RefPlan(Reference(name, None, (48, 40)), f"I{k}", plan_jobs(name, f"I{k}", cfg))
        chunks = tuple(planning.chunks(plan.jobs, cfg.batch_size))
        work.append(planning.WorkItem(plan, chunks, (tmp_path / f"{k}",)))
    units = planning.split_units(work, processes=3)
    assert [len(u.chunks) for u in units[-3:]] == [1, 1, 1]  # guided: the last units are single chunks
    for item in work:
        mine = [u for u in units if u.plan is item.plan]
        assert [c for u in mine for c in u.chunks] == list(item.chunks)
        assert [u.ref_files for u in mine] == [item.ref_files] + [()] * (len(mine) - 1)
    assert planning.split_units(work, processes=1) != units and len(planning.split_units(work[:1], 100)) == 8


def test_cpu_batches_keep_whole_chunks_in_order_within_the_byte_budget(monkeypatch):
    monkeypatch.setattr(chunk, "CPU_GROUP_BYTES", 10 * 100)
    chunks = tuple(tuple(range(k, k + n)) for k, n in ((0, 3), (3, 3), (6, 3), (9, 12), (21, 2)))
    batches = chunk.cpu_batches(chunks, image_bytes=100)
    assert [c for b in batches for c in b] == list(chunks)
    assert [sum(len(c) for c in b) for b in batches] == [9, 12, 2]  # a chunk over budget goes alone
