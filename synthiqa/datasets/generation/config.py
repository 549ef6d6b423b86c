"""The options of ``synthiqa generate`` (``GenerateConfig``): validation, defaults and identity."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from synthiqa.datasets.generation.modes import get_mode, list_modes
from synthiqa.datasets.labels import parse_label_families
from synthiqa.datasets.references import DEFAULT_MAX_PIXELS, MIN_SIDE
from synthiqa.devices import available_cores
from synthiqa.distortions.chains import sample_chain
from synthiqa.distortions.registry import get_profile, list_distortions
from synthiqa.errors import ConfigError

#: Lossless image encodings (``--format png``, ``bmp``).
IMAGE_FORMATS = ("png", "bmp")
#: How the images are stored: one file each under ``images/``, or WebDataset tar shards.
CONTAINERS = ("files", "webdataset")
#: Engines that run the plan (``--engine``).
ENGINES = ("local", "ray")
#: How the local engine runs (``--pipeline``): ``auto`` (worker processes distorting equal-chain groups on
#: the CPU, the single-process device pipeline on an accelerator) or ``device`` (the device pipeline on any
#: device: one process, decode and write threads, one batch per chunk; on the CPU it checks that path).
PIPELINES = ("auto", "device")
#: Default images per reference in chains and basic mode (basic: plus the pristine copy).
DEFAULT_PER_IMAGE = 5
#: Default longest side of the built-in references (they are 300..1000 px; 384 keeps the README run quick).
BUILTIN_MAX_SIDE = 384
#: Default images per WebDataset shard (``--shard-size``; shards hold whole references).
DEFAULT_SHARD_SIZE = 1000
#: Options that define the dataset; a resumed run or a merged shard must match them all.
IDENTITY_KEYS = ("source", "profile", "mode", "per_image", "max_chain", "seed", "max_side", "crop",
                 "labels", "image_format", "max_pixels", "container", "shard_size")
#: Values of identity keys that runs made before the key existed had.
IDENTITY_DEFAULTS: dict[str, Any] = {"container": "files", "shard_size": None}


@dataclass
class GenerateConfig:
    """Everything ``synthiqa generate`` needs; serialises to JSON (``.synthiqa/config.json``).

    Attributes:
        out: output folder.
        ref_dir: folder of reference images (recursive), or None for the built-in references.
        profile: distortion profile (``kadid``, ``arniqa``, ``basic8``).
        mode: a registered mode (``grid``, ``chains`` or ``basic``; ``modes.list_modes``).
        per_image: images per reference in chains/basic mode (default 5; ignored by grid).
        max_chain: longest chain in chains mode (default: the profile's, 4).
        seed: run seed.
        max_side: shrink references so the longer side is at most this (px); built-ins default to 384.
        crop: (width, height) centre crop instead of ``max_side``.
        labels: label families, ``level`` and/or ``fr``.
        image_format: ``png`` (default) or ``bmp``; both lossless.
        container: ``files`` (one file per image under ``images/``) or ``webdataset`` (tar shards of
            ``KEY.png`` + ``KEY.json`` samples; PNG only).
        shard_size: images per WebDataset shard, about (shards hold whole references); webdataset only.
        shard: (index, count) with 1 <= index <= count: this run does references index, index+count, ...
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (where the distortions and FR metrics run).
        batch_size: images per chunk (one device batch); a resumed run keeps the first run's value.
        workers: local engine: CPU processes, or decode and write threads (each) on an accelerator;
            Ray engine: actors. Default: the cores this process may run on (its affinity mask), at most 4.
        engine: ``local`` (this machine) or ``ray`` (Ray Data).
        pipeline: ``auto`` or ``device`` (the accelerator's single-process pipeline, even on the CPU;
            ``PIPELINES``); not part of the dataset's identity: both make the same records and labels.
        ray_address: Ray cluster to join (``auto``: the running one); None starts a local instance.
        resume: continue the run in ``out`` (same options) instead of refusing a non-empty folder.
        max_pixels: decompression-bomb guard; larger references are skipped.
    """

    out: str
    ref_dir: str | None = None
    profile: str = "basic8"
    mode: str = "basic"
    per_image: int | None = None
    max_chain: int | None = None
    seed: int = 0
    max_side: int | None = None
    crop: tuple[int, int] | None = None
    labels: tuple[str, ...] = ("level", "fr")
    image_format: str = "png"
    container: str = "files"
    shard_size: int | None = None
    shard: tuple[int, int] | None = None
    device: str = "auto"
    batch_size: int = 16
    workers: int = field(default_factory=lambda: min(4, available_cores()))
    engine: str = "local"
    pipeline: str = "auto"
    ray_address: str | None = None
    resume: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS

    def resolved(self) -> GenerateConfig:
        """Validated copy with mode-dependent defaults filled in; one-line errors for bad values."""
        if self.mode not in list_modes():
            raise ConfigError(f"--mode {self.mode!r}: choose one of {', '.join(list_modes())}")
        mode = get_mode(self.mode)
        prof = get_profile(self.profile)
        if not list_distortions(self.profile):
            raise ConfigError(f"--profile {self.profile!r} has no registered distortions")
        if self.image_format not in IMAGE_FORMATS:
            raise ConfigError(f"--format {self.image_format!r}: choose one of "
                              f"{', '.join((*IMAGE_FORMATS, 'webdataset'))} (lossless, so the labels "
                              "describe the written pixels)")
        if self.container not in CONTAINERS:
            raise ConfigError(f"container {self.container!r}: choose one of {', '.join(CONTAINERS)}")
        if self.container == "webdataset" and self.image_format != "png":
            raise ConfigError("--format webdataset stores PNG images; bmp is for image folders only")
        shard_size = self.shard_size
        if self.container == "webdataset":
            shard_size = DEFAULT_SHARD_SIZE if shard_size is None else shard_size
            if shard_size < 1:
                raise ConfigError(f"--shard-size must be at least 1, got {shard_size}")
        elif shard_size is not None:
            raise ConfigError("--shard-size needs --format webdataset")
        if self.engine not in ENGINES:
            raise ConfigError(f"--engine {self.engine!r}: choose one of {', '.join(ENGINES)}")
        if self.pipeline not in PIPELINES:
            raise ConfigError(f"--pipeline {self.pipeline!r}: choose one of {', '.join(PIPELINES)}")
        if self.ray_address is not None and self.engine != "ray":
            raise ConfigError("--ray-address needs --engine ray")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {self.workers}")
        if self.max_side is not None and self.max_side < MIN_SIDE:
            raise ConfigError(f"--max-side must be at least {MIN_SIDE} px, got {self.max_side}")
        if self.crop is not None and self.max_side is not None:
            raise ConfigError("use either --max-side or --crop, not both")
        per_image = self.per_image
        if not mode.uses_per_image:
            per_image = None
        elif per_image is None:
            per_image = DEFAULT_PER_IMAGE
        elif per_image < 1:
            raise ConfigError(f"--per-image must be at least 1, got {per_image}")
        max_chain = None
        if mode.uses_max_chain:
            max_chain = prof.max_distortions if self.max_chain is None else self.max_chain
            sample_chain(0, self.profile, max_distortions=max_chain)  # range check, one-line error
        max_side = self.max_side
        if self.ref_dir is None and max_side is None and self.crop is None:
            max_side = BUILTIN_MAX_SIDE
        if self.shard is not None:
            i, n = self.shard
            if not 1 <= i <= n:
                raise ConfigError(f"--shard {i}/{n}: the index must lie in 1..{n}")
        return replace(self, per_image=per_image, max_chain=max_chain, max_side=max_side,
                       shard_size=shard_size, labels=parse_label_families(self.labels))

    @property
    def source(self) -> str:
        return "builtin" if self.ref_dir is None else str(Path(self.ref_dir).resolve())

    def device_pipeline(self, device: Any) -> bool:
        """Whether the chunks on ``device`` (a ``torch.device``) run through the single-process device
        pipeline (one batch per chunk) rather than the CPU's equal-chain groups."""
        return self.pipeline == "device" or device.type != "cpu"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["labels"] = list(self.labels)
        d["crop"] = list(self.crop) if self.crop else None
        d["shard"] = list(self.shard) if self.shard else None
        d["source"] = self.source
        return d

    def identity(self) -> dict[str, Any]:
        """The options that define the dataset (what resume and merge compare)."""
        d = self.to_dict()
        return {k: d[k] for k in IDENTITY_KEYS}

    def run_record(self) -> dict[str, Any]:
        """What ``.synthiqa/config.json`` keeps: the identity, the chunking and the shard."""
        d = self.to_dict()
        return {**self.identity(), "batch_size": d["batch_size"], "shard": d["shard"]}


def stored_identity(record: dict[str, Any], key: str) -> Any:
    """``record[key]``, or the value runs made before ``key`` existed had."""
    return record.get(key, IDENTITY_DEFAULTS.get(key))


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"2/4"`` -> (2, 4); a one-line error otherwise."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise ConfigError(f"--shard {text!r} must be I/N with 1 <= I <= N (e.g. 1/4)")
    return int(m.group(1)), int(m.group(2))
