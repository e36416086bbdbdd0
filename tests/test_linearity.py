import math

import pytest
import torch
from torch import nn

from ssl_mix.analysis import (
    LinearityProbe,
    layer_key,
    linearity_probe,
    measure_linearity,
    nonlinearity,
    nonlinearity_k,
)
from ssl_mix.data import DataSpec, ImageArrays, normalize
from ssl_mix.mixing import sample_mix_weights
from ssl_mix.models import StagedModel, create_model


def linear_model(bias: bool = False) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8, bias=bias), nn.Linear(8, 5, bias=bias), nn.Linear(5, 3, bias=bias))


def relu_model() -> nn.Sequential:
    # Bias-free with ReLU: positively homogeneous, so scaling any layer's weights by c > 0 scales every later
    # layer's output by c as well.
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(6, 16, bias=False), nn.ReLU(), nn.Linear(16, 16, bias=False), nn.ReLU(),
                         nn.Linear(16, 3, bias=False))


def pairs(n: int = 32, d: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randn(n, d, generator=g), torch.rand(n, generator=g)


# --- the measure ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [False, True])
def test_linear_model_has_zero_nonlinearity_at_every_layer(bias):
    # Mixing weights sum to one, so affine maps (bias=True) are exactly linear along mixes too.
    x1, x2, lam = pairs()
    values = nonlinearity(linear_model(bias), x1, x2, lam, layers=["input", 0, 1, 2])
    assert list(values) == ["input", 0, 1, 2]
    for layer, value in values.items():
        assert value.shape == () and 0 <= float(value) < 1e-6, (layer, float(value))


def test_linear_conv_model_zero_and_k_point_mixes_zero():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, bias=False), nn.Conv2d(4, 4, 3, stride=2, bias=False),
                          nn.Flatten(), nn.Linear(16, 3, bias=False))
    g = torch.Generator().manual_seed(3)
    points = torch.randn(4, 10, 2, 7, 7, generator=g)  # K=4 endpoints of 10 mixes
    weights = sample_mix_weights(4, 0.7, 10, generator=g)
    for value in nonlinearity_k(model, points, weights).values():
        assert float(value) < 1e-6


def test_nonlinear_layers_are_positive_and_layers_before_them_zero():
    model = relu_model()
    x1, x2, lam = pairs()
    values = nonlinearity(model, x1, x2, lam)
    assert float(values[0]) < 1e-6  # the first Linear precedes every non-linearity
    for layer in (1, 2, 3, 4):
        assert float(values[layer]) > 1e-2, (layer, float(values[layer]))
    tanh = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 2))
    assert float(nonlinearity(tanh, x1, x2, lam, layers=[1])[1]) > 1e-3


@pytest.mark.parametrize("normalization", ["shared", "example"])
def test_measure_ignores_output_scale(normalization):
    model = relu_model()
    x1, x2, lam = pairs()
    before = nonlinearity(model, x1, x2, lam, normalization=normalization)
    with torch.no_grad():
        for i, c in ((0, 7.5), (2, 0.01), (4, 300.0)):
            model[i].weight.mul_(c)
    after = nonlinearity(model, x1, x2, lam, normalization=normalization)
    for layer in before:
        torch.testing.assert_close(after[layer], before[layer], rtol=1e-4, atol=1e-6)


def test_two_pair_hand_computation():
    # Stage 0 is an elementwise ReLU on R^2.
    #  pair 1: x1=(1,-1), x2=(-1,1), lam=0.5:  f(mix)=f(0,0)=(0,0); lam f1 + (1-lam) f2 = (.5,.5);
    #          shared scale max(0, .5*1 + .5*1) = 1                -> d1 = sqrt(.5)
    #  pair 2: x1=(2,0), x2=(-2,2), lam=0.25:  mix=(-1,1.5), f(mix)=(0,1.5); mix of f=(.5,1.5);
    #          shared scale max(1.5, .25*2 + .75*2) = 2            -> d2 = .5 / 2 = .25
    #  per-example ("example"): d1 = |0 - (.5,.5)| = sqrt(.5); d2 = |(0,1) - (.25,.75)| = sqrt(.125)
    model = nn.Sequential(nn.ReLU())
    x1 = torch.tensor([[1.0, -1.0], [2.0, 0.0]])
    x2 = torch.tensor([[-1.0, 1.0], [-2.0, 2.0]])
    lam = torch.tensor([0.5, 0.25])
    d = nonlinearity(model, x1, x2, lam, reduction="none")[0]
    torch.testing.assert_close(d, torch.tensor([math.sqrt(0.5), 0.25]))
    mean = nonlinearity(model, x1, x2, lam)[0]
    total = nonlinearity(model, x1, x2, lam, reduction="sum")[0]
    torch.testing.assert_close(mean, torch.tensor((math.sqrt(0.5) + 0.25) / 2))
    torch.testing.assert_close(total, 2 * mean)  # the paper's sum = mean * number of pairs
    d_example = nonlinearity(model, x1, x2, lam, normalization="example", reduction="none")[0]
    torch.testing.assert_close(d_example, torch.tensor([math.sqrt(0.5), math.sqrt(0.125)]))


def test_pairs_equal_two_point_mixes_and_scalar_lam_broadcasts():
    model = relu_model()
    x1, x2, _ = pairs(8)
    a = nonlinearity(model, x1, x2, 0.3, reduction="none")
    b = nonlinearity_k(model, torch.stack([x1, x2]), torch.tensor([[0.3, 0.7]]), reduction="none")
    for layer in a:
        torch.testing.assert_close(a[layer], b[layer])


def test_lam_zero_or_one_is_exactly_linear():
    model = relu_model()
    x1, x2, _ = pairs(8)
    for lam in (0.0, 1.0):
        assert all(float(v) < 1e-6 for v in nonlinearity(model, x1, x2, lam).values())


def test_restores_modes_uses_eval_and_builds_no_graph():
    model = create_model("cnn-small", 3, in_channels=1, widths=(4, 8))
    model.train()
    model.stages[0][1].eval()  # one submodule deliberately in eval mode: its own mode must come back
    running = model.stages[0][1].running_mean.clone(), model.stages[1][1].running_mean.clone()
    x1, x2 = torch.randn(5, 1, 8, 8), torch.randn(5, 1, 8, 8)
    values = nonlinearity(model, x1, x2, 0.4)
    assert all(not v.requires_grad for v in values.values())
    assert model.training and model.stages[1][1].training and not model.stages[0][1].training
    torch.testing.assert_close(model.stages[0][1].running_mean, running[0], rtol=0, atol=0)
    torch.testing.assert_close(model.stages[1][1].running_mean, running[1], rtol=0, atol=0)


# --- measure_linearity / probe ---------------------------------------------------------------------------


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return create_model("cnn-small", 4, in_channels=1, widths=(4, 8))


def test_measure_linearity_keys_determinism_and_batch_independence():
    model = small_cnn()
    images = torch.randn(20, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    a = measure_linearity(model, images, num_pairs=24, seed=3, batch_size=5)
    b = measure_linearity(model, images, num_pairs=24, seed=3, batch_size=64)
    c = measure_linearity(model, images, num_pairs=24, seed=4)
    assert list(a) == ["0_stage1", "1_stage2", "2_pooled", "3_logits"]
    assert all(isinstance(v, float) for v in a.values())
    assert a == measure_linearity(model, images, num_pairs=24, seed=3, batch_size=5)
    for key in a:
        assert b[key] == pytest.approx(a[key], rel=1e-5)
    assert a != c


def test_measure_linearity_k_points_and_no_mixing():
    model = small_cnn()
    images = torch.randn(12, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    k4 = measure_linearity(model, images, num_pairs=10, seed=0, k=4, alpha=0.5, layers=[1, 3])
    assert list(k4) == ["1_stage2", "3_logits"] and all(v > 0 for v in k4.values())
    # alpha = 0 puts all weight on the first point: no mixing, so nothing to be non-linear about.
    assert all(v == 0 for v in measure_linearity(model, images, num_pairs=10, seed=0, alpha=0.0).values())


def test_probe_matches_measure_linearity_on_normalised_images():
    model = small_cnn()
    g = torch.Generator().manual_seed(2)
    arrays = ImageArrays(torch.randint(0, 256, (15, 1, 8, 8), dtype=torch.uint8, generator=g),
                         torch.randint(0, 4, (15,), generator=g), ["a", "b", "c", "d"])
    spec = DataSpec("test", 4, (0.5,), (0.25,))
    probe = linearity_probe(arrays, spec, num_pairs=9, seed=7, device="cpu", batch_size=4)
    assert isinstance(probe, LinearityProbe) and probe.num_mixes == 9 and probe.points.shape == (2, 9, 1, 8, 8)
    expected = measure_linearity(model, normalize(arrays.images, spec.mean, spec.std), num_pairs=9, seed=7)
    got = probe(model)
    assert list(got) == list(expected)
    for key in got:
        assert got[key] == pytest.approx(expected[key], rel=1e-5)
    assert probe(model) == got  # a fixed sample: repeated calls agree


@pytest.mark.parametrize("cells", [None, 20])
def test_mix_endpoints_are_distinct_images(monkeypatch, cells):
    # Mixing an image with itself is trivially linear and would bias the mean down. cells=20 forces the
    # sampler to draw in chunks of 2 rows.
    from ssl_mix.analysis import linearity

    if cells is not None:
        monkeypatch.setattr(linearity, "_SAMPLING_CELLS", cells)
    indices, weights = linearity._sample_mixes(10, 31, 3, 1.0, seed=5)
    assert indices.shape == (31, 3) and weights.shape == (31, 3)
    assert all(len(set(row)) == 3 for row in indices.tolist()) and indices.min() >= 0 and indices.max() < 10
    tight, _ = linearity._sample_mixes(3, 40, 3, 1.0, seed=5)  # only 3 images: every row is a permutation
    assert all(sorted(row) == [0, 1, 2] for row in tight.tolist())
    torch.testing.assert_close(linearity._sample_mixes(10, 31, 3, 1.0, seed=5)[0], indices, rtol=0, atol=0)


def test_layer_keys():
    model = create_model("wrn28-2", 10)
    assert [layer_key(model, i) for i in range(6)] == ["0_conv1", "1_group1", "2_group2", "3_group3",
                                                        "4_pooled", "5_logits"]
    assert layer_key(model, "input") == "input"
    assert layer_key(nn.Sequential(nn.ReLU(), nn.ReLU()), 1) == "1_1"
    with pytest.raises(ValueError, match="layer must be 'input' or an int in 0..5"):
        layer_key(model, 6)


# --- errors ----------------------------------------------------------------------------------------------


def test_argument_errors():
    model = relu_model()
    x1, x2, lam = pairs(4)
    with pytest.raises(ValueError, match="normalization must be one of"):
        nonlinearity(model, x1, x2, lam, normalization="unit")
    with pytest.raises(ValueError, match="reduction must be one of"):
        nonlinearity(model, x1, x2, lam, reduction="max")
    with pytest.raises(ValueError, match="x1 and x2 must have the same shape"):
        nonlinearity(model, x1, x2[:3], lam)
    with pytest.raises(ValueError, match=r"lam must lie in \[0, 1\]"):
        nonlinearity(model, x1, x2, 1.5)
    with pytest.raises(ValueError, match="lam must be a float or a tensor of shape"):
        nonlinearity(model, x1, x2, torch.rand(3))
    with pytest.raises(ValueError, match="K >= 2 endpoints"):
        nonlinearity_k(model, x1[None], torch.ones(4, 1))
    with pytest.raises(ValueError, match=r"weights must have shape \(N, K\)"):
        nonlinearity_k(model, torch.stack([x1, x2]), torch.full((4, 3), 1 / 3))
    with pytest.raises(ValueError, match="summing to 1"):
        nonlinearity_k(model, torch.stack([x1, x2]), torch.tensor([[0.7, 0.7]]))
    with pytest.raises(ValueError, match="every row >= 0"):
        nonlinearity_k(model, torch.stack([x1, x2]), torch.tensor([[1.5, -0.5]]))
    with pytest.raises(TypeError, match="points must be a floating-point tensor"):
        nonlinearity_k(model, torch.zeros(2, 4, 6, dtype=torch.long), torch.tensor([[0.5, 0.5]]))
    with pytest.raises(TypeError, match="has no `stages`"):
        nonlinearity(nn.Linear(6, 2), x1, x2, lam)
    with pytest.raises(ValueError, match="layers must be"):
        nonlinearity(model, x1, x2, lam, layers=[9])


def test_measure_and_probe_errors():
    model = small_cnn()
    images = torch.randn(6, 1, 8, 8)
    with pytest.raises(ValueError, match="num_pairs must be >= 1"):
        measure_linearity(model, images, num_pairs=0, seed=0)
    with pytest.raises(ValueError, match="k \\(number of points to mix\\) must be an int >= 2"):
        measure_linearity(model, images, num_pairs=4, seed=0, k=1)
    with pytest.raises(ValueError, match="need at least k=4 images"):
        measure_linearity(model, images[:3], num_pairs=4, seed=0, k=4)
    with pytest.raises(ValueError, match="alpha"):
        measure_linearity(model, images, num_pairs=4, seed=0, alpha=-1.0)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        measure_linearity(model, images, num_pairs=4, seed=0, batch_size=0)
    with pytest.raises(TypeError, match="images must be a floating-point tensor of model inputs"):
        measure_linearity(model, images.to(torch.uint8), num_pairs=4, seed=0)
    with pytest.raises(TypeError, match="seed must be an int"):
        measure_linearity(model, images, num_pairs=4, seed=0.5)
    with pytest.raises(TypeError, match="held_out must be an ssl_mix.data.ImageArrays"):
        linearity_probe(images, DataSpec("t", 4, (0.5,), (0.25,)), num_pairs=4, seed=0)
    probe = LinearityProbe(torch.randn(2, 3, 1, 8, 8), torch.tensor([[0.5, 0.5]]))
    with torch.device("meta"):
        elsewhere = StagedModel([nn.Conv2d(1, 2, 3)], ["conv"])
    with pytest.raises(ValueError, match="the model is on meta but the probe's sample is on cpu"):
        probe(elsewhere)
