"""Training in several processes: ``synthiqa train --nproc N`` starts ``torch.distributed.run`` with this
module in each process (``python -m synthiqa.models.training.launch SPEC.json``); under ``torchrun -m synthiqa
train ...`` the command line itself calls ``train_in_process``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

from synthiqa.devices import threads_per_worker
from synthiqa.errors import ConfigError, SynthiqaError
from synthiqa.models.registry import get_method
from synthiqa.models.training import distributed


def torchrun_environment() -> bool:
    """Whether any of torchrun's variables is set (then all of them must be)."""
    return any(v in os.environ for v in ("RANK", "LOCAL_RANK", "WORLD_SIZE"))


def train_in_process(method: str, options: dict[str, Any], data: str | None, out: str | Path) -> Path:
    """Train ``method``; under torchrun's environment join the process group first (this rank's device
    replaces the configured one) and leave it afterwards."""
    if not torchrun_environment():
        return get_method(method).train(options, data, out)
    overrides = dict(options.get("overrides") or {})
    device = distributed.init_from_env(str(overrides.get("device", "auto")))
    if not distributed.is_main_process():  # rank 0 reports what every rank would
        warnings.simplefilter("ignore")
    overrides["device"] = str(device)
    try:
        result = get_method(method).train({**options, "overrides": overrides,
                                           "progress": options.get("progress", True)
                                           and distributed.is_main_process()}, data, out)
    except BaseException:
        distributed.shutdown(together=False)
        raise
    distributed.shutdown()
    return result


def launch(nproc: int, method: str, options: dict[str, Any], data: str | None, out: str | Path) -> None:
    """Run ``train_in_process`` in ``nproc`` processes through ``torch.distributed.run`` on this machine
    (``--standalone``); a one-line error when that is more processes than it allows or a process fails."""
    device = str((options.get("overrides") or {}).get("device", "auto"))
    limit = distributed.max_processes(device)
    if nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {nproc}")
    if nproc > limit:
        what = "CUDA devices" if distributed.uses_cuda(device) else "CPU cores"
        raise ConfigError(f"--nproc {nproc} is more processes than this machine allows ({limit} {what})")
    spec = {"method": method, "data": data, "out": str(out),
            "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in options.items()}}
    with tempfile.TemporaryDirectory(prefix="synthiqa-launch-") as tmp:
        path = Path(tmp) / "spec.json"
        path.write_text(json.dumps(spec))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "synthiqa.models.training.launch", str(path)]
        threads = os.environ.get("OMP_NUM_THREADS", str(threads_per_worker(nproc)))
        # stderr is read here: the launcher's report of a failed process is a traceback, the process's own
        # one-line error is what the user needs
        done = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": threads}, stderr=subprocess.PIPE,
                              text=True, errors="replace")
    errors = [line[len("error: "):] for line in done.stderr.splitlines() if line.startswith("error: ")]
    if done.returncode != 0:
        if errors:
            raise SynthiqaError(errors[0])
        sys.stderr.write(done.stderr)
        raise SynthiqaError(f"--nproc {nproc}: a training process failed (exit status {done.returncode})")
    sys.stderr.write(done.stderr)


def main(argv: list[str] | None = None) -> None:
    """Entry point of each process started by ``launch``: errors print once (rank 0), status 2."""
    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(args[0]).read_text())
    try:
        train_in_process(spec["method"], spec["options"], spec["data"], spec["out"])
    except SynthiqaError as exc:
        if os.environ.get("RANK", "0") == "0":
            print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
