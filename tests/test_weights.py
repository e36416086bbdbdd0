"""Starting weights (:mod:`ssl_mix.weights`): an earlier run, a weights file or timm's hub; the head replaced when the
class count differs, every other mismatch an error naming the keys; the record of where the weights came from."""

from __future__ import annotations

import hashlib

import pytest
import torch

from ssl_mix import preset, run_experiment
from ssl_mix.checkpoint import load_checkpoint
from ssl_mix.cli import main
from ssl_mix.config import ModelConfig
from ssl_mix.models import build_model
from ssl_mix.run import RunDir
from ssl_mix.weights import build_starting_model, head_keys, load_matching, load_weights_file

TINY = {"steps": 2, "eval_every": 2, "log_every": 2, "checkpoint_every": 0, "progress": False, "device": "cpu",
        "seed": 0}


def _config(out, model="cnn-small", method="erm", **model_fields):
    # cnn-small's default widths, as the ModelConfig(name="cnn-small") of the tests below builds it
    return preset("demo").replace(method={"name": method}, model={"name": model, "widths": None, **model_fields},
                                  data={"dataset": "digits", "num_labels": 30},
                                  train={**TINY, "out_dir": str(out)})


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A cnn-small run on digits (10 classes), 2 steps."""
    out = tmp_path_factory.mktemp("runs") / "first"
    run_experiment(_config(out))
    return out


def _same(a: dict, b: dict, skip=()) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if key not in skip:
            assert torch.equal(a[key], b[key]), key


def test_init_from_a_run_starts_from_its_teacher(small_run, tmp_path):
    teacher = load_checkpoint(RunDir(small_run).last)["teacher"]
    model, record = build_starting_model(ModelConfig(name="cnn-small", bn_momentum=0.1, init_from=str(small_run)),
                                         10, 1, (8, 8))
    _same(model.state_dict(), teacher)
    assert record["source"] == "run" and record["path"] == str(RunDir(small_run).last)
    assert record["sha256"] == hashlib.sha256(RunDir(small_run).last.read_bytes()).hexdigest()


def test_init_from_continues_training_from_the_run(small_run, tmp_path):
    teacher = load_checkpoint(RunDir(small_run).last)["teacher"]
    out = tmp_path / "second"
    cfg = _config(out, init_from=str(small_run))
    from ssl_mix.experiment import build_trainer

    trainer = build_trainer(cfg)
    _same(trainer.student.state_dict(), teacher)
    _same(trainer.teacher.module.state_dict(), teacher)
    assert trainer.data_info["weights"]["source"] == "run"


def test_init_from_with_other_classes_replaces_only_the_head(small_run):
    teacher = load_checkpoint(RunDir(small_run).last)["teacher"]
    model, _ = build_starting_model(ModelConfig(name="cnn-small", init_from=str(small_run)), 4, 1)
    state = model.state_dict()
    head = head_keys(model)
    assert head and all(state[k].shape[0] == 4 for k in head)
    _same({k: v for k, v in state.items() if k not in head}, {k: v for k, v in teacher.items() if k not in head})


def test_init_from_reorders_the_head_to_the_new_class_order(small_run):
    teacher = load_checkpoint(RunDir(small_run).last)["teacher"]
    reversed_classes = [str(c) for c in range(9, -1, -1)]  # the digits run's classes are "0".."9"
    model, _ = build_starting_model(ModelConfig(name="cnn-small", init_from=str(small_run)), 10, 1,
                                    classes=reversed_classes)
    state = model.state_dict()
    for key in head_keys(model):
        assert torch.equal(state[key], teacher[key].flip(0))


def test_init_from_other_classes_of_the_same_count_replaces_the_head(small_run):
    teacher = load_checkpoint(RunDir(small_run).last)["teacher"]
    torch.manual_seed(3)
    fresh = build_model(ModelConfig(name="cnn-small"), 10, 1).state_dict()
    torch.manual_seed(3)
    model, _ = build_starting_model(ModelConfig(name="cnn-small", init_from=str(small_run)), 10, 1,
                                    classes=[f"class{i}" for i in range(10)])
    head = head_keys(model)
    _same(model.state_dict(), teacher, skip=head)
    for key in head:
        assert torch.equal(model.state_dict()[key], fresh[key])


def test_init_from_another_architecture_names_both(small_run):
    with pytest.raises(ValueError, match=r"trained 'cnn-small'.*model.name is 'cnn13'"):
        build_starting_model(ModelConfig(name="cnn13", init_from=str(small_run)), 10, 1)


def test_init_from_a_missing_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_starting_model(ModelConfig(name="cnn-small", init_from=str(tmp_path / "nope.pt")), 10, 1)


def test_mismatched_keys_are_named():
    model = build_model(ModelConfig(name="cnn-small"), 10, 1)
    state = dict(model.state_dict())
    first = next(iter(state))
    state[first] = torch.zeros(3)
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=rf"not in the model: extra.weight; of another shape: {first}"):
        load_matching(model, state, source="w")
    del state[first]
    with pytest.raises(ValueError, match=rf"missing from the weights: {first}"):
        load_matching(model, state, source="w")


def _timm(num_classes=5, in_channels=3, seed=1, **fields):
    torch.manual_seed(seed)
    model, record = build_starting_model(ModelConfig(name="timm:resnet10t", **fields), num_classes, in_channels)
    return model, record


@pytest.mark.parametrize("kind", ["safetensors", "pth", "timm-checkpoint"])
def test_weights_file_loads_bit_for_bit(tmp_path, kind):
    saved, _ = _timm(seed=0)
    state = saved.model.state_dict()  # the timm model's own keys, as timm saves them
    path = tmp_path / {"safetensors": "w.safetensors", "pth": "w.pth", "timm-checkpoint": "ckpt.pth.tar"}[kind]
    if kind == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state if kind == "pth" else {"state_dict": state, "epoch": 3}, path)
    model, record = _timm(seed=1, pretrained_file=str(path))
    _same(model.model.state_dict(), state)
    assert record == {"model": "timm:resnet10t", "source": "file", "path": str(path),
                      "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def test_weights_file_with_other_classes_replaces_the_head(tmp_path):
    saved, _ = _timm(num_classes=5, seed=0)
    torch.save(saved.model.state_dict(), tmp_path / "w.pth")
    fresh, _ = _timm(num_classes=3, seed=1)
    model, _ = _timm(num_classes=3, seed=1, pretrained_file=str(tmp_path / "w.pth"))
    head = head_keys(model.model)
    assert head == ["fc.weight", "fc.bias"]
    _same(model.model.state_dict(), saved.model.state_dict(), skip=head)
    for key in head:  # the fresh head, as a model built with the same seed has it
        assert torch.equal(model.model.state_dict()[key], fresh.model.state_dict()[key])


def test_weights_file_of_rgb_weights_adapts_the_first_convolution(tmp_path):
    saved, _ = _timm(in_channels=3, seed=0)
    torch.save(saved.model.state_dict(), tmp_path / "w.pth")
    model, _ = _timm(in_channels=1, pretrained_file=str(tmp_path / "w.pth"))
    grey = model.model.state_dict()["conv1.0.weight"]
    assert grey.shape[1] == 1 and torch.allclose(grey[:, 0], saved.model.state_dict()["conv1.0.weight"].sum(1))


def test_weights_file_of_an_ssl_mix_model(tmp_path):
    torch.manual_seed(0)
    saved = build_model(ModelConfig(name="cnn-small"), 10, 1)
    torch.save(saved.state_dict(), tmp_path / "w.pth")
    model = build_model(ModelConfig(name="cnn-small"), 10, 1)
    assert load_weights_file(model, tmp_path / "w.pth") == []
    _same(model.state_dict(), saved.state_dict())


def test_mismatched_weights_file_names_the_keys(tmp_path):
    torch.save(build_model(ModelConfig(name="cnn-small"), 10, 3).state_dict(), tmp_path / "small.pth")
    with pytest.raises(ValueError, match=r"model.pretrained_file '.*small.pth' does not fit.*missing from the "
                                         r"weights: conv1.0.weight"):
        _timm(pretrained_file=str(tmp_path / "small.pth"))


def test_unreadable_weights_file(tmp_path):
    (tmp_path / "w.pth").write_text("not weights")
    with pytest.raises(ValueError, match="cannot be read as weights"):
        _timm(pretrained_file=str(tmp_path / "w.pth"))


def test_missing_weights_file_from_the_cli(tmp_path, capsys):
    missing = tmp_path / "none.safetensors"
    assert main(["train", "--dataset", "digits", "--model", "timm:resnet10t", "--pretrained-file", str(missing),
                 "--num-labels", "30", "--steps", "1", "--no-progress", "--device", "cpu",
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"--pretrained-file {str(missing)!r} does not exist" in err and "Traceback" not in err
    assert "ssl-mix: data:" not in err  # checked before the data is loaded


@pytest.mark.parametrize(("fields", "error", "message"), [
    ({"name": "timm:resnet10t", "pretrained_file": "nowhere.pth"}, FileNotFoundError,
     "model.pretrained_file 'nowhere.pth' does not exist"),
    ({"name": "cnn-small", "init_from": "no_run"}, FileNotFoundError, "checkpoint 'no_run' does not exist"),
    ({"name": "cnn-small", "pretrained": True}, ValueError, "model.pretrained .*needs a timm model"),
])
def test_starting_weights_are_checked_before_loading(fields, error, message):
    from ssl_mix.weights import check_starting_weights

    with pytest.raises(error, match=message):
        check_starting_weights(ModelConfig(**fields))
    check_starting_weights(ModelConfig(name="timm:resnet10t", pretrained=True))  # the hub is asked when building


def test_pretrained_offline_is_one_clear_error(tmp_path, monkeypatch, capsys):
    """For real: timm asks huggingface_hub, offline (as this machine is; offline mode skips the retries) with an
    empty cache."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert main(["train", "--dataset", "digits", "--model", "timm:resnet10t", "--pretrained", "--num-labels", "30",
                 "--steps", "1", "--no-progress", "--device", "cpu", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "--pretrained-file" in err and str(tmp_path / "hub") in err and "HF_HUB_OFFLINE" not in err  # it is set
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert "Traceback" not in err and len(errors) == 1 and errors[0].startswith("ssl-mix train: error: "), err


def test_pretrained_without_the_hub_names_the_file_option_and_cache(monkeypatch):
    import huggingface_hub.constants
    import timm
    from huggingface_hub.constants import HF_HUB_CACHE

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)

    def offline(*args, **kwargs):
        if kwargs.get("pretrained"):
            raise OSError("We couldn't connect to 'https://huggingface.co'")
        return real(*args, **kwargs)

    real = timm.create_model
    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(FileNotFoundError, match=rf"model.pretrained_file.*{HF_HUB_CACHE}|{HF_HUB_CACHE}.*"
                                                r"model.pretrained_file.*set HF_HUB_OFFLINE=1 to skip the "
                                                r"hub's retries next time"):
        _timm(pretrained=True)


def test_pretrained_loads_what_timm_loads(monkeypatch):
    import timm

    calls = []
    real = timm.create_model

    def recording(*args, **kwargs):
        calls.append(kwargs.get("pretrained", False))
        kwargs.pop("pretrained", None)
        return real(*args, **kwargs)

    monkeypatch.setattr(timm, "create_model", recording)
    _, record = _timm(pretrained=True)
    assert calls == [True] and record["source"] == "timm-hub" and record["sha256"] is None


def test_pretrained_needs_a_timm_model():
    with pytest.raises(ValueError, match="model.pretrained .*needs a timm model"):
        build_starting_model(ModelConfig(name="cnn-small", pretrained=True), 10, 1)


def test_pretrained_of_a_model_timm_has_no_weights_for(monkeypatch):
    import timm

    real = timm.create_model

    def no_weights(*args, **kwargs):
        if kwargs.pop("pretrained", False):
            raise RuntimeError("No pretrained weights exist for resnet10t. Use `pretrained=False` for random init.")
        return real(*args, **kwargs)

    monkeypatch.setattr(timm, "create_model", no_weights)
    with pytest.raises(ValueError, match=r"model.pretrained: timm has no pretrained weights for 'timm:resnet10t'"):
        _timm(pretrained=True)


def test_head_keys_of_a_model_without_a_classifier():
    with pytest.raises(ValueError, match="cannot find the classifier head of Sequential"):
        head_keys(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3)))


def test_weights_record_names_the_sources():
    from ssl_mix.weights import weights_record

    assert weights_record("cnn-small", "random") == {"model": "cnn-small", "source": "random", "path": None,
                                                     "sha256": None}
    with pytest.raises(ValueError, match="source must be one of random, timm-hub, file, run"):
        weights_record("cnn-small", "hub")


def test_init_from_on_the_command_line(small_run, tmp_path):
    import json

    out = tmp_path / "next"
    assert main(["train", "--dataset", "digits", "--model", "cnn-small", "--init-from", str(small_run),
                 "--method", "erm", "--num-labels", "30", "--steps", "1", "--eval-every", "1", "--no-progress",
                 "--device", "cpu", "--out", str(out)]) == 0
    weights = json.loads(RunDir(out).report.read_text())["weights"]
    assert weights["source"] == "run" and weights["path"] == str(RunDir(small_run).last)


def test_vision_transformer_weights_of_another_image_size_are_resampled_by_timm(tmp_path):
    torch.manual_seed(0)
    saved = build_model(ModelConfig(name="timm:test_vit"), 3, 1)  # timm's default size, 160 px: 100 patches
    torch.save(saved.state_dict(), tmp_path / "vit.pth")
    model, _ = build_starting_model(ModelConfig(name="timm:test_vit", pretrained_file=str(tmp_path / "vit.pth")), 3,
                                    1, (32, 32))
    state = model.state_dict()
    assert state["pos_embed"].shape[1] < saved.state_dict()["pos_embed"].shape[1]
    _same(state, saved.state_dict(), skip=["pos_embed"])
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 3)


def test_mismatch_errors_name_the_telling_keys_before_batch_norm_counters():
    from ssl_mix.weights import load_matching

    model = build_model(ModelConfig(name="cnn-small"), 10, 1)
    # a file of another network, every key different, its batch-norm counters first
    items = sorted(model.state_dict().items(), key=lambda kv: not kv[0].endswith("num_batches_tracked"))
    state = {f"z.{k}": v for k, v in items}
    with pytest.raises(ValueError, match=r"not in the model: z\.stages\.0\.0\.weight, z\.stages\.0\.1\.weight"):
        load_matching(model, state, source="f.pth")
