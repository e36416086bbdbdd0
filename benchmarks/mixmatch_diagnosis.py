"""MixMatch on the CPU grid with its loss parts and label guesses logged (results/mixmatch_cpu_diagnosis.md).

Builds the grid cell of ``label_budget.py`` for ``--method`` (``mixmatch`` by default) and records, every
``--probe-every`` steps: the supervised cross-entropy, the unlabeled L2 term and lambda_U, the mean entropy and top
probability of the sharpened guesses, and how many classes the guesses' argmax spans (the largest class's share).

Example:
    python benchmarks/mixmatch_diagnosis.py --data-root data/c10-small --steps 600 --set optim.weight_decay=0 \
        --out runs/diag
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from label_budget import run_config, scale_config

import ssl_mix.methods.mixmatch as mixmatch_module
from ssl_mix.experiment import build_trainer


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _updates(pairs: list[str]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for pair in pairs:
        key, _, text = pair.partition("=")
        section, _, name = key.partition(".")
        out.setdefault(section, {})[name] = _value(text)
    return out


def main(argv: list[str] | None = None) -> dict:
    """Run one diagnosed cell: print each probe and a final summary as JSON lines, and return the summary (with the
    probes under ``"probes"``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--method", default="mixmatch")
    parser.add_argument("--labels", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--probe-every", type=int, default=25)
    parser.add_argument("--set", action="append", default=[], help="section.key=value on top of the grid cell")
    parser.add_argument("--out", default="runs/mixmatch_diagnosis")
    parser.add_argument("--guess-per-view", action="store_true",
                        help="guess with one train-mode forward per view, as the official code, not one for all K")
    args = parser.parse_args(argv)

    base = scale_config("cpu", "folder").replace(data={"data_root": args.data_root},
                                                 train={"precision": "fp32"})
    cfg = run_config(base, args.method, args.labels, args.seed, args.steps, Path(args.out), eval_every=args.steps)
    if args.set:
        cfg = cfg.replace(**_updates(args.set))
    trainer = build_trainer(cfg)
    probes: list[dict] = []
    last_guess: dict[str, torch.Tensor] = {}
    guess = mixmatch_module.guess_labels

    def logged_guess(view_logits, temperature):
        out = guess(view_logits, temperature)
        last_guess["p"] = out
        return out

    mixmatch_module.guess_labels = logged_guess
    loss = trainer.method.loss

    def logged_loss(student, batch, ctx):
        if args.guess_per_view:
            calls = []

            def per_view(x):  # MixMatch calls the student twice a step: the K views together, then the mixed batch
                calls.append(None)
                if len(calls) == 1:
                    return torch.cat([student(v) for v in x.chunk(len(batch.u_views))])
                return student(x)

            out = loss(per_view, batch, ctx)
        else:
            out = loss(student, batch, ctx)
        if ctx.step % args.probe_every == 0:
            row = {"step": ctx.step, **{k: float(v) for k, v in out.logs.items()}}
            if ctx.step == 0:  # the labeled batch and each view should have the same input statistics
                row["input_mean_std"] = [[round(float(t.mean()), 3), round(float(t.std()), 3)]
                                         for t in (batch.x_l, *(batch.u_views or (batch.x_u,)))]
            if "p" in last_guess:
                p = last_guess["p"]
                counts = torch.bincount(p.argmax(-1), minlength=p.shape[-1])
                row.update(guess_entropy=float(-(p * p.clamp_min(1e-12).log()).sum(-1).mean()),
                           guess_top=float(p.max(-1).values.mean()), guess_classes=int((counts > 0).sum()),
                           guess_largest_share=float(counts.max() / counts.sum()))
            probes.append(row)
            print(json.dumps(row), flush=True)
        return out

    trainer.method.loss = logged_loss
    start = time.perf_counter()
    try:
        report = trainer.fit()
    finally:
        mixmatch_module.guess_labels = guess
    final = report["final"]
    summary = {"settings": args.set, "steps": args.steps, "wall_s": round(time.perf_counter() - start, 1),
               "teacher": final["teacher"]["test"]["accuracy"], "student": final["student"]["test"]["accuracy"]}
    print(json.dumps(summary), flush=True)
    return {**summary, "probes": probes}


if __name__ == "__main__":
    main()
