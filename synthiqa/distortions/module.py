"""``RandomDegradation``: the engine as an ``nn.Module`` for a training loop (ARNIQA's degradation model).

Each seed draws one chain (and, through the engine, every parameter of every step), so the same seed gives
the same degraded image whatever the batch size, the batch mates, the device's batch split or the worker.

``torch.compile``: the module itself is host-side Python (chains drawn per sample with Python's
``random``, parameters on the CPU) and is not compiled; the ops' pure ``apply`` can be. With
``fullgraph=True`` (``compile_support`` checks any op on your machine) the tonal and colour ops capture
in one graph (brighten, darken, mean_shift, contrast_change, nonlinear_contrast_change, quantization
(arniqa), color_saturation_hsv/lab, chromatic_aberration, lens_distortion, pixelate (kadid)). The others
break the graph, so plain ``torch.compile`` runs them partly eagerly: ops that read parameters on the host
(``.tolist()``: blurs, jpeg, jpeg2000, color_diffusion, color_quantization, white_noise_color_component),
ops that draw noise from per-sample ``torch.Generator`` objects (white/impulse/multiplicative noise,
jitter, non_eccentricity_patch, denoise, rain, fog), and ops with data-dependent shapes or CPU codecs
(color_block, pixelate (arniqa/basic8), color_shift, high_sharpen, quantization (kadid)).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from synthiqa.distortions.base import NUM_LEVELS, check_images, check_shape, params_to
from synthiqa.distortions.chains import (
    Chain,
    ChainOp,
    _float_step,
    _to_uint8_,
    apply_chains,
    format_chain,
    sample_chain,
)
from synthiqa.distortions.registry import get_distortion, get_profile, list_distortions
from synthiqa.distortions.rng import as_seed_tensor, derive_seed
from synthiqa.errors import DistortionInputError

#: Chain laws: ``chain`` (ARNIQA: distinct groups in random order, half-Gaussian levels) and ``single``
#: (the CENIQA guide: one type uniform over the profile, level uniform in 1..num_levels).
LAWS = ("chain", "single")
#: Keys of a step record that are not parameters of ``Distortion.apply``.
_RECORD_KEYS = ("name", "group", "seed")


class RandomDegradation(nn.Module):
    """Degrade a batch with one randomly drawn chain per seed, on the images' device.

    Args:
        profile: whose distortions and level tables (``arniqa``, ``kadid``, ``basic8``...).
        max_chain: longest chain (``law="chain"``), 1..number of groups of the profile.
        law: ``chain`` or ``single`` (see ``LAWS``).
        pristine_prob: probability in [0, 1] that a chain is empty (None: the profile's, ``chain`` law;
            0 for ``single``).
        num_levels: levels drawn from 1..num_levels (at most 5).
        level_sigma: width of the ``chain`` law's half-Gaussian level law (None: the profile's, ARNIQA's
            2.5; ``math.inf``: uniform levels).
        include_extra: also draw the ``extra`` group (rain, fog, lens distortion, chromatic aberration).
        out_dtype: ``torch.float32`` (in [0, 1]) or ``torch.uint8`` (rounded, as files would hold; on the
            CPU single-step chains then take the OpenCV fast path, within 1/255 of the float path).

    ``forward(images, seeds, share=1)`` -> ``(degraded, params)``: ``images`` float ``[B,3,H,W]`` in [0, 1]
    or uint8; ``seeds`` one int per group of ``share`` consecutive images (``B // share`` of them); every
    image of a group gets the group's chain and the same drawn parameters (ARNIQA's positives).
    ``params[i]`` is image i's record: ``chain`` (text), ``seed``, ``steps`` (every drawn parameter).
    """

    def __init__(self, profile: str = "arniqa", max_chain: int = 4, law: str = "chain",
                 pristine_prob: float | None = None, num_levels: int = NUM_LEVELS,
                 include_extra: bool = False, out_dtype: torch.dtype = torch.float32,
                 level_sigma: float | None = None):
        super().__init__()
        if law not in LAWS:
            raise DistortionInputError(f"law must be one of {', '.join(LAWS)}, got {law!r}")
        if out_dtype not in (torch.float32, torch.uint8):
            raise DistortionInputError(f"out_dtype must be torch.float32 or torch.uint8, got {out_dtype}")
        if pristine_prob is not None and not 0.0 <= pristine_prob <= 1.0:
            raise DistortionInputError(f"pristine_prob must lie in [0, 1], got {pristine_prob}")
        if not 1 <= num_levels <= NUM_LEVELS:
            raise DistortionInputError(f"num_levels must lie in 1..{NUM_LEVELS}, got {num_levels}")
        get_profile(profile)
        self.profile = profile
        self.max_chain = max_chain
        self.law = law
        self.pristine_prob = pristine_prob
        self.num_levels = num_levels
        self.include_extra = include_extra
        self.out_dtype = out_dtype
        self.level_sigma = level_sigma
        self.types = list_distortions(profile, include_extra)
        if not self.types:
            raise DistortionInputError(f"profile {profile!r} has no distortions")
        if law == "chain":
            sample_chain(0, profile, max_chain, pristine_prob, num_levels, include_extra,
                         level_sigma)  # checks max_chain and level_sigma

    def extra_repr(self) -> str:
        return (f"profile={self.profile!r}, law={self.law!r}, max_chain={self.max_chain}, "
                f"pristine_prob={self.pristine_prob}, level_sigma={self.level_sigma}, "
                f"out_dtype={self.out_dtype}")

    def sample(self, seed: int) -> Chain:
        """The chain of one seed (a pure function of the seed and the module's settings)."""
        if self.law == "chain":
            return sample_chain(int(seed), self.profile, self.max_chain, self.pristine_prob, self.num_levels,
                                self.include_extra, self.level_sigma)
        rng = random.Random(derive_seed(int(seed), "single-chain"))
        if rng.random() < (self.pristine_prob or 0.0):
            return ()
        return (ChainOp(rng.choice(self.types), float(rng.randint(1, self.num_levels))),)

    def forward(self, images: torch.Tensor, seeds: torch.Tensor | Sequence[int], share: int = 1,
                ) -> tuple[torch.Tensor, list[dict[str, Any]]]:
        x = check_shape(images)
        b = x.shape[0]
        if not isinstance(share, int) or share < 1 or b % share:
            raise DistortionInputError(f"share={share} must be a positive divisor of the batch size {b}")
        n = b // share
        if isinstance(seeds, int):
            raise DistortionInputError(f"seeds must be {n} ints (one per group of {share}), got one int")
        group_seeds = as_seed_tensor(seeds, n).tolist() if len(seeds) == n else None
        if group_seeds is None:
            raise DistortionInputError(f"got {len(seeds)} seeds for a batch of {b} images in groups of "
                                       f"{share}; expected {n}")
        chains = [self.sample(s) for s in group_seeds]
        per_image = [c for c in chains for _ in range(share)]
        image_seeds = [s for s in group_seeds for _ in range(share)]
        out, steps = apply_chains(x, per_image, image_seeds, self.profile, self.out_dtype)
        params = [{"chain": format_chain(c), "seed": s, "steps": st}
                  for c, s, st in zip(per_image, image_seeds, steps, strict=True)]
        return out, params

    def replay(self, images: torch.Tensor, params: Sequence[dict[str, Any]]) -> torch.Tensor:
        """Apply recorded (or edited) parameters again: ``params`` as ``forward`` returned them, one per
        image. The float path: equal to ``forward`` for float output, within 1/255 for uint8 output."""
        x = check_images(images)
        if len(params) != x.shape[0]:
            raise DistortionInputError(f"got {len(params)} parameter records for a batch of {x.shape[0]} "
                                       "images")
        wrap = get_profile(self.profile).minmax_wrap
        steps = [p["steps"] for p in params]
        for pos in range(max((len(s) for s in steps), default=0)):
            by_name: dict[str, list[int]] = {}
            for i, s in enumerate(steps):
                if pos < len(s):
                    by_name.setdefault(s[pos]["name"], []).append(i)
            for name, idx_list in by_name.items():
                dist = get_distortion(name, self.profile)
                recs = [steps[i][pos] for i in idx_list]
                step_params = {k: _as_tensor([r[k] for r in recs]) for k in recs[0] if k not in _RECORD_KEYS}
                idx = torch.tensor(idx_list, dtype=torch.long, device=x.device)
                sub = _float_step(dist, x.index_select(0, idx), params_to(step_params, x.device), wrap)
                x.index_copy_(0, idx, sub.to(x.dtype))
        return _to_uint8_(x) if self.out_dtype == torch.uint8 else x


def _as_tensor(values: list[Any]) -> torch.Tensor:
    """A recorded parameter column back to the tensor ``sample`` drew: float64 for reals, int64 for ints."""
    t = torch.tensor(values)
    return torch.tensor(values, dtype=torch.float64) if t.is_floating_point() else t


def compile_support(name: str, profile: str = "kadid", size: int = 64,
                    device: torch.device | str = "cpu") -> tuple[bool, str]:
    """Whether ``torch.compile(fullgraph=True)`` captures ``name``'s ``apply`` in one graph (Dynamo only, no
    code generation): ``(True, "")`` or ``(False, first line of the reason)``."""
    import torch._dynamo

    dist = get_distortion(name, profile)
    images = torch.rand(2, 3, size, size, device=device)
    params = params_to(dist.sample([3.0, 3.0], [1, 2]), device)
    torch._dynamo.reset()
    fn = torch.compile(dist.apply, backend="eager", fullgraph=True)
    try:
        fn(images, params)
    except Exception as exc:  # Dynamo reports unsupported calls in many exception types
        return False, (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    finally:
        torch._dynamo.reset()
    return True, ""
