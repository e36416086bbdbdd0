"""ssl_mix.checks: one spelling of each argument rule and its message."""

import math

import numpy as np
import pytest

from ssl_mix.checks import (
    check_alpha,
    check_bool,
    check_in,
    check_int,
    check_k,
    check_number,
    check_positive_int,
    check_probability,
)


def test_valid_values_come_back_in_their_canonical_type():
    assert check_bool("flag", False) is False
    assert check_int("n", np.int64(3), 0) == 3 and type(check_int("n", np.int64(3))) is int
    assert check_positive_int("n", 1) == 1
    assert check_number("x", np.float32(0.5), low=0, high=1) == 0.5 and type(check_number("x", 2)) is float
    assert check_probability("p", 0) == 0.0 and check_probability("p", 1) == 1.0
    assert check_in("mode", "b", ("a", "b")) == "b"
    assert check_k(np.int32(4)) == 4 and check_alpha(0) == 0.0


@pytest.mark.parametrize("call, error, match", [
    (lambda: check_bool("augment", 1), TypeError, r"augment must be a bool, got int \(1\)\."),
    (lambda: check_int("steps", 2.0), TypeError, r"steps must be an int, got float \(2.0\)\."),
    (lambda: check_int("steps", True), TypeError, r"steps must be an int, got bool"),
    (lambda: check_int("seed", -1, 0), ValueError, r"seed must be >= 0, got -1\."),
    (lambda: check_positive_int("batch_size", 0), ValueError, r"batch_size must be >= 1, got 0\."),
    (lambda: check_number("lr", "0.1"), TypeError, r"lr must be a number, got str \('0.1'\)\."),
    (lambda: check_number("lr", 0, low=0, low_open=True), ValueError, r"lr must be a finite number > 0, got 0.0\."),
    (lambda: check_number("x", math.nan), ValueError, r"x must be a finite number, got nan\."),
    (lambda: check_number("x", math.inf, low=0), ValueError, r"x must be a finite number >= 0, got inf\."),
    (lambda: check_number("x", 2, high=1, high_open=True), ValueError, r"x must be a finite number < 1, got 2.0"),
    (lambda: check_number("d", 1, low=0, high=1, high_open=True, hint="a drop probability."), ValueError,
     r"d must be in \[0, 1\), got 1.0; a drop probability\.$"),
    (lambda: check_probability("ema_decay", 1.5), ValueError, r"ema_decay must be in \[0, 1\], got 1.5\."),
    (lambda: check_in("ramp", "cosine", ("sigmoid", "linear")), ValueError,
     r"ramp must be one of 'sigmoid', 'linear'; got 'cosine'\."),
    (lambda: check_k(1), ValueError, r"k \(number of points to mix\) must be an int >= 2, got 1; use k=2"),
    (lambda: check_k(2.0, "MethodConfig.k"), TypeError, r"MethodConfig.k \(number of points to mix\) must be an int"),
    (lambda: check_alpha(-1), ValueError, r"alpha \(Dirichlet concentration\) must be a finite number >= 0, got "
                                          r"-1.0; typical values are 0.1 to 2.0, and 0 disables mixing\."),
    (lambda: check_alpha(None, "sup_alpha"), TypeError, r"sup_alpha \(Dirichlet concentration\) must be a number"),
])
def test_errors_say_what_was_expected_and_what_was_given(call, error, match):
    with pytest.raises(error, match=match):
        call()
