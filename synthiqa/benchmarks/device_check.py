"""The steps of ``scripts/device-check`` that need Python: the kadid mix's throughput, the per-distortion
comparison of two ``synthiqa generate`` runs (``--device cuda`` against ``--device cpu``), training
throughput, and the Markdown/JSON summary of a check's output folder.

Run as ``python -m synthiqa.benchmarks.device_check STEP ...`` (``mix``, ``compare``, ``train``,
``summary``); every step writes one JSON file that ``summary`` reads back. The script records each step's
status (ok, failed, skipped, timed out) in ``steps.tsv``; the summary states what could not run and why.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthiqa.atomic import atomic_write_text
from synthiqa.benchmarks.speed import SpeedConfig, _inputs, _median_seconds, parse_size
from synthiqa.distortions import ChainOp, apply_chains, list_distortions
from synthiqa.distortions.base import NUM_LEVELS
from synthiqa.models.registry import get_method

#: Agreement of a deterministic float-path distortion between two devices: the 99.9th percentile of the
#: per-pixel absolute difference in 8-bit steps (float32 differences between devices flip an occasional
#: rounding or truncation to the 1/255 grid, and the CPU's uint8 fast path is within 1/255 of the float
#: path, so two steps bound them; a whole-image disagreement such as a different palette exceeds it).
DEVICE_TOLERANCE_STEPS = 2.0
#: Distortions whose CUDA output differs from the CPU's by design: random fields drawn by the device's
#: own generator (the same seed, another stream), and nvJPEG's 4:4:4 chroma against libjpeg's 4:2:0.
RANDOM_FIELD_PARAM = "field_seed"
KNOWN_DIFFERENCES = {"jpeg": "nvJPEG encodes 4:4:4 chroma, libjpeg 4:2:0 (measured, not a failure)"}


def _json(path: str | Path, data: dict[str, Any]) -> None:
    atomic_write_text(str(path), json.dumps(data, indent=2, default=float) + "\n")


# -- the kadid mix ------------------------------------------------------------------------------------
def mix_throughput(device: str, size: tuple[int, int] = (512, 384), batch: int = 256, repeats: int = 3,
                   dtype: str = "float") -> dict[str, Any]:
    """Images/s of ``apply_chains`` on the whole kadid mix without JPEG2000 (one op per image, levels
    cycling 1..5), median of ``repeats`` runs after a warm-up; ``dtype`` ``float`` or ``uint8`` in/out."""

    dev = torch.device(device)
    x, u8 = _inputs(SpeedConfig(device=device, size=size, batch=batch), dev)
    if dtype == "uint8":
        x = torch.from_numpy(np.stack(u8)).permute(0, 3, 1, 2).to(dev)
    out_dtype = torch.uint8 if dtype == "uint8" else torch.float32
    pool = [n for n in list_distortions("kadid") if n != "jpeg2000"]
    chains = [(ChainOp(pool[i % len(pool)], float(1 + i % NUM_LEVELS)),) for i in range(batch)]
    seeds = list(range(batch))
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    with torch.inference_mode():
        t = _median_seconds(lambda: apply_chains(x, chains, seeds, "kadid", out_dtype), repeats, dev)
    result = {"device": str(dev), "size": list(size), "batch": batch, "repeats": repeats, "input": dtype,
              "ops": len(pool), "images_per_s": batch / t, "seconds_per_batch": t}
    if dev.type == "cuda":
        result["peak_gpu_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20
        result["device_name"] = torch.cuda.get_device_name(dev)
    return result


# -- two generate runs, per distortion ----------------------------------------------------------------
def _read_rgb(path: Path) -> np.ndarray:
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"{path}: cannot be read as an image")
    return bgr[..., ::-1]


def compare_runs(test_dir: str | Path, ref_dir: str | Path) -> dict[str, Any]:
    """Compare every image of two generate runs of the same plan (``test_dir`` e.g. CUDA, ``ref_dir`` the
    CPU run), grouped by distortion: max and 99.9th-percentile absolute difference (8-bit steps), PSNR
    between the two, and the mean distortion strength |image - reference| of each run.

    A distortion passes when its p99.9 difference is at most ``DEVICE_TOLERANCE_STEPS``; ops with random
    fields (device-specific streams) are judged on strength instead (within 10% of each other), and the
    known differences (``KNOWN_DIFFERENCES``) are measured and reported, never failed."""
    import pandas as pd

    test_dir, ref_dir = Path(test_dir), Path(ref_dir)
    a = pd.read_parquet(test_dir / "manifest.parquet")
    b = pd.read_parquet(ref_dir / "manifest.parquet").set_index("image")
    groups: dict[str, dict[str, list[float]]] = {}
    missing = []
    for row in a.itertuples(index=False):
        if row.n_distortions == 0:
            continue
        if row.image not in b.index:
            missing.append(row.image)
            continue
        x, y = _read_rgb(test_dir / row.image).astype(np.float64), _read_rgb(ref_dir / row.image)
        ref = _read_rgb(ref_dir / b.loc[row.image, "reference"]).astype(np.float64)
        d = np.abs(x - y.astype(np.float64))
        mse = float((d * d).mean())
        steps = json.loads(row.params_json)
        g = groups.setdefault(row.dist_type, {"max": [], "p999": [], "psnr": [], "strength_test": [],
                                              "strength_ref": [], "random": []})
        g["max"].append(float(d.max()))
        g["p999"].append(float(np.percentile(d, 99.9)))
        g["psnr"].append(99.0 if mse == 0 else 10 * math.log10(255.0**2 / mse))
        g["strength_test"].append(float(np.abs(x - ref).mean()))
        g["strength_ref"].append(float(np.abs(y - ref).mean()))
        g["random"].append(float(any(RANDOM_FIELD_PARAM in s for s in steps)))
    rows = []
    for name in sorted(groups):
        g = groups[name]
        s_test, s_ref = statistics.fmean(g["strength_test"]), statistics.fmean(g["strength_ref"])
        random_field = max(g["random"]) > 0
        if name in KNOWN_DIFFERENCES:
            verdict, rule = "known", KNOWN_DIFFERENCES[name]
        elif random_field:
            ok = abs(s_test - s_ref) <= 0.1 * max(s_ref, 1e-9) + 0.5
            verdict, rule = ("ok" if ok else "FAIL"), "random field: strength within 10%"
        else:
            ok = max(g["p999"]) <= DEVICE_TOLERANCE_STEPS
            verdict, rule = ("ok" if ok else "FAIL"), f"p99.9 |diff| <= {DEVICE_TOLERANCE_STEPS:g}/255"
        rows.append({"distortion": name, "images": len(g["max"]), "max_diff": max(g["max"]),
                     "p999_diff": max(g["p999"]), "min_psnr_db": min(g["psnr"]),
                     "strength_test": s_test, "strength_ref": s_ref, "verdict": verdict, "rule": rule})
    return {"test": str(test_dir), "reference": str(ref_dir), "rows": rows, "missing": missing,
            "failed": [r["distortion"] for r in rows if r["verdict"] == "FAIL"]}


# -- training throughput ------------------------------------------------------------------------------
def train_throughput(method: str, out: str | Path, device: str, data: str | None = None,
                     on_the_fly: str | None = None,
                     overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train ``method`` with its ``quick`` preset (plus ``overrides``) and report the training loop's
    images/s (from ``run.json``), the wall time and the peak GPU memory."""

    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    options = {"preset": "quick", "progress": False, "on_the_fly": on_the_fly,
               "overrides": {"device": device, **(overrides or {})}}
    t0 = time.perf_counter()
    get_method(method).train(options, data, out)
    seconds = time.perf_counter() - t0
    run = json.loads((Path(out) / "run.json").read_text())
    result = {"method": method, "device": str(dev), "fed": "on the fly" if on_the_fly else f"data {data}",
              "train_images_per_s": run.get("train_images_per_s"), "wall_seconds": seconds,
              "test": {k: v for k, v in (run.get("test") or {}).items() if isinstance(v, (int, float))}}
    if dev.type == "cuda":
        result["peak_gpu_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20
    return result


# -- summary ------------------------------------------------------------------------------------------
def read_steps(out: Path) -> list[dict[str, str]]:
    """``steps.tsv`` rows: name, status, seconds, note."""
    path = out / "steps.tsv"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        name, status, seconds, note = (line.split("\t") + ["", "", ""])[:4]
        rows.append({"name": name, "status": status, "seconds": seconds, "note": note})
    return rows


def _load(out: Path, name: str) -> dict[str, Any] | None:
    path = out / name
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except json.JSONDecodeError:
        return None


def _junit_counts(path: Path) -> dict[str, int] | None:
    if not path.is_file():
        return None
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(path).getroot()
    except ET.ParseError:
        return None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    keys = ("tests", "failures", "errors", "skipped")
    return {k: sum(int(s.get(k, 0)) for s in suites) for k in keys}


def build_summary(out: str | Path) -> dict[str, Any]:
    """Everything a check's folder holds, as one dictionary (what ``summary.json`` stores)."""
    out = Path(out)
    env = _load(out, "environment.json") or {}
    speed = _load(out, "bench-speed.json")
    summary: dict[str, Any] = {
        "cuda": env.get("cuda", "unknown"), "environment": env, "steps": read_steps(out),
        "cuda_tests": _junit_counts(out / "cuda-tests.xml"),
        "mix": _load(out, "mix.json"), "compare": _load(out, "compare.json"),
        "generate": {k: _load(out, f"generate-{k}.json") for k in ("cuda", "cpu")},
        "bench_generate": _load(out, "bench-generate.json"),
        "train": {m: _load(out, f"train-{m}.json") for m in ("ceniqa", "arniqa")},
        "bench_speed": None if speed is None else {
            "geomean_ratio_kornia": speed.get("geomean_ratio_kornia"),
            "geomean_ratio_albumentations": speed.get("geomean_ratio_albumentations"),
            "kadid_mix": speed.get("kadid_mix"),
            "rows": [{k: r.get(k) for k in ("name", "synthiqa", "kornia", "ratio_kornia", "albumentations",
                                            "ratio_albumentations")} for r in speed.get("rows", [])]},
    }
    gen = summary["generate"]
    if gen["cuda"] and gen["cpu"]:
        cpu_rate = max(gen["cpu"]["images_per_s"], 1e-9)
        summary["generate_cuda_over_cpu"] = gen["cuda"]["images_per_s"] / cpu_rate
    summary["not_run"] = [f"{s['name']}: {s['status']}{' (' + s['note'] + ')' if s['note'] else ''}"
                          for s in summary["steps"] if s["status"] != "ok"]
    return summary


def _fmt(v: Any, spec: str = ",.1f") -> str:
    return "-" if v is None else format(v, spec)


def summary_markdown(s: dict[str, Any]) -> str:
    """The summary as Markdown (``summary.md``)."""
    env = s["environment"]
    lines = ["# synthiqa device check", "", f"cuda: {s['cuda']}"]
    for k in ("device_name", "torch", "torchvision", "python", "started", "git"):
        if env.get(k):
            lines.append(f"{k}: {env[k]}")
    lines += ["", "## Steps", "", "| step | status | seconds | note |", "|---|---|---|---|"]
    lines += [f"| {r['name']} | {r['status']} | {r['seconds']} | {r['note']} |" for r in s["steps"]]
    if s["cuda_tests"]:
        c = s["cuda_tests"]
        lines += ["", f"CUDA tests: {c['tests']} collected, {c['failures']} failed, {c['errors']} errors, "
                      f"{c['skipped']} skipped"]
    if s["mix"]:
        m = s["mix"]
        peak = f", peak GPU memory {_fmt(m['peak_gpu_mib'])} MiB" if m.get("peak_gpu_mib") else ""
        lines += ["", f"kadid mix without jpeg2000 ({m['ops']} ops), {m['size'][0]}x{m['size'][1]}, batch "
                      f"{m['batch']}, {m['input']} in/out on {m['device']}: {_fmt(m['images_per_s'])} "
                      f"images/s{peak}"]
    if s["bench_speed"]:
        b = s["bench_speed"]
        lines += ["", "## bench speed", "",
                  "| distortion | synthiqa | kornia | ratio | albumentations | ratio |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r['name']} | {_fmt(r['synthiqa'])} | {_fmt(r['kornia'])} "
                  f"| {_fmt(r['ratio_kornia'], '.2f')} | {_fmt(r['albumentations'])} "
                  f"| {_fmt(r['ratio_albumentations'], '.2f')} |" for r in b["rows"]]
        lines += ["", f"geometric mean vs kornia {_fmt(b['geomean_ratio_kornia'], '.2f')}x, vs "
                      f"albumentations {_fmt(b['geomean_ratio_albumentations'], '.2f')}x; mix "
                      f"{_fmt(b['kadid_mix'])} images/s"]
    for dev, g in s["generate"].items():
        if g:
            lines.append(f"generate --device {dev}: {g['images']} images in {g['seconds']:.1f} s, "
                         f"{_fmt(g['images_per_s'])} images/s")
    if s.get("generate_cuda_over_cpu") is not None:
        lines.append(f"generate cuda / cpu: {s['generate_cuda_over_cpu']:.2f}x")
    if s["compare"]:
        c = s["compare"]
        lines += ["", "## generate --device cuda against --device cpu", "",
                  "| distortion | images | max diff | p99.9 diff | min PSNR dB | strength cuda "
                  "| strength cpu | verdict | rule |", "|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['distortion']} | {r['images']} | {r['max_diff']:.0f} | {r['p999_diff']:.1f} | "
                  f"{r['min_psnr_db']:.1f} | {r['strength_test']:.2f} | {r['strength_ref']:.2f} | "
                  f"{r['verdict']} | {r['rule']} |" for r in c["rows"]]
        lines.append(f"failed: {', '.join(c['failed']) or 'none'}; missing images: {len(c['missing'])}")
    if s["bench_generate"]:
        lines += ["", "bench generate: " + json.dumps(s["bench_generate"])]
    for m, t in s["train"].items():
        if t:
            peak = f", peak GPU memory {_fmt(t['peak_gpu_mib'])} MiB" if t.get("peak_gpu_mib") else ""
            lines.append(f"train {m} ({t['fed']}) on {t['device']}: {_fmt(t['train_images_per_s'])} "
                         f"images/s, wall {t['wall_seconds']:.1f} s{peak}")
    lines += ["", "## Not run or not ok", ""] + ([f"- {x}" for x in s["not_run"]] or ["- nothing"])
    return "\n".join(lines) + "\n"


def write_summary(out: str | Path) -> dict[str, Any]:
    out = Path(out)
    s = build_summary(out)
    _json(out / "summary.json", s)
    atomic_write_text(str(out / "summary.md"), summary_markdown(s))
    return s


def environment(out: str | Path) -> dict[str, Any]:
    """Versions and the CUDA verdict (``available`` or ``unavailable``) into ``environment.json``."""
    import platform

    import torchvision

    cuda = torch.cuda.is_available()
    env = {"cuda": "available" if cuda else "unavailable", "torch": torch.__version__,
           "torchvision": torchvision.__version__, "python": platform.python_version(),
           "cpu_count": __import__("os").cpu_count(),
           "device_name": (torch.cuda.get_device_name(0) if cuda
                           else platform.processor() or platform.machine()),
           "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    _json(Path(out) / "environment.json", env)
    return env


def generate_record(out: str | Path, stdout_path: str | Path, seconds: float) -> dict[str, Any]:
    """A generate run's image count and rate, from its output folder and the command's wall time."""
    import pandas as pd

    images = len(pd.read_parquet(Path(out) / "manifest.parquet"))
    return {"out": str(out), "images": images, "seconds": seconds,
            "images_per_s": images / max(seconds, 1e-9),
            "stdout": Path(stdout_path).read_text().strip().splitlines()[-1:]}


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m synthiqa.benchmarks.device_check")
    sub = p.add_subparsers(dest="step", required=True)
    s = sub.add_parser("environment")
    s.add_argument("out")
    s = sub.add_parser("mix")
    s.add_argument("json_out")
    s.add_argument("--device", default="cuda")
    s.add_argument("--batch", type=int, default=256)
    s.add_argument("--size", default="512x384")
    s.add_argument("--repeats", type=int, default=3)
    s.add_argument("--input", default="float", choices=("float", "uint8"))
    s = sub.add_parser("compare")
    s.add_argument("test_dir")
    s.add_argument("ref_dir")
    s.add_argument("json_out")
    s = sub.add_parser("generated")
    s.add_argument("out")
    s.add_argument("stdout")
    s.add_argument("seconds", type=float)
    s.add_argument("json_out")
    s = sub.add_parser("train")
    s.add_argument("method")
    s.add_argument("run_dir")
    s.add_argument("json_out")
    s.add_argument("--device", default="cuda")
    s.add_argument("--data")
    s.add_argument("--on-the-fly")
    s.add_argument("--set", action="append", default=[])
    s = sub.add_parser("summary")
    s.add_argument("out")
    a = p.parse_args(argv)
    if a.step == "environment":
        environment(a.out)
    elif a.step == "mix":
        _json(a.json_out, mix_throughput(a.device, parse_size(a.size), a.batch, a.repeats, a.input))
    elif a.step == "compare":
        result = compare_runs(a.test_dir, a.ref_dir)
        _json(a.json_out, result)
        if result["failed"]:
            raise SystemExit(f"distortions outside tolerance: {', '.join(result['failed'])}")
    elif a.step == "generated":
        _json(a.json_out, generate_record(a.out, a.stdout, a.seconds))
    elif a.step == "train":
        overrides = dict(item.split("=", 1) for item in a.set)
        _json(a.json_out, train_throughput(a.method, a.run_dir, a.device, a.data, a.on_the_fly, overrides))
    else:
        print(summary_markdown(write_summary(a.out)), end="")


if __name__ == "__main__":
    main()
