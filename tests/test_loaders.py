"""Tests for ssl_mix/data/loaders.py: dual loaders (tensor-resident and DataLoader) and evaluation batches."""

from __future__ import annotations

import random
from itertools import islice

import numpy as np
import pytest
import torch

from ssl_mix.data import (
    ArrayDataset,
    DataSpec,
    ImageArrays,
    TensorDualLoader,
    TorchDualLoader,
    arrays_dataset,
    crop_flip,
    eval_batches,
    fit_zca,
    train_transform,
)


@pytest.fixture(autouse=True)
def _one_intra_op_thread():
    # Per-image transforms run on tiny tensors; on a shared 2-core machine, intra-op threads waiting for a busy
    # core make each small op take milliseconds. DataLoader workers run single-threaded for the same reason.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _identity_spec(channels: int, padding: int = 0, flip: bool = False) -> DataSpec:
    # mean 0 and std 1/255 make the normalised values equal the uint8 pixel values, so batches can be read back.
    return DataSpec("id", 10, (0.0,) * channels, (1 / 255,) * channels, crop_padding=padding, flip=flip)


def _indexed(n: int, size: int = 4) -> ImageArrays:
    """Image i is filled with the value i; target i % 10."""
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, size, size).contiguous()
    return ImageArrays(images, torch.arange(n) % 10, [str(c) for c in range(10)])


def _coordinates(n: int, size: int = 32) -> ImageArrays:
    """Channel 0 holds the row index, channel 1 the column index, so crops and flips can be read back."""
    rows = torch.arange(size).view(size, 1).expand(size, size)
    cols = torch.arange(size).view(1, size).expand(size, size)
    images = torch.stack([rows, cols]).unsqueeze(0).expand(n, 2, size, size).to(torch.uint8).contiguous()
    return ImageArrays(images, torch.arange(n) % 10, [str(c) for c in range(10)])


def _ids(x: torch.Tensor) -> list[int]:
    return x[:, 0, 0, 0].round().long().tolist()


def _raw(arrays: ImageArrays, labeled: bool = True) -> ArrayDataset:
    return ArrayDataset(arrays, None, labeled=labeled)  # uint8 (C, H, W) items, as an ImageFileDataset gives


def _take(loader, steps):
    return list(islice(iter(loader), steps))


def _same(a, b) -> bool:
    return all(torch.equal(u, v) for batch_a, batch_b in zip(a, b, strict=True)
               for u, v in zip(batch_a, batch_b, strict=True))


def test_batch_shapes_and_mu():
    labeled, unlabeled = _indexed(20), _indexed(50)
    loader = TensorDualLoader(labeled, unlabeled, _identity_spec(1, 1, True), batch_size=4, mu=3, seed=0)
    x_l, y_l, x_u = next(iter(loader))
    assert x_l.shape == (4, 1, 4, 4) and x_u.shape == (12, 1, 4, 4) and y_l.shape == (4,)
    assert x_l.dtype == torch.float32 and y_l.dtype == torch.int64
    assert TensorDualLoader(labeled, unlabeled, _identity_spec(1), batch_size=4, seed=0).unlabeled_batch_size == 4


def test_every_epoch_is_a_permutation_and_targets_follow_images():
    loader = TensorDualLoader(_indexed(10), _indexed(7), _identity_spec(1), batch_size=4, unlabeled_batch_size=4,
                              seed=3, augment=False)
    batches = _take(loader, 7)  # 28 labeled draws (2.8 epochs), 28 unlabeled draws (4 epochs)
    labeled = [i for x_l, _, _ in batches for i in _ids(x_l)]
    unlabeled = [i for _, _, x_u in batches for i in _ids(x_u)]
    assert sorted(labeled[:10]) == list(range(10)) and sorted(labeled[10:20]) == list(range(10))
    assert all(sorted(unlabeled[e * 7:(e + 1) * 7]) == list(range(7)) for e in range(4))
    assert labeled[:10] != labeled[10:20]  # reshuffled each epoch
    assert all(y_l.tolist() == [i % 10 for i in _ids(x_l)] for x_l, y_l, _ in batches)
    tiny = TensorDualLoader(_indexed(3), _indexed(7), _identity_spec(1), batch_size=8, seed=0, augment=False)
    draws = [i for x_l, _, _ in _take(tiny, 3) for i in _ids(x_l)]  # batches larger than the labeled set
    assert all(sorted(draws[e * 3:(e + 1) * 3]) == [0, 1, 2] for e in range(8))


def test_seed_determines_batches():
    labeled, unlabeled = _coordinates(30, 8), _coordinates(40, 8)
    spec = _identity_spec(2, 2, True)
    make = lambda seed: TensorDualLoader(labeled, unlabeled, spec, batch_size=5, seed=seed)  # noqa: E731
    assert _same(_take(make(1), 4), _take(make(1), 4))
    assert not _same(_take(make(1), 4), _take(make(2), 4))


def test_tensor_loader_resumes_exactly():
    labeled, unlabeled = _coordinates(30, 8), _coordinates(45, 8)
    spec = _identity_spec(2, 2, True)
    make = lambda: TensorDualLoader(labeled, unlabeled, spec, batch_size=8, mu=2, seed=11)  # noqa: E731
    straight = _take(make(), 12)
    first = make()
    _take(first, 5)
    state = first.state_dict()
    assert state["step"] == 5 and state["sizes"] == [30, 45] and state["batch_sizes"] == [8, 16]
    resumed = make()
    resumed.load_state_dict(state)
    assert _same(_take(resumed, 7), straight[5:])


@pytest.mark.parametrize("batched", [False, True], ids=["per-image", "batched"])
def test_torch_loader_resumes_exactly_and_follows_load_state_dict_mid_iteration(batched):
    labeled, unlabeled = _coordinates(20, 8), _coordinates(30, 8)
    spec = _identity_spec(2, 2, True)
    if batched:  # uint8 items, augmented on the device in batches
        datasets, options = (_raw(labeled), _raw(unlabeled, False)), {"spec": spec}
    else:
        datasets, options = (arrays_dataset(labeled, spec), arrays_dataset(unlabeled, spec, labeled=False)), {}
    make = lambda: TorchDualLoader(*datasets, batch_size=4, mu=2, seed=5, **options)  # noqa: E731
    straight = _take(make(), 8)
    first = make()
    _take(first, 3)
    resumed = make()
    resumed.load_state_dict(first.state_dict())
    assert _same(_take(resumed, 5), straight[3:])
    loader = make()
    batches = iter(loader)
    _ = [next(batches) for _ in range(4)]
    loader.load_state_dict({**loader.state_dict(), "step": 1})
    assert _same([next(batches), next(batches)], straight[1:3])


def test_worker_processes_do_not_change_batches():
    labeled, unlabeled = _coordinates(16, 8), _coordinates(24, 8)
    spec = _identity_spec(2, 2, True)
    transform = train_transform(spec, 8)
    datasets = [(img, int(t)) for img, t in zip(labeled.images, labeled.targets, strict=True)], list(unlabeled.images)
    in_process = _take(TorchDualLoader(*datasets, batch_size=4, seed=9, transform=transform), 4)
    workers = _take(TorchDualLoader(*datasets, batch_size=4, seed=9, transform=transform, num_workers=2), 4)
    assert _same(in_process, workers)


def test_both_paths_take_the_same_examples():
    labeled, unlabeled = _indexed(13), _indexed(29)
    spec = _identity_spec(1)
    fast = _take(TensorDualLoader(labeled, unlabeled, spec, batch_size=5, mu=2, seed=4, augment=False), 6)
    slow = _take(TorchDualLoader(arrays_dataset(labeled, spec, augment=False),
                                 arrays_dataset(unlabeled, spec, augment=False, labeled=False),
                                 batch_size=5, mu=2, seed=4), 6)
    for a, b in zip(fast, slow, strict=True):
        torch.testing.assert_close(a[0], b[0])
        assert torch.equal(a[1], b[1])
        torch.testing.assert_close(a[2], b[2])


def test_skipping_the_unlabeled_stream_keeps_the_labeled_batches():
    labeled, unlabeled = _coordinates(13, 8), _coordinates(29, 8)
    spec = _identity_spec(2, 2, True)

    def both(**kwargs):
        fast = TensorDualLoader(labeled, unlabeled, spec, batch_size=5, mu=2, seed=4, **kwargs)
        slow = TorchDualLoader(arrays_dataset(labeled, spec), arrays_dataset(unlabeled, spec, labeled=False),
                               batch_size=5, mu=2, seed=4, **kwargs)
        return _take(fast, 6), _take(slow, 6)

    for full, labeled_only in zip(both(), both(with_unlabeled=False), strict=True):
        for a, b in zip(full, labeled_only, strict=True):
            assert a[2].shape == (10, 2, 8, 8)
            assert b[2].shape == (0, 2, 8, 8) and b[2].dtype == a[2].dtype
            assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(TypeError, match="with_unlabeled must be a bool"):
        TensorDualLoader(labeled, unlabeled, spec, batch_size=2, seed=0, with_unlabeled=0)
    with pytest.raises(TypeError, match="with_unlabeled must be a bool"):
        TorchDualLoader(arrays_dataset(labeled, spec), arrays_dataset(unlabeled, spec), batch_size=2, seed=0,
                        with_unlabeled="no")
    with pytest.raises(TypeError, match="augment must be a bool"):
        TensorDualLoader(labeled, unlabeled, spec, batch_size=2, seed=0, augment="yes")


def _read_back(x: torch.Tensor, padding: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Crop offsets and flips of batches of `_coordinates` images (identity normalisation)."""
    out = x.round().long()
    size = out.shape[-1]
    mid = size // 2
    oy = out[:, 0, mid, mid] - mid + padding
    a, b = out[:, 1, mid, mid], out[:, 1, mid, mid + 1]
    flipped = b < a
    ox = torch.where(flipped, a - (size - 1 - mid), a - mid) + padding
    return oy, ox, flipped


def test_both_paths_draw_the_same_augmentation_distribution():
    padding, steps = 4, 40
    labeled, unlabeled = _coordinates(64), _coordinates(64)
    spec = _identity_spec(2, padding, True)
    fast = TensorDualLoader(labeled, unlabeled, spec, batch_size=32, seed=0)
    slow = TorchDualLoader(arrays_dataset(labeled, spec), arrays_dataset(unlabeled, spec, labeled=False),
                           batch_size=32, seed=0)
    stats = {}
    for name, loader in (("tensor", fast), ("torch", slow)):
        x = torch.cat([torch.cat([x_l, x_u]) for x_l, _, x_u in _take(loader, steps)])  # 2,560 crops
        oy, ox, flipped = _read_back(x, padding)
        # Every output is exactly a reflect-padded crop (and mirror) of its source image.
        assert torch.equal(x.round().to(torch.uint8), crop_flip(_coordinates(len(x)).images, oy, ox, flipped, padding))
        offsets = torch.cat([oy, ox])
        assert offsets.min() >= 0 and offsets.max() <= 2 * padding
        stats[name] = (torch.bincount(offsets, minlength=9).double() / len(offsets), flipped.double().mean())
    for freq, flip_rate in stats.values():
        assert torch.all((freq - 1 / 9).abs() < 0.03), freq  # uniform on 0..8; sd of each frequency ~ 0.0044
        assert abs(flip_rate.item() - 0.5) < 0.04  # sd ~ 0.0099
    assert torch.all((stats["tensor"][0] - stats["torch"][0]).abs() < 0.04)
    assert abs(stats["tensor"][1] - stats["torch"][1]) < 0.06


@pytest.mark.parametrize("options", [
    {},
    {"mu": 3},
    {"rank": 1, "world_size": 2},
    {"with_unlabeled": False},
    {"augment": False},
    {"balance_labeled": True},
    {"num_workers": 2},
])
def test_batched_torch_loader_equals_the_tensor_loader(options):
    # Streaming with spec=: the workers only load uint8 images; augmentation runs in batches with the tensor
    # loader's draws, so the two loaders give identical batches (crops, flips and all).
    labeled, unlabeled = _coordinates(30, 8), _coordinates(45, 8)
    spec = _identity_spec(2, 2, True)
    tensor_options = {k: v for k, v in options.items() if k != "num_workers"}
    torch_options = {**options, "balance_labeled": labeled.targets} if options.get("balance_labeled") else options
    fast = _take(TensorDualLoader(labeled, unlabeled, spec, batch_size=8, seed=7, **tensor_options), 6)
    slow = _take(TorchDualLoader(_raw(labeled), _raw(unlabeled, False), spec=spec, batch_size=8, seed=7,
                                 **torch_options), 6)
    assert _same(fast, slow)
    assert slow[0][0].dtype == torch.float32 and slow[0][2].dtype == torch.float32
    assert slow[0][2].shape[0] == (0 if options.get("with_unlabeled") is False else 8 * options.get("mu", 1))


def test_batched_torch_loader_errors():
    labeled, unlabeled, spec = _indexed(10), _indexed(12), _identity_spec(1)
    normalised = TorchDualLoader(arrays_dataset(labeled, spec), arrays_dataset(unlabeled, spec, labeled=False),
                                 spec=spec, batch_size=2, seed=0)
    with pytest.raises(TypeError, match="augments uint8 batches on the device, but the items are torch.float32"):
        next(iter(normalised))
    with pytest.raises(TypeError, match="spec must be a DataSpec"):
        TorchDualLoader(_raw(labeled), _raw(unlabeled, False), spec="cifar10", batch_size=2, seed=0)
    with pytest.raises(ValueError, match="augment=False applies to the batched path"):
        TorchDualLoader(_raw(labeled), _raw(unlabeled, False), augment=False, batch_size=2, seed=0)


def test_torch_loader_leaves_global_random_state_alone():
    labeled, unlabeled = _coordinates(8, 8), _coordinates(8, 8)
    spec = _identity_spec(2, 2, True)
    states = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    _take(TorchDualLoader(arrays_dataset(labeled, spec), arrays_dataset(unlabeled, spec, labeled=False),
                          batch_size=4, seed=0), 2)
    assert torch.equal(torch.get_rng_state(), states[0])
    assert np.array_equal(np.random.get_state()[1], states[1]) and random.getstate() == states[2]


def test_loader_argument_errors():
    labeled, unlabeled, spec = _indexed(10), _indexed(12), _identity_spec(1)
    with pytest.raises(ValueError, match="give unlabeled_batch_size or mu"):
        TensorDualLoader(labeled, unlabeled, spec, batch_size=4, unlabeled_batch_size=4, mu=1, seed=0)
    with pytest.raises(ValueError, match="mu \\* batch_size must be a positive integer.*2.5 \\* 3 = 7.5"):
        TensorDualLoader(labeled, unlabeled, spec, batch_size=3, mu=2.5, seed=0)
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        TensorDualLoader(labeled, unlabeled, spec, batch_size=0, seed=0)
    with pytest.raises(ValueError, match="seed must be >= 0, got -3"):
        TensorDualLoader(labeled, unlabeled, spec, batch_size=2, seed=-3)
    with pytest.raises(ValueError, match="labeled has 10 unlabeled examples"):
        TensorDualLoader(ImageArrays(labeled.images, torch.full((10,), -1), []), unlabeled, spec, batch_size=2,
                         seed=0)
    with pytest.raises(ValueError, match="differ in shape"):
        TensorDualLoader(labeled, _indexed(12, size=5), spec, batch_size=2, seed=0)
    with pytest.raises(ValueError, match="images have 1 channels but spec 'id' has 3"):
        TensorDualLoader(labeled, unlabeled, _identity_spec(3), batch_size=2, seed=0)
    with pytest.raises(ValueError, match="must be non-empty"):
        TensorDualLoader(labeled.subset([]), unlabeled, spec, batch_size=2, seed=0)
    with pytest.raises(TypeError, match="use TorchDualLoader for torch Datasets"):
        TensorDualLoader(arrays_dataset(labeled, spec), unlabeled, spec, batch_size=2, seed=0)
    with pytest.raises(TypeError, match="map-style dataset"):
        TorchDualLoader(iter([]), unlabeled, batch_size=2, seed=0)
    with pytest.raises(ValueError, match="num_workers must be >= 0"):
        TorchDualLoader(arrays_dataset(labeled, spec), arrays_dataset(unlabeled, spec), batch_size=2, seed=0,
                        num_workers=-1)
    untransformed = TorchDualLoader([("not a tensor", 0)] * 3, [("x", 1)] * 3, batch_size=2, seed=0)
    with pytest.raises(TypeError, match="needs tensors after the transform"):
        next(iter(untransformed))


def test_load_state_dict_errors():
    labeled, unlabeled, spec = _indexed(10), _indexed(12), _identity_spec(1)
    loader = TensorDualLoader(labeled, unlabeled, spec, batch_size=2, seed=0)
    state = loader.state_dict()
    for key, value, message in [("seed", 1, "had seed=1"), ("sizes", [10, 13], "had sizes=\\[10, 13\\]"),
                                ("batch_sizes", [2, 4], "had batch_sizes")]:
        with pytest.raises(ValueError, match=f"cannot resume: the saved loader {message}"):
            loader.load_state_dict({**state, key: value})
    with pytest.raises(ValueError, match="not a dual-loader state"):
        loader.load_state_dict({"step": "3"})
    with pytest.raises(ValueError, match="negative step"):
        loader.load_state_dict({**state, "step": -1})


def test_eval_batches_in_order_with_last_partial_batch():
    data = _indexed(11)
    spec = DataSpec("half", 10, (0.5,), (0.5,))
    batches = list(eval_batches(data, spec, 4, "cpu"))
    assert [len(y) for _, y in batches] == [4, 4, 3]
    x = torch.cat([x for x, _ in batches])
    torch.testing.assert_close(x[:, 0, 0, 0], (torch.arange(11) / 255 - 0.5) / 0.5)
    assert torch.cat([y for _, y in batches]).tolist() == data.targets.tolist()
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        eval_batches(data, spec, 0, "cpu")
    with pytest.raises(ValueError, match="images have 1 channels but spec 'id' has 3"):
        eval_batches(data, _identity_spec(3), 4, "cpu")


def test_preprocess_is_applied_after_normalisation_in_both_loaders_and_eval_batches():
    labeled, unlabeled, spec = _indexed(13), _indexed(29), DataSpec("half", 10, (0.5,), (0.5,))
    zca = fit_zca(torch.randn(50, 1, 4, 4, generator=torch.Generator().manual_seed(0)), 0.1)
    kwargs = {"batch_size": 5, "mu": 2, "seed": 4}
    fast = (TensorDualLoader(labeled, unlabeled, spec, augment=False, **kwargs),
            TensorDualLoader(labeled, unlabeled, spec, augment=False, preprocess=zca, **kwargs))
    datasets = (arrays_dataset(labeled, spec, augment=False), arrays_dataset(unlabeled, spec, augment=False,
                                                                            labeled=False))
    slow = (TorchDualLoader(*datasets, **kwargs), TorchDualLoader(*datasets, preprocess=zca, **kwargs))
    raw = (_raw(labeled), _raw(unlabeled, False))
    batched = (TorchDualLoader(*raw, spec=spec, augment=False, **kwargs),
               TorchDualLoader(*raw, spec=spec, augment=False, preprocess=zca, **kwargs))
    for plain_loader, whitened_loader in (fast, slow, batched):
        for plain, whitened in zip(_take(plain_loader, 3), _take(whitened_loader, 3), strict=True):
            torch.testing.assert_close(whitened[0], zca(plain[0]))
            assert torch.equal(whitened[1], plain[1])
            torch.testing.assert_close(whitened[2], zca(plain[2]))
    for (x, y), (xw, yw) in zip(eval_batches(labeled, spec, 4, "cpu"), eval_batches(labeled, spec, 4, "cpu",
                                                                                   preprocess=zca), strict=True):
        torch.testing.assert_close(xw, zca(x))
        assert torch.equal(y, yw)
    def double(x):
        return 2 * x

    x, _ = next(eval_batches(labeled, spec, 4, "cpu", preprocess=double))
    torch.testing.assert_close(x, 2 * next(eval_batches(labeled, spec, 4, "cpu"))[0])
    with pytest.raises(TypeError, match="preprocess must be a callable"):
        TensorDualLoader(labeled, unlabeled, spec, preprocess="zca", **kwargs)
    with pytest.raises(TypeError, match="preprocess must be a callable"):
        eval_batches(labeled, spec, 4, "cpu", preprocess=zca.matrix)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_tensor_loader_on_cuda_stays_on_device_without_host_syncs():
    labeled, unlabeled = _coordinates(40, 8), _coordinates(400, 8)
    spec = _identity_spec(2, 2, True)
    make = lambda: TensorDualLoader(labeled, unlabeled, spec, batch_size=8, seed=1, device="cuda")  # noqa: E731
    loader = make()
    batches = iter(loader)
    _ = [next(batches) for _ in range(2)]  # the first permutations are copied to the device here
    torch.cuda.set_sync_debug_mode("error")
    try:
        x_l, y_l, x_u = next(batches)  # steps inside the current epochs: no host-device synchronisation
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert x_l.is_cuda and y_l.is_cuda and x_u.is_cuda
    oy, ox, flipped = _read_back(x_l.cpu(), 2)
    assert torch.equal(x_l.cpu().round().to(torch.uint8), crop_flip(_coordinates(8, 8).images, oy, ox, flipped, 2))
    resumed = make()
    resumed.load_state_dict({**loader.state_dict(), "step": 2})
    assert _same([next(iter(resumed))], [(x_l, y_l, x_u)])


@pytest.mark.parametrize("kind", ["tensor", "torch"])
def test_shards_are_disjoint_and_together_form_the_batch_of_one_process(kind):
    labeled, unlabeled, spec = _indexed(10), _indexed(13), _identity_spec(1)

    def make(batch_size, rank=0, world_size=1):
        if kind == "tensor":
            return TensorDualLoader(labeled, unlabeled, spec, batch_size=batch_size, mu=2, seed=4, augment=False,
                                    rank=rank, world_size=world_size)
        return TorchDualLoader(arrays_dataset(labeled, spec), arrays_dataset(unlabeled, spec, labeled=False),
                               batch_size=batch_size, mu=2, seed=4, rank=rank, world_size=world_size)

    steps = 6  # 3 x 6 x 3 = 54 labeled draws: several epochs, with batches across epoch boundaries
    shards = [_take(make(3, r, 3), steps) for r in range(3)]
    whole = _take(make(9), steps)
    for s in range(steps):
        for stream in (0, 1, 2):
            assert torch.equal(torch.cat([shards[r][s][stream] for r in range(3)]), whole[s][stream])
    for e in range(5):  # each labeled epoch is split among the ranks without overlap
        epoch = [i for s in range(steps) for r in range(3) for i in _ids(shards[r][s][0])][e * 10:(e + 1) * 10]
        assert sorted(epoch) == list(range(10))


def test_shard_arguments_and_resume_are_checked():
    labeled, unlabeled, spec = _indexed(10), _indexed(12), _identity_spec(1)
    for rank, world_size in [(2, 2), (0, 0), (-1, 2)]:
        with pytest.raises(ValueError, match="need world_size >= 1 and 0 <= rank < world_size"):
            TensorDualLoader(labeled, unlabeled, spec, batch_size=2, seed=0, rank=rank, world_size=world_size)
    with pytest.raises(TypeError, match="rank must be an int"):
        TorchDualLoader(arrays_dataset(labeled, spec), arrays_dataset(unlabeled, spec), batch_size=2, seed=0,
                        rank="0")
    shard = TensorDualLoader(labeled, unlabeled, spec, batch_size=2, seed=0, rank=1, world_size=2)
    single = TensorDualLoader(labeled, unlabeled, spec, batch_size=2, seed=0)
    assert shard.state_dict()["world_size"] == 2
    with pytest.raises(ValueError, match=r"one of 1 process\(es\) but this one is one of 2; .* resume with the same"):
        shard.load_state_dict(single.state_dict())
    old = {k: v for k, v in single.state_dict().items() if k != "world_size"}  # written before sharding existed
    single.load_state_dict({**old, "step": 3})
    assert single.step == 3


def test_balanced_labeled_stream_is_class_balanced_deterministic_and_resumable():
    # 40 examples of class 0, 8 of class 1, 2 of class 2: image i holds the value i.
    targets = torch.tensor([0] * 40 + [1] * 8 + [2] * 2)
    labeled = ImageArrays(torch.arange(50, dtype=torch.uint8).view(50, 1, 1, 1).expand(50, 1, 4, 4).contiguous(),
                          targets, ["a", "b", "c"])
    spec = _identity_spec(1)
    make = lambda: TensorDualLoader(labeled, _indexed(30), spec, batch_size=10, seed=2, augment=False,  # noqa: E731
                                    balance_labeled=True)
    batches = _take(make(), 12)  # one epoch: 3 classes x 40 = 120 draws
    ids = [i for x_l, _, _ in batches for i in _ids(x_l)]
    drawn = torch.tensor(ids)
    assert torch.equal(torch.cat([y for _, y, _ in batches]), targets[drawn])
    assert torch.bincount(targets[drawn]).tolist() == [40, 40, 40]  # each class as often as the largest
    assert sorted(i for i in ids if i < 40) == list(range(40))  # the largest class: each example once per epoch
    assert _same(batches, _take(make(), 12))
    resumed = make()
    resumed.load_state_dict({**make().state_dict(), "step": 7})
    assert _same(batches[7:], _take(resumed, 5))
    plain = _take(TensorDualLoader(labeled, _indexed(30), spec, batch_size=10, seed=2, augment=False), 5)
    assert torch.bincount(torch.cat([y for _, y, _ in plain]), minlength=3)[0] > 30  # without: mostly class 0
    slow = _take(TorchDualLoader(arrays_dataset(labeled, spec, augment=False),
                                 arrays_dataset(_indexed(30), spec, augment=False, labeled=False), batch_size=10,
                                 seed=2, balance_labeled=targets), 12)
    # The DataLoader path takes the same examples.
    assert all(torch.equal(a[1], b[1]) for a, b in zip(batches, slow, strict=True))
    with pytest.raises(ValueError, match="balance_labeled has 3 class indices but the labeled set has 50"):
        TorchDualLoader(arrays_dataset(labeled, spec), arrays_dataset(_indexed(30), spec, labeled=False),
                        batch_size=10, seed=2, balance_labeled=[0, 1, 2])
    with pytest.raises(TypeError, match="balance_labeled must be a bool"):
        TensorDualLoader(labeled, _indexed(30), spec, batch_size=10, seed=2, balance_labeled="yes")


# --- several views of the unlabeled images ------------------------------------------------------------------------

_VIEWS = ("weak", "strong", "weak")


def _rgb_coordinates(n: int, size: int = 32) -> ImageArrays:
    """Row and column indices (as :func:`_coordinates`), and the image's index in channel 2: RandAugment needs RGB."""
    coordinates = _coordinates(n, size)
    index = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, size, size)
    return ImageArrays(torch.cat([coordinates.images, index], 1), coordinates.targets, coordinates.classes)


def _views_loaders(views=_VIEWS, **options):
    labeled, unlabeled = _rgb_coordinates(30), _rgb_coordinates(45)
    spec = _identity_spec(3, 2, True)
    tensor = TensorDualLoader(labeled, unlabeled, spec, batch_size=4, mu=2, seed=7, unlabeled_views=views, **options)
    streamed = TorchDualLoader(_raw(labeled), _raw(unlabeled, False), spec=spec, batch_size=4, mu=2, seed=7,
                               unlabeled_views=views, **options)
    return tensor, streamed


def _flat(batches):
    return [(x_l, y_l, *x_u) for x_l, y_l, x_u in batches]


def test_view_names_are_the_methods():
    from ssl_mix.methods.base import VIEW_NAMES
    tensor, _ = _views_loaders(VIEW_NAMES)
    assert tensor.unlabeled_views == VIEW_NAMES == ("weak", "strong")


def test_views_are_deterministic_distinct_and_view_0_is_the_one_view_batch():
    tensor, _ = _views_loaders()
    again, _ = _views_loaders()
    batches = _take(tensor, 4)
    assert _same(_flat(batches), _flat(_take(again, 4)))
    one_view, _ = _views_loaders(("weak",))
    plain = _take(one_view, 4)
    for (x_l, y_l, views), (p_l, q_l, p_u) in zip(batches, plain, strict=True):
        assert isinstance(views, tuple) and len(views) == 3
        assert all(v.shape == p_u.shape == (8, 3, 32, 32) and v.dtype == torch.float32 for v in views)
        assert torch.equal(views[0], p_u) and torch.equal(x_l, p_l) and torch.equal(y_l, q_l)
        assert not torch.equal(views[0], views[2])  # two weak views: their own crops and flips
        assert not torch.equal(views[0], views[1])
    # The views are of the same images: without crop and flip two weak views are equal, image for image.
    make = lambda views: TensorDualLoader(_indexed(30, 8), _indexed(45, 8), _identity_spec(1),  # noqa: E731
                                          batch_size=4, seed=7, augment=False, unlabeled_views=views)
    _, _, (a, b) = next(iter(make(("weak", "weak"))))
    assert torch.equal(a, b) and torch.equal(a, next(iter(make(("weak",))))[2])


def test_tensor_and_streamed_loaders_give_the_same_views():
    tensor, streamed = _views_loaders()
    assert _same(_flat(_take(tensor, 5)), _flat(_take(streamed, 5)))
    tensor, streamed = _views_loaders(with_unlabeled=False)
    for x_l, _, views in _take(tensor, 2) + _take(streamed, 2):
        assert len(views) == 3 and all(v.shape == (0, 3, 32, 32) and v.dtype == x_l.dtype for v in views)


@pytest.mark.parametrize("kind", [0, 1], ids=["tensor", "streamed"])
def test_views_resume_exactly(kind):
    straight = _flat(_take(_views_loaders()[kind], 7))
    first = _views_loaders()[kind]
    _take(first, 3)
    resumed = _views_loaders()[kind]
    resumed.load_state_dict(first.state_dict())
    assert _same(_flat(_take(resumed, 4)), straight[3:])


def test_views_are_sharded_by_rank():
    shards = [_take(_views_loaders(rank=r, world_size=2)[0], 2) for r in range(2)]
    streamed = [_take(_views_loaders(rank=r, world_size=2)[1], 2) for r in range(2)]
    assert _same(_flat(shards[0]), _flat(streamed[0])) and _same(_flat(shards[1]), _flat(streamed[1]))
    assert not torch.equal(shards[0][0][2][1], shards[1][0][2][1])


def test_view_name_errors():
    labeled, unlabeled, spec = _indexed(10), _indexed(12), _identity_spec(1)
    for bad, match in ((("weak", "medium"), r"unknown view name\(s\) \['medium'\]"), ("weak", "non-empty tuple"),
                       ((), "non-empty tuple")):
        with pytest.raises(ValueError, match=match):
            TensorDualLoader(labeled, unlabeled, spec, batch_size=2, seed=0, unlabeled_views=bad)
        with pytest.raises(ValueError, match=match):
            TorchDualLoader(_raw(labeled), _raw(unlabeled, False), spec=spec, batch_size=2, seed=0,
                            unlabeled_views=bad)
    with pytest.raises(ValueError, match=r"strong view \(RandAugment\) needs grey or RGB images, but spec 'id' has 2"):
        TensorDualLoader(_coordinates(10, 8), _coordinates(12, 8), _identity_spec(2), batch_size=2, seed=0,
                         unlabeled_views=("weak", "strong"))
    with pytest.raises(ValueError, match="per-image transforms make one view only"):
        TorchDualLoader(arrays_dataset(labeled, spec), arrays_dataset(unlabeled, spec, labeled=False), batch_size=2,
                        seed=0, unlabeled_views=("weak", "strong"))
    normalised = TorchDualLoader(arrays_dataset(labeled, spec), arrays_dataset(unlabeled, spec, labeled=False),
                                 spec=spec, batch_size=2, seed=0, unlabeled_views=("weak", "strong"))
    with pytest.raises(TypeError, match="augments uint8 batches on the device, but the items are torch.float32"):
        next(iter(normalised))


def test_a_method_asking_for_two_views_gets_them_through_the_trainer(tmp_path):
    from ssl_mix.config import TrainConfig
    from ssl_mix.methods import Method, StepOutput
    from ssl_mix.trainer import Trainer

    class TwoViews(Method):
        """A test-only method (never registered): records the views it is given."""

        name = "two-views-test"
        uses_unlabeled = True

        def __init__(self):
            self.seen = []

        @classmethod
        def views_for(cls, cfg):
            return ("weak", "strong")

        def loss(self, student, batch, ctx):
            self.seen.append(batch)
            logits = student(torch.cat([batch.x_l, *batch.u_views]))
            return StepOutput(torch.nn.functional.cross_entropy(logits[:len(batch.y_l)], batch.y_l)
                              + 0 * logits.sum())

    loader = TensorDualLoader(_rgb_coordinates(30), _rgb_coordinates(45), _identity_spec(3, 2, True), batch_size=4,
                              mu=2, seed=7, unlabeled_views=TwoViews.views_for(None))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    method = TwoViews()
    train = TrainConfig(steps=2, eval_every=2, log_every=1, checkpoint_every=0, progress=False,
                        out_dir=str(tmp_path / "run"), device="cpu")
    Trainer(model, method, loader, train=train).fit()
    expected = _take(_views_loaders(("weak", "strong"))[0], 2)
    assert len(method.seen) == 2
    for batch, (_, _, views) in zip(method.seen, expected, strict=True):
        assert len(batch.u_views) == 2 and batch.x_u is batch.u_views[0]
        assert all(v.shape == batch.x_u.shape == (8, 3, 32, 32) for v in batch.u_views)
        assert torch.equal(batch.u_views[0], views[0]) and torch.equal(batch.u_views[1], views[1])
