import json

import pytest

from ssl_mix.config import PRESETS, Config, DataConfig, MethodConfig, OptimConfig, TrainConfig, config_flags, preset


def test_defaults_round_trip_through_dict():
    cfg = Config()
    assert Config.from_dict(cfg.to_dict()) == cfg


def test_unknown_section_and_key_are_errors():
    with pytest.raises(ValueError, match=r"unknown config section\(s\) \['trainer'\]"):
        Config.from_dict({"trainer": {}})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['stepz'\] in config section 'train'"):
        Config.from_dict({"train": {"stepz": 3}})
    with pytest.raises(TypeError, match="unexpected keyword"):
        TrainConfig(stepz=3)


def test_literal_fields_are_checked():
    with pytest.raises(ValueError, match=r"MethodConfig.name must be one of .*'ict'.* got 'fixmatch'"):
        MethodConfig(name="fixmatch")
    with pytest.raises(ValueError, match=r"DataConfig.loader must be one of"):
        DataConfig(loader="fast")
    with pytest.raises(ValueError, match=r"TrainConfig.precision must be one of"):
        TrainConfig(precision="fp16")


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: MethodConfig(k=1), r"k \(points mixed\) must be an integer >= 2, got 1"),
        (lambda: MethodConfig(alpha=-0.5), r"alpha must be >= 0"),
        (lambda: MethodConfig(ema_decay=1.5), r"ema_decay must be in \[0, 1\]"),
        (lambda: MethodConfig(ramp_fraction=2.0), r"ramp_fraction must be in \[0, 1\]"),
        (lambda: MethodConfig(mix_layers=("input", "fc")), r"mix_layers entries must be 'input' or a layer number"),
        (lambda: MethodConfig(mix_layers=()), r"mix_layers must name at least one layer"),
        (lambda: DataConfig(num_labels=0), r"num_labels must be > 0"),
        (lambda: DataConfig(batch_size=-1), r"batch_size must be > 0"),
        (lambda: OptimConfig(lr=0), r"lr must be > 0"),
        (lambda: OptimConfig(lr_rampdown_factor=0.5), r"lr_rampdown_factor must be >= 1"),
        (lambda: TrainConfig(steps=0), r"steps must be > 0"),
        (lambda: TrainConfig(log_every="10"), r"log_every must be a number"),
        (lambda: Config(data=DataConfig(dataset="cifar10", use_extra=True)), r"use_extra adds SVHN"),
        (lambda: Config(method=MethodConfig(name="ict", cutmix_alpha=1.0)), r"cutmix_alpha applies to the supervised"),
        (lambda: MethodConfig(name="mixup", teacher_bn="own"), r"teacher_bn='own' needs a method that runs the teacher"),
        (lambda: MethodConfig(teacher_bn="own", teacher_mode="eval"), r"teacher_bn='own' needs teacher_mode='train'"),
        (lambda: MethodConfig(teacher_bn="mean"), r"MethodConfig.teacher_bn must be one of \['copy', 'own'\]"),
        (lambda: DataConfig(zca_eps=-1e-3), r"zca_eps must be >= 0"),
    ],
)
def test_bad_values_raise(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_mix_layers_are_normalised():
    assert MethodConfig(mix_layers=["input", "0", 2]).mix_layers == ("input", 0, 2)


def test_every_field_has_one_flag():
    flags = config_flags()
    assert flags["--num-labels"] == ("data", "num_labels") and flags["--k"] == ("method", "k")
    assert flags["--method"] == ("method", "name") and flags["--model"] == ("model", "name")
    assert flags["--out"] == ("train", "out_dir")
    assert len(set(flags.values())) == len(flags) == sum(len(v) for v in Config().to_dict().values())


def test_presets_match_the_published_recipes():
    ict = preset("ict-cifar10")
    assert (ict.optim.optimizer, ict.optim.lr, ict.optim.nesterov, ict.optim.weight_decay) == ("sgd", 0.1, True, 1e-4)
    assert (ict.data.batch_size, ict.data.unlabeled_batch_size) == (100, 100)
    assert (ict.method.consistency_weight, ict.method.ramp, ict.method.ramp_fraction) == (100.0, "sigmoid", 0.25)
    assert ict.method.ema_decay == 0.999 and ict.optim.lr_schedule == "cosine"
    assert preset("ict-svhn").method.alpha == 0.1
    ch = preset("chaudhry-cifar10")
    assert (ch.optim.optimizer, ch.optim.lr, ch.data.batch_size) == ("adam", 0.002, 128)
    assert (ch.method.ramp, ch.method.ramp_fraction, ch.method.consistency_weight) == ("linear", 0.4, 100.0)
    assert ch.method.alpha == 0.5 and preset("chaudhry-svhn").method.alpha == 0.1
    # The official code whitens CIFAR-10 only and averages the teacher's parameters only; the others keep their
    # earlier behaviour (no whitening, the student's batch-norm statistics copied).
    assert {name: (PRESETS[name].data.zca, PRESETS[name].method.teacher_bn) for name in PRESETS} == {
        "ict-cifar10": (True, "own"), "ict-svhn": (False, "own"), "chaudhry-cifar10": (False, "own"),
        "chaudhry-svhn": (False, "own"), "cpu-cifar10": (False, "copy"), "demo": (False, "copy")}


def test_preset_returns_a_copy_and_rejects_unknown_names():
    cfg = preset("demo")
    cfg.train.steps = 1
    assert PRESETS["demo"].train.steps != 1
    with pytest.raises(ValueError, match=r"unknown preset 'ict'; available presets: \["):
        preset("ict")


def test_from_file(tmp_path):
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"method": {"k": 4}, "train": {"steps": 7}}))
    cfg = Config.from_file(path, base=preset("demo"))
    assert cfg.method.k == 4 and cfg.train.steps == 7 and cfg.data.dataset == "digits"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        Config.from_file(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Config.from_file(tmp_path / "missing.json")


def test_joint_forward_is_an_ict_option_plumbed_to_the_method():
    from ssl_mix.experiment import build_method

    method = build_method(MethodConfig(name="ict", joint_forward=True), num_classes=10, total_steps=10)
    assert method.joint_forward is True
    assert build_method(MethodConfig(), num_classes=10, total_steps=10).joint_forward is False
    with pytest.raises(ValueError, match="joint_forward applies to the ict method"):
        MethodConfig(name="mixup", joint_forward=True)
    with pytest.raises(TypeError, match="joint_forward must be a bool"):
        MethodConfig(joint_forward=1)
