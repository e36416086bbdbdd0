"""Dual loaders: an endless stream of (labeled batch, unlabeled batch) pairs, resumable to the exact batch.

Semi-supervised training draws a labeled batch of ``B_l`` examples and an unlabeled batch of ``B_u = mu * B_l``
at every step (Sohn et al. 2020, FixMatch §3, for the ratio mu; ICT uses ``B_u = B_l``) and counts training in
steps. Each stream walks through its own random permutation of its examples, epoch after epoch; a batch that
reaches the end of a permutation continues at the start of the next, so every example is seen once per epoch
and every batch is full.

Distributed training shards both streams: with ``world_size`` processes, each step draws one global batch of
``world_size * B`` positions from the stream and process ``rank`` takes positions ``rank * B`` to
``(rank + 1) * B`` of it. Every process computes the same permutations from the seed, so the shards are disjoint,
no process needs to talk to another, and the union of the shards of a step, in rank order, is the batch of a
single loader with batch size ``world_size * B``.

Every random choice is a function of ``(seed, stream, epoch)`` (permutations) or ``(seed, stream, step)`` /
``(seed, stream, epoch, position)`` (augmentation; ``(seed, stream, step, view)`` for the further views of the
unlabeled images a method may ask for, ``unlabeled_views``), never of a running generator. The position of a loader is
therefore one counter, the step: :meth:`state_dict` saves it and :meth:`load_state_dict` on a fresh loader
resumes with exactly the batches an uninterrupted loader would have produced, whatever the number of worker
processes.

Two implementations share this interface:

* :class:`TensorDualLoader`, the fast path for data that fits in memory (all of CIFAR and SVHN): uint8 images
  live as one tensor on the training device; gathering, crop, flip and normalisation run batched there.
* :class:`TorchDualLoader`, the standard ``torch.utils.data.DataLoader`` path (worker processes, pinned memory)
  for arbitrary datasets: per-image torchvision transforms in the workers, or, for datasets of uint8 images
  (an image folder streamed from its files), the tensor loader's batched augmentation on the device.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ssl_mix.checks import check_bool, check_int, check_positive_int
from ssl_mix.data.arrays import ImageArrays
from ssl_mix.data.augment import noise_dropout, normalize, normalize_input, random_crop_flip, standardize
from ssl_mix.data.randaugment import rand_augment
from ssl_mix.data.spec import DataSpec
from ssl_mix.data.zca import ZCA
from ssl_mix.seeding import derive_seed

__all__ = ["TensorDualLoader", "TorchDualLoader", "eval_batches"]

_LABELED, _UNLABELED = 0, 1
_PERMUTATION, _AUGMENT, _SAMPLE, _WORKERS, _RANDAUGMENT = 0, 1, 2, 3, 4
_ONE_VIEW = ("weak",)  # what every loader made before views existed: the unlabeled batch is one tensor
_STATE_VERSION = 1


def _batch_sizes(batch_size: int, unlabeled_batch_size: int | None, mu: float | None) -> tuple[int, int]:
    check_positive_int("batch_size", batch_size)
    if unlabeled_batch_size is not None and mu is not None:
        raise ValueError(f"give unlabeled_batch_size or mu (= unlabeled_batch_size / batch_size), not both; got "
                         f"unlabeled_batch_size={unlabeled_batch_size!r}, mu={mu!r}")
    if mu is not None:
        if isinstance(mu, bool) or not isinstance(mu, (int, float)) or not math.isfinite(mu) or mu <= 0:
            raise ValueError(f"mu must be a positive number, got {mu!r}")
        unlabeled = round(mu * batch_size)
        if unlabeled < 1 or abs(mu * batch_size - unlabeled) > 1e-6:
            raise ValueError(f"mu * batch_size must be a positive integer (the unlabeled batch size), got "
                             f"{mu} * {batch_size} = {mu * batch_size:g}; change mu or give unlabeled_batch_size")
        return batch_size, unlabeled
    if unlabeled_batch_size is None:
        return batch_size, batch_size
    check_positive_int("unlabeled_batch_size", unlabeled_batch_size)
    return batch_size, unlabeled_batch_size


# A batch transform applied after normalisation, on the device: (B, C, H, W) float -> same shape (e.g. a ZCA).
Preprocess = Callable[[torch.Tensor], torch.Tensor]


def _check_preprocess(preprocess: Preprocess | None, device: torch.device) -> Preprocess | None:
    if preprocess is None:
        return None
    if not callable(preprocess):
        raise TypeError(f"preprocess must be a callable (B, C, H, W) -> (B, C, H, W) such as a fitted ssl_mix.ZCA, or "
                        f"None, got {type(preprocess).__name__}")
    # Tensor-holding transforms (a ZCA) move to the batches' device once, not at every call.
    return preprocess.to(device) if isinstance(preprocess, ZCA) else preprocess


class _BatchAugment:
    """A step's uint8 batch -> crop, flip (if ``augment``), normalise and ``preprocess``, on the batch's device.

    The crop and flip draws are keyed by ``(seed, stream, step)`` (and the rank when ``world_size > 1``), so a
    batch's augmentation depends only on which step and stream it is, not on how its images were loaded: the
    tensor loader and the streaming loader augment the same images of the same step identically.
    """

    def __init__(self, spec: DataSpec, device: torch.device, *, augment: bool, seed: int, rank: int,
                 world_size: int, preprocess: Preprocess | None) -> None:
        self.spec, self.augment, self.seed, self.preprocess = spec, augment, seed, preprocess
        # One process keeps the single-process key; shards key their draws by rank too.
        self.rank_key = () if world_size == 1 else (rank,)
        self.mean = torch.tensor(spec.mean, dtype=torch.float32, device=device)
        self.std = torch.tensor(spec.std, dtype=torch.float32, device=device)
        self.generator = torch.Generator(device=device)

    def __call__(self, images: torch.Tensor, stream: int, step: int) -> torch.Tensor:
        return self._view(images, stream, step, 0, "weak")

    def views(self, images: torch.Tensor, stream: int, step: int, names: tuple[str, ...]) -> tuple[torch.Tensor, ...]:
        """One augmented view of the same uint8 ``images`` per name in ``names``, each normalised and preprocessed.

        View 0 draws its crop and flip from today's key ``(seed, stream, AUGMENT, step)`` (so it equals
        :meth:`__call__`'s batch), view ``v > 0`` from ``(seed, stream, AUGMENT, step, v)``; both add the rank when
        ``world_size > 1``. A ``"strong"`` view then gets :func:`~ssl_mix.data.randaugment.rand_augment` on the
        uint8 images, before normalising, with a CPU generator keyed ``(seed, stream, RANDAUGMENT, step, v)`` (+ rank).
        """
        return tuple(self._view(images, stream, step, v, name) for v, name in enumerate(names))

    def _view(self, images: torch.Tensor, stream: int, step: int, v: int, name: str) -> torch.Tensor:
        """View ``v`` (named ``name``) of a uint8 batch: crop and flip, RandAugment if strong, normalise, preprocess.
        Feature vectors are standardised, then get the spec's noise and feature dropout from the same key."""
        if self.spec.features:
            images = standardize(images, self.mean, self.std)
            if self.augment and (self.spec.noise or self.spec.feature_dropout):
                view_key = (v,) if v else ()
                self.generator.manual_seed(derive_seed(self.seed, stream, _AUGMENT, step, *view_key, *self.rank_key))
                images = noise_dropout(images, self.spec.noise, self.spec.feature_dropout, generator=self.generator)
            return images if self.preprocess is None else self.preprocess(images)
        if self.augment:
            view_key = (v,) if v else ()  # view 0 keeps the key of the one-view loaders
            self.generator.manual_seed(derive_seed(self.seed, stream, _AUGMENT, step, *view_key, *self.rank_key))
            images = random_crop_flip(images, self.spec.crop_padding, self.spec.flip, generator=self.generator,
                                      padding_mode=self.spec.padding_mode)
        if name == "strong":
            # A CPU generator: the same draws on every device, and no device sync to group images by op.
            ra = torch.Generator().manual_seed(derive_seed(self.seed, stream, _RANDAUGMENT, step, v, *self.rank_key))
            images = rand_augment(images, generator=ra)
        images = normalize(images, self.mean, self.std)
        return images if self.preprocess is None else self.preprocess(images)


def _check_views(views: Any, spec: DataSpec | None) -> tuple[str, ...]:
    # The view names are the methods' vocabulary (Method.views_for); imported here so that importing the data
    # package does not import every method.
    from ssl_mix.methods.base import VIEW_NAMES as _VIEW_NAMES

    if isinstance(views, str) or not isinstance(views, (tuple, list)) or not views:
        raise ValueError(f"unlabeled_views must be a non-empty tuple of view names from {_VIEW_NAMES}, e.g. "
                         f"('weak', 'strong'), got {views!r}")
    bad = [v for v in views if v not in _VIEW_NAMES]
    if bad:
        raise ValueError(f"unlabeled_views has unknown view name(s) {bad}; the views are {_VIEW_NAMES}")
    if "strong" in views and spec is not None and spec.features:
        raise ValueError("the strong view (RandAugment) augments images; feature vectors have no strong view, so "
                         "FixMatch does not apply to them: use erm, mixup, manifold-mixup, ict or mixmatch")
    if "strong" in views and spec is not None and spec.channels not in (1, 3):
        raise ValueError(f"the strong view (RandAugment) needs grey or RGB images, but spec {spec.name!r} has "
                         f"{spec.channels} channels; ask for weak views only")
    return tuple(views)


def _check_shard(rank: int, world_size: int) -> tuple[int, int]:
    for name, value in (("rank", rank), ("world_size", world_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need world_size >= 1 and 0 <= rank < world_size, got rank={rank!r}, "
                         f"world_size={world_size!r}; under torchrun pass ssl_mix.distributed.rank() and "
                         "ssl_mix.distributed.world_size()")
    return int(rank), int(world_size)


class _Stream:
    """Which examples a stream (labeled or unlabeled) takes at each step: a pure function of the step.

    With ``world_size`` processes, step ``s`` of process ``rank`` takes ``batch`` positions starting at
    ``(s * world_size + rank) * batch`` of the endless sequence of epoch permutations.
    """

    def __init__(self, size: int, batch: int, seed: int, stream: int, rank: int = 0, world_size: int = 1) -> None:
        self.size, self.batch, self.seed, self.stream = size, batch, seed, stream
        self.rank, self.world_size = rank, world_size

    def permutation(self, epoch: int) -> torch.Tensor:
        # Drawn on the CPU so that a run sees the same examples on any device.
        generator = torch.Generator().manual_seed(derive_seed(self.seed, self.stream, _PERMUTATION, epoch))
        return torch.randperm(self.size, generator=generator)

    def segments(self, step: int) -> list[tuple[int, int, int]]:
        """``(epoch, start, stop)`` slices of epoch permutations that make up the batch of ``step``."""
        consumed, need, out = (step * self.world_size + self.rank) * self.batch, self.batch, []
        while need:
            epoch, start = divmod(consumed, self.size)
            stop = min(self.size, start + need)
            out.append((epoch, start, stop))
            consumed, need = consumed + (stop - start), need - (stop - start)
        return out


class _BalancedStream(_Stream):
    """A class-balanced labeled stream: each epoch holds every class ``M`` times (M: the largest class's count).

    Epoch ``e`` takes, for each class, its examples in a permutation keyed by ``(seed, stream, e, class)``, repeated
    (further permutations) until ``M`` long, and shuffles the ``C * M`` entries with one more keyed permutation. So
    each step is class-balanced in expectation, every example of the largest class is seen once per epoch and
    smaller classes are over-sampled; and the order is, like the plain stream's, a pure function of the epoch.
    """

    def __init__(self, targets: torch.Tensor, batch: int, seed: int, stream: int, rank: int = 0,
                 world_size: int = 1) -> None:
        targets = torch.as_tensor(targets, dtype=torch.int64).cpu()
        self.members = [torch.nonzero(targets == c).flatten() for c in torch.unique(targets).tolist()]
        self.largest = max(len(m) for m in self.members)
        super().__init__(len(self.members) * self.largest, batch, seed, stream, rank, world_size)

    def permutation(self, epoch: int) -> torch.Tensor:
        parts = []
        for c, members in enumerate(self.members):
            draws = []
            for repeat in range(-(-self.largest // len(members))):
                key = derive_seed(self.seed, self.stream, _PERMUTATION, epoch, c + 1, repeat)
                draws.append(members[torch.randperm(len(members), generator=torch.Generator().manual_seed(key))])
            parts.append(torch.cat(draws)[:self.largest])
        shuffle = torch.Generator().manual_seed(derive_seed(self.seed, self.stream, _PERMUTATION, epoch, 0))
        return torch.cat(parts)[torch.randperm(self.size, generator=shuffle)]


def _labeled_stream(targets: torch.Tensor | None, size: int, batch: int, seed: int, rank: int, world_size: int
                    ) -> _Stream:
    if targets is None:
        return _Stream(size, batch, seed, _LABELED, rank, world_size)
    if len(targets) != size:
        raise ValueError(f"balance_labeled has {len(targets)} class indices but the labeled set has {size} examples")
    return _BalancedStream(targets, batch, seed, _LABELED, rank, world_size)


def _state(loader: Any) -> dict:
    return {"version": _STATE_VERSION, "step": loader.step, "seed": loader.seed,
            "sizes": [loader._streams[0].size, loader._streams[1].size],
            "batch_sizes": [loader.batch_size, loader.unlabeled_batch_size], "world_size": loader.world_size}


def _check_state(loader: Any, state: dict) -> int:
    if not isinstance(state, dict) or state.get("version") != _STATE_VERSION or not isinstance(state.get("step"), int):
        raise ValueError(f"not a dual-loader state (expected a dict with version {_STATE_VERSION} and an int step), "
                         f"got {state!r:.200}")
    expected = _state(loader)
    for key in ("seed", "sizes", "batch_sizes"):
        if list(np.atleast_1d(state.get(key))) != list(np.atleast_1d(expected[key])):
            raise ValueError(f"cannot resume: the saved loader had {key}={state.get(key)!r} but this one has "
                             f"{expected[key]!r}; resuming needs the same data, batch sizes and seed")
    saved_world = state.get("world_size", 1)  # states written before sharding existed come from one process
    if saved_world != loader.world_size:
        raise ValueError(f"cannot resume: the saved loader was one of {saved_world} process(es) but this one is one of "
                         f"{loader.world_size}; the data order depends on the number of processes, so resume with "
                         f"the same number (torchrun --nproc_per_node / --nnodes)")
    if state["step"] < 0:
        raise ValueError(f"loader state has a negative step {state['step']}")
    return state["step"]


class TensorDualLoader:
    """The fast dual loader: uint8 images held on the training device, augmented there in batches.

    Args:
        labeled: the labeled examples (every target >= 0).
        unlabeled: the unlabeled pool (targets ignored); same ``(C, H, W)`` as ``labeled``.
        spec: normalisation and augmentation constants (``crop_padding``, ``flip``, ``padding_mode``).
        batch_size: ``B_l``, labeled examples per step.
        unlabeled_batch_size: ``B_u``; or give ``mu`` (``B_u = mu * B_l``, must be an integer). Neither: B_u = B_l.
        seed: non-negative int; all randomness derives from it, the stream and the step.
        device: where images are held and batches are produced.
        augment: random crop + flip of both streams (False: normalisation only).
        with_unlabeled: False yields an empty unlabeled batch ``(0, C, H, W)`` every step and does no unlabeled
            work, for methods that use no unlabeled data (ERM, supervised mixup). The labeled batches are the same
            either way.
        rank, world_size: this process's shard in distributed training (default: the whole stream). Each step
            yields ``batch_size`` labeled and ``unlabeled_batch_size`` unlabeled examples per process, so the
            global batch is ``world_size`` times larger; the shards are disjoint (see the module docstring).
        balance_labeled: draw the labeled stream class-balanced: each epoch repeats every class as often as the
            largest one (smaller classes over-sampled), shuffled; deterministic and resumable like the plain stream.
        preprocess: applied on ``device`` to every normalised batch (labeled and unlabeled), e.g. a fitted
            :class:`~ssl_mix.ZCA`; None for none.
        unlabeled_views: the views of each unlabeled batch to make, names from
            :data:`~ssl_mix.methods.base.VIEW_NAMES` (what the method's :meth:`~ssl_mix.Method.views_for` asks for).
            ``("weak",)`` (default): the unlabeled batch is one tensor, as without views. Anything else: it is a
            tuple with one ``(B_u, C, H, W)`` tensor per name, all of the same images: ``"weak"`` is the crop and
            flip (``augment``), ``"strong"`` its own crop and flip then
            :func:`~ssl_mix.data.randaugment.rand_augment` (FixMatch's RandAugment and Cutout, on the uint8 images
            before normalising). View ``v`` has its own draws, keyed by ``(seed, stream, step, v)`` (and the rank),
            so the views are resumable like the batches; view 0's crop and flip are the one-view loader's, so view
            0 equals its unlabeled batch when it is weak.

    Yields:
        ``(x_l, y_l, x_u)`` every step: float32 ``(B_l, C, H, W)``, int64 ``(B_l,)`` and float32 ``(B_u, C, H, W)``,
        or, with ``unlabeled_views`` other than ``("weak",)``, a tuple of such ``x_u``, one per view.

    Note:
        The loader holds its position; every ``iter(loader)`` continues from it (and iterators share it).
        Batch order and content depend only on ``seed`` and the data, not on the device: permutations are
        drawn on the CPU; augmentation is drawn on ``device`` (so CPU and CUDA runs differ in crops and flips)
        and, with ``world_size > 1``, also depends on ``rank``.
    """

    def __init__(self, labeled: ImageArrays, unlabeled: ImageArrays, spec: DataSpec, *, batch_size: int,
                 unlabeled_batch_size: int | None = None, mu: float | None = None, seed: int,
                 device: torch.device | str = "cpu", augment: bool = True, with_unlabeled: bool = True,
                 rank: int = 0, world_size: int = 1, balance_labeled: bool = False,
                 preprocess: Preprocess | None = None, unlabeled_views: tuple[str, ...] = _ONE_VIEW) -> None:
        if not isinstance(labeled, ImageArrays) or not isinstance(unlabeled, ImageArrays):
            raise TypeError(f"labeled and unlabeled must be ImageArrays (see arrays_from_tensors / load_arrays), got "
                            f"{type(labeled).__name__} and {type(unlabeled).__name__}; use TorchDualLoader for "
                            "torch Datasets")
        if not isinstance(spec, DataSpec):
            raise TypeError(f"spec must be a DataSpec, got {type(spec).__name__}")
        if len(labeled) == 0 or len(unlabeled) == 0:
            raise ValueError(f"labeled and unlabeled sets must be non-empty, got {len(labeled)} and {len(unlabeled)}")
        if int(labeled.targets.min()) < 0:
            raise ValueError(f"labeled has {int((labeled.targets < 0).sum())} unlabeled examples (target -1); pass "
                             "only labeled examples (e.g. train.subset(split.labeled))")
        if labeled.image_shape != unlabeled.image_shape:
            raise ValueError(f"labeled and unlabeled images differ in shape (C, H, W): {labeled.image_shape} vs "
                             f"{unlabeled.image_shape}")
        if labeled.image_shape[0] != spec.channels:
            raise ValueError(f"images have {labeled.image_shape[0]} channels but spec {spec.name!r} has "
                             f"{spec.channels} (mean {spec.mean})")
        augment = check_bool("augment", augment)
        self.with_unlabeled = check_bool("with_unlabeled", with_unlabeled)
        self.unlabeled_views = _check_views(unlabeled_views, spec)
        self.batch_size, self.unlabeled_batch_size = _batch_sizes(batch_size, unlabeled_batch_size, mu)
        self.seed = check_int("seed", seed, 0)
        self.rank, self.world_size = _check_shard(rank, world_size)
        self.spec, self.augment = spec, augment
        self.device = torch.device(device)
        self.preprocess = _check_preprocess(preprocess, self.device)
        self._images = (labeled.images.to(self.device), unlabeled.images.to(self.device))
        self._targets = labeled.targets.to(self.device)
        self._augment = _BatchAugment(spec, self.device, augment=augment, seed=self.seed, rank=self.rank,
                                      world_size=self.world_size, preprocess=self.preprocess)
        balanced = labeled.targets if check_bool("balance_labeled", balance_labeled) else None
        self._streams = (_labeled_stream(balanced, len(labeled), self.batch_size, self.seed, self.rank,
                                         self.world_size),
                         _Stream(len(unlabeled), self.unlabeled_batch_size, self.seed, _UNLABELED, self.rank,
                                 self.world_size))
        self._permutations: list[dict[int, torch.Tensor]] = [{}, {}]
        self._no_unlabeled = torch.empty((0, *labeled.image_shape), device=self.device)
        self.step = 0

    def _permutation(self, stream: int, epoch: int) -> torch.Tensor:
        cache = self._permutations[stream]
        if epoch not in cache:
            if len(cache) > 2:  # keep the current and next epochs
                del cache[min(cache)]
            permutation = self._streams[stream].permutation(epoch)
            if self.device.type == "cuda":
                # A pageable host-to-device copy waits for the device to drain: with few labels (a new epoch every
                # few steps) that is a host round trip every few steps. From pinned memory the copy is queued.
                permutation = permutation.pin_memory()
            cache[epoch] = permutation.to(self.device, non_blocking=True)
        return cache[epoch]

    def _indices(self, stream: int, step: int) -> torch.Tensor:
        parts = [self._permutation(stream, e)[a:b] for e, a, b in self._streams[stream].segments(step)]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """The batch of a given step, without moving the loader's position (iteration yields ``batch(step)``)."""
        index_l = self._indices(_LABELED, step)
        # index_select, not advanced indexing: on the CPU, images[index] costs ~10x more for a batch of rows.
        x_l = self._augment(self._images[_LABELED].index_select(0, index_l), _LABELED, step)
        views = self.unlabeled_views
        x_u: Any = self._no_unlabeled if views == _ONE_VIEW else (self._no_unlabeled,) * len(views)
        if self.with_unlabeled:
            index_u = self._indices(_UNLABELED, step)
            images_u = self._images[_UNLABELED].index_select(0, index_u)
            x_u = (self._augment(images_u, _UNLABELED, step) if views == _ONE_VIEW
                   else self._augment.views(images_u, _UNLABELED, step, views))
        return x_l, self._targets.index_select(0, index_l), x_u

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, Any]]:
        while True:
            step = self.step
            out = self.batch(step)
            self.step = step + 1
            yield out

    def state_dict(self) -> dict:
        """``{"version", "step", "seed", "sizes", "batch_sizes", "world_size"}``: the position and what it is valid
        for. The step is the same on every process of a distributed run, so any process's state resumes all."""
        return _state(self)

    def load_state_dict(self, state: dict) -> None:
        """Continue from a saved position; the seed, data sizes, batch sizes and number of processes must match."""
        self.step = _check_state(self, state)


# --- the DataLoader path -----------------------------------------------------------------------------------


@contextmanager
def _restored_global_rngs() -> Iterator[None]:
    """Restore torch's CPU generator, ``random`` and NumPy's global generator on exit."""
    torch_state, py_state, np_state = torch.get_rng_state(), random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        torch.set_rng_state(torch_state)
        random.setstate(py_state)
        np.random.set_state(np_state)


def _seed_global_rngs(seed: int) -> None:
    # Per-image transforms (torchvision's, and most third-party ones) draw from these global generators;
    # seeding them from the sample's key makes the result independent of which worker handles the sample.
    torch.random.default_generator.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed & 0xFFFFFFFF)


class _DualDataset(Dataset):
    """Both streams behind one map-style dataset whose keys are ``(stream, index, sample_seed)``.

    Each sample is loaded and transformed with the global generators seeded from its key; their previous
    states are restored after each batch (saving NumPy's state costs ~50 us, so once per batch, not per image).
    """

    def __init__(self, labeled: Dataset, unlabeled: Dataset, transform: Callable[[Any], Any] | None) -> None:
        self.datasets = (labeled, unlabeled)
        self.transform = transform

    def _load(self, key: tuple[int, int, int]) -> tuple[Any, int]:
        stream, index, seed = key
        _seed_global_rngs(seed)
        item = self.datasets[stream][index]
        if stream == _LABELED:
            if not isinstance(item, (tuple, list)) or len(item) < 2:
                raise ValueError(f"labeled dataset item {index} must be a pair (x, y), got {type(item).__name__}")
            x, y = item[0], int(item[1])
        else:
            x, y = (item[0] if isinstance(item, (tuple, list)) else item), -1
        if self.transform is not None:
            x = self.transform(x)
        return x, y

    def __getitem__(self, key: tuple[int, int, int]) -> tuple[Any, int]:
        with _restored_global_rngs():
            return self._load(key)

    def __getitems__(self, keys: list[tuple[int, int, int]]) -> list[tuple[Any, int]]:
        with _restored_global_rngs():
            return [self._load(key) for key in keys]

    def __len__(self) -> int:
        return sum(len(d) for d in self.datasets)  # type: ignore[arg-type]


def _collate(batch: list[tuple[Any, int]], num_labeled: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack a step's samples into ``(x_l, y_l, x_u)``; ``x_u`` is ``(0, ...)`` when the step has no unlabeled
    samples."""
    xs = [x for x, _ in batch]
    if not all(isinstance(x, torch.Tensor) for x in xs):
        bad = next(type(x).__name__ for x in xs if not isinstance(x, torch.Tensor))
        raise TypeError(f"TorchDualLoader needs tensors after the transform, got {bad}; pass transform= (e.g. "
                        "ssl_mix.data.train_transform(spec, image_size)) or use arrays_dataset")
    xs = [x.as_subclass(torch.Tensor) for x in xs]
    y_l = torch.tensor([y for _, y in batch[:num_labeled]], dtype=torch.int64)
    x_l = torch.stack(xs[:num_labeled])
    x_u = torch.stack(xs[num_labeled:]) if len(xs) > num_labeled else x_l.new_empty((0, *x_l.shape[1:]))
    return x_l, y_l, x_u


class _StepBatchSampler:
    """Yields, from ``start`` on, forever, the keys of each step's labeled and unlabeled examples."""

    def __init__(self, streams: tuple[_Stream, _Stream], seed: int, start: int) -> None:
        self.streams, self.seed, self.start = streams, seed, start

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        step, cache = self.start, {}
        while True:
            keys = []
            for s, stream in enumerate(self.streams):
                for epoch, a, b in stream.segments(step):
                    if (s, epoch) not in cache:
                        for old in [k for k in cache if k[0] == s and k[1] < epoch]:
                            del cache[old]
                        cache[(s, epoch)] = stream.permutation(epoch).tolist()
                    perm = cache[(s, epoch)]
                    keys += [(s, perm[p], derive_seed(self.seed, s, _SAMPLE, epoch, p)) for p in range(a, b)]
            yield keys
            step += 1


class TorchDualLoader:
    """The standard dual loader: a ``torch.utils.data.DataLoader`` with workers over arbitrary datasets.

    Two ways to augment:

    * per image, in the workers: ``transform`` (e.g. :func:`~ssl_mix.data.train_transform`) turns each ``x``
      into a normalised float tensor; any torchvision or custom transform works.
    * in batches, on ``device``: give ``spec`` and datasets (or a ``transform``) that yield uint8 ``(C, H, W)``
      tensors of one shape (as :class:`~ssl_mix.data.ImageFileDataset` does). The workers only load; each step's
      uint8 batch is copied to ``device`` and cropped, flipped (``augment``) and normalised there by the same
      batched code and random draws as :class:`TensorDualLoader`, so for the same data, seed and device the
      batches equal the tensor loader's exactly. 2 to 3 times the batches per second of per-image transforms
      in ``benchmarks/streaming.py`` (32x32 and 96x96 JPEGs, 2-core CPU), and a quarter of the bytes to copy.

    Args:
        labeled: a map-style dataset of ``(x, y)`` pairs.
        unlabeled: a map-style dataset of ``x`` or ``(x, anything)``.
        batch_size: ``B_l``.
        unlabeled_batch_size: ``B_u``; or give ``mu`` (``B_u = mu * B_l``). Neither: B_u = B_l.
        seed: non-negative int.
        transform: applied to every ``x`` (both streams) in the worker, e.g.
            :func:`~ssl_mix.data.train_transform`; None when the datasets already return the tensors to batch
            (normalised floats, as :func:`~ssl_mix.data.arrays_dataset` gives, or uint8 with ``spec``).
        spec: augment and normalise batches on ``device`` with these constants (``crop_padding``, ``flip``,
            ``padding_mode``, ``mean``, ``std``); the items must then be uint8 tensors. None: batches are used
            as the workers deliver them.
        augment: with ``spec``, random crop + flip before normalising (False: normalisation only).
        num_workers: worker processes (0: load in the main process).
        device: where batches are delivered.
        pin_memory: pin batches for fast asynchronous copies; default True when ``device`` is CUDA.
        prefetch_factor: batches each worker loads ahead (DataLoader's default when None).
        with_unlabeled: False loads no unlabeled samples and yields an empty unlabeled batch, as in
            :class:`TensorDualLoader`.
        rank, world_size: this process's shard in distributed training, as in :class:`TensorDualLoader`.
        balance_labeled: the class index of each labeled example, to draw the labeled stream class-balanced as
            :class:`TensorDualLoader` does (None: plain epochs).
        preprocess: applied on ``device`` to every batch after the transform (which normalises), as in
            :class:`TensorDualLoader`.
        unlabeled_views: the views of each unlabeled batch, as in :class:`TensorDualLoader` (same keys, so the
            same views for the same data, seed and device). Views other than ``("weak",)`` need the batched path
            (``spec``); the yield format is :class:`TensorDualLoader`'s.

    Note:
        Each sample is loaded and transformed with torch's CPU generator, ``random`` and NumPy's global
        generator seeded from ``(seed, stream, epoch, position)`` (and restored afterwards), so the batches
        do not depend on ``num_workers`` or on which worker loads what, and a resumed loader matches an
        uninterrupted one. For the same seed and data it takes the same examples in the same order as
        :class:`TensorDualLoader`; only the augmentation draws differ (same distribution).
    """

    def __init__(self, labeled: Dataset, unlabeled: Dataset, *, batch_size: int,
                 unlabeled_batch_size: int | None = None, mu: float | None = None, seed: int,
                 transform: Callable[[Any], Any] | None = None, num_workers: int = 0,
                 device: torch.device | str = "cpu", pin_memory: bool | None = None,
                 prefetch_factor: int | None = None, with_unlabeled: bool = True, rank: int = 0,
                 world_size: int = 1, balance_labeled: Any = None,
                 preprocess: Preprocess | None = None, spec: DataSpec | None = None, augment: bool = True,
                 unlabeled_views: tuple[str, ...] = _ONE_VIEW) -> None:
        sizes = []
        for name, ds in (("labeled", labeled), ("unlabeled", unlabeled)):
            try:
                sizes.append(len(ds))  # type: ignore[arg-type]
            except TypeError:
                raise TypeError(f"{name} must be a map-style dataset with __len__ and __getitem__, got "
                                f"{type(ds).__name__}") from None
            if sizes[-1] == 0:
                raise ValueError(f"the {name} dataset is empty")
        check_int("num_workers", num_workers, 0)
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable, got {type(transform).__name__}")
        self.batch_size, self.unlabeled_batch_size = _batch_sizes(batch_size, unlabeled_batch_size, mu)
        self.with_unlabeled = check_bool("with_unlabeled", with_unlabeled)
        self.seed = check_int("seed", seed, 0)
        self.rank, self.world_size = _check_shard(rank, world_size)
        self.device = torch.device(device)
        self.preprocess = _check_preprocess(preprocess, self.device)
        self.spec, self.augment = spec, check_bool("augment", augment)
        self._augment: _BatchAugment | None = None
        if spec is not None:
            if not isinstance(spec, DataSpec):
                raise TypeError(f"spec must be a DataSpec (e.g. ssl_mix.data.spec_from_stats(...)) or None, got "
                                f"{type(spec).__name__}")
            self._augment = _BatchAugment(spec, self.device, augment=self.augment, seed=self.seed, rank=self.rank,
                                          world_size=self.world_size, preprocess=self.preprocess)
        elif not self.augment:
            raise ValueError("augment=False applies to the batched path (spec=...); with per-image transforms, "
                             "pass a transform that does not augment (e.g. ssl_mix.data.eval_transform(spec))")
        self.unlabeled_views = _check_views(unlabeled_views, spec if isinstance(spec, DataSpec) else None)
        if self.unlabeled_views != _ONE_VIEW and spec is None:
            raise ValueError(f"unlabeled_views={self.unlabeled_views} are made on the device from uint8 batches: "
                             "give spec=... and datasets (or a transform) that yield uint8 (C, H, W) tensors, e.g. "
                             "ArrayDataset(arrays) or ImageFileDataset; per-image transforms make one view only")
        self.num_workers = num_workers
        self.pin_memory = self.device.type == "cuda" if pin_memory is None else bool(pin_memory)
        self.prefetch_factor = prefetch_factor
        self._dataset = _DualDataset(labeled, unlabeled, transform)
        balanced = None if balance_labeled is None else torch.as_tensor(balance_labeled, dtype=torch.int64)
        self._streams = (_labeled_stream(balanced, sizes[0], self.batch_size, self.seed, self.rank, self.world_size),
                         _Stream(sizes[1], self.unlabeled_batch_size, self.seed, _UNLABELED, self.rank,
                                 self.world_size))
        self._version = 0
        self.step = 0

    def _data_loader(self, start: int) -> DataLoader:
        # An explicit generator keeps DataLoader from drawing its worker base seed from the global RNG.
        generator = torch.Generator().manual_seed(derive_seed(self.seed, _WORKERS, start))
        # The labeled stream comes first, so dropping the unlabeled one leaves every labeled key as it was.
        streams = self._streams if self.with_unlabeled else (self._streams[_LABELED],)
        sampler = _StepBatchSampler(streams, self.seed, start)
        return DataLoader(self._dataset, batch_sampler=sampler,  # type: ignore[arg-type]
                          num_workers=self.num_workers, collate_fn=partial(_collate, num_labeled=self.batch_size),
                          pin_memory=self.pin_memory, generator=generator,
                          prefetch_factor=self.prefetch_factor if self.num_workers else None)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, Any]]:
        while True:
            version = self._version
            batches = iter(self._data_loader(self.step))
            try:
                for x_l, y_l, x_u in batches:
                    if self._version != version:
                        break  # load_state_dict moved the position: restart the workers from there
                    step, self.step = self.step, self.step + 1
                    x_l, y_l, x_u = (t.to(self.device, non_blocking=self.pin_memory) for t in (x_l, y_l, x_u))
                    x_l = self._finish(x_l, _LABELED, step)
                    if self.unlabeled_views == _ONE_VIEW:
                        x_u = self._finish(x_u, _UNLABELED, step) if len(x_u) else x_u.to(x_l.dtype)
                        yield x_l, y_l, x_u
                    else:
                        yield x_l, y_l, self._views(x_u, step, x_l.dtype)
            finally:
                del batches  # shuts the worker processes down

    def _finish(self, images: torch.Tensor, stream: int, step: int) -> torch.Tensor:
        """The device-side end of a batch: the batched augmentation (with ``spec``), else ``preprocess`` alone."""
        if self._augment is None:
            return images if self.preprocess is None else self.preprocess(images)
        self._check_uint8(images)
        return self._augment(images, stream, step)

    def _views(self, images: torch.Tensor, step: int, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        """The unlabeled views of a step's uint8 batch (or empty batches without the unlabeled stream)."""
        if not len(images):
            return (images.to(dtype),) * len(self.unlabeled_views)
        self._check_uint8(images)
        assert self._augment is not None  # __init__ requires spec for several views
        return self._augment.views(images, _UNLABELED, step, self.unlabeled_views)

    @staticmethod
    def _check_uint8(images: torch.Tensor) -> None:
        if images.dtype != torch.uint8:
            raise TypeError(f"with spec=..., TorchDualLoader augments uint8 batches on the device, but the items are "
                            f"{images.dtype}; return uint8 (C, H, W) tensors (no normalising transform), or drop spec "
                            "and normalise per image with transform=")

    def state_dict(self) -> dict:
        """``{"version", "step", "seed", "sizes", "batch_sizes", "world_size"}``: the position and what it is valid
        for (the same on every process of a distributed run)."""
        return _state(self)

    def load_state_dict(self, state: dict) -> None:
        """Continue from a saved position; the seed, dataset sizes, batch sizes and number of processes must match."""
        self.step = _check_state(self, state)
        self._version += 1


def eval_batches(data: ImageArrays, spec: DataSpec, batch_size: int, device: torch.device | str, *,
                 preprocess: Preprocess | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Plain evaluation batches in dataset order: normalised images and targets, on ``device``.

    Args:
        data: the images (e.g. the test set).
        spec: normalisation constants.
        batch_size: images per batch; the last batch may be smaller.
        device: where batches are delivered.
        preprocess: applied to every normalised batch on ``device``, as the training loaders do (e.g. the run's
            :class:`~ssl_mix.ZCA`); None for none.

    Returns:
        An iterator of ``(x, y)``: float32 ``(b, C, H, W)`` and int64 ``(b,)``. One pass, no augmentation.
    """
    if not isinstance(data, ImageArrays):
        raise TypeError(f"data must be ImageArrays, got {type(data).__name__}")
    check_positive_int("batch_size", batch_size)
    if len(data) and data.images.shape[1] != spec.channels:
        raise ValueError(f"images have {data.images.shape[1]} channels but spec {spec.name!r} has {spec.channels}")
    device = torch.device(device)
    preprocess = _check_preprocess(preprocess, device)
    mean = torch.tensor(spec.mean, dtype=torch.float32, device=device)
    std = torch.tensor(spec.std, dtype=torch.float32, device=device)

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(data), batch_size):
            x = data.images[start:start + batch_size].to(device, non_blocking=True)
            y = data.targets[start:start + batch_size].to(device, non_blocking=True)
            x = normalize_input(x, mean, std)
            yield (x if preprocess is None else preprocess(x)), y

    return batches()
