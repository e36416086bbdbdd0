import math

import pytest

from ssl_mix.ramps import ConsistencySchedule, cosine_rampdown, linear_rampup, sigmoid_rampup


def test_sigmoid_rampup_values():
    assert sigmoid_rampup(0, 10) == pytest.approx(math.exp(-5.0))
    assert sigmoid_rampup(5, 10) == pytest.approx(math.exp(-5.0 * 0.25))
    assert sigmoid_rampup(10, 10) == 1.0
    assert sigmoid_rampup(25, 10) == 1.0
    assert sigmoid_rampup(3, 0) == 1.0
    assert sigmoid_rampup(2.5, 10) == pytest.approx(math.exp(-5.0 * 0.75**2))


def test_linear_rampup_values():
    assert linear_rampup(0, 8) == 0.0
    assert linear_rampup(2, 8) == 0.25
    assert linear_rampup(8, 8) == 1.0
    assert linear_rampup(100, 8) == 1.0
    assert linear_rampup(0, 0) == 1.0


def test_cosine_rampdown_values():
    assert cosine_rampdown(0, 10) == 1.0
    assert cosine_rampdown(5, 10) == pytest.approx(0.5)
    assert cosine_rampdown(2, 10) == pytest.approx(0.5 * (math.cos(math.pi * 0.2) + 1))
    assert cosine_rampdown(10, 10) == pytest.approx(0.0)
    assert cosine_rampdown(30, 10) == pytest.approx(0.0)


def test_ramps_are_monotone_floats_in_unit_interval():
    up_s = [sigmoid_rampup(s, 20) for s in range(25)]
    up_l = [linear_rampup(s, 20) for s in range(25)]
    down = [cosine_rampdown(s, 20) for s in range(25)]
    for values in (up_s, up_l, down):
        assert all(type(v) is float and 0.0 <= v <= 1.0 for v in values)
    assert up_s == sorted(up_s) and up_l == sorted(up_l) and down == sorted(down, reverse=True)


def test_consistency_schedule():
    sched = ConsistencySchedule(max_weight=100.0, ramp="linear", ramp_steps=40)
    assert sched(0) == 0.0 and sched(10) == 25.0 and sched(40) == 100.0 and sched(1000) == 100.0
    sig = ConsistencySchedule(max_weight=10.0, ramp="sigmoid", ramp_steps=4)
    assert sig(2) == pytest.approx(10.0 * math.exp(-5.0 * 0.25))
    assert ConsistencySchedule(max_weight=3.0, ramp="none", ramp_steps=50)(0) == 3.0
    assert ConsistencySchedule(max_weight=3.0, ramp="sigmoid", ramp_steps=0)(0) == 3.0
    assert ConsistencySchedule()(0) == 100.0
    assert type(sched(7)) is float


@pytest.mark.parametrize("fn", [sigmoid_rampup, linear_rampup, cosine_rampdown])
def test_ramps_reject_bad_arguments(fn):
    with pytest.raises(ValueError, match=r"length must be a finite number >= 0, got -5"):
        fn(1, -5)
    with pytest.raises(ValueError, match=r"step must be a finite number >= 0, got -1"):
        fn(-1, 5)
    with pytest.raises(ValueError, match=r"step must be a finite number >= 0, got nan"):
        fn(float("nan"), 5)
    with pytest.raises(TypeError, match=r"length must be a number, got str"):
        fn(1, "10")
    with pytest.raises(TypeError, match=r"step must be a number, got bool"):
        fn(True, 10)


def test_cosine_rampdown_rejects_zero_length():
    with pytest.raises(ValueError, match=r"length must be > 0 for cosine_rampdown"):
        cosine_rampdown(0, 0)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(max_weight=-1.0), ValueError, r"max_weight must be a finite number >= 0, got -1"),
        (dict(max_weight=float("inf")), ValueError, r"max_weight must be a finite number >= 0, got inf"),
        (dict(ramp="cosine"), ValueError, r"ramp must be one of 'sigmoid', 'linear', 'none'; got 'cosine'"),
        (dict(ramp_steps=-3), ValueError, r"ramp_steps must be >= 0, got -3"),
        (dict(ramp_steps=2.5), TypeError, r"ramp_steps must be an int, got float"),
    ],
)
def test_consistency_schedule_rejects(kwargs, error, match):
    with pytest.raises(error, match=match):
        ConsistencySchedule(**kwargs)


def test_consistency_schedule_rejects_negative_step():
    with pytest.raises(ValueError, match=r"step must be a finite number >= 0"):
        ConsistencySchedule(ramp="none")(-1)
    with pytest.raises(ValueError, match=r"step must be a finite number >= 0"):
        ConsistencySchedule(ramp="linear", ramp_steps=5)(-1)
