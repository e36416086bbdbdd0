"""FixMatch and MixMatch: each piece against a hand computation, with the official value or formula cited."""

import math

import pytest
import torch
from torch import nn

from ssl_mix import FixMatch, MixMatch
from ssl_mix.config import MethodConfig
from ssl_mix.methods import Batch, StepContext
from ssl_mix.methods.fixmatch import fixmatch_unlabeled_loss, pseudo_labels
from ssl_mix.methods.mixmatch import OFFICIAL_RAMP_FRACTION, guess_labels, mixmatch_mix, sharpen
from ssl_mix.ramps import ConsistencySchedule


def test_pseudo_labels_and_mask_match_official_formula():
    # fixmatch.py:113-118: argmax of softmax(weak), mask = max prob >= confidence, mean over all mu*B rows.
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 0.1, 0.0], [0.0, 0.0, 10.0]])
    labels, mask = pseudo_labels(logits, 0.95)
    assert labels.tolist() == [0, 1, 2]
    p0 = math.exp(4) / (math.exp(4) + 2)
    assert mask.tolist() == [float(p0 >= 0.95), 0.0, 1.0]
    strong = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [3.0, 2.0, 1.0]])
    ce = [-math.log(math.exp(row[c]) / sum(math.exp(v) for v in row))
          for row, c in zip(strong.tolist(), labels.tolist(), strict=True)]
    expected = sum(c * m for c, m in zip(ce, mask.tolist(), strict=True)) / 3
    assert fixmatch_unlabeled_loss(strong, labels, mask).item() == pytest.approx(expected, rel=1e-6)


def test_sharpen_and_guess_match_official_formula():
    # mixmatch.py:45-49: mean softmax over the nu views, then p^(1/T) / sum p^(1/T).
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    pa = [math.exp(1) / (math.exp(1) + 1), 1 / (math.exp(1) + 1)]
    mean = [(pa[0] + pa[1]) / 2, (pa[1] + pa[0]) / 2]
    assert guess_labels([a, b], 0.5)[0].tolist() == pytest.approx([0.5, 0.5])
    p = torch.tensor([[0.8, 0.2]])
    assert sharpen(p, 0.5)[0].tolist() == pytest.approx([0.64 / 0.68, 0.04 / 0.68])
    assert mean == pytest.approx([0.5, 0.5])


def test_mixmatch_mix_keeps_lambda_prime_at_least_half():
    # layers.py:169: mix = max(mix, 1 - mix); targets mixed with the same weight and permutation.
    g = torch.Generator().manual_seed(0)
    x = torch.eye(6).view(6, 6, 1, 1)
    t = torch.eye(6)
    xm, tm = mixmatch_mix(x, t, 0.75, generator=g)
    assert torch.allclose(xm.view(6, 6), tm)
    assert (tm.diagonal() >= 0.5 - 1e-6).all()
    assert torch.allclose(tm.sum(1), torch.ones(6))


def test_official_ramp_fraction():
    assert OFFICIAL_RAMP_FRACTION == 1 / 64  # warmup_kimg=1024 of train_kimg=1<<16 (mixmatch.py:52,146)


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 3))


def test_fixmatch_and_mixmatch_losses_run_and_backprop():
    x_l, y_l = torch.randn(2, 3, 2, 2), torch.tensor([0, 1])
    w, s = torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2)
    for method, views in ((FixMatch(), (w, s)), (MixMatch(), (w, s))):
        model = _model()
        out = method.loss(model, Batch(x_l, y_l, w, views), StepContext(step=0, generator=torch.Generator()))
        out.loss.backward()
        assert torch.isfinite(out.loss)


@pytest.mark.parametrize(("updates", "match"), [
    ({"name": "fixmatch", "threshold": 0.0}, "method.threshold"),
    ({"name": "fixmatch", "threshold": 1.5}, "method.threshold"),
    ({"name": "mixmatch", "temperature": 0.0}, "method.temperature"),
    ({"name": "mixmatch", "num_views": 0}, "method.num_views"),
    ({"name": "ict", "threshold": 0.9}, "applies to the 'fixmatch' method only"),
    ({"name": "fixmatch", "num_views": 2}, "applies to the 'mixmatch' method only"),
])
def test_bad_settings_are_config_errors(updates, match):
    with pytest.raises(ValueError, match=match):
        MethodConfig(**updates)


def test_views_for():
    assert FixMatch.views_for(MethodConfig(name="fixmatch")) == ("weak", "strong")
    assert MixMatch.views_for(MethodConfig(name="mixmatch", num_views=3)) == ("weak",) * 3


def test_fixmatch_lr_schedule_matches_official_cosine():
    # fixmatch.py:92-93: lr * cos(clip(step / train_nimg, 0, 1) * 7 pi / (2 * 8)).
    from ssl_mix.config import OptimConfig
    from ssl_mix.optim import lr_multiplier

    cfg = OptimConfig(lr_schedule="fixmatch")
    for k in (0, 250, 1000, 2000):
        assert lr_multiplier(k, 1000, cfg) == pytest.approx(math.cos(7 * math.pi * min(k / 1000, 1) / 16))


def test_presets_match_official_hyper_parameters():
    from ssl_mix.config import preset

    f = preset("fixmatch-cifar10")  # fixmatch.py:165-176
    assert (f.data.batch_size, f.data.unlabeled_batch_size, f.method.threshold, f.method.consistency_weight) == (
        64, 448, 0.95, 1.0)
    assert (f.optim.optimizer, f.optim.lr, f.optim.nesterov, f.optim.weight_decay, f.optim.decay_norm_bias,
            f.optim.lr_schedule, f.method.ema_decay, f.train.steps) == ("sgd", 0.03, True, 5e-4, False, "fixmatch",
                                                                        0.999, 2 ** 20)
    assert preset("fixmatch-cifar100").optim.weight_decay == 1e-3
    m = preset("mixmatch-cifar10")  # mixmatch.py:52-63,136-146; README --w_match=75 --beta=0.75
    assert (m.method.num_views, m.method.temperature, m.method.alpha, m.method.consistency_weight,
            m.method.ramp, m.method.ramp_fraction) == (2, 0.5, 0.75, 75.0, "linear", 1 / 64)
    assert (m.optim.optimizer, m.optim.lr, m.optim.weight_decay, m.optim.decay_norm_bias,
            m.optim.lr_schedule) == ("adamw", 0.002, 0.02, False, "constant")
    assert preset("mixmatch-svhn").method.consistency_weight == 250.0  # runs/table6.sh
    assert preset("mixmatch-cifar100").method.consistency_weight == 150.0  # runs/table1.sh
    assert preset("fixmatch-cpu").model.name == preset("cpu-cifar10").model.name


def test_fixmatch_loss_equals_hand_computation():
    # fixmatch.py:108-131: xe(labeled) + wu * mean(mask * xe(strong, argmax softmax(weak))).
    import torch.nn.functional as F

    model = _model()
    x_l, y_l = torch.randn(2, 3, 2, 2), torch.tensor([0, 2])
    w, s = torch.randn(4, 3, 2, 2) * 5, torch.randn(4, 3, 2, 2)
    out = FixMatch(threshold=0.6, unlabeled_weight=2.0).loss(model, Batch(x_l, y_l, w, (w, s)), StepContext(step=0))
    with torch.no_grad():
        pw = torch.softmax(model(w), -1)
        mask = (pw.max(-1).values >= 0.6).float()
        ce = F.cross_entropy(model(s), pw.argmax(-1), reduction="none")
        expected = F.cross_entropy(model(x_l), y_l) + 2.0 * (ce * mask).sum() / 4
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_mixmatch_loss_equals_hand_computation():
    # mixmatch.py:62-96: one-hot labels and the sharpened guess repeated for each view, mixed together (xxy.yxy);
    # loss_xe = mean softmax-xe on the mixed labeled rows, loss_l2u = mean over rows AND classes of
    # (target - softmax)^2, total loss_xe + w_match * loss_l2u.
    model = _model()
    x_l, y_l = torch.randn(2, 3, 2, 2), torch.tensor([0, 2])
    v1, v2 = torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2)
    method = MixMatch(temperature=0.5, alpha=0.75,
                      schedule=ConsistencySchedule(max_weight=75.0, ramp="linear", ramp_steps=100))
    ctx = StepContext(step=40, generator=torch.Generator().manual_seed(3))
    out = method.loss(model, Batch(x_l, y_l, v1, (v1, v2)), ctx)
    with torch.no_grad():
        p = (torch.softmax(model(v1), -1) + torch.softmax(model(v2), -1)) / 2
        guess = p ** 2 / (p ** 2).sum(-1, keepdim=True)
        x_all = torch.cat([x_l, v1, v2])
        t_all = torch.cat([torch.eye(3)[y_l], guess, guess])
        x_mix, t_mix = mixmatch_mix(x_all, t_all, 0.75, generator=torch.Generator().manual_seed(3))
        logits = model(x_mix)
        xe = -(t_mix[:2] * torch.log_softmax(logits[:2], -1)).sum(-1).mean()
        l2u = ((t_mix[2:] - torch.softmax(logits[2:], -1)) ** 2).sum() / (8 * 3)
        w = 75.0 * 40 / 100  # w_match * clip(step / warmup, 0, 1)
    assert out.logs["consistency_weight"] == pytest.approx(w)
    assert out.loss.item() == pytest.approx((xe + w * l2u).item(), rel=1e-5)


def test_mixmatch_weight_decay_is_official_decoupled_form_on_kernels_only():
    # mixmatch.py:57,92: wd *= lr; after each Adam step, v <- v * (1 - wd) for every 'kernel' (conv and dense
    # weights), never batch-norm scales or biases. AdamW with lr 0.002, weight_decay 0.02 and decay_norm_bias False
    # is that decay: with a zero gradient (no Adam move) one step multiplies kernels by 1 - 0.02 * 0.002 exactly.
    from ssl_mix.config import preset
    from ssl_mix.optim import build_optimizer

    cfg = preset("mixmatch-cifar10").optim
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 3))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = build_optimizer(model, cfg)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for name, p in model.named_parameters():
        kernel = name in ("0.weight", "3.weight")
        factor = 1 - 0.02 * 0.002 if kernel else 1.0
        assert torch.allclose(p, before[name] * factor, rtol=0, atol=1e-9), name


def test_mixmatch_cpu_keeps_the_official_ramp_in_steps():
    # mixmatch.py:52,58,144: w_match * clip(step / (warmup_kimg << 10), 0, 1), step counted in labeled images at
    # batch 64: lambda_U(t) = 75 * min(1, t / 16384) after t updates. The CPU run stops at 6000 steps, before the
    # ramp ends; squeezing the ramp into 1/64 of the run instead reached 75 at step 94 and collapsed cnn-small to
    # one class (benchmarks/results/mixmatch_cpu_diagnosis.md).
    from ssl_mix.config import preset

    cfg = preset("mixmatch-cpu")
    schedule = MixMatch.from_config(cfg.method, num_classes=10, total_steps=cfg.train.steps).schedule
    for t in (0, 94, 1000, 3000, cfg.train.steps):
        assert schedule(t) == pytest.approx(75.0 * min(1.0, t / 16384)), t
    paper = preset("mixmatch-cifar10")
    paper_schedule = MixMatch.from_config(paper.method, num_classes=10, total_steps=paper.train.steps).schedule
    for t in (0, 94, 8192, 16384, 20000):
        assert paper_schedule(t) == pytest.approx(75.0 * min(1.0, t / 16384)), t
