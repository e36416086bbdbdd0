"""Training-step throughput: the ssl_mix step against the model's own cost and against a naive step.

For each model and method (ERM, supervised mixup, ICT with K=2 and K=4) three step functions are timed side by
side, in alternating rounds so that a change in machine load affects all three alike:

* **ours**: the next batch from :class:`ssl_mix.TensorDualLoader` (gather, crop, flip, normalise on the device)
  followed by :meth:`ssl_mix.Trainer.train_step` (mixing, loss, backward, optimiser, schedule, EMA teacher).
* **floor**: the unavoidable model work of the same step on the same modules: the student's forward and backward
  passes on a labeled batch and (ICT) on a mixed unlabeled batch, plus (ICT) the teacher's forward pass, with the
  data already on the device and no mixing, loss arithmetic beyond a scalar, EMA, optimiser or logging.
  ``overhead = ours / floor``.
* **naive**: the same algorithm written the way common public SSL code writes it: two ``DataLoader``\\ s with
  per-image torchvision transforms on PIL images, separate student forward passes, mixing through NumPy on the
  host (``.cpu().numpy()`` and back), a per-parameter Python loop for the EMA teacher, and ``.item()`` logging of
  the losses and the labeled accuracy at every step; its optimiser is ``torch.optim.SGD`` with torch's default
  kernels. ``speedup = naive / ours``.

Times are medians of per-step times. On CUDA a step's time is read from CUDA events recorded between steps (no
host synchronisation inside a timed block), so the host can run ahead of the device as it does in training.
Images per second count the labeled batch, plus the unlabeled batch for methods that use it.

Each record also counts the ATen operators one step of ``ours`` and of ``floor`` runs (``ops_per_step``; views
and bare allocations left out; not counted with ``--compile``). The count does not depend on the device or the
batch size, so it is measured on the CPU too: on a GPU an eager step launches at least about that many kernels,
which is what limits small, fast steps there.

    python benchmarks/throughput.py --device cpu --models wrn28-2 --batch-size 32 --unlabeled-batch-size 32 \\
        --threads 2 --out benchmarks/results/throughput_cpu_wrn28-2.json
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from bench_data import benchmark_images
from PIL import Image
from provenance import command_line, git_commit, hardware
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import ssl_mix
from ssl_mix import (
    PRECISIONS,
    Batch,
    ImageArrays,
    MethodConfig,
    OptimConfig,
    TensorDualLoader,
    TrainConfig,
    Trainer,
    build_method,
    build_teacher,
    create_model,
    data_spec,
)
from ssl_mix.trainer import resolve_device

REPO = Path(__file__).resolve().parents[1]
METHODS = {"erm": ("erm", 2), "mixup": ("mixup", 2), "ict2": ("ict", 2), "ict4": ("ict", 4),
           "fixmatch": ("fixmatch", 2), "mixmatch": ("mixmatch", 2)}
# Methods whose naive (PIL, per image) step is not written here: run them with --no-naive.
NO_NAIVE = ("fixmatch", "mixmatch")


# ------------------------------------------------------------------------------------------------- data
class _PilDataset(torch.utils.data.Dataset):
    """CIFAR the way torchvision's dataset serves it: an HWC uint8 array, one PIL image per item."""

    def __init__(self, images_hwc: np.ndarray, targets: np.ndarray, transform: Callable) -> None:
        self.images, self.targets, self.transform = images_hwc, targets, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.transform(Image.fromarray(self.images[index])), int(self.targets[index])


def _endless(loader: torch.utils.data.DataLoader):
    while True:
        yield from loader


# ----------------------------------------------------------------------------------------- naive baseline
class NaiveStep:
    """One training step of the same algorithm, in the style of common public SSL code (see module docstring).

    Args:
        method: ``erm``, ``mixup`` or ``ict``.
        k: points per mix.
        model: the student to copy (same initial weights as ours); the teacher is another copy.
        labeled, unlabeled: ``ImageArrays`` for the two per-image ``DataLoader`` streams.
        mean, std: normalisation constants.
        batch_size, unlabeled_batch_size: B_l and B_u.
        device: training device.
        workers: ``DataLoader`` worker processes.
        precision: ``fp32`` or ``bf16`` (autocast, as ours).
    """

    def __init__(self, method: str, k: int, model: nn.Module, labeled: ImageArrays, unlabeled: ImageArrays,
                 mean, std, batch_size: int, unlabeled_batch_size: int, device: torch.device, workers: int,
                 precision: str, seed: int) -> None:
        import torchvision.transforms as T

        self.method, self.k, self.device, self.precision = method, k, device, precision
        self.alpha, self.weight, self.decay = 1.0, 100.0, 0.999
        self.student = copy.deepcopy(model).to(device)
        self.teacher = copy.deepcopy(model).to(device)
        self.teacher.requires_grad_(False)
        self.optimizer = torch.optim.SGD(self.student.parameters(), lr=0.1, momentum=0.9, nesterov=True,
                                         weight_decay=1e-4)
        transform = T.Compose([T.RandomCrop(32, padding=4, padding_mode="reflect"), T.RandomHorizontalFlip(),
                               T.ToTensor(), T.Normalize(mean, std)])

        def loader(arrays: ImageArrays, size: int):
            ds = _PilDataset(arrays.images.permute(0, 2, 3, 1).numpy(), arrays.targets.numpy(), transform)
            return _endless(torch.utils.data.DataLoader(ds, batch_size=size, shuffle=True, drop_last=True,
                                                        num_workers=workers,
                                                        pin_memory=device.type == "cuda",
                                                        persistent_workers=workers > 0,
                                                        generator=torch.Generator().manual_seed(seed)))

        self.labeled = loader(labeled, batch_size)
        self.unlabeled = loader(unlabeled, unlabeled_batch_size) if method == "ict" else None
        self.rng = np.random.RandomState(seed)
        self.step_count, self.meters = 0, {}

    def _log(self, **values: torch.Tensor) -> None:
        for key, value in values.items():
            self.meters.setdefault(key, []).append(value.item())

    def _host_mix(self, *tensors: torch.Tensor) -> list[torch.Tensor]:
        lam = self.rng.dirichlet([self.alpha] * self.k)
        n = tensors[0].shape[0]
        perms = [np.arange(n)] + [self.rng.permutation(n) for _ in range(self.k - 1)]
        out = []
        for t in tensors:
            a = t.detach().float().cpu().numpy()
            mixed = sum(lam[j] * a[perms[j]] for j in range(self.k)).astype(np.float32)
            out.append(torch.from_numpy(mixed).to(self.device))
        return out

    def __call__(self) -> None:
        x_l, y_l = next(self.labeled)
        x_l, y_l = x_l.to(self.device), y_l.to(self.device)
        for group in self.optimizer.param_groups:  # per-step schedule set by hand, as such code does
            group["lr"] = 0.1
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")
        with autocast:
            if self.method == "mixup":
                mixed_x, mixed_y = self._host_mix(x_l, F.one_hot(y_l, 10))
                logits = self.student(mixed_x)
                sup = -(mixed_y * F.log_softmax(logits.float(), dim=1)).sum(1).mean()
            else:
                logits = self.student(x_l)
                sup = F.cross_entropy(logits.float(), y_l)
            loss = sup
            if self.method == "ict":
                x_u, _ = next(self.unlabeled)
                x_u = x_u.to(self.device)
                with torch.no_grad():
                    teacher_logits = self.teacher(x_u)
                mixed_u, mixed_target = self._host_mix(x_u, F.softmax(teacher_logits.float(), dim=1))
                student_logits = self.student(mixed_u)
                cons = F.mse_loss(F.softmax(student_logits.float(), dim=1), mixed_target)
                loss = sup + self.weight * cons
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.step_count += 1
        decay = min(1 - 1 / (self.step_count + 1), self.decay)
        for ema_p, p in zip(self.teacher.parameters(), self.student.parameters(), strict=True):
            ema_p.data.mul_(decay).add_(p.data, alpha=1 - decay)
        for ema_b, b in zip(self.teacher.buffers(), self.student.buffers(), strict=True):
            ema_b.data.copy_(b.data)
        accuracy = (logits.argmax(1) == y_l).float().mean() * 100
        self._log(loss=loss, sup=sup, accuracy=accuracy, **({"cons": cons} if self.method == "ict" else {}))


# ------------------------------------------------------------------------------------------------ timing
def _time_steps(step: Callable[[], None], n: int, device: torch.device, clock: str) -> list[float]:
    """Seconds per step for ``n`` consecutive steps.

    CUDA: the device time between events recorded after each step (idle gaps, when the host is the bottleneck,
    count). CPU: wall-clock time, or with ``clock="thread"`` the CPU time of this thread, which leaves out the
    time the process spends descheduled on a shared machine (all work runs in this thread with one torch thread
    and no DataLoader workers, which ``main`` enforces).
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        events = [torch.cuda.Event(enable_timing=True) for _ in range(n + 1)]
        events[0].record()
        for i in range(n):
            step()
            events[i + 1].record()
        torch.cuda.synchronize(device)
        return [events[i].elapsed_time(events[i + 1]) / 1000 for i in range(n)]
    now = time.thread_time if clock == "thread" else time.perf_counter
    times = []
    for _ in range(n):
        start = now()
        step()
        times.append(now() - start)
    return times


# Allocations without a fill: no kernel runs. (Profiler markers, which optimisers emit, are skipped too.)
_NO_KERNEL = {torch.ops.aten.empty, torch.ops.aten.empty_strided, torch.ops.aten.empty_like}


class _OpCounter(TorchDispatchMode):
    """Counts the ATen operators that reach the kernels, below autograd (so backward ops count too)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not (func.is_view or func.overloadpacket in _NO_KERNEL or func.namespace == "profiler"):
            self.count += 1
        return func(*args, **(kwargs or {}))


def count_ops(step: Callable[[], None]) -> int:
    """ATen operators run by one call of ``step``, views, bare allocations and profiler markers left out.

    Device-independent: on a GPU, eager mode launches at least about one kernel for each (foreach ops and some
    convolutions launch several), so the count times the host's per-launch cost bounds an eager step from below
    when the GPU outpaces the host.
    """
    with _OpCounter() as counter:
        step()
    return counter.count


def _floor_step(trainer: Trainer, method_name: str, batch: Batch, mixed_u: torch.Tensor,
                precision: str) -> Callable[[], None]:
    student, teacher = trainer.wrapped_student, trainer.teacher
    device = batch.x_l.device
    ict = method_name == "ict"
    teacher_train = getattr(trainer.method, "teacher_mode", "train") == "train"

    def step() -> None:
        # Cleared first, as the trainer does, so backward writes fresh gradients after a step of any variant.
        student.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            if method_name == "fixmatch":  # one pass on labeled + weak + strong, as the method runs it
                logits = student(torch.cat([batch.x_l, *batch.u_views])).float()
                loss = logits.logsumexp(1).mean()
            elif method_name == "mixmatch":  # the label guess on K views, then one pass on the mixed batch
                with torch.no_grad():
                    student(torch.cat(batch.u_views))
                loss = student(torch.cat([batch.x_l, mixed_u])).float().square().mean()
            else:
                loss = F.cross_entropy(student(batch.x_l).float(), batch.y_l)
            if ict:
                teacher.train(teacher_train)
                with torch.no_grad():
                    teacher(batch.x_u)
                loss = loss + student(mixed_u).float().square().mean()
        loss.backward()

    return step


def _marking_steps(step: Callable[[], None]) -> Callable[[], None]:
    def marked() -> None:
        torch.compiler.cudagraph_mark_step_begin()
        step()

    return marked


def _summary(times: list[float]) -> dict:
    return {"median_s": statistics.median(times), "p25_s": float(np.percentile(times, 25)),
            "p75_s": float(np.percentile(times, 75)), "steps": len(times)}


def run_config(model_name: str, method_key: str, args: argparse.Namespace, data: ImageArrays,
               device: torch.device, out_dir: str) -> dict:
    """Time ours, the floor and (unless ``--no-naive``) the naive step for one model and method."""
    method_name, k = METHODS[method_key]
    spec = data_spec("cifar10")
    labeled, unlabeled = data.subset(range(min(args.num_labels, len(data)))), data
    torch.manual_seed(args.seed)
    model = create_model(model_name, 10)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    naive_init = copy.deepcopy(model)
    method_cfg = MethodConfig(name=method_name, k=k, alpha=1.0, ramp="none", consistency_weight=100.0,
                              **({"joint_forward": True} if args.joint_forward else {}))
    method = build_method(method_cfg, num_classes=10, total_steps=10**6)
    loader = TensorDualLoader(labeled, unlabeled, spec, batch_size=args.batch_size,
                              unlabeled_batch_size=args.unlabeled_batch_size, seed=args.seed, device=device,
                              with_unlabeled=method.uses_unlabeled, unlabeled_views=type(method).views_for(method_cfg))
    train = TrainConfig(steps=10**6, device=str(device), precision=args.precision,
                        compile=args.compile and args.compile_mode is None, progress=False, out_dir=out_dir,
                        seed=args.seed)
    trainer = Trainer(model, method, loader, train=train, optim=OptimConfig(), teacher=build_teacher(method_cfg, model))
    trainer.student.train()
    if args.compile_mode is not None:
        # A compile mode the Trainer does not offer (it compiles with the default mode and falls back to eager):
        # compiled here, without a fallback, so a failure is reported instead of timing eager steps.
        trainer.wrapped_student = torch.compile(trainer.wrapped_student, mode=args.compile_mode,
                                                backend=args.compile_backend)
    cuda_graphs = args.compile_mode in ("reduce-overhead", "max-autotune")
    batches = iter(loader)

    def ours() -> None:
        if cuda_graphs:
            # One training iteration per step: CUDA-graph outputs of the previous step may be overwritten.
            torch.compiler.cudagraph_mark_step_begin()
        trainer.train_step(Batch.of(*next(batches)))

    # The floor's data is prepared once, so it is already on the device; it always runs separate forward passes
    # (the model work of a joint pass is the same arithmetic).
    fixed = Batch.of(*loader.batch(0))
    mixed_u = fixed.x_u.flip(0).contiguous()
    floor = _floor_step(trainer, method_name, fixed, mixed_u, args.precision)
    if cuda_graphs:
        floor = _marking_steps(floor)
    steps: dict[str, Callable[[], None]] = {"ours": ours, "floor": floor}
    if not args.no_naive and method_key not in NO_NAIVE:
        steps["naive"] = NaiveStep(method_name, k, naive_init, labeled, unlabeled, spec.mean, spec.std,
                                   args.batch_size, args.unlabeled_batch_size, device, args.naive_workers,
                                   args.precision, args.seed)
    names = list(steps)
    for name in names:
        _time_steps(steps[name], args.warmup, device, args.clock)
    # A compiled student runs fused kernels, not the ATen ops a dispatch mode sees; the naive step's count would
    # mix host-side image decoding with device work.
    ops = {} if args.compile or args.compile_mode else {name: count_ops(steps[name]) for name in ("ours", "floor")}
    per_round: dict[str, list[list[float]]] = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            per_round[name].append(_time_steps(steps[name], args.steps, device, args.clock))
    images = args.batch_size + (args.unlabeled_batch_size if method.uses_unlabeled else 0)
    result: dict = {"model": model_name, "method": method_key, "k": k, "images_per_step": images}
    for name in names:
        flat = [t for times in per_round[name] for t in times]
        result[name] = {**_summary(flat), "round_medians_s": [statistics.median(t) for t in per_round[name]],
                        "images_per_s": images / statistics.median(flat), "ops_per_step": ops.get(name)}
    ratios = [o / f for o, f in zip(result["ours"]["round_medians_s"], result["floor"]["round_medians_s"], strict=True)]
    result["overhead_ratio"] = result["ours"]["median_s"] / result["floor"]["median_s"]
    result["overhead_ratio_rounds"] = {"mean": statistics.mean(ratios),
                                       "std": statistics.stdev(ratios) if len(ratios) > 1 else 0.0}
    if "naive" in result:
        speedups = [n / o for n, o in zip(result["naive"]["round_medians_s"], result["ours"]["round_medians_s"],
                                          strict=True)]
        result["speedup_vs_naive"] = result["naive"]["median_s"] / result["ours"]["median_s"]
        result["speedup_vs_naive_rounds"] = {"mean": statistics.mean(speedups),
                                             "std": statistics.stdev(speedups) if len(speedups) > 1 else 0.0}
    return result


def _line(r: dict, args: argparse.Namespace, device: torch.device) -> str:
    sizes = f"{args.batch_size}+{args.unlabeled_batch_size}" if r["images_per_step"] > args.batch_size else \
        f"{args.batch_size}"
    text = (f"{r['model']} {r['method']} {sizes} {device.type} {args.precision}: ours "
            f"{r['ours']['median_s'] * 1e3:.2f} ms/step ({r['ours']['images_per_s']:.0f} img/s), floor "
            f"{r['floor']['median_s'] * 1e3:.2f} ms, overhead {r['overhead_ratio']:.3f}x")
    if r["ours"]["ops_per_step"] is not None:
        text += f", {r['ours']['ops_per_step']} ops/step (floor {r['floor']['ops_per_step']})"
    if "naive" in r:
        text += f"; naive {r['naive']['median_s'] * 1e3:.2f} ms, speedup {r['speedup_vs_naive']:.2f}x"
    return text


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; returns the JSON record (also written to ``--out``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--models", nargs="+", default=["wrn28-2"], help="e.g. wrn28-2 cnn-small wrn28-8")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--batch-size", type=int, default=100, help="labeled batch size B_l")
    parser.add_argument("--unlabeled-batch-size", type=int, default=100, help="unlabeled batch size B_u (ICT)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps of each variant first")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per variant per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of ours, floor and naive")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the student (Trainer option)")
    parser.add_argument("--compile-mode", choices=["default", "reduce-overhead", "max-autotune"],
                        help="torch.compile the student with this mode instead (reduce-overhead: CUDA graphs); no "
                             "eager fallback")
    parser.add_argument("--compile-backend", default="inductor",
                        help="with --compile-mode: torch.compile's backend (eager: trace only, for quick checks)")
    parser.add_argument("--joint-forward", action="store_true",
                        help="ICT: one student forward on labeled + mixed unlabeled (MethodConfig.joint_forward)")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive baseline")
    parser.add_argument("--naive-workers", type=int, default=0, help="DataLoader workers of the naive step")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--clock", choices=["wall", "thread"], default="wall",
                        help="CPU only: wall-clock time, or this thread's CPU time (needs --threads 1 and "
                             "--naive-workers 0; robust to other processes on a shared machine)")
    parser.add_argument("--source", choices=["random", "cifar10-jpeg"], default="random",
                        help="random 32x32x3 uint8 images, or the CIFAR-10 JPEG copy in ../shared/data")
    parser.add_argument("--num-images", type=int, default=50_000, help="unlabeled pool size")
    parser.add_argument("--num-labels", type=int, default=4000, help="labeled set size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="JSON output (default benchmarks/results/throughput_<device>.json)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.clock == "thread" and (device.type != "cpu" or torch.get_num_threads() != 1 or args.naive_workers):
        parser.error("--clock thread measures one thread's CPU time: use it on the CPU with --threads 1 and "
                     "--naive-workers 0")
    out = Path(args.out or REPO / f"benchmarks/results/throughput_{device.type}.json")
    wall = time.perf_counter()
    load_before = os.getloadavg()
    data = benchmark_images(args.source, args.num_images)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for model_name in args.models:
            for method_key in args.methods:
                result = run_config(model_name, method_key, args, data, device, tmp)
                results.append(result)
                print(_line(result, args, device), flush=True)
    record = {
        "benchmark": "training-step throughput: ours vs floor (model work only) vs naive, interleaved",
        "command": command_line(__file__, argv),
        "git_commit": git_commit(),
        "hardware": hardware(device),
        "load_average_1_5_15": {"start": [round(v, 2) for v in load_before],
                                "end": [round(v, 2) for v in os.getloadavg()]},
        "torch_version": torch.__version__,
        "torchvision_version": torchvision.__version__,
        "ssl_mix_version": ssl_mix.__version__,
        "python_version": platform.python_version(),
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "seeds": [args.seed],
        "timing": ("median of per-step times over rounds x steps after warm-up; CUDA: events between steps; CPU: "
                   + ("CPU time of the one working thread" if args.clock == "thread" else "wall clock")),
        "results": results,
        "wall_time_s": round(time.perf_counter() - wall, 1),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out} (load average {record['load_average_1_5_15']['end'][0]}, "
          f"{record['hardware']['torch_threads']} threads, {record['wall_time_s']} s)")
    return record


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
