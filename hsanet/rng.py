"""Counter-based random numbers keyed by molecule (training noise; not part of the paper).

HSA-Net's training draws noise per molecule: the hard Gumbel-softmax of every HAP gate (Eq. 3 in
training) and, for E_Mamba, Graph-Mamba's random tie-breaking of the scan order. Drawing it from a
global generator makes a molecule's noise depend on where it sits in the batch and in which process,
so a run split over several processes (DDP), or interrupted and resumed, would not see the same
noise as one process in one sitting. Here every number is a hash of (molecule key, stream, counter):
SplitMix64 (Steele, Lea & Flood 2014), computed on int64 tensors, so the same molecule in the same
epoch gets the same noise whatever the batch, process or sitting.
"""
from __future__ import annotations

import torch

_MASK_34 = (1 << 34) - 1
_MASK_37 = (1 << 37) - 1
_GOLDEN = -7046029254386353131          # 0x9E3779B97F4A7C15 as a signed int64
_M1 = -4658895280553007687              # 0xBF58476D1CE4E5B9
_M2 = -7723592293110705685              # 0x94D049BB133111EB


def _mix(z: torch.Tensor) -> torch.Tensor:
    """SplitMix64's finalizer on int64 (multiplications wrap mod 2^64; shifts are made logical)."""
    z = z ^ ((z >> 30) & _MASK_34)
    z = z * _M1
    z = z ^ ((z >> 27) & _MASK_37)
    z = z * _M2
    return z ^ ((z >> 31) & ((1 << 33) - 1))


def molecule_keys(seed: int, epoch: int, index: torch.Tensor) -> torch.Tensor:
    """One int64 key per molecule from the run's seed, the epoch and the molecule's dataset index."""
    base = _mix(torch.tensor(seed, dtype=torch.long) * 1_000_003 + epoch)
    return _mix(base + index.long() * _GOLDEN)


def keyed_uniform(keys: torch.Tensor, stream: int, counters: torch.Tensor) -> torch.Tensor:
    """Uniform numbers in (0, 1), float32: one per (key, counter) pair, ``keys`` and ``counters``
    broadcast against each other; ``stream`` separates independent uses (gate levels, ties)."""
    offset = torch.tensor(stream + 1, dtype=torch.long, device=keys.device) * _GOLDEN
    z = _mix(_mix(keys + offset) + (counters.long() + 1) * _GOLDEN)
    bits = (z >> 40) & ((1 << 23) - 1)                  # 23 random bits: (bits + 0.5) is exact in float32
    return (bits.float() + 0.5) / float(1 << 23)


def keyed_gumbel(keys: torch.Tensor, stream: int, shape_last: int) -> torch.Tensor:
    """Gumbel(0, 1) noise (len(keys), shape_last): -log(-log U)."""
    u = keyed_uniform(keys[:, None], stream, torch.arange(shape_last, device=keys.device)[None, :])
    return -torch.log(-torch.log(u))
