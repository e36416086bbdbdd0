"""K-point mixup: mixing weights, mixing plans and the mix itself.

Mixup (Zhang et al., 2018) replaces a sample by a convex combination of itself and a partner drawn from
the same batch, ``lam * x_i + (1 - lam) * x_j`` with ``lam ~ Beta(alpha, alpha)``. ICT[K] (Chaudhry et
al., "When does mixup promote local linearity in learned representations?", eq. 1) generalises this to K
points with weights ``lam ~ Dirichlet(alpha, ..., alpha)``:

    Mix_lam(u_1, ..., u_K) = sum_k lam_k u_k.

A :class:`MixPlan` holds one draw of the weights together with the K-1 batch permutations that choose the
partners. Sampling the plan once and applying it to several tensors (inputs, targets, logits, teacher
probabilities, hidden states) is what makes the mixed input and the mixed target correspond, which ICT and
manifold mixup rely on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ssl_mix.checks import check_alpha, check_bool, check_k, check_positive_int

__all__ = ["MixPlan", "sample_mix_weights", "sample_mix_plan", "mix", "identity_plan"]


def _check_float_dtype(dtype: object) -> torch.dtype:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}.")
    return dtype


def _same_device(a: torch.device, b: torch.device) -> bool:
    # A device given without an index ("cuda") matches any index of that type; tensors always carry one.
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


def _resolve_device(device: torch.device | str | int | None, generator: torch.Generator | None) -> torch.device:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}.")
    if device is None:
        return generator.device if generator is not None else torch.get_default_device()
    device = torch.device(device)
    if generator is not None and not _same_device(device, generator.device):
        raise ValueError(
            f"generator is on {generator.device} but device={device}; create the generator on the same "
            f"device, e.g. torch.Generator(device={str(device)!r}).manual_seed(seed)."
        )
    return device


@dataclass(frozen=True, eq=False)
class MixPlan:
    """One draw of mixing weights and partners, to be applied to any number of batch-shaped tensors.

    ``mix(x, plan)[i] = sum_k weights[i or 0, k] * x[perms[k, i]]``.

    Attributes:
        weights: ``(B, K)`` (one weight vector per sample) or ``(1, K)`` (one per batch), floating point,
            each row on the probability simplex (>= 0, sums to 1).
        perms: ``(K, B)`` int64; ``perms[k, i]`` is the index of the k-th point mixed into sample i. By
            convention ``perms[0] == arange(B)``: point 0 is the sample itself.

    Note:
        Construction checks shapes, dtypes and devices only. The simplex and permutation properties are not
        checked, because that would synchronise the device with the host on every training step; the
        samplers in this module guarantee them.
    """

    weights: torch.Tensor
    perms: torch.Tensor

    def __post_init__(self) -> None:
        w, p = self.weights, self.perms
        if not isinstance(w, torch.Tensor) or not w.is_floating_point():
            raise TypeError(
                "MixPlan weights must be a floating-point tensor, got "
                f"{type(w).__name__ if not isinstance(w, torch.Tensor) else w.dtype}."
            )
        if not isinstance(p, torch.Tensor) or p.dtype != torch.int64:
            raise TypeError(
                "MixPlan perms must be an int64 tensor of batch indices, got "
                f"{type(p).__name__ if not isinstance(p, torch.Tensor) else p.dtype}."
            )
        if p.ndim != 2 or p.shape[0] < 1 or p.shape[1] < 1:
            raise ValueError(f"MixPlan perms must have shape (K, B) with K, B >= 1, got {tuple(p.shape)}.")
        k, b = p.shape
        if w.ndim != 2 or w.shape[1] != k or w.shape[0] not in (1, b):
            raise ValueError(
                f"MixPlan weights must have shape (B, K) = ({b}, {k}) or (1, K) = (1, {k}) to match perms of "
                f"shape (K, B) = {tuple(p.shape)}, got {tuple(w.shape)}."
            )
        if w.device != p.device:
            raise ValueError(f"MixPlan weights are on {w.device} but perms on {p.device}; put both on one device.")

    @property
    def k(self) -> int:
        """Number of points mixed into each sample."""
        return self.perms.shape[0]

    @property
    def batch_size(self) -> int:
        """Batch size B the plan applies to."""
        return self.perms.shape[1]

    @property
    def device(self) -> torch.device:
        """Device holding the weights and permutations."""
        return self.perms.device

    def to(self, device: torch.device | str) -> MixPlan:
        """Return the same plan with its tensors on ``device``."""
        return MixPlan(self.weights.to(device), self.perms.to(device))

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Mix the batch ``x`` with this plan; the same as :func:`mix` ``(x, self)``."""
        return mix(x, self)


def sample_mix_weights(
    k: int,
    alpha: float,
    n: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    max_first: bool = False,
) -> torch.Tensor:
    """Draw ``n`` weight vectors ``lam ~ Dirichlet(alpha, ..., alpha)`` over ``k`` points.

    For ``k = 2`` this is ``(lam, 1 - lam)`` with ``lam ~ Beta(alpha, alpha)``, as in mixup.

    Args:
        k: number of points, >= 2.
        alpha: symmetric concentration, finite and >= 0. ``alpha = 0`` is the ERM limit: every row is
            ``(1, 0, ..., 0)``, i.e. no mixing (Beta(a, a) concentrates on {0, 1} as a -> 0; the sample
            itself is the point kept).
        n: number of rows to draw, >= 1.
        generator: source of randomness; must live on ``device``.
        device: where to sample. ``None`` means the generator's device, or torch's default device if no
            generator is given.
        dtype: floating dtype of the result. Sampling runs in float32 (float64 if requested) and is then
            cast, so in float16/bfloat16 rows sum to 1 only up to that dtype's rounding.
        max_first: replace ``lam`` by ``max(lam, 1 - lam)`` so the first point dominates (MixMatch,
            Berthelot et al. 2019, eq. 9). Only defined for ``k = 2``.

    Returns:
        ``(n, k)`` tensor whose rows lie on the probability simplex.
    """
    k = check_k(k)
    alpha = check_alpha(alpha)
    n = check_positive_int("n", n)
    dtype = _check_float_dtype(dtype)
    max_first = check_bool("max_first", max_first)
    if max_first and k != 2:
        raise ValueError(f"max_first=True is only defined for k=2 (lam <- max(lam, 1 - lam)), got k={k}.")
    device = _resolve_device(device, generator)

    if alpha == 0.0:
        weights = torch.zeros(n, k, device=device, dtype=dtype)
        weights[:, 0] = 1.0
        return weights
    sample_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    concentration = torch.full((n, k), alpha, device=device, dtype=sample_dtype)
    # torch.distributions.Dirichlet draws through this kernel too; it clamps the underlying gamma draws to the
    # smallest normal float, so small alpha cannot yield 0/0 rows. Calling it directly lets us pass a generator.
    weights = torch._sample_dirichlet(concentration, generator=generator)
    if max_first:
        weights = weights.sort(dim=1, descending=True).values
    return weights.to(dtype)


def sample_mix_plan(
    batch_size: int,
    k: int = 2,
    alpha: float = 1.0,
    *,
    per_sample: bool = False,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    max_first: bool = False,
) -> MixPlan:
    """Sample a plan mixing each sample of a batch with ``k - 1`` partners from the same batch.

    The partners of sample i are ``perms[1:, i]``, each row an independent ``torch.randperm`` draw, so the
    batch mixes with itself as in Zhang et al. A sample may be drawn as its own partner.

    Args:
        batch_size: B, >= 1.
        k: points per mix, >= 2.
        alpha: Dirichlet concentration, finite and >= 0 (0 means no mixing; see :func:`sample_mix_weights`).
        per_sample: one weight vector per sample (weights ``(B, K)``) instead of one per batch (``(1, K)``).
        generator: source of randomness (weights first, then permutations); must live on ``device``.
        device: where the plan lives; ``None`` means the generator's device, else torch's default device.
        dtype: floating dtype of the weights; :func:`mix` casts them to the mixed tensor's dtype anyway.
        max_first: ``lam <- max(lam, 1 - lam)`` (MixMatch); ``k = 2`` only.

    Returns:
        A :class:`MixPlan` with ``perms[0] == arange(batch_size)``.
    """
    batch_size = check_positive_int("batch_size", batch_size)
    per_sample = check_bool("per_sample", per_sample)
    weights = sample_mix_weights(
        k, alpha, batch_size if per_sample else 1,
        generator=generator, device=device, dtype=dtype, max_first=max_first,
    )
    device = weights.device
    perms = [torch.arange(batch_size, device=device)]
    perms += [torch.randperm(batch_size, generator=generator, device=device) for _ in range(k - 1)]
    return MixPlan(weights=weights, perms=torch.stack(perms))


def identity_plan(
    batch_size: int,
    k: int = 2,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> MixPlan:
    """A plan that leaves every batch unchanged: weight 1 on the sample itself, all perms the identity.

    Args:
        batch_size: B, >= 1.
        k: number of (trivial) points, >= 2, so the plan has the same shape as a sampled one.
        device: where the plan lives (``None``: torch's default device).
        dtype: floating dtype of the weights.

    Returns:
        A :class:`MixPlan` with weights ``(1, K) = (1, 0, ..., 0)`` and ``perms[k] == arange(B)`` for all k.
    """
    batch_size = check_positive_int("batch_size", batch_size)
    k = check_k(k)
    dtype = _check_float_dtype(dtype)
    device = torch.get_default_device() if device is None else torch.device(device)
    weights = torch.zeros(1, k, device=device, dtype=dtype)
    weights[0, 0] = 1.0
    perms = torch.arange(batch_size, device=device).expand(k, batch_size).contiguous()
    return MixPlan(weights=weights, perms=perms)


def mix(x: torch.Tensor, plan: MixPlan) -> torch.Tensor:
    """Mix a batch with a plan: ``out[i] = sum_k weights[i or 0, k] * x[perms[k, i]]``.

    Works for anything batch-shaped: images, one-hot or soft targets, logits, probabilities, hidden states.
    Mixing two tensors with the same plan gives corresponding mixes (the target of mixed input i is the mix
    of the targets of the same points with the same weights).

    Args:
        x: floating tensor of shape ``(B, ...)`` (rank >= 1) with B == ``plan.batch_size``, on the plan's
            device. Class indices must be one-hot encoded first (``torch.nn.functional.one_hot``).
        plan: the :class:`MixPlan` to apply.

    Returns:
        Tensor with the shape, dtype and device of ``x``. The weights are cast to ``x.dtype`` and the sum is
        computed in that dtype. Gradients flow to ``x`` (and to the weights, if they require grad).
    """
    if not isinstance(plan, MixPlan):
        raise TypeError(f"plan must be a MixPlan (see sample_mix_plan), got {type(plan).__name__}.")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}.")
    if not x.is_floating_point():
        raise TypeError(
            f"x must be a floating-point tensor to be mixed, got dtype {x.dtype}; convert images with "
            "x.float() (or normalise them) and class indices with torch.nn.functional.one_hot(y, C).float()."
        )
    if x.ndim == 0:
        raise ValueError("x must have a batch dimension (rank >= 1), got a 0-d tensor.")
    if x.shape[0] != plan.batch_size:
        raise ValueError(
            f"x has batch size {x.shape[0]} but the plan was sampled for batch_size={plan.batch_size}; "
            "sample one plan per batch with sample_mix_plan(x.shape[0], ...)."
        )
    if x.device != plan.device:
        raise ValueError(
            f"x is on {x.device} but the plan is on {plan.device}; sample the plan with device=x.device "
            "or move it with plan.to(x.device)."
        )
    # (K, 1 or B, 1, ..., 1): one weight per point, broadcast over the batch (per-batch plans) and features.
    weights = plan.weights.to(x.dtype).t().reshape(plan.k, plan.weights.shape[0], *([1] * (x.ndim - 1)))
    perms = plan.perms
    out = weights[0] * x.index_select(0, perms[0])
    for k in range(1, plan.k):
        out = torch.addcmul(out, weights[k], x.index_select(0, perms[k]))
    return out
