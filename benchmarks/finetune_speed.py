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
* **plain_ema**: the plain loop plus timm's ``ModelEmaV3`` (decay 0.999) updated after every step, the EMA model a
  timm training script keeps; ours keeps its EMA teacher too, so ``ratio_ema`` compares like with like.

Both start from the same random weights (no pretrained weights can be downloaded here; the arithmetic is the
same). ``ratio = ours images/s / plain images/s``; below 1 is ssl_mix's overhead, EMA teacher included. Times
are medians of per-step CPU times of this thread (``--clock thread``; one torch thread, so all work runs here and
time the process spends descheduled on a shared machine is left out), wall-clock times beside them.

    OMP_NUM_THREADS=1 python benchmarks/finetune_speed.py --batch-size 16 --rounds 5 --steps 3 \\
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
from timm.utils import ModelEmaV3

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


def _steps(model_name: str, batch_size: int, image_size: int, device: torch.device, out_dir: str,
           precision: str = "fp32", channels_last: bool = False) -> dict[str, Callable[[], None]]:
    torch.manual_seed(0)
    model = create_model(model_name, NUM_CLASSES)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    plain_model = copy.deepcopy(getattr(model, "model", model)).to(device).train()  # TimmStaged wraps the timm model
    x = torch.randn(batch_size, 3, image_size, image_size, generator=torch.Generator().manual_seed(1)).to(device)
    x = x.contiguous(memory_format=memory_format)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    y = torch.randint(0, NUM_CLASSES, (batch_size,), generator=torch.Generator().manual_seed(2)).to(device)

    optim = preset("finetune").replace(optim={"freeze_backbone_steps": 0}).optim
    method = build_method(MethodConfig(name="erm"), num_classes=NUM_CLASSES, total_steps=10**6)
    trainer = Trainer(model, method, _NoLoader(), optim=optim,
                      train=TrainConfig(steps=10**6, device=str(device), progress=False, out_dir=out_dir,
                                        precision=precision))
    trainer.student.train()
    batch = Batch.of(x, y, x[:0])

    def plain_step(net: torch.nn.Module) -> Callable[[], None]:
        opt = create_optimizer_v2(net, "adamw", lr=optim.lr, weight_decay=optim.weight_decay,
                                  layer_decay=optim.layer_decay, foreach=False, fused=True)
        for group in opt.param_groups:
            group["lr"] = group["lr"] * group.get("lr_scale", 1.0)

        def step() -> None:
            with autocast:
                loss = F.cross_entropy(net(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return step

    plain = plain_step(plain_model)
    ema_model = copy.deepcopy(plain_model)
    ema_step, ema = plain_step(ema_model), ModelEmaV3(ema_model, decay=0.999)

    def ours() -> None:
        trainer.train_step(batch)

    def plain_ema() -> None:
        ema_step()
        ema.update(ema_model)

    return {"ours": ours, "plain": plain, "plain_ema": plain_ema}


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
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="bf16: autocast in both loops (ours through train.precision)")
    parser.add_argument("--channels-last", action="store_true", help="NHWC model and batch in both loops")
    parser.add_argument("--out", default=None, help="JSON record to write")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    wall_start = time.perf_counter()
    record = {**record_header(__file__, argv, device), "batch_size": args.batch_size,
              "image_size": args.image_size, "precision": args.precision, "channels_last": args.channels_last,
              "rounds": args.rounds, "steps_per_round": args.steps,
              "clock": "thread CPU time (median); wall beside it", "results": []}
    with tempfile.TemporaryDirectory() as out_dir:
        for model_name in args.models:
            steps = _steps(model_name, args.batch_size, args.image_size, device, out_dir, args.precision,
                           args.channels_last)
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
            for key, other in (("ratio", "plain"), ("ratio_ema", "plain_ema")):
                result[key] = round(result["ours_images_per_s"] / result[f"{other}_images_per_s"], 4)
                wall = result["ours_wall_images_per_s"] / result[f"{other}_wall_images_per_s"]
                result[f"{key}_wall"] = round(wall, 4)
            print(result, flush=True)
            record["results"].append(result)
    record["wall_time_s"] = round(time.perf_counter() - wall_start, 1)
    if args.out:
        write_record(args.out, record)
    return record


if __name__ == "__main__":
    main()
