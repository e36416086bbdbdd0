"""Seeds derived from keys: every random draw of a run gets its own generator state, named by what it is for.

A seed is a function of a tuple of non-negative ints, e.g. ``(seed, stream, purpose, step)`` in the loaders or
``(seed, rank)`` for a process's own stream, never of a running generator, so a resumed or sharded run can recompute
any draw from its key alone. The mixing function is SplitMix64 (Steele, Lea & Flood 2014), chained over the key.
"""

from __future__ import annotations

__all__ = ["derive_seed"]

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def derive_seed(*values: int) -> int:
    """A 63-bit seed from a tuple of non-negative ints (SplitMix64 chained), the same on every platform.

    Args:
        values: the key, e.g. ``(seed, stream, purpose, epoch)``; each is taken modulo 2**64.

    Returns:
        An int in ``[0, 2**63)``, usable with ``torch.Generator.manual_seed``.
    """
    h = 0
    for v in values:
        h = _splitmix64(h ^ (int(v) & _MASK64))
    return h >> 1
