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
    return preset("demo").replace(method={"name": method}, model={"name": model, **model_fields},
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
