import pytest
import torch
from torch import nn

from ssl_mix.teacher import EMATeacher


def make_student(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)).double()


def set_params(model: nn.Module, value: float) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(value)


def first_param(model: nn.Module) -> torch.Tensor:
    return next(iter(model.parameters()))


def test_teacher_is_a_frozen_copy():
    student = make_student()
    teacher = EMATeacher(student, decay=0.9)
    assert teacher.module is not student
    assert all(not p.requires_grad for p in teacher.module.parameters())
    assert all(p.requires_grad for p in student.parameters())
    for pt, ps in zip(teacher.module.parameters(), student.parameters(), strict=True):
        torch.testing.assert_close(pt, ps)
        assert pt.data_ptr() != ps.data_ptr()


def test_decay_at_values():
    warm = EMATeacher(make_student(), decay=0.99)
    assert [warm.decay_at(t) for t in range(4)] == [0.0, 0.5, 1 - 1 / 3, 0.75]
    assert warm.decay_at(99) == pytest.approx(0.99) and warm.decay_at(10_000) == 0.99
    for t in (0, 5, 50, 150, 999):
        assert warm.decay_at(t) == min(1 - 1 / (t + 1), 0.99)
    cold = EMATeacher(make_student(), decay=0.99, warmup=False)
    assert [cold.decay_at(t) for t in (0, 1, 1000)] == [0.99, 0.99, 0.99]


def test_ema_closed_form_without_warmup():
    student = make_student()
    set_params(student, 2.0)
    teacher = EMATeacher(student, decay=0.8, warmup=False)
    values = [1.0, -3.0, 5.0, 0.5]
    for step, s in enumerate(values):
        set_params(student, s)
        teacher.update(student, step)
    # p_n = d^n p_0 + sum_t (1 - d) d^(n - 1 - t) s_t
    d, n = 0.8, len(values)
    expected = d**n * 2.0 + sum((1 - d) * d ** (n - 1 - t) * s for t, s in enumerate(values))
    for p in teacher.module.parameters():
        torch.testing.assert_close(p, torch.full_like(p, expected))


def test_ema_closed_form_with_warmup():
    student = make_student()
    teacher = EMATeacher(student, decay=0.9)
    values = [float(v) for v in range(1, 14)]
    for step, s in enumerate(values[:10]):
        set_params(student, s)
        teacher.update(student, step)
    # While 1 - 1/(t+1) <= decay (t <= 9) the warm-up decay makes the teacher the running mean of the student.
    mean10 = sum(values[:10]) / 10
    torch.testing.assert_close(first_param(teacher.module), torch.full_like(first_param(student), mean10))
    for step in range(10, 13):
        set_params(student, values[step])
        teacher.update(student, step)
    expected = 0.9**3 * mean10 + 0.1 * (0.9**2 * values[10] + 0.9 * values[11] + values[12])
    for p in teacher.module.parameters():
        torch.testing.assert_close(p, torch.full_like(p, expected))


def test_first_warmup_update_copies_student():
    student, other = make_student(0), make_student(1)
    teacher = EMATeacher(other, decay=0.999)
    teacher.update(student, 0)
    for pt, ps in zip(teacher.module.parameters(), student.parameters(), strict=True):
        torch.testing.assert_close(pt, ps)


def test_buffers_are_copied_not_averaged():
    student = make_student()
    teacher = EMATeacher(student, decay=0.99, warmup=False)
    student.train()
    student(torch.randn(8, 3, dtype=torch.float64))
    student(torch.randn(8, 3, dtype=torch.float64) + 3)
    teacher.update(student, 0)
    bn_t, bn_s = teacher.module[1], student[1]
    torch.testing.assert_close(bn_t.running_mean, bn_s.running_mean, rtol=0, atol=0)
    torch.testing.assert_close(bn_t.running_var, bn_s.running_var, rtol=0, atol=0)
    assert bn_t.num_batches_tracked.item() == 2


def test_own_buffers_are_left_to_the_teachers_own_passes():
    student = make_student()
    teacher = EMATeacher(student, decay=0.99, warmup=False, buffers="own")
    before = [b.clone() for b in teacher.module.buffers()]
    student(torch.randn(8, 3, dtype=torch.float64) + 3)
    teacher.update(student, 0)
    assert all(torch.equal(a, b) for a, b in zip(before, teacher.module.buffers(), strict=True))
    assert not torch.equal(teacher.module[1].running_mean, student[1].running_mean)
    teacher.train()
    with torch.no_grad():
        teacher(torch.randn(8, 3, dtype=torch.float64) - 3)
    assert teacher.module[1].num_batches_tracked.item() == 1 and student[1].num_batches_tracked.item() == 1
    assert (teacher.module[1].running_mean != before[0]).all()


def test_update_uses_one_foreach_call(monkeypatch):
    calls = []
    real = torch._foreach_lerp_
    monkeypatch.setattr(torch, "_foreach_lerp_", lambda *a: calls.append(len(a[0])) or real(*a))
    student = make_student()
    EMATeacher(student).update(student, 3)
    assert calls == [len(list(student.parameters()))]


def test_no_gradient_reaches_teacher():
    student = make_student()
    teacher = EMATeacher(student)
    x = torch.randn(4, 3, dtype=torch.float64)
    out_t = teacher(x)
    assert not out_t.requires_grad
    (student(x) - out_t).pow(2).sum().backward()
    assert all(p.grad is not None for p in student.parameters())
    assert all(p.grad is None for p in teacher.module.parameters())


def test_forward_runs_the_module():
    student = make_student().eval()
    teacher = EMATeacher(student).eval()
    x = torch.randn(5, 3, dtype=torch.float64)
    torch.testing.assert_close(teacher(x), student(x))


def test_state_dict_round_trip():
    student = make_student(0)
    teacher = EMATeacher(student, decay=0.7, warmup=False)
    set_params(student, 1.5)
    student(torch.randn(6, 3, dtype=torch.float64))
    teacher.update(student, 0)
    restored = EMATeacher(make_student(1), decay=0.7, warmup=False)
    restored.load_state_dict(teacher.state_dict())
    for (name, a), (_, b) in zip(teacher.state_dict().items(), restored.state_dict().items(), strict=True):
        assert name.startswith("module.")
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    set_params(student, -2.0)
    teacher.update(student, 1)
    restored.update(student, 1)
    for a, b in zip(teacher.module.parameters(), restored.module.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_wrapped_students_are_unwrapped():
    student = make_student()
    teacher = EMATeacher(nn.DataParallel(student), decay=0.5, warmup=False)
    assert isinstance(teacher.module, nn.Sequential)
    set_params(student, 4.0)
    teacher.update(nn.DataParallel(student), 0)
    # Wrapping only: the compiled module is never called, so nothing is compiled.
    teacher.update(torch.compile(student), 1)
    p0 = first_param(make_student())
    expected = 0.25 * p0 + 0.75 * 4.0
    torch.testing.assert_close(first_param(teacher.module), expected)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(decay=-0.1), ValueError, r"decay must be in \[0, 1\].*got -0.1"),
        (dict(decay=1.5), ValueError, r"decay must be in \[0, 1\].*got 1.5"),
        (dict(decay=float("nan")), ValueError, r"decay must be in \[0, 1\].*got nan"),
        (dict(decay="0.9"), TypeError, r"decay must be a number, got str"),
        (dict(warmup=1), TypeError, r"warmup must be a bool, got int"),
        (dict(buffers="average"), ValueError, r"buffers must be one of 'own', 'copy'; got 'average'"),
    ],
)
def test_teacher_rejects_bad_construction(kwargs, error, match):
    with pytest.raises(error, match=match):
        EMATeacher(make_student(), **kwargs)


def test_teacher_rejects_bad_student_and_step():
    with pytest.raises(TypeError, match=r"student must be a torch.nn.Module, got dict"):
        EMATeacher({"weight": torch.zeros(2)})
    teacher = EMATeacher(make_student())
    with pytest.raises(ValueError, match=r"step must be >= 0, got -1"):
        teacher.update(make_student(), -1)
    with pytest.raises(TypeError, match=r"step must be an int, got float"):
        teacher.decay_at(1.0)
    with pytest.raises(TypeError, match=r"student must be a torch.nn.Module"):
        teacher.update(None, 0)
    with pytest.raises(ValueError, match=r"student has 2 parameters and 0 buffers but the teacher has 6 and 3"):
        teacher.update(nn.Linear(3, 4), 0)
