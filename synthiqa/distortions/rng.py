"""Per-sample randomness: stable seeds and one ``torch.Generator`` per sample.

A run has one integer seed. Every image gets its own seed from (run seed, image id) through a stable
hash, and every random draw of that image comes from generators seeded from it. Output therefore never
depends on batch size, batch mates, worker count or shard, which makes shards, resume and replay exact.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

from synthiqa.errors import DistortionInputError

SEED_MASK = (1 << 63) - 1


def _key_text(keys: Sequence[int | str]) -> str:
    return "\x1f".join([f"{type(k).__name__}:{k}" for k in keys])


def _hash_seed(text: str) -> int:
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") & SEED_MASK


def derive_seed(*keys: int | str) -> int:
    """A stable 63-bit seed from any mix of ints and strings (same value on every platform and run)."""
    return _hash_seed(_key_text(keys))


def derive_seeds(seeds: Sequence[int] | torch.Tensor, *keys: int | str) -> torch.Tensor:
    """Derive one child seed per entry of ``seeds`` (int64 tensor ``[B]`` on the CPU): ``derive_seed(s,
    *keys)`` for each, with the text of ``keys`` built once."""
    values = seeds.tolist() if isinstance(seeds, torch.Tensor) else list(seeds)
    suffix = "\x1f" + _key_text(keys) if keys else ""
    return torch.tensor([_hash_seed(f"int:{int(s)}{suffix}") for s in values], dtype=torch.int64)


def as_seed_tensor(seeds: Sequence[int] | torch.Tensor | int, n: int) -> torch.Tensor:
    """Normalise user seeds to an int64 CPU tensor ``[n]``; a single int seeds samples 0..n-1 of a run."""
    if isinstance(seeds, int):
        return torch.tensor([derive_seed(seeds, i) for i in range(n)], dtype=torch.int64)
    out = torch.as_tensor(seeds, dtype=torch.int64).cpu().reshape(-1)
    if out.numel() != n:
        raise DistortionInputError(f"got {out.numel()} seeds for a batch of {n} images")
    return out


class SampleRNG:
    """One CPU ``torch.Generator`` per sample; each draw returns a stacked ``[B, *shape]`` tensor.

    Draws are made on the CPU so that the same seed gives the same parameters on every device.
    Successive calls continue each sample's own stream, so the order of draws is part of the recipe.
    """

    def __init__(self, seeds: torch.Tensor):
        self.seeds = seeds.to(torch.int64).cpu()
        self._generators: list[torch.Generator] | None = None  # made on the first draw: most ops draw nothing

    @property
    def _gens(self) -> list[torch.Generator]:
        if self._generators is None:
            seeds = self.seeds.tolist()
            self._generators = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]
        return self._generators

    def __len__(self) -> int:
        return len(self.seeds)

    def _stack(self, parts: list[torch.Tensor], shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        if not parts:
            return torch.empty((0, *shape), dtype=dtype)
        return torch.stack(parts)

    def uniform(self, *shape: int, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
        """Uniform floats in [low, high), float64 ``[B, *shape]``."""
        parts = [torch.rand(shape, generator=g, dtype=torch.float64) for g in self._gens]
        return low + (high - low) * self._stack(parts, shape, torch.float64)

    def normal(self, *shape: int) -> torch.Tensor:
        """Standard normal floats, float64 ``[B, *shape]``."""
        parts = [torch.randn(shape, generator=g, dtype=torch.float64) for g in self._gens]
        return self._stack(parts, shape, torch.float64)

    def randint(self, low: int, high: int, *shape: int) -> torch.Tensor:
        """Integers in [low, high), int64 ``[B, *shape]``."""
        parts = [torch.randint(low, high, shape, generator=g) for g in self._gens]
        return self._stack(parts, shape, torch.int64)

    def seeds_for_fields(self) -> torch.Tensor:
        """One int64 seed per sample for large random fields, drawn later on the image device in ``apply``."""
        return self.randint(0, 2**62)


def _field(seeds: torch.Tensor, shape: tuple[int, ...], device: torch.device, kind: str,
           dtype: torch.dtype, out: torch.Tensor | None) -> torch.Tensor:
    if out is None:
        out = torch.empty((len(seeds), *shape), dtype=dtype, device=device)
    for i, s in enumerate(seeds.tolist()):
        g = torch.Generator(device=device).manual_seed(int(s))
        if kind == "normal":
            torch.randn(shape, generator=g, out=out[i], dtype=dtype, device=device)
        else:
            torch.rand(shape, generator=g, out=out[i], dtype=dtype, device=device)
    return out


def normal_field(seeds: torch.Tensor, shape: Sequence[int], device: torch.device | str,
                 dtype: torch.dtype = torch.float32, out: torch.Tensor | None = None) -> torch.Tensor:
    """A standard-normal field ``[B, *shape]`` on ``device``, sample i drawn from its own seed
    (into ``out``, contiguous, of that shape, dtype and device, when given)."""
    return _field(seeds, tuple(shape), torch.device(device), "normal", dtype, out)


def uniform_field(seeds: torch.Tensor, shape: Sequence[int], device: torch.device | str,
                  dtype: torch.dtype = torch.float32, out: torch.Tensor | None = None) -> torch.Tensor:
    """A uniform [0, 1) field ``[B, *shape]`` on ``device``, sample i drawn from its own seed
    (into ``out``, contiguous, of that shape, dtype and device, when given)."""
    return _field(seeds, tuple(shape), torch.device(device), "uniform", dtype, out)
