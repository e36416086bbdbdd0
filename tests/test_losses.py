import math

import pytest
import torch
import torch.nn.functional as F

from ssl_mix.losses import ict_consistency, kl_consistency, mse_consistency, soft_target_cross_entropy
from ssl_mix.mixing import MixPlan, sample_mix_plan

LOGITS = torch.tensor([[0.0, math.log(3.0)], [math.log(2.0), 0.0]])  # softmax: [[1/4, 3/4], [2/3, 1/3]]


def test_soft_target_cross_entropy_by_hand():
    target = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    # row 0: -(0.5 log 1/4 + 0.5 log 3/4); row 1: -log 2/3
    expected = (-(0.5 * math.log(0.25) + 0.5 * math.log(0.75)) - math.log(2 / 3)) / 2
    torch.testing.assert_close(soft_target_cross_entropy(LOGITS, target), torch.tensor(expected))


def test_soft_target_cross_entropy_equals_hard_label_ce_for_one_hot():
    logits = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 4, 2, 1, 3, 3])
    torch.testing.assert_close(soft_target_cross_entropy(logits, F.one_hot(y, 5).float()), F.cross_entropy(logits, y))


def test_losses_compute_in_float32_for_half_inputs():
    target = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    for fn in (soft_target_cross_entropy, mse_consistency, kl_consistency):
        half = fn(LOGITS.bfloat16(), target.bfloat16())
        assert half.dtype == torch.float32
        torch.testing.assert_close(half, fn(LOGITS, target), atol=1e-2, rtol=1e-2)


def test_mse_consistency_by_hand():
    target = torch.tensor([[0.5, 0.5], [0.0, 1.0]])
    # squared errors: row 0: (1/4)^2 twice; row 1: (2/3)^2 twice; mean over 4 entries
    expected = (2 * (1 / 4) ** 2 + 2 * (2 / 3) ** 2) / 4
    torch.testing.assert_close(mse_consistency(LOGITS, target), torch.tensor(expected))


def test_mse_consistency_matches_ict_code_normalisation():
    # Official ICT: F.mse_loss(softmax(s), t, size_average=False) / num_classes, then / minibatch_size.
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(4, 10, generator=g), torch.softmax(torch.randn(4, 10, generator=g), 1)
    ict = F.mse_loss(s.softmax(1), t, reduction="sum") / 10 / 4
    torch.testing.assert_close(mse_consistency(s, t), ict)


def test_kl_consistency_by_hand_with_zero_target():
    target = torch.tensor([[0.5, 0.5], [0.0, 1.0]])
    # row 0: 0.5 log(0.5/(1/4)) + 0.5 log(0.5/(3/4)); row 1: 0 log 0 = 0, 1 log(1/(1/3))
    row0 = 0.5 * math.log(2.0) + 0.5 * math.log(2 / 3)
    row1 = math.log(3.0)
    torch.testing.assert_close(kl_consistency(LOGITS, target), torch.tensor((row0 + row1) / 2))


def test_kl_consistency_zero_at_match():
    torch.testing.assert_close(kl_consistency(LOGITS, LOGITS.softmax(1)), torch.tensor(0.0), atol=1e-7, rtol=0)


# --- ICT consistency -------------------------------------------------------------------------------------

# Two-sample plan: sample 0 = 0.25 u0 + 0.75 u1, sample 1 = 0.5 u1 + 0.5 u0.
PLAN = MixPlan(weights=torch.tensor([[0.25, 0.75], [0.5, 0.5]]), perms=torch.tensor([[0, 1], [1, 0]]))
TEACHER = torch.tensor([[0.0, math.log(3.0)], [math.log(2.0), 0.0]])  # probs [[1/4, 3/4], [2/3, 1/3]]
STUDENT = torch.tensor([[0.0, 0.0], [0.0, math.log(4.0)]])  # probs [[1/2, 1/2], [1/5, 4/5]]
STUDENT_PROBS = [[0.5, 0.5], [0.2, 0.8]]


def _hand_targets(target: str) -> list[list[float]]:
    if target == "probs":
        # row 0: 0.25 [1/4, 3/4] + 0.75 [2/3, 1/3]; row 1: 0.5 [2/3, 1/3] + 0.5 [1/4, 3/4]
        return [[0.25 / 4 + 0.75 * 2 / 3, 0.25 * 3 / 4 + 0.75 / 3], [0.5 * 2 / 3 + 0.5 / 4, 0.5 / 3 + 0.5 * 3 / 4]]
    # mixed logits: row 0: 0.25 [0, log 3] + 0.75 [log 2, 0] = [0.75 log 2, 0.25 log 3]; row 1: 0.5 [log 2, log 3]
    rows = [[0.75 * math.log(2.0), 0.25 * math.log(3.0)], [0.5 * math.log(2.0), 0.5 * math.log(3.0)]]
    return [[math.exp(v) / sum(math.exp(u) for u in row) for v in row] for row in rows]


@pytest.mark.parametrize("target", ["probs", "logits"])
@pytest.mark.parametrize("distance", ["mse", "kl"])
def test_ict_consistency_by_hand(target, distance):
    t = _hand_targets(target)
    if distance == "mse":
        expected = sum((STUDENT_PROBS[i][c] - t[i][c]) ** 2 for i in range(2) for c in range(2)) / 4
    else:
        expected = sum(t[i][c] * math.log(t[i][c] / STUDENT_PROBS[i][c]) for i in range(2) for c in range(2)) / 2
    got = ict_consistency(STUDENT, TEACHER, PLAN, target=target, distance=distance)
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float32))


def test_ict_target_modes_differ():
    # softmax is not linear, so mixing probabilities and mixing logits must give different targets.
    probs = ict_consistency(STUDENT, TEACHER, PLAN, target="probs")
    logits = ict_consistency(STUDENT, TEACHER, PLAN, target="logits")
    assert abs(probs.item() - logits.item()) > 1e-4


def test_ict_default_is_probs_and_mse():
    torch.testing.assert_close(
        ict_consistency(STUDENT, TEACHER, PLAN), ict_consistency(STUDENT, TEACHER, PLAN, target="probs", distance="mse")
    )


@pytest.mark.parametrize("target", ["probs", "logits"])
@pytest.mark.parametrize("distance", ["mse", "kl"])
def test_ict_gradient_reaches_only_student(target, distance):
    g = torch.Generator().manual_seed(2)
    student = torch.randn(4, 3, generator=g, requires_grad=True)
    teacher = torch.randn(4, 3, generator=g, requires_grad=True)
    plan = sample_mix_plan(4, k=3, per_sample=True, generator=g)
    loss = ict_consistency(student, teacher, plan, target=target, distance=distance)
    loss.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_ict_bf16_logits():
    got = ict_consistency(STUDENT.bfloat16(), TEACHER.bfloat16(), PLAN)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, ict_consistency(STUDENT, TEACHER, PLAN), atol=1e-3, rtol=1e-2)


# --- bad arguments ---------------------------------------------------------------------------------------


def test_ict_rejects_bad_options_and_shapes():
    with pytest.raises(ValueError, match=r"target must be one of 'probs', 'logits'; got 'prob'"):
        ict_consistency(STUDENT, TEACHER, PLAN, target="prob")
    with pytest.raises(ValueError, match=r"distance must be one of 'mse', 'kl'; got 'l2'"):
        ict_consistency(STUDENT, TEACHER, PLAN, distance="l2")
    with pytest.raises(ValueError, match=r"student_logits_on_mix and teacher_logits must both have shape \(B, C\)"):
        ict_consistency(STUDENT, TEACHER[:, :1], PLAN)
    with pytest.raises(ValueError, match=r"x has batch size 3 but the plan was sampled for batch_size=2"):
        ict_consistency(torch.zeros(3, 2), torch.zeros(3, 2), PLAN)
    with pytest.raises(TypeError, match=r"teacher_logits must be a floating-point tensor"):
        ict_consistency(STUDENT, torch.zeros(2, 2, dtype=torch.int64), PLAN)
    with pytest.raises(TypeError, match=r"plan must be a MixPlan"):
        ict_consistency(STUDENT, TEACHER, None)


@pytest.mark.parametrize("fn, first, second", [
    (soft_target_cross_entropy, "logits", "target"),
    (mse_consistency, "student_logits", "target_probs"),
    (kl_consistency, "student_logits", "target_probs"),
])
def test_pairwise_losses_reject(fn, first, second):
    shapes = r"must both have shape \(B, C\), got \(2, 2\) and \(2, 3\)"
    with pytest.raises(ValueError, match=rf"{first} and {second} {shapes}"):
        fn(torch.zeros(2, 2), torch.zeros(2, 3))
    with pytest.raises(ValueError, match=rf"{first} and {second} must both have shape \(B, C\)"):
        fn(torch.zeros(4), torch.zeros(4))
    with pytest.raises(TypeError, match=rf"{second} must be a floating-point tensor.*one_hot"):
        fn(torch.zeros(2, 2), torch.tensor([0, 1]))
    with pytest.raises(TypeError, match=rf"{first} must be a torch.Tensor"):
        fn([[0.0, 0.0]], torch.zeros(1, 2))
