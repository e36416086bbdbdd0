import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from timm.data import Mixup
from torchvision.transforms import v2

from ssl_mix.mixing import MixPlan, identity_plan, mix, sample_mix_plan, sample_mix_weights


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- weights ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k, alpha", [(2, 1.0), (2, 0.2), (3, 0.5), (5, 2.0)])
def test_weights_on_simplex(k, alpha):
    w = sample_mix_weights(k, alpha, 1000, generator=gen())
    assert w.shape == (1000, k) and w.dtype == torch.float32
    assert (w >= 0).all()
    torch.testing.assert_close(w.sum(1), torch.ones(1000), atol=1e-6, rtol=0)


@pytest.mark.parametrize("k, alpha", [(2, 1.0), (3, 0.5), (5, 2.0)])
def test_weights_mean_and_variance_match_dirichlet(k, alpha):
    # Each coordinate of Dirichlet(alpha, ..., alpha) over K points has mean 1/K and variance
    # v = (1/K)(1 - 1/K) / (K alpha + 1). The mean of N draws has standard error sqrt(v / N); we allow 5 of
    # those (a false failure has probability ~6e-7 per coordinate, and the seed is fixed anyway), which is
    # ~0.01 here, far below what a biased sampler (e.g. uniform over the wrong simplex vertex) would give.
    n = 20_000
    w = sample_mix_weights(k, alpha, n, generator=gen(1)).double()
    var = (1 / k) * (1 - 1 / k) / (k * alpha + 1)
    tol = 5 * math.sqrt(var / n)
    torch.testing.assert_close(w.mean(0), torch.full((k,), 1 / k, dtype=torch.float64), atol=tol, rtol=0)
    # The mean is 1/K for every alpha, so also check the variance, which does depend on alpha: the sample
    # variance has a relative standard error of about sqrt(2 / N) ~ 1% (more for heavy tails); allow 10%.
    torch.testing.assert_close(w.var(0), torch.full((k,), var, dtype=torch.float64), rtol=0.1, atol=0)


def test_max_first_keeps_the_larger_weight_first():
    w = sample_mix_weights(2, 1.0, 10_000, generator=gen(2), max_first=True)
    assert (w[:, 0] >= 0.5).all()
    torch.testing.assert_close(w.sum(1), torch.ones(10_000), atol=1e-6, rtol=0)
    # max(U, 1 - U) for U ~ Beta(1, 1) = Uniform(0, 1) is uniform on [0.5, 1], mean 0.75, sd 1/sqrt(48).
    assert abs(w[:, 0].double().mean().item() - 0.75) < 5 / math.sqrt(48 * 10_000)


def test_alpha_zero_is_no_mixing():
    w = sample_mix_weights(3, 0.0, 4, generator=gen())
    torch.testing.assert_close(w, torch.tensor([[1.0, 0.0, 0.0]]).expand(4, 3))
    plan = sample_mix_plan(5, k=3, alpha=0.0, generator=gen())
    x = torch.randn(5, 2, generator=gen(3))
    torch.testing.assert_close(mix(x, plan), x)


def test_small_alpha_gives_finite_weights():
    w = sample_mix_weights(4, 0.01, 2000, generator=gen())
    assert torch.isfinite(w).all()
    torch.testing.assert_close(w.sum(1), torch.ones(2000), atol=1e-6, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_weights_dtype(dtype):
    w = sample_mix_weights(3, 1.0, 50, generator=gen(), dtype=dtype)
    assert w.dtype == dtype
    torch.testing.assert_close(w.double().sum(1), torch.ones(50, dtype=torch.float64), atol=1e-2, rtol=0)


# --- plans -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("per_sample, rows", [(True, 6), (False, 1)])
def test_plan_shapes(per_sample, rows):
    plan = sample_mix_plan(6, k=4, alpha=1.0, per_sample=per_sample, generator=gen())
    assert plan.k == 4 and plan.batch_size == 6
    assert plan.weights.shape == (rows, 4)
    assert plan.perms.shape == (4, 6) and plan.perms.dtype == torch.int64
    torch.testing.assert_close(plan.perms[0], torch.arange(6))
    for p in plan.perms:
        torch.testing.assert_close(p.sort().values, torch.arange(6))


def test_plan_reproducible_with_generator():
    a = sample_mix_plan(8, k=3, alpha=0.5, per_sample=True, generator=gen(7))
    b = sample_mix_plan(8, k=3, alpha=0.5, per_sample=True, generator=gen(7))
    c = sample_mix_plan(8, k=3, alpha=0.5, per_sample=True, generator=gen(8))
    torch.testing.assert_close(a.weights, b.weights, rtol=0, atol=0)
    assert torch.equal(a.perms, b.perms)
    assert not torch.equal(a.weights, c.weights)


def test_plan_permutations_are_not_trivial():
    plan = sample_mix_plan(64, k=3, generator=gen())
    assert not torch.equal(plan.perms[1], torch.arange(64))
    assert not torch.equal(plan.perms[1], plan.perms[2])


def test_identity_plan():
    plan = identity_plan(4, k=3)
    torch.testing.assert_close(plan.weights, torch.tensor([[1.0, 0.0, 0.0]]))
    assert torch.equal(plan.perms, torch.arange(4).expand(3, 4))
    x = torch.randn(4, 3, 2, generator=gen())
    torch.testing.assert_close(plan.apply(x), x)


def test_plan_to_moves_tensors():
    plan = sample_mix_plan(3, generator=gen()).to("meta")
    assert plan.device.type == "meta" and plan.weights.device.type == "meta"


# --- mixing ----------------------------------------------------------------------------------------------


def test_one_hot_mix_sums_to_one_with_at_most_k_nonzeros():
    y = torch.randint(0, 10, (32,), generator=gen())
    targets = F.one_hot(y, 10).float()
    for k in (2, 3, 5):
        plan = sample_mix_plan(32, k=k, alpha=1.0, per_sample=True, generator=gen(k))
        mixed = mix(targets, plan)
        torch.testing.assert_close(mixed.sum(1), torch.ones(32), atol=1e-6, rtol=0)
        assert ((mixed > 0).sum(1) <= k).all()
        assert (mixed >= 0).all()


def test_three_sample_mix_by_hand():
    plan = MixPlan(
        weights=torch.tensor([[0.5, 0.3, 0.2], [0.6, 0.4, 0.0], [0.1, 0.1, 0.8]]),
        perms=torch.tensor([[0, 1, 2], [1, 2, 0], [2, 0, 1]]),
    )
    x = torch.tensor([[1.0, 10.0], [2.0, 20.0], [4.0, 40.0]])
    y = torch.eye(3)
    # out[0] = 0.5 x0 + 0.3 x1 + 0.2 x2;  out[1] = 0.6 x1 + 0.4 x2 + 0 x0;  out[2] = 0.1 x2 + 0.1 x0 + 0.8 x1
    expected_x = torch.tensor([[0.5 + 0.6 + 0.8, 5.0 + 6.0 + 8.0],
                               [1.2 + 1.6, 12.0 + 16.0],
                               [0.4 + 0.1 + 1.6, 4.0 + 1.0 + 16.0]])
    expected_y = torch.tensor([[0.5, 0.3, 0.2],
                               [0.0, 0.6, 0.4],
                               [0.1, 0.8, 0.1]])
    torch.testing.assert_close(mix(x, plan), expected_x)
    torch.testing.assert_close(plan.apply(y), expected_y)


def test_per_batch_plan_by_hand_on_images():
    plan = MixPlan(weights=torch.tensor([[0.25, 0.75]]), perms=torch.tensor([[0, 1, 2], [2, 0, 1]]))
    x = torch.arange(3.0).reshape(3, 1, 1, 1).expand(3, 2, 2, 2)
    expected = torch.tensor([0.25 * 0 + 0.75 * 2, 0.25 * 1 + 0.75 * 0, 0.25 * 2 + 0.75 * 1])
    torch.testing.assert_close(mix(x, plan), expected.reshape(3, 1, 1, 1).expand(3, 2, 2, 2))


def test_mix_rank_one_and_gradient():
    plan = MixPlan(weights=torch.tensor([[0.3, 0.7]]), perms=torch.tensor([[0, 1], [1, 1]]))
    x = torch.tensor([1.0, 3.0], requires_grad=True)
    out = mix(x, plan)
    torch.testing.assert_close(out, torch.tensor([0.3 + 2.1, 0.9 + 2.1]))
    out.sum().backward()
    # d/dx0 = 0.3 (out[0]); d/dx1 = 0.7 (out[0]) + 0.3 + 0.7 (out[1])
    torch.testing.assert_close(x.grad, torch.tensor([0.3, 1.7]))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_mix_keeps_dtype(dtype):
    plan = sample_mix_plan(4, k=3, per_sample=True, generator=gen())
    x = torch.randn(4, 5, generator=gen(1))
    out = mix(x.to(dtype), plan)
    assert out.dtype == dtype
    tol = 1e-12 if dtype == torch.float64 else 3e-2
    torch.testing.assert_close(out.double(), mix(x.double(), plan), atol=tol, rtol=tol)


def test_mix_device_follows_input():
    plan = sample_mix_plan(4, generator=gen()).to("meta")
    out = mix(torch.empty(4, 3, device="meta"), plan)
    assert out.device.type == "meta" and out.shape == (4, 3)


# --- agreement with independent mixup implementations (K = 2) --------------------------------------------


def test_k2_batch_mix_matches_timm(monkeypatch):
    lam_plan = sample_mix_plan(6, k=2, alpha=0.4, generator=gen(5))
    lam = lam_plan.weights[0, 0].item()
    # timm pairs sample i with the flipped batch (partner B - 1 - i); feed it our lambda.
    plan = MixPlan(lam_plan.weights, torch.stack([torch.arange(6), torch.arange(6).flip(0)]))
    mixer = Mixup(mixup_alpha=1.0, cutmix_alpha=0.0, label_smoothing=0.0, num_classes=4, mode="batch")
    monkeypatch.setattr(mixer, "_params_per_batch", lambda: (lam, False))
    x = torch.randn(6, 3, 4, 4, generator=gen(6))
    y = torch.tensor([0, 1, 2, 3, 1, 0])
    timm_x, timm_y = mixer(x.clone(), y)
    torch.testing.assert_close(mix(x, plan), timm_x)
    torch.testing.assert_close(mix(F.one_hot(y, 4).float(), plan), timm_y)


def test_k2_per_sample_mix_matches_timm_elem_mode(monkeypatch):
    lam_plan = sample_mix_plan(6, k=2, alpha=1.0, per_sample=True, generator=gen(9))
    lam = lam_plan.weights[:, 0].numpy().astype(np.float32)
    plan = MixPlan(lam_plan.weights, torch.stack([torch.arange(6), torch.arange(6).flip(0)]))
    mixer = Mixup(mixup_alpha=1.0, cutmix_alpha=0.0, label_smoothing=0.0, num_classes=3, mode="elem")
    monkeypatch.setattr(mixer, "_params_per_elem", lambda n: (lam, np.zeros(n, dtype=bool)))
    x = torch.randn(6, 5, generator=gen(10))
    y = torch.tensor([0, 1, 2, 2, 1, 0])
    timm_x, timm_y = mixer(x.clone(), y)
    torch.testing.assert_close(mix(x, plan), timm_x)
    torch.testing.assert_close(mix(F.one_hot(y, 3).float(), plan), timm_y)


def test_k2_batch_mix_matches_torchvision():
    lam_plan = sample_mix_plan(5, k=2, alpha=1.0, generator=gen(11))
    lam = lam_plan.weights[0, 0].item()

    class FixedLambdaMixUp(v2.MixUp):
        def make_params(self, flat_inputs):
            return {"lam": lam}

    # torchvision pairs sample i with batch.roll(1, 0), i.e. partner i - 1 (mod B).
    plan = MixPlan(lam_plan.weights, torch.stack([torch.arange(5), torch.arange(5).roll(1)]))
    x = torch.randn(5, 3, 4, 4, generator=gen(12))
    y = torch.tensor([0, 1, 2, 3, 4])
    tv_x, tv_y = FixedLambdaMixUp(num_classes=5)(x, y)
    torch.testing.assert_close(mix(x, plan), tv_x)
    torch.testing.assert_close(mix(F.one_hot(y, 5).float(), plan), tv_y)


# --- bad arguments ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(k=1, alpha=1.0, n=3), ValueError, r"k \(number of points to mix\) must be an int >= 2"),
        (dict(k=2.0, alpha=1.0, n=3), TypeError, r"k \(number of points to mix\) must be an int"),
        (dict(k=True, alpha=1.0, n=3), TypeError, r"k \(number of points to mix\) must be an int"),
        (dict(k=2, alpha=-0.1, n=3), ValueError, r"alpha .* must be a finite number >= 0, got -0.1"),
        (dict(k=2, alpha=float("nan"), n=3), ValueError, r"alpha .* must be a finite number >= 0, got nan"),
        (dict(k=2, alpha=float("inf"), n=3), ValueError, r"alpha .* must be a finite number >= 0, got inf"),
        (dict(k=2, alpha="1", n=3), TypeError, r"alpha \(Dirichlet concentration\) must be a number"),
        (dict(k=2, alpha=1.0, n=0), ValueError, r"n must be >= 1, got 0"),
        (dict(k=3, alpha=1.0, n=3, max_first=True), ValueError, r"max_first=True is only defined for k=2"),
        (dict(k=2, alpha=1.0, n=3, max_first=1), TypeError, r"max_first must be a bool"),
        (dict(k=2, alpha=1.0, n=3, dtype=torch.int64), TypeError, r"dtype must be a floating-point"),
        (dict(k=2, alpha=1.0, n=3, generator=0), TypeError, r"generator must be a torch.Generator"),
        (dict(k=2, alpha=1.0, n=3, generator=torch.Generator(), device="meta"), ValueError,
         r"generator is on cpu but device=meta"),
    ],
)
def test_sample_mix_weights_rejects(kwargs, error, match):
    with pytest.raises(error, match=match):
        sample_mix_weights(**kwargs)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(batch_size=0), ValueError, r"batch_size must be >= 1, got 0"),
        (dict(batch_size=4, k=1), ValueError, r"k \(number of points to mix\) must be an int >= 2"),
        (dict(batch_size=4, alpha=-1.0), ValueError, r"alpha .* must be a finite number >= 0"),
        (dict(batch_size=4, per_sample="yes"), TypeError, r"per_sample must be a bool"),
        (dict(batch_size=4, k=3, max_first=True), ValueError, r"max_first=True is only defined for k=2"),
    ],
)
def test_sample_mix_plan_rejects(kwargs, error, match):
    with pytest.raises(error, match=match):
        sample_mix_plan(**kwargs)


def test_identity_plan_rejects():
    with pytest.raises(ValueError, match=r"k \(number of points to mix\) must be an int >= 2"):
        identity_plan(3, k=1)
    with pytest.raises(ValueError, match=r"batch_size must be >= 1"):
        identity_plan(0)


@pytest.mark.parametrize(
    "weights, perms, error, match",
    [
        (torch.tensor([[1, 0]]), torch.zeros(2, 3, dtype=torch.int64), TypeError, r"weights must be a floating"),
        (torch.tensor([[1.0, 0.0]]), torch.zeros(2, 3), TypeError, r"perms must be an int64 tensor"),
        (torch.tensor([[1.0, 0.0]]), torch.zeros(2, 3, dtype=torch.int32), TypeError, r"perms must be an int64"),
        (torch.tensor([[1.0, 0.0]]), torch.zeros(6, dtype=torch.int64), ValueError, r"perms must have shape \(K, B\)"),
        (torch.tensor([[1.0, 0.0, 0.0]]), torch.zeros(2, 3, dtype=torch.int64), ValueError,
         r"weights must have shape \(B, K\) = \(3, 2\)"),
        (torch.ones(2, 2) / 2, torch.zeros(2, 3, dtype=torch.int64), ValueError, r"weights must have shape"),
        (torch.tensor([[1.0, 0.0]], device="meta"), torch.zeros(2, 3, dtype=torch.int64), ValueError,
         r"weights are on meta but perms on cpu"),
    ],
)
def test_mix_plan_rejects(weights, perms, error, match):
    with pytest.raises(error, match=match):
        MixPlan(weights=weights, perms=perms)


def test_mix_rejects_bad_inputs():
    plan = sample_mix_plan(4, generator=gen())
    with pytest.raises(ValueError, match=r"x has batch size 5 but the plan was sampled for batch_size=4"):
        mix(torch.zeros(5, 3), plan)
    with pytest.raises(TypeError, match=r"x must be a floating-point tensor .* got dtype torch.int64"):
        mix(torch.zeros(4, dtype=torch.int64), plan)
    with pytest.raises(TypeError, match=r"x must be a floating-point tensor .* got dtype torch.uint8"):
        mix(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), plan)
    with pytest.raises(ValueError, match=r"x must have a batch dimension"):
        mix(torch.tensor(1.0), plan)
    with pytest.raises(TypeError, match=r"x must be a torch.Tensor"):
        mix([1.0, 2.0, 3.0, 4.0], plan)
    with pytest.raises(TypeError, match=r"plan must be a MixPlan"):
        mix(torch.zeros(4), (plan.weights, plan.perms))
    with pytest.raises(ValueError, match=r"x is on meta but the plan is on cpu.*plan.to\(x.device\)"):
        mix(torch.zeros(4, 3, device="meta"), plan)
