import json
import subprocess
import sys
from pathlib import Path

import pytest

from ssl_mix import __version__
from ssl_mix.cli import main

TINY = ["--dataset", "digits", "--model", "cnn-small", "--num-labels", "30", "--steps", "6", "--eval-every", "3",
        "--log-every", "3", "--checkpoint-every", "3", "--no-progress", "--device", "cpu"]


def test_version_and_help_from_the_console_script():
    out = subprocess.run(["ssl-mix", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"ssl-mix {__version__}"
    out = subprocess.run([sys.executable, "-m", "ssl_mix", "--help"], capture_output=True, text=True, check=True)
    for command in ("demo", "train", "eval", "split", "analyze"):
        assert command in out.stdout


def test_train_then_eval(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--method", "ict", "--k", "3", "--alpha", "0.5", "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "trained 6 steps" in out and "teacher  test" in out
    saved = json.loads((run / "config.json").read_text())
    assert saved["method"]["k"] == 3 and saved["method"]["alpha"] == 0.5 and saved["data"]["dataset"] == "digits"

    assert main(["eval", str(run / "last.pt"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "student  digits test accuracy" in out and "teacher  digits test accuracy" in out and "step 6" in out


def test_resume_continues_and_refuses_a_changed_config(tmp_path, capsys):
    run = str(tmp_path / "run")
    assert main(["train", *TINY, "--out", run]) == 0
    longer = [a if a != "6" else "9" for a in TINY]
    assert main(["train", *longer, "--out", run, "--resume"]) == 0
    assert "trained 9 steps" in capsys.readouterr().out
    assert main(["train", *longer, "--out", run, "--resume", "--k", "4"]) == 2
    err = capsys.readouterr().err
    assert f"cannot resume {str(Path(run) / 'last.pt')!r}: you changed --k: 2 in the run -> 4 now. A resumed" in err
    assert main(["train", "--preset", "demo", "--out", run, "--resume", "--no-progress"]) == 2  # a preset: all listed
    assert "cannot resume: the configuration differs from the run being resumed" in capsys.readouterr().err


def test_resume_names_the_one_setting_changed_not_the_defaults(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--k", "3", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(run), "--method", "erm"]) == 2
    err = capsys.readouterr().err
    assert "you changed --method: 'ict' in the run -> 'erm' now. A resumed run keeps the settings it" in err
    assert "--dataset" not in err and "more:" not in err  # the settings not given are the run's, not the defaults
    # Repeating the run's own values is no change: the rest is read from the checkpoint.
    assert main(["train", "--resume", "--out", str(run), "--k", "3", "--model", "cnn-small", "--steps", "9"]) == 0
    assert "trained 9 steps" in capsys.readouterr().out
    assert json.loads((run / "config.json").read_text())["data"]["dataset"] == "digits"


def test_resume_with_only_out_reads_the_run_configuration(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--k", "3", "--out", str(run)]) == 0
    moved = tmp_path / "moved"
    run.rename(moved)  # a moved run directory resumes too: where a run writes does not change what it computes
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(moved), "--steps", "9"]) == 0
    assert "trained 9 steps" in capsys.readouterr().out
    resumed = json.loads((moved / "config.json").read_text())
    assert resumed["method"]["k"] == 3 and resumed["data"]["dataset"] == "digits"  # the run's, not the defaults
    assert resumed["train"]["out_dir"] == str(moved)
    assert main(["train", "--resume", "--out", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "resuming with only --out reads the run's configuration from" in err and "no checkpoint there" in err


def test_print_config_applies_preset_then_file_then_flags(tmp_path, capsys):
    cfg_file = tmp_path / "c.json"
    cfg_file.write_text(json.dumps({"method": {"k": 4, "alpha": 0.3}}))
    assert main(["train", "--preset", "chaudhry-svhn", "--config", str(cfg_file), "--alpha", "0.7",
                 "--print-config"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["optim"]["optimizer"] == "adam" and cfg["method"]["k"] == 4 and cfg["method"]["alpha"] == 0.7


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--method", "dividemix"], "invalid choice: 'dividemix'"),
        (["train", "--steps", "ten"], "invalid int value: 'ten'"),
        (["train", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    ],
)
def test_argparse_errors_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--k", "1", "--print-config"], "--k (number of points to mix) must be an int >= 2"),
        (["train", "--split", "s.json", "--num-labels", "10"], "--split and --num-labels conflict"),
        (["train", "--dataset", "cifar10", "--use-extra", "--print-config"], "--use-extra adds SVHN"),
        (["train", "--image-size", "32", "--print-config"],
         "--image-size applies to --dataset 'folder' (your own images) only, not 'cifar10'; drop --image-size or set "
         "--dataset folder"),
        (["train", "--method", "mixup", "--joint-forward", "--print-config"], "; set --no-joint-forward"),
        (["train", "--preset", "demo", "--num-labels", "4000", "--no-progress"], "use at most num_labels=1390"),
        (["train", "--dataset", "cifar10", "--data-root", "/nonexistent/c10", "--no-progress"], "cifar-10"),
        (["eval", "/nonexistent/last.pt"], "does not exist"),
        (["demo", "--seeds", "0"], "--seeds must be >= 1"),
    ],
)
def test_user_errors_exit_2_with_a_message(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ssl-mix {argv[0]}: error:")
    assert message.lower() in err.lower()


def test_a_label_file_with_a_preset_budget_points_to_num_labels_none(cifar10_jpeg_sample, tmp_path, capsys):
    labels = tmp_path / "labels.csv"
    root = cifar10_jpeg_sample
    names = sorted(p.relative_to(root).as_posix() for p in (root / "train").rglob("*.jpg"))
    labels.write_text("".join(f"{name},{name.split('/')[1]}\n" for name in names[::10]))
    argv = ["train", "--preset", "cpu-cifar10", "--dataset", "folder", "--data-root", str(cifar10_jpeg_sample),
            "--labels", str(labels), "--num-labels", "1000", "--no-progress", "--device", "cpu",
            "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "num_labels=1000" in err and f"use every labeled row of {labels} with --num-labels none" in err
    # none (no budget) goes with a saved split, a number does not
    assert main(["train", "--split", "s.json", "--num-labels", "none", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["data"]["split"] == "s.json"


def test_out_under_a_file_exits_2_naming_the_path(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    argv = ["train", "--preset", "demo", "--steps", "1", "--no-progress", "--device", "cpu",
            "--out", str(blocker / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err.splitlines()[-1]  # after the data settings training starts with
    assert err.startswith("ssl-mix train: error:") and "Not a directory" in err and str(blocker) in err


def test_demo_prints_a_table(tmp_path, capsys):
    assert main(["demo", "--seeds", "2", "--steps", "4", "--out", str(tmp_path), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "erm" in out and "ict" in out and "±" in out and f"tensorboard --logdir {tmp_path}" in out


def test_train_help_describes_every_config_flag_with_its_default(capsys):
    from ssl_mix.cli import build_parser
    from ssl_mix.config import config_flags, format_value, section_type

    parser = build_parser()
    train = next(a for a in parser._actions if a.choices and "train" in a.choices).choices["train"]
    actions = {opt: action for action in train._actions for opt in action.option_strings}
    for flag, (section, name) in config_flags().items():
        action = actions[flag]
        default = format_value(getattr(section_type(section)(), name))
        assert action.help.endswith(f"(default: {default})") and len(action.help) > 30, (flag, action.help)
        assert action.metavar is None or not action.metavar.startswith("CFG"), (flag, action.metavar)
    metavars = {flag: actions[flag].metavar for flag in ("--num-labels", "--lr", "--data-root", "--out", "--split",
                                                         "--model", "--mix-layers", "--device")}
    assert metavars == {"--num-labels": "N", "--lr": "FLOAT", "--data-root": "DIR", "--out": "DIR",
                        "--split": "FILE", "--model": "NAME", "--mix-layers": "A,B,...", "--device": "DEVICE"}
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "CFG__" not in out and "--num-labels N" in out
    assert "else 4000, the standard CIFAR-10 budget (default: none)" in " ".join(out.split())
    assert "linearity (Chaudhry et al. eq. 3) every this many steps; 0: off (default: 0)" in " ".join(out.split())


def test_presets_lists_each_preset_on_one_line(capsys):
    from ssl_mix.config import PRESETS, flag_terms

    assert main(["presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(PRESETS)
    for line, p in zip(lines, PRESETS.values(), strict=True):
        assert flag_terms(p.description) in line and f"{p.config.train.steps:,} steps" in line
    assert "set --k for ICT[K]" in lines[list(PRESETS).index("chaudhry-cifar10")]


def test_library_errors_are_printed_with_flag_names(monkeypatch, capsys):
    # A message of the library in config terms (as the data layer raises) reads in flag terms on the command line.
    import ssl_mix.cli as cli

    def fail(args):
        raise ValueError("images differ in size; set data.image_size (or data.resize='stretch'), see train.out_dir")

    monkeypatch.setitem(cli._COMMANDS, "calibrate", (*cli._COMMANDS["calibrate"][:2], fail))
    assert main(["calibrate", "runs/x"]) == 2
    assert capsys.readouterr().err == ("ssl-mix calibrate: error: images differ in size; set --image-size (or "
                                       "--resize stretch), see --out\n")


def test_config_file_errors_keep_the_file_terms(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("method: {k: 1}\n")
    assert main(["train", "--config", str(path), "--print-config"]) == 2
    err = capsys.readouterr().err
    assert "c.yaml': method.k (number of points to mix) must be an int >= 2" in err and "--k" not in err


def test_print_config_as_yaml_and_train_from_a_yaml_file(tmp_path, capsys):
    assert main(["train", "--preset", "demo", "--k", "3", "--print-config", "--format", "yaml"]) == 0
    path = tmp_path / "demo.yaml"
    path.write_text(capsys.readouterr().out)
    assert "method:\n  name: ict\n  k: 3\n" in path.read_text()
    assert main(["train", "--config", str(path), "--alpha", "0.25", "--print-config"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["method"]["k"] == 3 and cfg["method"]["alpha"] == 0.25 and cfg["data"]["dataset"] == "digits"
    path.write_text("method:\n  k: 3\n  alpah: 0.5\n")
    assert main(["train", "--config", str(path), "--print-config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ssl-mix train: error: config file") and "unknown key(s) ['alpah']" in err


# What answers at once, without importing torch: the version, the help texts and argument errors.
_IMPORTS_TORCH = ("import sys\nfrom ssl_mix.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n"
                  "    pass\nprint('torch imported:', 'torch' in sys.modules, file=sys.stderr)")


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["train", "--help"], ["train", "--bogus"],
                                  ["eval", "--help"], ["predict"], ["select", "--help"], ["export", "--help"],
                                  ["demo", "--help"], ["analyze", "--help"]])
def test_version_help_and_argument_errors_do_not_import_torch(argv):
    out = subprocess.run([sys.executable, "-c", _IMPORTS_TORCH, *argv], capture_output=True, text=True, timeout=120)
    assert out.stderr.strip().splitlines()[-1] == "torch imported: False", out.stderr


@pytest.mark.parametrize("command", [["predict", "run", "a.jpg", "--out", "p.csv"],
                                     ["select", "run", "--budget", "5", "--strategy", "random", "--out", "s.csv"]])
def test_decoding_processes_flag_is_num_workers_as_in_train(command, capsys):
    """predict and select spell it as train does (--num-workers); --workers keeps working for a release."""
    from ssl_mix.cli import build_parser

    parser = build_parser()
    assert parser.parse_args([*command, "--num-workers", "2"]).workers == 2
    assert "deprecated" not in capsys.readouterr().err
    assert parser.parse_args([*command, "--workers", "3"]).workers == 3
    warning = "--workers is deprecated and will be removed in the next release; use --num-workers"
    assert warning in capsys.readouterr().err
    assert parser.parse_args(command).workers is None
    with pytest.raises(SystemExit):
        parser.parse_args([command[0], "--help"])
    help_text = capsys.readouterr().out
    assert "--num-workers" in help_text and "--workers" not in help_text
@pytest.mark.parametrize("flags, message", [
    (["--layer-decay", "0.5"], "--layer-decay needs the layer groups of timm's group_matcher(), which SmallCNN"),
    (["--layer-decay", "1.5"], "--layer-decay must be"),
    (["--freeze-backbone-steps", "-2"], "--freeze-backbone-steps must be >= 0"),
])
def test_fine_tuning_errors_exit_2_in_flag_terms(flags, message, tmp_path, capsys):
    argv = ["train", "--preset", "demo", "--steps", "1", "--no-progress", "--device", "cpu",
            "--out", str(tmp_path / "run"), *flags]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "ssl-mix train: error:" in err and message in err
    assert "Traceback" not in err
