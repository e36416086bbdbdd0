"""Fine-tuning speed at photo resolution: ssl_mix's training step against a plain timm/torch loop.

For each model (by default one CNN, ``timm:resnet18``, and one vision transformer, ``timm:vit_tiny_patch16_224``)
two steps are timed on the same batch of random 224 x 224 images, already on the device, in alternating rounds
so that a change in machine load affects both alike:

* **ours**: :meth:`ssl_mix.Trainer.train_step` with ERM and the ``finetune`` preset's optimiser (AdamW with layer
  decay and no decay on norms and biases; the frozen-backbone phase is off): forward under the method, loss,
  backward, optimiser and schedule steps, EMA teacher update.
* **plain**: the loop a timm user writes: ``model(x)``, ``F.cross_entropy``, ``zero_grad``, ``backward``,
  ``step``, with the optimiser of timm's ``create_optimizer_v2`` (the same AdamW, layer decay and groups; fused
  kernels as ours, each group's ``lr_scale`` applied once), no EMA and no schedule.

Both start from the same random weights (no pretrained weights can be downloaded here; the arithmetic is the
same). ``ratio = ours images/s / plain images/s``; below 1 is ssl_mix's overhead, EMA teacher included. Times
are medians of per-step CPU times of this thread (``--clock thread``; one torch thread, so all work runs here and
time the process spends descheduled on a shared machine is left out), wall-clock times beside them.

    OMP_NUM_THREADS=1 python benchmarks/finetune_speed.py --batch-size 16 --rounds 3 --steps 3 \\
        --out benchmarks/results/finetune_speed_cpu.json
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from provenance import record_header, write_record
from timm.optim import create_optimizer_v2

from ssl_mix import Batch, MethodConfig, TrainConfig, Trainer, build_method, create_model, preset

NUM_CLASSES = 10


class _NoLoader:
    """The trainer's loader slot: the timed steps are handed their batch, so nothing is drawn from it."""

    def __iter__(self):
        raise RuntimeError("finetune_speed times train_step on a fixed batch; the loader is never read")

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def _steps(model_name: str, batch_size: int, image_size: int, device: torch.device,
           out_dir: str) -> dict[str, Callable[[], None]]:
    torch.manual_seed(0)
    model = create_model(model_name, NUM_CLASSES)
    plain_model = copy.deepcopy(getattr(model, "model", model)).to(device).train()  # TimmStaged wraps the timm model
    x = torch.randn(batch_size, 3, image_size, image_size, generator=torch.Generator().manual_seed(1)).to(device)
    y = torch.randint(0, NUM_CLASSES, (batch_size,), generator=torch.Generator().manual_seed(2)).to(device)

    optim = preset("finetune").replace(optim={"freeze_backbone_steps": 0}).optim
    method = build_method(MethodConfig(name="erm"), num_classes=NUM_CLASSES, total_steps=10**6)
    trainer = Trainer(model, method, _NoLoader(), optim=optim,
                      train=TrainConfig(steps=10**6, device=str(device), progress=False, out_dir=out_dir))
    trainer.student.train()
    batch = Batch.of(x, y, x[:0])

    plain_opt = create_optimizer_v2(plain_model, "adamw", lr=optim.lr, weight_decay=optim.weight_decay,
                                    layer_decay=optim.layer_decay, foreach=False, fused=True)
    for group in plain_opt.param_groups:
        group["lr"] = group["lr"] * group.get("lr_scale", 1.0)

    def ours() -> None:
        trainer.train_step(batch)

    def plain() -> None:
        loss = F.cross_entropy(plain_model(x), y)
        plain_opt.zero_grad(set_to_none=True)
        loss.backward()
        plain_opt.step()

    return {"ours": ours, "plain": plain}


def _time(step: Callable[[], None], n: int) -> tuple[list[float], list[float]]:
    thread, wall = [], []
    for _ in range(n):
        t0, w0 = time.thread_time(), time.perf_counter()
        step()
        thread.append(time.thread_time() - t0)
        wall.append(time.perf_counter() - w0)
    return thread, wall


def main(argv: list[str] | None = None) -> dict:
    """Run the measurement and write its record; returns the record."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["timm:resnet18", "timm:vit_tiny_patch16_224"])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of each step")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per round")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--out", default=None, help="JSON record to write")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    wall_start = time.perf_counter()
    record = {**record_header(__file__, argv, device), "batch_size": args.batch_size,
              "image_size": args.image_size, "rounds": args.rounds, "steps_per_round": args.steps,
              "clock": "thread CPU time (median); wall beside it", "results": []}
    with tempfile.TemporaryDirectory() as out_dir:
        for model_name in args.models:
            steps = _steps(model_name, args.batch_size, args.image_size, device, out_dir)
            for step in steps.values():  # one untimed step each: allocations, first-call costs
                step()
            times = {name: ([], []) for name in steps}
            for _ in range(args.rounds):
                for name, step in steps.items():
                    thread, wall = _time(step, args.steps)
                    times[name][0].extend(thread)
                    times[name][1].extend(wall)
            result = {"model": model_name}
            for name, (thread, wall) in times.items():
                result[f"{name}_images_per_s"] = round(args.batch_size / statistics.median(thread), 3)
                result[f"{name}_wall_images_per_s"] = round(args.batch_size / statistics.median(wall), 3)
            result["ratio"] = round(result["ours_images_per_s"] / result["plain_images_per_s"], 4)
            result["ratio_wall"] = round(result["ours_wall_images_per_s"] / result["plain_wall_images_per_s"], 4)
            print(result, flush=True)
            record["results"].append(result)
    record["wall_time_s"] = round(time.perf_counter() - wall_start, 1)
    if args.out:
        write_record(args.out, record)
    return record


if __name__ == "__main__":
    main()
