"""Benchmark suites end to end on tiny LIVE, KADID-10k and generated-set trees built here."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from scipy.ndimage import gaussian_filter

from synthiqa.benchmarks.protocols import ProtocolSpec
from synthiqa.benchmarks.suite import (
    ModelSpec,
    Suite,
    load_suite,
    results_markdown,
    run_suite,
    with_dataset_paths,
)
from synthiqa.cli import main
from synthiqa.errors import ConfigError, SynthiqaError


def texture(seed: int, size: int = 48) -> np.ndarray:
    """A smooth random colour texture, uint8 ``size x size x 3``."""
    rng = np.random.default_rng(seed)
    img = gaussian_filter(rng.uniform(0, 255, (size, size, 3)), sigma=(3, 3, 0)) * 3 - 255
    return np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)


def distort(ref: np.ndarray, kind: str, level: int, seed: int) -> np.ndarray:
    x = ref.astype(np.float64)
    if kind == "noise":
        x = x + np.random.default_rng(seed).normal(0, 6 * level, x.shape)
    else:
        x = gaussian_filter(x, sigma=(0.6 * level, 0.6 * level, 0))
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(float) - b.astype(float)) ** 2)))


def _save(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def make_live_tree(root, refs=3, levels=(1, 2, 3)):
    """LIVE.txt form; DMOS (lower is better) decreases with the pair's PSNR."""
    rows, k = [], 0
    for r in range(refs):
        ref = texture(r)
        _save(root / "refimgs" / f"ref{r}.bmp", ref)
        for folder, kind in (("wn", "noise"), ("gblur", "blur")):
            for lv in levels:
                k += 1
                img = distort(ref, kind, lv, seed=100 + k)
                _save(root / folder / f"img{k}.bmp", img)
                rows.append((f"LIVE/{folder}/img{k}.bmp", folder, f"LIVE/refimgs/ref{r}.bmp",
                             round(100 - 2 * psnr(img, ref), 4)))
    pd.DataFrame(rows, columns=["dis_img_path", "dis_type", "ref_img_path", "score"]).to_csv(
        root / "LIVE.txt", index=False)


def make_kadid_tree(root, refs=3, levels=(1, 2, 3)):
    """KADID layout (types 1 = blur, 11 = noise); MOS (higher is better) grows with the pair's PSNR."""
    rows = []
    for r in range(1, refs + 1):
        ref = texture(50 + r)
        _save(root / "images" / f"I{r:02d}.png", ref)
        for tid, kind in ((1, "blur"), (11, "noise")):
            for lv in levels:
                name = f"I{r:02d}_{tid:02d}_{lv:02d}.png"
                img = distort(ref, kind, lv, seed=10 * r + lv)
                _save(root / "images" / name, img)
                rows.append((name, f"I{r:02d}.png", round(1 + psnr(img, ref) / 12, 4), 0.1))
    pd.DataFrame(rows, columns=["dist_img", "ref_img", "dmos", "var"]).to_csv(root / "dmos.csv", index=False)


def make_generated_tree(root, refs=4, levels=(1, 2, 3, 4)):
    """A generated-set folder (manifest.parquet + dataset.json) with a level-based label."""
    rows = []
    for r in range(refs):
        ref = texture(200 + r, size=64)
        _save(root / "references" / f"r{r}.png", ref)
        for kind in ("noise", "blur"):
            for lv in levels:
                rel = f"images/r{r}_{kind}_{lv}.png"
                _save(root / rel, distort(ref, kind, lv, seed=r * 10 + lv))
                rows.append({"image": rel, "reference": f"references/r{r}.png", "scene": f"r{r}",
                             "dist_type": kind, "dist_group": kind, "level": float(lv),
                             "level_quality": 100.0 - 20 * lv})
    pd.DataFrame(rows).to_parquet(root / "manifest.parquet", index=False)
    info = {"name": "tiny", "labels": {"level_quality": {"low": 0, "high": 100, "lower_better": False}},
            "primary_label": "level_quality"}
    (root / "dataset.json").write_text(json.dumps(info))


FR_SUITE = {
    "name": "tiny_fr", "seed": 3, "n_boot": 50, "models": ["psnr", "ssim"],
    "datasets": [{"name": "live", "kind": "live"}, {"name": "kadid10k", "kind": "kadid10k"}],
    "protocols": [{"name": "intra", "n_splits": 2, "ratios": [0.34, 0.33, 0.33]},
                  {"name": "cross", "train": "kadid10k", "test": ["live"]}],
}


def test_live_and_kadid_paths_with_fr_metrics_through_the_cli(tmp_path):
    make_live_tree(tmp_path / "live")
    make_kadid_tree(tmp_path / "kadid")
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(yaml.safe_dump(FR_SUITE))
    out = tmp_path / "res"
    with pytest.raises(SystemExit) as done:
        main(["bench", "run", str(suite_file), "--out", str(out), "--live", str(tmp_path / "live"),
              "--kadid", str(tmp_path / "kadid")])
    assert done.value.code == 0
    table = pd.read_parquet(out / "results.parquet")
    assert len(pd.read_csv(out / "results.csv")) == len(table)
    assert list(table.columns) == ["model", "dataset", "protocol", "split", "subset", "dist_type", "metric",
                                   "mode", "value", "ci_low", "ci_high", "n"]
    overall = table[(table["dist_type"] == "all") & (table["metric"] == "srcc")]
    psnr_rows = overall[overall["model"] == "psnr"]
    # LIVE's DMOS is lower-better and KADID's MOS higher-better: both must correlate positively.
    assert set(psnr_rows["dataset"]) == {"live", "kadid10k"}
    assert (psnr_rows["value"] > 0.9).all()
    cross = table[table["protocol"] == "cross_from_kadid10k"]
    assert set(cross["dataset"]) == {"live"} and set(cross["split"]) == {"kadid10k->live"}
    assert cross[(cross["metric"] == "srcc") & (cross["dist_type"] == "all")]["n"].unique().tolist() == [18]
    modes = set(map(tuple, table[table["metric"].isin(["plcc", "rmse"])][["metric", "mode"]].values))
    assert {("plcc", "raw"), ("plcc", "4pl"), ("rmse", "raw"), ("rmse", "4pl")} <= modes
    assert {"white_noise", "gaussian_blur"} <= set(table["dist_type"])
    srcc_all = table[(table["metric"] == "srcc") & (table["dist_type"] == "all")]
    assert (srcc_all["ci_low"] <= srcc_all["value"]).all()
    assert (srcc_all["value"] <= srcc_all["ci_high"]).all()
    md = (out / "results.md").read_text()
    assert "| psnr | live | intra | 2 |" in md and "Median test SRCC per distortion type" in md
    preds = pd.read_parquet(out / "predictions.parquet")
    assert set(preds["subset"]) == {"test"} and preds["pred"].notna().all()


def test_rerun_with_same_seed_gives_same_numbers_and_resumes(tmp_path):
    make_generated_tree(tmp_path / "gen")
    suite = Suite.from_dict({
        "name": "repro", "seed": 11, "n_boot": 30,
        "models": ["psnr", {"name": "brisque", "options": {"c_grid": [1, 10], "gamma_grid": [0.1]}}],
        "datasets": [{"name": "gen", "kind": "synthiqa", "root": str(tmp_path / "gen")}],
        "protocols": [{"name": "intra", "n_splits": 2, "ratios": [0.5, 0.25, 0.25]}, {"name": "loto"},
                      {"name": "loro", "models": ["psnr"]}],
    })
    first = run_suite(suite, tmp_path / "a", log=lambda m: None, progress=False)
    second = run_suite(suite, tmp_path / "b", log=lambda m: None, progress=False)
    a = pd.read_parquet(tmp_path / "a" / "results.parquet")
    b = pd.read_parquet(tmp_path / "b" / "results.parquet")
    pd.testing.assert_frame_equal(a, b)
    assert first.computed == second.computed == 2 * 2 + 2 * 2 + 4 and not first.failures
    loro = a[a["protocol"] == "loro"]
    assert set(loro["model"]) == {"psnr"} and len(set(loro["split"])) == 4
    assert "leave_out_scene=r0" in set(loro["split"])
    # brisque is trained: its val subset is reported separately, and clusters come from a GMM on features
    brisque = a[a["model"] == "brisque"]
    assert {"val", "test"} <= set(brisque["subset"])
    assert brisque[brisque["metric"] == "purity_type"]["mode"].str.startswith("gmm_diag_k").all()
    assert np.load(tmp_path / "a" / "embeddings_brisque.npz")["embedding"].shape[1] == 36
    again = run_suite(suite, tmp_path / "a", log=lambda m: None, progress=False)
    assert again.computed == 0 and again.reused == first.computed
    pd.testing.assert_frame_equal(a, pd.read_parquet(tmp_path / "a" / "results.parquet"))
    other_seed = run_suite(Suite.from_dict({**suite.to_dict(), "seed": 12}), tmp_path / "a",
                           log=lambda m: None, progress=False)
    assert other_seed.reused == 0


def test_missing_datasets_are_skipped_unless_asked_for(tmp_path, capsys):
    make_generated_tree(tmp_path / "gen", refs=3, levels=(1, 3))
    suite = Suite.from_dict({
        "name": "skip", "n_boot": 0, "models": ["psnr"],
        "datasets": [{"name": "live", "kind": "live"},
                     {"name": "gen", "kind": "synthiqa", "root": str(tmp_path / "gen")}],
        "protocols": [{"name": "intra", "n_splits": 1, "ratios": [0.34, 0.33, 0.33]},
                      {"name": "cross", "train": "live"}],
    })
    messages = []
    run_suite(suite, tmp_path / "out", log=messages.append, progress=False)
    assert any("dataset live: no folder given (--live PATH" in m for m in messages)
    assert any("protocol cross_from_live" in m for m in messages)
    with pytest.raises(SynthiqaError, match="dataset live"):
        run_suite(with_dataset_paths(suite, {"live": ("live", str(tmp_path / "nowhere"))}), tmp_path / "o2",
                  log=messages.append, progress=False)
    with pytest.raises(SystemExit) as done:
        main(["bench", "run", "quick", "--out", str(tmp_path / "o3"), "--kadid", str(tmp_path / "nowhere")])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "error: dataset kadid10k" in err and "Traceback" not in err


def test_suite_yaml_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmodels: [psnr]\nprotocols: [intra]\nbogus: 1\n")
    with pytest.raises(ConfigError, match="unknown key"):
        load_suite(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_suite(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="unknown protocol"):
        Suite.from_dict({"models": ["psnr"], "protocols": ["bogus"]})
    with pytest.raises(ConfigError, match="distinct"):
        Suite("x", [ModelSpec("psnr"), ModelSpec("psnr")], [], [ProtocolSpec("intra")])
    quick = load_suite("quick")
    assert quick.builtin_data == "quick" and {m.name for m in quick.models} >= {"psnr", "niqe", "brisque"}
    standard = load_suite("standard")
    assert {p.label for p in standard.protocols} == {"intra", "cross_from_synthetic", "cross_from_kadid10k",
                                                     "loto"}
    assert all(d.root is None and not d.required for d in standard.datasets)


def test_results_markdown_reports_median_and_spread():
    rows = [{"model": "m", "dataset": "d", "protocol": "intra", "split": f"s{i}", "subset": "test",
             "dist_type": "all", "metric": metric, "mode": mode, "value": v, "ci_low": np.nan,
             "ci_high": np.nan, "n": 10}
            for i, v in enumerate([0.5, 0.7, 0.9]) for metric, mode in (("srcc", "raw"), ("plcc", "4pl"))]
    suite = Suite.from_dict({"name": "t", "models": ["psnr"], "protocols": ["intra"]})
    md = results_markdown(pd.DataFrame(rows), suite)
    assert "| m | d | intra | 3 | 0.700 ±0.163 |" in md


def test_every_cell_fits_a_clone_of_one_unfitted_prototype(tmp_path, monkeypatch):
    import synthiqa.benchmarks.suite as suite_module

    make_generated_tree(tmp_path / "gen")
    clones = []
    real_clone = suite_module.clone

    def recording_clone(prototype):
        copy = real_clone(prototype)
        clones.append((prototype, copy))
        return copy

    monkeypatch.setattr(suite_module, "clone", recording_clone)
    suite = Suite.from_dict({
        "name": "clones", "seed": 5, "n_boot": 0,
        "models": [{"name": "brisque", "options": {"c_grid": [1], "gamma_grid": [0.1]}}],
        "datasets": [{"name": "gen", "kind": "synthiqa", "root": str(tmp_path / "gen")}],
        "protocols": [{"name": "intra", "n_splits": 2, "ratios": [0.5, 0.25, 0.25]}],
    })
    summary = run_suite(suite, tmp_path / "out", log=lambda m: None, progress=False)
    assert summary.computed == len(clones) == 2
    (prototype, first), (again, second) = clones
    assert prototype is again and first is not second  # one prototype, a fresh model per cell
    assert not hasattr(prototype, "svr_") and hasattr(first, "svr_") and hasattr(second, "svr_")
    assert first.get_params() == second.get_params() == {"c_grid": [1], "gamma_grid": [0.1], "epsilon": 0.01}


def test_model_options_from_the_command_line_and_the_reference_sweep(tmp_path, capsys):
    from synthiqa.reports.html import build_report

    make_generated_tree(tmp_path / "gen")
    refs = tmp_path / "two_refs"
    for r in range(2):
        _save(refs / f"p{r}.png", texture(300 + r, size=64))
    suite_file = tmp_path / "sweep.yaml"
    suite_file.write_text(yaml.safe_dump({
        "name": "sweep", "seed": 2, "n_boot": 40, "embeddings": False,
        "models": [{"name": "niqe", "label": "niqe_2", "family": "niqe", "references": 2,
                    "options": {"patch_size": 32, "reference_dir": str(tmp_path / "nowhere")}},
                   {"name": "niqe", "label": "niqe_all", "family": "niqe", "references": 4,
                    "options": {"patch_size": 32}}, "psnr"],
        "datasets": [{"name": "gen", "kind": "synthiqa"}],
        "protocols": [{"name": "intra", "n_splits": 2, "ratios": [0.5, 0.25, 0.25]}]}))
    out = tmp_path / "res"
    args = ["bench", "run", str(suite_file), "--out", str(out), "--synthetic", str(tmp_path / "gen")]
    with pytest.raises(SystemExit) as done:
        main([*args, "--set", f"niqe_2.reference_dir={refs}", "--set", "psnr.batch_size=4"])
    assert done.value.code == 0
    capsys.readouterr()
    table = pd.read_parquet(out / "results.parquet")
    assert set(table["model"]) == {"niqe_2", "niqe_all", "psnr"}  # niqe_2 found its folder from --set
    suite = json.loads((out / "suite.json").read_text())
    assert [m["options"].get("reference_dir") for m in suite["models"]][0] == str(refs)
    md = (out / "results.md").read_text()
    assert "## SRCC and PLCC with 95% bootstrap intervals" in md
    sweep = md.split("## SRCC against the number of training references")[1]
    rows = [line for line in sweep.splitlines() if line.startswith("| niqe |")]
    assert [line.split(" | ")[3] for line in rows] == ["2", "4"]
    assert all("[" in line and "]" in line for line in rows)  # each SRCC with its interval
    html = build_report(out).read_text()
    assert (out / "figures" / "reference_sweep.png").is_file()
    assert "SRCC against the number of training references" in html and "SRCC [95% CI]" in html
    for bad, message in ((["--set", "nobody.patch_size=32"], "has no model 'nobody'"),
                         (["--set", "patch_size=32"], "expected MODEL.OPTION=VALUE")):
        with pytest.raises(SystemExit) as done:
            main([*args, *bad])
        err = capsys.readouterr().err
        assert done.value.code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert ModelSpec("psnr", references=3, family="f").numbers_key() == ModelSpec("psnr").numbers_key()
    with pytest.raises(ConfigError, match="references must be a positive"):
        ModelSpec.from_dict({"name": "psnr", "references": 0})


def test_the_real_photographs_suite_names_its_models_and_sweeps_references():
    suite = load_suite("real")
    keys = {m.key for m in suite.models}
    assert all(set(p.models) <= keys for p in suite.protocols)
    sweep = {(m.family, m.references) for m in suite.models if m.references}
    assert sweep == {(f, n) for f in ("niqe_sharp", "arniqa", "arniqa_hybrid") for n in (24, 100, 500)}
    arniqa = {m.key: m.options for m in suite.models if m.name == "arniqa"}
    assert {k: o["scene_statistics"] for k, o in arniqa.items()} == {
        **{f"arniqa_{n}": False for n in (24, 100, 500)}, **{f"hybrid_{n}": True for n in (24, 100, 500)}}
    assert all(o["encoder_checkpoint"].endswith("/last.pt") for o in arniqa.values())
    assert {p.label for p in suite.protocols} == {"intra", "cross_from_synthetic"}
    assert {d.name for d in suite.datasets} == {"real", "synthetic"}


def test_bench_predict_times_each_model_on_files_of_the_size_asked(capsys):
    with pytest.raises(SystemExit) as done:
        main(["bench", "predict", "--images", "3", "--size", "96x64", "--threads", "1"])
    out = capsys.readouterr().out
    assert done.value.code == 0 and "3 PNG images of 96x64 px" in out and "1 threads" in out
    rows = {cells[0]: cells[1:] for line in out.splitlines()
            if len(cells := [c.strip() for c in line.strip("│┃ ").split("│")]) == 5}
    assert rows["niqe"][:2] == ["0", "3"]  # 64 px high: under NIQE's 96 px patch, counted as skipped
    assert rows["brisque"][:2] == ["3", "0"] and float(rows["brisque"][3]) > 0
    with pytest.raises(SystemExit) as done:
        main(["bench", "predict", "--checkpoint", "missing.pt"])
    assert done.value.code == 2 and "missing.pt: checkpoint not found" in capsys.readouterr().err
