"""Tests for ssl_mix/seeding.py: seeds derived from keys."""

from __future__ import annotations

from ssl_mix.seeding import derive_seed


def test_derive_seed_is_pinned():
    assert derive_seed(0) == 8147104208329303767
    assert derive_seed(1, 2, 3) == 7510213797696614745
    assert len({derive_seed(0, s, 0, e) for s in range(2) for e in range(100)}) == 200


def test_derive_seed_fits_a_generator_seed_and_keys_negative_ints_modulo_2_64():
    assert 0 <= derive_seed(2**70, 5) < 2**63
    assert derive_seed(-1) == derive_seed(2**64 - 1)
