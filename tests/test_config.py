import dataclasses
import typing

import pytest

from ssl_mix import DATASET_NAMES, METHODS, method_class
from ssl_mix.config import (
    PRESET_DESCRIPTIONS,
    PRESETS,
    Config,
    DataConfig,
    MethodConfig,
    ModelConfig,
    OptimConfig,
    Preset,
    TrainConfig,
    config_flags,
    field_docs,
    flag_terms,
    format_value,
    preset,
    section_type,
)

SECTIONS = ("data", "model", "method", "optim", "train")


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
    with pytest.raises(ValueError, match=r"method.name must be one of .*'ict'.* got 'dividemix'"):
        MethodConfig(name="dividemix")
    with pytest.raises(ValueError, match=r"data.loader must be one of"):
        DataConfig(loader="fast")
    with pytest.raises(ValueError, match=r"train.precision must be one of"):
        TrainConfig(precision="fp16")


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: MethodConfig(k=1), r"method.k \(number of points to mix\) must be an int >= 2, got 1"),
        (lambda: MethodConfig(alpha=-0.5), r"method.alpha \(Dirichlet concentration\) must be a finite number"),
        (lambda: MethodConfig(ema_decay=1.5), r"ema_decay must be in \[0, 1\]"),
        (lambda: MethodConfig(ramp_fraction=2.0), r"ramp_fraction must be in \[0, 1\]"),
        (lambda: MethodConfig(mix_layers=("input", "fc")), r"mix_layers entries must be 'input' or a layer number"),
        (lambda: MethodConfig(mix_layers=()), r"mix_layers must name at least one layer"),
        (lambda: DataConfig(num_labels=0), r"data.num_labels must be >= 1, got 0"),
        (lambda: DataConfig(batch_size=-1), r"data.batch_size must be >= 1, got -1"),
        (lambda: OptimConfig(lr=0), r"optim.lr must be a finite number > 0"),
        (lambda: OptimConfig(lr_rampdown_factor=0.5), r"lr_rampdown_factor must be a finite number >= 1"),
        (lambda: TrainConfig(steps=0), r"train.steps must be >= 1"),
        (lambda: TrainConfig(log_every="10"), r"train.log_every must be an int, got str"),
        (lambda: Config(data=DataConfig(dataset="cifar10", use_extra=True)), r"use_extra adds SVHN"),
        (lambda: Config(method=MethodConfig(name="ict", cutmix_alpha=1.0)), r"cutmix_alpha applies to the supervised"),
        (lambda: MethodConfig(name="mixup", teacher_bn="own"),
         r"teacher_bn='own' needs a method that runs the teacher"),
        (lambda: MethodConfig(teacher_bn="own", teacher_mode="eval"),
         r"teacher_bn='own' needs method.teacher_mode='train'"),
        (lambda: MethodConfig(teacher_bn="mean"), r"method.teacher_bn must be one of 'own', 'copy'"),
        (lambda: DataConfig(zca_eps=-1e-3), r"zca_eps must be a finite number >= 0"),
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
    assert {name: (PRESETS[name].config.data.zca, PRESETS[name].config.method.teacher_bn) for name in PRESETS} == {
        "ict-cifar10": (True, "own"), "ict-svhn": (False, "own"), "chaudhry-cifar10": (False, "own"),
        "chaudhry-svhn": (False, "own"), "cpu-cifar10": (False, "copy"), "demo": (False, "copy"),
        "finetune": (False, "copy"),
        **{f"{m}-{d}": (False, "copy") for m in ("fixmatch", "mixmatch")
           for d in ("cifar10", "svhn", "cifar100", "cpu")}}


def test_the_finetune_preset_is_the_fine_tuning_recipe():
    cfg = preset("finetune")
    assert cfg.model.name.startswith("timm:") and cfg.model.pretrained and cfg.model.drop_path == 0.05
    o = cfg.optim
    assert (o.optimizer, o.lr, o.weight_decay, o.decay_norm_bias) == ("adamw", 5e-4, 0.05, False)
    assert o.layer_decay_on and o.layer_decay == 0.65 and o.head_lr_mult == 1.0
    assert 0 < o.warmup_steps == o.freeze_backbone_steps < cfg.train.steps
    assert cfg.method.name == "erm" and cfg.data.dataset == "folder" and cfg.data.num_labels is None


def test_preset_returns_a_copy_and_rejects_unknown_names():
    cfg = preset("demo")
    cfg.train.steps = 1
    assert PRESETS["demo"].config.train.steps != 1
    with pytest.raises(ValueError, match=r"unknown preset 'ict'; available presets: \["):
        preset("ict")


@pytest.mark.parametrize("suffix, text", [
    (".json", '{"method": {"k": 4, "alpha": 0.5}, "optim": {"weight_decay": 1e-4}, "train": {"steps": 7}}'),
    (".yaml", "method: {k: 4, alpha: 0.5}\noptim:\n  weight_decay: 1e-4  # YAML 1.1 would read a string\ntrain:\n"
              "  steps: 7\n"),
    (".yml", "method:\n  k: 4\n  alpha: .5\noptim: {weight_decay: 0.0001}\ntrain: {steps: 7}\n"),
])
def test_from_file_reads_json_and_yaml_with_one_schema(tmp_path, suffix, text):
    path = tmp_path / f"cfg{suffix}"
    path.write_text(text)
    cfg = Config.from_file(path, base=preset("demo"))
    assert (cfg.method.k, cfg.method.alpha, cfg.optim.weight_decay, cfg.train.steps) == (4, 0.5, 1e-4, 7)
    assert cfg.data.dataset == "digits"  # the rest comes from the base


@pytest.mark.parametrize("fmt, suffix", [("json", ".json"), ("yaml", ".yaml")])
def test_dumps_round_trips_through_a_file(tmp_path, fmt, suffix):
    cfg = preset("ict-cifar10").replace(method={"mix_layers": ("input", 1)}, model={"dropout": 0.3})
    path = tmp_path / f"cfg{suffix}"
    path.write_text(cfg.dumps(fmt))
    assert Config.from_file(path) == cfg
    with pytest.raises(ValueError, match="format must be one of 'json', 'yaml'; got 'toml'"):
        cfg.dumps("toml")


@pytest.mark.parametrize("name, text, error, match", [
    ("c.json", "{not json", ValueError, r"config file '.*c.json' is not valid JSON \(line 1, column 2\)"),
    ("c.yaml", "method:\n  k: [3\n", ValueError, r"config file '.*c.yaml' is not valid YAML \(line 3, column 1\)"),
    ("c.yaml", "method:\n  kk: 3\n", ValueError,
     r"config file '.*c.yaml': unknown key\(s\) \['kk'\] in config section 'method'"),
    ("c.json", '{"trainer": {}}', ValueError, r"config file '.*c.json': unknown config section\(s\) \['trainer'\]"),
    ("c.yaml", "- 1\n- 2\n", TypeError, r"config file '.*c.yaml': a config must be a dict of sections, got list"),
    ("c.yaml", "method: 3\n", TypeError, r"config section 'method' must be a dict, got int"),
    ("c.yaml", "train: {steps: ten}\n", TypeError, r"c.yaml': train.steps must be an int, got str"),
    ("c.yaml", "data: {augment: 'yes'}\n", TypeError, r"data.augment must be a bool, got str"),
    ("c.toml", "[method]\nk = 3\n", ValueError, r"config file '.*c.toml': unknown format '.toml'; name it .json, "),
])
def test_from_file_errors_name_the_file(tmp_path, name, text, error, match):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(error, match=match):
        Config.from_file(path)


def test_from_file_missing_and_empty(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Config.from_file(tmp_path / "missing.json")
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing set\n")
    assert Config.from_file(empty, base=preset("demo")) == preset("demo")


def test_field_types_are_checked_and_floats_normalised():
    assert OptimConfig(lr=1).lr == 1.0 and isinstance(OptimConfig(lr=1).lr, float)
    with pytest.raises(TypeError, match=r"model.name must be a string, got int"):
        ModelConfig(name=3)
    with pytest.raises(TypeError, match=r"data.download must be a bool, got int"):
        DataConfig(download=1)


@pytest.mark.parametrize("section", SECTIONS)
def test_every_field_is_documented_once(section):
    docs = field_docs(section)
    fields = [f.name for f in dataclasses.fields(section_type(section))]
    assert list(docs) == fields
    assert all(len(text) > 15 and "\n" not in text and "  " not in text for text in docs.values()), docs


def test_a_field_without_documentation_is_an_error(monkeypatch):
    doc = DataConfig.__doc__
    monkeypatch.setattr(DataConfig, "__doc__", doc.replace("        augment:", "        augmented:"))
    with pytest.raises(ValueError, match=r"fields without an entry: \['augment'\], entries without a field: "
                                         r"\['augmented'\]"):
        field_docs("data")
    with pytest.raises(ValueError, match="section must be one of 'data', 'model'"):
        field_docs("loop")


def test_format_value_is_how_the_flags_spell_values():
    assert [format_value(v) for v in (True, False, None, ("input", 0), 0.25, "tensor")] == [
        "true", "false", "none", "input,0", "0.25", "tensor"]


def test_method_registry_agrees_with_the_config_names():
    hints = typing.get_type_hints(MethodConfig)
    assert tuple(METHODS) == typing.get_args(hints["name"])
    assert all(cls.name == name for name, cls in METHODS.items())
    assert [name for name, cls in METHODS.items() if cls.uses_unlabeled] == ["ict", "fixmatch", "mixmatch"]
    assert method_class("mixup") is METHODS["mixup"]
    with pytest.raises(ValueError,
                       match="method name must be one of 'erm', 'mixup', 'manifold-mixup', 'ict', 'fixmatch'"):
        method_class("dividemix")
    assert typing.get_args(typing.get_type_hints(DataConfig)["dataset"]) == DATASET_NAMES


def test_every_preset_has_a_one_line_description():
    assert all(isinstance(p, Preset) and isinstance(p.config, Config) for p in PRESETS.values())
    assert all(0 < len(p.description) <= 100 and "\n" not in p.description for p in PRESETS.values())
    assert {name: p.description for name, p in PRESETS.items()} == PRESET_DESCRIPTIONS
    assert preset("demo") == PRESETS["demo"].config and preset("demo") is not PRESETS["demo"].config


@pytest.mark.parametrize("message, expected", [
    ("data.num_labels must be >= 1, got 0", "--num-labels must be >= 1, got 0"),
    ("drop data.image_size or set data.dataset='folder'", "drop --image-size or set --dataset folder"),
    ("set method.joint_forward=false.", "set --no-joint-forward."),
    ("set data.cache=True; train.out_dir, model.name, method.name", "set --cache; --out, --model, --method"),
    ("data.unlabeled_dirs (train.seed=3)", "--unlabeled-dir (--seed 3)"),
    # not config fields, or parts of a path or a longer name: unchanged
    ("data.json, train.csv, runs/train.seed, my.data.split, data.num_labelsx", None),
])
def test_flag_terms_spell_settings_as_flags(message, expected):
    assert flag_terms(message) == (message if expected is None else expected)


def test_joint_forward_is_an_ict_option_plumbed_to_the_method():
    from ssl_mix.experiment import build_method

    method = build_method(MethodConfig(name="ict", joint_forward=True), num_classes=10, total_steps=10)
    assert method.joint_forward is True
    assert build_method(MethodConfig(), num_classes=10, total_steps=10).joint_forward is False
    with pytest.raises(ValueError, match="joint_forward applies to the ict method"):
        MethodConfig(name="mixup", joint_forward=True)
    with pytest.raises(TypeError, match="joint_forward must be a bool"):
        MethodConfig(joint_forward=1)


def test_folder_data_options():
    data = DataConfig(dataset="folder", image_size="24,20", unlabeled_dirs="more")
    assert data.image_size == (24, 20) and data.unlabeled_dirs == ("more",) and data.resize == "crop"
    assert DataConfig(dataset="folder", image_size=32).image_size == (32, 32)
    assert Config.from_dict(Config(data=data).to_dict()).data == data  # lists in JSON come back as tuples
    assert DataConfig().num_labels is None and DataConfig().resolved_num_labels() == 4000
    assert DataConfig(dataset="folder", labels="l.csv").resolved_num_labels() is None
    assert DataConfig(num_labels=250).resolved_num_labels() == 250
    with pytest.raises(ValueError, match="data.image_size applies to data.dataset 'folder' .*drop data.image_size"):
        DataConfig(dataset="cifar10", image_size=32)
    with pytest.raises(ValueError, match="data.unlabeled_dirs applies .*drop data.unlabeled_dirs"):
        DataConfig(unlabeled_dirs=("x",))
    with pytest.raises(ValueError, match="image size must be a positive int N or a pair H,W"):
        DataConfig(dataset="folder", image_size="big")
    with pytest.raises(ValueError, match="data.channels must be one of"):
        DataConfig(dataset="folder", channels=2)
    with pytest.raises(ValueError, match="data.max_memory_gb must be a finite number > 0"):
        DataConfig(max_memory_gb=0)


def test_folder_data_flags_parse():
    from ssl_mix.cli import _config_from_args, build_parser

    args = build_parser().parse_args(["train", "--dataset", "folder", "--image-size", "48,64", "--channels", "1",
                                      "--unlabeled-dir", "a,b", "--unlabeled-dir", "c", "--no-cache", "--num-labels",
                                      "none", "--max-memory-gb", "0.5", "--resize", "stretch"])
    data = _config_from_args(args).data
    assert data.image_size == (48, 64) and data.channels == 1 and data.unlabeled_dirs == ("a,b", "c")
    assert data.cache is False and data.num_labels is None and data.max_memory_gb == 0.5 and data.resize == "stretch"
